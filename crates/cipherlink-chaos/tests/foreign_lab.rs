//! A foreign subject in the TUN lab leaves nothing behind on the host: no
//! process of its commands outlives the run (even one that left their
//! process group), and the `tcp_retries2` the lab sets for the stale
//! scenario is namespace A's, never the host's.

use std::sync::Arc;
use std::time::Duration;

use cipherlink_chaos::lab::Lab;
use cipherlink_chaos::output::{Invoker, OutDir};
use cipherlink_chaos::results::Mode;
use cipherlink_chaos::scenario_run::{run_scenario, RunOptions};
use cipherlink_chaos::scenarios::{select, Timers};
use cipherlink_chaos::subject::{Foreign, ForeignClassifier};

fn options(dir: &std::path::Path, port: u16) -> RunOptions {
    RunOptions {
        seed: 1,
        timers: Timers {
            scenario: Duration::from_secs(30),
            ..Timers::default()
        },
        out: Arc::new(OutDir::open(dir, Invoker::current_user()).expect("out dir")),
        mode: Mode::Lab,
        prefix: "f".into(),
        port,
        capture_limit: cipherlink_chaos::scenario_run::CAPTURE_LIMIT,
    }
}

fn lab_or_skip(test: &str) -> bool {
    if let Err(why) = Lab::available() {
        cipherlink_test_support::unavailable(
            "TUN lab (root, /dev/net/tun, ip netns)",
            test,
            &why.to_string(),
        );
        return false;
    }
    true
}

/// A server that listens at the lab's address and says nothing (the
/// scenario's outcome does not matter here), after running `first`.
fn server(first: &str) -> String {
    format!(
        "{first} python3 -c \"import socket,time; s=socket.socket(); \
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
         s.bind(('{{host}}', {{port}})); s.listen(); time.sleep(60)\""
    )
}

fn scenario(name: &str) -> cipherlink_chaos::scenarios::ScenarioDef {
    select(name)
        .and_then(|v| v.into_iter().next())
        .expect("scenario")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_leaves_its_process_group_ends_with_the_lab() {
    if !lab_or_skip("a_command_that_leaves_its_process_group_ends_with_the_lab") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let out = tempfile::tempdir().expect("out dir");
    let pidfile = dir.path().join("daemon.pid");
    // A daemon of its own session, as a server that daemonizes makes.
    let daemon = format!(
        "setsid sh -c 'echo $$ > {}; exec sleep 300' </dev/null >/dev/null 2>&1 &",
        pidfile.display()
    );
    let subject = Foreign::new("escape", &server(&daemon), "cat", ForeignClassifier::Opaque)
        .expect("subject");
    let result = run_scenario(subject, &scenario("ideal"), &options(out.path(), 7410)).await;
    result.expect("the scenario ran");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("the daemon started")
        .trim()
        .parse()
        .expect("its pid");
    let alive = |pid: i32| {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    };
    let gone = (0..150).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        !alive(pid)
    });
    if !gone {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(gone, "the daemon {pid} outlived the lab's namespaces");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stale_scenarios_tcp_retries2_is_namespace_as_not_the_hosts() {
    if !lab_or_skip("the_stale_scenarios_tcp_retries2_is_namespace_as_not_the_hosts") {
        return;
    }
    const SYSCTL: &str = "/proc/sys/net/ipv4/tcp_retries2";
    let before = std::fs::read_to_string(SYSCTL).expect("host tcp_retries2");
    let set = cipherlink_chaos::subject::tcp_retries2_for(Timers::default().tcp_user_timeout);
    assert_ne!(
        before.trim(),
        set.to_string(),
        "the host already has the lab's value: the test could not tell"
    );
    let out = tempfile::tempdir().expect("out dir");
    let seen = tempfile::tempdir().expect("temp dir");
    let seen = seen.path().join("retries2");
    // The client, started in namespace A, notes the value it runs under.
    let client = format!("cat {SYSCTL} > {}; exec cat", seen.display());
    let subject =
        Foreign::new("retries", &server(""), &client, ForeignClassifier::Opaque).expect("subject");
    let result = run_scenario(subject, &scenario("stale"), &options(out.path(), 7411)).await;
    let after = std::fs::read_to_string(SYSCTL).expect("host tcp_retries2");
    if after != before {
        let _ = std::fs::write(SYSCTL, &before);
    }
    result.expect("the scenario ran");
    assert_eq!(after, before, "the lab changed the host's tcp_retries2");
    let in_a = std::fs::read_to_string(&seen).expect("the client ran");
    assert_eq!(in_a.trim(), set.to_string(), "namespace A's tcp_retries2");
}
