//! Shared pieces of the proxy's integration tests: a backend service, a
//! proxy pair per transport, and data whose every byte can be checked.
//! Deadlines here only stop a hung test; nothing asserts on timing.

#![allow(dead_code)] // each test file uses a different part

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cipherlink::certs;
use cipherlink_proxy::{
    LinkConfig, PortConfig, Role, Service, ServiceConfig, ServiceStats, Transport, V1Config,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Generous: the machine is shared with compilers.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Key material for every transport, in a temporary folder.
pub struct Material {
    pub dir: tempfile::TempDir,
    pub bundle: certs::CertBundle,
}

impl Material {
    pub fn new() -> Material {
        let dir = tempfile::tempdir().unwrap();
        let bundle = certs::generate(&certs::CertOptions::default()).unwrap();
        use cipherlink_proxy::nacl_frame::keys::{write_key_pair, Existing};
        write_key_pair(dir.path(), "server", Existing::Refuse).unwrap();
        write_key_pair(dir.path(), "client", Existing::Refuse).unwrap();
        write_link_files(dir.path());
        write_port_files(dir.path());
        Material { dir, bundle }
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// Fills in the transport's section for one role.
    pub fn secure(&self, mut config: ServiceConfig) -> ServiceConfig {
        match (config.transport, config.role) {
            (Transport::Tls, Role::Server) => config.tls = Some(self.bundle.server_config()),
            (Transport::Tls, Role::Client) => config.tls = Some(self.bundle.client_config()),
            (Transport::Link, Role::Server) => {
                config.link = Some(LinkConfig {
                    server_key: Some(self.path("link-server.key")),
                    token_store: Some(self.path("link-tokens.txt")),
                    connection_file: None,
                })
            }
            (Transport::Link, Role::Client) => {
                config.link = Some(LinkConfig {
                    connection_file: Some(self.path("alice.link")),
                    ..LinkConfig::default()
                })
            }
            (Transport::Port, Role::Server) => {
                config.port = Some(PortConfig {
                    server_key: Some(self.path("port-server.key")),
                    token_store: Some(self.path("port-tokens.txt")),
                    connection_file: None,
                })
            }
            (Transport::Port, Role::Client) => {
                config.port = Some(PortConfig {
                    connection_file: Some(self.path("alice.port")),
                    ..PortConfig::default()
                })
            }
            (Transport::V1, role) => {
                let (ours, theirs) = match role {
                    Role::Server => ("server", "client"),
                    Role::Client => ("client", "server"),
                };
                config.v1 = Some(V1Config::new(
                    self.path(&format!("{ours}.key")),
                    self.path(&format!("{theirs}.pub")),
                ))
            }
            _ => {}
        }
        config
    }
}

/// The files `cipherlink link keygen` and `link invite` write: a server key,
/// a token store where `alice` is active and `mallory` revoked, and a
/// connection file each for alice, mallory and `stranger` (whose token the
/// store never recorded).
fn write_link_files(dir: &std::path::Path) {
    use cipherlink_link::{ConnectionFile, LinkParams, ServerKey, Token, TokenStore};
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let key = ServerKey::generate(&mut rng);
    let mut store = TokenStore::new();
    let alice = store.issue("alice", &mut rng).unwrap();
    let mallory = store.issue("mallory", &mut rng).unwrap();
    assert_eq!(store.revoke("mallory"), 1);
    let stranger = Token::generate(&mut rng);
    write_private(dir.join("link-server.key"), key.to_text().as_bytes());
    write_private(dir.join("link-tokens.txt"), store.to_text().as_bytes());
    for (name, token) in [
        ("alice", alice),
        ("mallory", mallory),
        ("stranger", stranger),
    ] {
        let file = ConnectionFile {
            name: name.into(),
            server: "127.0.0.1:1".into(),
            server_key: *key.public(),
            token,
            tail_length: LinkParams::default().tail_length,
        };
        write_private(dir.join(format!("{name}.link")), file.to_text().as_bytes());
    }
}

/// The files `cipherlink link keygen --wire port` and `link invite --wire
/// port` write: a PORT server key, a token store where `alice` is active and
/// `mallory` revoked, and a PORT connection file each for alice, mallory and
/// `stranger` (whose token the store never recorded).
fn write_port_files(dir: &std::path::Path) {
    use cipherlink_link::{Token, TokenStore};
    use cipherlink_port::{ConnectionFile, ServerKey};
    use cipherlink_proxy::port::token_bytes;
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let key = ServerKey::generate(&mut rng);
    let mut store = TokenStore::new();
    let alice = store.issue("alice", &mut rng).unwrap();
    let mallory = store.issue("mallory", &mut rng).unwrap();
    assert_eq!(store.revoke("mallory"), 1);
    let stranger = Token::generate(&mut rng);
    write_private(dir.join("port-server.key"), key.to_text().as_bytes());
    write_private(dir.join("port-tokens.txt"), store.to_text().as_bytes());
    for (name, token) in [
        ("alice", alice),
        ("mallory", mallory),
        ("stranger", stranger),
    ] {
        let file = ConnectionFile {
            name: name.into(),
            server: "127.0.0.1:1".into(),
            server_key: *key.public(),
            token: token_bytes(&token),
        };
        write_private(dir.join(format!("{name}.port")), file.to_text().as_bytes());
    }
}

/// A running service; stops (with a short grace) when dropped.
pub struct Running {
    pub addr: SocketAddr,
    pub stats: Arc<ServiceStats>,
    stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn start(name: &str, config: ServiceConfig) -> Running {
        Running::start_with_grace(name, config, Duration::from_secs(5)).await
    }

    /// A service whose open tunnels are cut `grace` after [`Running::stop`].
    pub async fn start_with_grace(name: &str, config: ServiceConfig, grace: Duration) -> Running {
        let service = Service::bind(name, &config).await.unwrap();
        let addr = service.local_addr().unwrap();
        let stats = service.stats();
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(service.run(rx, grace));
        Running {
            addr,
            stats,
            stop,
            task,
        }
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits (bounded) until this service has counted `n` failed tunnels.
    pub async fn until_failed(&self, what: &str, n: u64) {
        let stats = self.stats.clone();
        until(what, || stats.snapshot().failed == n).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A proxy server in front of `backend` and a proxy client in front of it.
pub struct Pair {
    pub server: Running,
    pub client: Running,
}

impl Pair {
    pub async fn start(material: &Material, transport: Transport, backend: SocketAddr) -> Pair {
        Pair::start_with(material, transport, backend, |_| {}).await
    }

    /// A pair whose two configurations `adjust` changes first; the client
    /// connects to the server, or to what `via` puts in front of it.
    pub async fn start_with(
        material: &Material,
        transport: Transport,
        backend: SocketAddr,
        adjust: impl Fn(&mut ServiceConfig),
    ) -> Pair {
        let server = Pair::server(material, transport, backend, &adjust).await;
        let client = Pair::client(material, transport, server.addr, &adjust).await;
        Pair { server, client }
    }

    pub async fn server(
        material: &Material,
        transport: Transport,
        backend: SocketAddr,
        adjust: &impl Fn(&mut ServiceConfig),
    ) -> Running {
        let mut config = material.secure(ServiceConfig::new(
            Role::Server,
            "127.0.0.1:0",
            backend.to_string(),
            transport,
        ));
        adjust(&mut config);
        Running::start("server", config).await
    }

    pub async fn client(
        material: &Material,
        transport: Transport,
        server: SocketAddr,
        adjust: &impl Fn(&mut ServiceConfig),
    ) -> Running {
        let mut config = material.secure(ServiceConfig::new(
            Role::Client,
            "127.0.0.1:0",
            server.to_string(),
            transport,
        ));
        adjust(&mut config);
        Running::start("client", config).await
    }
}

/// Deterministic bytes for connection `seed` (so a byte in the wrong
/// tunnel is caught).
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Sends `data`, half-closes, and returns everything read back until EOF.
pub async fn round_trip(addr: SocketAddr, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let stream = TcpStream::connect(addr).await?;
    let (mut r, mut w) = stream.into_split();
    let data = data.to_vec();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await?;
        w.shutdown().await
    });
    let mut back = Vec::new();
    r.read_to_end(&mut back).await?;
    writer.await.map_err(std::io::Error::other)??;
    Ok(back)
}

/// Waits (bounded) until `check` holds, polling the service counters.
pub async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(DEADLINE, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

/// What a recording service saw on one connection: the bytes, and how the
/// stream ended (clean EOF or an error such as a reset).
pub type Seen = (Vec<u8>, Result<(), std::io::ErrorKind>);

/// A service that counts the connections it accepts (at accept time),
/// echoes every byte back when `echo`, and reports per connection what it
/// got once that connection ends.
pub struct Recording {
    pub addr: SocketAddr,
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
    pub seen: tokio::sync::mpsc::UnboundedReceiver<Seen>,
}

impl Recording {
    pub async fn start(echo: bool) -> Recording {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (tx, seen) = tokio::sync::mpsc::unbounded_channel();
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 4096];
                    let end = loop {
                        match stream.read(&mut buf).await {
                            Ok(0) => break Ok(()),
                            Ok(n) => {
                                got.extend_from_slice(&buf[..n]);
                                if echo && stream.write_all(&buf[..n]).await.is_err() {
                                    break Err(std::io::ErrorKind::BrokenPipe);
                                }
                            }
                            Err(err) => break Err(err.kind()),
                        }
                    };
                    let _ = tx.send((got, end));
                });
            }
        });
        Recording {
            addr,
            accepted,
            seen,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The next connection's record, once it ended (bounded wait).
    pub async fn next(&mut self) -> Seen {
        tokio::time::timeout(DEADLINE, self.seen.recv())
            .await
            .expect("a service connection ended")
            .expect("service running")
    }
}

