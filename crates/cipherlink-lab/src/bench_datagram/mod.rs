//! `cipherlink bench datagram`: datagram transports (plain UDP, TYPHOON,
//! the link's datagram mode) beside WireGuard (userspace wireguard-go), in one run: handshakes/s and
//! CPU per handshake, one session's datagrams/s at 1,200-byte payloads
//! (delivered and lost), the latency each adds to a datagram over plain
//! UDP on the same path, and memory per idle session.
//!
//! The path: as root, two network namespaces joined by a veth pair
//! ([`netns`]), every transport and WireGuard's tunnel across it; without
//! root, loopback, and no WireGuard. Each end is a runtime of its own in
//! its namespace (`side.rs`); both are in this process, so this process's
//! CPU time and memory count both ends, as `bench link` counts them (the
//! link's idle sessions are counted at the server end: `idle_server.rs`).

mod cases;
mod floor;
mod idle_server;
pub mod netns;
mod report;
mod side;
mod transport;
mod wg_cases;
mod wireguard;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use cipherlink_typhoon::TyphoonSettings;

use crate::observer::Observer;
use crate::LabError;

pub use cases::{HandshakeResult, IdleResult, LatencyResult, ThroughputResult};
pub use floor::Floor;
pub use report::{DatagramReport, Goal, Ratios, Row};
pub use transport::Transport;
pub use wg_cases::{ForgetCost, HANDSHAKE_METHOD as WIREGUARD_HANDSHAKE_METHOD};

use cases::{Blast, Path};
use side::Side;

/// Which path the cipherlink transports take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathKind {
    /// Two namespaces of this run's own, joined by a veth pair (root).
    Veth,
    /// 127.0.0.1 in this process's namespace.
    Loopback,
}

