//! `cipherlink chaos ...` as a user runs it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn cipherlink() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cipherlink"));
    c.env("RUST_BACKTRACE", "0");
    c
}

#[test]
fn netem_dry_run_of_a_seed_string_writes_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("loss.json");
    let out = cipherlink()
        .args([
            "chaos",
            "netem",
            "loss 30%",
            "--packets",
            "20000",
            "--seed",
            "3",
            "--json",
        ])
        .arg(&json)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("netem: loss random 30%"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written")).expect("json");
    let lost = v["lost"].as_u64().expect("lost");
    assert_eq!(v["delivered"].as_u64().map(|d| d + lost), Some(20_000));
    assert!((5_600..6_400).contains(&lost), "{lost}");
}

#[test]
fn bad_netem_string_names_the_byte() {
    let out = cipherlink()
        .args(["chaos", "netem", "delay 100ms 75ms 25% loss 130%"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("at byte 26") && stderr.contains("`130%`"),
        "{stderr}"
    );
}

#[test]
fn proxy_refuses_a_time_without_unit() {
    let out = cipherlink()
        .args([
            "chaos",
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:1",
            "--latency",
            "100",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a unit"));
}

/// Kills the child when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn proxy_adds_latency_to_an_echo() {
    // An echo server on a thread.
    let upstream = TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream_addr = upstream.local_addr().expect("addr");
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = upstream.accept() {
            let mut buf = [0u8; 1024];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    });
    let mut child = Child(
        cipherlink()
            .args(["chaos", "proxy", "--listen", "127.0.0.1:0", "--upstream"])
            .arg(upstream_addr.to_string())
            .args(["--latency", "100ms", "--direction", "up"])
            .env("CIPHERLINK_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start proxy"),
    );
    // The proxy logs the address it listens on.
    let stderr = child.0.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("proxy start-up line").expect("read");
        if let Some(rest) = line.split("chaos proxy on ").nth(1) {
            break rest.split_whitespace().next().expect("address").to_string();
        }
    };
    let mut c = TcpStream::connect(&addr).expect("connect to proxy");
    c.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let t0 = Instant::now();
    c.write_all(b"ping").expect("write");
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).expect("echo");
    assert_eq!(&buf, b"ping");
    assert!(
        t0.elapsed() >= Duration::from_millis(100),
        "{:?}",
        t0.elapsed()
    );
}

// ---------------------------------------------------------------- chaos run

