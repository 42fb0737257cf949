//! The `cipherlink` command's own behaviour, no foreign peer: certificates of
//! every algorithm work with serve/connect, configuration files work, and
//! user mistakes end with a non-zero status and a message that names the
//! file, the field or the valid choices.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::path::Path;

use common::{args, cipherlink, connect, group_field, pki, run, token, ClosedPort, Serve, TestPki};

/// Runs `cipherlink certs --out <tempdir> <extra...>` and checks that it
/// wrote (and reported) every file, as PEM.
fn certs_command(extra: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut cmd = cipherlink();
    cmd.arg("certs").arg("--out").arg(dir.path()).args(extra);
    let out = run("cipherlink certs", cmd, b"");
    assert!(out.status.success(), "certs failed\n{}", out.describe());
    for file in cipherlink_test_support::pki::FILES {
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
    dir
}

/// serve (mutual TLS) and connect with one PKI: one echoed line, and both
/// sides report the other's identity.
fn round_trip(dir: &Path, extra_connect: &[&str]) -> (String, String) {
    let file = |name: &str| dir.join(name).display().to_string();
    let mut serve = Serve::start(&args(&[
        "--echo",
        "--cert",
        &file("server.crt"),
        "--key",
        &file("server.key"),
        "--ca",
        &file("ca.crt"),
        "--require-client-cert",
    ]));
    let mut connect_args = args(&[
        "--ca",
        &file("ca.crt"),
        "--cert",
        &file("client.crt"),
        "--key",
        &file("client.key"),
    ]);
    connect_args.extend(args(extra_connect));
    let line = token("cli");
    let out = connect(serve.addr, &connect_args, format!("{line}\n").as_bytes());
    assert!(
        out.status.success(),
        "{}\n{}",
        out.describe(),
        serve.proc.describe()
    );
    assert_eq!(out.stdout, format!("{line}\n"), "{}", out.describe());
    let connected = out
        .stderr
        .lines()
        .find(|l| l.starts_with("connected to "))
        .unwrap_or_else(|| panic!("no `connected to` line:\n{}", out.describe()))
        .to_string();
    assert!(connected.contains("TLSv1.3"), "{connected}");
    assert!(connected.contains("peer=CN=localhost"), "{connected}");
    let accepted = serve.accepted(1);
    assert!(accepted.contains("peer=CN=client"), "{accepted}");
    (connected, accepted)
}

fn algorithm_round_trip(algorithm: &str) {
    let dir = certs_command(&["--algorithm", algorithm]);
    let (connected, accepted) = round_trip(dir.path(), &[]);
    // Our own default offer leads with the hybrid on both sides.
    assert_eq!(
        group_field(&connected),
        Some("X25519MLKEM768"),
        "{connected}"
    );
    assert_eq!(group_field(&accepted), Some("X25519MLKEM768"), "{accepted}");
}

#[test]
fn certs_p256_default_work_with_serve_and_connect() {
    algorithm_round_trip("p256");
}

#[test]
fn certs_p384_work_with_serve_and_connect() {
    algorithm_round_trip("p384");
}

#[test]
fn certs_ed25519_work_with_serve_and_connect() {
    algorithm_round_trip("ed25519");
}

#[test]
fn certs_rsa2048_work_with_serve_and_connect() {
    algorithm_round_trip("rsa2048");
}

#[test]
fn certs_rejects_unknown_algorithm_listing_valid_ones() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut cmd = cipherlink();
    cmd.arg("certs")
        .arg("--out")
        .arg(dir.path())
        .args(["--algorithm", "dsa"]);
    let out = run("cipherlink certs", cmd, b"");
    assert!(!out.status.success(), "{}", out.describe());
    for name in ["p256", "ed25519", "rsa2048"] {
        assert!(out.stderr.contains(name), "{}", out.describe());
    }
    assert!(
        std::fs::read_dir(dir.path())
            .expect("listing the folder")
            .next()
            .is_none(),
        "files were written despite the error"
    );
}

