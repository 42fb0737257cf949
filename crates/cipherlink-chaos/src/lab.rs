//! The TUN lab's privileged set-up, kept apart from everything else (as
//! quinn keeps socket tricks in quinn-udp): two network namespaces, each
//! with a TUN device whose other end is this process.
//!
//! ```text
//!  netns ID-a: 10.66.1.2 on IDa ──fd──> this process ──fd──> IDb: 10.66.2.2 in netns ID-b
//!  ID = PREFIX PID x N, e.g. cl4242x0: the caller's prefix, this process's pid, a counter
//! ```
//!
//! The devices are created here, moved into their namespaces, addressed
//! and routed with `ip` (iproute2), and removed with the namespaces when the
//! [`Lab`] is dropped. Code runs inside a namespace on a thread of its own
//! ([`Lab::spawn_in`]): sockets belong to the namespace of the thread that
//! creates them. Needs root and `/dev/net/tun`; [`Lab::available`] says
//! why not, so tests can skip with a note.
//!
//! A lab never deletes a namespace it did not create: names carry the pid
//! and a counter, and a name already taken (a lab of another process, or a
//! leftover) is skipped, never reused. Every namespace this process made
//! is listed in a registry until removed, so that a command interrupted by
//! a signal can remove what is left ([`remove_all`]) and say which.

use std::collections::BTreeSet;
use std::fs::File;
use std::future::Future;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use nix::sched::{setns, CloneFlags};
use tun_rs::{AsyncDevice, DeviceBuilder};

/// Address of the client side (namespace A).
pub const ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 66, 1, 2);
/// Address of the server side (namespace B).
pub const ADDR_B: Ipv4Addr = Ipv4Addr::new(10, 66, 2, 2);
/// MTU of both TUN devices (Ethernet's).
pub const MTU: u16 = 1500;
/// Longest name prefix: with a pid (at most 7 digits), `x`, a counter (at
/// most 2 base-36 digits) and `-a`, a namespace name stays within 15
/// bytes, as a device name (`...a`) must.
pub const MAX_PREFIX: usize = 3;
/// Names tried before giving up (each taken one is skipped).
const NAME_ATTEMPTS: u32 = 64;
/// The counter's range: two base-36 digits.
const COUNTER_RANGE: u32 = 36 * 36;

/// The namespaces this process made and has not removed yet.
#[derive(Debug, Default)]
struct Registry {
    names: BTreeSet<String>,
    /// Set by [`remove_all`]: no lab may be made after it.
    closed: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    names: BTreeSet::new(),
    closed: false,
});
static NEXT_ID: AtomicU32 = AtomicU32::new(0);

fn registry() -> MutexGuard<'static, Registry> {
    // A panic elsewhere while holding it leaves the set itself intact.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// The namespaces this process made that still exist.
pub fn live_names() -> Vec<String> {
    registry().names.iter().cloned().collect()
}

/// Removes every namespace this process made and still holds, and lets no
/// new lab be made: for a command that was told to stop. Returns their
/// names. A [`Lab`] dropped afterwards finds its namespaces gone.
pub fn remove_all() -> Vec<String> {
    let mut reg = registry();
    reg.closed = true;
    let names: Vec<String> = std::mem::take(&mut reg.names).into_iter().collect();
    for name in &names {
        if let Err(err) = ip(&["netns", "del", name]) {
            tracing::warn!("removing namespace {name}: {err}");
        }
    }
    names
}

/// `n` in base 36, lower case.
fn base36(mut n: u32) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(char::from_digit(n % 36, 36).unwrap_or('0'));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

