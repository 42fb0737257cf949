//! `chaos run` on PORT and on foreign programs: cipherlink's PORT through
//! all eight scenarios, an `openssl s_server`/`s_client` pair and
//! SeasideVPN's own PortListener/PortClient as foreign subjects, and one
//! run of several transports side by side.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cipherlink_test_support::{find, Peer};

mod chaos_support;

use chaos_support::{
    all_scenarios_in_the_lab, chaos_run, cipherlink, count_class, lab_or_skip, result,
    ALL_SCENARIOS,
};

macro_rules! peer {
    ($p:expr) => {
        find($p, module_path!())
    };
}

fn stdout_of(out: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn run_all_scenarios_port_in_the_lab() {
    if !lab_or_skip("run_all_scenarios_port_in_the_lab") {
        return;
    }
    let dir = all_scenarios_in_the_lab("port");
    let ideal = result(dir.path(), "port", "ideal");
    // The INITs (one segment each), read with the server key; the
    // session ends with termination messages.
    assert_eq!(count_class(&ideal, "handshake"), 2, "{ideal}");
    assert!(count_class(&ideal, "close") > 0);
    assert_eq!(count_class(&ideal, "unknown"), 0);
    // PORT relies on TCP: namespace A's TCP gave up within the 3 s bound.
    let stale = result(dir.path(), "port", "stale");
    assert_eq!(stale["gone_bound"], 3.0);
    let reason = stale["client"]["error"].as_str().expect("reason");
    assert!(reason.contains("timed out"), "{reason}");
}

/// A test CA and a server certificate for the lab's server address.
fn pki(dir: &Path) -> PathBuf {
    let pki = dir.join("pki");
    let out = cipherlink()
        .args(["certs", "--server-name", "10.66.2.2", "--out"])
        .arg(&pki)
        .output()
        .expect("certs");
    assert!(out.status.success(), "{}", stdout_of(&out));
    pki
}

#[test]
fn openssl_pair_as_a_foreign_subject() {
    let Some(openssl) = peer!(Peer::Openssl) else {
        return;
    };
    if !lab_or_skip("openssl_pair_as_a_foreign_subject") {
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = pki(tmp.path());
    let p = |f: &str| pki.join(f).display().to_string();
    let openssl = openssl.display().to_string();
    let server = format!(
        "{openssl} s_server -accept {{port}} -naccept 1 -quiet -cert {} -key {}",
        p("server.crt"),
        p("server.key")
    );
    let client = format!(
        "{openssl} s_client -connect {{addr}} -quiet -no_ign_eof -verify_return_error -CAfile {}",
        p("ca.crt")
    );
    let out_dir = tmp.path().join("report");
    let out = chaos_run(
        &[
            "--scenario",
            "ideal,stale,loss",
            "--subject-name",
            "openssl",
            "--subject-wire",
            "tls",
            "--subject-cmd",
            &server,
            "--client-cmd",
            &client,
        ],
        &out_dir,
        Duration::from_secs(300),
    );
    let text = stdout_of(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("3 of 3 scenarios passed"), "{text}");
    let ideal = result(&out_dir, "openssl", "ideal");
    assert_eq!(ideal["delivered"], 32);
    assert_eq!(ideal["client"]["completed"], true);
    // The lab cannot see a foreign set-up; the capture shows TLS records.
    assert!(ideal["client"]["connected"].is_null());
    assert!(count_class(&ideal, "handshake") > 0, "{ideal}");
    assert!(count_class(&ideal, "data") > 0);
    // s_client relies on TCP; namespace A's TCP gave up within the bound,
    // and s_client's end closed its output.
    let stale = result(&out_dir, "openssl", "stale");
    assert_eq!(stale["verdict"]["pass"], true, "{}", stale["verdict"]);
    assert_eq!(stale["delivered"], 4);
    for side in ["client", "server"] {
        for name in ["ideal", "stale", "loss"] {
            assert_eq!(result(&out_dir, "openssl", name)[side]["wrong"], 0);
        }
    }
}

/// SeasideVPN's python and sources, and the bridge in scripts/chaos/.
fn seaside() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let python = peer!(Peer::PythonSeaside)?;
    let src = peer!(Peer::SeasideSrc)?;
    let bridge: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "..",
        "scripts",
        "chaos",
        "seaside_port_stdio.py",
    ]
    .iter()
    .collect();
    Some((python, src, bridge))
}

