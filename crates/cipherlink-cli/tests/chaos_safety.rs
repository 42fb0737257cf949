//! `cipherlink chaos` run as root (issue 22, "Trust"): a symlink planted
//! where it writes is replaced, never written through; it writes only into
//! a folder of the user who ran it, and hands what it writes to that user;
//! its namespaces are gone however it ends, and two labs side by side leave
//! each other alone.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
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

fn is_root() -> bool {
    let probe = tempfile::NamedTempFile::new().expect("temp file");
    probe.as_file().metadata().expect("metadata").uid() == 0
}

fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    cipherlink_test_support::unavailable("root (chown)", test, "not running as root");
    false
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

// ------------------------------------------------------------ planted symlinks

/// A file outside the output folder that symlinks at output names point to.
struct Victim {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

const PRECIOUS: &[u8] = b"precious: not to be overwritten";

fn plant(out: &Path, names: &[&str]) -> Victim {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("victim");
    fs::write(&path, PRECIOUS).expect("victim");
    for name in names {
        symlink(&path, out.join(name)).expect("plant symlink");
    }
    Victim { _dir: dir, path }
}

fn assert_replaced_not_followed(victim: &Victim, out: &Path, names: &[&str]) {
    let now = fs::read(&victim.path).expect("victim");
    assert!(
        now == PRECIOUS,
        "a file was written through a planted symlink: the victim now starts {:?}",
        String::from_utf8_lossy(&now[..now.len().min(40)])
    );
    for name in names {
        let meta = fs::symlink_metadata(out.join(name)).expect("output");
        assert!(meta.is_file(), "{name} is not a regular file");
        assert!(meta.len() > 0, "{name} is empty");
    }
}

#[test]
fn run_replaces_planted_symlinks_instead_of_writing_through_them() {
    let out = tempfile::tempdir().expect("temp dir");
    let names = [
        "tcp-ideal.pcap",
        "tcp-ideal.json",
        "tcp-ideal-packets.svg",
        "tcp-ideal-sequence.svg",
        "report.html",
    ];
    let victim = plant(out.path(), &names);
    let out_run = cipherlink()
        .args(["chaos", "run", "--transport", "plain", "--proxy"])
        .args(["--scenario", "ideal", "--out"])
        .arg(out.path())
        .output()
        .expect("run");
    assert!(out_run.status.success(), "{}", stderr(&out_run));
    assert_replaced_not_followed(&victim, out.path(), &names);
}

#[test]
fn netem_json_replaces_a_planted_symlink() {
    let out = tempfile::tempdir().expect("temp dir");
    let victim = plant(out.path(), &["loss.json"]);
    let run = cipherlink()
        .args(["chaos", "netem", "loss 1%", "--packets", "100", "--json"])
        .arg(out.path().join("loss.json"))
        .output()
        .expect("run");
    assert!(run.status.success(), "{}", stderr(&run));
    assert_replaced_not_followed(&victim, out.path(), &["loss.json"]);
}

#[test]
fn proxy_pcap_replaces_a_planted_symlink_and_is_complete_after_sigterm() {
    let out = tempfile::tempdir().expect("temp dir");
    let victim = plant(out.path(), &["proxy.pcap"]);
    let echo = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = echo.local_addr().expect("addr");
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = echo.accept() {
            let mut buf = [0u8; 256];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    });
    let mut child = cipherlink()
        .args(["chaos", "proxy", "--listen", "127.0.0.1:0", "--upstream"])
        .arg(upstream.to_string())
        .arg("--pcap")
        .arg(out.path().join("proxy.pcap"))
        .env("CIPHERLINK_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start proxy");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = loop {
        let line = lines.next().expect("start-up line").expect("read");
        if let Some(rest) = line.split("chaos proxy on ").nth(1) {
            break rest.split_whitespace().next().expect("address").to_string();
        }
    };
    let mut c = TcpStream::connect(&addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    c.write_all(b"ping").expect("write");
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).expect("echo");
    drop(c);
    send_signal(child.id(), "TERM");
    // The rest of its log, so that it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let status = finish(child, Duration::from_secs(30)).status;
    assert!(status.code().is_some(), "killed by the signal: {status}");
    assert_replaced_not_followed(&victim, out.path(), &["proxy.pcap"]);
    let pcap = fs::read(out.path().join("proxy.pcap")).expect("pcap");
    // pcap's nanosecond magic (either byte order), and the echo recorded
    // both ways: the writer ended cleanly on SIGTERM.
    let magic = u32::from_be_bytes(pcap[..4].try_into().expect("4 bytes"));
    assert!(
        magic == 0xa1b2_3c4d || magic.swap_bytes() == 0xa1b2_3c4d,
        "{magic:x}"
    );
    let pings = pcap.windows(4).filter(|w| w == b"ping").count();
    assert_eq!(pings, 2, "the request and its echo");
}

