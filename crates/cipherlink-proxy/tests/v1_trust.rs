//! What a v1 proxy server trusts (docs/v1-frame.md, "What v1 protects"):
//! its own frames sent back to it, frames spliced from another connection
//! and deleted frames, in both modes; and that nothing is connected onward,
//! nor more than one small frame buffered, before a frame authenticated.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use cipherlink_proxy::nacl_frame::{
    self, keys, Decoder, Header, Keys, Mode, Opener, Sealer, Side, DEFAULT_MAX_DATA_SIZE,
    HEADER_LEN, LIMIT_MAX_DATA_SIZE, NONCE_LEN,
};
use cipherlink_proxy::{Role, ServiceConfig, Transport};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A v1 client driven by hand: frames are sealed in order by one session
/// and sent (or kept, or sent elsewhere) as the test says.
struct Client {
    stream: TcpStream,
    sealer: Sealer,
    opener: Opener,
}

impl Client {
    async fn connect(addr: SocketAddr, keys: &Keys, mode: Mode) -> Client {
        Client::connect_max(addr, keys, mode, DEFAULT_MAX_DATA_SIZE).await
    }

    /// With `max` as the largest frame it seals.
    async fn connect_max(addr: SocketAddr, keys: &Keys, mode: Mode, max: u32) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sealer, opener) = nacl_frame::session(keys.clone(), max, Side::Client, mode);
        Client {
            stream,
            sealer,
            opener,
        }
    }

    /// The next frame of this connection's sequence, not sent.
    fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.sealer.seal(plaintext, &mut out).unwrap();
        out
    }

    async fn send(&mut self, frame: &[u8]) {
        self.stream.write_all(frame).await.unwrap();
    }

    /// One whole frame from the server, as the bytes on the wire.
    async fn read_frame(&mut self) -> Vec<u8> {
        let mut frame = vec![0u8; HEADER_LEN];
        tokio::time::timeout(DEADLINE, self.stream.read_exact(&mut frame))
            .await
            .unwrap()
            .unwrap();
        let header = Header::parse(&frame[..].try_into().unwrap(), u32::MAX).unwrap();
        let mut body = vec![0u8; NONCE_LEN + header.data_size as usize];
        self.stream.read_exact(&mut body).await.unwrap();
        frame.extend_from_slice(&body);
        frame
    }

    /// Opens a frame `read_frame` returned, as our receiving half.
    fn open(&mut self, frame: &[u8]) -> Vec<u8> {
        let mut decoder = Decoder::new(u32::MAX);
        let mut input = frame;
        let frame = decoder.decode(&mut input).unwrap().unwrap();
        self.opener.open(frame).unwrap().to_vec()
    }

    /// Half-closes and reads to the end: Ok for a clean end, the error
    /// kind for a reset.
    async fn finish(mut self) -> Result<Vec<u8>, std::io::ErrorKind> {
        let _ = self.stream.shutdown().await;
        let mut rest = Vec::new();
        tokio::time::timeout(DEADLINE, self.stream.read_to_end(&mut rest))
            .await
            .expect("the proxy ended the connection")
            .map(|_| rest)
            .map_err(|e| e.kind())
    }
}

struct Setup {
    _material: Material,
    server: Running,
    service: Recording,
    /// The client's keys towards the server.
    keys: Keys,
}

async fn setup(mode: Mode, echo: bool, adjust: impl FnOnce(&mut ServiceConfig)) -> Setup {
    let material = Material::new();
    let service = Recording::start(echo).await;
    let mut config = material.secure(ServiceConfig::new(
        Role::Server,
        "127.0.0.1:0",
        service.addr.to_string(),
        Transport::V1,
    ));
    if let Some(v1) = &mut config.v1 {
        v1.strict = mode == Mode::Strict;
    }
    adjust(&mut config);
    let server = Running::start("v1", config).await;
    let keys = Keys::new(
        &keys::read_secret_key(&material.path("client.key")).unwrap(),
        &keys::read_public_key(&material.path("server.pub")).unwrap(),
    );
    Setup {
        _material: material,
        server,
        service,
        keys,
    }
}

const MODES: [Mode; 2] = [Mode::Compatible, Mode::Strict];