/// Runs `cipherlink chaos run ARGS --out DIR`, killing it after `limit`
/// (its own waits are bounded; this bounds the test if they were not).
fn chaos_run(args: &[&str], dir: &std::path::Path, limit: Duration) -> std::process::Output {
    let mut child = cipherlink()
        .args(["chaos", "run"])
        .args(args)
        .arg("--out")
        .arg(dir)
        .env("CIPHERLINK_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chaos run");
    let t0 = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "chaos run {args:?} took over {limit:?}\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn result(dir: &std::path::Path, transport: &str, scenario: &str) -> serde_json::Value {
    let path = dir.join(format!("{transport}-{scenario}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("result JSON")
}

fn lab_or_skip(test: &str) -> bool {
    match cipherlink_chaos::lab::Lab::available() {
        Ok(()) => true,
        Err(why) => {
            cipherlink_test_support::unavailable(
                "TUN lab (root, /dev/net/tun, ip netns)",
                test,
                &why.to_string(),
            );
            false
        }
    }
}

fn count_class(r: &serde_json::Value, class: &str) -> usize {
    r["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .filter(|p| p["class"] == class)
        .count()
}

fn sum(v: &serde_json::Value) -> u64 {
    v.as_array()
        .expect("per direction")
        .iter()
        .filter_map(serde_json::Value::as_u64)
        .sum()
}

/// Every seed scenario through the TUN lab with `transport`; checks what
/// the report says against the files it wrote.
fn all_scenarios_in_the_lab(transport: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_path_buf();
    let t0 = Instant::now();
    let out = chaos_run(
        &["--transport", transport, "--scenario", "all"],
        &dir,
        Duration::from_secs(600),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\n({:.1} s)", t0.elapsed().as_secs_f64());
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("8 of 8 scenarios passed, 0 failed, 0 not run"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("report: {}", dir.join("report.html").display())));
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report");
    for name in [
        "ideal",
        "stale",
        "long",
        "jitter",
        "loss",
        "duplicate",
        "reorder",
        "corrupt",
    ] {
        let r = result(&dir, transport, name);
        assert_eq!(r["verdict"]["pass"], true, "{name}: {}", r["verdict"]);
        assert_eq!(r["mode"], "lab");
        assert_eq!(r["client"]["wrong"], 0);
        assert_eq!(r["server"]["wrong"], 0);
        let pcap = dir.join(format!("{transport}-{name}.pcap"));
        assert!(std::fs::metadata(&pcap).expect("pcap").len() > 24, "{name}");
        for svg in ["packets", "sequence"] {
            let text = std::fs::read_to_string(dir.join(format!("{transport}-{name}-{svg}.svg")))
                .expect("svg");
            assert!(
                text.starts_with("<svg") && text.ends_with("</svg>"),
                "{name} {svg}"
            );
        }
        assert!(
            html.contains(&format!("id=\"{transport}-{name}\"")),
            "{name}"
        );
        assert!(
            count_class(&r, "handshake") > 0,
            "{name}: no handshake packet"
        );
        assert!(count_class(&r, "data") > 0, "{name}: no data packet");
        if name != "stale" {
            assert!(
                r["rate_bytes_per_s"].as_f64().is_some_and(|b| b > 0.0),
                "{name}"
            );
            assert!(r["rtt_ms"]["p50"].as_f64().is_some(), "{name}");
        }
    }
    // The impairments happened, and the reliable ones were repaired.
    let router = |name: &str, field: &str| sum(&result(&dir, transport, name)["router"][field]);
    assert!(router("loss", "lost") > 0);
    assert!(router("duplicate", "duplicated") > 0);
    assert!(router("corrupt", "corrupted") > 0);
    for name in ["ideal", "long", "duplicate", "jitter", "reorder"] {
        let r = result(&dir, transport, name);
        assert_eq!(r["client"]["completed"], true, "{name}");
        assert_eq!(r["delivered"], r["scenario"]["messages"], "{name}");
    }
    assert_eq!(result(&dir, transport, "long")["delivered"], 96);
    // Corrupted packets are in the capture, flagged by their checksums.
    assert!(count_class(&result(&dir, transport, "corrupt"), "invalid") > 0);
    // Jitter 25-175 ms each way: no round trip under 50 ms.
    let jitter = result(&dir, transport, "jitter");
    let rtts: Vec<f64> = jitter["client"]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| Some(m["echoed"].as_f64()? - m["sent"].as_f64()?))
        .collect();
    assert_eq!(rtts.len(), 32);
    assert!(rtts.iter().all(|r| *r >= 0.05), "{rtts:?}");
    // The stale peer: 4 echoes, silence, then declared gone within its bound.
    let stale = result(&dir, transport, "stale");
    assert_eq!(stale["delivered"], 4);
    assert_eq!(stale["client"]["completed"], false);
    assert!(sum(&stale["router"]["silenced"]) > 0);
    let gone = stale["client"]["failed_at"].as_f64().expect("failed_at")
        - stale["client"]["silenced_at"]
            .as_f64()
            .expect("silenced_at");
    let bound = stale["gone_bound"].as_f64().expect("bound");
    assert!(
        gone > 0.0 && gone <= bound + 3.0,
        "gone after {gone} s, bound {bound}"
    );
    tmp
}

#[test]
fn run_all_scenarios_tls_in_the_lab() {
    if !lab_or_skip("run_all_scenarios_tls_in_the_lab") {
        return;
    }
    let dir = all_scenarios_in_the_lab("tls");
    let stale = result(dir.path(), "tls", "stale");
    // No keepalive in TLS: TCP_USER_TIMEOUT (3 s) declares the peer gone.
    assert_eq!(stale["gone_bound"], 3.0);
    let reason = stale["client"]["error"].as_str().expect("reason");
    assert!(reason.contains("timed out"), "{reason}");
}

#[test]
fn run_all_scenarios_link_in_the_lab() {
    if !lab_or_skip("run_all_scenarios_link_in_the_lab") {
        return;
    }
    let dir = all_scenarios_in_the_lab("link");
    let stale = result(dir.path(), "link", "stale");
    // The link's own keepalive (next ping within 0.5 s, 3 retries of at
    // most 0.5 s) declares the peer gone.
    assert_eq!(stale["gone_bound"], 2.5);
    let reason = stale["client"]["error"].as_str().expect("reason");
    assert!(
        reason.contains("peer gone") && reason.contains("3 keepalive retries"),
        "{reason}"
    );
    // Its handshake is exactly msg1 and msg2 (one segment each at MTU 1500).
    assert_eq!(
        count_class(&result(dir.path(), "link", "ideal"), "handshake"),
        2
    );
}

#[test]
fn run_falls_back_to_the_stream_proxy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = chaos_run(
        &["--transport", "tls", "--proxy", "--scenario", "all"],
        dir.path(),
        Duration::from_secs(300),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("4 of 8 scenarios passed, 0 failed, 4 not run"),
        "{stdout}"
    );
    for name in ["stale", "loss", "duplicate", "reorder"] {
        let r = result(dir.path(), "tls", name);
        assert!(
            r["skipped"]
                .as_str()
                .is_some_and(|s| s.contains("run as root")),
            "{name}: {r}"
        );
    }
    let jitter = result(dir.path(), "tls", "jitter");
    assert_eq!(jitter["mode"], "proxy");
    assert_eq!(jitter["client"]["completed"], true);
    assert!(
        jitter["rtt_ms"]["p50"]
            .as_f64()
            .is_some_and(|ms| ms >= 50.0),
        "{jitter}"
    );
    // 30% of segments with a flipped bit: TLS refuses, never delivers them.
    let corrupt = result(dir.path(), "tls", "corrupt");
    assert_eq!(corrupt["verdict"]["pass"], true);
    assert_eq!(corrupt["client"]["wrong"], 0);
    let html = std::fs::read_to_string(dir.path().join("report.html")).expect("report");
    assert!(html.contains("stream proxy") && html.contains("NOT RUN"));
}

#[test]
fn plain_tcp_through_stream_corruption_is_caught_as_wrong_data() {
    // Nothing protects plain TCP from a proxy flipping bits: the run must
    // say so (exit status and verdict), or its checks are not real.
    let dir = tempfile::tempdir().expect("temp dir");
    let out = chaos_run(
        &["--transport", "plain", "--proxy", "--scenario", "corrupt"],
        dir.path(),
        Duration::from_secs(120),
    );
    assert!(!out.status.success());
    let r = result(dir.path(), "tcp", "corrupt");
    assert_eq!(r["verdict"]["pass"], false);
    let wrong =
        r["client"]["wrong"].as_u64().unwrap_or(0) + r["server"]["wrong"].as_u64().unwrap_or(0);
    assert!(wrong > 0, "{r}");
}

#[test]
fn run_names_the_scenarios_when_one_is_unknown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = chaos_run(&["--scenario", "nope"], dir.path(), Duration::from_secs(60));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no scenario `nope`") && stderr.contains("long"),
        "{stderr}"
    );
}

