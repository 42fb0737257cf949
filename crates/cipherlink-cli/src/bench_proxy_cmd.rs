//! `cipherlink bench proxy`: flags to `cipherlink_lab::bench_proxy`, and its
//! report as a table (rows, then cipherlink against each peer).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use cipherlink_lab::bench_proxy::{
    self, BenchProxyOptions, BenchProxyReport, OurTransport, PeerKind, PeerProgram, ProxyEvent,
    ProxyObserver, Row,
};
use cipherlink_lab::format::thousands;
use clap::Args;

use crate::output::report;

/// `bench proxy` options.
#[derive(Debug, Args)]
pub struct BenchProxyArgs {
    /// Our transports to measure besides plain, comma-separated: tls, link, v1, port
    /// (SeasideVPN's PORT), and tls+mux, link+mux (tunnels as streams of one connection).
    #[arg(
        long,
        value_name = "LIST",
        default_value = "tls,link,v1",
        value_delimiter = ','
    )]
    pub transport: Vec<OurTransport>,
    /// Other tunnels to measure beside ours, comma-separated: stunnel, haproxy,
    /// ss-libev, spiped, obfs4; NAME=PROGRAM names the program; `none` for
    /// none (default: every one installed).
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = peer_arg)]
    pub peers: Option<Vec<PeerArg>>,
    /// MiB sent through one tunnel for the throughput case.
    #[arg(long, default_value_t = 512)]
    pub mib: u64,
    /// Time per new-tunnel rate case (a bare number is seconds).
    #[arg(long, default_value = "3s", value_name = "DURATION", value_parser = crate::values::duration_or_secs)]
    pub duration: Duration,
    /// Tunnels opened at once in the rate case.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Idle tunnels held per pair kind to measure memory (0 = skip); 2,000
    /// when the open-file limit cannot hold this many (said in the output).
    #[arg(long, default_value_t = 10_000)]
    pub idle: usize,
    /// Key-exchange groups for our TLS pair, most preferred first, e.g.
    /// X25519MLKEM768,X25519 (default: hybrid first).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub groups: Option<Vec<cipherlink::KeyExchange>>,
    /// `--buffer-size` for our proxies (default: theirs).
    #[arg(long, value_name = "BYTES")]
    pub buffer_size: Option<usize>,
    /// Write the report as JSON to FILE (`-`: stdout, the table then goes to stderr).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Internal: run only the bench's echo/sink backend on this address.
    #[arg(long, hide = true, value_name = "ADDR")]
    pub backend_only: Option<SocketAddr>,
}

/// One `--peers` entry: a peer (with its program, if named), or `none`.
#[derive(Debug, Clone)]
pub struct PeerArg {
    kind: Option<PeerKind>,
    program: Option<PathBuf>,
}

fn peer_arg(text: &str) -> Result<PeerArg, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(PeerArg {
            kind: None,
            program: None,
        });
    }
    let (name, program) = match text.split_once('=') {
        Some((name, program)) => (name, Some(PathBuf::from(program))),
        None => (text, None),
    };
    Ok(PeerArg {
        kind: Some(name.trim().parse()?),
        program,
    })
}

/// Runs `bench proxy` (or, with the hidden --backend-only, its backend).
pub async fn run(args: BenchProxyArgs) -> Result<()> {
    if let Some(addr) = args.backend_only {
        let serving = bench_proxy::serve_backend(addr, |local| {
            // The bench reads this line to learn the port.
            println!("backend listening on {local}");
        });
        return Ok(serving.await?);
    }
    crate::output::json_destination(args.json.as_deref());
    if args.duration.is_zero() {
        anyhow::bail!("--duration must be more than 0");
    }
    let peers = peers(args.peers.as_deref())?;
    let options = BenchProxyOptions {
        program: std::env::current_exe().context("finding the cipherlink binary")?,
        transports: args.transport,
        peers,
        bytes: args.mib * 1024 * 1024,
        duration: args.duration,
        concurrency: args.concurrency,
        idle: args.idle,
        groups: args.groups,
        buffer_size: args.buffer_size,
        observer: Some(ProxyObserver::new(print_event)),
    };
    report!(
        "bench proxy: {} MiB through one tunnel, {:.1} s of {} concurrent new tunnels, {} idle tunnels per pair kind",
        args.mib,
        args.duration.as_secs_f64(),
        args.concurrency,
        thousands(args.idle as u64)
    );
    report!("{}", header());
    let result = bench_proxy::run(&options).await?;
    print_summary(&result);
    crate::json_report::write(args.json.as_deref(), &result)?;
    let flagged: Vec<&str> = result
        .rows
        .iter()
        .filter(|r| r.flagged())
        .map(|r| r.pair.as_str())
        .collect();
    if !flagged.is_empty() {
        anyhow::bail!(
            "bench proxy: {} had errors (see the warnings above); their figures are not a working tunnel's",
            flagged.join(", ")
        );
    }
    Ok(())
}

