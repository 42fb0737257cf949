//! `cipherlink chaos ...`: the chaos lab (issue 16). Glue from flags to
//! `cipherlink_chaos`: the stream impairment proxy, a dry run of a netem
//! string on the packet model, the TUN lab, and `run`, the standard scenarios
//! with a report (its subjects are `cipherlink_chaos::subject`'s).

use std::io::BufWriter;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use cipherlink_chaos::capture::Capture;
use cipherlink_chaos::lab::Lab;
use cipherlink_chaos::model::Model;
use cipherlink_chaos::netem::{self, parse_rate, parse_time};
use cipherlink_chaos::output::{Invoker, OutDir, OutFile};
use cipherlink_chaos::recorder::Recorder;
use cipherlink_chaos::router::Router;
use cipherlink_chaos::signals::StopSignals;
use cipherlink_chaos::simulate::{simulate, Train};
use cipherlink_chaos::stream_proxy::{ProxyConfig, StreamProxy};
use cipherlink_chaos::stream_shaper::Impairments;
use cipherlink_chaos::tun_router::{route, RouterStats};
use clap::{Args, Subcommand, ValueEnum};

/// Impair networks on purpose, reproducibly (docs/chaos.md).
#[derive(Debug, Args)]
pub struct ChaosArgs {
    #[command(subcommand)]
    pub command: ChaosCommand,
}

/// Which tool.
#[derive(Debug, Subcommand)]
pub enum ChaosCommand {
    /// A TCP proxy that delays, throttles, slices, stalls, resets or corrupts (like toxiproxy).
    Proxy(ChaosProxyArgs),
    /// Check a netem string: parse it and run the packet model on a synthetic train.
    Netem(NetemArgs),
    /// Two network namespaces joined through a TUN router that applies a
    /// netem string per packet (needs root); runs until SIGINT (Ctrl-C),
    /// SIGTERM or SIGHUP, then removes them.
    Lab(LabArgs),
    /// Run the standard network scenarios with one or more transports and write a report.
    ///
    /// For each transport and scenario, a client in namespace A exchanges a checked
    /// sequence of numbered messages with an echo server in namespace B
    /// through the TUN router (root needed; without root, or with --proxy,
    /// the stream proxy on loopback is used instead, which can only delay,
    /// jitter and corrupt a byte stream: scenarios it cannot do are reported
    /// as not run). Scenarios: ideal, stale (the peer goes silent after 4
    /// messages and must be declared gone: by the link protocol's keepalive,
    /// by TCP's give-up time for the others), long (96 messages), jitter (delay 100ms
    /// 75ms), loss (loss 30%), duplicate (duplicate 30%), reorder (delay
    /// 125ms reorder 30% 50%), corrupt (corrupt 30%). Datagram transports
    /// (plain-udp, typhoon) send 8 datagrams per message, one every 10 ms,
    /// and must deliver nothing altered and lose no more than the
    /// impairment explains.
    ///
    /// Writes into --out, per scenario: TRANSPORT-NAME.pcap (every delivered
    /// packet), TRANSPORT-NAME.json (result, timings, packet timeline),
    /// TRANSPORT-NAME-packets.svg and TRANSPORT-NAME-sequence.svg; and
    /// report.html with every scenario, its verdict and timings, and, for
    /// several transports, a side-by-side comparison per scenario (also in
    /// comparison.json).
    ///
    /// A foreign program pair (--subject-cmd, --client-cmd) runs beside or
    /// instead of cipherlink's transports: the commands get the server's
    /// address as {host}, {port}, {addr} and CIPHERLINK_CHAOS_HOST/PORT/ADDR,
    /// and their standard input and output carry the session (docs/chaos.md,
    /// "Foreign programs"), e.g. --subject-name openssl --subject-wire tls
    /// --subject-cmd 'openssl s_server -accept {port} -naccept 1 -quiet -cert
    /// server.crt -key server.key' --client-cmd 'openssl s_client -connect
    /// {addr} -quiet -no_ign_eof -CAfile ca.crt'. --out must
    /// be a folder of the user who ran the command (SUDO_UID under sudo) or
    /// a new one; what is written is handed to that user. Exits non-zero if
    /// any scenario failed, or if interrupted (SIGINT, SIGTERM, SIGHUP:
    /// the namespaces are removed first). See docs/chaos.md.
    Run(RunArgs),
}

