//! Where a command's human-readable report goes. stdout carries results;
//! when the JSON report itself goes to stdout (`--json -`), the table moves
//! to stderr, so that stdout holds one JSON document for `jq`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

static REPORT_TO_STDERR: AtomicBool = AtomicBool::new(false);

/// Whether `path` means standard output.
pub fn is_stdout(path: &Path) -> bool {
    path == Path::new("-")
}

/// Call before printing a report: `--json -` sends the report to stderr.
pub fn json_destination(json: Option<&Path>) {
    REPORT_TO_STDERR.store(json.is_some_and(is_stdout), Ordering::Relaxed);
}

/// Prints one line of the report (see [`report!`]).
pub fn line(args: std::fmt::Arguments<'_>) {
    if REPORT_TO_STDERR.load(Ordering::Relaxed) {
        eprintln!("{args}");
    } else {
        println!("{args}");
    }
}

/// `println!` for a command's report: stdout, or stderr under `--json -`.
macro_rules! report {
    () => {
        $crate::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
pub(crate) use report;
