//! The rows, the ratios of cipherlink against each peer, and the warnings a
//! run owes its reader (a flagged pair, a client that may be the bottleneck).

use serde::Serialize;

use crate::fd_limit::FdLimit;

/// A pair whose rate or throughput reaches this share of the plain pair's
/// is close enough to the bench's own ceiling that the client or backend
/// may be what limits it.
pub const BOTTLENECK_SHARE: f64 = 0.8;

/// Where a row's tunnel comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RowKind {
    /// No tunnel: the client talks to the backend (the ceiling).
    Direct,
    /// A `cipherlink proxy client` + `proxy server` pair.
    Cipherlink,
    /// A foreign pair.
    Peer,
}

/// One pair: how it was set up and what it measured. A figure is `None`
/// when its case did not run or failed (then `failure` or the error
/// counts say why).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `direct`, `plain`, `tls`, `link`, `v1`, `stunnel`, `haproxy`, `ss-libev`, `spiped`, `obfs4`.
    pub pair: String,
    /// Ours, a peer's, or none.
    pub kind: RowKind,
    /// The program and its version (e.g. `stunnel 5.68`).
    pub software: String,
    /// The cryptography the pair runs with: its own default, named.
    pub crypto: String,
    /// How the bench reaches the pair's client end, when it is not a plain TCP port.
    pub client_interface: Option<String>,
    /// New tunnels per second: connect, 4-byte echo, close.
    pub conns_per_s: Option<f64>,
    /// Tunnels that echoed correctly in the rate case.
    pub tunnels: u64,
    /// Tunnels that failed in the rate case (refused, reset, wrong echo, timed out).
    pub conn_errors: u64,
    /// The first of those failures.
    pub first_conn_error: Option<String>,
    /// One tunnel's throughput, client to backend, MB/s (10^6 bytes), every byte counted by the backend.
    pub mb_s: Option<f64>,
    /// Why the bulk case failed.
    pub bulk_error: Option<String>,
    /// CPU time of both ends (utime + stime) per new tunnel over the rate case, microseconds.
    pub cpu_us_per_tunnel: Option<f64>,
    /// Idle tunnels asked for.
    pub idle_requested: usize,
    /// Idle tunnels that opened and echoed.
    pub idle_tunnels: usize,
    /// Idle tunnels that failed to open.
    pub idle_errors: u64,
    /// The first of those failures.
    pub first_idle_error: Option<String>,
    /// Pairs of this kind the idle tunnels were spread over.
    pub idle_pairs: usize,
    /// Growth of both ends' resident memory per idle tunnel, bytes.
    pub idle_bytes_per_tunnel: Option<f64>,
    /// Why the pair (or its idle case) could not run at all.
    pub failure: Option<String>,
}

impl Row {
    /// An empty row for `pair`, filled in as its cases run.
    pub(super) fn new(pair: &str, kind: RowKind, software: String, crypto: String) -> Row {
        Row {
            pair: pair.to_string(),
            kind,
            software,
            crypto,
            client_interface: None,
            conns_per_s: None,
            tunnels: 0,
            conn_errors: 0,
            first_conn_error: None,
            mb_s: None,
            bulk_error: None,
            cpu_us_per_tunnel: None,
            idle_requested: 0,
            idle_tunnels: 0,
            idle_errors: 0,
            first_idle_error: None,
            idle_pairs: 0,
            idle_bytes_per_tunnel: None,
            failure: None,
        }
    }

    /// Whether anything in this row failed: its figures are not a working tunnel's.
    pub fn flagged(&self) -> bool {
        self.failure.is_some()
            || self.bulk_error.is_some()
            || self.conn_errors > 0
            || self.idle_errors > 0
    }

