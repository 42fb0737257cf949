//! `cipherlink rpc` and `cipherlink summarize` as a user runs them: the
//! flags in the tool's vocabulary, the original suite's flags and
//! environment variables with the same meaning, results files every line of
//! which is JSON, and errors that name the flag the user typed.
//!
//! Runs are short and on loopback; nothing asserts on timing.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use common::{cipherlink, pki, run, Output, Proc, TestPki};

/// Every environment variable the rpc commands read: tests set what they
/// need on a clean slate, so the machine's own settings cannot leak in.
const RPC_VARIABLES: [&str; 13] = [
    "DF_HOST",
    "DF_PORT",
    "TLS_CERT",
    "TLS_KEY",
    "TLS_CA",
    "TLS_GROUPS",
    "TLS_SERVER_NAME",
    "TLS_LEGACY_CN",
    "DELAY_MS",
    "N_RPS",
    "T_DURATION_SEC",
    "T_WARMUP_SEC",
    "RPC_THREADS",
];

/// `cipherlink ARGS...` with none of [`RPC_VARIABLES`] set.
fn rpc_command(args: &[&str]) -> Command {
    let mut cmd = cipherlink();
    cmd.args(args);
    for name in RPC_VARIABLES {
        cmd.env_remove(name);
    }
    cmd
}

/// A running `rpc serve` and where it listens.
struct RpcServer {
    proc: Proc,
    addr: SocketAddr,
}

/// Starts `rpc serve` with `args` and `env` (which must make it listen on
/// 127.0.0.1 port 0) and waits for its start-up line.
fn rpc_serve(args: &[&str], env: &[(&str, &str)]) -> RpcServer {
    let mut cmd = rpc_command(&["rpc", "serve"]);
    cmd.args(args).envs(env.iter().copied());
    let mut proc = Proc::spawn("cipherlink rpc serve", cmd);
    let addr = proc.wait_addr(true, "ScoreService on ");
    RpcServer { proc, addr }
}

/// The start-up line of a server.
fn startup_line(server: &mut RpcServer) -> String {
    server.proc.stderr_line("ScoreService on ")
}

/// Mutual TLS with `pki`, new flag names.
fn server_tls(pki: &TestPki) -> Vec<String> {
    [
        "--cert",
        "server.crt",
        "--key",
        "server.key",
        "--ca",
        "ca.crt",
    ]
    .chunks(2)
    .flat_map(|pair| [pair[0].to_string(), pki.arg(pair[1])])
    .collect()
}

fn client_tls(pki: &TestPki) -> Vec<String> {
    [
        "--cert",
        "client.crt",
        "--key",
        "client.key",
        "--ca",
        "ca.crt",
    ]
    .chunks(2)
    .flat_map(|pair| [pair[0].to_string(), pki.arg(pair[1])])
    .collect()
}

/// The lines of a results file, each parsed as the JSON object it must be.
fn json_lines(path: &Path) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| {
                panic!("{}: {line:?} is not a JSON object: {e}", path.display())
            })
        })
        .collect()
}

fn succeeded(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}\n{}", out.describe());
}

/// The help of every rpc command speaks of tests by what they do, not by
/// the original suite's numbers, and shows the new flags, not the old ones
/// (which still work: see the `rpc_*_old_spellings_*` tests).
#[test]
fn rpc_help_names_tests_and_flags_as_the_rest_of_the_tool() {
    let commands: [&[&str]; 5] = [
        &["rpc"],
        &["rpc", "serve"],
        &["rpc", "steady"],
        &["rpc", "coldconn"],
        &["summarize"],
    ];
    for command in commands {
        let mut cmd = rpc_command(command);
        cmd.arg("--help");
        let out = run("help", cmd, b"");
        succeeded(&out, &format!("{command:?} --help"));
        let help = out.stdout.to_lowercase();
        for word in [
            "01_steady",
            "02_coldconn",
            "seed",
            "--tls-",
            "--insecure",
            "-ms ",
            "-sec ",
        ] {
            assert!(
                !help.contains(word),
                "{command:?} --help says {word:?}:\n{}",
                out.stdout
            );
        }
    }
    let help = |command: &[&str]| {
        let mut cmd = rpc_command(command);
        cmd.arg("--help");
        run("help", cmd, b"").stdout
    };
    let serve = help(&["rpc", "serve"]);
    for flag in [
        "--listen",
        "--cert",
        "--key",
        "--ca",
        "--plaintext",
        "--delay <DURATION>",
    ] {
        assert!(serve.contains(flag), "{flag}:\n{serve}");
    }
    let steady = help(&["rpc", "steady"]);
    for flag in [
        "--connect <HOST:PORT>",
        "--duration <DURATION>",
        "--warmup <DURATION>",
        "--deadline <DURATION>",
        "--p99-bound <DURATION>",
        "--dangerous-accept-legacy-certs",
        "--dangerous-accept-cn-only",
        "steady.jsonl",
    ] {
        assert!(steady.contains(flag), "{flag}:\n{steady}");
    }
    assert!(help(&["rpc", "coldconn"]).contains("coldconn.jsonl"));
}

