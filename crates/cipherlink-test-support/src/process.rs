//! Child processes for tests: the `cipherlink` binary and the foreign
//! programs it is tested against (openssl, stunnel, Python).
//!
//! A [`Proc`] captures stdout and stderr as they arrive (for readiness lines
//! and failure messages), and is killed and reaped when dropped, so a failing
//! test leaves nothing behind. Every wait has the [`DEADLINE`]; it only stops
//! a hung test, so no helper asserts on timing.
//!
//! Our own servers listen on port 0 and print the address they bound
//! ([`Proc::wait_addr`]): no port is guessed. A foreign program that must be
//! told a port number gets one from [`on_spare_port`], which retries when the
//! port was taken in between.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any single wait may take before the test fails. Generous: the
/// machine is shared with compilers; this only stops a hung test.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(20);

/// Removes ANSI colour sequences (`ESC [ ... letter`), in case a log writer adds them.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The `cipherlink` binary at `bin` (a test's `env!("CARGO_BIN_EXE_cipherlink")`)
/// with plain (uncoloured) logs, no backtraces in error output, and a
/// neutral working folder (no stray `.env`).
pub fn cipherlink(bin: impl AsRef<Path>) -> Command {
    let mut cmd = Command::new(bin.as_ref());
    cmd.env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .env_remove("CIPHERLINK_LOG")
        .current_dir(std::env::temp_dir());
    cmd
}

type Buffer = Arc<Mutex<Vec<u8>>>;

/// A running child process with its output captured as it arrives. Killed
/// (and reaped) when dropped.
pub struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Buffer,
    stderr: Buffer,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl std::fmt::Debug for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proc")
            .field("name", &self.name)
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

fn pump(mut from: impl Read + Send + 'static, into: Buffer) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => into
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(&buf[..n]),
            }
        }
    })
}

fn text(buffer: &Buffer) -> String {
    strip_ansi(&String::from_utf8_lossy(
        &buffer.lock().unwrap_or_else(PoisonError::into_inner),
    ))
}

