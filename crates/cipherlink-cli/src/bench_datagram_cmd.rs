//! `cipherlink bench datagram`: flags to `cipherlink_lab::bench_datagram`,
//! its report as a table (rows, ratios against plain UDP and against
//! wireguard-go, the goals), and the JSON report.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use cipherlink_lab::bench_datagram::{
    self, DatagramBenchOptions, DatagramEvent, DatagramObserver, DatagramReport, PathKind, Ratios,
    Transport,
};
use cipherlink_lab::format::thousands;
use clap::Args;

use crate::output::report;

/// `bench datagram` options.
#[derive(Debug, Args)]
pub struct BenchDatagramArgs {
    /// Datagram transports, comma-separated: plain, typhoon, link (the
    /// link protocol's datagram mode; plain always runs: it is the baseline).
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "plain,typhoon,link"
    )]
    transport: Vec<Transport>,
    /// WireGuard to measure beside them: wireguard-go, or
    /// wireguard-go=PROGRAM; `none` for none (default: wireguard-go when
    /// installed). Needs root, for its network namespaces.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    peers: Option<Vec<String>>,
    /// The path of plain, TYPHOON and link: veth (two network namespaces of the
    /// bench's own, as WireGuard's; root), loopback, or auto (veth as root).
    #[arg(long, default_value = "auto", value_parser = ["auto", "veth", "loopback"])]
    path: String,
    /// Time of each handshake case and each throughput case (a bare number is seconds).
    #[arg(long, default_value = "3s", value_name = "DURATION", value_parser = crate::values::duration_or_secs)]
    duration: Duration,
    /// Handshakes in flight at once (WireGuard: interface pairs, two wireguard-go processes each).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Payload bytes per datagram (throughput and round trips).
    #[arg(long, default_value_t = 1200)]
    payload: usize,
    /// Most datagrams the throughput sender sends.
    #[arg(long, default_value_t = 10_000_000)]
    max_datagrams: u64,
    /// The throughput sender's datagrams per second (0: as fast as the transport takes them).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Round trips per transport, one at a time.
    #[arg(long, default_value_t = 5_000)]
    pings: u64,
    /// Idle sessions to hold for the memory case (0 = skip); fewer when the
    /// open-file limit cannot hold them (said in the output).
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Write the report as JSON to FILE (`-`: stdout, the table then goes to stderr).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// Runs `bench datagram`; Ctrl-C stops it, removing its namespaces and
/// processes.
pub async fn run(a: BenchDatagramArgs) -> Result<()> {
    crate::output::json_destination(a.json.as_deref());
    if a.duration.is_zero() {
        anyhow::bail!("--duration must be more than 0");
    }
    let path = match a.path.as_str() {
        "veth" => PathKind::Veth,
        "loopback" => PathKind::Loopback,
        _ => match bench_datagram::netns::unavailable() {
            None => PathKind::Veth,
            Some(why) => {
                report!("path: loopback ({why} for the veth path)");
                PathKind::Loopback
            }
        },
    };
    let options = DatagramBenchOptions {
        transports: a.transport,
        wireguard_go: wireguard_go(a.peers.as_deref())?,
        path,
        duration: a.duration,
        concurrency: a.concurrency,
        payload: a.payload,
        max_datagrams: a.max_datagrams,
        rate: a.rate,
        pings: a.pings,
        idle: a.idle,
        typhoon: bench_datagram::typhoon_bench_settings(|k| std::env::var(k).ok())?,
        observer: Some(DatagramObserver::new(print_event)),
        end_log: end_log(),
    };
    crate::shutdown::take_over();
    // Cancelling the run drops its namespaces and wireguard-go processes.
    let result = tokio::select! {
        r = bench_datagram::run(&options) => r.context("bench datagram")?,
        () = crate::shutdown::requested() => {
            anyhow::bail!("bench datagram: stopped; its namespaces and processes are removed")
        }
    };
    for line in table(&result) {
        report!("{line}");
    }
    crate::json_report::write(a.json.as_deref(), &result)?;
    if result.has_failures() {
        anyhow::bail!("bench datagram: some cases failed (see FAILED above)");
    }
    Ok(())
}