#[test]
fn serve_with_missing_cert_file_names_file_and_field() {
    let pki = pki();
    let missing = pki.dir().join("no-such-server.crt");
    let mut cmd = cipherlink();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--echo", "--cert"])
        .arg(&missing)
        .args(["--key", &pki.arg("server.key")]);
    let out = run("cipherlink serve", cmd, b"");
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stderr.contains(&missing.display().to_string()),
        "the message should name the file:\n{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("`certificate`"),
        "the message should name the field:\n{}",
        out.describe()
    );
    assert!(!out.stderr.contains("serving TLS on"), "{}", out.describe());
}

#[test]
fn serve_with_mismatched_key_names_both_files() {
    let pki = pki();
    let mut cmd = cipherlink();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--echo"])
        .args(["--cert", &pki.arg("server.crt")])
        .args(["--key", &pki.arg("client.key")]);
    let out = run("cipherlink serve", cmd, b"");
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("client.key")
            && out.stderr.contains("server.crt")
            && out.stderr.contains("does not match"),
        "{}",
        out.describe()
    );
}

#[test]
fn connect_to_closed_port_fails_with_clear_message() {
    let pki = pki();
    // Held, not listening: refused, and no other program can listen there.
    let closed = ClosedPort::new();
    let port = closed.addr.port();
    let out = connect(
        format!("127.0.0.1:{port}"),
        &args(&["--ca", &pki.arg("ca.crt")]),
        b"hello\n",
    );
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stderr
            .contains(&format!("connecting to 127.0.0.1:{port}"))
            && out.stderr.contains("refused"),
        "{}",
        out.describe()
    );
    assert!(out.stdout.is_empty(), "{}", out.describe());
}

#[test]
fn unknown_group_fails_listing_valid_names() {
    let pki = pki();
    for sub in ["connect", "serve", "bench proxy"] {
        let mut cmd = cipherlink();
        cmd.args(sub.split(' '));
        match sub {
            "connect" => {
                cmd.args(["127.0.0.1:9", "--ca", &pki.arg("ca.crt")]);
            }
            "serve" => {
                cmd.args(["--listen", "127.0.0.1:0", "--cert", &pki.arg("server.crt")])
                    .args(["--key", &pki.arg("server.key")]);
            }
            // Refused while parsing, before any proxy starts.
            _ => {}
        }
        cmd.args(["--groups", "X25519,kyber"]);
        let out = run("cipherlink", cmd, b"");
        assert!(!out.status.success(), "{sub}: {}", out.describe());
        for expected in [
            "--groups",
            "\"kyber\"",
            "X25519MLKEM768",
            "X25519",
            "P-256",
            "P-384",
        ] {
            assert!(
                out.stderr.contains(expected),
                "{sub}: the message should contain {expected}:\n{}",
                out.describe()
            );
        }
    }
}

#[test]
fn config_files_configure_serve_and_connect() {
    let pki = pki();
    // Relative paths are taken relative to the configuration file's folder.
    let server_toml = pki.dir().join("server.toml");
    std::fs::write(
        &server_toml,
        r#"
key_exchange = ["X25519MLKEM768", "P-256"]
certificate = "server.crt"
private_key = "server.key"
trusted_cas = ["ca.crt"]
require_client_cert = true
allowed_identities = ["client"]
"#,
    )
    .expect("writing server.toml");
    let client_toml = pki.dir().join("client.toml");
    std::fs::write(
        &client_toml,
        r#"
key_exchange = ["P-256"]
certificate = "client.crt"
private_key = "client.key"
trusted_cas = ["ca.crt"]
server_name = "localhost"
"#,
    )
    .expect("writing client.toml");

    let server_config = server_toml.display().to_string();
    let mut serve = Serve::start(&args(&["--echo", "--config", &server_config]));
    let log = serve.proc.stderr();
    assert!(
        log.contains("groups X25519MLKEM768,P-256") && log.contains("client certificate required"),
        "serve did not take its settings from the file:\n{log}"
    );

    let client_config = client_toml.display().to_string();
    let line = token("config");
    let out = connect(
        serve.addr,
        &args(&["--config", &client_config]),
        format!("{line}\n").as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        out.describe(),
        serve.proc.describe()
    );
    assert_eq!(out.stdout, format!("{line}\n"));
    // The client file offers only P-256, so that is what both sides settle on.
    let accepted = serve.accepted(1);
    assert_eq!(group_field(&accepted), Some("P-256"), "{accepted}");
    assert!(accepted.contains("peer=CN=client"), "{accepted}");
    assert!(out.stderr.contains("group=P-256"), "{}", out.describe());

    // A flag overrides the same field of the file.
    let out = connect(
        serve.addr,
        &args(&["--config", &client_config, "--groups", "X25519MLKEM768"]),
        b"x\n",
    );
    assert!(out.status.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("group=X25519MLKEM768"),
        "{}",
        out.describe()
    );
}

