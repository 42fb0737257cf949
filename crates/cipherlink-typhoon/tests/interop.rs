//! Both directions against SeasideVPN's own Python TYPHOON code (the peer
//! `scripts/setup-peers` installs): its TyphoonClient against our
//! TyphoonListener, our client against its TyphoonListener. Both sides run
//! with the same short timers (TIMERS), as TYPHOON_* variables set them.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use cipherlink_test_support::process::Proc;
use cipherlink_test_support::{peer, Peer};
use cipherlink_typhoon::driver::{connect, TyphoonListener};
use cipherlink_typhoon::{Error, PublicKey, ServerKey, TyphoonSettings};
use rand::rngs::StdRng;
use rand::SeedableRng;
use sha2::{Digest, Sha256};

/// Handshakes every 1-2 s, INITs answered after 50-100 ms, three retries.
const TIMERS: &[(&str, &str)] = &[
    ("TYPHOON_MIN_NEXT_IN", "1.0"),
    ("TYPHOON_MAX_NEXT_IN", "2.0"),
    ("TYPHOON_DEFAULT_RTT", "0.2"),
    ("TYPHOON_MIN_RTT", "0.1"),
    ("TYPHOON_MAX_RTT", "0.5"),
    ("TYPHOON_MIN_TIMEOUT", "1.0"),
    ("TYPHOON_MAX_TIMEOUT", "3.0"),
    ("TYPHOON_DEFAULT_TIMEOUT", "2.0"),
    ("TYPHOON_MAX_RETRIES", "3"),
];