/// serve, steady, coldconn and summarize with the new flags, over mutual
/// TLS: every line of both results files is a JSON object naming its test,
/// progress goes to stderr only, and summarize reads the new files beside
/// one in the Python suite's `#TEST=` form.
#[test]
fn rpc_steady_and_coldconn_write_json_lines_that_summarize_reads() {
    let pki = pki();
    let mut serve_args = vec!["--listen", "127.0.0.1:0", "--delay", "0", "--groups"];
    serve_args.push("X25519MLKEM768:X25519");
    let tls = server_tls(&pki);
    serve_args.extend(tls.iter().map(String::as_str));
    let mut server = rpc_serve(&serve_args, &[]);
    assert!(
        startup_line(&mut server).contains("mutual auth"),
        "{}",
        server.proc.describe()
    );
    let target = format!("localhost:{}", server.addr.port());
    let dir = tempfile::tempdir().unwrap();
    let steady_file = dir.path().join("steady.jsonl");
    let mut cmd = rpc_command(&["rpc", "steady", "--connect", &target]);
    cmd.args(client_tls(&pki))
        .args(["--rps", "100", "--duration", "1s", "--warmup", "100ms"])
        .args(["--deadline", "5s", "--groups", "X25519:X25519MLKEM768"])
        .arg("--out")
        .arg(&steady_file);
    let out = run("cipherlink rpc steady", cmd, b"");
    succeeded(&out, "rpc steady");
    assert!(
        out.stdout.contains("requests: 100 ok 100"),
        "{}",
        out.describe()
    );
    // Progress: on stderr, never on stdout; the last state at least.
    assert!(
        out.stderr
            .contains("steady: finishing all 100 requests sent")
            && !out.stdout.contains("steady: "),
        "{}",
        out.describe()
    );
    let lines = json_lines(&steady_file);
    assert_eq!(lines.len(), 100);
    assert!(lines
        .iter()
        .all(|l| l["test"] == "steady" && l["ok"] == true));

    let cold_file = dir.path().join("coldconn.jsonl");
    let mut cmd = rpc_command(&["rpc", "coldconn", "--connect", &target]);
    cmd.args(client_tls(&pki))
        .args(["--rate", "10", "--duration", "300ms", "--out"])
        .arg(&cold_file);
    let out = run("cipherlink rpc coldconn", cmd, b"");
    succeeded(&out, "rpc coldconn");
    let lines = json_lines(&cold_file);
    assert_eq!(lines.len(), 3);
    assert!(lines
        .iter()
        .all(|l| l["test"] == "coldconn" && l["t_total_ms"].is_number()));

    // The Python suite's form: a header line, then the objects.
    let old_file = dir.path().join("01_steady_results.txt");
    std::fs::write(
        &old_file,
        "#TEST=01_steady\n{\"ok\":true,\"latency_ms\":5.83}\n\
         {\"ok\":false,\"code\":\"StatusCode.DEADLINE_EXCEEDED\"}\n",
    )
    .unwrap();
    let mut cmd = rpc_command(&["summarize", "--no-plots"]);
    cmd.args([&steady_file, &cold_file, &old_file]);
    let out = run("cipherlink summarize", cmd, b"");
    succeeded(&out, "summarize");
    for expected in [
        "== steady.jsonl (steady)\nTotal Requests: 100\nSuccessful: 100",
        "== coldconn.jsonl (coldconn)\nTotal Attempts: 3\nSuccessful: 3",
        "== 01_steady_results.txt (steady)\nTotal Requests: 2\nSuccessful: 1",
        "Errors: DEADLINE_EXCEEDED 1",
    ] {
        assert!(
            out.stdout.contains(expected),
            "{expected}\n{}",
            out.describe()
        );
    }
}

