//! `cipherlink bench pool`: Pool messages/s and round trips, Rust and Python parties.

use crate::output::report;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use cipherlink_lab::bench_pool::{
    self, PoolBenchEvent, PoolBenchOptions, PoolBenchReport, PoolBenchRow, PythonParty,
};
use clap::Args;

/// `bench pool` options.
#[derive(Debug, Args)]
pub struct BenchPoolArgs {
    /// Payload sizes in bytes, comma-separated.
    #[arg(long, default_value = "16,1048576", value_delimiter = ',')]
    pub sizes: Vec<usize>,
    /// Messages per phase for payloads up to 64 KiB.
    #[arg(long, default_value_t = 2000)]
    pub messages: usize,
    /// Messages per phase for larger payloads.
    #[arg(long, default_value_t = 100)]
    pub messages_large: usize,
    /// Sends in flight in the pipelined phase.
    #[arg(long, default_value_t = 16)]
    pub depth: usize,
    /// Transports, comma-separated: plain, tls.
    #[arg(long, default_value = "plain,tls", value_delimiter = ',')]
    pub transport: Vec<String>,
    /// A Python with tno.mpc.communication 5.x, to measure a Python Bob too
    /// (default: $CIPHERLINK_PEER_PYTHON_TNO5, else .venv/tno5 from
    /// scripts/setup-peers, in the current folder or the checkout this binary
    /// was built from). Skipped, with a note, when none is installed.
    #[arg(long, env = "CIPHERLINK_PEER_PYTHON_TNO5")]
    pub python: Option<PathBuf>,
    /// The Python party script (default: crates/cipherlink-pool/tests/py/bench_party.py
    /// in the current folder or the checkout this binary was built from).
    #[arg(long)]
    pub python_script: Option<PathBuf>,
    /// Write the results as JSON to FILE (`-`: stdout, the table then goes to stderr).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

const PARTY_SCRIPT: &str = "crates/cipherlink-pool/tests/py/bench_party.py";

/// `relative` under the current folder if it is there, else under the
/// checkout this binary was built from (found the way the tests find it).
fn in_checkout(relative: &str) -> Option<PathBuf> {
    let here = PathBuf::from(relative);
    if here.exists() {
        return Some(here);
    }
    let built_from = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)?;
    Some(built_from.join(relative)).filter(|p| p.exists())
}

/// Runs `cipherlink bench pool`.
pub async fn run(args: BenchPoolArgs) -> Result<()> {
    crate::output::json_destination(args.json.as_deref());
    for t in &args.transport {
        anyhow::ensure!(
            t == "plain" || t == "tls",
            "--transport {t:?}: expected plain or tls"
        );
    }
    // scripts/setup-peers puts the package in .venv/tno5; use it when no
    // interpreter was named, so the Python comparison runs by default.
    let interpreter = args
        .python
        .or_else(|| in_checkout(".venv/tno5/bin/python"))
        .filter(|p| p.exists());
    let python = match interpreter {
        Some(interpreter) => Some(PythonParty {
            interpreter,
            script: args
                .python_script
                .or_else(|| in_checkout(PARTY_SCRIPT))
                .with_context(|| {
                    format!("{PARTY_SCRIPT} is not in the current folder nor in the checkout this binary was built from: give --python-script")
                })?,
        }),
        None => None,
    };
    let opts = PoolBenchOptions {
        sizes: args.sizes,
        messages_small: args.messages,
        messages_large: args.messages_large,
        depth: args.depth,
        plain: args.transport.iter().any(|t| t == "plain"),
        tls: args.transport.iter().any(|t| t == "tls"),
        python,
    };
    let measures_python = opts.python.is_some();
    print_header();
    let report = bench_pool::run(opts, |event| match event {
        PoolBenchEvent::Row(row) => print_row(row),
        PoolBenchEvent::PythonFailed(why) => report!("(skipped) {why}"),
        _ => {}
    })
    .await
    .context("bench pool")?;
    if !measures_python {
        report!(
            "note: no Python party measured: install tno.mpc.communication (scripts/setup-peers) \
             or pass --python"
        );
    }
    print_ratios(&report);
    crate::json_report::write(args.json.as_deref(), &report)?;
    Ok(())
}

fn print_header() {
    report!(
        "{:<13} {:<6} {:>9} {:>7} {:>12} {:>12} {:>10} {:>10}",
        "pair",
        "tls",
        "size",
        "msgs",
        "one-way/s",
        "pipelined/s",
        "rtt p50ms",
        "rtt p99ms"
    );
}

fn print_row(r: &PoolBenchRow) {
    report!(
        "{:<13} {:<6} {:>9} {:>7} {:>12.0} {:>12.0} {:>10.3} {:>10.3}",
        r.pair,
        r.transport,
        r.size,
        r.messages,
        r.oneway_msgs_per_s,
        r.pipelined_msgs_per_s,
        r.rtt_p50_ms,
        r.rtt_p99_ms
    );
}

/// Rust-Rust over Python-Python, from rows of this same run.
fn print_ratios(report: &PoolBenchReport) {
    for r in report.ratios() {
        report!(
            "rust-rust / python-python, {} {:>7} B: one-way {:.1}x, pipelined {:.1}x, rtt p50 {:.1}x lower",
            r.transport, r.size, r.oneway, r.pipelined, r.rtt_p50_lower,
        );
    }
}