#[test]
fn seaside_port_as_a_foreign_subject_beside_plain_tcp() {
    let Some((python, src, bridge)) = seaside() else {
        return;
    };
    if !lab_or_skip("seaside_port_as_a_foreign_subject_beside_plain_tcp") {
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let key = tmp.path().join("port.key");
    let out = cipherlink()
        .args(["link", "keygen", "--wire", "port", "--key"])
        .arg(&key)
        .output()
        .expect("keygen");
    assert!(out.status.success(), "{}", stdout_of(&out));
    let cmd = |role: &str| {
        format!(
            "PYTHONPATH={} SEASIDE_LOG_LEVEL=ERROR {} -W ignore {} {role} {} {{host}} {{port}}",
            src.display(),
            python.display(),
            bridge.display(),
            key.display()
        )
    };
    let out_dir = tmp.path().join("report");
    let key_arg = key.display().to_string();
    let out = chaos_run(
        &[
            "--transport",
            "plain",
            "--scenario",
            "all",
            "--subject-name",
            "seaside-port",
            "--subject-wire",
            "port",
            "--subject-key",
            &key_arg,
            "--subject-cmd",
            &cmd("server"),
            "--client-cmd",
            &cmd("client"),
        ],
        &out_dir,
        Duration::from_secs(900),
    );
    let text = stdout_of(&out);
    assert!(text.contains("seaside-port stale"), "{text}");
    for name in ALL_SCENARIOS {
        let theirs = result(&out_dir, "seaside-port", name);
        assert!(theirs["skipped"].is_null(), "{name} not run");
        for svg in ["packets", "sequence"] {
            let path = out_dir.join(format!("seaside-port-{name}-{svg}.svg"));
            assert!(
                std::fs::read_to_string(&path).is_ok_and(|t| t.starts_with("<svg")),
                "{name} {svg}"
            );
        }
        // Their listener and client really ran PORT: their INITs and data
        // open with the key the server command was given.
        assert!(count_class(&theirs, "handshake") >= 2, "{name}: {theirs}");
        assert!(count_class(&theirs, "data") > 0, "{name}");
        assert_eq!(count_class(&theirs, "unknown"), 0, "{name}");
        // Whatever PORT delivered was what was sent, once, in order.
        assert_eq!(theirs["client"]["wrong"], 0, "{name}");
        assert_eq!(theirs["server"]["wrong"], 0, "{name}");
        assert_eq!(theirs["client"]["extra_bytes"], 0, "{name}");
    }
    let stale = result(&out_dir, "seaside-port", "stale");
    assert_eq!(stale["verdict"]["pass"], true, "{}", stale["verdict"]);
    // One report puts them side by side, per scenario (ours on the same
    // wire passes all eight: run_all_scenarios_port_in_the_lab).
    let comparison: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("comparison.json")).expect("comparison.json"),
    )
    .expect("comparison JSON");
    let text = comparison.to_string();
    for name in ["\"tcp\"", "\"seaside-port\""] {
        assert!(text.contains(name), "{name} missing from {text}");
    }
    let html = std::fs::read_to_string(out_dir.join("report.html")).expect("report");
    assert!(html.contains("seaside-port"));
}

#[test]
fn foreign_flags_are_checked_before_any_namespace() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pair = ["--subject-cmd", "true", "--client-cmd", "true"];
    let cases: [(&[&str], &str); 3] = [
        (
            &[&pair[..], &["--subject-name", "tls", "--transport", "tls"]].concat(),
            "--subject-name tls is also a transport's name",
        ),
        (
            &[&pair[..], &["--subject-wire", "port"]].concat(),
            "give --subject-key FILE",
        ),
        (&["--subject-cmd", "true"], "--client-cmd"),
    ];
    for (args, said) in cases {
        let out = cipherlink()
            .args(["chaos", "run"])
            .args(args)
            .arg("--out")
            .arg(tmp.path().join("r"))
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stdout_of(&out).contains(said),
            "{args:?}: {}",
            stdout_of(&out)
        );
        assert!(
            !tmp.path().join("r").exists(),
            "{args:?} made the output folder"
        );
    }
}
