//! WireGuard as the datagram peer: Debian's userspace `wireguard-go`, one
//! process per interface, in the bench's two namespaces. Pair `i` is a
//! client interface in namespace a (10.68.i.1) and a server interface in
//! namespace b (10.68.i.2), one peer each, talking over the veth. The
//! bench's own UDP traffic goes through the tunnel addresses.
//!
//! Interfaces are configured through wireguard-go's control socket
//! (`/var/run/wireguard/NAME.sock`), with the text protocol `wg set`
//! speaks to it: running `wg` for every forced handshake would add a
//! fork and exec to each one.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::netns::{ip, Netns, ADDR_B};
use crate::LabError;

/// UDP port of pair 0's interfaces; pair `i` listens on `WG_PORT + i` (all
/// server interfaces share namespace b). Below the kernel's ephemeral
/// range (32768-60999), where the other rows' 10,000 client sockets, some
/// still closing, would hold WireGuard's usual 51820 and up.
const WG_PORT: u16 = 15820;
/// Longest a control-socket exchange may take.
const UAPI_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wireguard-go may take to make its control socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A WireGuard key pair (Curve25519), as the control socket spells keys.
#[derive(Clone)]
pub(super) struct WgKey {
    secret: [u8; 32],
    public: [u8; 32],
}

impl WgKey {
    pub(super) fn generate() -> WgKey {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secret));
        WgKey {
            secret,
            public: public.to_bytes(),
        }
    }

    fn secret_hex(&self) -> String {
        hex::encode(self.secret)
    }

    fn public_hex(&self) -> String {
        hex::encode(self.public)
    }
}

/// One wireguard-go process (one interface), killed when dropped.
struct WgProc {
    child: Child,
    name: String,
}

impl Drop for WgProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // SIGKILL leaves the socket file behind.
        let _ = std::fs::remove_file(socket_path(&self.name));
    }
}

fn socket_path(name: &str) -> PathBuf {
    PathBuf::from("/var/run/wireguard").join(format!("{name}.sock"))
}

impl WgProc {
    /// Starts `wireguard-go -f NAME` in namespace `ns` and waits for its
    /// control socket.
    async fn start(program: &Path, ns: &str, name: &str) -> Result<WgProc, LabError> {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(program)
            .args(["-f", name])
            // Its "use the kernel module" banner is for people, not for us.
            .env("WG_PROCESS_FOREGROUND", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| LabError::Spawn {
                program: program.to_path_buf(),
                source,
            })?;
        let mut p = WgProc {
            child,
            name: name.to_string(),
        };
        let start = Instant::now();
        while !socket_path(name).exists() {
            if let Ok(Some(status)) = p.child.try_wait() {
                return Err(LabError::NotReady {
                    who: format!("wireguard-go ({})", program.display()),
                    what: format!("exited ({status}) before making interface {name}"),
                    said: String::new(),
                });
            }
            if start.elapsed() > START_TIMEOUT {
                return Err(LabError::NotReady {
                    who: format!("wireguard-go ({})", program.display()),
                    what: format!("made no control socket for {name} within {START_TIMEOUT:?}"),
                    said: String::new(),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(p)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Sends `set=1` with `body` (lines, each ending in `\n`) to interface
/// `name`'s control socket, and checks its `errno=0`.
pub(super) async fn uapi_set(name: &str, body: &str) -> Result<(), LabError> {
    let fail = |detail: String| LabError::PeerProtocol {
        peer: "wireguard-go",
        detail: format!("interface {name}: {detail}"),
    };
    let exchange = async {
        let mut s = UnixStream::connect(socket_path(name))
            .await
            .map_err(|e| fail(format!("connecting to its control socket: {e}")))?;
        s.write_all(format!("set=1\n{body}\n").as_bytes())
            .await
            .map_err(|e| fail(format!("writing to its control socket: {e}")))?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 256];
        while !reply.ends_with(b"\n\n") && reply.len() < 4096 {
            let n = s
                .read(&mut buf)
                .await
                .map_err(|e| fail(format!("reading its control socket: {e}")))?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
        }
        let reply = String::from_utf8_lossy(&reply);
        if reply.lines().any(|l| l == "errno=0") {
            Ok(())
        } else {
            Err(fail(format!("refused the configuration: {}", reply.trim())))
        }
    };
    tokio::time::timeout(UAPI_TIMEOUT, exchange)
        .await
        .map_err(|_| fail(format!("no answer within {UAPI_TIMEOUT:?}")))?
}

/// One client interface and its server interface.
pub(super) struct WgPair {
    pub(super) ctl: PairCtl,
    client: WgProc,
    server: WgProc,
}

/// What it takes to reconfigure a pair (no process handles: tasks may
/// hold it without keeping the processes alive).
#[derive(Clone)]
pub(super) struct PairCtl {
    client_name: String,
    server_name: String,
    client_key: WgKey,
    server_key: WgKey,
    index: u8,
}

impl PairCtl {
    /// The client end's tunnel address.
    pub(super) fn client_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 68, self.index, 1)
    }

    fn port(&self) -> u16 {
        WG_PORT + u16::from(self.index)
    }

    /// The server end's tunnel address.
    pub(super) fn server_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 68, self.index, 2)
    }

    /// The server interface's lines for its one peer (the client).
    fn server_peer(&self) -> String {
        format!(
            "public_key={}\nallowed_ip={}/32\n",
            self.client_key.public_hex(),
            self.client_ip()
        )
    }

    /// The client interface's lines for its one peer (the server).
    fn client_peer(&self) -> String {
        format!(
            "public_key={}\nendpoint={}\npersistent_keepalive_interval=0\nallowed_ip={}/32\n",
            self.server_key.public_hex(),
            SocketAddr::from((ADDR_B, self.port())),
            self.server_ip()
        )
    }

    /// Removes and re-adds each end's peer: both forget their session, so
    /// the next datagram through the tunnel starts a fresh Noise IK
    /// handshake. The server end's is renewed too, because wireguard-go
    /// takes at most 50 initiations a second from one peer.
    pub(super) async fn forget_sessions(&self) -> Result<(), LabError> {
        let server = format!(
            "public_key={}\nremove=true\n{}",
            self.client_key.public_hex(),
            self.server_peer()
        );
        uapi_set(&self.server_name, &server).await?;
        let client = format!(
            "public_key={}\nremove=true\n{}",
            self.server_key.public_hex(),
            self.client_peer()
        );
        uapi_set(&self.client_name, &client).await
    }
}

impl WgPair {
    /// The server interface's name (to add idle peers to it).
    pub(super) fn server_name(&self) -> &str {
        &self.server.name
    }

