//! The TLS 1.3 baselines of `bench link`, measured in the same run:
//! X25519MLKEM768 full handshakes through `bench conn`, and one core tunnel
//! carrying the same bytes as the link.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use cipherlink::certs::{self, CertOptions};
use cipherlink::{Context, KeyExchange};

use super::bulk::{push, sink, BulkResult};
use crate::bench_conn::{self, ConnBenchOptions, ConnReport, Exchange, Mode};
use crate::LabError;

/// Full TLS handshakes with a PING/PONG each, as the link case does.
pub(super) async fn handshakes(
    duration: Duration,
    concurrency: usize,
) -> Result<ConnReport, LabError> {
    bench_conn::run(&ConnBenchOptions {
        modes: vec![Mode::Tls],
        groups: vec![KeyExchange::X25519MlKem768],
        duration,
        concurrency,
        batch: 0,
        exchange: Exchange::PingPong,
        ..ConnBenchOptions::default()
    })
    .await
}

/// One core tunnel (TLS 1.3, X25519MLKEM768, the core's AES-GCM suites) over
/// 127.0.0.1.
pub(super) async fn bulk(bytes: u64) -> Result<BulkResult, LabError> {
    let setup = |what: &str, e: &dyn std::fmt::Display| LabError::Setup(format!("{what}: {e}"));
    let bundle = certs::generate(&CertOptions::default())?;
    let server_ctx = Context::server(&{
        let mut edited = bundle.server_config();
        edited.key_exchange = Some(vec![KeyExchange::X25519MlKem768]);
        edited
    })?;
    let client_ctx = Context::client(&{
        let mut edited = bundle.client_config();
        edited.key_exchange = Some(vec![KeyExchange::X25519MlKem768]);
        edited.server_name = Some("localhost".into());
        edited
    })?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| setup("TLS bulk listener", &e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| setup("TLS bulk listener", &e))?;
    let server = tokio::spawn(async move {
        if let Ok((s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            if let Ok(t) = server_ctx.accept(s, "bench").await {
                let _ = sink(t, bytes).await;
            }
        }
    });
    let s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| setup("connecting the TLS bulk tunnel", &e))?;
    let _ = s.set_nodelay(true);
    let tunnel = client_ctx.connect(s, "localhost").await?;
    let (mut r, mut w) = tokio::io::split(tunnel);
    let result = push(&mut w, &mut r, bytes)
        .await
        .map_err(|e| setup("TLS bulk transfer", &e))?;
    let _ = w.shutdown().await;
    let _ = server.await;
    Ok(result)
}
