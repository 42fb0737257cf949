//! The pairs measured: a client end and a server end in front of the
//! backend, each its own process, as a user runs them. One module per kind.

mod haproxy;
mod obfs4;
mod ours;
mod spiped;
mod ss_libev;
mod stunnel;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::client::Entry;
use super::material::Material;
use super::options::{BenchProxyOptions, OurTransport, PeerKind, PeerProgram};
use super::process::{retry_ports, Proc};
use super::report::RowKind;
use crate::LabError;

/// Tunnels an end is told it may hold beyond what it is given to hold
/// (readiness probes, a tunnel still closing).
pub(in crate::bench_proxy) const END_SLACK: usize = 64;

/// What one pair needs from the run.
pub(super) struct Ctx<'a> {
    pub(super) options: &'a BenchProxyOptions,
    pub(super) material: &'a Material,
    pub(super) backend: SocketAddr,
}

/// A running pair: where the client goes in, and the processes that are its two ends.
pub(super) struct Pair {
    pub(super) entry: Entry,
    pub(super) procs: Vec<Proc>,
}

impl Pair {
    /// The processes whose CPU and memory count.
    pub(super) fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(Proc::pid).collect()
    }

    /// An error if an end has stopped.
    pub(super) fn check_running(&mut self, during: &str) -> Result<(), LabError> {
        match self.procs.iter_mut().find_map(|p| p.stopped(during)) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

/// A row's way from the client to the backend.
#[derive(Debug, Clone)]
pub(super) enum Subject {
    /// No tunnel.
    Direct,
    /// A cipherlink proxy pair.
    Ours(OurTransport),
    /// A foreign pair.
    Peer(PeerProgram),
}

impl Subject {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Subject::Direct => "direct",
            Subject::Ours(t) => t.name(),
            Subject::Peer(p) => p.kind.name(),
        }
    }

    /// Tunnels one pair can carry at once, if the pair itself bounds it: a
    /// multiplexed client holds one connection of at most 1,024 streams.
    pub(super) fn tunnels_per_pair(&self) -> Option<usize> {
        match self {
            Subject::Ours(t) if t.mux => Some(1_000),
            _ => None,
        }
    }

    pub(super) fn kind(&self) -> RowKind {
        match self {
            Subject::Direct => RowKind::Direct,
            Subject::Ours(_) => RowKind::Cipherlink,
            Subject::Peer(_) => RowKind::Peer,
        }
    }

    /// The cryptography the pair runs with, named.
    pub(super) fn crypto(&self, options: &BenchProxyOptions) -> String {
        match self {
            Subject::Direct => "none (no tunnel)".into(),
            Subject::Ours(t) => ours::crypto(*t, options),
            Subject::Peer(p) => match p.kind {
                PeerKind::Stunnel => stunnel::CRYPTO.into(),
                PeerKind::Haproxy => haproxy::CRYPTO.into(),
                PeerKind::SsLibev => ss_libev::CRYPTO.into(),
                PeerKind::Spiped => spiped::CRYPTO.into(),
                PeerKind::Obfs4 => obfs4::CRYPTO.into(),
            },
        }
    }

    /// The program and its version (and the TLS library it runs on).
    pub(super) async fn software(&self, options: &BenchProxyOptions) -> String {
        let (program, args, product, library): (&Path, &[&str], &str, Option<&str>) = match self {
            Subject::Direct => return "-".into(),
            Subject::Ours(_) => (&options.program, &["--version"], "cipherlink", None),
            Subject::Peer(p) => match p.kind {
                PeerKind::Stunnel => (
                    &p.program,
                    &["-version"],
                    "stunnel ",
                    Some("Running  with "),
                ),
                PeerKind::Haproxy => (
                    &p.program,
                    &["-vv"],
                    "HAProxy version",
                    Some("Running on OpenSSL version : "),
                ),
                PeerKind::SsLibev => (&p.program, &["-h"], "shadowsocks-libev", None),
                PeerKind::Spiped => (&p.program, &["-v"], "spiped", None),
                PeerKind::Obfs4 => (&p.program, &["-version"], "obfs4proxy", None),
            },
        };
        version(program, args, product, library)
            .await
            .unwrap_or_else(|| program.display().to_string())
    }

    /// Starts the pair; `None` for direct. `capacity` is the most tunnels
    /// each end must hold at once.
    pub(super) async fn start(
        &self,
        ctx: &Ctx<'_>,
        capacity: usize,
    ) -> Result<Option<Pair>, LabError> {
        let pair = match self {
            Subject::Direct => return Ok(None),
            Subject::Ours(t) => retry_ports(|| ours::start(ctx, *t, capacity)).await?,
            Subject::Peer(p) => {
                let program = p.program.as_path();
                match p.kind {
                    PeerKind::Stunnel => retry_ports(|| stunnel::start(ctx, program)).await?,
                    PeerKind::Haproxy => {
                        retry_ports(|| haproxy::start(ctx, program, capacity)).await?
                    }
                    PeerKind::SsLibev => retry_ports(|| ss_libev::start(ctx, program)).await?,
                    PeerKind::Spiped => {
                        retry_ports(|| spiped::start(ctx, program, capacity)).await?
                    }
                    PeerKind::Obfs4 => obfs4::start(ctx, program).await?,
                }
            }
        };
        Ok(Some(pair))
    }
}

/// From `program ARGS`' output (stdout and stderr): the line that starts
/// with `product`, up to its version number, and with `library`, what
/// follows it up to its version number, e.g. `stunnel 5.68 (OpenSSL 3.0.19)`.
/// Bounded in time.
async fn version(
    program: &Path,
    args: &[&str],
    product: &str,
    library: Option<&str>,
) -> Option<String> {
    let run = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .ok()?
        .ok()?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let find = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix).map(|rest| (l, rest)))
    };
    let (line, _) = find(product)?;
    let mut out = up_to_version(line).replace(" version", "");
    if let Some((_, rest)) = library.and_then(find) {
        out = format!("{out} ({})", up_to_version(rest));
    }
    Some(out)
}

/// The words of `line` up to and including the first that holds a digit.
fn up_to_version(line: &str) -> String {
    let mut words = Vec::new();
    for word in line.split_whitespace() {
        words.push(word);
        if word.chars().any(|c| c.is_ascii_digit()) {
            break;
        }
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::up_to_version;

    #[test]
    fn versions_are_cut_after_their_number() {
        assert_eq!(
            up_to_version("stunnel 5.68 on x86_64-pc-linux-gnu platform"),
            "stunnel 5.68"
        );
        assert_eq!(
            up_to_version("HAProxy version 2.6.12-1+deb12u3 2025/10/03"),
            "HAProxy version 2.6.12-1+deb12u3"
        );
        assert_eq!(
            up_to_version("OpenSSL 3.0.19 27 Jan 2026"),
            "OpenSSL 3.0.19"
        );
        assert_eq!(up_to_version("obfs4proxy-0.0.14"), "obfs4proxy-0.0.14");
    }
}
