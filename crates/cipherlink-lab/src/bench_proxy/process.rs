//! The processes of a run: each pair end, each peer, the backend helper.
//! Each is killed when dropped; the last few KiB of its stderr are kept to
//! explain a failure, and stdout can be read line by line (obfs4's managed
//! transport protocol, the backend's address).

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};

use crate::LabError;

/// How long a process may take to listen (a debug build's first start is slow).
pub(super) const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of a process's stderr kept.
const SAID_KEPT: usize = 4 * 1024;
/// The longest stdout line read.
const LINE_MAX: u64 = 4 * 1024;
/// Starts tried when a process exits at once (its port was taken meanwhile).
const PORT_TRIES: usize = 3;

/// A running process of the bench.
pub(super) struct Proc {
    /// What it is, e.g. "stunnel client end".
    pub(super) who: String,
    child: Child,
    pid: u32,
    said: Arc<Mutex<VecDeque<u8>>>,
    stdout: Option<BufReader<ChildStdout>>,
}

impl Proc {
    /// Starts `program` with `args` and environment `env`; stdin stays an
    /// open pipe (a managed transport exits when it closes), stdout is
    /// kept for [`Proc::stdout_line`], stderr's tail for errors.
    pub(super) fn spawn(
        who: impl Into<String>,
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
    ) -> Result<Proc, LabError> {
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| LabError::Spawn {
            program: program.to_path_buf(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        let said = Arc::new(Mutex::new(VecDeque::with_capacity(SAID_KEPT)));
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(keep_tail(stderr, said.clone()));
        }
        let stdout = child.stdout.take().map(BufReader::new);
        Ok(Proc {
            who: who.into(),
            child,
            pid,
            said,
            stdout,
        })
    }

    /// Its process ID.
    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    /// The end of what it printed on stderr.
    pub(super) fn said(&self) -> String {
        let tail = self.said.lock().map(|t| t.clone()).unwrap_or_default();
        String::from_utf8_lossy(&Vec::from(tail)).into_owned()
    }

    /// How it ended, if it has.
    pub(super) fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown ({e})")),
        }
    }

    /// An error saying it stopped while the bench still needed it.
    pub(super) fn stopped(&mut self, during: &str) -> Option<LabError> {
        let status = self.exited()?;
        Some(LabError::NotReady {
            who: self.who.clone(),
            what: format!("exited ({status}) {during}"),
            said: self.said(),
        })
    }

    /// The next stdout line for which `pick` returns something (bounded in
    /// length and time); stdout is drained in the background afterwards so
    /// the process never blocks on a full pipe.
    pub(super) async fn stdout_line<T>(
        &mut self,
        mut pick: impl FnMut(&str) -> Option<T>,
        what: &str,
    ) -> Result<T, LabError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let Some(mut reader) = self.stdout.take() else {
            return Err(self.not_ready(format!("has no stdout left to read {what} from")));
        };
        let mut seen = Vec::new();
        loop {
            let mut line = Vec::new();
            let mut limited = (&mut reader).take(LINE_MAX);
            let left = deadline.saturating_duration_since(Instant::now());
            let read = tokio::time::timeout(left, limited.read_until(b'\n', &mut line)).await;
            match read {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    let status = self.exited().unwrap_or_else(|| "still running".into());
                    let said = format!("{}{}", String::from_utf8_lossy(&seen), self.said());
                    return Err(LabError::NotReady {
                        who: self.who.clone(),
                        what: format!("closed its stdout ({status}) before {what}"),
                        said,
                    });
                }
                Ok(Ok(_)) => {
                    let text = String::from_utf8_lossy(&line);
                    if let Some(found) = pick(text.trim_end()) {
                        self.stdout = Some(reader);
                        self.drain_stdout();
                        return Ok(found);
                    }
                    if seen.len() < SAID_KEPT {
                        seen.extend_from_slice(&line);
                    }
                }
                Err(_) => {
                    return Err(self.not_ready(format!(
                        "did not print {what} within {START_TIMEOUT:?}; stdout so far: {}",
                        String::from_utf8_lossy(&seen).trim_end()
                    )))
                }
            }
        }
    }

    /// From now on stdout is read and dropped in the background.
    pub(super) fn drain_stdout(&mut self) {
        if let Some(stdout) = self.stdout.take() {
            tokio::spawn(keep_tail(stdout, Arc::new(Mutex::new(VecDeque::new()))));
        }
    }

    fn not_ready(&self, what: String) -> LabError {
        LabError::NotReady {
            who: self.who.clone(),
            what,
            said: self.said(),
        }
    }
}

/// Reads `from` to its end, keeping the last [`SAID_KEPT`] bytes in `tail`.
async fn keep_tail(mut from: impl AsyncRead + Unpin, tail: Arc<Mutex<VecDeque<u8>>>) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if let Ok(mut tail) = tail.lock() {
            tail.extend(&buf[..n]);
            let excess = tail.len().saturating_sub(SAID_KEPT);
            tail.drain(..excess);
        }
    }
}

/// A loopback address whose port was free a moment ago. Programs that
/// cannot listen on port 0 and say where are given one; [`retry_ports`]
/// starts again if another program took it meanwhile.
pub(super) fn spare_addr() -> Result<SocketAddr, LabError> {
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    let failed = |source| LabError::Listen {
        who: "the bench (finding a free port)",
        addr: any,
        source,
    };
    let listener = std::net::TcpListener::bind(any).map_err(failed)?;
    listener.local_addr().map_err(failed)
}

/// Waits until `addr` accepts a TCP connection, while `proc` runs.
pub(super) async fn wait_listening(proc: &mut Proc, addr: SocketAddr) -> Result<(), LabError> {
    let start = Instant::now();
    loop {
        if let Some(err) = proc.stopped(&format!("before listening on {addr}")) {
            return Err(err);
        }
        if let Ok(Ok(_probe)) =
            tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await
        {
            // A port taken by someone else answers too: make sure ours still runs.
            tokio::time::sleep(Duration::from_millis(20)).await;
            return match proc.stopped(&format!("right after {addr} answered")) {
                Some(err) => Err(err),
                None => Ok(()),
            };
        }
        if start.elapsed() > START_TIMEOUT {
            return Err(LabError::NotListening {
                who: proc.who.clone(),
                addr,
                waited: START_TIMEOUT,
                said: proc.said(),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `start` again (with new spare ports) when a process it started
/// stopped before listening, which is what a port taken meanwhile looks like.
pub(super) async fn retry_ports<T, F, Fut>(mut start: F) -> Result<T, LabError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, LabError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match start().await {
            Err(LabError::NotReady { .. }) if tries < PORT_TRIES => continue,
            outcome => return outcome,
        }
    }
}
