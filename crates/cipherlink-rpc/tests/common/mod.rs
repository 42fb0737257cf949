//! Shared test helpers: certificates, an in-process server, small runs.
#![allow(dead_code, missing_docs)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cipherlink_rpc::client::connect::{Connector, Target};
use cipherlink_rpc::server::{BoundServer, ServerOptions};
use cipherlink_rpc::tls::{self, ClientTls, ServerTls};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A CA and the PEM files it signed, in a temp dir.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf, std::io::Error> {
    let p = dir.join(name);
    std::fs::write(&p, text)?;
    Ok(p)
}

/// ECDSA P-256 CA, server (SAN localhost + 127.0.0.1, or CN only) and client.
pub fn pki(server_san: bool) -> Result<Pki, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate()?;
    let sans = if server_san {
        vec!["localhost".to_string(), "127.0.0.1".to_string()]
    } else {
        Vec::new()
    };
    let mut sp = CertificateParams::new(sans)?;
    sp.distinguished_name.push(DnType::CommonName, "localhost");
    let server_cert = sp.signed_by(&server_key, &issuer)?;

    let client_key = KeyPair::generate()?;
    let mut cp = CertificateParams::new(Vec::<String>::new())?;
    cp.distinguished_name
        .push(DnType::CommonName, "smft-client");
    let client_cert = cp.signed_by(&client_key, &issuer)?;

    let d = dir.path().to_path_buf();
    Ok(Pki {
        ca: write(&d, "ca.crt", &ca_cert.pem())?,
        server_cert: write(&d, "server.crt", &server_cert.pem())?,
        server_key: write(&d, "server.key", &server_key.serialize_pem())?,
        client_cert: write(&d, "client.crt", &client_cert.pem())?,
        client_key: write(&d, "client.key", &client_key.serialize_pem())?,
        dir,
    })
}

/// A running in-process server; dropping `stop` shuts it down.
pub struct Running {
    pub addr: SocketAddr,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), cipherlink_rpc::RpcError>>,
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
        cert: p.server_cert.clone(),
        key: p.server_key.clone(),
        client_ca: mtls.then(|| p.ca.clone()),
        accept_legacy: legacy,
        groups: tls::KeyExchange::default_list(),
    }
}

pub fn client_tls(p: &Pki, with_cert: bool, legacy: bool) -> ClientTls {
    ClientTls {
        ca: p.ca.clone(),
        identity: with_cert.then(|| (p.client_cert.clone(), p.client_key.clone())),
        accept_legacy: legacy,
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
    let bound = BoundServer::bind(opts).await?;
    let addr = bound.local_addr()?;
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(bound.run(async move {
        let _ = rx.await;
    }));
    Ok(Running {
        addr,
        stop: Some(stop),
        task,
    })
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
