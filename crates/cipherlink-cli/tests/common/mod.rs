//! Shared helpers for the `cipherlink` binary's integration and interop tests:
//! the binary itself, a running `cipherlink serve`, and readers for what
//! OpenSSL prints. The process harness and the PKI are the workspace's
//! (`cipherlink-test-support`).
//!
//! No helper asserts on timing: deadlines only stop a hung test.

#![allow(dead_code, unused_imports)] // each test file uses a different part of this module

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus};

pub use cipherlink_test_support::pki::TestPki;
pub use cipherlink_test_support::process::{
    on_spare_port, run, ClosedPort, Output, Proc, DEADLINE,
};

/// A unique marker for data sent through a tunnel, so it cannot be confused
/// with anything else a peer prints.
pub fn token(tag: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("cipherlink-{tag}-{}-{n}", std::process::id())
}

/// The `cipherlink` binary under test, with plain (uncoloured) logs, no
/// backtraces in error output, and a neutral working folder (no stray `.env`).
pub fn cipherlink() -> Command {
    cipherlink_test_support::process::cipherlink(env!("CARGO_BIN_EXE_cipherlink"))
}

/// The workspace's test PKI (what `cipherlink certs` writes) in a temporary folder.
pub fn pki() -> TestPki {
    TestPki::new().unwrap_or_else(|e| panic!("{e}"))
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
    /// it reports the address it is listening on (logged after binding: no
    /// probe connection needed, which would show up in its log as a failed
    /// handshake).
    pub fn start(args: &[String]) -> Serve {
        let mut cmd = cipherlink();
        cmd.args(["serve", "--listen", "127.0.0.1:0"]).args(args);
        let mut proc = Proc::spawn("cipherlink serve", cmd);
        let addr = proc.wait_addr(true, "serving TLS on ");
        Serve { proc, addr }
    }

    /// `cipherlink serve --echo` with `pki`'s server certificate; with
    /// `mtls`, requiring a client certificate from its CA; then `extra`.
    pub fn echo(pki: &TestPki, mtls: bool, extra: &[&str]) -> Serve {
        let mut list = args(&[
            "--echo",
            "--cert",
            &pki.arg("server.crt"),
            "--key",
            &pki.arg("server.key"),
        ]);
        if mtls {
            list.extend(args(&["--ca", &pki.arg("ca.crt"), "--require-client-cert"]));
        }
        list.extend(args(extra));
        Serve::start(&list)
    }

    /// The port, for peers that take one.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Waits for the n-th (1-based) `accepted:` log line and returns it.
    pub fn accepted(&mut self, n: usize) -> String {
        self.proc.nth_stderr_line("accepted: ", n)
    }

    /// Waits for a log line containing `needle` and returns that line.
    pub fn log_line(&mut self, needle: &str) -> String {
        self.proc.stderr_line(needle)
    }
}

/// Runs `cipherlink connect ADDR <args>` with `input` on stdin.
pub fn connect(addr: impl std::fmt::Display, args: &[String], input: &[u8]) -> Output {
    let mut cmd = cipherlink();
    cmd.arg("connect").arg(addr.to_string()).args(args);
    run("cipherlink connect", cmd, input)
}

// ----- proxies -----

/// A backend that echoes every connection until EOF, then closes.
pub fn echo_backend() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 16 * 1024];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = stream.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
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

/// Starts `openssl s_server -accept 127.0.0.1:PORT <args>` and waits until
/// it listens (it prints ACCEPT after listen(); no probe connection, which
/// would use up -naccept). s_server must be told a port: another port is
/// tried when it exits first (the port was taken meanwhile).
pub fn s_server(bin: &Path, args: &[String]) -> SServer {
    on_spare_port("openssl s_server", |port| {
        let mut cmd = openssl(bin);
        cmd.arg("s_server")
            .arg("-accept")
            .arg(format!("127.0.0.1:{port}"))
            .args(args);
        let mut proc = Proc::spawn("openssl s_server", cmd);
        proc.close_stdin();
        match proc.try_wait_for(false, "ACCEPT") {
            Ok(_) => Ok(SServer { proc, port }),
            Err(why) => Err(format!("{why}\n{}", proc.describe())),
        }
    })
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