/// Why the lab could not be set up or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TunLabError {
    /// Not running as root.
    #[error("the TUN lab needs root (network namespaces and TUN devices)")]
    NotRoot,
    /// No TUN support.
    #[error("the TUN lab needs /dev/net/tun")]
    NoTun,
    /// The prefix would make names too long or unsafe for `ip`.
    #[error("lab name prefix `{0}`: use 1 to 3 lower-case ASCII letters and digits")]
    BadTag(String),
    /// Every name tried was taken.
    #[error("no free namespace name `{0}x..`: {NAME_ATTEMPTS} taken")]
    NoFreeName(String),
    /// The process is removing its labs (it was told to stop).
    #[error("the labs of this process are being removed")]
    ShuttingDown,
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
    pub fn available() -> Result<(), TunLabError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(TunLabError::NotRoot);
        }
        if !Path::new("/dev/net/tun").exists() {
            return Err(TunLabError::NoTun);
        }
        ip(&["-V"])
    }

    /// Creates namespaces `ID-a`, `ID-b` and their TUN devices `IDa`,
    /// `IDb`, where ID is `prefix`, this process's pid, `x` and a counter;
    /// a name that exists already is skipped, not reused. Must run inside a
    /// tokio runtime (the devices register with its reactor).
    pub fn create(prefix: &str) -> Result<Lab, TunLabError> {
        let valid = prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if prefix.is_empty() || prefix.len() > MAX_PREFIX || !valid {
            return Err(TunLabError::BadTag(prefix.to_string()));
        }
        Lab::available()?;
        let stem = format!("{prefix}{}", std::process::id());
        for _ in 0..NAME_ATTEMPTS {
            let n = NEXT_ID.fetch_add(1, Ordering::Relaxed) % COUNTER_RANGE;
            let id = format!("{stem}x{}", base36(n));
            let side = |s: &str, addr| Namespace {
                name: format!("{id}-{s}"),
                device: format!("{id}{s}"),
                addr,
            };
            let (a, b) = (side("a", ADDR_A), side("b", ADDR_B));
            if !add_namespace(&a.name)? {
                continue;
            }
            // From here on, Drop cleans up whatever was made.
            let mut lab = Lab { a, b, tuns: None };
            if !add_namespace(&lab.b.name)? {
                continue;
            }
            let tun_a = lab.setup(&lab.a.clone(), ADDR_B)?;
            let tun_b = lab.setup(&lab.b.clone(), ADDR_A)?;
            lab.tuns = Some((tun_a, tun_b));
            tracing::info!("lab: namespaces {} and {}", lab.a.name, lab.b.name);
            return Ok(lab);
        }
        Err(TunLabError::NoFreeName(stem))
    }

    fn setup(&self, ns: &Namespace, peer: Ipv4Addr) -> Result<AsyncDevice, TunLabError> {
        let device = DeviceBuilder::new()
            .name(ns.device.clone())
            .mtu(MTU)
            // Up only once inside its namespace: up here, the root
            // namespace would queue its own packets (IPv6 solicitations) on it.
            .enable(false)
            .build_async()
            .map_err(|source| TunLabError::Io {
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
    ) -> Result<std::thread::JoinHandle<Result<Option<T>, TunLabError>>, std::io::Error>
    where
        F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        self.listen_in(
            ns,
            std::time::Duration::from_secs(10),
            move || async move {
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| e.to_string())
            },
            serve,
        )
    }

    /// Runs `listen` inside namespace `ns`, then `serve` with what it
    /// made, on a thread there (see [`Lab::spawn_in`]); returns once
    /// `listen` succeeded. `Err`: why it failed, or that it did not end
    /// within `limit`. The thread's value is `None` only if `listen` failed.
    #[allow(clippy::type_complexity)]
    pub fn listen_in<L, LFut, Listening, F, Fut, T>(
        &self,
        ns: &Namespace,
        limit: std::time::Duration,
        listen: L,
        serve: F,
    ) -> Result<std::thread::JoinHandle<Result<Option<T>, TunLabError>>, std::io::Error>
    where
        L: FnOnce() -> LFut + Send + 'static,
        LFut: Future<Output = Result<Listening, String>>,
        F: FnOnce(Listening) -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = self.spawn_in(ns, move || async move {
            let listening = match listen().await {
                Ok(l) => l,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return None;
                }
            };
            let _ = ready_tx.send(Ok(()));
            Some(serve(listening).await)
        });
        match ready_rx.recv_timeout(limit) {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(reason)) => Err(std::io::Error::other(reason)),
            Err(_) => Err(std::io::Error::other(format!(
                "not listening within {limit:?}"
            ))),
        }
    }

    /// Runs `task` on a new thread inside namespace `ns`, on a
    /// single-threaded tokio runtime of its own.
    pub fn spawn_in<F, Fut, T>(
        &self,
        ns: &Namespace,
        task: F,
    ) -> std::thread::JoinHandle<Result<T, TunLabError>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        let name = ns.name.clone();
        std::thread::spawn(move || {
            let path = format!("/run/netns/{name}");
            let file = File::open(&path).map_err(|source| TunLabError::Io {
                what: format!("opening {path}"),
                source,
            })?;
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| TunLabError::Io {
                what: format!("entering namespace {name}"),
                source: e.into(),
            })?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| TunLabError::Io {
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
        let mut reg = registry();
        for ns in [&self.a, &self.b] {
            // Only what this process still holds: `remove_all` may have
            // removed it, and another process may use the name since.
            if !reg.names.remove(&ns.name) {
                continue;
            }
            if let Err(err) = ip(&["netns", "del", &ns.name]) {
                tracing::warn!("removing the lab: {err}");
            }
        }
    }
}