#[test]
fn config_file_mistakes_name_the_file_and_field() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "certificat = \"server.crt\"\n").expect("writing bad.toml");
    let mut cmd = cipherlink();
    cmd.args(["connect", "127.0.0.1:9", "--config"]).arg(&bad);
    let out = run("cipherlink connect", cmd, b"");
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("bad.toml") && out.stderr.contains("certificat"),
        "{}",
        out.describe()
    );

    let missing = dir.path().join("missing.toml");
    let mut cmd = cipherlink();
    cmd.args(["connect", "127.0.0.1:9", "--config"])
        .arg(&missing);
    let out = run("cipherlink connect", cmd, b"");
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("missing.toml") && out.stderr.contains("--config"),
        "{}",
        out.describe()
    );
}

/// The options that weaken verification are `--dangerous-*` flags; a
/// combination that would accept any public certificate is refused with the
/// reason, and the old flag names still parse (hidden from --help).
#[test]
fn dangerous_flags_say_so_and_refuse_what_trusts_everyone() {
    let out = connect(
        "127.0.0.1:9",
        &args(&["--ca", "system", "--dangerous-skip-server-name-check"]),
        b"",
    );
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("--dangerous-skip-server-name-check")
            && out.stderr.contains("public CA"),
        "{}",
        out.describe()
    );

    // The old name parses: the failure is the missing CA, not the flag.
    let out = connect("127.0.0.1:9", &args(&["--accept-legacy-certs"]), b"");
    assert!(!out.status.success(), "{}", out.describe());
    assert!(out.stderr.contains("trusted_cas"), "{}", out.describe());

    let mut cmd = cipherlink();
    cmd.args(["connect", "--help"]);
    let help = run("cipherlink connect --help", cmd, b"");
    assert!(help.status.success(), "{}", help.describe());
    assert!(
        help.stdout.contains("--dangerous-accept-legacy-certs")
            && help.stdout.contains("--dangerous-accept-cn-only")
            && !help.stdout.contains("--accept-legacy-certs"),
        "{}",
        help.describe()
    );
}

/// `certs` over existing files: keys end up 0600 even where a 0644 file
/// was, and a symlink in the way is replaced, not written through.
#[cfg(unix)]
#[test]
fn certs_replaces_existing_keys_with_0600_files_and_never_follows_symlinks() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let dir = tempfile::tempdir().expect("temporary folder");
    let out = dir.path().join("pki");
    std::fs::create_dir(&out).expect("creating the output folder");
    let server_key = out.join("server.key");
    std::fs::write(&server_key, "old key\n").expect("writing an old key");
    std::fs::set_permissions(&server_key, std::fs::Permissions::from_mode(0o644))
        .expect("chmod 0644");
    let elsewhere = dir.path().join("elsewhere.txt");
    std::fs::write(&elsewhere, "not a key\n").expect("writing the symlink target");
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o644))
        .expect("chmod 0644");
    symlink(&elsewhere, out.join("ca.key")).expect("making a symlink");

    let mut cmd = cipherlink();
    cmd.args(["certs", "--force", "--out"]).arg(&out);
    let run_out = run("cipherlink certs", cmd, b"");
    assert!(run_out.status.success(), "{}", run_out.describe());

    for key in ["ca.key", "server.key", "client.key"] {
        let path = out.join(key);
        let meta = std::fs::symlink_metadata(&path).expect("key written");
        assert!(meta.file_type().is_file(), "{key} is not a regular file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{key}");
        let text = std::fs::read_to_string(&path).expect("reading the key");
        assert!(text.contains("PRIVATE KEY"), "{key}: {text}");
    }
    assert_eq!(
        std::fs::read_to_string(&elsewhere).expect("reading the symlink target"),
        "not a key\n",
        "the key was written through the symlink"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .expect("listing the output folder")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn connect_without_ca_says_which_option_is_missing() {
    let out = connect("127.0.0.1:9", &[], b"");
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("trusted_cas") && out.stderr.contains("ca.crt"),
        "{}",
        out.describe()
    );
}