#[tokio::test]
async fn the_servers_own_frame_sent_back_is_refused_in_both_modes() {
    for mode in MODES {
        let mut s = setup(mode, true, |_| {}).await;
        let mut client = Client::connect(s.server.addr, &s.keys, mode).await;
        let ping = client.seal(b"ping");
        client.send(&ping).await;
        // The service echoes; the server seals the echo for us...
        let reply = client.read_frame().await;
        assert_eq!(client.open(&reply), b"ping", "{mode:?}");
        // ...and the same bytes sent back to the server must not be taken
        // for client data (same box key both ways: they authenticate).
        client.send(&reply).await;
        let end = client.finish().await;
        assert!(end.is_err(), "{mode:?}: reflected frame answered: {end:?}");
        let (got, service_end) = s.service.next().await;
        assert_eq!(got, b"ping", "{mode:?}: the service got the reflection");
        assert!(
            service_end.is_err(),
            "{mode:?}: the service must see a reset"
        );
        s.server.until_failed("the reflection refused", 1).await;
    }
}

#[tokio::test]
async fn a_frame_spliced_from_another_connection_is_refused_only_in_strict_mode() {
    for mode in MODES {
        let mut s = setup(mode, false, |_| {}).await;
        let mut a = Client::connect(s.server.addr, &s.keys, mode).await;
        let mut b = Client::connect(s.server.addr, &s.keys, mode).await;
        let a0 = a.seal(b"a0.");
        a.send(&a0).await;
        let b0 = b.seal(b"b0.");
        b.send(&b0).await;
        // A's next frame, taken off A's wire and put into B.
        let a1 = a.seal(b"a1.");
        b.send(&a1).await;
        let b_end = b.finish().await;
        let a_end = a.finish().await;
        let mut seen = [s.service.next().await, s.service.next().await];
        seen.sort();
        match mode {
            Mode::Strict => {
                assert!(b_end.is_err(), "strict: the splice was taken");
                assert_eq!(seen[0], (b"a0.".to_vec(), Ok(())));
                assert_eq!(seen[1].0, b"b0.", "strict: the splice reached the service");
                assert!(seen[1].1.is_err());
            }
            // The documented limit: a random-nonce peer's frames carry no
            // connection, so compatible mode cannot tell.
            _ => {
                assert_eq!(b_end, Ok(Vec::new()));
                assert_eq!(seen[1], (b"b0.a1.".to_vec(), Ok(())));
            }
        }
        assert_eq!(a_end, Ok(Vec::new()), "{mode:?}");
    }
}

#[tokio::test]
async fn a_deleted_frame_is_noticed_only_in_strict_mode() {
    for mode in MODES {
        let mut s = setup(mode, false, |_| {}).await;
        let mut client = Client::connect(s.server.addr, &s.keys, mode).await;
        let frames: Vec<Vec<u8>> = (0..4)
            .map(|k| client.seal(format!("f{k}.").as_bytes()))
            .collect();
        // Frame 2 is dropped on the way.
        for k in [0, 1, 3] {
            client.send(&frames[k]).await;
        }
        let end = client.finish().await;
        let (got, service_end) = s.service.next().await;
        match mode {
            Mode::Strict => {
                assert!(end.is_err(), "strict: the gap went unnoticed");
                assert_eq!(got, b"f0.f1.");
                assert!(service_end.is_err());
            }
            _ => {
                assert_eq!(end, Ok(Vec::new()));
                assert_eq!((got, service_end), (b"f0.f1.f3.".to_vec(), Ok(())));
            }
        }
    }
}

#[tokio::test]
async fn a_silent_or_slow_client_opens_no_service_connection() {
    let s = setup(Mode::Compatible, false, |config| {
        if let Some(v1) = &mut config.v1 {
            v1.auth_timeout = std::time::Duration::from_millis(300);
        }
    })
    .await;
    // Silent; then two header bytes and nothing more.
    let silent = TcpStream::connect(s.server.addr).await.unwrap();
    let mut slow = TcpStream::connect(s.server.addr).await.unwrap();
    slow.write_all(&[1, 0]).await.unwrap();
    for mut stream in [silent, slow] {
        let mut rest = Vec::new();
        let ended = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest)).await;
        assert!(ended.is_ok(), "a client without a frame was never dropped");
    }
    s.server.until_failed("both dropped", 2).await;
    assert_eq!(s.service.accepted(), 0, "a service connection was opened");
}