/// Transports `chaos run` can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// cipherlink TLS (hybrid post-quantum key exchange by default).
    Tls,
    /// The link protocol (cipherlink-link), keepalive timers shortened.
    Link,
    /// The proxy's v1 frame (NaCl box, pre-shared keys).
    V1,
    /// SeasideVPN's PORT wire (two connections per session; TUN lab only).
    Port,
    /// Plain TCP, the baseline.
    Plain,
    /// Plain UDP, the datagram baseline (TUN lab only).
    PlainUdp,
    /// SeasideVPN's TYPHOON wire over UDP, timers shortened (TUN lab only).
    Typhoon,
    /// The link protocol's datagram mode over UDP (TUN lab only).
    LinkUdp,
}

/// How `chaos run` reads a foreign program's packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ForeignWire {
    /// Nothing known: payload is "unknown".
    Opaque,
    /// TLS record headers.
    Tls,
    /// SeasideVPN's PORT, read with --subject-key.
    Port,
}

/// `cipherlink chaos run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The protocols under test, comma-separated (e.g.
    /// tls,link,port,plain,plain-udp,typhoon,link-udp); default tls, or none
    /// when --subject-cmd is given. plain-udp, typhoon and link-udp are datagram
    /// transports: they exchange numbered datagrams at a steady rate and
    /// are judged by the datagram rules (docs/chaos.md).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub transport: Vec<Transport>,
    /// A foreign program's server command (`sh -c`; see the help above),
    /// run in namespace B for each scenario.
    #[arg(long, value_name = "COMMAND", requires = "client_cmd")]
    pub subject_cmd: Option<String>,
    /// The foreign program's client command, run in namespace A.
    #[arg(long, value_name = "COMMAND", requires = "subject_cmd")]
    pub client_cmd: Option<String>,
    /// The foreign subject's name in the report and file names.
    #[arg(long, value_name = "NAME", default_value = "foreign")]
    pub subject_name: String,
    /// How to read the foreign program's packets.
    #[arg(long, value_enum, default_value = "opaque")]
    pub subject_wire: ForeignWire,
    /// The PORT server key file the foreign server uses (for
    /// --subject-wire port: its messages are read with it).
    #[arg(long, value_name = "FILE")]
    pub subject_key: Option<PathBuf>,
    /// Scenarios: `all`, a name, or names separated by commas (ideal,stale).
    #[arg(long, default_value = "all")]
    pub scenario: String,
    /// Where the report and its files go: a folder of yours (not a
    /// symlink), or a new one, which is created.
    #[arg(long, default_value = "chaos-report")]
    pub out: PathBuf,
    /// Seed of the impairment models.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Use the stream proxy even when the TUN lab is available.
    #[arg(long)]
    pub proxy: bool,
    /// Time limit of each scenario (netem time).
    #[arg(long, value_parser = time_flag, default_value = "60s")]
    pub scenario_timeout: Duration,
    /// Stale scenario, transports without a keepalive: TCP declares the
    /// peer gone when its data stays unacknowledged this long (TCP_USER_TIMEOUT).
    #[arg(long, value_parser = time_flag, default_value = "3s")]
    pub tcp_user_timeout: Duration,
}

/// `cipherlink chaos lab`.
#[derive(Debug, Args)]
pub struct LabArgs {
    /// netem options for packets from A (client, 10.66.1.2) to B (server, 10.66.2.2).
    #[arg(long, default_value = "")]
    pub netem: String,
    /// netem options for B to A (default: the same as --netem, with its own draws).
    #[arg(long)]
    pub netem_down: Option<String>,
    /// Seed of the models.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Prefix of the names (1 to 3 lower-case letters and digits):
    /// namespaces TAG<pid>x<n>-a and -b, devices TAG<pid>x<n>a and b.
    #[arg(long, default_value = "cl")]
    pub tag: String,
    /// Record every delivered packet (after impairment) in this pcap file.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
}

/// Which directions the proxy's impairments apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scope {
    /// Client to upstream only.
    Up,
    /// Upstream to client only.
    Down,
    /// Both directions, each with its own random draws.
    Both,
}