/// The ends log warnings only, unless CIPHERLINK_LOG asks for more: a
/// TYPHOON listener says every admitted session at info, 10,000 lines in
/// the idle case.
fn end_log() -> Option<tracing::Dispatch> {
    if std::env::var_os("CIPHERLINK_LOG").is_some() {
        return None;
    }
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .with_target(false)
        .finish();
    Some(tracing::Dispatch::new(subscriber))
}

/// wireguard-go's program: the one named, the installed one, or none.
fn wireguard_go(peers: Option<&[String]>) -> Result<Option<PathBuf>> {
    let Some(peers) = peers else {
        let found = which(std::path::Path::new("wireguard-go")).or_else(|| {
            // sbin-less PATHs (sudo's secure_path is not everyone's).
            let debian = PathBuf::from("/usr/bin/wireguard-go");
            debian.is_file().then_some(debian)
        });
        if found.is_none() {
            report!("wireguard-go is not installed: no WireGuard row");
        }
        return Ok(found);
    };
    let mut program = None;
    for p in peers {
        let (name, path) = match p.split_once('=') {
            Some((n, path)) => (n.trim(), Some(PathBuf::from(path))),
            None => (p.trim(), None),
        };
        match name {
            "none" if peers.len() == 1 => return Ok(None),
            "none" => anyhow::bail!("--peers none cannot be combined with peers"),
            "wireguard-go" => {
                let path = path.unwrap_or_else(|| PathBuf::from("wireguard-go"));
                let path = if path.components().count() == 1 {
                    which(&path)
                        .with_context(|| format!("--peers: {} is not on PATH", path.display()))?
                } else {
                    path
                };
                if !path.is_file() {
                    anyhow::bail!("--peers: {} is not a file", path.display());
                }
                program = Some(path);
            }
            other => anyhow::bail!("--peers: unknown peer {other:?}; valid: wireguard-go, none"),
        }
    }
    Ok(program)
}

fn which(name: &std::path::Path) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

fn print_event(event: &DatagramEvent) {
    match event {
        DatagramEvent::Case(row, case) => report!("{row}: {case} ..."),
        DatagramEvent::Note(note) => report!("note: {note}"),
        _ => {}
    }
}

fn num(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| thousands(v.max(0.0).round() as u64))
}

fn signed(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

fn x(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}x"))
}

/// The report as lines: rows, ratios, goals, notes.
pub fn table(r: &DatagramReport) -> Vec<String> {
    let mut out = vec![
        String::new(),
        format!(
            "{} concurrent handshakes, {}-byte datagrams, {:.1} s per case, {} round trips, {} idle sessions; path of plain and TYPHOON: {}",
            r.concurrency,
            r.payload,
            r.duration_s,
            thousands(r.pings),
            thousands(r.idle_sessions as u64),
            r.path.name()
        ),
        format!(
            "{:<13} {:<8} {:>8} {:>9} {:>10} {:>10} {:>8} {:>7} {:>13} {:>13} {:>9}",
            "transport", "path", "hs/s", "cpu-us/hs", "hs p99 us", "dgrams/s", "MB/s", "lost %",
            "rtt p50/p99", "added p50/99", "idle B/s"
        ),
    ];
    for row in &r.rows {
        let h = row.handshakes.as_ref();
        let t = row.throughput.as_ref();
        let l = row.latency.as_ref();
        out.push(format!(
            "{:<13} {:<8} {:>8} {:>9} {:>10} {:>10} {:>8} {:>7} {:>13} {:>13} {:>9}{}",
            row.transport,
            row.path,
            num(h.map(|h| h.per_sec)),
            num(h.and_then(|h| h.cpu_us_per_handshake)),
            num(h.map(|h| h.p99_us as f64)),
            num(t.map(|t| t.datagrams_per_sec)),
            num(t.map(|t| t.mb_per_sec)),
            t.map_or("-".into(), |t| format!("{:.1}", t.loss_percent)),
            l.map_or("-".into(), |l| format!(
                "{:.0}/{:.0}",
                l.rtt_p50_us, l.rtt_p99_us
            )),
            l.and_then(|l| l.added_p50_us.zip(l.added_p99_us)).map_or(
                "-".into(),
                |(a, b)| format!("{}/{}", signed(Some(a)), signed(Some(b)))
            ),
            num(row.idle.as_ref().map(|i| i.bytes_per_session)),
            if row.failures.is_empty() {
                ""
            } else {
                "  FAILED"
            }
        ));
    }
    for row in &r.rows {
        for f in &row.failures {
            out.push(format!("FAILED {}: {f}", row.transport));
        }
        if let Some(h) = row.handshakes.as_ref().filter(|h| h.errors > 0) {
            out.push(format!(
                "{}: {} handshakes failed, first: {}",
                row.transport,
                h.errors,
                h.first_error.as_deref().unwrap_or("-")
            ));
        }
        if let Some(i) = &row.idle {
            out.push(format!(
                "{} idle: {} sessions, {}",
                row.transport,
                thousands(i.sessions as u64),
                i.ends
            ));
        }
    }
    ratio_lines(&mut out, "against plain UDP (ours/plain)", &r.against_plain);
    ratio_lines(
        &mut out,
        "against wireguard-go (ours/wireguard-go)",
        &r.against_wireguard,
    );
    if !r.goals.is_empty() {
        out.push(String::new());
        out.push("goals:".into());
        for g in &r.goals {
            let verdict = match g.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "not measured",
            };
            let value = g.value.map_or("-".into(), |v| format!("{v:.2}"));
            out.push(format!(
                "  {:<8} {:<46} {:>10}  {verdict}",
                g.transport, g.goal, value
            ));
        }
    }
    footnotes(r, &mut out);
    out
}

