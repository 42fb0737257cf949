//! The TUN lab's privileged set-up, kept apart from everything else (as
//! quinn keeps socket tricks in quinn-udp): two network namespaces, each
//! with a TUN device whose other end is this process.
//!
//! ```text
//!  netns <tag>-a: 10.66.1.2 on cl<tag>a ──fd──> this process ──fd──> cl<tag>b: 10.66.2.2 in netns <tag>-b
//! ```
//!
//! The devices are created here, moved into their namespaces, addressed
//! and routed with `ip` (iproute2), and removed with the namespaces when the
//! [`Lab`] is dropped. Code runs inside a namespace on a thread of its own
//! ([`Lab::spawn_in`]): sockets belong to the namespace of the thread that
//! creates them. Needs root and `/dev/net/tun`; [`Lab::available`] says
//! why not, so tests can skip with a note.

use std::fs::File;
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use nix::sched::{setns, CloneFlags};
use tun_rs::{AsyncDevice, DeviceBuilder};

/// Address of the client side (namespace A).
pub const ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 66, 1, 2);
/// Address of the server side (namespace B).
pub const ADDR_B: Ipv4Addr = Ipv4Addr::new(10, 66, 2, 2);
/// MTU of both TUN devices (Ethernet's).
pub const MTU: u16 = 1500;

/// Why the lab could not be set up or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// Not running as root.
    #[error("the TUN lab needs root (network namespaces and TUN devices)")]
    NotRoot,
    /// No TUN support.
    #[error("the TUN lab needs /dev/net/tun")]
    NoTun,
    /// The tag would make names too long or unsafe for `ip`.
    #[error("lab tag `{0}`: use 1 to 10 ASCII letters and digits")]
    BadTag(String),
    /// An `ip` command failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status and error output, or why it did not run.
        detail: String,
    },
    /// A TUN device or namespace file could not be opened or used.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The thread running code in a namespace panicked.
    #[error("the thread in namespace {0} panicked")]
    ThreadPanicked(String),
}

/// A namespace of the lab.
#[derive(Debug, Clone)]
pub struct Namespace {
    /// Its name (as `ip netns` knows it).
    pub name: String,
    /// The TUN device's name inside it.
    pub device: String,
    /// Its address.
    pub addr: Ipv4Addr,
}

/// Two namespaces joined through this process. Dropping it removes them.
pub struct Lab {
    /// The client side.
    pub a: Namespace,
    /// The server side.
    pub b: Namespace,
    tuns: Option<(AsyncDevice, AsyncDevice)>,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("a", &self.a)
            .field("b", &self.b)
            .field("devices_held", &self.tuns.is_some())
            .finish()
    }
}

