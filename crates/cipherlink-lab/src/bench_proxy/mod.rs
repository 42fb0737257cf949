//! `cipherlink bench proxy`: cipherlink's proxy against the tunnels a user
//! would otherwise pick (stunnel, HAProxy, shadowsocks-libev, spiped,
//! obfs4), each at its own measure, on the same machine, in the same run
//! (a shared machine drifts too much to compare runs).
//!
//! Every pair is a client end and a server end, each its own process as in
//! use, between the same client (this process) and the same backend (a
//! helper process). Each pair runs the same cases: one tunnel's throughput,
//! new tunnels per second with both ends' CPU per tunnel, and memory per
//! idle tunnel. `direct` (no tunnel) and the plain pair (our proxy without
//! encryption) show the bench's own ceiling; a pair close to it is warned
//! about, and a pair whose tunnels fail is flagged, never reported silently.

mod backend;
mod cases;
mod client;
mod material;
mod options;
mod pairs;
mod process;
mod report;
mod socks5;

use std::net::SocketAddr;

use cipherlink_proxy::Transport;

pub use backend::serve_backend;
pub use options::{
    BenchProxyOptions, OurTransport, PeerKind, PeerProgram, ProxyEvent, ProxyObserver,
    IDLE_FALLBACK,
};
pub use report::{BenchProxyReport, Ratio, Row, RowKind, BOTTLENECK_SHARE};
pub use socks5::{Socks5Dialer, Socks5Error};

use cases::idle::IdlePlan;
use client::Entry;
use material::Material;
use pairs::{Ctx, Subject};
use process::Proc;

use crate::LabError;

/// Runs every pair's cases and returns the report.
pub async fn run(options: &BenchProxyOptions) -> Result<BenchProxyReport, LabError> {
    let load_average_start = report::load_average();
    let fd_limit = crate::fd_limit::raise().map_err(LabError::FdLimit)?;
    let plan = cases::idle::plan(options.idle, &fd_limit)?;
    for note in &plan.notes {
        emit(options, ProxyEvent::Note(note.clone()));
    }
    let material = Material::new(&options.program).await?;
    let (mut backend_proc, backend) = start_backend(options).await?;
    let ctx = Ctx {
        options,
        material: &material,
        backend,
    };
    let mut rows = Vec::new();
    for subject in subjects(options) {
        emit(
            options,
            ProxyEvent::Starting {
                pair: subject.name().to_string(),
            },
        );
        let row = measure(&subject, &ctx, &plan).await;
        emit(options, ProxyEvent::Row(Box::new(row.clone())));
        rows.push(row);
        // Without the backend every later row would be a failure of ours.
        if let Some(err) = backend_proc.stopped("during the run") {
            return Err(err);
        }
    }
    Ok(BenchProxyReport {
        ratios: report::ratios(&rows),
        warnings: report::warnings(&rows),
        rows,
        limits: plan.notes,
        bytes: options.bytes,
        duration_s: options.duration.as_secs_f64(),
        concurrency: options.concurrency,
        idle_requested: options.idle,
        idle: plan.count,
        fd_limit,
        load_average_start,
        load_average_end: report::load_average(),
    })
}

/// Direct, plain, our other transports (each once), then the peers.
fn subjects(options: &BenchProxyOptions) -> Vec<Subject> {
    let mut out = vec![
        Subject::Direct,
        Subject::Ours(OurTransport::plain_of(Transport::Plain)),
    ];
    for &t in &options.transports {
        if !out
            .iter()
            .any(|s| matches!(s, Subject::Ours(have) if *have == t))
        {
            out.push(Subject::Ours(t));
        }
    }
    for peer in &options.peers {
        if !out
            .iter()
            .any(|s| matches!(s, Subject::Peer(have) if have.kind == peer.kind))
        {
            out.push(Subject::Peer(peer.clone()));
        }
    }
    out
}

/// One row: every case of one subject. Never fails: what fails is written
/// in the row, which is then flagged.
async fn measure(subject: &Subject, ctx: &Ctx<'_>, plan: &IdlePlan) -> Row {
    let options = ctx.options;
    let mut row = Row::new(
        subject.name(),
        subject.kind(),
        subject.software(options).await,
        subject.crypto(options),
    );
    // Tunnels in flight, with room: the rate case closes every tunnel it opens.
    let capacity = (options.concurrency * 4).max(1024);
    match subject.start(ctx, capacity).await {
        Err(e) => {
            row.failure = Some(format!("could not start the pair: {e}"));
            return row;
        }
        Ok(mut pair) => {
            let entry = pair
                .as_ref()
                .map_or(Entry::Tcp(ctx.backend), |p| p.entry.clone());
            row.client_interface = entry.interface();
            match cases::bulk::run(&entry, options.bytes, subject.name()).await {
                Ok(mb_s) => row.mb_s = Some(mb_s),
                Err(e) => row.bulk_error = Some(e.to_string()),
            }
            let pids = pair.as_ref().map(pairs::Pair::pids).unwrap_or_default();
            match cases::rate::run(&entry, options.duration, options.concurrency, pids).await {
                Ok(rate) => {
                    row.conns_per_s = Some(rate.per_second);
                    row.tunnels = rate.tunnels;
                    row.conn_errors = rate.errors;
                    row.first_conn_error = rate.first_error;
                    row.cpu_us_per_tunnel = rate.cpu_us_per_tunnel;
                }
                Err(e) => row.failure = Some(format!("rate case: {e}")),
            }
            if let Some(pair) = pair.as_mut() {
                if let Err(e) = pair.check_running("during the bulk and rate cases") {
                    row.failure = Some(e.to_string());
                }
            }
        }
    }
    if plan.count > 0 && subject.kind() != RowKind::Direct {
        row.idle_requested = plan.count;
        row.idle_pairs = plan.pairs;
        match cases::idle::run(subject, ctx, plan).await {
            Ok(idle) => {
                row.idle_tunnels = idle.opened;
                row.idle_errors = idle.errors;
                row.first_idle_error = idle.first_error;
                row.idle_bytes_per_tunnel = idle.bytes_per_tunnel;
            }
            Err(e) => row.failure = Some(format!("idle case: {e}")),
        }
    }
    row
}

/// The backend helper: `cipherlink bench proxy --backend-only 127.0.0.1:0`,
/// which prints `backend listening on ADDR` once it listens.
async fn start_backend(options: &BenchProxyOptions) -> Result<(Proc, SocketAddr), LabError> {
    let args = ["bench", "proxy", "--backend-only", "127.0.0.1:0"].map(String::from);
    let mut proc = Proc::spawn("the bench's backend helper", &options.program, &args, &[])?;
    let addr = proc
        .stdout_line(
            |line| {
                line.strip_prefix("backend listening on ")
                    .and_then(|a| a.trim().parse().ok())
            },
            "the address it listens on",
        )
        .await?;
    Ok((proc, addr))
}

fn emit(options: &BenchProxyOptions, event: ProxyEvent) {
    ProxyObserver::emit(options.observer.as_ref(), event);
}
