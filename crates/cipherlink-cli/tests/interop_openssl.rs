//! Interoperability with OpenSSL, driving the real `cipherlink` binary:
//!
//! - `openssl s_client` against `cipherlink serve --echo`;
//! - `cipherlink connect` against `openssl s_server -rev`;
//!
//! TLS 1.3, with and without mutual TLS, and the negotiated key-exchange group
//! checked on both sides. Debian's `openssl` (3.0, no ML-KEM) covers X25519
//! and P-256; the OpenSSL 4 build that scripts/setup-peers makes covers
//! X25519MLKEM768. A peer that could not be installed skips its tests loudly.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::path::Path;

use cipherlink_test_support::{peer, Peer};
use common::{
    args, connect, group_field, s_client_echo, s_client_group, s_server, token, Pki, Serve,
};

// ----- openssl s_client -> cipherlink serve -----

/// One s_client echo exchange against `cipherlink serve --echo`, checking the
/// group on both sides. `mtls` makes serve require a client certificate and
/// gives s_client ours.
fn s_client_case(
    openssl: &Path,
    client_groups: Option<&str>,
    serve_groups: Option<&str>,
    mtls: bool,
    expected: &str,
) {
    let pki = Pki::new(&[]);
    let mut serve_args = args(&[
        "--echo",
        "--cert",
        &pki.path("server.crt"),
        "--key",
        &pki.path("server.key"),
    ]);
    if let Some(groups) = serve_groups {
        serve_args.extend(args(&["--groups", groups]));
    }
    if mtls {
        serve_args.extend(args(&[
            "--ca",
            &pki.path("ca.crt"),
            "--require-client-cert",
        ]));
    }
    let mut serve = Serve::start(&serve_args);

    let mut extra = Vec::new();
    if let Some(groups) = client_groups {
        extra.extend(["-groups".to_string(), groups.to_string()]);
    }
    if mtls {
        extra.extend(args(&[
            "-cert",
            &pki.path("client.crt"),
            "-key",
            &pki.path("client.key"),
        ]));
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let line = token("s_client");
    let run = s_client_echo(
        openssl,
        serve.port(),
        &pki.path("ca.crt"),
        &extra,
        &line,
        true,
    );
    assert!(
        run.status.success(),
        "s_client failed: {}\n{}\n{}",
        run.status,
        run.text,
        serve.proc.describe()
    );
    assert!(
        run.text.contains("TLSv1.3"),
        "s_client did not report TLSv1.3:\n{}",
        run.text
    );
    assert!(
        run.text.contains("Verify return code: 0 (ok)"),
        "s_client did not verify cipherlink's certificate:\n{}",
        run.text
    );
    assert_eq!(
        s_client_group(&run.text).as_deref(),
        Some(expected),
        "group reported by s_client:\n{}",
        run.text
    );

    let accepted = serve.accepted(1);
    assert!(accepted.contains("TLSv1.3"), "{accepted}");
    assert_eq!(group_field(&accepted), Some(expected), "{accepted}");
    if mtls {
        assert!(
            accepted.contains("peer=CN=client"),
            "serve did not log the client's identity: {accepted}"
        );
    } else {
        assert!(accepted.contains("peer=anonymous"), "{accepted}");
    }
    // The echo went through the whole connection, which then closed cleanly.
    serve.log_line(&format!("closed after {} bytes", line.len() + 1));
}

#[test]
fn s_client_x25519_against_serve() {
    let Some(openssl) = peer!(Peer::Openssl) else {
        return;
    };
    s_client_case(&openssl, Some("X25519"), None, false, "X25519");
}

#[test]
fn s_client_p256_against_serve() {
    let Some(openssl) = peer!(Peer::Openssl) else {
        return;
    };
    s_client_case(
        &openssl,
        Some("P-256"),
        Some("P-256,X25519"),
        false,
        "P-256",
    );
}

#[test]
fn s_client_p384_only_against_serve_defaults_negotiates_p384() {
    let Some(openssl) = peer!(Peer::Openssl) else {
        return;
    };
    // serve names no groups: its defaults end with P-384 for clients (CNSA
    // suite profiles) that offer nothing else.
    s_client_case(&openssl, Some("P-384"), None, false, "P-384");
}

#[test]
fn s_client_x25519mlkem768_against_serve() {
    let Some(openssl) = peer!(Peer::Openssl4) else {
        return;
    };
    s_client_case(
        &openssl,
        Some("X25519MLKEM768"),
        Some("X25519MLKEM768"),
        false,
        "X25519MLKEM768",
    );
}

#[test]
fn s_client_default_groups_negotiate_hybrid_with_serve_defaults() {
    let Some(openssl) = peer!(Peer::Openssl4) else {
        return;
    };
    // Neither side names groups: OpenSSL 4's defaults and cipherlink's meet on the hybrid.
    s_client_case(&openssl, None, None, false, "X25519MLKEM768");
}

#[test]
fn s_client_mtls_x25519_against_serve() {
    let Some(openssl) = peer!(Peer::Openssl) else {
        return;
    };
    s_client_case(&openssl, Some("X25519"), None, true, "X25519");
}

#[test]
fn s_client_mtls_p256_against_serve() {
    let Some(openssl) = peer!(Peer::Openssl) else {
        return;
    };
    s_client_case(&openssl, Some("P-256"), None, true, "P-256");
}

#[test]
fn s_client_mtls_x25519mlkem768_against_serve() {
    let Some(openssl) = peer!(Peer::Openssl4) else {
        return;
    };
    s_client_case(
        &openssl,
        Some("X25519MLKEM768"),
        None,
        true,
        "X25519MLKEM768",
    );
}

/// A misbehaving client is refused with a logged reason, and the server goes on serving.
fn refused_then_good_client(openssl: &Path, bad_extra: &[&str], bad_reason: &str, mtls: bool) {
    let pki = Pki::new(&[]);
    let mut serve_args = args(&[
        "--echo",
        "--cert",
        &pki.path("server.crt"),
        "--key",
        &pki.path("server.key"),
        "--groups",
        "X25519MLKEM768,X25519",
    ]);
    let mut good_extra = vec!["-groups".to_string(), "X25519".to_string()];
    if mtls {
        serve_args.extend(args(&[
            "--ca",
            &pki.path("ca.crt"),
            "--require-client-cert",
        ]));
        good_extra.extend(args(&[
            "-cert",
            &pki.path("client.crt"),
            "-key",
            &pki.path("client.key"),
        ]));
    }
    let mut serve = Serve::start(&serve_args);

    let bad_line = token("refused");
    let bad = s_client_echo(
        openssl,
        serve.port(),
        &pki.path("ca.crt"),
        bad_extra,
        &bad_line,
        false,
    );
    assert!(
        !bad.status.success(),
        "s_client should have failed:\n{}\n{}",
        bad.text,
        serve.proc.describe()
    );
    // Everything before the first blank line is the connection report; the
    // echo could only appear as a line of its own.
    assert!(
        !bad.text.lines().any(|l| l.trim() == bad_line),
        "data went through a refused connection:\n{}",
        bad.text
    );
    let reason = serve.log_line(bad_reason);
    assert!(
        reason.contains("TLS with 127.0.0.1:"),
        "serve's log should name the peer: {reason}"
    );

    let good_extra: Vec<&str> = good_extra.iter().map(String::as_str).collect();
    let good_line = token("after-refusal");
    let good = s_client_echo(
        openssl,
        serve.port(),
        &pki.path("ca.crt"),
        &good_extra,
        &good_line,
        true,
    );
    assert!(
        good.status.success(),
        "the server stopped serving after a refused client:\n{}\n{}",
        good.text,
        serve.proc.describe()
    );
    let accepted = serve.accepted(1);
    assert_eq!(group_field(&accepted), Some("X25519"), "{accepted}");
    assert!(serve.proc.running(), "{}", serve.proc.describe());
}

#[test]
fn s_client_without_client_cert_is_refused_and_serve_keeps_serving() {
    let Some(openssl) = peer!(Peer::Openssl) else {
        return;
    };
    refused_then_good_client(
        &openssl,
        &["-groups", "X25519"],
        "the client presented no certificate but one is required",
        true,
    );
}

#[test]
fn s_client_with_only_unoffered_group_is_refused_and_serve_keeps_serving() {
    let Some(openssl) = peer!(Peer::Openssl) else {
        return;
    };
    // serve offers X25519MLKEM768,X25519; this client only P-384.
    refused_then_good_client(
        &openssl,
        &["-groups", "P-384"],
        "compare key-exchange groups",
        false,
    );
}

// ----- cipherlink connect -> openssl s_server -----

/// `cipherlink connect` against `openssl s_server -rev -naccept 1` (which
/// answers each line reversed, then exits when the client closes).
fn connect_case(
    openssl: &Path,
    server_groups: &str,
    connect_groups: Option<&str>,
    mtls: bool,
    expected: &str,
) {
    let pki = Pki::new(&[]);
    let mut server_args = args(&[
        "-tls1_3",
        "-groups",
        server_groups,
        "-cert",
        &pki.path("server.crt"),
        "-key",
        &pki.path("server.key"),
        "-rev",
        "-naccept",
        "1",
    ]);
    let mut connect_args = args(&["--ca", &pki.path("ca.crt")]);
    if let Some(groups) = connect_groups {
        connect_args.extend(args(&["--groups", groups]));
    }
    if mtls {
        // -Verify (capital): a client certificate is required, not just requested.
        server_args.extend(args(&["-Verify", "1", "-CAfile", &pki.path("ca.crt")]));
        connect_args.extend(args(&[
            "--cert",
            &pki.path("client.crt"),
            "--key",
            &pki.path("client.key"),
        ]));
    }
    let mut server = s_server(openssl, &server_args);

    let line = token("connect");
    let out = connect(
        format!("127.0.0.1:{}", server.port),
        &connect_args,
        format!("{line}\n").as_bytes(),
    );
    assert!(
        out.status.success(),
        "connect failed:\n{}\n{}",
        out.describe(),
        server.proc.describe()
    );
    let reversed: String = line.chars().rev().collect();
    assert_eq!(out.stdout.trim_end(), reversed, "{}", out.describe());
    let connected = out
        .stderr
        .lines()
        .find(|l| l.starts_with("connected to 127.0.0.1:"))
        .unwrap_or_else(|| panic!("no `connected to` line:\n{}", out.describe()));
    assert!(connected.contains("TLSv1.3"), "{connected}");
    assert_eq!(group_field(connected), Some(expected), "{connected}");
    assert!(
        connected.contains("peer=CN=localhost"),
        "connect should name the server's identity: {connected}"
    );

    server.proc.wait_exit();
    let report = server.proc.stderr();
    assert!(
        report.contains("Protocol version: TLSv1.3"),
        "{}",
        server.proc.describe()
    );
    // OpenSSL 3.2+ reports the group on the server side too.
    if let Some(temp_key) = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Peer Temp Key:"))
    {
        let name = temp_key.split(',').next().unwrap_or_default();
        assert_eq!(common::normalize_group(name), expected, "{report}");
    }
    let compact = report.replace(' ', "");
    if mtls {
        assert!(
            compact.contains("Peercertificate:CN=client"),
            "s_server did not see our client certificate:\n{report}"
        );
    } else {
        assert!(compact.contains("Nopeercertificate"), "{report}");
    }
}

#[test]
fn connect_x25519_to_s_server() {
    let Some(openssl) = peer!(Peer::Openssl) else {
        return;
    };
    // Our default offer leads with X25519MLKEM768, which OpenSSL 3.0 does not
    // know: the handshake must fall back to X25519.
    connect_case(&openssl, "X25519", None, false, "X25519");
}

#[test]
fn connect_p256_to_s_server() {
    let Some(openssl) = peer!(Peer::Openssl) else {
        return;
    };
    connect_case(&openssl, "P-256", Some("P-256"), false, "P-256");
}

#[test]
fn connect_x25519mlkem768_to_s_server() {
    let Some(openssl) = peer!(Peer::Openssl4) else {
        return;
    };
    connect_case(
        &openssl,
        "X25519MLKEM768",
        Some("X25519MLKEM768"),
        false,
        "X25519MLKEM768",
    );
}

#[test]
fn connect_mtls_x25519_to_s_server() {
    let Some(openssl) = peer!(Peer::Openssl) else {
        return;
    };
    connect_case(&openssl, "X25519", Some("X25519"), true, "X25519");
}

#[test]
fn connect_mtls_x25519mlkem768_to_s_server() {
    let Some(openssl) = peer!(Peer::Openssl4) else {
        return;
    };
    // The server prefers the hybrid among several; our default offer has it first.
    connect_case(
        &openssl,
        "X25519MLKEM768:X25519:P-256",
        None,
        true,
        "X25519MLKEM768",
    );
}

/// `connect` against a plain s_server that is expected to fail; returns its output.
fn connect_expecting_failure(
    openssl: &Path,
    pki: &Pki,
    server_extra: &[&str],
    connect_args: &[String],
) -> common::Output {
    let mut server_args = args(&[
        "-tls1_3",
        "-cert",
        &pki.path("server.crt"),
        "-key",
        &pki.path("server.key"),
        "-rev",
        "-naccept",
        "1",
    ]);
    server_args.extend(args(server_extra));
    let server = s_server(openssl, &server_args);
    let out = connect(
        format!("127.0.0.1:{}", server.port),
        connect_args,
        format!("{}\n", token("refused")).as_bytes(),
    );
    assert!(
        !out.status.success(),
        "connect should have failed:\n{}\n{}",
        out.describe(),
        server.proc.describe()
    );
    assert!(
        out.stdout.trim().is_empty(),
        "data came back through a failed connection:\n{}",
        out.describe()
    );
    out
}

#[test]
fn connect_with_wrong_ca_fails_naming_the_ca() {
    let Some(openssl) = peer!(Peer::Openssl) else {
        return;
    };
    let pki = Pki::new(&[]);
    // A CA with a different name: the server's issuer is simply unknown.
    let other = Pki::new(&["--ca-name", "some other CA"]);
    let out =
        connect_expecting_failure(&openssl, &pki, &[], &args(&["--ca", &other.path("ca.crt")]));
    assert!(
        out.stderr.contains("TLS with 127.0.0.1:")
            && out.stderr.contains("not signed by a trusted CA"),
        "{}",
        out.describe()
    );
    assert!(!out.stderr.contains("connected to"), "{}", out.describe());

    // A different CA that happens to share the name (two `cipherlink certs` runs).
    let twin = Pki::new(&[]);
    let out =
        connect_expecting_failure(&openssl, &pki, &[], &args(&["--ca", &twin.path("ca.crt")]));
    assert!(
        out.stderr.contains("trusted CA") && out.stderr.contains("share its name"),
        "{}",
        out.describe()
    );
}

#[test]
fn connect_to_server_with_only_unoffered_group_fails_clearly() {
    let Some(openssl) = peer!(Peer::Openssl) else {
        return;
    };
    let pki = Pki::new(&[]);
    let out = connect_expecting_failure(
        &openssl,
        &pki,
        &["-groups", "P-256"],
        &args(&[
            "--ca",
            &pki.path("ca.crt"),
            "--groups",
            "X25519MLKEM768,X25519",
        ]),
    );
    assert!(
        out.stderr.contains("handshake_failure") && out.stderr.contains("key-exchange groups"),
        "{}",
        out.describe()
    );
}

#[test]
fn connect_without_client_cert_to_server_requiring_one_fails_clearly() {
    let Some(openssl) = peer!(Peer::Openssl) else {
        return;
    };
    let pki = Pki::new(&[]);
    let out = connect_expecting_failure(
        &openssl,
        &pki,
        &["-Verify", "1", "-CAfile", &pki.path("ca.crt")],
        &args(&["--ca", &pki.path("ca.crt")]),
    );
    // In TLS 1.3 the client finishes its handshake before the server judges
    // the (missing) certificate, so the refusal arrives as the first read.
    assert!(
        out.stderr.contains("requires a client certificate"),
        "{}",
        out.describe()
    );
}
