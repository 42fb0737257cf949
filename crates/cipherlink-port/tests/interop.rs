//! Both directions against SeasideVPN's own Python PORT code (the peer
//! `scripts/setup-peers` installs): its PortClient against our
//! PortListener, our client against its PortListener.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use cipherlink_port::driver::{connect, PortListener};
use cipherlink_port::{Error, PortSettings, PublicKey, ServerKey};
use cipherlink_test_support::process::Proc;
use cipherlink_test_support::{peer, Peer};
use rand::rngs::StdRng;
use rand::SeedableRng;
use sha2::{Digest, Sha256};

/// The Python program and the environment it runs in.
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
                "/tests/peer/seaside_peer.py"
            ))
            .args(args)
            .env("PYTHONPATH", &self.src)
            .env("SEASIDE_LOG_LEVEL", "ERROR")
            // Its client gives up on a silent server after this many seconds.
            .env("PORT_TIMEOUT", "4");
        c
    }

    /// Runs its client to the end (on a blocking thread); its stdout.
    async fn client(&self, key: &PublicKey, token: &[u8], port: u16, sizes: &[usize]) -> String {
        let mut args = vec![
            "client".to_string(),
            key.to_hex(),
            hex::encode(token),
            port.to_string(),
        ];
        args.extend(sizes.iter().map(usize::to_string));
        self.run(args).await
    }

    async fn run(&self, args: Vec<String>) -> String {
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

const SIZES: &[usize] = &[1, 2, 45, 100, 1000, 4096, 16_384, 30_000, 60_000, 61_440, 1];

fn settings() -> PortSettings {
    PortSettings {
        timeout: Duration::from_secs(4),
        ..PortSettings::default()
    }
}

/// Our listener admitting `token` as "alice", echoing every message.
async fn our_echo_server(
    key: ServerKey,
    token: &'static [u8],
) -> (u16, tokio::task::JoinHandle<Vec<Result<(), Error>>>) {
    let admit = Arc::new(move |t: &[u8]| (t == token).then(|| "alice".to_string()));
    let mut listener = PortListener::bind("127.0.0.1:0", key, admit, settings())
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
                _ = tokio::time::sleep(Duration::from_secs(3)), if !sessions.is_empty() || !ends.is_empty() => break,
            }
        }
        while let Some(r) = sessions.join_next().await {
            ends.push(r.unwrap());
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
        clients.spawn(async move { s.client(&k, b"shared", port, &[1, 5000, 60_000, 7]).await });
    }
    while let Some(out) = clients.join_next().await {
        let out = out.unwrap();
        assert!(out.contains("echoed 4"), "{out}");
    }
    assert_eq!(server.await.unwrap().len(), 4);
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
    // The right pair still works after both.
    let out = seaside.client(key.public(), b"right", port, &[3]).await;
    assert!(out.contains("echoed 1"), "{out}");
    assert_eq!(
        server.await.unwrap(),
        vec![Ok(())],
        "only the right pair was admitted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn their_client_closing_mid_message_is_an_error_here() {
    let seaside = seaside!();
    let key = ServerKey::generate(&mut StdRng::seed_from_u64(5));
    let (port, server) = our_echo_server(key.clone(), b"t").await;
    let out = seaside
        .run(vec![
            "truncate".into(),
            key.public().to_hex(),
            hex::encode(b"t"),
            port.to_string(),
        ])
        .await;
    assert!(out.contains("sent half"), "{out}");
    let ends = server.await.unwrap();
    assert!(matches!(&ends[..], [Err(Error::Truncated(_))]), "{ends:?}");
}

/// Its listener, echoing; the key pair it was given.
fn their_listener(seaside: &Seaside) -> (Proc, PublicKey, u16) {
    let key = ServerKey::generate(&mut StdRng::seed_from_u64(6));
    let cmd = seaside.command(&["listen".into(), hex::encode(&key.private_bytes()[..])]);
    let mut proc = Proc::spawn("SeasideVPN PortListener", cmd);
    let out = proc.wait_stdout("listening ");
    let port = out
        .lines()
        .find_map(|l| l.strip_prefix("listening "))
        .and_then(|p| p.trim().parse().ok())
        .expect("a port");
    (proc, *key.public(), port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_to_their_listener_1b_to_60kb() {
    let seaside = seaside!();
    let (mut proc, key, port) = their_listener(&seaside);
    let addr = format!("127.0.0.1:{port}");
    for round in 0..3 {
        let mut s = connect(
            &addr,
            &key,
            format!("token-{round}").as_bytes(),
            &settings(),
        )
        .await
        .unwrap();
        for (i, &size) in SIZES.iter().enumerate() {
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
    let out = proc.wait_stdout(&hex::encode("token-2"));
    assert!(
        out.contains(&format!("token {} type 0", hex::encode("token-0"))),
        "{out}"
    );
    proc.close_stdin();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_with_a_wrong_key_gets_no_session_from_their_listener() {
    let seaside = seaside!();
    let (mut proc, mut key, port) = their_listener(&seaside);
    key.seed[3] ^= 0x10;
    let r = connect(&format!("127.0.0.1:{port}"), &key, b"t", &settings()).await;
    assert!(
        matches!(r, Err(Error::Io { .. } | Error::Timeout(_))),
        "{r:?}"
    );
    proc.close_stdin();
}