#[test]
fn run_pcap_reads_back_in_tshark() {
    let Some(tshark) = cipherlink_test_support::peer!(cipherlink_test_support::Peer::Tshark) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args = vec!["--transport", "tls", "--scenario", "ideal"];
    if cipherlink_chaos::lab::Lab::available().is_err() {
        args.push("--proxy");
    }
    let out = chaos_run(&args, dir.path(), Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pcap = dir.path().join("tls-ideal.pcap");
    let tshark_fields = |extra: &[&str], fields: &[&str]| -> Vec<String> {
        let mut c = Command::new(&tshark);
        c.arg("-r").arg(&pcap).args(extra).args(["-T", "fields"]);
        for f in fields {
            c.args(["-e", f]);
        }
        let out = c.output().expect("run tshark");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    };
    // The server's port: the first packet is the client's SYN.
    let ports = tshark_fields(&[], &["tcp.dstport"]);
    let port = ports.first().expect("a packet").trim().to_string();
    let r = result(dir.path(), "tls", "ideal");
    assert_eq!(ports.len(), r["packets"].as_array().expect("packets").len());
    let decode = format!("tcp.port=={port},tls");
    // TLS 1.3 records after the handshake carry their type as `opaque_type`.
    let types = tshark_fields(
        &["-d", &decode],
        &["tls.record.content_type", "tls.record.opaque_type"],
    );
    let all: Vec<&str> = types.iter().flat_map(|l| l.split(['\t', ','])).collect();
    assert!(all.contains(&"22"), "no TLS handshake record: {all:?}");
    assert!(
        all.contains(&"23"),
        "no TLS application data record: {all:?}"
    );
    // Checksums as tshark computes them: none wrong on an ideal network.
    let bad = tshark_fields(
        &[
            "-o",
            "tcp.check_checksum:TRUE",
            "-Y",
            "tcp.checksum.status == 0",
        ],
        &["frame.number"],
    );
    assert!(bad.is_empty(), "{bad:?}");
}
