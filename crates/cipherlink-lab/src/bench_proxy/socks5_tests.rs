#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use super::*;
use tokio::net::TcpListener;

/// What a fake SOCKS5 proxy saw from one client.
#[derive(Debug, Default)]
struct Seen {
    methods: Vec<u8>,
    username: Vec<u8>,
    password: Vec<u8>,
    request: Vec<u8>,
}

/// Accepts one client, records its greeting, credentials and request,
/// answers with `reply`, then echoes.
async fn fake_proxy(reply: u8) -> (SocketAddr, tokio::task::JoinHandle<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut seen = Seen::default();
        let mut two = [0u8; 2];
        s.read_exact(&mut two).await.unwrap();
        seen.methods = vec![0; usize::from(two[1])];
        s.read_exact(&mut seen.methods).await.unwrap();
        s.write_all(&[5, 2]).await.unwrap();
        s.read_exact(&mut two).await.unwrap();
        seen.username = vec![0; usize::from(two[1])];
        s.read_exact(&mut seen.username).await.unwrap();
        let mut one = [0u8; 1];
        s.read_exact(&mut one).await.unwrap();
        seen.password = vec![0; usize::from(one[0])];
        s.read_exact(&mut seen.password).await.unwrap();
        s.write_all(&[1, 0]).await.unwrap();
        seen.request = vec![0; 10];
        s.read_exact(&mut seen.request).await.unwrap();
        // A domain-name bound address, the longest form to parse.
        let mut answer = vec![5, reply, 0, 3, 9];
        answer.extend_from_slice(b"localhost");
        answer.extend_from_slice(&[0x1f, 0x90]);
        s.write_all(&answer).await.unwrap();
        let mut buf = [0u8; 64];
        if let Ok(n) = s.read(&mut buf).await {
            let _ = s.write_all(&buf[..n]).await;
        }
        seen
    });
    (addr, task)
}

#[tokio::test]
async fn pt_args_go_in_the_username_with_a_nul_password_and_the_tunnel_carries_data() {
    let (proxy, seen) = fake_proxy(0).await;
    let target: SocketAddr = "127.0.0.1:4444".parse().unwrap();
    let dialer =
        Socks5Dialer::with_pt_args(proxy, target, &[("cert", "AbC+/9"), ("iat-mode", "0")])
            .unwrap();
    let mut stream = dialer.connect().await.unwrap();
    stream.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ping");
    let seen = seen.await.unwrap();
    assert_eq!(seen.methods, [METHOD_USER_PASS]);
    assert_eq!(seen.username, b"cert=AbC+/9;iat-mode=0");
    assert_eq!(seen.password, [0]);
    assert_eq!(seen.request, [5, 1, 0, 1, 127, 0, 0, 1, 0x11, 0x5c]);
}

#[test]
fn long_args_are_split_across_username_and_password_and_escaped() {
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let long = "x".repeat(300);
    let dialer = Socks5Dialer::with_pt_args(addr, addr, &[("k;=", &long)]).unwrap();
    assert_eq!(dialer.username.len(), 255);
    assert!(dialer.username.starts_with(b"k\\;\\==xx"));
    assert_eq!(dialer.username.len() + dialer.password.len(), 6 + 300);
    let too_long = "x".repeat(600);
    assert!(matches!(
        Socks5Dialer::with_pt_args(addr, addr, &[("k", &too_long)]),
        Err(Socks5Error::ArgsTooLong(602))
    ));
}

#[tokio::test]
async fn a_refusal_is_named() {
    let (proxy, _seen) = fake_proxy(5).await;
    let target: SocketAddr = "127.0.0.1:4444".parse().unwrap();
    let dialer = Socks5Dialer::with_pt_args(proxy, target, &[("cert", "c")]).unwrap();
    let err = dialer.connect().await.unwrap_err();
    assert!(matches!(err, Socks5Error::Refused { code: 5, .. }), "{err}");
    assert!(err.to_string().contains("connection refused"), "{err}");
}