// ------------------------------------------------------------ whose folder

fn chaos_run_into(out: &Path, sudo: Option<(u32, u32)>) -> Output {
    chaos_run_with("plain", out, sudo)
}

fn chaos_run_with(transport: &str, out: &Path, sudo: Option<(u32, u32)>) -> Output {
    let mut c = cipherlink();
    c.args(["chaos", "run", "--transport", transport, "--proxy"])
        .args(["--scenario", "ideal", "--out"])
        .arg(out);
    if let Some((uid, gid)) = sudo {
        c.env("SUDO_UID", uid.to_string())
            .env("SUDO_GID", gid.to_string())
            .env("SUDO_USER", "someone");
    }
    c.output().expect("run")
}

#[test]
fn run_refuses_an_out_folder_that_is_a_symlink() {
    let dir = tempfile::tempdir().expect("temp dir");
    let real = dir.path().join("real");
    fs::create_dir(&real).expect("folder");
    let link = dir.path().join("link");
    symlink(&real, &link).expect("symlink");
    let out = chaos_run_into(&link, None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("symlink"), "{}", stderr(&out));
    assert_eq!(fs::read_dir(&real).expect("list").count(), 0);
}

#[test]
fn run_refuses_an_out_folder_of_another_user() {
    if !root_or_skip("run_refuses_an_out_folder_of_another_user") {
        return;
    }
    // Owned by uid 4242, run by root without sudo.
    let dir = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::chown(dir.path(), Some(4242), Some(4242)).expect("chown");
    let out = chaos_run_into(dir.path(), None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("belongs to uid 4242"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 0);

    // Owned by root, run through sudo by uid 4242: not the invoker's either.
    let dir = tempfile::tempdir().expect("temp dir");
    let out = chaos_run_into(dir.path(), Some((4242, 4243)));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("belongs to uid 0"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 0);
}

#[test]
fn run_through_sudo_hands_its_folder_and_files_to_the_user() {
    if !root_or_skip("run_through_sudo_hands_its_folder_and_files_to_the_user") {
        return;
    }
    // A folder of the user's, and a new one below it that the run creates.
    let home = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::chown(home.path(), Some(4242), Some(4243)).expect("chown");
    let out_dir = home.path().join("new").join("report");
    let out = chaos_run_into(&out_dir, Some((4242, 4243)));
    assert!(out.status.success(), "{}", stderr(&out));
    let mut owned = vec![home.path().join("new"), out_dir.clone()];
    for entry in fs::read_dir(&out_dir).expect("list") {
        owned.push(entry.expect("entry").path());
    }
    assert!(owned.len() >= 2 + 5, "{owned:?}");
    for path in owned {
        let meta = fs::symlink_metadata(&path).expect("metadata");
        assert_eq!((meta.uid(), meta.gid()), (4242, 4243), "{}", path.display());
    }
}

/// The TLS key log used to be appended to by name in the output folder
/// and handed over (`lchown`) by name after the run: a hard link the user
/// planted there, to a file of root's, received the run's secrets and
/// changed hands. Now the core writes in a private folder, and the name is
/// replaced only if it is the user's own file.
#[test]
fn run_never_writes_to_or_hands_over_a_planted_key_log_link() {
    if !root_or_skip("run_never_writes_to_or_hands_over_a_planted_key_log_link") {
        return;
    }
    let home = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::chown(home.path(), Some(4242), Some(4243)).expect("chown");
    let out_dir = home.path().join("out");
    fs::create_dir(&out_dir).expect("out");
    std::os::unix::fs::chown(&out_dir, Some(4242), Some(4243)).expect("chown");
    let root_dir = tempfile::tempdir().expect("temp dir");
    let victim = root_dir.path().join("shadow");
    fs::write(&victim, PRECIOUS).expect("victim");
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).expect("chmod");
    fs::hard_link(&victim, out_dir.join("tls-keys.log")).expect("plant a hard link");
    let out = chaos_run_with("tls", &out_dir, Some((4242, 4243)));
    let meta = fs::metadata(&victim).expect("victim");
    let now = fs::read(&victim).expect("victim");
    assert!(
        now == PRECIOUS,
        "the run wrote into root's file: {:?}",
        String::from_utf8_lossy(&now[..now.len().min(80)])
    );
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "root's file handed over");
    assert!(!out.status.success(), "a refused key log is an error");
    assert!(
        stderr(&out).contains("tls-keys.log exists and belongs to uid 0"),
        "{}",
        stderr(&out)
    );
    // The report is written all the same, and the user's.
    assert_eq!(
        fs::symlink_metadata(out_dir.join("report.html"))
            .expect("report")
            .uid(),
        4242
    );
}

