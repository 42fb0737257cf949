//! `cipherlink chaos ...` as a user runs it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod chaos_support;

use chaos_support::{
    all_scenarios_in_the_lab, chaos_run, cipherlink, count_class, lab_or_skip, result,
};

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