/// `cipherlink chaos proxy`.
#[derive(Debug, Args)]
pub struct ChaosProxyArgs {
    /// Address to accept clients on.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Where to forward each client (host:port).
    #[arg(long)]
    pub upstream: String,
    /// Which directions the impairments below apply to.
    #[arg(long, value_enum, default_value = "both")]
    pub direction: Scope,
    /// Added delay per chunk (netem time: 100ms, 1.5s, 250us).
    #[arg(long, value_parser = time_flag)]
    pub latency: Option<Duration>,
    /// Uniform variation of --latency (±); chunks still leave in order.
    #[arg(long, value_parser = time_flag)]
    pub jitter: Option<Duration>,
    /// Link speed (netem rate: 1mbit, 56kbit, 100kbps).
    #[arg(long, value_parser = rate_flag)]
    pub bandwidth: Option<u64>,
    /// Write at most this many bytes at a time.
    #[arg(long)]
    pub slice: Option<NonZeroUsize>,
    /// Pause between slices (needs --slice).
    #[arg(long, value_parser = time_flag, requires = "slice")]
    pub slice_delay: Option<Duration>,
    /// Stop forwarding after this many bytes.
    #[arg(long, value_name = "BYTES")]
    pub stall_after: Option<u64>,
    /// Resume a stall after this long (default: never; later bytes are
    /// discarded until the sender closes).
    #[arg(long, value_parser = time_flag, requires = "stall_after")]
    pub stall_for: Option<Duration>,
    /// Reset (TCP RST) both sides after this many bytes.
    #[arg(long, value_name = "BYTES")]
    pub reset_after: Option<u64>,
    /// Chance that a segment (--slice bytes, else 1460) gets one bit
    /// flipped: a fraction (0.3) or a percentage (30%).
    #[arg(long, value_parser = chance_flag)]
    pub corrupt: Option<f64>,
    /// Seed of every random draw (same seed, same corrupted bytes).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Close a connection whose peers neither send nor take data this many seconds.
    #[arg(long, default_value_t = 300)]
    pub idle_timeout: u64,
    /// Give up connecting to the upstream after this many seconds.
    #[arg(long, default_value_t = 10)]
    pub connect_timeout: u64,
    /// Connections open at once; more wait to be accepted.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Record what each side received as synthetic IPv4/TCP flows in this
    /// pcap file (for tshark / Wireshark).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
}

/// `cipherlink chaos netem`.
#[derive(Debug, Args)]
pub struct NetemArgs {
    /// netem options, as for `tc qdisc ... netem`, e.g. "delay 100ms 75ms loss 30%".
    pub options: String,
    /// Packets to offer (at most 10,000,000: each delivery's delay is kept for the quantiles).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub packets: u32,
    /// Bytes per packet.
    #[arg(long, default_value_t = 1000)]
    pub size: usize,
    /// Time between packets (netem time).
    #[arg(long, value_parser = time_flag, default_value = "1ms")]
    pub interval: Duration,
    /// Model seed (default: the string's `seed`, else 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Also write the summary as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// A netem time with a unit: a bare number would be nanoseconds in `tc`,
/// which surprises on a command line.
fn time_flag(text: &str) -> Result<Duration, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!(
            "`{text}` needs a unit: {text}ms, {text}s or {text}us"
        ));
    }
    parse_time(text).map_err(|e| e.to_string())
}

fn rate_flag(text: &str) -> Result<u64, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!(
            "`{text}` needs a unit: {text}kbit, {text}mbit or {text}kbps"
        ));
    }
    parse_rate(text).map_err(|e| e.to_string())
}

fn chance_flag(text: &str) -> Result<f64, String> {
    let (number, scale) = match text.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (text, 1.0),
    };
    number
        .parse::<f64>()
        .ok()
        .map(|v| v / scale)
        .filter(|v| (0.0..=1.0).contains(v))
        .ok_or_else(|| {
            format!("`{text}`: expected a fraction from 0 to 1 (0.3) or a percentage (30%)")
        })
}

/// Runs the chosen tool.
pub async fn run(args: ChaosArgs) -> Result<()> {
    match args.command {
        ChaosCommand::Proxy(args) => proxy(args).await,
        ChaosCommand::Netem(args) => netem_dry_run(args),
        ChaosCommand::Lab(args) => lab(args).await,
        ChaosCommand::Run(args) => crate::chaos_run::run(args).await,
    }
}