/// Adds namespace `name` and registers it, under the registry's lock so
/// that [`remove_all`] never misses one being made. `Ok(false)`: the name
/// is taken (never deleted: it is not ours).
fn add_namespace(name: &str) -> Result<bool, TunLabError> {
    add_namespace_with(name, || ip(&["netns", "add", name]))
}

/// [`add_namespace`] with `add` making the namespace (tests make it fail
/// half-way, as a signal would).
fn add_namespace_with(
    name: &str,
    add: impl FnOnce() -> Result<(), TunLabError>,
) -> Result<bool, TunLabError> {
    let mut reg = registry();
    if reg.closed {
        return Err(TunLabError::ShuttingDown);
    }
    let path = Path::new("/run/netns").join(name);
    if path.symlink_metadata().is_ok() {
        return Ok(false);
    }
    // Listed before it exists: however `ip` ends, the name is known.
    reg.names.insert(name.to_string());
    match add() {
        Ok(()) => Ok(true),
        // Made by someone else between the check and the add.
        Err(TunLabError::Command { detail, .. }) if detail.contains("File exists") => {
            reg.names.remove(name);
            Ok(false)
        }
        // Failed or stopped half-way: whatever it left is ours (the name
        // carries our pid, was free above, and the lock is held), so it
        // goes now. If it cannot, it stays listed for `remove_all`.
        Err(err) => {
            let left = path.symlink_metadata().is_ok();
            match left.then(|| ip(&["netns", "del", name])) {
                Some(Err(del)) => tracing::warn!("removing the half-made namespace {name}: {del}"),
                _ => {
                    reg.names.remove(name);
                }
            }
            Err(err)
        }
    }
}

/// Runs `ip ARGS`; an error carries its standard error.
fn ip(args: &[&str]) -> Result<(), TunLabError> {
    run("ip", args)
}

fn run(program: &str, args: &[&str]) -> Result<(), TunLabError> {
    let command = format!("{program} {}", args.join(" "));
    // A group of its own: a terminal's Ctrl-C (sent to the foreground
    // group) reaches only us, and we clean up, instead of killing `ip`
    // half-way through making a namespace.
    let out = Command::new(program)
        .args(args)
        .process_group(0)
        .output()
        .map_err(|e| TunLabError::Command {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(TunLabError::Command {
            command,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_run_in_a_process_group_of_their_own() {
        // Field 5 of /proc/PID/stat is the process group ("sh" has no space).
        run(
            "sh",
            &["-c", r#"[ "$(cut -d' ' -f5 /proc/$$/stat)" = "$$" ]"#],
        )
        .expect("the child leads its own process group");
    }

    /// `ip netns add` stopped after making the namespace (as SIGINT did
    /// when `ip` shared our process group): it is removed, not leaked.
    #[test]
    fn a_namespace_left_by_a_failed_add_is_removed() {
        if let Err(why) = Lab::available() {
            cipherlink_test_support::unavailable(
                "TUN lab (root, ip netns)",
                "a_namespace_left_by_a_failed_add_is_removed",
                &why.to_string(),
            );
            return;
        }
        let name = format!("lt{}x0-a", std::process::id());
        let result = add_namespace_with(&name, || {
            ip(&["netns", "add", &name])?;
            Err(TunLabError::Command {
                command: format!("ip netns add {name}"),
                detail: "signal: 2 (SIGINT)".into(),
            })
        });
        assert!(
            matches!(result, Err(TunLabError::Command { .. })),
            "{result:?}"
        );
        let left = Path::new("/run/netns").join(&name).exists();
        if left {
            let _ = ip(&["netns", "del", &name]);
        }
        assert!(!left, "{name} was left behind");
        assert!(!live_names().contains(&name), "{name} is still listed");
        // Someone else's name, taken meanwhile, is neither deleted nor kept.
        let theirs = format!("lt{}x1-a", std::process::id());
        let result = add_namespace_with(&theirs, || {
            ip(&["netns", "add", &theirs])?;
            Err(TunLabError::Command {
                command: format!("ip netns add {theirs}"),
                detail: "exit status: 1: Cannot create namespace file: File exists".into(),
            })
        });
        let left = Path::new("/run/netns").join(&theirs).exists();
        let _ = ip(&["netns", "del", &theirs]);
        assert!(matches!(result, Ok(false)), "{result:?}");
        assert!(left, "another's namespace was deleted");
        assert!(!live_names().contains(&theirs));
    }
}