    /// What failed, in one line (empty when nothing did).
    pub fn problems(&self) -> String {
        let mut out = Vec::new();
        if let Some(failure) = &self.failure {
            out.push(failure.clone());
        }
        if let Some(bulk) = &self.bulk_error {
            out.push(bulk.clone());
        }
        if self.conn_errors > 0 {
            out.push(format!(
                "{} of {} new tunnels failed (first: {})",
                self.conn_errors,
                self.conn_errors + self.tunnels,
                self.first_conn_error.as_deref().unwrap_or("?")
            ));
        }
        if self.idle_errors > 0 {
            out.push(format!(
                "{} idle tunnels failed to open (first: {})",
                self.idle_errors,
                self.first_idle_error.as_deref().unwrap_or("?")
            ));
        }
        out.join("; ")
    }
}

/// One of our encrypted transports against one peer: how many times better
/// cipherlink does (above 1: cipherlink is better; for CPU and memory that
/// means it spends less).
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// Our pair (`tls`, `link`, `v1`).
    pub cipherlink: String,
    /// The peer's pair.
    pub peer: String,
    /// Our new tunnels/s over the peer's.
    pub conns: Option<f64>,
    /// Our MB/s over the peer's.
    pub mb_s: Option<f64>,
    /// The peer's CPU per new tunnel over ours.
    pub cpu: Option<f64>,
    /// The peer's memory per idle tunnel over ours.
    pub idle_memory: Option<f64>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchProxyReport {
    /// `direct` first, then ours (plain first), then the peers.
    pub rows: Vec<Row>,
    /// Each of our encrypted transports against each peer.
    pub ratios: Vec<Ratio>,
    /// Pairs whose figures are not trustworthy: errors, or close to the bench's own ceiling.
    pub warnings: Vec<String>,
    /// What this machine's limits changed from what was asked (the idle count), in words.
    pub limits: Vec<String>,
    /// Bytes per bulk case.
    pub bytes: u64,
    /// Seconds per rate case.
    pub duration_s: f64,
    /// Tunnels opened at once in the rate case.
    pub concurrency: usize,
    /// Idle tunnels asked for.
    pub idle_requested: usize,
    /// Idle tunnels held per pair kind.
    pub idle: usize,
    /// This process's open-file limit after raising the soft limit to the hard one.
    pub fd_limit: FdLimit,
    /// /proc/loadavg's 1, 5 and 15 minute figures when the run started.
    pub load_average_start: Option<[f64; 3]>,
    /// The same when it ended.
    pub load_average_end: Option<[f64; 3]>,
}

/// Our encrypted pairs against every peer pair, on every figure both have.
pub(super) fn ratios(rows: &[Row]) -> Vec<Ratio> {
    let ours = rows
        .iter()
        .filter(|r| r.kind == RowKind::Cipherlink && r.pair != "plain" && !r.flagged());
    let mut out = Vec::new();
    for our in ours {
        for peer in rows
            .iter()
            .filter(|r| r.kind == RowKind::Peer && !r.flagged())
        {
            out.push(Ratio {
                cipherlink: our.pair.clone(),
                peer: peer.pair.clone(),
                conns: divide(our.conns_per_s, peer.conns_per_s),
                mb_s: divide(our.mb_s, peer.mb_s),
                cpu: divide(peer.cpu_us_per_tunnel, our.cpu_us_per_tunnel),
                idle_memory: divide(peer.idle_bytes_per_tunnel, our.idle_bytes_per_tunnel),
            });
        }
    }
    out
}

fn divide(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() && b.is_finite() => Some(a / b),
        _ => None,
    }
}