/// This process's resident memory, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_huge_first_frames_are_refused_at_the_header() {
    const CONNECTIONS: u64 = 64;
    // Even with the largest frame bound allowed, a first frame is held to
    // 64 KiB: before authentication nobody can make us buffer 16 MiB.
    let s = setup(Mode::Compatible, false, |config| {
        if let Some(v1) = &mut config.v1 {
            v1.max_frame_size = LIMIT_MAX_DATA_SIZE;
            // Longer than the test waits: only the header can get them refused.
            v1.auth_timeout = 10 * DEADLINE;
        }
    })
    .await;
    let before = rss_kib();
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        let addr = s.server.addr;
        clients.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(&Header::encode(16 << 20)).await.unwrap();
            // Then the body, slowly; the proxy must not wait for it.
            let chunk = vec![0x5a; 16 * 1024];
            for _ in 0..64 {
                if stream.write_all(&chunk).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
        }));
    }
    let stats = s.server.stats.clone();
    let accepted = s.service.accepted.clone();
    until(
        "every huge first frame refused (or one let through)",
        || {
            stats.snapshot().failed == CONNECTIONS
                || accepted.load(std::sync::atomic::Ordering::SeqCst) > 0
        },
    )
    .await;
    assert_eq!(s.service.accepted(), 0, "a service connection was opened");
    assert_eq!(stats.snapshot().failed, CONNECTIONS);
    for client in clients {
        tokio::time::timeout(DEADLINE, client)
            .await
            .unwrap()
            .unwrap();
    }
    // Sanity: refused at the header, nothing like 64 x 1 MiB was held.
    let grown = rss_kib().saturating_sub(before);
    assert!(grown < 32 * 1024, "resident memory grew by {grown} KiB");
}

#[tokio::test]
async fn after_a_first_frame_the_configured_bound_applies() {
    let mut s = setup(Mode::Strict, false, |config| {
        if let Some(v1) = &mut config.v1 {
            v1.max_frame_size = 1 << 20;
        }
    })
    .await;
    let mut client = Client::connect_max(s.server.addr, &s.keys, Mode::Strict, 1 << 20).await;
    let first = client.seal(b"");
    client.send(&first).await;
    // 512 KiB in one frame: over the first-frame bound, within the service's.
    let plaintext = pattern(7, 512 * 1024);
    let big = client.seal(&plaintext);
    client.send(&big).await;
    assert_eq!(client.finish().await, Ok(Vec::new()));
    let (got, end) = s.service.next().await;
    assert_eq!((got.len(), end), (plaintext.len(), Ok(())));
    assert!(got == plaintext);
}

/// A service that speaks first (as SSH or SMTP do): its banner must reach
/// a client that has sent nothing, through a v1 pair in either mode.
#[tokio::test]
async fn a_service_that_speaks_first_is_reached_through_a_v1_pair() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.write_all(b"220 banner\r\n").await;
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest).await;
            });
        }
    });
    let material = Material::new();
    for strict in [false, true] {
        let strictly = |mut config: ServiceConfig| {
            if let Some(v1) = &mut config.v1 {
                v1.strict = strict;
            }
            config
        };
        let server = Running::start(
            "server",
            strictly(material.secure(ServiceConfig::new(
                Role::Server,
                "127.0.0.1:0",
                backend.to_string(),
                Transport::V1,
            ))),
        )
        .await;
        let client = Running::start(
            "client",
            strictly(material.secure(ServiceConfig::new(
                Role::Client,
                "127.0.0.1:0",
                server.addr.to_string(),
                Transport::V1,
            ))),
        )
        .await;
        let mut app = TcpStream::connect(client.addr).await.unwrap();
        let mut banner = [0u8; 12];
        tokio::time::timeout(DEADLINE, app.read_exact(&mut banner))
            .await
            .expect("the banner came")
            .unwrap();
        assert_eq!(&banner, b"220 banner\r\n", "strict {strict}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_pair_carries_many_tunnels() {
    let material = Material::new();
    let backend = cipherlink_test_support::echo_server().await;
    let strict = |mut config: ServiceConfig| {
        if let Some(v1) = &mut config.v1 {
            v1.strict = true;
        }
        config
    };
    let server = Running::start(
        "server",
        strict(material.secure(ServiceConfig::new(
            Role::Server,
            "127.0.0.1:0",
            backend.to_string(),
            Transport::V1,
        ))),
    )
    .await;
    let client = Running::start(
        "client",
        strict(material.secure(ServiceConfig::new(
            Role::Client,
            "127.0.0.1:0",
            server.addr.to_string(),
            Transport::V1,
        ))),
    )
    .await;
    let mut tasks = Vec::new();
    for seed in 0..40u64 {
        let addr = client.addr;
        tasks.push(tokio::spawn(async move {
            let data = pattern(seed, 1 + (seed as usize * 7919) % 300_000);
            assert!(
                round_trip(addr, &data).await.unwrap() == data,
                "tunnel {seed}"
            );
        }));
    }
    for task in tasks {
        tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap();
    }
    let stats = server.stats.clone();
    until("every tunnel closed", || stats.snapshot().completed == 40).await;
    assert_eq!(stats.snapshot().failed, 0);
}
