//! What the `chaos run` tests share: running it with a deadline, reading
//! its result files, the TUN lab's availability, and the checks every
//! transport that passes all eight scenarios must meet.

#![allow(dead_code)] // each test file uses a different part of this module

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The eight standard scenarios, in their order.
pub const ALL_SCENARIOS: [&str; 8] = [
    "ideal",
    "stale",
    "long",
    "jitter",
    "loss",
    "duplicate",
    "reorder",
    "corrupt",
];

pub fn cipherlink() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cipherlink"));
    c.env("RUST_BACKTRACE", "0");
    c
}

pub fn chaos_run(args: &[&str], dir: &std::path::Path, limit: Duration) -> std::process::Output {
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

pub fn result(dir: &std::path::Path, transport: &str, scenario: &str) -> serde_json::Value {
    let path = dir.join(format!("{transport}-{scenario}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("result JSON")
}

pub fn lab_or_skip(test: &str) -> bool {
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

pub fn count_class(r: &serde_json::Value, class: &str) -> usize {
    r["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .filter(|p| p["class"] == class)
        .count()
}

pub fn sum(v: &serde_json::Value) -> u64 {
    v.as_array()
        .expect("per direction")
        .iter()
        .filter_map(serde_json::Value::as_u64)
        .sum()
}

/// Every seed scenario through the TUN lab with `transport`; checks what
/// the report says against the files it wrote.
pub fn all_scenarios_in_the_lab(transport: &str) -> tempfile::TempDir {
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
    for name in ALL_SCENARIOS {
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
