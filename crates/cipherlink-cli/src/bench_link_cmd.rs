//! `cipherlink bench link`: parses the options, prints each case as the lab
//! finishes it, and writes the JSON report.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use cipherlink_lab::bench_link::{self, LinkBenchOptions, LinkEvent, LinkObserver};
use clap::Args;

use crate::output::report;

/// `cipherlink bench link` options.
#[derive(Debug, Args)]
pub struct BenchLinkArgs {
    /// How long each handshake case runs (link, and TLS X25519MLKEM768), e.g. 3s, 500ms; a bare number is seconds.
    #[arg(long, default_value = "3s", value_name = "DURATION", value_parser = crate::values::duration_or_secs)]
    duration: Duration,
    /// Handshakes in flight at once (both cases).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// MiB through one link and one TLS tunnel.
    #[arg(long, default_value_t = 256)]
    bulk_mib: u64,
    /// Idle links to hold for the memory case (0 = skip).
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Write the full report as JSON to FILE (`-`: stdout, the lines then go to stderr).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// Runs `cipherlink bench link`: the link numbers and their TLS baselines, in one run.
pub async fn run(a: BenchLinkArgs) -> Result<()> {
    crate::output::json_destination(a.json.as_deref());
    if a.duration.is_zero() {
        anyhow::bail!("--duration must be more than 0");
    }
    if a.concurrency == 0 {
        anyhow::bail!("--concurrency must be at least 1");
    }
    let mut idle = a.idle;
    if idle > 0 {
        // Both ends of every idle link live in this process: two sockets each.
        let limit = cipherlink_lab::fd_limit::raise().context("raising the open-file limit")?;
        let most = limit.connections() / 2;
        if idle > most {
            report!(
                "open-file limit {}: holding {most} idle links, not {idle}",
                limit.soft
            );
            idle = most;
        }
    }
    let bulk_mib = a.bulk_mib;
    let options = LinkBenchOptions {
        duration: a.duration,
        concurrency: a.concurrency,
        bulk_bytes: bulk_mib << 20,
        idle_links: idle,
        params: crate::link_cmd::params_from_env()?,
        observer: Some(LinkObserver::new(move |event| print_event(event, bulk_mib))),
    };
    let result = bench_link::run(&options).await.context("bench link")?;
    report!(
        "handshakes/s: link {:.0}, TLS X25519MLKEM768 {:.0}: the link opens {:.2}x as many",
        result.handshakes.per_sec,
        result.tls_handshakes_per_sec,
        result.handshake_ratio_vs_tls
    );
    if let (Some(link_cpu), Some(tls_cpu)) = (
        result.handshakes.cpu_us_per_handshake,
        result.tls_cpu_us_per_handshake,
    ) {
        report!(
            "CPU per handshake, both ends: link {link_cpu:.0} us, TLS {tls_cpu:.0} us: the link costs {:.2}x",
            link_cpu / tls_cpu.max(1e-9)
        );
    }
    report!(
        "bulk: link {:.0} MiB/s, TLS tunnel {:.0} MiB/s: the link moves {:.0}% of TLS's bytes",
        result.bulk_link.mib_per_sec,
        result.tls_bulk.mib_per_sec,
        result.bulk_percent_of_tls
    );
    crate::json_report::write(a.json.as_deref(), &result)?;
    Ok(())
}

fn print_event(event: &LinkEvent, bulk_mib: u64) {
    match event {
        LinkEvent::TlsHandshakes { per_sec, cpu_us } => {
            let cpu = cpu_us
                .map(|c| format!(", {c:.0} cpu-us each"))
                .unwrap_or_default();
            report!("TLS 1.3 X25519MLKEM768 full handshakes: {per_sec:.0}/s{cpu}");
        }
        LinkEvent::Floor(floor) => report!(
            "link crypto floor (us): client ephemeral+Elligator2 {:.1}, Elligator2 map {:.1}, server ephemeral {:.1}, X25519 {:.1}, ML-KEM-768 keygen {:.1} encaps {:.1} decaps {:.1}; in-memory handshake, both ends {:.1}",
            floor.ephemeral_us,
            floor.elligator2_map_us,
            floor.server_ephemeral_us,
            floor.x25519_us,
            floor.kem_keygen_us,
            floor.kem_encaps_us,
            floor.kem_decaps_us,
            floor.handshake_both_ends_us
        ),
        LinkEvent::Handshakes(h) => {
            let cpu = h
                .cpu_us_per_handshake
                .map(|c| format!(", {c:.0} cpu-us each"))
                .unwrap_or_default();
            report!(
                "link handshakes: {:.0}/s ({} in {:.1} s, {} errors), p50 {} us, p99 {} us{cpu}",
                h.per_sec,
                h.connections,
                h.seconds,
                h.errors,
                h.p50_us,
                h.p99_us
            );
        }
        LinkEvent::LinkBulk(b) => {
            report!("bulk, one link, {bulk_mib} MiB: {:.0} MiB/s", b.mib_per_sec)
        }
        LinkEvent::TlsBulk(b) => report!(
            "bulk, one TLS 1.3 tunnel (X25519MLKEM768, AES-GCM), {bulk_mib} MiB: {:.0} MiB/s",
            b.mib_per_sec
        ),
        LinkEvent::Overhead(o) => report!(
            "overhead per {}-byte record: link {:.1} B without padding, {:.1} B with tail {} (mean); TLS 1.3 {:.0} B",
            o.payload,
            o.link_no_padding,
            o.link_with_padding,
            o.tail_length,
            o.tls13
        ),
        LinkEvent::Idle(i) => report!(
            "idle links: {} held, {:.1} KiB per link end ({:.1} KiB per link, both ends in this process)",
            i.links,
            i.bytes_per_link_end / 1024.0,
            i.bytes_per_link_both_ends / 1024.0
        ),
        _ => {}
    }
}