async fn lab(args: LabArgs) -> Result<()> {
    let up = netem::parse(&args.netem).context("reading --netem")?;
    let down = match &args.netem_down {
        Some(text) => netem::parse(text).context("reading --netem-down")?,
        None => up.clone(),
    };
    let router = Router::new(
        Model::new(up.clone(), args.seed.wrapping_mul(2)),
        Model::new(down.clone(), args.seed.wrapping_mul(2).wrapping_add(1)),
    );
    // Refused before anything is made.
    let pcap = match &args.pcap {
        Some(path) => Some(output_file(path)?),
        None => None,
    };
    // Caught before the namespaces exist, so that none outlives a signal.
    let mut signals = StopSignals::catch().context("catching SIGINT, SIGTERM and SIGHUP")?;
    let mut lab = Lab::create(&args.tag).context("setting up the lab's namespaces")?;
    let (a, b) = lab
        .take_devices()
        .context("the lab's TUN devices are missing")?;
    println!(
        "lab up: namespace {} ({}) <-> namespace {} ({})",
        lab.a.name, lab.a.addr, lab.b.name, lab.b.addr
    );
    println!("  A to B: {up}");
    println!("  B to A: {down}");
    println!(
        "  e.g. ip netns exec {} cipherlink serve --listen {}:4433 --echo ...",
        lab.b.name, lab.b.addr
    );
    println!(
        "       ip netns exec {} cipherlink connect {}:4433 --server-name localhost ...",
        lab.a.name, lab.b.addr
    );
    println!("  SIGINT (Ctrl-C), SIGTERM or SIGHUP removes both namespaces");
    let mut stopped_by = None;
    let stop = async {
        stopped_by = Some(signals.recv().await);
    };
    let stats = match pcap {
        Some(file) => {
            let shown = file.path().to_path_buf();
            let mut capture = Capture::new(BufWriter::new(file))
                .with_context(|| format!("writing {}", shown.display()))?;
            let stats = route(a, b, router, Some(&mut capture), stop).await;
            capture
                .into_inner()
                .into_inner()
                .map_err(|e| e.into_error())
                .with_context(|| format!("flushing {}", shown.display()))?
                .commit()
                .with_context(|| format!("writing {}", shown.display()))?;
            stats
        }
        None => route(a, b, router, None::<&mut Capture<std::io::Sink>>, stop).await,
    }
    .context("routing between the namespaces")?;
    println!("A to B: {}", direction_line(&stats, 0));
    println!("B to A: {}", direction_line(&stats, 1));
    let names = [lab.a.name.clone(), lab.b.name.clone()];
    drop(lab);
    println!(
        "{}; removed namespaces {} and {}",
        stopped_by.unwrap_or("stopped"),
        names[0],
        names[1]
    );
    Ok(())
}

/// A single output file (`--pcap`, `--json`), checked as docs/chaos.md says.
fn output_file(path: &Path) -> Result<OutFile> {
    let (dir, name) = OutDir::for_file(path, Invoker::from_env())
        .with_context(|| format!("writing {}", path.display()))?;
    dir.create(&name)
        .with_context(|| format!("writing {}", path.display()))
}

fn direction_line(s: &RouterStats, i: usize) -> String {
    format!(
        "received {} sent {} lost {} queue-full {} over-memory {} duplicated {} corrupted {} \
         send-errors {} capture-errors {}",
        s.received[i],
        s.sent[i],
        s.lost[i],
        s.queue_full[i],
        s.over_memory[i],
        s.duplicated[i],
        s.corrupted[i],
        s.send_errors[i],
        s.capture_errors[i]
    )
}

