//! TOML examples, checked as the tool checks them: in a folder holding the
//! files the docs' own commands make, so a path in the example names a real
//! certificate or key, and the checks that read files run too.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cipherlink_test_support::process::Proc;

use super::markdown::{Block, Schema};
use super::procfs;
use super::runner::LISTEN_DEADLINE;

/// The commands that fill the folder a TOML example is checked in, as the
/// docs write them (config.md's `server.crt`, proxy.md's `certs/`, `keys/`,
/// `link/`, `alice.link`; port-wire.md's `port/`, `alice.port`).
pub const FIXTURE: [&[&str]; 8] = [
    &["certs", "--out", "."],
    &["certs", "--out", "certs/"],
    &[
        "proxy",
        "keygen",
        "--transport",
        "v1",
        "--out",
        "keys/",
        "--name",
        "server",
    ],
    &[
        "proxy",
        "keygen",
        "--transport",
        "v1",
        "--out",
        "keys/",
        "--name",
        "client",
    ],
    &["link", "keygen", "--key", "link/server.key"],
    &[
        "link",
        "invite",
        "--key",
        "link/server.key",
        "--tokens",
        "link/tokens.txt",
        "--name",
        "alice",
        "--server",
        "127.0.0.1:7443",
        "--out",
        "alice.link",
    ],
    &[
        "link",
        "keygen",
        "--wire",
        "port",
        "--key",
        "port/server.key",
    ],
    &[
        "link",
        "invite",
        "--wire",
        "port",
        "--key",
        "port/server.key",
        "--tokens",
        "port/tokens.txt",
        "--name",
        "alice",
        "--server",
        "127.0.0.1:8589",
        "--out",
        "alice.port",
    ],
];

/// The binary under test, with plain logs.
fn cipherlink(dir: &Path) -> Command {
    let mut cmd = cipherlink_test_support::process::cipherlink(env!("CARGO_BIN_EXE_cipherlink"));
    cmd.current_dir(dir);
    cmd
}

fn fixture(dir: &Path) -> Result<(), String> {
    for args in FIXTURE {
        let out = cipherlink(dir)
            .args(args)
            .output()
            .map_err(|e| format!("cipherlink {}: {e}", args.join(" ")))?;
        if !out.status.success() {
            return Err(format!(
                "preparing the example's files: cipherlink {} failed:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(())
}

/// An error and its causes, one per line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    text
}

/// Checks the example; Ok says what was checked.
pub fn check(block: &Block, schema: Schema) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
    fixture(dir.path())?;
    let name = match schema {
        Schema::Proxy => "proxy.toml",
        Schema::CoreServer => "server.toml",
        Schema::CoreClient => "client.toml",
    };
    let file = dir.path().join(name);
    std::fs::write(&file, block.text()).map_err(|e| format!("writing {name}: {e}"))?;
    match schema {
        Schema::CoreServer | Schema::CoreClient => {
            let config = cipherlink::Config::from_toml_file(&file).map_err(|e| chain(&e))?;
            let built = if schema == Schema::CoreServer {
                cipherlink::Context::server(&config)
            } else {
                cipherlink::Context::client(&config)
            };
            built.map_err(|e| chain(&e))?;
            Ok(format!("{name}: parsed and built into a Context"))
        }
        Schema::Proxy => proxy_run(dir.path(), &file),
    }
}

/// `cipherlink proxy run --config FILE` until every service listens: the
/// proxy binds only once every service passed its checks, so all listening
/// means the whole file was accepted.
fn proxy_run(dir: &Path, file: &Path) -> Result<String, String> {
    let config = cipherlink_proxy::ProxyConfig::from_toml_file(file).map_err(|e| chain(&e))?;
    for (name, service) in &config.service {
        let port = service
            .listen
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok());
        if let Some(holder) = port.and_then(procfs::holder) {
            return Err(format!(
                "service {name} listens on {}, which {holder} holds: stop it and run again",
                service.listen
            ));
        }
    }
    let mut cmd = cipherlink(dir);
    cmd.args(["proxy", "run", "--config"]).arg(file);
    let mut proc = Proc::spawn("cipherlink proxy run", cmd);
    let start = Instant::now();
    loop {
        if !proc.running() {
            return Err(format!("the proxy refused the example:\n{}", proc.stderr()));
        }
        let ports = procfs::listening_ports(&[proc.id()]);
        if ports.len() >= config.service.len() {
            procfs::signal(proc.id(), false, "TERM");
            return Ok(format!(
                "proxy run: {} services listening ({ports:?})",
                config.service.len()
            ));
        }
        if start.elapsed() > LISTEN_DEADLINE {
            return Err(format!(
                "the proxy did not listen on all {} services within {LISTEN_DEADLINE:?}:\n{}",
                config.service.len(),
                proc.stderr()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
