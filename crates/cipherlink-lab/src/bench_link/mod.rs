//! `cipherlink bench link`: the link protocol's crypto floor, handshakes/s,
//! bulk throughput on one link, overhead bytes per record and memory per
//! idle link, beside their TLS 1.3 baselines (handshakes through
//! [`crate::bench_conn`], bulk through one core tunnel) in the same run.
//! Everything runs in this process over 127.0.0.1, client and server both,
//! so the numbers include both ends' CPU, as `bench conn` does.

mod bulk;
mod cases;
mod floor;
mod tls_baseline;

use std::time::Duration;

use serde::Serialize;

use cipherlink_link::LinkParams;

use crate::bench_conn::ConnReport;
use crate::observer::Observer;
use crate::LabError;

pub use bulk::BulkResult;
pub use cases::{HandshakeResult, IdleResult};
pub use floor::{Floor, Overhead};

/// What to run.
#[derive(Debug, Clone)]
pub struct LinkBenchOptions {
    /// Length of each handshake case (link, and TLS X25519MLKEM768).
    pub duration: Duration,
    /// Handshakes in flight at once (both cases).
    pub concurrency: usize,
    /// Bytes through one link and one TLS tunnel for the throughput case.
    pub bulk_bytes: u64,
    /// Idle links to hold for the memory case (0 = skip). Both ends of each
    /// live in this process: the caller sizes it to the open-file limit.
    pub idle_links: usize,
    /// Link parameters (tail length, keepalive) of both ends.
    pub params: LinkParams,
    /// Told as each case ends; `None`: nothing.
    pub observer: Option<LinkObserver>,
}

/// A case that finished, as the run goes.
#[derive(Debug)]
#[non_exhaustive]
pub enum LinkEvent {
    /// The TLS handshake baseline ran: its rate and CPU per handshake.
    TlsHandshakes {
        /// Full handshakes per second.
        per_sec: f64,
        /// CPU per handshake, both ends.
        cpu_us: Option<f64>,
    },
    /// The crypto floor was measured.
    Floor(Floor),
    /// The link handshake case ran.
    Handshakes(HandshakeResult),
    /// One link carried the bulk bytes.
    LinkBulk(BulkResult),
    /// One TLS tunnel carried the bulk bytes.
    TlsBulk(BulkResult),
    /// Record overhead was counted.
    Overhead(Overhead),
    /// The idle links were held and measured.
    Idle(IdleResult),
}

/// The callback type for [`LinkEvent`]s.
pub type LinkObserver = Observer<LinkEvent>;

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct LinkBenchReport {
    /// Crypto floor.
    pub floor: Floor,
    /// Link handshakes.
    pub handshakes: HandshakeResult,
    /// One link.
    pub bulk_link: BulkResult,
    /// Record overhead.
    pub overhead: Overhead,
    /// Idle memory.
    pub idle: Option<IdleResult>,
    /// TLS 1.3 X25519MLKEM768 full handshakes per second (same run).
    pub tls_handshakes_per_sec: f64,
    /// TLS CPU per handshake, both ends, when the OS tells it.
    pub tls_cpu_us_per_handshake: Option<f64>,
    /// Link handshakes/s over TLS handshakes/s.
    pub handshake_ratio_vs_tls: f64,
    /// One TLS tunnel with the same bytes.
    pub tls_bulk: BulkResult,
    /// Link bulk MiB/s as a percentage of the TLS tunnel's.
    pub bulk_percent_of_tls: f64,
    /// The TLS baseline's full `bench conn` report.
    pub tls_conn_report: ConnReport,
}

/// Runs every case, telling `options.observer` as each ends.
pub async fn run(options: &LinkBenchOptions) -> Result<LinkBenchReport, LabError> {
    if options.concurrency == 0 {
        return Err(LabError::Setup("concurrency must be at least 1".into()));
    }
    let emit = |event: LinkEvent| Observer::emit(options.observer.as_ref(), event);
    let tls_conn_report = tls_baseline::handshakes(options.duration, options.concurrency).await?;
    let tls_case = tls_conn_report
        .cases
        .first()
        .ok_or_else(|| LabError::Setup("bench conn returned no case".into()))?;
    let (tls_rate, tls_cpu) = (tls_case.conns_per_sec, tls_case.cpu_us_per_conn);
    emit(LinkEvent::TlsHandshakes {
        per_sec: tls_rate,
        cpu_us: tls_cpu,
    });

    let fixture = cases::Fixture::new(&options.params)?;
    let floor = floor::measure(&fixture)?;
    emit(LinkEvent::Floor(floor.clone()));
    let handshakes = cases::handshakes(&fixture, options).await?;
    emit(LinkEvent::Handshakes(handshakes.clone()));
    let bulk_link = cases::link_bulk(&fixture, options.bulk_bytes).await?;
    emit(LinkEvent::LinkBulk(bulk_link.clone()));
    let tls_bulk = tls_baseline::bulk(options.bulk_bytes).await?;
    emit(LinkEvent::TlsBulk(tls_bulk.clone()));
    let overhead = floor::overhead(&options.params)?;
    emit(LinkEvent::Overhead(overhead.clone()));
    let idle = if options.idle_links > 0 {
        let idle = cases::idle(&fixture, options.idle_links).await?;
        emit(LinkEvent::Idle(idle.clone()));
        Some(idle)
    } else {
        None
    };
    Ok(LinkBenchReport {
        handshake_ratio_vs_tls: handshakes.per_sec / tls_rate.max(1e-9),
        bulk_percent_of_tls: 100.0 * bulk_link.mib_per_sec / tls_bulk.mib_per_sec.max(1e-9),
        floor,
        handshakes,
        bulk_link,
        overhead,
        idle,
        tls_handshakes_per_sec: tls_rate,
        tls_cpu_us_per_handshake: tls_cpu,
        tls_bulk,
        tls_conn_report,
    })
}
