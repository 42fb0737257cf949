//! Shared test helpers: certificates, an in-process server, small runs.
#![allow(dead_code, missing_docs)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cipherlink_rpc::client::coldconn::{run_coldconn, ColdOptions};
use cipherlink_rpc::client::connect::{Connector, Target};
use cipherlink_rpc::client::steady::{run_steady, SteadyOptions, SteadyRun};
use cipherlink_rpc::record::{ColdOutcome, Outcome};
use cipherlink_rpc::server::{Answered, BoundServer, ServerOptions};
use cipherlink_rpc::timer::Timer;
use cipherlink_rpc::tls::{self, ClientTls, ServerTls};
use cipherlink_test_support::pki::{Leaf, TestCa};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The shared test CA with a server leaf (CN `localhost`) and a client
/// leaf (CN `smft-client`, the original suite's name), as files in its folder.
pub struct Pki {
    pub ca: TestCa,
    pub server: Leaf,
    pub client: Leaf,
}

/// ECDSA P-256 CA, server (SAN localhost + 127.0.0.1, or with `server_san`
/// false the name only in its CN, as the original suite's certificates) and client.
pub fn pki(server_san: bool) -> Pki {
    let ca = TestCa::new();
    let server = if server_san {
        ca.leaf("localhost", 1)
    } else {
        ca.leaf_cn_only("localhost", 1)
    };
    let client = ca.leaf("smft-client", 2);
    Pki { ca, server, client }
}

impl Pki {
    /// The folder holding the files (for a test's own output files too).
    pub fn dir(&self) -> &Path {
        self.ca.dir()
    }
}

/// A running in-process server; dropping `stop` shuts it down.
pub struct Running {
    pub addr: SocketAddr,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), cipherlink_rpc::RpcError>>,
    /// The calls it has answered so far.
    pub answered: Answered,
}

impl Running {
    /// Stops it and waits (bounded) for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        self.task.abort();
    }
}

pub fn server_tls(p: &Pki, mtls: bool, legacy: bool) -> ServerTls {
    ServerTls {
        cert: p.server.cert_path.clone(),
        key: p.server.key_path.clone(),
        client_ca: mtls.then(|| p.ca.ca_path()),
        accept_legacy_certificates: legacy,
        groups: tls::KeyExchange::default_list(),
    }
}

/// `cn_only`: accept a server certificate that names its host only in the CN.
pub fn client_tls(p: &Pki, with_cert: bool, cn_only: bool) -> ClientTls {
    ClientTls {
        ca: p.ca.ca_path(),
        identity: with_cert.then(|| (p.client.cert_path.clone(), p.client.key_path.clone())),
        accept_legacy_certificates: false,
        accept_cn_only_certificates: cn_only,
        resumption: false,
        groups: tls::KeyExchange::default_list(),
    }
}

/// Starts a server on 127.0.0.1 with a port from bind(0).
pub async fn start(
    tls: Option<ServerTls>,
    delay: Duration,
    addr: Option<SocketAddr>,
) -> Result<Running, Box<dyn std::error::Error>> {
    let cfg = match tls {
        Some(t) => Some(tls::server_config(&t)?),
        None => None,
    };
    let addr = addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut opts = ServerOptions::new(addr, delay, cfg);
    opts.max_request_bytes = 64 * 1024;
    start_with(opts).await
}

/// Starts a server with these options.
pub async fn start_with(opts: ServerOptions) -> Result<Running, Box<dyn std::error::Error>> {
    let mut bound = BoundServer::bind(opts).await?;
    let addr = bound.local_addr()?;
    let answered = bound.answered();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(bound.run(async move {
        let _ = rx.await;
    }));
    Ok(Running {
        addr,
        stop: Some(stop),
        task,
        answered,
    })
}

/// A server on `p`'s certificates (requiring a client certificate when
/// `mtls`) and a connector to it for `localhost` (presenting the client
/// certificate when `client_cert`).
pub async fn tls_pair(
    p: &Pki,
    mtls: bool,
    client_cert: bool,
    delay: Duration,
) -> Result<(Running, Connector), Box<dyn std::error::Error>> {
    let srv = start(Some(server_tls(p, mtls, false)), delay, None).await?;
    let c = connector(
        srv.addr,
        Some(client_tls(p, client_cert, false)),
        "localhost",
    )
    .await?;
    Ok((srv, c))
}

pub async fn connector(
    addr: SocketAddr,
    tls: Option<ClientTls>,
    host: &str,
) -> Result<Connector, Box<dyn std::error::Error>> {
    let cfg = match tls {
        Some(t) => Some(tls::client_config(&t)?),
        None => None,
    };
    Ok(Connector::resolve(&Target {
        host: host.to_string(),
        port: addr.port(),
        tls: cfg.map(|c: Arc<rustls::ClientConfig>| c),
        server_name: None,
        connect_timeout: Duration::from_secs(5),
    })
    .await?)
}

/// Cold-connection options: `rate` new connections a second for `duration`,
/// a 2 s deadline, no warm-up.
pub fn cold(rate: f64, duration: Duration) -> ColdOptions {
    ColdOptions {
        rate,
        duration,
        deadline: Duration::from_secs(2),
        payload: "{}".into(),
        warmup_attempts: 0,
    }
}

/// The steady client, then the cold-connection client, against `c`: each
/// must record `expect` calls (steady, cold), every one a success.
pub async fn all_ok(
    c: &Connector,
    steady: &SteadyOptions,
    cold: &ColdOptions,
    expect: (usize, usize),
) -> Result<(SteadyRun, Vec<ColdOutcome>), Box<dyn std::error::Error>> {
    let timer = Timer::precise();
    let run = run_steady(c.channel().await?, steady, &timer).await?;
    assert_eq!(run.outcomes.len(), expect.0);
    assert!(
        run.outcomes.iter().all(|o| matches!(o, Outcome::Ok(_))),
        "{:?}",
        run.report.errors
    );
    let cold = run_coldconn(c, cold, &timer).await?;
    assert_eq!(cold.len(), expect.1);
    assert!(
        cold.iter().all(|o| matches!(o, ColdOutcome::Ok { .. })),
        "{cold:?}"
    );
    Ok((run, cold))
}