/// A secret file as the commands write it: readable by its owner only (the
/// proxy refuses link files that others can read).
pub fn write_private(path: impl AsRef<std::path::Path>, contents: impl AsRef<[u8]>) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path.as_ref(), contents).unwrap();
    std::fs::set_permissions(path.as_ref(), std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// `clients` tunnels at once through `pair`, each an echo of 1 B to ~100 KiB
/// (so frames and records split differently) checked byte for byte; then
/// every tunnel closed on both ends and every byte counted once each way.
pub async fn many_echoes_counted(pair: &Pair, clients: u64, transport: Transport) {
    let mut tasks = Vec::new();
    for seed in 0..clients {
        let addr = pair.client.addr;
        tasks.push(tokio::spawn(async move {
            let data = pattern(seed, 1 + (seed as usize * 517) % 100_000);
            let back = round_trip(addr, &data).await.unwrap();
            assert!(
                back == data,
                "tunnel {seed}: {} bytes back of {}",
                back.len(),
                data.len()
            );
            data.len() as u64
        }));
    }
    let mut sent = 0;
    for task in tasks {
        sent += tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap();
    }
    let (server, client) = (pair.server.stats.clone(), pair.client.stats.clone());
    until("every tunnel closed", || {
        server.snapshot().completed == clients && client.snapshot().completed == clients
    })
    .await;
    let snap = client.snapshot();
    assert_eq!(
        (snap.up, snap.down, snap.failed),
        (sent, sent, 0),
        "{transport:?}"
    );
    assert_eq!(server.snapshot().up, sent);
}