    /// The server process's pid.
    pub(super) fn server_pid(&self) -> u32 {
        self.server.pid()
    }
}

/// Every wireguard-go process of a run.
pub(super) struct WgLab {
    pub(super) pairs: Vec<WgPair>,
}

impl WgLab {
    /// Starts `pairs` client/server interface pairs in `ns`, configured and up.
    pub(super) async fn start(program: &Path, ns: &Netns, pairs: usize) -> Result<WgLab, LabError> {
        let count = u8::try_from(pairs)
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| LabError::Setup("wireguard-go pairs: 1 to 100".into()))?;
        let mut lab = WgLab { pairs: Vec::new() };
        for index in 0..count {
            let client = WgProc::start(program, &ns.a, &format!("{}c{index}", ns.tag)).await?;
            let server = WgProc::start(program, &ns.b, &format!("{}s{index}", ns.tag)).await?;
            let ctl = PairCtl {
                client_name: client.name.clone(),
                server_name: server.name.clone(),
                client_key: WgKey::generate(),
                server_key: WgKey::generate(),
                index,
            };
            let pair = WgPair {
                ctl,
                client,
                server,
            };
            let c = &pair.ctl;
            uapi_set(
                &c.server_name,
                &format!(
                    "private_key={}\nlisten_port={}\nreplace_peers=true\n{}",
                    c.server_key.secret_hex(),
                    c.port(),
                    c.server_peer()
                ),
            )
            .await?;
            uapi_set(
                &c.client_name,
                &format!(
                    "private_key={}\nlisten_port={}\nreplace_peers=true\n{}",
                    c.client_key.secret_hex(),
                    c.port(),
                    c.client_peer()
                ),
            )
            .await?;
            for (name, dev, addr) in [
                (&ns.a, &c.client_name, c.client_ip()),
                (&ns.b, &c.server_name, c.server_ip()),
            ] {
                ip(&["-n", name, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
                ip(&["-n", name, "link", "set", dev, "up"])?;
            }
            lab.pairs.push(pair);
        }
        Ok(lab)
    }

    /// Every wireguard-go pid (for CPU time).
    pub(super) fn pids(&self) -> Vec<u32> {
        self.pairs
            .iter()
            .flat_map(|p| [p.client.pid(), p.server.pid()])
            .collect()
    }
}

/// `count` made-up peers for one interface (each a fresh public key and
/// a /32 of its own), in `set` lines.
pub(super) fn idle_peers(first: u32, count: u32) -> String {
    let mut body = String::new();
    for n in first..first + count {
        let key = WgKey::generate();
        let [_, b, c, d] = n.to_be_bytes();
        body.push_str(&format!(
            "public_key={}\nallowed_ip=10.{}.{c}.{d}/32\n",
            key.public_hex(),
            100 + b
        ));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wireguard_ports_are_below_the_ephemeral_range() {
        // A client socket of an earlier row, still closing, may hold any
        // ephemeral port; an interface must never need one of them.
        let Ok(range) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
            return; // not Linux
        };
        let low: u16 = range
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(32768);
        assert!(WG_PORT + 100 < low, "{WG_PORT} + 100 pairs reach {low}");
    }

    #[test]
    fn idle_peers_have_keys_and_addresses_of_their_own() {
        let body = idle_peers(250, 3);
        let keys: std::collections::HashSet<&str> = body
            .lines()
            .filter_map(|l| l.strip_prefix("public_key="))
            .collect();
        assert_eq!(keys.len(), 3);
        let ips: Vec<&str> = body
            .lines()
            .filter_map(|l| l.strip_prefix("allowed_ip="))
            .collect();
        assert_eq!(
            ips,
            ["10.100.0.250/32", "10.100.0.251/32", "10.100.0.252/32"]
        );
    }
}
