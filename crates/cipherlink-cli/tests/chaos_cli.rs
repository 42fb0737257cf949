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