impl Proc {
    /// Starts `cmd` with piped stdin, stdout and stderr; `name` labels failures.
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({cmd:?}): {e}"));
        let stdout = Buffer::default();
        let stderr = Buffer::default();
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(pump(out, stdout.clone()));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(pump(err, stderr.clone()));
        }
        Proc {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            readers,
            status: None,
        }
    }

    /// The process id (to send it a signal).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Everything written to stdout so far (ANSI colours removed).
    pub fn stdout(&self) -> String {
        text(&self.stdout)
    }

    /// Everything written to stderr so far (ANSI colours removed).
    pub fn stderr(&self) -> String {
        text(&self.stderr)
    }

    /// Stdout and stderr, labelled, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "--- {} stdout:\n{}\n--- {} stderr:\n{}\n---",
            self.name,
            self.stdout(),
            self.name,
            self.stderr()
        )
    }

    /// Writes to the child's stdin.
    pub fn write_stdin(&mut self, data: &[u8]) {
        let Some(stdin) = self.stdin.as_mut() else {
            panic!("{}: stdin already closed", self.name);
        };
        stdin
            .write_all(data)
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("writing to {}'s stdin: {e}", self.name));
    }

    /// Closes stdin (the child sees end of file).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Whether the child is still running.
    pub fn running(&mut self) -> bool {
        self.poll_exit().is_none()
    }

    fn poll_exit(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.name));
        }
        self.status
    }

    fn stream_text(&self, on_stderr: bool) -> String {
        if on_stderr {
            self.stderr()
        } else {
            self.stdout()
        }
    }

    /// Waits until the child's stdout (or stderr, with `on_stderr`) contains
    /// `needle`, and returns that stream's text. Fails the test if the child
    /// exits first or the deadline passes.
    pub fn wait_for(&mut self, on_stderr: bool, needle: &str) -> String {
        match self.try_wait_for(on_stderr, needle) {
            Ok(text) => text,
            Err(why) => panic!("{why}\n{}", self.describe()),
        }
    }

    /// [`Proc::wait_for`], but a child that exits first is an `Err` with
    /// what happened (the caller may try again, e.g. on another port).
    /// The deadline still fails the test.
    pub fn try_wait_for(&mut self, on_stderr: bool, needle: &str) -> Result<String, String> {
        let start = Instant::now();
        loop {
            let text = self.stream_text(on_stderr);
            if text.contains(needle) {
                return Ok(text);
            }
            if let Some(status) = self.poll_exit() {
                // The last output may still be in the pipe.
                self.join_readers();
                let text = self.stream_text(on_stderr);
                if text.contains(needle) {
                    return Ok(text);
                }
                return Err(format!(
                    "{} exited ({status}) before printing {needle:?}",
                    self.name
                ));
            }
            if start.elapsed() > DEADLINE {
                panic!(
                    "{} did not print {needle:?} within {DEADLINE:?}\n{}",
                    self.name,
                    self.describe()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits for stderr to contain `needle`.
    pub fn wait_stderr(&mut self, needle: &str) -> String {
        self.wait_for(true, needle)
    }

    /// Waits for stdout to contain `needle`.
    pub fn wait_stdout(&mut self, needle: &str) -> String {
        self.wait_for(false, needle)
    }

    /// Waits for the readiness line of a server that listens on port 0 and
    /// prints where it is (`serving TLS on ADDR ...`, `listening on ADDR,
    /// ...`) on stderr (`on_stderr`) or stdout: the address right after the
    /// last `marker` so far.
    pub fn wait_addr(&mut self, on_stderr: bool, marker: &str) -> SocketAddr {
        let log = self.wait_for(on_stderr, marker);
        match addr_after(&log, marker) {
            Some(addr) => addr,
            None => panic!(
                "{}: no address after {marker:?}\n{}",
                self.name,
                self.describe()
            ),
        }
    }

    /// Waits for the n-th (1-based) stderr line containing `needle` and returns it.
    pub fn nth_stderr_line(&mut self, needle: &str, n: usize) -> String {
        let start = Instant::now();
        loop {
            let log = self.stderr();
            // Whole lines only: an unbuffered stderr writes a formatted
            // line in pieces, and a line read half-written misleads.
            let exited = !self.running();
            let whole = log
                .split_inclusive('\n')
                .filter(|l| exited || l.ends_with('\n'))
                .map(|l| l.trim_end_matches(['\n', '\r']));
            if let Some(line) = whole.filter(|l| l.contains(needle)).nth(n - 1) {
                return line.to_string();
            }
            assert!(
                self.running(),
                "{} exited before logging {needle:?} {n} times\n{}",
                self.name,
                self.describe()
            );
            assert!(
                start.elapsed() < DEADLINE,
                "{} did not log {needle:?} {n} times within {DEADLINE:?}\n{}",
                self.name,
                self.describe()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Waits for a stderr line containing `needle` and returns that line.
    pub fn stderr_line(&mut self, needle: &str) -> String {
        self.nth_stderr_line(needle, 1)
    }

    fn join_readers(&mut self) {
        // The pipes close when the child exits; a grandchild holding them
        // must not hang the test, so this wait has a deadline too.
        let start = Instant::now();
        while self.readers.iter().any(|r| !r.is_finished()) && start.elapsed() < DEADLINE {
            std::thread::sleep(Duration::from_millis(10));
        }
        for reader in self.readers.drain(..) {
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
    }

    /// Waits for the child to exit by itself (stdin stays as it is), with the
    /// deadline; all its output has been collected when this returns.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.poll_exit() {
                break status;
            }
            if start.elapsed() > DEADLINE {
                let _ = self.child.kill();
                panic!(
                    "{} did not exit within {DEADLINE:?}; killed it\n{}",
                    self.name,
                    self.describe()
                );
            }
            std::thread::sleep(POLL);
        };
        self.join_readers();
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() && self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The socket address right after the last `marker` in `log`.
fn addr_after(log: &str, marker: &str) -> Option<SocketAddr> {
    let rest = log.rsplit(marker).next()?;
    let word = rest.split([',', ' ', '\n', ';', ')']).next()?;
    word.parse().ok()
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error (ANSI colours removed).
    pub stderr: String,
}

impl Output {
    /// Stdout and stderr, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "status {}\n--- stdout:\n{}\n--- stderr:\n{}\n---",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs a command to completion with `input` on stdin, within the deadline.
pub fn run(name: &str, cmd: Command, input: &[u8]) -> Output {
    let mut proc = Proc::spawn(name, cmd);
    if !input.is_empty() {
        proc.write_stdin(input);
    }
    proc.close_stdin();
    let status = proc.wait_exit();
    Output {
        status,
        stdout: proc.stdout(),
        stderr: proc.stderr(),
    }
}

/// How many ports [`on_spare_port`] tries.
const PORT_ATTEMPTS: usize = 5;

/// Starts a foreign program that must be told a port number (openssl
/// `s_server`, stunnel, a config file naming two services): `start` gets a
/// loopback port that was free a moment ago and returns `Err(why)` when the
/// program could not listen there (it exited, e.g. "address in use": another
/// program took the port in between); then it is called again with another
/// port. Our own servers never need this: they listen on port 0 and print
/// their address ([`Proc::wait_addr`]).
pub fn on_spare_port<T>(what: &str, mut start: impl FnMut(u16) -> Result<T, String>) -> T {
    let mut failures = Vec::new();
    for _ in 0..PORT_ATTEMPTS {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free loopback port: {e}"));
        match start(port) {
            Ok(started) => return started,
            Err(why) => failures.push(format!("port {port}: {why}")),
        }
    }
    panic!(
        "{what} did not start on any of {PORT_ATTEMPTS} ports:\n{}",
        failures.join("\n")
    )
}

/// A loopback port where nothing listens, held (bound, not listening) for
/// as long as this value lives, so no other program can start listening
/// there: a connection to it is refused.
#[derive(Debug)]
pub struct ClosedPort {
    _socket: tokio::net::TcpSocket,
    /// The address.
    pub addr: SocketAddr,
}

impl ClosedPort {
    /// Binds a socket to 127.0.0.1:0 without listening.
    pub fn new() -> ClosedPort {
        let socket = tokio::net::TcpSocket::new_v4()
            .and_then(|s| {
                s.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
                Ok(s)
            })
            .unwrap_or_else(|e| panic!("binding 127.0.0.1:0: {e}"));
        let addr = socket
            .local_addr()
            .unwrap_or_else(|e| panic!("the bound address: {e}"));
        ClosedPort {
            _socket: socket,
            addr,
        }
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        ClosedPort::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_after_takes_the_word_after_the_last_marker() {
        let log =
            "x serving TLS on 127.0.0.1:1 (groups a)\nserving TLS on 127.0.0.1:4433 (groups b)";
        assert_eq!(
            addr_after(log, "serving TLS on "),
            Some(SocketAddr::from(([127, 0, 0, 1], 4433)))
        );
        assert_eq!(
            addr_after(
                "s: client tls listening on [::1]:80, connecting",
                "listening on "
            ),
            Some("[::1]:80".parse().unwrap_or_else(|e| panic!("{e}")))
        );
        assert_eq!(addr_after("listening on nothing", "listening on "), None);
    }

    #[test]
    fn a_closed_port_refuses_connections() {
        let closed = ClosedPort::new();
        let err = std::net::TcpStream::connect(closed.addr).map(|_| ());
        assert_eq!(
            err.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::ConnectionRefused)
        );
    }

    #[test]
    fn on_spare_port_tries_again_and_reports_every_attempt() {
        let mut calls = 0;
        let port = on_spare_port("demo", |port| {
            calls += 1;
            if calls < 3 {
                Err("taken".to_string())
            } else {
                Ok(port)
            }
        });
        assert_eq!(calls, 3);
        assert_ne!(port, 0);
        let failed = std::panic::catch_unwind(|| {
            on_spare_port("never", |_| -> Result<(), String> { Err("taken".into()) })
        });
        assert!(failed.is_err());
    }

    #[test]
    fn proc_waits_for_a_line_and_reports_an_early_exit() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo ready on 127.0.0.1:9 >&2; exit 3"]);
        let mut proc = Proc::spawn("sh", cmd);
        assert_eq!(
            proc.wait_addr(true, "ready on "),
            SocketAddr::from(([127, 0, 0, 1], 9))
        );
        let err = proc.try_wait_for(false, "never printed");
        assert!(
            matches!(&err, Err(why) if why.contains("exited")),
            "{err:?}"
        );
    }
}
