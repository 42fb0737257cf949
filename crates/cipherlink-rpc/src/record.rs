//! The results files: JSON lines, one object per request (steady) or
//! attempt (coldconn), each naming its test, so that every line is a JSON
//! object `jq` and other JSON-lines readers take as it is.
//!
//! ```text
//! {"test":"steady","ok":true,"latency_ms":5.83}
//! {"test":"steady","ok":false,"code":"DEADLINE_EXCEEDED"}
//! {"test":"coldconn","ok":true,"t_connect_ms":19.4,"t_first_rpc_ms":6.1,"t_total_ms":25.5}
//! ```
//!
//! The original Python suite writes the same objects without `test`, after
//! a `#TEST=01_steady` (or `#TEST=02_coldconn`) header line, which is not
//! JSON; [`crate::summary::read()`] takes both forms.
//!
//! Times are written with microsecond precision (three decimals): with no
//! server delay whole latencies are a fraction of a millisecond.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::error::RpcError;
use crate::summary::read::Row;

/// The `test` of every line of a steady-test file.
pub const STEADY_TEST: &str = "steady";
/// The `test` of every line of a cold-connection file.
pub const COLDCONN_TEST: &str = "coldconn";

/// The result of one steady-test request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Answered; latency from the request's intended send time.
    Ok(Duration),
    /// Failed with this gRPC code name.
    Err(&'static str),
}

/// The result of one cold-connection attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum ColdOutcome {
    /// Connected and answered.
    Ok {
        /// TCP connect + TLS handshake + HTTP/2 setup.
        connect: Duration,
        /// The first call on the new channel.
        first_rpc: Duration,
    },
    /// Failed with this gRPC code name.
    Err(&'static str),
}

/// The gRPC code name of a failed call, as gRPC's own clients report it.
///
/// tonic reports a broken or refused connection (server down, TLS alert) as
/// UNKNOWN carrying the transport error as its source; gRPC's C core and
/// grpc-go call that UNAVAILABLE, and so does this lab, to keep the two
/// suites' files comparable. A server's own UNKNOWN has no source and stays.
pub fn status_name(status: &tonic::Status) -> &'static str {
    use std::error::Error as _;
    if status.code() == tonic::Code::Unknown && status.source().is_some() {
        return "UNAVAILABLE";
    }
    code_name(status.code())
}

/// The code to record for a failed call that was sent at `sent` with
/// `deadline`. Once the deadline has passed, the call failed by it, whatever
/// arrived: a gRPC server whose deadline fires resets the stream (CANCELLED
/// on the wire), and gRPC's own clients report DEADLINE_EXCEEDED for that,
/// as the seed's Python suite records it.
pub fn failure_name(
    status: &tonic::Status,
    sent: std::time::Instant,
    deadline: Duration,
) -> &'static str {
    if sent.elapsed() >= deadline {
        return "DEADLINE_EXCEEDED";
    }
    status_name(status)
}

/// Milliseconds rounded to microseconds, as written to files.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The gRPC name of a status code, as Python's `grpc.StatusCode.X.name`.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

fn create(path: &Path) -> Result<std::io::BufWriter<std::fs::File>, RpcError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| RpcError::ResultsIo {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::File::create(path)
        .map(std::io::BufWriter::new)
        .map_err(|source| RpcError::ResultsIo {
            path: path.to_path_buf(),
            source,
        })
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> RpcError + '_ {
    move |source| RpcError::ResultsIo {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a steady-test results file.
pub fn write_steady(path: &Path, outcomes: &[Outcome]) -> Result<(), RpcError> {
    write_lines(path, STEADY_TEST, outcomes, |o| match o {
        Outcome::Ok(d) => Row {
            ok: Some(true),
            latency_ms: Some(ms(*d)),
            ..Row::default()
        },
        Outcome::Err(code) => failed(code),
    })
}

/// Writes a cold-connection results file.
pub fn write_coldconn(path: &Path, outcomes: &[ColdOutcome]) -> Result<(), RpcError> {
    write_lines(path, COLDCONN_TEST, outcomes, |o| match o {
        ColdOutcome::Ok { connect, first_rpc } => Row {
            ok: Some(true),
            t_connect_ms: Some(ms(*connect)),
            t_first_rpc_ms: Some(ms(*first_rpc)),
            t_total_ms: Some(ms(*connect + *first_rpc)),
            ..Row::default()
        },
        ColdOutcome::Err(code) => failed(code),
    })
}

fn failed(code: &str) -> Row {
    Row {
        ok: Some(false),
        code: Some(code.to_string()),
        ..Row::default()
    }
}

/// One JSON line per outcome, each naming `test`, straight into the file's
/// buffer.
fn write_lines<T>(
    path: &Path,
    test: &str,
    outcomes: &[T],
    row: impl Fn(&T) -> Row,
) -> Result<(), RpcError> {
    let mut w = create(path)?;
    let written = outcomes
        .iter()
        .try_for_each(|o| {
            let line = Row {
                test: Some(test.to_string()),
                ..row(o)
            };
            serde_json::to_writer(&mut w, &line)?;
            w.write_all(b"\n")
        })
        .and_then(|()| w.flush());
    written.map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_after_the_deadline_is_deadline_exceeded() {
        let cancelled = tonic::Status::cancelled("stream reset by the server");
        let deadline = Duration::from_millis(100);
        let late = std::time::Instant::now()
            .checked_sub(Duration::from_millis(150))
            .unwrap_or_else(std::time::Instant::now);
        assert_eq!(
            failure_name(&cancelled, late, deadline),
            "DEADLINE_EXCEEDED"
        );
        let early = std::time::Instant::now();
        assert_eq!(failure_name(&cancelled, early, deadline), "CANCELLED");
    }

    /// Every line is a JSON object naming its test: no header line that
    /// `jq` would stop at.
    #[test]
    fn every_line_is_a_json_object_naming_its_test() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("steady.jsonl");
        let outs = [
            Outcome::Ok(Duration::from_micros(5830)),
            Outcome::Err("DEADLINE_EXCEEDED"),
        ];
        write_steady(&p, &outs)?;
        assert_eq!(
            std::fs::read_to_string(&p)?,
            "{\"test\":\"steady\",\"ok\":true,\"latency_ms\":5.83}\n\
             {\"test\":\"steady\",\"ok\":false,\"code\":\"DEADLINE_EXCEEDED\"}\n"
        );

        let p = dir.path().join("coldconn.jsonl");
        let outs = [
            ColdOutcome::Ok {
                connect: Duration::from_micros(19_400),
                first_rpc: Duration::from_micros(6_100),
            },
            ColdOutcome::Err("UNAVAILABLE"),
        ];
        write_coldconn(&p, &outs)?;
        let text = std::fs::read_to_string(&p)?;
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line)?;
            assert_eq!(value["test"], "coldconn", "{line}");
        }
        assert_eq!(text.lines().count(), 2);
        // And it reads back as what was written.
        let file = crate::summary::read(&p)?;
        assert_eq!(file.kind, crate::summary::Kind::Coldconn);
        assert_eq!(file.rows[0].primary_ms(), Some(25.5));
        Ok(())
    }
}