async fn proxy(args: ChaosProxyArgs) -> Result<()> {
    let imp = Impairments {
        latency: args.latency.unwrap_or_default(),
        jitter: args.jitter.unwrap_or_default(),
        bandwidth: args.bandwidth,
        slice: args.slice,
        slice_delay: args.slice_delay.unwrap_or_default(),
        stall_after: args.stall_after,
        stall_for: args.stall_for,
        reset_after: args.reset_after,
        corrupt: args.corrupt.unwrap_or(0.0),
    };
    let mut config = ProxyConfig::new(args.listen, args.upstream.clone());
    if matches!(args.direction, Scope::Up | Scope::Both) {
        config.up = imp;
    }
    if matches!(args.direction, Scope::Down | Scope::Both) {
        config.down = imp;
    }
    config.seed = args.seed;
    if args.idle_timeout == 0 || args.connect_timeout == 0 {
        bail!(
            "--idle-timeout and --connect-timeout must be at least 1 second: every wait is bounded"
        );
    }
    config.idle_timeout = Duration::from_secs(args.idle_timeout);
    config.connect_timeout = Duration::from_secs(args.connect_timeout);
    config.max_connections = args.max_connections;
    let mut writer = None;
    if let Some(path) = &args.pcap {
        let (recorder, w) = Recorder::create(output_file(path)?)
            .with_context(|| format!("creating the capture {}", path.display()))?;
        config.recorder = Some(recorder);
        writer = Some(w);
    }
    let mut signals = StopSignals::catch().context("catching SIGINT, SIGTERM and SIGHUP")?;
    let proxy = StreamProxy::bind(config)
        .await
        .with_context(|| format!("starting the chaos proxy on {}", args.listen))?;
    let addr = proxy
        .local_addr()
        .context("reading the listening address")?;
    tracing::info!(
        "chaos proxy on {addr} -> {} ({:?}, seed {}): {imp:?}",
        args.upstream,
        args.direction,
        args.seed
    );
    tokio::select! {
        result = proxy.run() => result.context("chaos proxy stopped")?,
        signal = signals.recv() => tracing::info!("{signal}; stopping"),
    }
    if let (Some(w), Some(path)) = (writer, &args.pcap) {
        // Connections still open hold recorder handles: their last events
        // may be missing; events the writer could not keep up with are counted.
        let dropped = w.dropped();
        let (packets, _) = w
            .finish(Duration::from_secs(1))
            .await
            .with_context(|| format!("writing the capture {}", path.display()))?;
        tracing::info!(
            "capture in {}: {packets} packets ({dropped} events dropped)",
            path.display()
        );
    }
    Ok(())
}

fn netem_dry_run(args: NetemArgs) -> Result<()> {
    let parsed = netem::parse(&args.options).context("reading the netem options")?;
    let seed = args.seed.or(parsed.seed).unwrap_or(0);
    let train = Train {
        packets: args.packets,
        size: args.size,
        interval: args.interval,
        seed,
    };
    let s = simulate(&parsed, train);
    let pct = |n: u64| 100.0 * n as f64 / f64::from(args.packets.max(1));
    println!("netem: {parsed}");
    println!(
        "offered {} packets of {} bytes every {:?} (seed {seed})",
        args.packets, args.size, args.interval
    );
    println!(
        "delivered {} copies; lost {} ({:.2}%); queue full {} ({:.2}%); duplicated {} ({:.2}%); \
         corrupted {} ({:.2}%); reordered {} ({:.2}%); out of order {} ({:.2}%)",
        s.delivered,
        s.lost,
        pct(s.lost),
        s.queue_full,
        pct(s.queue_full),
        s.duplicated,
        pct(s.duplicated),
        s.corrupted,
        pct(s.corrupted),
        s.reordered,
        pct(s.reordered),
        s.out_of_order,
        pct(s.out_of_order),
    );
    let ms = |q: f64| s.delay_quantile(q).map_or(f64::NAN, |d| d * 1e3);
    let (mean, sd) = s.delay_mean_sd().unwrap_or((f64::NAN, f64::NAN));
    println!(
        "delay ms: mean {:.3} sd {:.3} min {:.3} p50 {:.3} p99 {:.3} max {:.3}",
        mean * 1e3,
        sd * 1e3,
        ms(0.0),
        ms(0.5),
        ms(0.99),
        ms(1.0)
    );
    println!("delivered throughput: {:.0} bit/s", s.throughput_bps);
    if let Some(path) = args.json {
        let json = serde_json::json!({
            "netem": args.options,
            "parsed": parsed.to_string(),
            "seed": seed,
            "packets": args.packets,
            "size": args.size,
            "interval_us": args.interval.as_micros() as u64,
            "delivered": s.delivered,
            "lost": s.lost,
            "queue_full": s.queue_full,
            "duplicated": s.duplicated,
            "corrupted": s.corrupted,
            "reordered": s.reordered,
            "out_of_order": s.out_of_order,
            "delay_ms": {
                "mean": mean * 1e3, "sd": sd * 1e3,
                "min": ms(0.0), "p50": ms(0.5), "p99": ms(0.99), "max": ms(1.0),
            },
            "throughput_bps": s.throughput_bps,
        });
        let text = serde_json::to_string_pretty(&json).context("encoding the summary")?;
        let mut file = output_file(&path)?;
        std::io::Write::write_all(&mut file, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        file.commit()
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
