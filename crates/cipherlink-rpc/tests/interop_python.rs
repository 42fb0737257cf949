//! Interoperability with the seed's own stack, Python grpcio, both ways,
//! under mutual TLS: the Python client against our server, and our steady
//! and cold-connection clients against a Python grpc.aio server.
//!
//! The interpreter comes from `cipherlink-test-support` (scripts/setup-peers
//! installs grpcio and grpcio-tools); without it the tests skip loudly.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cipherlink_rpc::client::steady::SteadyOptions;
use cipherlink_test_support::{peer, Peer};
use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const LIMIT: Duration = Duration::from_secs(90);

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn script(name: &str) -> PathBuf {
    crate_dir().join("tests/py").join(name)
}

fn proto_dir() -> PathBuf {
    crate_dir().join("proto")
}

fn tls_env(cmd: &mut Command, ca: &Path, cert: &Path, key: &Path) {
    cmd.env("TLS_CA", ca)
        .env("TLS_CERT", cert)
        .env("TLS_KEY", key);
}

async fn python_client(
    python: &Path,
    p: &Pki,
    port: u16,
    mode: &str,
    out: &Path,
) -> Result<std::process::Output, Box<dyn std::error::Error>> {
    let mut cmd = Command::new(python);
    cmd.arg(script("client.py"))
        .arg(proto_dir())
        .arg(mode)
        .arg(out)
        .env("DF_HOST", "localhost")
        .env("DF_PORT", port.to_string())
        .env("N_RPS", "100")
        .env("T_DURATION_SEC", if mode == "steady" { "1" } else { "3" })
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tls_env(
        &mut cmd,
        &p.ca.ca_path(),
        &p.client.cert_path,
        &p.client.key_path,
    );
    Ok(tokio::time::timeout(Duration::from_secs(60), cmd.output()).await??)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_client_against_rust_server() -> TestResult {
    let Some(python) = peer!(Peer::PythonGrpc) else {
        return Ok(());
    };
    tokio::time::timeout(LIMIT, async {
        let p = pki(true);
        let srv = start(
            Some(server_tls(&p, true, false)),
            Duration::from_millis(1),
            None,
        )
        .await?;
        for (mode, expect) in [("steady", 100u64), ("coldconn", 3)] {
            let out = p.dir().join(format!("{mode}.txt"));
            let res = python_client(&python, &p, srv.addr.port(), mode, &out).await?;
            assert!(
                res.status.success(),
                "python {mode} client failed: {}",
                String::from_utf8_lossy(&res.stderr)
            );
            let s = cipherlink_rpc::summary::summarize(&cipherlink_rpc::summary::read(&out)?);
            assert_eq!((s.total, s.ok), (expect, expect), "{mode}");
        }
        srv.shutdown().await;
        Ok(())
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_clients_against_python_grpc_aio_server() -> TestResult {
    let Some(python) = peer!(Peer::PythonGrpc) else {
        return Ok(());
    };
    tokio::time::timeout(LIMIT, async {
        let p = pki(true);
        let mut cmd = Command::new(&python);
        cmd.arg(script("server.py"))
            .arg(proto_dir())
            .env("DF_HOST", "127.0.0.1")
            .env("DF_PORT", "0")
            .env("DELAY_MS", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        tls_env(
            &mut cmd,
            &p.ca.ca_path(),
            &p.server.cert_path,
            &p.server.key_path,
        );
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await??
            .ok_or("python server exited before printing its port")?;
        let port: u16 = first
            .strip_prefix("PORT ")
            .ok_or_else(|| format!("unexpected line {first:?}"))?
            .trim()
            .parse()?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));

        let c = connector(addr, Some(client_tls(&p, true, false)), "localhost").await?;
        let opts = SteadyOptions {
            rate: 200.0,
            duration: Duration::from_millis(500),
            warmup: Duration::from_millis(100),
            deadline: Duration::from_secs(2),
            max_outstanding: 1000,
            payload: "{}".into(),
        };
        all_ok(&c, &opts, &cold(10.0, Duration::from_millis(300)), (100, 3)).await?;

        // Closing stdin stops the server; kill_on_drop covers the rest.
        drop(child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        Ok(())
    })
    .await?
}
