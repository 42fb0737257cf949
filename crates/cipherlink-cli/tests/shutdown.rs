//! Stopping a server: the first Ctrl-C closes open connections with
//! close_notify (clients see a clean end) and says so; a second one exits
//! at once, whatever is still open.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;

use common::*;

fn signal(proc: &Proc, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &proc.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[test]
fn the_first_interrupt_closes_open_connections_cleanly() {
    let pki = pki();
    let mut serve = Serve::echo(&pki, false, &[]);
    // A client that holds its connection open (stdin stays open).
    let mut cmd = cipherlink();
    cmd.arg("connect")
        .arg(serve.addr.to_string())
        .args(["--ca", &pki.arg("ca.crt")]);
    let mut client = Proc::spawn("cipherlink connect", cmd);
    client.write_stdin(b"hello\n");
    client.wait_stdout("hello");
    signal(&serve.proc, "INT");
    serve.log_line("server stopping: closed with close_notify");
    serve.log_line("stopped");
    assert!(
        serve.proc.wait_exit().success(),
        "{}",
        serve.proc.describe()
    );
    // The client saw close_notify, a clean end, not a cut.
    let status = client.wait_exit();
    assert!(status.success(), "{}", client.describe());
}

#[test]
fn a_second_interrupt_exits_at_once() {
    let pki = pki();
    let mut serve = Serve::echo(&pki, false, &[]);
    // A TCP connection that never finishes its handshake keeps the stop waiting.
    let mut stalled = TcpStream::connect(serve.addr).expect("connect");
    // Settling time for the server to accept it (nothing is logged on accept).
    std::thread::sleep(std::time::Duration::from_millis(500));
    signal(&serve.proc, "INT");
    serve.log_line("stopping: closing 1 open connection(s)");
    signal(&serve.proc, "TERM");
    let status = serve.proc.wait_exit();
    assert_eq!(status.code(), Some(143), "{}", serve.proc.describe());
    assert!(serve.proc.stderr().contains("second signal: exiting now"));
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest);
}

/// A plain proxy server in front of an echo backend.
fn plain_proxy() -> (Proc, std::net::SocketAddr) {
    let backend = echo_backend();
    let mut cmd = cipherlink();
    cmd.args(["proxy", "server", "--listen", "127.0.0.1:0", "--forward"])
        .arg(backend.to_string())
        .args(["--transport", "plain"]);
    let mut proc = Proc::spawn("proxy server", cmd);
    let addr = proc.wait_addr(true, "listening on ");
    (proc, addr)
}

/// A tunnel that stays open: it has carried one echo, and is still open.
fn open_tunnel(addr: std::net::SocketAddr) -> TcpStream {
    use std::io::Write;
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    stream.write_all(b"ping").expect("write");
    let mut back = [0u8; 4];
    stream.read_exact(&mut back).expect("echo");
    stream
}

/// The count in the stopping line is the tunnels still open, not those
/// that ended since the last accept; once they end, the proxy says it
/// stopped and exits 0.
#[test]
fn proxy_counts_open_tunnels_on_interrupt_and_says_it_stopped() {
    let (mut proxy, addr) = plain_proxy();
    let open: Vec<TcpStream> = (0..3).map(|_| open_tunnel(addr)).collect();
    // One more tunnel that ends before the interrupt.
    drop(open_tunnel(addr));
    proxy.nth_stderr_line("close:", 1);
    signal(&proxy, "INT");
    let line = proxy.stderr_line("waiting up to");
    assert!(line.contains("for 3 open tunnel(s)"), "{line}");
    drop(open);
    proxy.stderr_line("proxy stopped");
    assert!(proxy.wait_exit().success(), "{}", proxy.describe());
}

#[test]
fn proxy_exits_at_once_on_a_second_signal() {
    let (mut proxy, addr) = plain_proxy();
    let _open = open_tunnel(addr);
    signal(&proxy, "INT");
    proxy.stderr_line("for 1 open tunnel(s)");
    signal(&proxy, "INT");
    let status = proxy.wait_exit();
    assert_eq!(status.code(), Some(130), "{}", proxy.describe());
    assert!(proxy.stderr().contains("second signal: exiting now"));
}

/// `link serve`: the first interrupt waits for the open link and says it
/// stopped; the link's client gets its whole echo.
#[test]
fn link_serve_waits_for_open_links_and_says_it_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let link = |args: &[&str]| {
        let mut cmd = cipherlink();
        cmd.current_dir(d).arg("link").args(args);
        let out = run("link", cmd, b"");
        assert!(out.status.success(), "{}", out.describe());
    };
    link(&["keygen"]);
    link(&["invite", "--name", "alice", "--server", "127.0.0.1:1"]);
    let mut cmd = cipherlink();
    cmd.current_dir(d)
        .args(["link", "serve", "--echo", "--listen", "127.0.0.1:0"]);
    let mut serve = Proc::spawn("link serve", cmd);
    let addr = serve.wait_addr(true, "listening on ").to_string();
    let mut cmd = cipherlink();
    cmd.current_dir(d).args([
        "link",
        "connect",
        "alice.link",
        "--server",
        &addr,
        "--timeout",
        "20s",
    ]);
    let mut client = Proc::spawn("link connect", cmd);
    client.write_stdin(b"before\n");
    client.wait_stdout("before");
    signal(&serve, "INT");
    let line = serve.stderr_line("waiting up to");
    assert!(line.contains("1 open link(s)"), "{line}");
    client.write_stdin(b"after\n");
    client.wait_stdout("after");
    client.close_stdin();
    assert!(client.wait_exit().success(), "{}", client.describe());
    serve.stderr_line("stopped");
    assert!(serve.wait_exit().success(), "{}", serve.describe());
}

#[test]
fn link_serve_exits_at_once_on_a_second_signal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = cipherlink();
    cmd.current_dir(dir.path()).args(["link", "keygen"]);
    let out = run("link keygen", cmd, b"");
    assert!(out.status.success(), "{}", out.describe());
    let mut cmd = cipherlink();
    cmd.current_dir(dir.path())
        .args(["link", "invite", "--name", "a", "--server", "127.0.0.1:1"]);
    assert!(run("link invite", cmd, b"").status.success());
    let mut cmd = cipherlink();
    cmd.current_dir(dir.path())
        .args(["link", "serve", "--listen", "127.0.0.1:0"]);
    let mut serve = Proc::spawn("link serve", cmd);
    let addr = serve.wait_addr(true, "listening on ").to_string();
    let mut cmd = cipherlink();
    cmd.current_dir(dir.path())
        .args(["link", "connect", "a.link", "--server", &addr]);
    let mut client = Proc::spawn("link connect", cmd);
    client.write_stdin(b"held\n");
    serve.wait_stdout("held");
    signal(&serve, "INT");
    serve.stderr_line("1 open link(s)");
    signal(&serve, "TERM");
    let status = serve.wait_exit();
    assert_eq!(status.code(), Some(143), "{}", serve.describe());
    client.close_stdin();
}
