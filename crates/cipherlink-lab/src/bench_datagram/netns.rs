//! The veth path: two network namespaces this bench makes, joined by a
//! veth pair, removed when the [`Netns`] is dropped (on an error, and when
//! the run is cancelled by Ctrl-C, since cancelling drops it).
//!
//! ```text
//!  netns cipherlink-dg-PID-N-a           netns cipherlink-dg-PID-N-b
//!    dPIDxNa 10.67.0.1/24  <── veth ──>  dPIDxNb 10.67.0.2/24
//! ```
//!
//! The addresses exist only inside these namespaces. Names carry the pid
//! and a counter: a name already taken is never reused or removed.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::LabError;

/// The client end's address on the veth.
pub const ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 67, 0, 1);
/// The server end's address on the veth.
pub const ADDR_B: Ipv4Addr = Ipv4Addr::new(10, 67, 0, 2);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Why the veth path cannot be made here, if it cannot: not root, or no `ip`.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("making network namespaces needs root".into());
    }
    match Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => None,
        _ => Some("`ip` (iproute2) is not installed".into()),
    }
}

/// Runs `ip ARGS`, failing with what it said.
pub(super) fn ip(args: &[&str]) -> Result<(), LabError> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            program: "ip".into(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::Helper {
            command: format!("ip {}", args.join(" ")),
            status: out.status.to_string(),
            said: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Two namespaces and the veth between them.
#[derive(Debug)]
pub struct Netns {
    /// The client end's namespace.
    pub a: String,
    /// The server end's namespace.
    pub b: String,
    /// A short tag unique to this pair, for device names (at most 10 bytes).
    pub tag: String,
    made: Vec<String>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace deletes the devices in it (the veth ends,
        // wireguard-go's TUN devices).
        for name in self.made.drain(..).rev() {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

impl Netns {
    /// Makes both namespaces and the veth, addressed and up.
    pub fn create() -> Result<Netns, LabError> {
        if let Some(why) = unavailable() {
            return Err(LabError::Setup(why));
        }
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = format!("cipherlink-dg-{pid}-{n}");
        let mut ns = Netns {
            a: format!("{base}-a"),
            b: format!("{base}-b"),
            tag: format!("d{pid}x{}", n % 100),
            made: Vec::new(),
        };
        for name in [ns.a.clone(), ns.b.clone()] {
            if std::path::Path::new("/var/run/netns").join(&name).exists() {
                return Err(LabError::Setup(format!(
                    "network namespace {name} already exists (left by another run?)"
                )));
            }
            ip(&["netns", "add", &name])?;
            ns.made.push(name.clone());
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
        }
        let (va, vb) = (format!("{}a", ns.tag), format!("{}b", ns.tag));
        ip(&[
            "link", "add", &va, "netns", &ns.a, "type", "veth", "peer", "name", &vb, "netns", &ns.b,
        ])?;
        for (name, dev, addr) in [(&ns.a, &va, ADDR_A), (&ns.b, &vb, ADDR_B)] {
            ip(&["-n", name, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", name, "link", "set", dev, "up"])?;
        }
        Ok(ns)
    }

    /// `/var/run/netns/NAME` of the client end.
    pub fn path_a(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.a)
    }

    /// `/var/run/netns/NAME` of the server end.
    pub fn path_b(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.b)
    }
}