/// The original suite's environment variables, and the old flag names kept
/// as hidden aliases, mean for `rpc serve` what the new flags mean: the same
/// address, delay (fractional milliseconds too) and files.
#[test]
fn rpc_serve_old_spellings_and_environment_mean_the_same() {
    let pki = pki();
    let tls = server_tls(&pki);
    let mut new = vec!["--listen", "127.0.0.1:0", "--delay", "500us"];
    new.extend(tls.iter().map(String::as_str));
    let mut old_flags = vec!["--host", "127.0.0.1", "--port", "0", "--delay-ms", "0.5"];
    old_flags.extend([
        "--tls-cert",
        tls[1].as_str(),
        "--tls-key",
        &tls[3],
        "--tls-ca",
        &tls[5],
    ]);
    let old_env = [
        ("DF_HOST", "127.0.0.1"),
        ("DF_PORT", "0"),
        ("DELAY_MS", "0.5"),
        ("TLS_CERT", tls[1].as_str()),
        ("TLS_KEY", tls[3].as_str()),
        ("TLS_CA", tls[5].as_str()),
    ];
    let mut servers = vec![
        rpc_serve(&new, &[]),
        rpc_serve(&old_flags, &[]),
        rpc_serve(&[], &old_env),
    ];
    for server in &mut servers {
        let line = startup_line(server);
        assert!(
            line.contains("mutual auth, delay 500µs)") && server.addr.ip().is_loopback(),
            "{line}"
        );
    }
}

/// For the clients too: the same server, files and durations (recorded
/// requests = rate x duration), and `--insecure` is `--plaintext`.
#[test]
fn rpc_client_old_spellings_and_environment_mean_the_same() {
    let pki = pki();
    let mut args = vec!["--listen", "127.0.0.1:0", "--delay", "0"];
    let tls = server_tls(&pki);
    args.extend(tls.iter().map(String::as_str));
    let server = rpc_serve(&args, &[]);

    // Three clients: 40/s for 0.5 s = 20 recorded.
    let port = server.addr.port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name).display().to_string();
    let client = client_tls(&pki);
    let target = format!("localhost:{port}");
    let mut new = vec!["--connect", &target, "--rps", "40"];
    new.extend([
        "--duration",
        "500ms",
        "--warmup",
        "100ms",
        "--deadline",
        "5s",
    ]);
    new.extend(client.iter().map(String::as_str));
    let new_out = file("new.jsonl");
    new.extend(["--out", &new_out]);
    let mut old_flags = vec!["--host", "localhost", "--port", &port, "--rps", "40"];
    old_flags.extend([
        "--duration-sec",
        "0.5",
        "--warmup-sec",
        "0.1",
        "--deadline-ms",
        "5000",
    ]);
    old_flags.extend(["--tls-cert", client[1].as_str(), "--tls-key", &client[3]]);
    old_flags.extend(["--tls-ca", client[5].as_str()]);
    let old_out = file("old.jsonl");
    old_flags.extend(["--out", &old_out]);
    let env_out = file("env.jsonl");
    let old_env = [
        ("DF_HOST", "localhost"),
        ("DF_PORT", port.as_str()),
        ("N_RPS", "40"),
        ("T_DURATION_SEC", "0.5"),
        ("T_WARMUP_SEC", "0.1"),
        ("TLS_CERT", client[1].as_str()),
        ("TLS_KEY", client[3].as_str()),
        ("TLS_CA", client[5].as_str()),
    ];
    for (args, env, out) in [
        (&new[..], &[][..], &new_out),
        (&old_flags[..], &[][..], &old_out),
        (&["--out", &env_out][..], &old_env[..], &env_out),
    ] {
        let mut cmd = rpc_command(&["rpc", "steady"]);
        cmd.args(args).envs(env.iter().copied());
        let run_out = run("cipherlink rpc steady", cmd, b"");
        succeeded(&run_out, &format!("{args:?} {env:?}"));
        let lines = json_lines(Path::new(out));
        assert_eq!(lines.len(), 20, "{args:?} {env:?}");
        assert!(lines.iter().all(|l| l["ok"] == true), "{args:?} {env:?}");
    }

    // coldconn's --duration-sec is --duration.
    let mut plain = rpc_serve(&["--listen", "127.0.0.1:0", "--insecure"], &[]);
    assert!(
        startup_line(&mut plain).contains("(plaintext"),
        "{}",
        plain.proc.describe()
    );
    let cold_out = file("cold.jsonl");
    let target = format!("127.0.0.1:{}", plain.addr.port());
    let mut cmd = rpc_command(&["rpc", "coldconn", "--insecure", "--connect", &target]);
    cmd.args(["--rate", "10", "--duration-sec", "0.3", "--out", &cold_out]);
    succeeded(
        &run("cipherlink rpc coldconn", cmd, b""),
        "coldconn --insecure",
    );
    assert_eq!(json_lines(Path::new(&cold_out)).len(), 3);
}

