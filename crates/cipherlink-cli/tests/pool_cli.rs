//! `cipherlink pool serve` and `pool send` end to end: two parties on
//! loopback (one by a bare port), a message and its echo, in plaintext and
//! over mutual TLS; the reply is printed as JSON.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use common::*;

/// One party's extra flags, and how the other registers it (`@CERT`).
#[derive(Default)]
struct Party {
    flags: Vec<String>,
    registered_as: String,
}

/// `pool serve --echo --count 1` as bob on a spare port (a bare port:
/// every interface); `pool send --reply` as alice; alice prints the echo.
fn echo_round_trip(alice: Party, bob: Party) {
    let (bob_port, alice_port) = (free_port(), free_port());
    let mut cmd = cipherlink();
    cmd.args(["pool", "serve", "--name", "bob", "--echo", "--count", "1"])
        .args(["--listen", &bob_port.to_string()])
        .args([
            "--peer",
            &format!("alice=127.0.0.1:{alice_port}{}", alice.registered_as),
        ])
        .args(&bob.flags);
    let mut server = Proc::spawn("pool serve", cmd);
    server.wait_stderr("Serving on");
    let mut cmd = cipherlink();
    cmd.args([
        "pool",
        "send",
        "--name",
        "alice",
        "--reply",
        "--timeout",
        "20s",
    ])
    .args(["--listen", &format!("127.0.0.1:{alice_port}")])
    .args([
        "--peer",
        &format!("bob=127.0.0.1:{bob_port}{}", bob.registered_as),
    ])
    .args(&alice.flags)
    .arg(r#"{"vector":[1,2,3],"name":"x"}"#);
    let out = run("pool send", cmd, b"");
    assert!(
        out.status.success(),
        "{}\n{}",
        out.describe(),
        server.describe()
    );
    let reply: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(
        reply["vector"],
        serde_json::json!([1, 2, 3]),
        "{}",
        out.stdout
    );
    assert_eq!(reply["name"], "x");
    assert!(server.wait_exit().success(), "{}", server.describe());
}

/// A loopback port free a moment ago (each party must know the other's
/// port before either starts).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

#[test]
fn two_parties_exchange_a_message_in_plaintext() {
    echo_round_trip(Party::default(), Party::default());
}

#[test]
fn two_parties_exchange_a_message_over_mutual_tls() {
    let pki = pki();
    // alice holds the client certificate, bob the server one; under TLS each
    // identifies the other by its certificate.
    let party = |name: &str| Party {
        flags: args(&[
            "--tls",
            "--cert",
            &pki.arg(&format!("{name}.crt")),
            "--key",
            &pki.arg(&format!("{name}.key")),
            "--ca",
            &pki.arg("ca.crt"),
        ]),
        registered_as: format!("@{}", pki.arg(&format!("{name}.crt"))),
    };
    echo_round_trip(party("client"), party("server"));
}
