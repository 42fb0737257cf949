use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::subject::tcp_retries2_for;

#[test]
fn placeholders_are_the_server_address() {
    let addr: SocketAddr = "10.66.2.2:7100".parse().unwrap();
    assert_eq!(
        expand("srv -a {host} -p {port} -c {addr} {other}", addr),
        "srv -a 10.66.2.2 -p 7100 -c 10.66.2.2:7100 {other}"
    );
}

#[test]
fn names_that_would_make_odd_file_names_are_refused() {
    let ok = |n: &str| Foreign::new(n, "s", "c", ForeignClassifier::Opaque).is_ok();
    assert!(ok("seaside-port"));
    assert!(ok("openssl_3"));
    for bad in ["", "../x", "a b", "a/b", &"x".repeat(33)] {
        assert!(!ok(bad), "{bad:?} accepted");
    }
    assert!(Foreign::new("x", " ", "c", ForeignClassifier::Opaque).is_err());
    assert!(Foreign::new("x", "s", "", ForeignClassifier::Opaque).is_err());
}

#[test]
fn tcp_gives_up_within_half_the_user_timeout() {
    // 0.2 s · (2^(n+1) − 1) ≤ t/2: 1.4 s for 3 s, 3.0 s for 6 s.
    assert_eq!(tcp_retries2_for(Duration::from_secs(3)), 2);
    assert_eq!(tcp_retries2_for(Duration::from_secs(6)), 3);
    assert_eq!(tcp_retries2_for(Duration::from_millis(100)), 1);
    assert_eq!(tcp_retries2_for(Duration::from_secs(100_000)), 15);
}

#[tokio::test]
async fn a_listening_port_is_seen_without_connecting() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    assert!(listening_on(port));
    drop(listener);
    assert!(!listening_on(port));
}

#[tokio::test]
async fn a_dropped_program_takes_its_shell_children_with_it() {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let (program, _stdin, mut stdout) =
        Program::spawn("sleep 60 & echo $!; wait", addr, None).expect("spawn");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).await.expect("read") == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let sleeper: i32 = String::from_utf8(line).unwrap().trim().parse().unwrap();
    let alive = |pid: i32| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    assert!(alive(sleeper));
    drop(program);
    // The kill is sent at once; the process is gone once init reaps it.
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        !alive(sleeper)
            || std::fs::read_to_string(format!("/proc/{sleeper}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    assert!(gone, "the shell's child {sleeper} outlived the program");
}

#[tokio::test]
async fn a_server_that_never_listens_is_named_with_its_stderr() {
    let f = Foreign::new(
        "t",
        "echo no such thing >&2; exit 3",
        "true",
        ForeignClassifier::Opaque,
    )
    .unwrap();
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let Err(e) = f.listen(addr).await else {
        panic!("listened")
    };
    let text = e.to_string();
    assert!(
        text.contains("ended") && text.contains("no such thing"),
        "{text}"
    );
}

#[tokio::test]
async fn the_pipes_carry_the_session() {
    let f = Foreign::new("t", "true", "cat", ForeignClassifier::Opaque).unwrap();
    let dial = Dial {
        server: "127.0.0.1:9".parse().unwrap(),
        user_timeout: None,
    };
    let mut s = f.dial(&dial).await.expect("dial");
    s.send(b"hello").await.expect("send");
    let mut got = Vec::new();
    while got.len() < 5 {
        got.extend(s.recv(64).await.expect("recv"));
    }
    assert_eq!(got, b"hello");
    s.close().await.expect("close");
    assert!(s.recv(64).await.expect("end").is_empty());
}

#[tokio::test]
async fn the_commands_run_as_the_user_who_ran_sudo() {
    if !nix::unistd::geteuid().is_root() {
        return; // only root can run a command as someone else
    }
    let owner = cipherlink_files::Owner {
        uid: 65534,
        gid: 65534,
    };
    let f = Foreign::new("t", "true", "id -u; id -g", ForeignClassifier::Opaque)
        .unwrap()
        .run_as(Some(owner));
    let dial = Dial {
        server: "127.0.0.1:9".parse().unwrap(),
        user_timeout: None,
    };
    let mut s = f.dial(&dial).await.expect("dial");
    let mut out = Vec::new();
    loop {
        let chunk = s.recv(64).await.expect("recv");
        if chunk.is_empty() {
            break;
        }
        out.extend(chunk);
    }
    assert_eq!(String::from_utf8(out).unwrap(), "65534\n65534\n");
}

/// `pid`'s process is gone (or a zombie waiting for init), within seconds.
fn ends(pid: i32) -> bool {
    let alive = |pid: i32| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    (0..150).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        !alive(pid)
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    })
}

#[tokio::test]
async fn a_server_whose_shell_exits_early_leaves_no_child_behind() {
    // The shell starts a child in its process group and exits before
    // listening: `listen` reaps the shell, and its child must still go.
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let cmd = format!(
        "sleep 60 </dev/null >/dev/null 2>&1 & echo $! > {}; exit 3",
        pidfile.display()
    );
    let f = Foreign::new("t", &cmd, "true", ForeignClassifier::Opaque).unwrap();
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    assert!(f.listen(addr).await.is_err(), "listened");
    let sleeper: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gone = ends(sleeper);
    if !gone {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(sleeper),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(gone, "the server shell's child {sleeper} outlived it");
}