/// `SUDO_UID=4242 cipherlink chaos netem ... --json FILE` in a folder of
/// root's: used to replace a file of root's with one of the user's, and to
/// make a folder of the user's anywhere root can write.
#[test]
fn netem_json_through_sudo_never_replaces_or_makes_anything_of_roots() {
    if !root_or_skip("netem_json_through_sudo_never_replaces_or_makes_anything_of_roots") {
        return;
    }
    let root_dir = tempfile::tempdir().expect("temp dir");
    let passwd = root_dir.path().join("passwd");
    fs::write(&passwd, PRECIOUS).expect("passwd");
    for target in [passwd.clone(), root_dir.path().join("newdir.d/x.json")] {
        let run = cipherlink()
            .args(["chaos", "netem", "loss 1%", "--packets", "1", "--json"])
            .arg(&target)
            .env("SUDO_UID", "4242")
            .env("SUDO_GID", "4243")
            .env("SUDO_USER", "someone")
            .output()
            .expect("run");
        assert!(!run.status.success(), "{} accepted", target.display());
        assert!(stderr(&run).contains("uid 0"), "{}", stderr(&run));
    }
    assert_eq!(fs::read(&passwd).expect("passwd"), PRECIOUS);
    assert_eq!(fs::metadata(&passwd).expect("passwd").uid(), 0);
    assert!(!root_dir.path().join("newdir.d").exists());
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

/// A TLS run stopped by a signal still hands over its key log: it is moved
/// out of the run's private folder, which is removed.
#[test]
fn an_interrupted_tls_run_hands_over_its_key_log() {
    if !lab_or_skip("an_interrupted_tls_run_hands_over_its_key_log") {
        return;
    }
    let out = tempfile::tempdir().expect("temp dir");
    let child = cipherlink()
        .args(["chaos", "run", "--transport", "tls", "--scenario", "all"])
        .arg("--out")
        .arg(out.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chaos run");
    let pid = child.id();
    let _sweep = SweepPid(pid);
    let t0 = Instant::now();
    while !namespaces()
        .iter()
        .any(|n| n.starts_with(&format!("cr{pid}x")))
    {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no namespace appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    send_signal(pid, "INT");
    let done = finish(child, Duration::from_secs(60));
    assert!(stderr(&done).contains("SIGINT"), "{}", stderr(&done));
    let keys = fs::symlink_metadata(out.path().join("tls-keys.log")).expect("tls-keys.log");
    assert!(keys.is_file());
    assert_eq!(keys.mode() & 0o777, 0o600);
    let private: Vec<_> = fs::read_dir(out.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n.to_string_lossy().starts_with(".cipherlink-"))
        .collect();
    assert!(private.is_empty(), "left behind: {private:?}");
}

/// Ctrl-C in a terminal sends SIGINT to the whole foreground process group.
/// When `ip` was in ours, it could die half-way through `ip netns add`,
/// leaving a namespace that was never listed, so never removed nor named
/// (5 runs in 120). Now children have groups of their own, and a half-made
/// namespace is removed. SIGINT to the group at spread-out moments of the
/// set-up, a bounded number of times.
#[test]
fn sigint_to_the_process_group_during_set_up_leaves_no_namespace() {
    if !lab_or_skip("sigint_to_the_process_group_during_set_up_leaves_no_namespace") {
        return;
    }
    use std::os::unix::process::CommandExt;
    const ROUNDS: u64 = 60;
    let mut leaks = Vec::new();
    for round in 0..ROUNDS {
        let out = tempfile::tempdir().expect("temp dir");
        let child = cipherlink()
            .args(["chaos", "run", "--transport", "plain", "--scenario", "all"])
            .arg("--out")
            .arg(out.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chaos run");
        let pid = child.id();
        let _sweep = SweepPid(pid);
        // From start-up (no namespace yet) to well into the first lab.
        std::thread::sleep(Duration::from_millis(round * 5));
        let _ = Command::new("kill")
            .args(["-INT", "--", &format!("-{pid}")])
            .status();
        // Killed outright when it came before the signals were caught,
        // which is before any namespace exists.
        finish(child, Duration::from_secs(60));
        let left: Vec<String> = namespaces()
            .into_iter()
            .filter(|n| n.starts_with(&format!("cr{pid}x")))
            .collect();
        if !left.is_empty() {
            leaks.push(format!("round {round}: {left:?}"));
        }
    }
    assert!(leaks.is_empty(), "namespaces left: {leaks:?}");
}

/// Deletes every namespace of process `pid`'s that is left (after a
/// failed check: the machine stays clean).
struct SweepPid(u32);

impl Drop for SweepPid {
    fn drop(&mut self) {
        let prefix = format!("cr{}x", self.0);
        for name in namespaces().into_iter().filter(|n| n.starts_with(&prefix)) {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}