/// The peers to run: those named (each must be found), or every installed one.
fn peers(args: Option<&[PeerArg]>) -> Result<Vec<PeerProgram>> {
    let Some(args) = args else {
        let mut found = Vec::new();
        for kind in PeerKind::ALL {
            match kind.locate(None) {
                Ok(peer) => found.push(peer),
                Err(e) => report!("skipped: {e}"),
            }
        }
        return Ok(found);
    };
    if args.iter().any(|a| a.kind.is_none()) {
        if args.len() > 1 {
            anyhow::bail!("--peers none cannot be combined with peers");
        }
        return Ok(Vec::new());
    }
    args.iter()
        .filter_map(|a| a.kind.map(|kind| (kind, a.program.as_deref())))
        .map(|(kind, program)| kind.locate(program).context("--peers"))
        .collect()
}

fn header() -> String {
    format!(
        "{:<9} {:>9} {:>8} {:>13} {:>13} {:>7}  {}",
        "pair", "conns/s", "MB/s", "cpu-us/tunnel", "idle B/tunnel", "errors", "software"
    )
}

fn print_event(event: &ProxyEvent) {
    match event {
        ProxyEvent::Row(row) => print_row(row),
        ProxyEvent::Note(note) => report!("limit: {note}"),
        // The row follows soon enough.
        _ => {}
    }
}

fn print_row(row: &Row) {
    let number =
        |v: Option<f64>| v.map_or("-".to_string(), |v| thousands(v.max(0.0).round() as u64));
    let errors = row.conn_errors + row.idle_errors + u64::from(row.bulk_error.is_some());
    report!(
        "{:<9} {:>9} {:>8} {:>13} {:>13} {:>7}  {}{}",
        row.pair,
        number(row.conns_per_s),
        number(row.mb_s),
        number(row.cpu_us_per_tunnel),
        number(row.idle_bytes_per_tunnel),
        if row.failure.is_some() {
            "FAILED".to_string()
        } else {
            errors.to_string()
        },
        row.software,
        if row.flagged() { "  <-- ERRORS" } else { "" }
    );
}

fn print_summary(result: &BenchProxyReport) {
    report!("\ncryptography (each at its own default):");
    for row in result.rows.iter().filter(|r| r.pair != "direct") {
        report!("  {:<9} {}", row.pair, row.crypto);
        if let Some(interface) = &row.client_interface {
            report!("  {:<9} client reaches it by {interface}", "");
        }
    }
    if !result.ratios.is_empty() {
        report!("\ncipherlink against each peer (x better: rates ours/theirs, costs theirs/ours):");
        report!(
            "{:<6} {:<9} {:>8} {:>8} {:>8} {:>8}",
            "ours",
            "peer",
            "conns/s",
            "MB/s",
            "cpu",
            "idle mem"
        );
        let x = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}x"));
        for r in &result.ratios {
            report!(
                "{:<6} {:<9} {:>8} {:>8} {:>8} {:>8}",
                r.cipherlink,
                r.peer,
                x(r.conns),
                x(r.mb_s),
                x(r.cpu),
                x(r.idle_memory)
            );
        }
    }
    // The limits (result.limits) were printed as the run began.
    if let (Some(start), Some(end)) = (result.load_average_start, result.load_average_end) {
        report!(
            "load average: {:.2} {:.2} {:.2} at the start, {:.2} {:.2} {:.2} at the end",
            start[0],
            start[1],
            start[2],
            end[0],
            end[1],
            end[2]
        );
    }
    for warning in &result.warnings {
        report!("WARNING: {warning}");
    }
}