/// A client that connects and then says nothing is closed after
/// `--idle-timeout`, with the reason in serve's log; `connect` ends when the
/// server closes even though its stdin is still open.
#[test]
fn idle_client_is_closed_and_connect_ends_with_the_server() {
    let pki = pki();
    let mut serve = Serve::echo(&pki, false, &["--idle-timeout", "1s"]);
    let mut cmd = cipherlink();
    cmd.arg("connect")
        .arg(serve.addr.to_string())
        .args(["--ca", &pki.arg("ca.crt")]);
    // Its stdin stays open and empty for the whole test.
    let mut client = common::Proc::spawn("cipherlink connect", cmd);
    client.wait_stderr("connected to ");
    let status = client.wait_exit();
    assert!(status.success(), "{}", client.describe());
    let line = serve.log_line("--idle-timeout");
    assert!(line.contains("idle for 1s"), "{line}");
}

/// Group spellings every command accepts, and the group each names.
const GROUP_SPELLINGS: [(&str, &str); 9] = [
    ("X25519MLKEM768", "X25519MLKEM768"),
    ("x25519mlkem768", "X25519MLKEM768"),
    ("SecP256r1MLKEM768", "SecP256r1MLKEM768"),
    ("X25519", "X25519"),
    ("P-256", "P-256"),
    ("prime256v1", "P-256"),
    ("secp256r1", "P-256"),
    ("secp384r1", "P-384"),
    ("mlkem768", "MLKEM768"),
];

/// A command that stops right after its flags were parsed: `(name, args
/// before --groups, what the error says once parsing succeeded)`.
fn stops_after_parsing(pki: &TestPki) -> Vec<(&'static str, Vec<String>, &'static str)> {
    vec![
        (
            "connect",
            args(&["connect", "127.0.0.1:9", "--ca", &pki.arg("ca.crt")]),
            "is not permitted by compliance policy",
        ),
        (
            "bench conn",
            args(&["bench", "conn", "--mode", "tls", "--duration=0"]),
            "--duration must be more than 0",
        ),
        (
            "rpc serve",
            args(&["rpc", "serve", "--host", "not-an-address", "--plaintext"]),
            "not-an-address",
        ),
    ]
}

