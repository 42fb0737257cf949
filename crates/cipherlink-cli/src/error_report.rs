//! How a failed command reports itself on stderr: the error and its causes,
//! one per line, in anyhow's layout, but
//! - without the stack backtrace anyhow adds whenever `RUST_BACKTRACE` is
//!   set (many developers set it globally; a refused connection is not a
//!   crash). `RUST_LIB_BACKTRACE=1` still asks for it;
//! - without a cause the line before already ends with: the libraries' I/O
//!   errors say "connecting to X: Connection refused" and also hand out
//!   "Connection refused" as their source, which anyhow would print twice.

use std::fmt::Write as _;

/// The report for `error`, ending in a newline.
pub fn render(error: &anyhow::Error) -> String {
    let mut causes: Vec<String> = Vec::new();
    let mut previous = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !previous.ends_with(&text) {
            causes.push(text.clone());
        }
        previous = text;
    }
    let mut out = format!("Error: {error}\n");
    if !causes.is_empty() {
        out.push_str("\nCaused by:\n");
        if causes.len() == 1 {
            let _ = writeln!(out, "    {}", causes[0]);
        } else {
            for (i, cause) in causes.iter().enumerate() {
                let _ = writeln!(out, "    {i}: {cause}");
            }
        }
    }
    if std::env::var_os("RUST_LIB_BACKTRACE").is_some_and(|v| v == "1") {
        let _ = write!(out, "\nStack backtrace:\n{}\n", error.backtrace());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    /// A library error in the usual style: its message ends with its
    /// source's, and it also returns that source.
    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "connecting to the link server: {}", self.0)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    fn io_error() -> anyhow::Error {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        Err::<(), _>(Wrapped(refused))
            .context("connecting to 127.0.0.1:1 as bob")
            .unwrap_err()
    }

    #[test]
    fn a_cause_the_line_before_already_names_is_left_out() {
        let report = render(&io_error());
        assert_eq!(
            report,
            "Error: connecting to 127.0.0.1:1 as bob\n\nCaused by:\n    \
             connecting to the link server: connection refused\n"
        );
    }

    #[test]
    fn distinct_causes_are_numbered_and_there_is_no_backtrace() {
        let error = anyhow::anyhow!("line 1: expected a number")
            .context("connection file bad.link")
            .context("reading the configuration");
        let report = render(&error);
        assert_eq!(
            report,
            "Error: reading the configuration\n\nCaused by:\n    \
             0: connection file bad.link\n    1: line 1: expected a number\n"
        );
        assert!(!report.contains("backtrace"));
    }

    #[test]
    fn an_error_without_causes_is_one_line() {
        assert_eq!(
            render(&anyhow::anyhow!("no such peer")),
            "Error: no such peer\n"
        );
    }
}
