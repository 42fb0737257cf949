//! `cipherlink chaos run`: the standard scenarios with each transport asked
//! for (and a foreign program pair), in the TUN lab (root) or through the
//! stream proxy, then one report. Its files
//! go through `cipherlink_chaos::output` (a folder of the invoking user's,
//! symlinks replaced, handed to the sudo user); SIGINT, SIGTERM and SIGHUP
//! stop it after removing its namespaces.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use cipherlink_chaos::dgram_run::run_datagram_scenario;
use cipherlink_chaos::lab::{self, Lab};
use cipherlink_chaos::output::{Invoker, OutDir, PrivateFile};
use cipherlink_chaos::report;
use cipherlink_chaos::results::{Mode, ScenarioResult};
use cipherlink_chaos::scenario_run::{run_scenario, RunOptions, CAPTURE_LIMIT};
use cipherlink_chaos::scenarios::{self, ScenarioDef, Timers};
use cipherlink_chaos::signals::StopSignals;
use cipherlink_chaos::subject::{
    link_keepalive, typhoon_timers, DatagramSubject, Foreign, ForeignClassifier, LabSubject, Link,
    LinkUdp, NaclFrame, PlainTcp, PlainUdp, Port, Tls, Typhoon,
};

use crate::chaos_cmd::{ForeignWire, RunArgs, Transport};

/// The echo server's port in namespace B.
const PORT: u16 = 7100;
/// Prefix of the namespaces' names (`cr<pid>x<n>-a`).
const PREFIX: &str = "cr";
/// The TLS client's key log in the output folder.
const KEY_LOG: &str = "tls-keys.log";

/// Runs the scenarios, writes the report, fails if any scenario failed or
/// a signal stopped the run (after removing its namespaces, and handing
/// over the TLS key log).
pub async fn run(args: RunArgs) -> Result<()> {
    // Caught before any namespace exists, so that none outlives a signal.
    let mut signals = StopSignals::catch().context("catching SIGINT, SIGTERM and SIGHUP")?;
    let defs = scenarios::select(&args.scenario).with_context(|| {
        let names: Vec<String> = scenarios::standard_scenarios()
            .into_iter()
            .map(|s| s.name)
            .collect();
        format!(
            "no scenario `{}`: use all, or one or more of {} (separated by commas)",
            args.scenario,
            names.join(", ")
        )
    })?;
    let transports = transports(&args);
    let foreign = foreign_subject(&args)?;
    let out = Arc::new(
        OutDir::open(&args.out, Invoker::from_env())
            .with_context(|| format!("the output folder {}", args.out.display()))?,
    );
    // The core writes the TLS key log in a folder only root can enter; it
    // is handed over and moved next to the pcaps when the run ends, however
    // it ends (threads of a stopped run may still hold the subject).
    let keys = match transports.contains(&Transport::Tls) {
        true => Some(Arc::new(out.private(KEY_LOG).with_context(|| {
            format!("making a place for {}", out.shown(KEY_LOG).display())
        })?)),
        false => None,
    };
    let (signal, names) = tokio::select! {
        result = run_all(args, Plan { transports, foreign, defs }, Arc::clone(&out), keys.clone()) => return result,
        // The run is still alive here: its namespaces, still listed.
        signal = signals.recv() => (signal, lab::live_names()),
    };
    // The run's future is gone, and its labs removed their namespaces as
    // they were dropped; anything still listed goes now.
    lab::remove_all();
    if let Some(Err(e)) = keys.map(|k| k.publish()) {
        eprintln!("chaos run: handing over the TLS key log: {e}");
    }
    if names.is_empty() {
        bail!("interrupted by {signal}");
    }
    bail!(
        "interrupted by {signal}; removed namespaces {}",
        names.join(", ")
    )
}

/// The transports asked for: `tls` when none is named and no foreign
/// program is given; each once, in the order given.
fn transports(args: &RunArgs) -> Vec<Transport> {
    let mut list = Vec::new();
    for t in &args.transport {
        if !list.contains(t) {
            list.push(*t);
        }
    }
    if list.is_empty() && args.subject_cmd.is_none() {
        list.push(Transport::Tls);
    }
    list
}

