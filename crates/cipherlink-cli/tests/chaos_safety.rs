//! `cipherlink chaos` run as root (issue 22, "Trust"): its namespaces are
//! gone however it ends, and two labs side by side leave each other alone.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The command, with no sudo variables unless a test sets them.
fn cipherlink() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cipherlink"));
    c.env("RUST_BACKTRACE", "0")
        .env("CIPHERLINK_LOG", "warn")
        .env_remove("SUDO_UID")
        .env_remove("SUDO_GID")
        .env_remove("SUDO_USER");
    c
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

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Waits for `child`, killing it after `limit` (its own waits are bounded;
/// this bounds the test if they were not).
fn finish(mut child: std::process::Child, limit: Duration) -> Output {
    let t0 = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("still running after {limit:?}\n{}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

// ------------------------------------------------------------ namespaces

fn namespaces() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Deletes the namespaces a test saw its child create, if the child left
/// them (so that a failing test does not leave the machine dirty).
struct Sweep(Vec<String>);

impl Drop for Sweep {
    fn drop(&mut self) {
        let live = namespaces();
        for name in self.0.iter().filter(|n| live.contains(n)) {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// A running `chaos lab` and the two namespaces it says it made.
struct RunningLab {
    child: std::process::Child,
    names: [String; 2],
}

fn start_lab(extra: &[&str]) -> RunningLab {
    let mut child = cipherlink()
        .args(["chaos", "lab", "--netem", "delay 1ms"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start lab");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = loop {
        let line = lines.next().expect("lab up line").expect("read");
        if line.starts_with("lab up:") {
            break line;
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    // "lab up: namespace NAME (10.66.1.2) <-> namespace NAME (10.66.2.2)"
    let names: Vec<String> = line
        .split("namespace ")
        .skip(1)
        .filter_map(|s| s.split_whitespace().next().map(str::to_string))
        .collect();
    let names: [String; 2] = names.try_into().expect("two namespace names");
    RunningLab { child, names }
}

#[test]
fn lab_removes_its_namespaces_on_sigint_sigterm_and_sighup() {
    if !lab_or_skip("lab_removes_its_namespaces_on_sigint_sigterm_and_sighup") {
        return;
    }
    for signal in ["INT", "TERM", "HUP"] {
        let lab = start_lab(&[]);
        let _sweep = Sweep(lab.names.to_vec());
        let live = namespaces();
        assert!(
            lab.names.iter().all(|n| live.contains(n)),
            "{:?} not in {live:?}",
            lab.names
        );
        send_signal(lab.child.id(), signal);
        let out = finish(lab.child, Duration::from_secs(30));
        assert!(
            out.status.code().is_some(),
            "SIG{signal} killed it: {}",
            out.status
        );
        let live = namespaces();
        assert!(
            lab.names.iter().all(|n| !live.contains(n)),
            "SIG{signal} left {:?}",
            lab.names
        );
    }
}

#[test]
fn two_labs_side_by_side_leave_each_other_alone() {
    if !lab_or_skip("two_labs_side_by_side_leave_each_other_alone") {
        return;
    }
    let first = start_lab(&[]);
    let _sweep_first = Sweep(first.names.to_vec());
    let second = start_lab(&[]);
    let _sweep_second = Sweep(second.names.to_vec());
    assert!(
        first.names.iter().all(|n| !second.names.contains(n)),
        "both labs use {:?}",
        first.names
    );
    let live = namespaces();
    for n in first.names.iter().chain(&second.names) {
        assert!(live.contains(n), "{n} missing from {live:?}");
    }
    send_signal(first.child.id(), "TERM");
    finish(first.child, Duration::from_secs(30));
    let live = namespaces();
    assert!(first.names.iter().all(|n| !live.contains(n)));
    assert!(
        second.names.iter().all(|n| live.contains(n)),
        "the first lab's exit removed the second's namespaces"
    );
    send_signal(second.child.id(), "TERM");
    finish(second.child, Duration::from_secs(30));
    let live = namespaces();
    assert!(second.names.iter().all(|n| !live.contains(n)));
}

#[test]
fn run_removes_its_namespaces_when_interrupted() {
    if !lab_or_skip("run_removes_its_namespaces_when_interrupted") {
        return;
    }
    for signal in ["INT", "TERM", "HUP"] {
        let out = tempfile::tempdir().expect("temp dir");
        let child = cipherlink()
            .args(["chaos", "run", "--transport", "plain", "--scenario", "all"])
            .arg("--out")
            .arg(out.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chaos run");
        // Its namespaces carry its pid: `cr<pid>x<n>-a` (before issue 22: `cr<pid>-a`).
        let pid = child.id();
        let mine = |n: &String| {
            n.starts_with(&format!("cr{pid}x"))
                || [format!("cr{pid}-a"), format!("cr{pid}-b")].contains(n)
        };
        let t0 = Instant::now();
        let seen = loop {
            let live: Vec<String> = namespaces().into_iter().filter(mine).collect();
            if !live.is_empty() {
                break live;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "no namespace of pid {pid} appeared"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let _sweep = Sweep(seen.clone());
        send_signal(child.id(), signal);
        let done = finish(child, Duration::from_secs(60));
        assert!(
            done.status.code().is_some_and(|c| c != 0),
            "SIG{signal}: {}",
            done.status
        );
        assert!(
            stderr(&done).contains(&format!("SIG{signal}")),
            "{}",
            stderr(&done)
        );
        let left: Vec<String> = namespaces().into_iter().filter(mine).collect();
        assert!(left.is_empty(), "SIG{signal} left {left:?} (saw {seen:?})");
    }
}
