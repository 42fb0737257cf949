//! Shared helpers for the `cipherlink` binary's integration and interop tests:
//! child processes that die with the test, waits that always have a deadline,
//! a throwaway PKI made by `cipherlink certs`, and readers for what OpenSSL prints.
//!
//! No helper asserts on timing: deadlines only stop a hung test.

#![allow(dead_code)] // each test file uses a different part of this module

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any single wait may take before the test fails. Generous: the
/// machine is shared with compilers; this only stops a hung test.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A unique marker for data sent through a tunnel, so it cannot be confused
/// with anything else a peer prints.
pub fn token(tag: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("cipherlink-{tag}-{}-{n}", std::process::id())
}

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

/// A running child process with its output captured as it arrives. Killed
/// (and reaped) when dropped, so a failing test leaves nothing behind.
pub struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

fn pump(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => into
                    .lock()
                    .expect("output buffer lock")
                    .extend_from_slice(&buf[..n]),
            }
        }
    })
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
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            pump(child.stdout.take().expect("piped stdout"), stdout.clone()),
            pump(child.stderr.take().expect("piped stderr"), stderr.clone()),
        ];
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

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(
            &self.stdout.lock().expect("stdout lock"),
        ))
    }

    /// Everything written to stderr so far (ANSI colours removed).
    pub fn stderr(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(
            &self.stderr.lock().expect("stderr lock"),
        ))
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
        let stdin = self.stdin.as_mut().expect("stdin already closed");
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

    /// What the child wrote so far on stderr (`on_stderr`) or stdout.
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
        let start = Instant::now();
        loop {
            let text = self.stream_text(on_stderr);
            if text.contains(needle) {
                return text;
            }
            if let Some(status) = self.poll_exit() {
                // The last output may still be in the pipe.
                self.join_readers();
                let text = self.stream_text(on_stderr);
                if text.contains(needle) {
                    return text;
                }
                panic!(
                    "{} exited ({status}) before printing {needle:?}\n{}",
                    self.name,
                    self.describe()
                );
            }
            if start.elapsed() > DEADLINE {
                panic!(
                    "{} did not print {needle:?} within {DEADLINE:?}\n{}",
                    self.name,
                    self.describe()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
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
            std::thread::sleep(Duration::from_millis(20));
        };
        self.join_readers();
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.poll_exit_quiet().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Proc {
    fn poll_exit_quiet(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }
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

/// The `cipherlink` binary under test, with plain (uncoloured) logs, no
/// backtraces in error output, and a neutral working folder (no stray `.env`).
pub fn cipherlink() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cipherlink"));
    cmd.env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .env_remove("CIPHERLINK_LOG")
        .current_dir(std::env::temp_dir());
    cmd
}

/// A throwaway PKI written by `cipherlink certs --out DIR`.
pub struct Pki {
    /// The folder holding ca.crt, ca.key, server.crt, server.key, client.crt, client.key.
    pub dir: tempfile::TempDir,
}

/// The files `cipherlink certs` promises.
pub const PKI_FILES: [&str; 6] = [
    "ca.crt",
    "ca.key",
    "server.crt",
    "server.key",
    "client.crt",
    "client.key",
];

impl Pki {
    /// Runs `cipherlink certs --out <tempdir> <extra...>` and checks its files.
    pub fn new(extra: &[&str]) -> Pki {
        let dir = tempfile::tempdir().expect("temporary folder");
        let mut cmd = cipherlink();
        cmd.arg("certs").arg("--out").arg(dir.path()).args(extra);
        let out = run("cipherlink certs", cmd, b"");
        assert!(out.status.success(), "certs failed\n{}", out.describe());
        for file in PKI_FILES {
            let path = dir.path().join(file);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("certs did not write {}: {e}", path.display()));
            let header = if file.ends_with(".crt") {
                "-----BEGIN CERTIFICATE-----"
            } else {
                "PRIVATE KEY-----"
            };
            assert!(text.contains(header), "{file} is not PEM:\n{text}");
            assert!(
                out.stdout.contains(file),
                "certs did not report writing {file}\n{}",
                out.describe()
            );
        }
        Pki { dir }
    }

    /// The path of one of the files, as a string for command lines.
    pub fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// A running `cipherlink serve`.
pub struct Serve {
    /// The process (its stderr holds the log).
    pub proc: Proc,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Serve {
    /// Starts `cipherlink serve --listen 127.0.0.1:0 <args>` and waits until
    /// it reports the address it is listening on.
    pub fn start(args: &[String]) -> Serve {
        let mut cmd = cipherlink();
        cmd.args(["serve", "--listen", "127.0.0.1:0"]).args(args);
        let mut proc = Proc::spawn("cipherlink serve", cmd);
        let log = proc.wait_stderr("serving TLS on ");
        let addr = log
            .split("serving TLS on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("no address in the serve log:\n{log}"));
        // serve logs this line after binding: no probe connection needed (one
        // would show up in its log as a failed handshake).
        Serve { proc, addr }
    }

    /// The port, for peers that take one.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Waits for the n-th (1-based) `accepted:` log line and returns it.
    pub fn accepted(&mut self, n: usize) -> String {
        let start = Instant::now();
        loop {
            let log = self.proc.stderr();
            if let Some(line) = log.lines().filter(|l| l.contains("accepted: ")).nth(n - 1) {
                return line.to_string();
            }
            assert!(
                self.proc.running(),
                "serve exited before accepting connection {n}\n{}",
                self.proc.describe()
            );
            assert!(
                start.elapsed() < DEADLINE,
                "serve did not log connection {n} as accepted within {DEADLINE:?}\n{}",
                self.proc.describe()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a log line containing `needle` and returns that line.
    pub fn log_line(&mut self, needle: &str) -> String {
        let log = self.proc.wait_stderr(needle);
        log.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_default()
            .to_string()
    }
}

/// A loopback port that was free a moment ago (for peers that cannot be told
/// to pick their own; callers retry if it was taken in between).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// Runs `cipherlink connect ADDR <args>` with `input` on stdin.
pub fn connect(addr: impl std::fmt::Display, args: &[String], input: &[u8]) -> Output {
    let mut cmd = cipherlink();
    cmd.arg("connect").arg(addr.to_string()).args(args);
    run("cipherlink connect", cmd, input)
}

/// Owned strings from string slices, for argument lists.
pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The `group=NAME` field of a cipherlink `accepted:` / `connected to` line.
pub fn group_field(line: &str) -> Option<&str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("group="))
}

// ----- OpenSSL -----

/// An `openssl` command. A self-built OpenSSL (`<prefix>/bin/openssl`) gets
/// its own `<prefix>/ssl/openssl.cnf`, as scripts/setup-peers wrote it, so
/// the host's configuration cannot interfere.
pub fn openssl(bin: &Path) -> Command {
    let mut cmd = Command::new(bin);
    if let Some(prefix) = bin.parent().and_then(Path::parent) {
        let conf = prefix.join("ssl/openssl.cnf");
        if bin != Path::new("/usr/bin/openssl") && conf.is_file() {
            cmd.env("OPENSSL_CONF", conf);
        }
    }
    cmd.current_dir(std::env::temp_dir());
    cmd
}

/// Maps OpenSSL's group names onto cipherlink's (IANA) names.
pub fn normalize_group(name: &str) -> String {
    match name.trim().to_ascii_lowercase().as_str() {
        "x25519" => "X25519".into(),
        "prime256v1" | "secp256r1" | "p-256" => "P-256".into(),
        "secp384r1" | "p-384" => "P-384".into(),
        "x25519mlkem768" => "X25519MLKEM768".into(),
        "secp256r1mlkem768" => "SecP256r1MLKEM768".into(),
        "mlkem768" => "MLKEM768".into(),
        other => other.to_string(),
    }
}

/// The key-exchange group an `openssl s_client` run reports:
/// `Negotiated TLS1.3 group: X` (OpenSSL 3.2+), or `Server Temp Key: X, N bits`
/// / `Server Temp Key: ECDH, prime256v1, N bits` (OpenSSL 3.0).
pub fn s_client_group(output: &str) -> Option<String> {
    for line in output.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Negotiated TLS1.3 group:") {
            return Some(normalize_group(rest));
        }
        if let Some(rest) = line.strip_prefix("Server Temp Key:") {
            let parts: Vec<&str> = rest.split(',').map(str::trim).collect();
            let name = match parts.as_slice() {
                ["ECDH", curve, ..] => curve,
                [name, ..] => name,
                [] => continue,
            };
            return Some(normalize_group(name));
        }
    }
    None
}

/// A running `openssl s_server` on a loopback port.
pub struct SServer {
    /// The process.
    pub proc: Proc,
    /// Its port.
    pub port: u16,
}

/// Starts `openssl s_server -accept 127.0.0.1:PORT <args>` on a free port
/// and waits until it listens; retries when the port was taken meanwhile.
pub fn s_server(bin: &Path, args: &[String]) -> SServer {
    let mut last = String::new();
    for _attempt in 0..5 {
        let port = free_port();
        let mut cmd = openssl(bin);
        cmd.arg("s_server")
            .arg("-accept")
            .arg(format!("127.0.0.1:{port}"))
            .args(args);
        let mut proc = Proc::spawn("openssl s_server", cmd);
        proc.close_stdin();
        // s_server prints ACCEPT once it listens, or exits (port taken, bad option).
        let start = Instant::now();
        loop {
            // Printed after listen(); no probe connection (it would use up -naccept).
            if proc.stdout().contains("ACCEPT") {
                return SServer { proc, port };
            }
            if !proc.running() || start.elapsed() > DEADLINE {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        last = proc.describe();
    }
    panic!("openssl s_server did not start after 5 attempts\n{last}");
}

/// The result of one `openssl s_client` echo exchange.
pub struct SClientRun {
    /// Exit status.
    pub status: ExitStatus,
    /// Stdout and stderr together (s_client splits its report between them).
    pub text: String,
}

/// Connects `openssl s_client` (TLS 1.3, verifying the server against `ca`
/// and the name `localhost`) with `extra` options, sends `line`, and, when
/// `expect_echo`, waits for it to come back before closing stdin (s_client
/// then sends close_notify and exits). Without `expect_echo` stdin stays open
/// and this waits for s_client to exit by itself (e.g. on a fatal alert).
pub fn s_client_echo(
    bin: &Path,
    port: u16,
    ca: &str,
    extra: &[&str],
    line: &str,
    expect_echo: bool,
) -> SClientRun {
    let mut cmd = openssl(bin);
    cmd.arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "-tls1_3",
            "-CAfile",
            ca,
            "-verify_return_error",
            "-verify_hostname",
            "localhost",
        ])
        .args(extra);
    let mut proc = Proc::spawn("openssl s_client", cmd);
    proc.write_stdin(format!("{line}\n").as_bytes());
    if expect_echo {
        proc.wait_stdout(line);
        proc.close_stdin();
    }
    let status = proc.wait_exit();
    SClientRun {
        status,
        text: format!("{}\n{}", proc.stdout(), proc.stderr()),
    }
}
