//! How `cipherlink bench conn` shows its run: a line per case and per
//! batch of connections, a spinner on a terminal, the floor of each case,
//! and the final table with the group and implementation ratios. The lab
//! returns the numbers; this prints them.

use crate::output::report;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use cipherlink::certs::KeyAlgorithm;
use cipherlink::{Implementation, KeyExchange};
use cipherlink_lab::bench_conn::floor::CryptoFloor;
use cipherlink_lab::bench_conn::{ConnEvent, ConnReport, Observer};
use cipherlink_lab::format::{ms, thousands};
use indicatif::{ProgressBar, ProgressStyle};

/// An observer that prints the run as it goes (with a spinner when stderr
/// is a terminal).
pub fn observer(cert_algorithm: KeyAlgorithm) -> Observer {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let bar: Mutex<Option<ProgressBar>> = Mutex::new(None);
    Observer::new(move |event: &ConnEvent| {
        let Ok(mut bar) = bar.lock() else {
            return;
        };
        match event {
            ConnEvent::CaseStarted { label } => {
                report!("\n== {label}");
                *bar = spinner(label);
            }
            ConnEvent::Connections { done, per_sec } => {
                let line = format!(
                    "{:<24} {} conns per/s",
                    format!("{} connections", thousands(*done)),
                    thousands(*per_sec as u64)
                );
                match bar.as_ref() {
                    Some(bar) => {
                        bar.set_position(*done);
                        bar.println(line);
                    }
                    None => report!("{line}"),
                }
            }
            ConnEvent::CaseDone { case } => {
                if let Some(bar) = bar.take() {
                    bar.finish_and_clear();
                }
                if let Some(floor) = &case.floor {
                    print_floor(floor, cert_algorithm, cores);
                }
            }
            _ => {}
        }
    })
}

fn spinner(label: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {pos} connections") {
        bar.set_style(style);
    }
    bar.set_message(label.to_string());
    bar.enable_steady_tick(Duration::from_millis(100));
    Some(bar)
}

/// Each implementation's rate as a share of rustls' for the same mode and
/// group, in the same run.
pub fn print_implementation_ratios(report: &ConnReport) {
    for base in report
        .cases
        .iter()
        .filter(|c| c.implementation == Some(Implementation::Rustls))
    {
        for case in report.cases.iter().filter(|c| {
            c.mode == base.mode
                && c.group == base.group
                && c.implementation
                    .is_some_and(|i| i != Implementation::Rustls)
        }) {
            report!(
                "{} {}: {} at {:.0}% of rustls' rate ({:.0} vs {:.0} cpu-us per connection)",
                case.mode,
                case.group.as_deref().unwrap_or("-"),
                case.implementation.map_or("-", Implementation::name),
                100.0 * case.conns_per_sec / base.conns_per_sec.max(f64::MIN_POSITIVE),
                case.cpu_us_per_conn.unwrap_or(f64::NAN),
                base.cpu_us_per_conn.unwrap_or(f64::NAN),
            );
        }
    }
}

fn print_floor(floor: &CryptoFloor, cert_algorithm: KeyAlgorithm, cores: usize) {
    report!(
        "crypto floor on {cores} core(s), {} certificate, fastest of {} samples: kx {:.1} us  \
         sign {:.1} us  verify {:.1} us  => full handshake (kx + sign + {} verify) {:.1} us \
         (slowest sample {:.1} us), resumed {:.1} us",
        cert_algorithm,
        floor.samples,
        floor.key_exchange_us,
        floor.sign_us,
        floor.verify_us,
        floor.verifies_per_handshake,
        floor.full_handshake_us(),
        floor.full_handshake_us_slowest,
        floor.resumed_handshake_us()
    );
}
pub fn print_table(report: &ConnReport) {
    report!(
        "\nsummary: {} core(s), concurrency {}, {} certificate, against {}",
        report.cores,
        report.concurrency,
        report.cert_algorithm,
        report.target
    );
    if let Some(tcp) = report.plain_tcp_us {
        report!(
            "floor/s = cores / (crypto floor + {tcp:.1} us of plain TCP per connection); \
             the floor counts the public-key work the handshakes do: kx + sign + \
             CertificateVerify's verification (the client's chain cache skips the CA's \
             signature on a chain it verified before), the fastest of the samples \
             around each case; cpu-us = process CPU per connection (client + server)"
        );
    }
    report!(
        "{:<11} {:<8} {:<18} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>8} {:>10} {:>7}",
        "mode",
        "impl",
        "group",
        "conns",
        "errors",
        "conns/s",
        "hs p50ms",
        "hs p99ms",
        "resumed",
        "cpu-us",
        "floor/s",
        "%floor"
    );
    for case in &report.cases {
        report!(
            "{:<11} {:<8} {:<18} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>8} {:>10} {:>7}",
            case.mode.to_string(),
            case.implementation.map_or("-", Implementation::name),
            case.group.as_deref().unwrap_or("-"),
            thousands(case.connections),
            case.errors,
            thousands(case.conns_per_sec as u64),
            ms(case.handshake.p50_us),
            ms(case.handshake.p99_us),
            case.resumed,
            case.cpu_us_per_conn
                .map_or("-".to_string(), |us| format!("{us:.0}")),
            case.floor_per_sec
                .map_or("-".to_string(), |f| thousands(f as u64)),
            case.percent_of_floor
                .map_or("-".to_string(), |p| format!("{p:.0}%")),
        );
        if let Some(err) = &case.first_error {
            report!("    first error: {err}");
        }
        if let Some(left) = case.server_connections_left.filter(|&n| n > 0) {
            report!("    WARNING: {left} server connection(s) still open after the case");
        }
    }
}

/// Each group's rate as a share of X25519's in the same mode, beside the
/// share the floor allows: a hybrid group cannot beat the ratio of the
/// public-key work, whatever the rest of the stack does.
pub fn print_group_ratios(report: &ConnReport) {
    let x25519 = KeyExchange::X25519.name();
    for base in report
        .cases
        .iter()
        .filter(|c| c.group.as_deref() == Some(x25519))
    {
        for case in report.cases.iter().filter(|c| {
            c.mode == base.mode
                && c.implementation == base.implementation
                && c.group.is_some()
                && c.group.as_deref() != Some(x25519)
        }) {
            let floor_ratio = match (case.floor_per_sec, base.floor_per_sec) {
                (Some(f), Some(b)) if b > 0.0 => format!("{:.0}%", 100.0 * f / b),
                _ => "-".to_string(),
            };
            report!(
                "{} {} / {x25519} on {}: {:.0}% of the rate (the floors allow {floor_ratio})",
                case.mode,
                case.group.as_deref().unwrap_or("-"),
                case.implementation.map_or("-", Implementation::name),
                100.0 * case.conns_per_sec / base.conns_per_sec.max(f64::MIN_POSITIVE),
            );
        }
    }
}