impl Lab {
    /// Whether this machine and user can run the lab.
    pub fn available() -> Result<(), LabError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(LabError::NotRoot);
        }
        if !Path::new("/dev/net/tun").exists() {
            return Err(LabError::NoTun);
        }
        ip(&["-V"])
    }

    /// Creates namespaces `<tag>-a`, `<tag>-b` and their TUN devices
    /// (removing stale ones of the same names first). Must run inside a
    /// tokio runtime (the devices register with its reactor).
    pub fn create(tag: &str) -> Result<Lab, LabError> {
        if tag.is_empty() || tag.len() > 10 || !tag.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(LabError::BadTag(tag.to_string()));
        }
        Lab::available()?;
        let side = |s: &str, addr| Namespace {
            name: format!("{tag}-{s}"),
            device: format!("cl{tag}{s}"),
            addr,
        };
        let (a, b) = (side("a", ADDR_A), side("b", ADDR_B));
        for ns in [&a, &b] {
            let _ = ip(&["netns", "del", &ns.name]);
        }
        // From here on, Drop cleans up whatever was made.
        let mut lab = Lab { a, b, tuns: None };
        let tun_a = lab.setup(&lab.a.clone(), ADDR_B)?;
        let tun_b = lab.setup(&lab.b.clone(), ADDR_A)?;
        lab.tuns = Some((tun_a, tun_b));
        Ok(lab)
    }

    fn setup(&self, ns: &Namespace, peer: Ipv4Addr) -> Result<AsyncDevice, LabError> {
        ip(&["netns", "add", &ns.name])?;
        let device = DeviceBuilder::new()
            .name(ns.device.clone())
            .mtu(MTU)
            // Up only once inside its namespace: up here, the root
            // namespace would queue its own packets (IPv6 solicitations) on it.
            .enable(false)
            .build_async()
            .map_err(|source| LabError::Io {
                what: format!("creating TUN device {}", ns.device),
                source,
            })?;
        // The file descriptor stays ours after the device moves.
        ip(&["link", "set", "dev", &ns.device, "netns", &ns.name])?;
        let n = ns.name.as_str();
        let dev = ns.device.as_str();
        ip(&["-n", n, "link", "set", "dev", "lo", "up"])?;
        // IPv6 would put router solicitations and MLD reports through the
        // model and into captures; the lab is IPv4 only.
        if let Err(err) = run(
            "ip",
            &[
                "netns",
                "exec",
                n,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                &format!("net.ipv6.conf.{dev}.disable_ipv6=1"),
            ],
        ) {
            tracing::warn!("lab: IPv6 stays on in {n}: {err}");
        }
        ip(&[
            "-n",
            n,
            "addr",
            "add",
            &format!("{}/24", ns.addr),
            "dev",
            dev,
        ])?;
        ip(&["-n", n, "link", "set", "dev", dev, "up"])?;
        let peer_net = format!("{}/24", Ipv4Addr::from(u32::from(peer) & 0xffff_ff00));
        ip(&["-n", n, "route", "add", &peer_net, "dev", dev])?;
        Ok(device)
    }

    /// The two TUN devices (A's, B's), once: the router owns them.
    pub fn take_devices(&mut self) -> Option<(AsyncDevice, AsyncDevice)> {
        self.tuns.take()
    }

    /// Binds `addr` inside namespace `ns` and runs `serve` on that
    /// listener there (see [`Lab::spawn_in`]); returns once it listens.
    /// `Err`: why it does not listen within 10 s. The thread's value is
    /// `None` only if the bind failed.
    #[allow(clippy::type_complexity)]
    pub fn serve_in<F, Fut, T>(
        &self,
        ns: &Namespace,
        addr: std::net::SocketAddr,
        serve: F,
    ) -> Result<std::thread::JoinHandle<Result<Option<T>, LabError>>, std::io::Error>
    where
        F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = self.spawn_in(ns, move || async move {
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return None;
                }
            };
            let _ = ready_tx.send(Ok(()));
            Some(serve(listener).await)
        });
        match ready_rx.recv_timeout(std::time::Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(reason)) => Err(std::io::Error::other(reason)),
            Err(_) => Err(std::io::Error::other("not listening within 10 s")),
        }
    }

    /// Runs `task` on a new thread inside namespace `ns`, on a
    /// single-threaded tokio runtime of its own.
    pub fn spawn_in<F, Fut, T>(
        &self,
        ns: &Namespace,
        task: F,
    ) -> std::thread::JoinHandle<Result<T, LabError>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        let name = ns.name.clone();
        std::thread::spawn(move || {
            let path = format!("/run/netns/{name}");
            let file = File::open(&path).map_err(|source| LabError::Io {
                what: format!("opening {path}"),
                source,
            })?;
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| LabError::Io {
                what: format!("entering namespace {name}"),
                source: e.into(),
            })?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| LabError::Io {
                    what: "starting a runtime in the namespace".into(),
                    source,
                })?;
            Ok(runtime.block_on(task()))
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.tuns = None;
        for ns in [&self.a, &self.b] {
            if let Err(err) = ip(&["netns", "del", &ns.name]) {
                tracing::warn!("removing the lab: {err}");
            }
        }
    }
}

/// Runs `ip ARGS`; an error carries its standard error.
fn ip(args: &[&str]) -> Result<(), LabError> {
    run("ip", args)
}

fn run(program: &str, args: &[&str]) -> Result<(), LabError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| LabError::Command {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::Command {
            command,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}