/// The legacy-certificate flag has the core's spelling and meaning; the old
/// spelling and TLS_LEGACY_CN still turn it on. Without any of them the
/// original suite's X.509 v1 certificate is refused, naming the flag.
#[test]
fn rpc_legacy_certificates_take_the_core_flag_and_the_old_spellings() {
    let Some(openssl) = cipherlink_test_support::peer!(cipherlink_test_support::Peer::Openssl)
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    cipherlink_test_support::openssl_v1_pki(
        &openssl,
        dir.path(),
        "TestCA",
        &[("server", "localhost")],
    )
    .unwrap();
    let file = |name: &str| dir.path().join(name).display().to_string();
    let (cert, key) = (file("server.crt"), file("server.key"));
    let base = ["--listen", "127.0.0.1:0", "--cert", &cert, "--key", &key];

    let mut cmd = rpc_command(&["rpc", "serve"]);
    cmd.args(base);
    let out = run("cipherlink rpc serve", cmd, b"");
    assert!(
        !out.status.success()
            && out.stderr.contains("X.509 v1")
            && out
                .stderr
                .contains("--dangerous-accept-legacy-certs (or env TLS_LEGACY_CN=1)"),
        "{}",
        out.describe()
    );
    for (extra, env) in [
        (Some("--dangerous-accept-legacy-certs"), None),
        (Some("--dangerous-legacy-cn-certs"), None),
        (None, Some(("TLS_LEGACY_CN", "1"))),
    ] {
        let mut args = base.to_vec();
        args.extend(extra);
        let mut server = rpc_serve(&args, &env.into_iter().collect::<Vec<_>>());
        assert!(
            startup_line(&mut server).contains("server auth"),
            "{}",
            server.proc.describe()
        );
    }
}

/// The rpc library names its option fields; the command maps each to the
/// flag and environment variable the user sets.
#[test]
fn rpc_errors_name_the_flag_not_the_library_field() {
    let cases: [(&[&str], &str, &str); 4] = [
        (
            &["--plaintext", "--rps", "0"],
            "--rps (env N_RPS)",
            "`rate`",
        ),
        (
            &["--plaintext", "--duration", "0"],
            "--duration (env T_DURATION_SEC)",
            "`duration`",
        ),
        (
            &["--plaintext", "--deadline", "0s"],
            "--deadline",
            "`deadline`",
        ),
        (
            &["--ca", "/nonexistent/ca.crt"],
            "--ca (env TLS_CA)",
            "`ca`",
        ),
    ];
    for (args, flag, field) in cases {
        let mut cmd = rpc_command(&["rpc", "steady", "--connect", "127.0.0.1:9"]);
        cmd.args(args);
        let out = run("cipherlink rpc steady", cmd, b"");
        assert!(
            !out.status.success() && out.stderr.contains(flag) && !out.stderr.contains(field),
            "{args:?}: {}",
            out.describe()
        );
    }
    // An old spelling is answered with the flag's name today.
    let mut cmd = rpc_command(&[
        "rpc",
        "steady",
        "--port",
        "9",
        "--tls-ca",
        "/nonexistent/ca.crt",
    ]);
    cmd.args(["--duration-sec", "1"]);
    let out = run("cipherlink rpc steady", cmd, b"");
    assert!(
        out.stderr.contains("--ca (env TLS_CA)") && out.stderr.contains("/nonexistent/ca.crt"),
        "{}",
        out.describe()
    );
}

/// `cipherlink rpc serve` that stops at once (the host is not an address),
/// run in `dir` with `env` set.
fn rpc_serve_in(dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = rpc_command(&["rpc", "serve", "--host", "not-an-address", "--plaintext"]);
    cmd.current_dir(dir).envs(env.iter().copied());
    let out = run("cipherlink rpc serve", cmd, b"");
    assert!(
        !out.status.success() && out.stderr.contains("not-an-address"),
        "{}",
        out.describe()
    );
    out
}

/// `.env` is read from the working folder only, and a setting from it (or
/// the environment) that weakens verification is announced at start.
#[test]
fn rpc_dotenv_is_read_from_here_only_and_weakening_settings_are_announced() {
    let dir = tempfile::tempdir().expect("temporary folder");
    std::fs::write(dir.path().join(".env"), "TLS_LEGACY_CN=1\n").expect("writing .env");
    let out = rpc_serve_in(dir.path(), &[]);
    assert!(
        out.stderr.contains("warning: TLS_LEGACY_CN=1 from")
            && out.stderr.contains(".env")
            && out.stderr.contains("CN-only"),
        "{}",
        out.describe()
    );

    // A subfolder does not see its parent's .env.
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).expect("creating a subfolder");
    let out = rpc_serve_in(&sub, &[]);
    assert!(!out.stderr.contains("TLS_LEGACY_CN"), "{}", out.describe());

    // From the environment, it is announced as such; a false value is not.
    let out = rpc_serve_in(&sub, &[("TLS_LEGACY_CN", "true")]);
    assert!(
        out.stderr
            .contains("TLS_LEGACY_CN=true from the environment"),
        "{}",
        out.describe()
    );
    let out = rpc_serve_in(&sub, &[("TLS_LEGACY_CN", "0")]);
    assert!(!out.stderr.contains("TLS_LEGACY_CN"), "{}", out.describe());
}