/// The foreign program pair of --subject-cmd and --client-cmd, if given.
fn foreign_subject(args: &RunArgs) -> Result<Option<Foreign>> {
    let (Some(server), Some(client)) = (&args.subject_cmd, &args.client_cmd) else {
        return Ok(None);
    };
    let classifier = match (args.subject_wire, &args.subject_key) {
        (ForeignWire::Port, Some(path)) => {
            ForeignClassifier::Port(crate::link_port::load_key(path).context("--subject-key")?)
        }
        (ForeignWire::Port, None) => {
            bail!("--subject-wire port reads PORT messages with the server's key: give --subject-key FILE")
        }
        (_, Some(_)) => bail!("--subject-key is for --subject-wire port"),
        (ForeignWire::Tls, None) => ForeignClassifier::Tls,
        (ForeignWire::Opaque, None) => ForeignClassifier::Opaque,
    };
    let names: Vec<&str> = args.transport.iter().map(|t| transport_name(*t)).collect();
    if names.contains(&args.subject_name.as_str()) {
        bail!(
            "--subject-name {} is also a transport's name; pick another (it names the files)",
            args.subject_name
        );
    }
    Ok(Some(
        Foreign::new(&args.subject_name, server, client, classifier)
            .context("--subject-name, --subject-cmd, --client-cmd")?
            .run_as(Invoker::from_env().owner),
    ))
}

/// The subject's name, as in reports and file names.
fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Tls => "tls",
        Transport::Link => "link",
        Transport::V1 => "v1",
        Transport::Port => "port",
        Transport::Plain => "tcp",
        Transport::PlainUdp => "udp",
        Transport::Typhoon => "typhoon",
        Transport::LinkUdp => "link-udp",
    }
}

/// What to run: each transport, then the foreign pair, over `defs`.
struct Plan {
    transports: Vec<Transport>,
    foreign: Option<Foreign>,
    defs: Vec<ScenarioDef>,
}

