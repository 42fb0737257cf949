//! Interoperability with Python's standard `ssl` module (the client of
//! Python's asyncio, requests, grpc-less stacks...) against the real
//! `cipherlink serve --echo`, with and without mutual TLS.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::process::Command;

use cipherlink_test_support::{peer, peer_tests, Peer};
use common::{group_field, pki, run, token, Serve, TestPki};

/// Connects with `ssl.create_default_context(cafile=...)` (which verifies the
/// chain and the host name), optionally presents a client certificate, sends
/// one line and prints what it learnt as `key value` lines. A TLS error is
/// printed as `error ...` with exit status 3.
const CLIENT: &str = r#"
import socket, ssl, sys
port, ca, line = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
if len(sys.argv) > 5:
    ctx.load_cert_chain(sys.argv[4], sys.argv[5])
print("openssl", ssl.OPENSSL_VERSION, flush=True)
try:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            print("version", tls.version(), flush=True)
            print("cipher", tls.cipher()[0], flush=True)
            tls.sendall((line + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = tls.recv(4096)
                if not chunk:
                    break
                data += chunk
            print("echo", data.decode().strip(), flush=True)
            tls.unwrap()
except ssl.SSLError as e:
    print("error", e, flush=True)
    sys.exit(3)
"#;

/// The value after `key ` on the script's output line that starts with it.
fn field<'a>(stdout: &'a str, key: &str) -> Option<&'a str> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
}

/// The group Python's OpenSSL picks first by default: the hybrid from
/// OpenSSL 3.5 on, X25519 before.
fn python_default_group(openssl_version: &str) -> &'static str {
    let mut numbers = openssl_version
        .trim_start_matches("OpenSSL ")
        .split(['.', ' '])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    if (major, minor) >= (3, 5) {
        "X25519MLKEM768"
    } else {
        "X25519"
    }
}

fn python_client(
    python: &std::path::Path,
    port: u16,
    pki: &TestPki,
    line: &str,
    mtls: bool,
) -> common::Output {
    let mut cmd = Command::new(python);
    cmd.arg("-c")
        .arg(CLIENT)
        .arg(port.to_string())
        .arg(pki.arg("ca.crt"))
        .arg(line);
    if mtls {
        cmd.arg(pki.arg("client.crt")).arg(pki.arg("client.key"));
    }
    run("python ssl client", cmd, b"")
}

/// The Python client sends a fresh `tag` line through `serve`, which must
/// echo it; the line and the client's output.
fn python_echoes(
    python: &std::path::Path,
    serve: &Serve,
    pki: &TestPki,
    tag: &str,
    mtls: bool,
) -> (String, common::Output) {
    let line = token(tag);
    let out = python_client(python, serve.port(), pki, &line, mtls);
    assert!(
        out.status.success(),
        "{}\n{}",
        out.describe(),
        serve.proc.describe()
    );
    assert_eq!(
        field(&out.stdout, "echo"),
        Some(line.as_str()),
        "{}",
        out.describe()
    );
    (line, out)
}

fn python_case(python: &std::path::Path, mtls: bool) {
    let pki = pki();
    let mut serve = Serve::echo(&pki, mtls, &[]);
    let (line, out) = python_echoes(python, &serve, &pki, "python", mtls);
    assert_eq!(
        field(&out.stdout, "version"),
        Some("TLSv1.3"),
        "{}",
        out.describe()
    );
    let cipher = field(&out.stdout, "cipher").unwrap_or_default();
    assert!(cipher.starts_with("TLS_"), "{}", out.describe());

    let accepted = serve.accepted(1);
    assert!(accepted.contains("TLSv1.3"), "{accepted}");
    assert!(
        accepted.contains(cipher.trim_start_matches("TLS_")),
        "serve and Python disagree on the cipher suite ({cipher}): {accepted}"
    );
    let expected = python_default_group(field(&out.stdout, "openssl").unwrap_or_default());
    assert_eq!(group_field(&accepted), Some(expected), "{accepted}");
    if mtls {
        assert!(accepted.contains("peer=CN=client"), "{accepted}");
    } else {
        assert!(accepted.contains("peer=anonymous"), "{accepted}");
    }
    // Python sent close_notify (unwrap): a clean close after exactly our bytes.
    serve.log_line(&format!("closed after {} bytes", line.len() + 1));
}

peer_tests! {
    fn python_ssl_client_against_serve(python = Peer::Python) {
        python_case(&python, false);
    }

    fn python_ssl_client_mtls_against_serve(python = Peer::Python) {
        python_case(&python, true);
    }
}

#[test]
fn python_ssl_client_without_cert_is_refused_by_mtls_serve() {
    let Some(python) = peer!(Peer::Python) else {
        return;
    };
    let pki = pki();
    let mut serve = Serve::echo(&pki, true, &[]);
    let out = python_client(&python, serve.port(), &pki, &token("refused"), false);
    assert_eq!(out.status.code(), Some(3), "{}", out.describe());
    assert!(
        field(&out.stdout, "error").is_some_and(|e| e.contains("CERTIFICATE_REQUIRED")),
        "{}",
        out.describe()
    );
    serve.log_line("the client presented no certificate but one is required");
    // ...and the next, properly equipped client is served.
    python_echoes(&python, &serve, &pki, "after-refusal", true);
}
