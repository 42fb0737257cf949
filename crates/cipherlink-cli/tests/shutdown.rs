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
