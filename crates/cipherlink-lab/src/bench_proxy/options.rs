//! What `bench proxy` runs: our transports, the foreign peers, the sizes of
//! the cases.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cipherlink_proxy::Transport;
use serde::Serialize;

use crate::LabError;

/// Idle tunnels measured when the open-file limit cannot hold the number
/// asked for (said in the report's `limits`).
pub const IDLE_FALLBACK: usize = 2_000;

/// One of our pairs: a transport, and whether its tunnels are streams of
/// one connection (`--mux`). Written `tls`, `link+mux`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OurTransport {
    /// The proxy transport.
    pub transport: Transport,
    /// Both ends run with `--mux`.
    pub mux: bool,
}

impl OurTransport {
    /// A transport without mux.
    pub fn plain_of(transport: Transport) -> OurTransport {
        OurTransport {
            transport,
            mux: false,
        }
    }

    /// The row's name: the transport's, `+mux` when multiplexed.
    pub fn name(self) -> &'static str {
        match (self.transport, self.mux) {
            (Transport::Tls, true) => "tls+mux",
            (Transport::Link, true) => "link+mux",
            (other, _) => other.name(),
        }
    }
}

impl std::str::FromStr for OurTransport {
    type Err = String;
    fn from_str(s: &str) -> Result<OurTransport, String> {
        let (name, mux) = match s.strip_suffix("+mux") {
            Some(name) => (name, true),
            None => (s, false),
        };
        let transport: Transport = name.parse()?;
        if mux && !matches!(transport, Transport::Tls | Transport::Link) {
            return Err(format!(
                "{s}: only tls and link multiplex (tls+mux, link+mux)"
            ));
        }
        Ok(OurTransport { transport, mux })
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchProxyOptions {
    /// The `cipherlink` binary: our proxy ends, the backend helper, `link keygen`.
    pub program: PathBuf,
    /// Our transports besides plain (plain always runs: it is the baseline).
    pub transports: Vec<OurTransport>,
    /// The foreign tunnels, each as a client end + server end pair.
    pub peers: Vec<PeerProgram>,
    /// Bytes sent through one tunnel in the bulk case.
    pub bytes: u64,
    /// How long the new-tunnel rate case runs per pair.
    pub duration: Duration,
    /// Tunnels opened at once in the rate case (and while opening idle ones).
    pub concurrency: usize,
    /// Idle tunnels to hold per pair kind (0: skip the idle case).
    pub idle: usize,
    /// Key-exchange groups of our TLS pair (None: the core's default).
    pub groups: Option<Vec<cipherlink::KeyExchange>>,
    /// `--buffer-size` of our proxy ends (None: their default).
    pub buffer_size: Option<usize>,
    /// Told as the run goes; `None`: nothing.
    pub observer: Option<ProxyObserver>,
}

/// The foreign tunnels the bench runs beside ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerKind {
    /// stunnel4: TLS, OpenSSL.
    Stunnel,
    /// HAProxy in `mode tcp`, TLS on both ends.
    Haproxy,
    /// shadowsocks-libev: `ss-tunnel` to `ss-server`.
    SsLibev,
    /// spiped: `spiped -e` to `spiped -d`.
    Spiped,
    /// obfs4proxy as a managed pluggable transport, driven through its SOCKS5 port.
    Obfs4,
}

impl PeerKind {
    /// Every peer, in the order the bench runs them.
    pub const ALL: [PeerKind; 5] = [
        PeerKind::Stunnel,
        PeerKind::Haproxy,
        PeerKind::SsLibev,
        PeerKind::Spiped,
        PeerKind::Obfs4,
    ];

    /// Its name in `--peers` and in the report.
    pub fn name(self) -> &'static str {
        match self {
            PeerKind::Stunnel => "stunnel",
            PeerKind::Haproxy => "haproxy",
            PeerKind::SsLibev => "ss-libev",
            PeerKind::Spiped => "spiped",
            PeerKind::Obfs4 => "obfs4",
        }
    }

    /// Program names looked for, in order.
    fn programs(self) -> &'static [&'static str] {
        match self {
            PeerKind::Stunnel => &["stunnel4", "stunnel"],
            PeerKind::Haproxy => &["haproxy"],
            PeerKind::SsLibev => &["ss-server"],
            PeerKind::Spiped => &["spiped"],
            PeerKind::Obfs4 => &["obfs4proxy"],
        }
    }

    /// The program: `explicit` if given, else the first of its names on
    /// PATH or in the sbin folders (HAProxy lives in /usr/sbin, which a
    /// user's PATH may lack).
    pub fn locate(self, explicit: Option<&Path>) -> Result<PeerProgram, LabError> {
        let program = match explicit {
            Some(path) if path.is_file() => path.to_path_buf(),
            Some(path) => {
                return Err(LabError::PeerNotFound {
                    peer: self.name(),
                    reason: format!("{} is not a file", path.display()),
                })
            }
            None => self
                .programs()
                .iter()
                .find_map(|name| on_path(name))
                .ok_or_else(|| LabError::PeerNotFound {
                    peer: self.name(),
                    reason: format!(
                        "no {} on PATH or in /usr/sbin, /usr/local/sbin, /sbin \
                         (scripts/setup-peers installs it from Debian)",
                        self.programs().join(" or ")
                    ),
                })?,
        };
        if self == PeerKind::SsLibev {
            // The client end is its sibling: both come in one package.
            let tunnel = program.with_file_name("ss-tunnel");
            if !tunnel.is_file() {
                return Err(LabError::PeerNotFound {
                    peer: self.name(),
                    reason: format!("{} is not beside {}", tunnel.display(), program.display()),
                });
            }
        }
        Ok(PeerProgram {
            kind: self,
            program,
        })
    }
}

impl std::fmt::Display for PeerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for PeerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "stunnel" | "stunnel4" => Ok(PeerKind::Stunnel),
            "haproxy" => Ok(PeerKind::Haproxy),
            "ss-libev" | "shadowsocks" | "shadowsocks-libev" => Ok(PeerKind::SsLibev),
            "spiped" => Ok(PeerKind::Spiped),
            "obfs4" | "obfs4proxy" => Ok(PeerKind::Obfs4),
            other => Err(format!(
                "unknown peer {other:?}; valid: stunnel, haproxy, ss-libev, spiped, obfs4"
            )),
        }
    }
}

/// A peer and the program that runs it (for ss-libev: `ss-server`, with
/// `ss-tunnel` beside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerProgram {
    /// Which peer.
    pub kind: PeerKind,
    /// Its program.
    pub program: PathBuf,
}

fn on_path(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// What a running bench reports as it goes; the caller decides how to show
/// it (the lab prints nothing).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ProxyEvent {
    /// A pair's cases begin.
    Starting {
        /// The pair's name.
        pair: String,
    },
    /// A pair's cases are done (its row may be flagged).
    Row(Box<super::Row>),
    /// Something the run had to do differently from what was asked, in words.
    Note(String),
}

/// A callback for [`ProxyEvent`]s.
pub type ProxyObserver = crate::observer::Observer<ProxyEvent>;
