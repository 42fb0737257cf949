//! `cipherlink link ...` end to end: keygen, invite, serve --echo, connect,
//! revoke (the running server re-reads its token store and refuses).

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_cipherlink");

fn run(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

struct Server {
    child: Child,
    addr: String,
    stderr: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(dir: &Path) -> Self {
        let mut child = Command::new(BIN)
            .current_dir(dir)
            .args(["link", "serve", "--echo", "--listen", "127.0.0.1:0"])
            .env("CIPHERLINK_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            addr,
            stderr: rx,
        }
    }

    /// Waits for a log line containing `needle` (bounded).
    fn wait_log(&self, needle: &str) -> String {
        loop {
            let l = self
                .stderr
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
            if l.contains(needle) {
                return l;
            }
        }
    }
}

#[test]
fn keygen_invite_serve_connect_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = ok(&run(d, &["link", "keygen"], b""));
    assert!(out.contains("public key "), "{out}");
    // A second keygen must not silently replace the key.
    assert!(!run(d, &["link", "keygen"], b"").status.success());
    ok(&run(
        d,
        &[
            "link",
            "invite",
            "--name",
            "alice",
            "--server",
            "127.0.0.1:1",
        ],
        b"",
    ));
    let text = std::fs::read_to_string(d.join("alice.link")).unwrap();
    assert!(
        text.starts_with("cipherlink-link 1\nname alice\n"),
        "{text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("alice.link"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "connection file readable by others");
    }

    let server = Server::start(d);
    let reply = ok(&run(
        d,
        &["link", "connect", "alice.link", "--server", &server.addr],
        b"hello over the link\n",
    ));
    assert_eq!(reply, "hello over the link\n");
    server.wait_log("link from alice");

    ok(&run(d, &["link", "revoke", "--name", "alice"], b""));
    server.wait_log("reloaded");
    let refused = run(
        d,
        &["link", "connect", "alice.link", "--server", &server.addr],
        b"x",
    );
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("refused the token"), "{err}");
}