fn settings() -> TyphoonSettings {
    TyphoonSettings::from_env(|k| {
        TIMERS
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap()
}

struct Seaside {
    python: PathBuf,
    src: PathBuf,
}

macro_rules! seaside {
    () => {{
        let Some(python) = peer!(Peer::PythonSeaside) else {
            return;
        };
        let Some(src) = peer!(Peer::SeasideSrc) else {
            return;
        };
        Seaside { python, src }
    }};
}

impl Seaside {
    fn command(&self, args: &[String]) -> Command {
        let mut c = Command::new(&self.python);
        c.arg("-W")
            .arg("ignore")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/peer/typhoon_peer.py"
            ))
            .args(args)
            .env("PYTHONPATH", &self.src)
            .env("SEASIDE_LOG_LEVEL", "ERROR")
            .envs(TIMERS.iter().copied());
        c
    }

    async fn client(&self, key: &PublicKey, token: &[u8], port: u16, sizes: &[usize]) -> String {
        let mut args = vec![
            "client".to_string(),
            key.to_hex(),
            hex::encode(token),
            port.to_string(),
        ];
        args.extend(sizes.iter().map(usize::to_string));
        let mut cmd = self.command(&args);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

/// What the Python peer sends as message `i` of `size` bytes.
fn payload(i: usize, size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < size {
        out.extend_from_slice(&Sha256::digest(format!("{i}/{}", out.len())));
    }
    out.truncate(size);
    out
}

const SIZES: &[usize] = &[1, 2, 45, 100, 1000, 4096, 16_384, 30_000, 60_000, 1];

/// Our listener admitting `token` as "alice", echoing every message; the
/// task ends 3 s after the last session did.
async fn our_echo_server(
    key: ServerKey,
    token: &'static [u8],
) -> (u16, tokio::task::JoinHandle<Vec<Result<(), Error>>>) {
    let admit = Arc::new(move |t: &[u8]| (t == token).then(|| "alice".to_string()));
    let mut listener = TyphoonListener::bind("127.0.0.1:0", key, admit, settings())
        .await
        .unwrap();
    let port = listener.local_addr().port();
    let task = tokio::spawn(async move {
        let mut ends = Vec::new();
        let mut sessions = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                a = listener.accept() => {
                    let Some(mut a) = a else { break };
                    assert_eq!(a.name, "alice");
                    sessions.spawn(async move {
                        while let Some(m) = a.session.reader.recv().await? {
                            a.session.writer.send(&m).await?;
                        }
                        Ok(())
                    });
                }
                Some(r) = sessions.join_next() => ends.push(r.unwrap()),
                _ = tokio::time::sleep(Duration::from_secs(3)), if sessions.is_empty() && !ends.is_empty() => break,
                _ = tokio::time::sleep(Duration::from_secs(60)) => break,
            }
        }
        ends
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn their_client_to_our_listener_1b_to_60kb() {
    let seaside = seaside!();
    let key = ServerKey::generate(&mut StdRng::seed_from_u64(1));
    let (port, server) = our_echo_server(key.clone(), b"alice-token").await;
    let out = seaside
        .client(key.public(), b"alice-token", port, SIZES)
        .await;
    assert!(out.contains(&format!("echoed {}", SIZES.len())), "{out}");
    let ends = server.await.unwrap();
    assert_eq!(ends, vec![Ok(())], "its client terminates cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_of_their_clients_at_once() {
    let seaside = Arc::new(seaside!());
    let key = ServerKey::generate(&mut StdRng::seed_from_u64(2));
    let (port, server) = our_echo_server(key.clone(), b"shared").await;
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (s, k) = (seaside.clone(), *key.public());
        clients.spawn(async move { s.client(&k, b"shared", port, &[1, 5000, 30_000, 7]).await });
    }
    while let Some(out) = clients.join_next().await {
        let out = out.unwrap();
        assert!(out.contains("echoed 4"), "{out}");
    }
    assert_eq!(server.await.unwrap(), vec![Ok(()); 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn their_client_with_a_wrong_token_or_key_is_refused() {
    let seaside = seaside!();
    let key = ServerKey::generate(&mut StdRng::seed_from_u64(3));
    let (port, server) = our_echo_server(key.clone(), b"right").await;
    let out = seaside.client(key.public(), b"wrong", port, &[1]).await;
    assert!(out.contains("FAILED"), "a wrong token got an answer: {out}");
    let other = ServerKey::generate(&mut StdRng::seed_from_u64(4));
    let out = seaside.client(other.public(), b"right", port, &[1]).await;
    assert!(out.contains("FAILED"), "a wrong key got an answer: {out}");
    let out = seaside.client(key.public(), b"right", port, &[3]).await;
    assert!(out.contains("echoed 1"), "{out}");
    assert_eq!(
        server.await.unwrap(),
        vec![Ok(())],
        "only the right pair was admitted"
    );
}

/// Its listener, echoing; the key pair it was given.
fn their_listener(seaside: &Seaside) -> (Proc, PublicKey, u16) {
    let key = ServerKey::generate(&mut StdRng::seed_from_u64(6));
    let cmd = seaside.command(&["listen".into(), hex::encode(&key.private_bytes()[..])]);
    let mut proc = Proc::spawn("SeasideVPN TyphoonListener", cmd);
    let out = proc.wait_stdout("listening ");
    let port = out
        .lines()
        .find_map(|l| l.strip_prefix("listening "))
        .and_then(|p| p.trim().parse().ok())
        .expect("a port");
    (proc, *key.public(), port)
}

async fn echo_round(addr: &str, key: &PublicKey, token: &[u8], sizes: &[usize]) {
    let mut s = connect(addr, key, token, &settings()).await.unwrap();
    for (i, &size) in sizes.iter().enumerate() {
        let m = payload(i, size);
        s.writer.send(&m).await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(20), s.reader.recv())
            .await
            .expect("an echo")
            .unwrap();
        assert_eq!(back.as_deref(), Some(&m[..]), "message {i} ({size} bytes)");
    }
    s.writer.terminate().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_to_their_listener_1b_to_60kb_and_through_handshakes() {
    let seaside = seaside!();
    let (mut proc, key, port) = their_listener(&seaside);
    let addr = format!("127.0.0.1:{port}");
    for round in 0..2 {
        echo_round(&addr, &key, format!("token-{round}").as_bytes(), SIZES).await;
    }
    // A session kept for 18 s, past the rounds of handshakes (every 1-2 s)
    // and past both sides' give-up times (at most 3 × (2 + 3) s), still echoes.
    let mut s = connect(&addr, &key, b"token-long", &settings())
        .await
        .unwrap();
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        let m = payload(i, 100 + i);
        s.writer.send(&m).await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(20), s.reader.recv())
            .await
            .expect("an echo")
            .unwrap();
        assert_eq!(back.as_deref(), Some(&m[..]), "message {i}");
    }
    s.writer.terminate().await.unwrap();
    let out = proc.wait_stdout(&hex::encode("token-long"));
    assert!(
        out.contains(&format!("token {} type CUSTOM", hex::encode("token-0"))),
        "{out}"
    );
    proc.close_stdin();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_of_our_clients_at_once_to_their_listener() {
    let seaside = seaside!();
    let (mut proc, key, port) = their_listener(&seaside);
    let addr = format!("127.0.0.1:{port}");
    let mut set = tokio::task::JoinSet::new();
    for c in 0..4 {
        let addr = addr.clone();
        set.spawn(async move {
            echo_round(
                &addr,
                &key,
                format!("c{c}").as_bytes(),
                &[1, 5000, 30_000, 7],
            )
            .await
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    proc.close_stdin();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_with_a_wrong_key_gets_no_session_from_their_listener() {
    let seaside = seaside!();
    let (mut proc, mut key, port) = their_listener(&seaside);
    key.seed[3] ^= 0x10;
    let r = connect(&format!("127.0.0.1:{port}"), &key, b"t", &settings()).await;
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
    proc.close_stdin();
}