impl PathKind {
    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            PathKind::Veth => "veth",
            PathKind::Loopback => "loopback",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct DatagramBenchOptions {
    /// Transports besides plain UDP, which always runs (it is the baseline).
    pub transports: Vec<Transport>,
    /// wireguard-go to measure beside them (needs the veth path's root).
    pub wireguard_go: Option<PathBuf>,
    /// The cipherlink transports' path (WireGuard always takes the veth).
    pub path: PathKind,
    /// Length of each handshake case and of each throughput case.
    pub duration: Duration,
    /// Handshakes in flight at once (WireGuard: interface pairs).
    pub concurrency: usize,
    /// Payload bytes per datagram (throughput and round trips).
    pub payload: usize,
    /// Most datagrams the throughput sender sends.
    pub max_datagrams: u64,
    /// Throughput sender's datagrams per second (0: as fast as it can).
    pub rate: u64,
    /// Round trips per transport.
    pub pings: u64,
    /// Idle sessions to hold (0: skip; fewer when the open-file limit says so).
    pub idle: usize,
    /// TYPHOON's settings for both ends ([`typhoon_bench_settings`]).
    pub typhoon: TyphoonSettings,
    /// Told as the run goes; `None`: nothing.
    pub observer: Option<DatagramObserver>,
    /// Where the ends' transports log (e.g. warnings only: a TYPHOON
    /// listener says every admitted session at info); `None`: the global one.
    pub end_log: Option<tracing::Dispatch>,
}

/// What the run tells as it goes.
#[derive(Debug)]
#[non_exhaustive]
pub enum DatagramEvent {
    /// A case is starting (row, case).
    Case(String, &'static str),
    /// A limit or a skip the reader must know of.
    Note(String),
}

/// The callback type for [`DatagramEvent`]s.
pub type DatagramObserver = Observer<DatagramEvent>;

/// TYPHOON's settings for the bench: `TYPHOON_*` from `lookup` over
/// SeasideVPN's defaults, except that unless `TYPHOON_INITIAL_NEXT_IN` is
/// set, the server answers an INIT at once (`next_in` 0). At the defaults
/// it waits the client's `next_in`, 3.2 to 12.8 s, on purpose; that wait
/// would be all a handshake rate measured.
pub fn typhoon_bench_settings(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<TyphoonSettings, LabError> {
    let answer_at_once = lookup("TYPHOON_INITIAL_NEXT_IN").is_none();
    let mut s = TyphoonSettings::from_env(&lookup)
        .map_err(|e| LabError::Setup(format!("TYPHOON settings: {e}")))?;
    if answer_at_once {
        s.initial_next_in = 0.0;
    }
    Ok(s)
}

/// Both ends of one path.
struct Ends {
    client: Side,
    server: Side,
    path: Path,
}

impl Ends {
    fn pair(&self) -> (&Side, &Side) {
        (&self.client, &self.server)
    }
}

/// Runs every case of every row; one row's failure is written in its row.
pub async fn run(o: &DatagramBenchOptions) -> Result<DatagramReport, LabError> {
    if o.concurrency == 0 || o.concurrency > 100 {
        return Err(LabError::Setup("concurrency must be 1 to 100".into()));
    }
    if o.payload < 8 || o.payload > 60_000 {
        return Err(LabError::Setup("payload must be 8 to 60,000 bytes".into()));
    }
    let emit = |e: DatagramEvent| Observer::emit(o.observer.as_ref(), e);
    let mut notes = Vec::new();
    let mut note = |text: String| {
        emit(DatagramEvent::Note(text.clone()));
        notes.push(text);
    };
    let idle = idle_sessions(o, &mut note)?;
    let veth_ok = netns::unavailable();
    let wireguard = match (&o.wireguard_go, &veth_ok) {
        (Some(_), Some(why)) => {
            note(format!(
                "wireguard-go skipped: {why} (its rows need two network namespaces)"
            ));
            None
        }
        (w, _) => w.clone(),
    };
    if o.path == PathKind::Veth {
        if let Some(why) = &veth_ok {
            return Err(LabError::Setup(format!("the veth path: {why}")));
        }
    }
    // Declared before everything that lives in them: dropped last.
    let ns = if o.path == PathKind::Veth || wireguard.is_some() {
        Some(netns::Netns::create()?)
    } else {
        None
    };
    let veth = match &ns {
        Some(ns) => Some(Ends {
            client: Side::new("dg-client", Some(&ns.path_a()), o.end_log.as_ref()).await?,
            server: Side::new("dg-server", Some(&ns.path_b()), o.end_log.as_ref()).await?,
            path: Path {
                listen: netns::ADDR_B.into(),
                reach: netns::ADDR_B.into(),
            },
        }),
        None => None,
    };
    let loopback = match o.path {
        PathKind::Loopback => Some(Ends {
            client: Side::new("dg-client", None, o.end_log.as_ref()).await?,
            server: Side::new("dg-server", None, o.end_log.as_ref()).await?,
            path: Path {
                listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
                reach: IpAddr::V4(Ipv4Addr::LOCALHOST),
            },
        }),
        PathKind::Veth => None,
    };
    let ends = loopback
        .as_ref()
        .or(veth.as_ref())
        .ok_or_else(|| LabError::Setup("no path for the transports".into()))?;
    let fx = Arc::new(transport::Fixture::new(o.typhoon.clone())?);
    let mut rows = Vec::new();
    let mut order = vec![Transport::Plain];
    order.extend(o.transports.iter().filter(|t| **t != Transport::Plain));
    order.dedup();
    for t in order {
        rows.push(transport_row(t, &fx, ends, o, idle, &emit).await);
    }
    let (mut wg_baseline, mut wg_forget) = (None, None);
    if let (Some(program), Some(ns), Some(veth)) = (&wireguard, &ns, &veth) {
        if o.path != PathKind::Veth {
            // WireGuard's added latency is against plain UDP on its own path.
            emit(DatagramEvent::Case("plain (veth)".into(), "round trips"));
            wg_baseline = Some(
                cases::latency(
                    Transport::Plain,
                    &fx,
                    veth.pair(),
                    veth.path,
                    o.payload,
                    o.pings,
                )
                .await?,
            );
        }
        let (row, forget) = wireguard_row(program, ns, veth, &fx, o, idle, &emit).await;
        rows.push(row);
        wg_forget = forget;
    }
    let mut report = report::finish(o, rows, wg_baseline.as_ref(), notes, idle);
    report.floor = Some(floor::measure(2_000));
    report.wireguard_forget = wg_forget;
    Ok(report)
}

/// The idle sessions the open-file limit allows (both ends in this
/// process; one descriptor per client session).
fn idle_sessions(
    o: &DatagramBenchOptions,
    note: &mut impl FnMut(String),
) -> Result<usize, LabError> {
    if o.idle == 0 {
        return Ok(0);
    }
    let limit = crate::fd_limit::raise().map_err(LabError::FdLimit)?;
    let room = limit.connections().saturating_sub(o.concurrency * 4);
    if room == 0 {
        return Err(LabError::NoRoom { soft: limit.soft });
    }
    if o.idle > room {
        note(format!(
            "open-file limit {}: {room} idle sessions instead of {} (one descriptor each)",
            limit.soft, o.idle
        ));
        return Ok(room);
    }
    Ok(o.idle)
}

async fn transport_row(
    t: Transport,
    fx: &Arc<transport::Fixture>,
    ends: &Ends,
    o: &DatagramBenchOptions,
    idle: usize,
    emit: &impl Fn(DatagramEvent),
) -> Row {
    let mut row = Row::new(t.name(), o.path.name());
    let case = |name| emit(DatagramEvent::Case(t.name().into(), name));
    case("handshakes");
    row.take_handshakes(
        cases::handshakes(t, fx, ends.pair(), ends.path, o.duration, o.concurrency).await,
    );
    case("throughput");
    row.take_throughput(cases::throughput(t, fx, ends.pair(), ends.path, blast(o)).await);
    case("round trips");
    row.take_latency(cases::latency(t, fx, ends.pair(), ends.path, o.payload, o.pings).await);
    if idle > 0 {
        case("idle sessions");
        row.take_idle(cases::idle(t, fx, ends.pair(), ends.path, idle).await);
    }
    row
}

fn blast(o: &DatagramBenchOptions) -> Blast {
    Blast {
        payload: o.payload,
        duration: o.duration,
        max_datagrams: o.max_datagrams,
        rate: o.rate,
    }
}

async fn wireguard_row(
    program: &std::path::Path,
    ns: &netns::Netns,
    veth: &Ends,
    fx: &Arc<transport::Fixture>,
    o: &DatagramBenchOptions,
    idle: usize,
    emit: &impl Fn(DatagramEvent),
) -> (Row, Option<wg_cases::ForgetCost>) {
    let mut row = Row::new("wireguard-go", PathKind::Veth.name());
    let case = |name| emit(DatagramEvent::Case("wireguard-go".into(), name));
    case("starting");
    let lab = match wireguard::WgLab::start(program, ns, o.concurrency).await {
        Ok(lab) => lab,
        Err(e) => {
            row.failures.push(format!("starting wireguard-go: {e}"));
            return (row, None);
        }
    };
    let tunnel = match lab.pairs.first() {
        Some(p) => Path {
            listen: p.ctl.server_ip().into(),
            reach: p.ctl.server_ip().into(),
        },
        None => return (row, None),
    };
    case("handshakes");
    row.take_handshakes(wg_cases::handshakes(&lab, veth.pair(), o.duration).await);
    case("reconfiguration alone");
    let forget = match wg_cases::forget_cost(&lab, &veth.client, o.duration).await {
        Ok(f) => Some(f),
        Err(e) => {
            row.failures.push(format!("reconfiguration alone: {e}"));
            None
        }
    };
    // Plain UDP through the tunnel: the bench's traffic, WireGuard's crypto.
    case("throughput");
    row.take_throughput(
        cases::throughput(Transport::Plain, fx, veth.pair(), tunnel, blast(o)).await,
    );
    case("round trips");
    row.take_latency(
        cases::latency(
            Transport::Plain,
            fx,
            veth.pair(),
            tunnel,
            o.payload,
            o.pings,
        )
        .await,
    );
    if idle > 0 {
        case("idle sessions");
        row.take_idle(wg_cases::idle(&lab, idle).await);
    }
    (row, forget)
}
