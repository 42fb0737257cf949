//! What one client can hold on `rpc serve`: an established connection that
//! stays idle is closed, and open connections are capped (the rest wait in
//! the listen backlog until a slot frees).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use cipherlink_rpc::server::ServerOptions;
use cipherlink_rpc::tls;
use common::*;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// Bounds every wait, so a broken limit fails the test instead of hanging it.
const LIMIT: Duration = Duration::from_secs(20);

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Reads until the server closes the connection (EOF or an error such as a
/// reset, or a TLS stream cut without close_notify).
async fn until_closed(mut io: impl AsyncRead + Unpin) {
    let mut buf = [0u8; 4096];
    loop {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The client half of the HTTP/2 connection preface and an empty SETTINGS.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tls_connection_is_closed() -> TestResult {
    let p = pki(true);
    let cfg = tls::server_config(&server_tls(&p, false, false))?;
    let mut opts = ServerOptions::new(local(), Duration::ZERO, Some(cfg));
    opts.threads = 1;
    opts.idle_timeout = Some(Duration::from_millis(300));
    let srv = start_with(opts).await?;

    let connector =
        tokio_rustls::TlsConnector::from(tls::client_config(&client_tls(&p, false, false))?);
    let tcp = TcpStream::connect(srv.addr).await?;
    let mut tls = connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    tls.write_all(H2_PREFACE).await?;
    let quiet_since = Instant::now();
    timeout(LIMIT, until_closed(tls))
        .await
        .map_err(|_| "the idle connection was not closed")?;
    let after = quiet_since.elapsed();
    assert!(
        after >= Duration::from_millis(250),
        "closed after {after:?}"
    );

    // A connection in use is not idle: calls spaced closer than the timeout
    // on one channel all succeed, across several timeouts' worth of time.
    let c = connector_to(&srv, &p).await?;
    let ch = c.channel().await?;
    for _ in 0..8 {
        let mut client =
            cipherlink_rpc::pb::score_service_client::ScoreServiceClient::new(ch.clone());
        let mut req = tonic::Request::new(cipherlink_rpc::pb::JsonVector { json: "{}".into() });
        req.set_timeout(Duration::from_secs(5));
        client.get_score(req).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    srv.shutdown().await;
    Ok(())
}

async fn connector_to(
    srv: &Running,
    p: &Pki,
) -> Result<cipherlink_rpc::client::connect::Connector, Box<dyn std::error::Error>> {
    connector(srv.addr, Some(client_tls(p, false, false)), "localhost").await
}

/// Connects in plaintext and sends the HTTP/2 preface.
async fn h2_client(addr: SocketAddr) -> Result<TcpStream, std::io::Error> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(H2_PREFACE).await?;
    Ok(tcp)
}

/// The first bytes the server sends (its SETTINGS): proof it is serving us.
async fn served(tcp: &mut TcpStream) -> Result<(), std::io::Error> {
    let mut first = [0u8; 9];
    tcp.read_exact(&mut first).await?;
    assert_eq!(first[3], 0x04, "expected a SETTINGS frame");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_are_capped() -> TestResult {
    let mut opts = ServerOptions::new(local(), Duration::ZERO, None);
    opts.threads = 2;
    opts.max_connections = 2;
    opts.idle_timeout = None;
    let srv = start_with(opts).await?;

    let mut a = h2_client(srv.addr).await?;
    let mut b = h2_client(srv.addr).await?;
    timeout(LIMIT, served(&mut a)).await??;
    timeout(LIMIT, served(&mut b)).await??;
    // The third is accepted by the kernel but not served while both are open.
    let mut c = h2_client(srv.addr).await?;
    assert!(
        timeout(Duration::from_millis(500), served(&mut c))
            .await
            .is_err(),
        "a third connection was served past max_connections = 2"
    );
    // One closes: its slot goes to the waiting one.
    drop(a);
    timeout(LIMIT, served(&mut c))
        .await
        .map_err(|_| "the waiting connection was not served after a slot freed")??;
    drop((b, c));
    srv.shutdown().await;
    Ok(())
}