/// How the numbers were made, and the run's notes.
fn footnotes(r: &DatagramReport, out: &mut Vec<String>) {
    out.push(String::new());
    out.push("hs: a new session and its first answer (plain UDP: a new socket's first round trip). added: (rtt - plain rtt on the same path) / 2.".into());
    let (lo, hi) = r.typhoon_initial_next_in_ms;
    out.push(format!(
        "TYPHOON: INIT next_in {lo}-{hi} ms (SeasideVPN's default answers after 3,200-12,800 ms on purpose; TYPHOON_INITIAL_NEXT_IN sets it), random tail up to {} bytes per message.",
        r.typhoon_max_tail
    ));
    if let Some(f) = &r.floor {
        out.push(format!(
            "public-key floor: X25519 {:.1} us here; a handshake needs {} (TYPHOON, {:.0} us) or {} (WireGuard's Noise IK, {:.0} us at this speed), both ends.",
            f.x25519_us,
            f.typhoon_x25519_ops,
            f.x25519_us * f64::from(f.typhoon_x25519_ops),
            f.wireguard_x25519_ops,
            f.x25519_us * f64::from(f.wireguard_x25519_ops)
        ));
    }
    if let Some(m) = &r.wireguard_handshake_method {
        out.push(format!("WireGuard handshakes: {m}."));
        if let Some(f) = &r.wireguard_forget {
            out.push(format!(
                "  the removing and re-adding alone (no datagram, no handshake): {} rounds/s, {:.0} cpu-us each; that part of each forced handshake is not WireGuard's handshake.",
                thousands(f.per_sec.round() as u64),
                f.cpu_us
            ));
        }
        out.push("WireGuard throughput and round trips: plain UDP through the tunnel addresses; idle: see above.".into());
    }
    for n in &r.notes {
        out.push(format!("note: {n}"));
    }
}

fn ratio_lines(out: &mut Vec<String>, title: &str, ratios: &[Ratios]) {
    if ratios.is_empty() {
        return;
    }
    out.push(String::new());
    out.push(format!("{title}:"));
    out.push(format!(
        "  {:<13} {:>8} {:>10} {:>8} {:>8} {:>9}",
        "transport", "hs/s", "cpu/hs", "MB/s", "rtt p99", "idle mem"
    ));
    for q in ratios {
        out.push(format!(
            "  {:<13} {:>8} {:>10} {:>8} {:>8} {:>9}",
            q.transport,
            x(q.handshakes),
            x(q.cpu_per_handshake),
            x(q.mb_per_sec),
            x(q.rtt_p99),
            x(q.idle_bytes)
        ));
    }
}
