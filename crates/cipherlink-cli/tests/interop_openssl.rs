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

use cipherlink_test_support::{peer, peer_tests, Peer};
use common::{
    args, connect, group_field, pki, s_client_echo, s_client_group, s_server, token, SClientRun,
    Serve, TestPki,
};

// ----- openssl s_client -> cipherlink serve -----

/// s_client's options: `-groups` when given, and with `mtls` our client
/// certificate.
fn s_client_options(pki: &TestPki, groups: Option<&str>, mtls: bool) -> Vec<String> {
    let mut options = Vec::new();
    if let Some(groups) = groups {
        options.extend(args(&["-groups", groups]));
    }
    if mtls {
        options.extend(args(&[
            "-cert",
            &pki.arg("client.crt"),
            "-key",
            &pki.arg("client.key"),
        ]));
    }
    options
}

/// One s_client echo exchange with `options` against `serve`, which must
/// succeed; the line sent (a fresh `tag` token) and what s_client printed.
fn s_client_echoes(
    openssl: &Path,
    serve: &Serve,
    pki: &TestPki,
    options: &[String],
    tag: &str,
) -> (String, SClientRun) {
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    let line = token(tag);
    let run = s_client_echo(
        openssl,
        serve.port(),
        &pki.arg("ca.crt"),
        &options,
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
    (line, run)
}

/// One s_client echo exchange against `cipherlink serve --echo`, checking the
/// group on both sides. `mtls` makes serve require a client certificate and
/// gives s_client ours.
fn s_client_case(
    implementation: &str,
    openssl: &Path,
    client_groups: Option<&str>,
    serve_groups: Option<&str>,
    mtls: bool,
    expected: &str,
) {
    let pki = pki();
    let mut extra = vec!["--implementation", implementation];
    if let Some(groups) = serve_groups {
        extra.extend(["--groups", groups]);
    }
    let mut serve = Serve::echo(&pki, mtls, &extra);

    let options = s_client_options(&pki, client_groups, mtls);
    let (line, run) = s_client_echoes(openssl, &serve, &pki, &options, "s_client");
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

/// One `#[test]` per row, each running `case(implementation, &openssl,
/// groups, groups, mutual TLS, expected group)` when its OpenSSL is
/// installed (`implementation`: cipherlink's own, rustls or openssl). A row:
/// `name: peer, <case's two group lists>, mutual TLS => the group both
/// sides must report`.
macro_rules! group_tests {
    ($case:ident($implementation:literal) {
        $($(#[doc = $doc:literal])* $name:ident: $peer:ident, $a:expr, $b:expr, $mtls:expr => $group:expr;)*
    }) => {
        peer_tests! {$(
            $(#[doc = $doc])*
            fn $name(openssl = Peer::$peer) {
                $case($implementation, &openssl, $a, $b, $mtls, $group);
            }
        )*}
    };
}

// Rows: s_client's `-groups`, serve's `--groups`.
group_tests!(s_client_case("rustls") {
    s_client_x25519_against_serve: Openssl, Some("X25519"), None, false => "X25519";
    s_client_p256_against_serve: Openssl, Some("P-256"), Some("P-256,X25519"), false => "P-256";
    /// serve names no groups: its defaults end with P-384 for clients (CNSA
    /// suite profiles) that offer nothing else.
    s_client_p384_only_against_serve_defaults_negotiates_p384: Openssl, Some("P-384"), None, false => "P-384";
    s_client_x25519mlkem768_against_serve:
        Openssl4, Some("X25519MLKEM768"), Some("X25519MLKEM768"), false => "X25519MLKEM768";
    /// Neither side names groups: OpenSSL 4's defaults and cipherlink's meet on the hybrid.
    s_client_default_groups_negotiate_hybrid_with_serve_defaults: Openssl4, None, None, false => "X25519MLKEM768";
    s_client_mtls_x25519_against_serve: Openssl, Some("X25519"), None, true => "X25519";
    s_client_mtls_p256_against_serve: Openssl, Some("P-256"), None, true => "P-256";
    s_client_mtls_x25519mlkem768_against_serve: Openssl4, Some("X25519MLKEM768"), None, true => "X25519MLKEM768";
});

// The same against `serve --implementation openssl` (OpenSSL 3.6 inside
// cipherlink): foreign OpenSSL 3.0 and 4.0 clients, classical and hybrid.
group_tests!(s_client_case("openssl") {
    s_client_x25519_against_openssl_serve: Openssl, Some("X25519"), None, false => "X25519";
    s_client_x25519mlkem768_against_openssl_serve:
        Openssl4, Some("X25519MLKEM768"), Some("X25519MLKEM768"), false => "X25519MLKEM768";
    s_client_mtls_p256_against_openssl_serve: Openssl, Some("P-256"), None, true => "P-256";
    s_client_mtls_x25519mlkem768_against_openssl_serve:
        Openssl4, Some("X25519MLKEM768"), None, true => "X25519MLKEM768";
});

/// A misbehaving client is refused with a logged reason, and the server goes on serving.
fn refused_then_good_client(openssl: &Path, bad_extra: &[&str], bad_reason: &str, mtls: bool) {
    let pki = pki();
    let mut serve = Serve::echo(&pki, mtls, &["--groups", "X25519MLKEM768,X25519"]);

    let bad_line = token("refused");
    let bad = s_client_echo(
        openssl,
        serve.port(),
        &pki.arg("ca.crt"),
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

    // The server goes on serving: a good client is echoed.
    let good = s_client_options(&pki, Some("X25519"), mtls);
    s_client_echoes(openssl, &serve, &pki, &good, "after-refusal");
    let accepted = serve.accepted(1);
    assert_eq!(group_field(&accepted), Some("X25519"), "{accepted}");
    assert!(serve.proc.running(), "{}", serve.proc.describe());
}

peer_tests! {
    fn s_client_without_client_cert_is_refused_and_serve_keeps_serving(openssl = Peer::Openssl) {
        refused_then_good_client(
            &openssl,
            &["-groups", "X25519"],
            "the client presented no certificate but one is required",
            true,
        );
    }

    fn s_client_with_only_unoffered_group_is_refused_and_serve_keeps_serving(openssl = Peer::Openssl) {
        // serve offers X25519MLKEM768,X25519; this client only P-384.
        refused_then_good_client(
            &openssl,
            &["-groups", "P-384"],
            "compare key-exchange groups",
            false,
        );
    }
}

// ----- cipherlink connect -> openssl s_server -----

/// `cipherlink connect` against `openssl s_server -rev -naccept 1` (which
/// answers each line reversed, then exits when the client closes).
fn connect_case(
    implementation: &str,
    openssl: &Path,
    server_groups: &str,
    connect_groups: Option<&str>,
    mtls: bool,
    expected: &str,
) {
    let pki = pki();
    let mut server_args = args(&[
        "-tls1_3",
        "-groups",
        server_groups,
        "-cert",
        &pki.arg("server.crt"),
        "-key",
        &pki.arg("server.key"),
        "-rev",
        "-naccept",
        "1",
    ]);
    let mut connect_args = args(&[
        "--ca",
        &pki.arg("ca.crt"),
        "--implementation",
        implementation,
    ]);
    if let Some(groups) = connect_groups {
        connect_args.extend(args(&["--groups", groups]));
    }
    if mtls {
        // -Verify (capital): a client certificate is required, not just requested.
        server_args.extend(args(&["-Verify", "1", "-CAfile", &pki.arg("ca.crt")]));
        connect_args.extend(args(&[
            "--cert",
            &pki.arg("client.crt"),
            "--key",
            &pki.arg("client.key"),
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

// Rows: s_server's `-groups`, connect's `--groups`.
group_tests!(connect_case("rustls") {
    /// Our default offer leads with X25519MLKEM768, which OpenSSL 3.0 does
    /// not know: the handshake must fall back to X25519.
    connect_x25519_to_s_server: Openssl, "X25519", None, false => "X25519";
    connect_p256_to_s_server: Openssl, "P-256", Some("P-256"), false => "P-256";
    connect_x25519mlkem768_to_s_server:
        Openssl4, "X25519MLKEM768", Some("X25519MLKEM768"), false => "X25519MLKEM768";
    connect_mtls_x25519_to_s_server: Openssl, "X25519", Some("X25519"), true => "X25519";
    /// The server prefers the hybrid among several; our default offer has it first.
    connect_mtls_x25519mlkem768_to_s_server:
        Openssl4, "X25519MLKEM768:X25519:P-256", None, true => "X25519MLKEM768";
});

// The same with `connect --implementation openssl`.
group_tests!(connect_case("openssl") {
    /// Our default offer leads with the hybrid; OpenSSL 3.0 asks again for X25519.
    connect_openssl_x25519_to_s_server: Openssl, "X25519", None, false => "X25519";
    connect_openssl_x25519mlkem768_to_s_server:
        Openssl4, "X25519MLKEM768", Some("X25519MLKEM768"), false => "X25519MLKEM768";
    connect_openssl_mtls_x25519mlkem768_to_s_server:
        Openssl4, "X25519MLKEM768:X25519:P-256", None, true => "X25519MLKEM768";
});

/// `connect` against a plain s_server that is expected to fail, with every
/// one of `says` in its error output; returns its output.
fn connect_expecting_failure(
    openssl: &Path,
    pki: &TestPki,
    server_extra: &[&str],
    connect_args: &[String],
    says: &[&str],
) -> common::Output {
    let mut server_args = args(&[
        "-tls1_3",
        "-cert",
        &pki.arg("server.crt"),
        "-key",
        &pki.arg("server.key"),
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
    for words in says {
        assert!(
            out.stderr.contains(words),
            "no {words:?} in:\n{}",
            out.describe()
        );
    }
    out
}

#[test]
fn connect_with_wrong_ca_fails_naming_the_ca() {
    let Some(openssl) = peer!(Peer::Openssl) else {
        return;
    };
    let pki = pki();
    // A CA with a different name: the server's issuer is simply unknown.
    let other = TestPki::with_options(&cipherlink::certs::CertOptions {
        ca_name: "some other CA".into(),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let out = connect_expecting_failure(
        &openssl,
        &pki,
        &[],
        &args(&["--ca", &other.arg("ca.crt")]),
        &["TLS with 127.0.0.1:", "not signed by a trusted CA"],
    );
    assert!(!out.stderr.contains("connected to"), "{}", out.describe());

    // A different CA that happens to share the name (two `cipherlink certs` runs).
    let twin = common::pki();
    connect_expecting_failure(
        &openssl,
        &pki,
        &[],
        &args(&["--ca", &twin.arg("ca.crt")]),
        &["trusted CA", "share its name"],
    );
}

peer_tests! {
    fn connect_to_server_with_only_unoffered_group_fails_clearly(openssl = Peer::Openssl) {
        let pki = pki();
        let groups = ["--groups", "X25519MLKEM768,X25519"];
        let connect_args = args(&[&["--ca", &pki.arg("ca.crt")][..], &groups].concat());
        let expected = ["handshake_failure", "key-exchange groups"];
        connect_expecting_failure(&openssl, &pki, &["-groups", "P-256"], &connect_args, &expected);
    }

    fn connect_without_client_cert_to_server_requiring_one_fails_clearly(openssl = Peer::Openssl) {
        let pki = pki();
        let ca = pki.arg("ca.crt");
        // In TLS 1.3 the client finishes its handshake before the server
        // judges the (missing) certificate, so the refusal arrives as the
        // first read.
        let expected = ["requires a client certificate"];
        let server_extra = ["-Verify", "1", "-CAfile", &ca];
        connect_expecting_failure(&openssl, &pki, &server_extra, &args(&["--ca", &ca]), &expected);
    }
}