/// tls_args (connect, serve), bench conn and rpc take the same group
/// spellings through one parser: each accepted spelling gets past parsing
/// in all three (and, where a compliance policy applies, is reported under
/// its canonical name), each unknown one is refused with the same message,
/// and the three `--help` texts list the same names.
#[test]
fn each_group_spelling_parses_the_same_in_every_command() {
    let pki = pki();
    for (spelling, canonical) in GROUP_SPELLINGS {
        for (name, before, after_parsing) in stops_after_parsing(&pki) {
            let mut cmd = cipherlink();
            cmd.args(&before);
            if name == "connect" {
                // Refuses the group, naming it: the policy saw what was parsed.
                let pure = canonical == "MLKEM768";
                let policy = if pure {
                    "require_hybrid"
                } else {
                    "require-pure"
                };
                cmd.args(["--post-quantum", policy, "--groups", spelling]);
            } else {
                cmd.args(["--groups", &format!("X25519,{spelling}")]);
            }
            cmd.env_remove("TLS_GROUPS");
            let out = run(name, cmd, b"");
            assert!(
                !out.status.success(),
                "{name} {spelling}: {}",
                out.describe()
            );
            assert!(
                out.stderr.contains(after_parsing) && !out.stderr.contains("invalid value"),
                "{name} {spelling}: {}",
                out.describe()
            );
            if name == "connect" {
                assert!(
                    out.stderr
                        .contains(&format!("group {canonical} is not permitted")),
                    "{name} {spelling}: {}",
                    out.describe()
                );
            }
        }
    }
    let mut refusals = Vec::new();
    for (name, before, _) in stops_after_parsing(&pki) {
        let mut cmd = cipherlink();
        cmd.args(&before).args(["--groups", "X25519,kyber768"]);
        let out = run(name, cmd, b"");
        assert_eq!(out.status.code(), Some(2), "{name}: {}", out.describe());
        let message = out
            .stderr
            .lines()
            .find(|l| l.contains("invalid value"))
            .unwrap_or_else(|| panic!("{name}: {}", out.describe()))
            .to_string();
        assert!(
            message.contains("\"kyber768\"") && message.contains("P-384 (secp384r1)"),
            "{name}: {message}"
        );
        refusals.push(message);
    }
    assert!(refusals.windows(2).all(|w| w[0] == w[1]), "{refusals:#?}");

    let mut helps = Vec::new();
    for command in [&["connect"][..], &["bench", "conn"], &["rpc", "serve"]] {
        let mut cmd = cipherlink();
        cmd.args(command).arg("--help");
        let out = run("help", cmd, b"");
        let block: Vec<&str> = out
            .stdout
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("--groups"))
            .skip_while(|l| !l.contains("Possible values:"))
            .take_while(|l| !l.trim().is_empty())
            .collect();
        assert!(block.len() > 6, "{command:?}: {}", out.describe());
        helps.push(block.join("\n"));
    }
    assert!(helps.windows(2).all(|w| w[0] == w[1]), "{helps:#?}");
}

/// `--classical` and `--post-quantum` take the TOML file's spellings too.
#[test]
fn compliance_flags_take_the_toml_spellings() {
    let pki = pki();
    for (flag, value, shown) in [
        ("--classical", "forbid", "classical=forbid"),
        ("--classical", "FORBID", "classical=forbid"),
        (
            "--post-quantum",
            "require_hybrid",
            "post_quantum=require_hybrid",
        ),
        (
            "--post-quantum",
            "require-hybrid",
            "post_quantum=require_hybrid",
        ),
        (
            "--post-quantum",
            "require_pure",
            "post_quantum=require_pure",
        ),
    ] {
        let mut cmd = cipherlink();
        cmd.args(["connect", "127.0.0.1:9", "--ca", &pki.arg("ca.crt")])
            .args(["--groups", "X25519", flag, value]);
        let out = run("connect", cmd, b"");
        assert!(
            out.stderr.contains("group X25519 is not permitted") && out.stderr.contains(shown),
            "{flag} {value}: {}",
            out.describe()
        );
    }
}

/// The README's policy example: `--post-quantum require-hybrid` without
/// `--groups` trims the defaults (as OpenSSL's security level does), so the
/// server and client talk X25519MLKEM768. A list the user typed that the
/// policy forbids is refused, naming where it came from.
#[test]
fn a_policy_trims_the_defaults_and_refuses_only_a_chosen_list() {
    let pki = pki();
    let mut server = Serve::echo(&pki, false, &["--post-quantum", "require-hybrid"]);
    let line = server.log_line("serving TLS on ");
    assert!(
        line.contains("groups X25519MLKEM768,") || line.contains("groups X25519MLKEM768 "),
        "{line}"
    );
    let out = connect(
        server.addr,
        &args(&["--ca", &pki.arg("ca.crt"), "--classical", "forbid"]),
        b"hello\n",
    );
    assert!(out.status.success(), "{}", out.describe());
    assert_eq!(out.stdout, "hello\n");
    assert!(
        out.stderr.contains("group=X25519MLKEM768"),
        "{}",
        out.describe()
    );

    // Chosen on the command line: the flag is named.
    let out = connect(
        server.addr,
        &args(&[
            "--ca",
            &pki.arg("ca.crt"),
            "--post-quantum",
            "require-hybrid",
            "--groups",
            "X25519",
        ]),
        b"",
    );
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("--groups") && out.stderr.contains("group X25519 is not permitted"),
        "{}",
        out.describe()
    );
    // Chosen in a file: the file and its field are named, not a flag.
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("client.toml");
    std::fs::write(
        &toml,
        "key_exchange = [\"X25519\"]\n[compliance]\npost_quantum = \"require_hybrid\"\n",
    )
    .unwrap();
    let out = connect(
        server.addr,
        &args(&[
            "--ca",
            &pki.arg("ca.crt"),
            "--config",
            &toml.display().to_string(),
        ]),
        b"",
    );
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stderr
            .contains(&format!("`key_exchange` in {}", toml.display()))
            && !out.stderr.contains("--groups"),
        "{}",
        out.describe()
    );
}