async fn run_all(
    args: RunArgs,
    plan: Plan,
    out: Arc<OutDir>,
    keys: Option<Arc<PrivateFile>>,
) -> Result<()> {
    let defs = plan.defs;
    let mut notes = Vec::new();
    let mode = if args.proxy {
        notes.push(
            "--proxy: the stream proxy on loopback, not the TUN lab, carried these runs".into(),
        );
        Mode::Proxy
    } else if let Err(why) = Lab::available() {
        let note = format!(
            "the TUN lab is not available ({why}); falling back to the stream proxy on loopback, \
             which only delays, jitters and corrupts a byte stream: loss, duplication, reordering \
             and the stale peer are not run"
        );
        eprintln!("chaos run: {note}");
        notes.push(note);
        Mode::Proxy
    } else {
        eprintln!(
            "chaos run: namespaces {PREFIX}{}x<n>-a and -b, a pair per scenario, removed \
             when it ends (also on SIGINT, SIGTERM or SIGHUP)",
            std::process::id()
        );
        Mode::Lab
    };
    let timers = Timers {
        scenario: args.scenario_timeout,
        tcp_user_timeout: args.tcp_user_timeout,
        ..Timers::default()
    };
    let opts = RunOptions {
        seed: args.seed,
        timers,
        out: Arc::clone(&out),
        mode,
        // Names carry the pid: runs side by side do not collide.
        prefix: PREFIX.into(),
        port: PORT,
        capture_limit: CAPTURE_LIMIT,
    };
    let started = Instant::now();
    // A key log that could not be handed over: reported after the report.
    let mut key_log_error = None;
    let mut results = Vec::new();
    for transport in plan.transports {
        match transport {
            Transport::Tls => {
                let keys = keys.clone().context("no place for the TLS key log")?;
                let tls = Tls::with_key_log(Arc::clone(&keys))?;
                let run = run_each(&defs, &opts, |_| Ok(tls.clone())).await;
                drop(tls);
                if let Err(e) = keys.publish() {
                    key_log_error =
                        Some(anyhow::Error::new(e).context("handing over the TLS key log"));
                }
                results.extend(run?);
            }
            Transport::V1 => {
                let frame = NaclFrame::new();
                results.extend(run_each(&defs, &opts, |_| Ok(frame.clone())).await?);
            }
            // A fresh key and token per scenario, with the scenario's timers.
            Transport::Link => results.extend(
                run_each(&defs, &opts, |def| {
                    Ok(Link::new(link_keepalive(def.stale_after.is_some()))?)
                })
                .await?,
            ),
            Transport::Port => results.extend(run_each(&defs, &opts, |_| Ok(Port::new())).await?),
            Transport::Plain => results.extend(run_each(&defs, &opts, |_| Ok(PlainTcp)).await?),
            Transport::PlainUdp => {
                results.extend(run_each_datagram(&defs, &opts, |_| Ok(PlainUdp)).await?)
            }
            // A fresh key and token per scenario; the stale scenario's
            // timers give a silent server up sooner.
            Transport::Typhoon => results.extend(
                run_each_datagram(&defs, &opts, |def| {
                    Ok(Typhoon::new(typhoon_timers(def.stale_after.is_some())))
                })
                .await?,
            ),
            Transport::LinkUdp => results.extend(
                run_each_datagram(&defs, &opts, |def| {
                    Ok(LinkUdp::new(link_keepalive(def.stale_after.is_some()))?)
                })
                .await?,
            ),
        }
    }
    if let Some(foreign) = plan.foreign {
        results.extend(run_each(&defs, &opts, |_| Ok(foreign.clone())).await?);
    }
    let path = report::write_all(&out, &results, &notes).context("writing the report")?;
    let failed = results.iter().filter(|r| r.failed()).count();
    let passed = results.iter().filter(|r| r.verdict.pass).count();
    println!(
        "{passed} of {} scenarios passed, {failed} failed, {} not run, in {:.1} s; report: {}",
        results.len(),
        results.iter().filter(|r| r.skipped.is_some()).count(),
        started.elapsed().as_secs_f64(),
        path.display()
    );
    if failed > 0 {
        if let Some(e) = key_log_error {
            eprintln!("chaos run: {e:#}");
        }
        bail!("{failed} scenario(s) failed; see {}", path.display());
    }
    match key_log_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Every scenario in turn with the subject `make` gives for it, printing a
/// line per scenario.
async fn run_each<S: LabSubject + Clone>(
    defs: &[ScenarioDef],
    opts: &RunOptions,
    mut make: impl FnMut(&ScenarioDef) -> Result<S>,
) -> Result<Vec<ScenarioResult>> {
    let mut results = Vec::new();
    for def in defs {
        let result = one(make(def)?, def, opts).await;
        println!("{}", summary_line(&result));
        results.push(result);
    }
    Ok(results)
}

/// [`run_each`] for a datagram transport.
async fn run_each_datagram<S: DatagramSubject + Clone>(
    defs: &[ScenarioDef],
    opts: &RunOptions,
    make: impl Fn(&ScenarioDef) -> Result<S>,
) -> Result<Vec<ScenarioResult>> {
    let mut results = Vec::new();
    for def in defs {
        let subject = make(def)?;
        let name = subject.name().to_string();
        let result = match run_datagram_scenario(subject, def, opts).await {
            Ok(r) => r,
            Err(e) => {
                ScenarioResult::error(def.clone(), &name, opts.mode, opts.timers, e.to_string())
            }
        };
        println!("{}", summary_line(&result));
        results.push(result);
    }
    Ok(results)
}

/// One scenario; a scenario that could not be run at all is a failed result.
async fn one<S: LabSubject + Clone>(
    subject: S,
    def: &ScenarioDef,
    opts: &RunOptions,
) -> ScenarioResult {
    let name = subject.name().to_string();
    match run_scenario(subject, def, opts).await {
        Ok(r) => r,
        Err(e) => ScenarioResult::error(def.clone(), &name, opts.mode, opts.timers, e.to_string()),
    }
}

fn summary_line(r: &ScenarioResult) -> String {
    let verdict = r.verdict_word();
    let ms = |d: Option<f64>| d.map_or("-".into(), |v| format!("{v:.1}"));
    let sent = match &r.datagram {
        Some(d) => d.sent,
        None => r.scenario.messages,
    };
    let mut line = format!(
        "{} {:<10} {verdict}  {}/{} echoed in {:.2} s, set-up {} ms, RTT p50 {} ms p95 {} ms, {} kB/s",
        r.transport,
        r.scenario.name,
        r.delivered,
        sent,
        r.duration,
        ms(r.client.connected.map(|c| c * 1e3)),
        ms(r.rtt_ms.map(|q| q.p50)),
        ms(r.rtt_ms.map(|q| q.p95)),
        ms(r.rate_bytes_per_s.map(|b| b / 1e3)),
    );
    if let Some(e) = r.skipped.as_ref().or(r.client.error.as_ref()) {
        line.push_str(&format!("; {e}"));
    }
    if r.failed() {
        for c in r.verdict.checks.iter().filter(|c| c.starts_with("FAIL")) {
            line.push_str(&format!("\n    {c}"));
        }
    }
    line
}