/// Flagged pairs, and pairs that reach [`BOTTLENECK_SHARE`] of the plain
/// pair's rate or throughput (or of direct's, without a plain row).
pub(super) fn warnings(rows: &[Row]) -> Vec<String> {
    let mut out = Vec::new();
    for row in rows.iter().filter(|r| r.flagged()) {
        out.push(format!("{}: ERRORS: {}", row.pair, row.problems()));
    }
    let ceiling = rows
        .iter()
        .find(|r| r.pair == "plain" && !r.flagged())
        .or_else(|| rows.iter().find(|r| r.kind == RowKind::Direct));
    let Some(ceiling) = ceiling else {
        return out;
    };
    let measured = rows
        .iter()
        .filter(|r| r.kind != RowKind::Direct && r.pair != ceiling.pair);
    for row in measured {
        for (what, value, top) in [
            ("new tunnels/s", row.conns_per_s, ceiling.conns_per_s),
            ("MB/s", row.mb_s, ceiling.mb_s),
        ] {
            if let (Some(value), Some(top)) = (value, top) {
                if top > 0.0 && value >= BOTTLENECK_SHARE * top {
                    out.push(format!(
                        "{}: {what} at {:.0}% of the {} pair's: the bench's own client and \
                         backend may be what limits it (its figure is a lower bound)",
                        row.pair,
                        100.0 * value / top,
                        ceiling.pair
                    ));
                }
            }
        }
    }
    out
}

/// /proc/loadavg's three averages, if readable.
pub(super) fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pair: &str, kind: RowKind, conns: f64, mb_s: f64, cpu: f64, idle: f64) -> Row {
        let mut row = Row::new(pair, kind, String::new(), String::new());
        row.conns_per_s = Some(conns);
        row.mb_s = Some(mb_s);
        row.cpu_us_per_tunnel = Some(cpu);
        row.idle_bytes_per_tunnel = Some(idle);
        row
    }

    #[test]
    fn ratios_say_how_many_times_better_cipherlink_is_on_each_figure() {
        let rows = vec![
            row("direct", RowKind::Direct, 10_000.0, 2_000.0, 0.0, 0.0),
            row("plain", RowKind::Cipherlink, 5_000.0, 900.0, 100.0, 8_000.0),
            row("tls", RowKind::Cipherlink, 2_000.0, 600.0, 300.0, 20_000.0),
            row("stunnel", RowKind::Peer, 1_000.0, 400.0, 900.0, 40_000.0),
        ];
        let ratios = ratios(&rows);
        assert_eq!(ratios.len(), 1, "{ratios:?}");
        let r = &ratios[0];
        assert_eq!((r.cipherlink.as_str(), r.peer.as_str()), ("tls", "stunnel"));
        // Higher is better for rates, lower is better for costs: all read "x better".
        assert_eq!(r.conns, Some(2.0));
        assert_eq!(r.mb_s, Some(1.5));
        assert_eq!(r.cpu, Some(3.0));
        assert_eq!(r.idle_memory, Some(2.0));
    }

    #[test]
    fn a_flagged_pair_gets_no_ratio_and_is_named_in_the_warnings() {
        let mut spiped = row("spiped", RowKind::Peer, 100.0, 300.0, 5_000.0, 9_000.0);
        spiped.conn_errors = 3;
        spiped.tunnels = 97;
        spiped.first_conn_error = Some("connection reset".into());
        let rows = vec![
            row("plain", RowKind::Cipherlink, 5_000.0, 900.0, 100.0, 8_000.0),
            row("link", RowKind::Cipherlink, 2_000.0, 800.0, 300.0, 20_000.0),
            spiped,
        ];
        assert!(ratios(&rows).is_empty());
        let warnings = warnings(&rows);
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with("spiped: ERRORS") && w.contains("3 of 100")),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_pair_near_the_plain_pair_warns_that_the_client_may_limit_it() {
        let rows = vec![
            row("direct", RowKind::Direct, 10_000.0, 2_000.0, 0.0, 0.0),
            row(
                "plain",
                RowKind::Cipherlink,
                5_000.0,
                1_000.0,
                100.0,
                8_000.0,
            ),
            row("v1", RowKind::Cipherlink, 4_500.0, 300.0, 150.0, 8_000.0),
            row("haproxy", RowKind::Peer, 1_000.0, 790.0, 500.0, 30_000.0),
        ];
        let warnings = warnings(&rows);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("v1: new tunnels/s at 90% of the plain pair's"),
            "{warnings:?}"
        );
    }
}