/// A second `certs` into the same folder keeps the CA (peers that trust it
/// go on trusting) and issues new leaves under it; `--force` makes a new
/// CA; half a CA is refused rather than replaced.
#[test]
fn certs_keeps_an_existing_ca_unless_forced() {
    let dir = certs_command(&[]);
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let (ca_crt, ca_key, server_crt) = (read("ca.crt"), read("ca.key"), read("server.crt"));

    let mut cmd = cipherlink();
    cmd.args(["certs", "--out"]).arg(dir.path());
    let out = run("cipherlink certs", cmd, b"");
    assert!(out.status.success(), "{}", out.describe());
    assert!(out.stderr.contains("kept the CA"), "{}", out.describe());
    assert_eq!(read("ca.crt"), ca_crt);
    assert_eq!(read("ca.key"), ca_key);
    assert_ne!(read("server.crt"), server_crt);
    // The new leaves chain to the kept CA (round_trip checks both identities).
    round_trip(dir.path(), &[]);

    let mut cmd = cipherlink();
    cmd.args(["certs", "--force", "--out"]).arg(dir.path());
    let out = run("cipherlink certs", cmd, b"");
    assert!(out.status.success(), "{}", out.describe());
    assert_ne!(read("ca.crt"), ca_crt);

    std::fs::remove_file(dir.path().join("ca.key")).unwrap();
    let mut cmd = cipherlink();
    cmd.args(["certs", "--out"]).arg(dir.path());
    let out = run("cipherlink certs", cmd, b"");
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("no ca.key") && out.stderr.contains("--force"),
        "{}",
        out.describe()
    );
}

/// A CA another user planted in the --out folder never signs our leaves:
/// their folder is refused (they could swap what we write), and a CA key
/// that does not belong to the CA certificate beside it is refused too.
#[test]
fn certs_never_issues_under_a_planted_or_mismatched_ca() {
    use std::os::unix::fs::MetadataExt;
    let theirs = certs_command(&[]);
    let ours = certs_command(&[]);
    // A key that is not ca.crt's: ours' ca.key beside theirs' ca.crt.
    std::fs::copy(ours.path().join("ca.key"), theirs.path().join("ca.key")).unwrap();
    let mut cmd = cipherlink();
    cmd.args(["certs", "--out"]).arg(theirs.path());
    let out = run("cipherlink certs", cmd, b"");
    assert!(!out.status.success(), "{}", out.describe());
    assert!(out.stderr.contains("does not belong"), "{}", out.describe());

    if std::fs::metadata(ours.path()).unwrap().uid() != 0 {
        eprintln!("SKIPPED: the planted-folder half needs root to chown");
        return;
    }
    const OTHER: u32 = 65534;
    for entry in std::fs::read_dir(ours.path()).unwrap() {
        std::os::unix::fs::lchown(entry.unwrap().path(), Some(OTHER), Some(OTHER)).unwrap();
    }
    std::os::unix::fs::lchown(ours.path(), Some(OTHER), Some(OTHER)).unwrap();
    let ca_before = std::fs::read(ours.path().join("ca.crt")).unwrap();
    let mut cmd = cipherlink();
    cmd.args(["certs", "--out"]).arg(ours.path());
    let out = run("cipherlink certs", cmd, b"");
    assert!(!out.status.success(), "{}", out.describe());
    assert!(out.stderr.contains("uid 65534"), "{}", out.describe());
    assert_eq!(
        std::fs::read(ours.path().join("ca.crt")).unwrap(),
        ca_before
    );
}
