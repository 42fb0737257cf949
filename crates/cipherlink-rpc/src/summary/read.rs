//! Reading results files: JSON lines as this crate writes them (each line
//! names its test, see [`crate::record`]), and the original Python suite's
//! form, a `#TEST=01_steady` / `#TEST=02_coldconn` header line before the
//! same objects (it may also add fields, spell codes as
//! `StatusCode.UNAVAILABLE`, or leave trailing blanks on the header).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::RpcError;
use crate::record::{COLDCONN_TEST, STEADY_TEST};

/// Which test a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `rpc steady` (the Python suite's 01_steady): one latency per request.
    Steady,
    /// `rpc coldconn` (the Python suite's 02_coldconn): connect / first RPC
    /// / total per attempt.
    Coldconn,
}

/// One line of results, as this crate writes it (crate::record) and reads it
/// back; absent fields are left out of the line.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Row {
    /// The test the line belongs to (`steady`, `coldconn`); absent in the
    /// Python suite's files, whose header names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    /// Success flag; absent means "success if it has a time".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    /// gRPC code name of a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Steady latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Cold: connect time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t_connect_ms: Option<f64>,
    /// Cold: first call time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t_first_rpc_ms: Option<f64>,
    /// Cold: total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t_total_ms: Option<f64>,
}

impl Row {
    /// Whether the line records a success.
    pub fn succeeded(&self) -> bool {
        self.ok
            .unwrap_or(self.latency_ms.is_some() || self.t_total_ms.is_some())
    }

    /// The failure's code, normalised to the bare gRPC name.
    pub fn code_name(&self) -> String {
        let code = self.code.as_deref().unwrap_or("UNKNOWN").trim();
        code.strip_prefix("StatusCode.").unwrap_or(code).to_string()
    }

    /// The time plotted and summarised: latency, or cold total.
    pub fn primary_ms(&self) -> Option<f64> {
        self.latency_ms.or(self.t_total_ms).or_else(|| {
            // Some writers give only the two parts.
            Some(self.t_connect_ms? + self.t_first_rpc_ms?)
        })
    }
}

/// A parsed results file.
#[derive(Debug, Clone)]
pub struct RunFile {
    /// Where it came from.
    pub path: PathBuf,
    /// The test's name: the `#TEST=` header's, else the first line's `test`.
    pub test: Option<String>,
    /// Which test, from the header or the fields.
    pub kind: Kind,
    /// Lines in file order (= intended send order for this crate's files).
    pub rows: Vec<Row>,
}

impl RunFile {
    /// A short label for tables and legends: the file name.
    pub fn label(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }
}

/// Reads one file.
pub fn read(path: &Path) -> Result<RunFile, RpcError> {
    let text = std::fs::read_to_string(path).map_err(|source| RpcError::ResultsIo {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses file text; `path` only names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<RunFile, RpcError> {
    let mut test = None;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if let Some(name) = comment.trim().strip_prefix("TEST=") {
                test.get_or_insert_with(|| name.trim().to_string());
            }
            continue;
        }
        let row: Row = serde_json::from_str(line).map_err(|e| RpcError::ResultsFormat {
            path: path.to_path_buf(),
            line: i + 1,
            detail: format!("not a results line ({e}): {}", truncate(line)),
        })?;
        rows.push(row);
    }
    if test.is_none() {
        test = rows.iter().find_map(|r| r.test.clone());
    }
    // `contains`: the Python suite's names carry a number (`01_steady`).
    let kind = match test.as_deref() {
        Some(t) if t == COLDCONN_TEST || t.contains("coldconn") => Kind::Coldconn,
        Some(t) if t == STEADY_TEST || t.contains("steady") => Kind::Steady,
        _ if rows
            .iter()
            .any(|r| r.t_total_ms.is_some() || r.t_connect_ms.is_some()) =>
        {
            Kind::Coldconn
        }
        _ => Kind::Steady,
    };
    Ok(RunFile {
        path: path.to_path_buf(),
        test,
        kind,
        rows,
    })
}

fn truncate(line: &str) -> String {
    line.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_formats_and_python_spellings() {
        let steady = "#TEST=01_steady\n{\"ok\":true,\"latency_ms\":5.83}\n\n\
                      {\"ok\":false,\"code\":\"StatusCode.DEADLINE_EXCEEDED\",\"error\":\"x\"}\n";
        let f = parse(Path::new("a"), steady).map_err(|e| e.to_string());
        assert!(matches!(&f, Ok(f) if f.kind == Kind::Steady && f.rows.len() == 2));
        if let Ok(f) = f {
            assert_eq!(f.rows[1].code_name(), "DEADLINE_EXCEEDED");
            assert!(!f.rows[1].succeeded());
        }
        let cold = "#TEST=02_coldconn  \n{\"ok\":true,\"t_connect_ms\":19.4,\"t_first_rpc_ms\":6.1,\"t_total_ms\":25.5}\n";
        let f = parse(Path::new("b"), cold).map_err(|e| e.to_string());
        assert!(
            matches!(&f, Ok(f) if f.kind == Kind::Coldconn && f.rows[0].primary_ms() == Some(25.5))
        );
    }

    #[test]
    fn reads_lines_that_name_their_test() {
        let cold = "{\"test\":\"coldconn\",\"ok\":false,\"code\":\"UNAVAILABLE\"}\n\
                    {\"test\":\"coldconn\",\"ok\":false,\"code\":\"DEADLINE_EXCEEDED\"}\n";
        let f = parse(Path::new("coldconn.jsonl"), cold).map_err(|e| e.to_string());
        // Kind from `test`: failed lines have no times to tell it by.
        assert!(
            matches!(&f, Ok(f) if f.kind == Kind::Coldconn
                && f.test.as_deref() == Some("coldconn")
                && f.rows.len() == 2),
            "{f:?}"
        );
        let steady = "{\"test\":\"steady\",\"ok\":true,\"latency_ms\":0.25}\n";
        let f = parse(Path::new("steady.jsonl"), steady).map_err(|e| e.to_string());
        assert!(
            matches!(&f, Ok(f) if f.kind == Kind::Steady && f.rows[0].primary_ms() == Some(0.25)),
            "{f:?}"
        );
    }

    #[test]
    fn a_bad_line_names_file_and_line() {
        let err = parse(Path::new("r.txt"), "#TEST=01_steady\nnot json\n");
        assert!(matches!(err, Err(RpcError::ResultsFormat { line: 2, .. })));
    }
}
