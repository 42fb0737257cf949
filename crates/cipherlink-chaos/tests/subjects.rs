//! The library's subjects over loopback (no root needed): the link subject
//! through the recording stream proxy, its capture read record by record,
//! and the NaCl frame subject echoing messages larger than one read.

use std::time::Duration;

use cipherlink_chaos::output::{Invoker, OutDir};
use cipherlink_chaos::recorder::Recorder;
use cipherlink_chaos::stream_proxy::{ProxyConfig, StreamProxy};
use cipherlink_chaos::subject::{
    link_keepalive, Link, NaclFrame, PacketClass, Session, StreamSubject, Subject,
};
use tokio::net::{TcpListener, TcpStream};

/// A real link through the recording proxy: with the exported keys every
/// record after the handshake decodes (data, then the close record),
/// where the record bytes alone say nothing of their type.
#[tokio::test]
async fn a_captured_link_decodes_record_by_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let subject = Link::new(link_keepalive(false)).expect("link subject");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream = listener.local_addr().expect("addr");
    let server = subject.clone();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut session = server.accept(tcp).await.expect("server session");
        while let Ok(chunk) = session.recv(4096).await {
            if chunk.is_empty() || session.send(&chunk).await.is_err() {
                break;
            }
        }
        let _ = session.close().await;
    });
    let out = OutDir::open(dir.path(), Invoker::current_user()).expect("out dir");
    let (recorder, writer) =
        Recorder::create(out.create("link.pcap").expect("pcap")).expect("recorder");
    let mut config = ProxyConfig::new("127.0.0.1:0".parse().expect("addr"), upstream.to_string());
    config.recorder = Some(recorder);
    let proxy = StreamProxy::bind(config).await.expect("proxy");
    let via = proxy.local_addr().expect("proxy addr");
    let proxy_task = tokio::spawn(proxy.run());

    let tcp = TcpStream::connect(via).await.expect("connect");
    let mut session = subject.connect(tcp).await.expect("client session");
    session.send(b"hello link").await.expect("send");
    let mut echoed = Vec::new();
    while echoed.len() < 10 {
        echoed.extend(session.recv(4096).await.expect("echo"));
    }
    assert_eq!(echoed, b"hello link");
    session.close().await.expect("close");

    // The file appears when the recording ends: once the connection's
    // task, and with it its recorder handles, is gone (the client's
    // close ends it).
    drop(session);
    proxy_task.abort();
    let (_, pcap) = writer
        .finish(Duration::from_secs(20))
        .await
        .expect("capture committed");
    let bytes = std::fs::read(&pcap).expect("capture");
    let map = subject.decode_records(&bytes).expect("decoded");
    let up = match map.classes().as_slice() {
        [[up, down]] => {
            assert!(down.contains(&PacketClass::Data), "{down:?}");
            up.clone()
        }
        other => panic!("one connection expected: {other:?}"),
    };
    assert_eq!(up.first(), Some(&PacketClass::Handshake), "{up:?}");
    assert!(up.contains(&PacketClass::Data), "{up:?}");
    assert_eq!(up.last(), Some(&PacketClass::Close), "{up:?}");
}

/// The NaCl frame subject's two ends over loopback: every message comes
/// back whole, also one that takes several reads, and frames are classed
/// by their header.
#[tokio::test]
async fn nacl_frame_sessions_echo_whole_messages() {
    let subject = NaclFrame::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = subject.clone();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut session = server.accept(tcp).await.expect("server session");
        while let Ok(chunk) = session.recv(4096).await {
            if chunk.is_empty() || session.send(&chunk).await.is_err() {
                break;
            }
        }
    });
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let mut session = subject.connect(tcp).await.expect("client session");
    // 40,000 bytes: one frame (the subject seals a message as one), several reads.
    for n in [1usize, 1000, 40_000] {
        let message: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
        session.send(&message).await.expect("send");
        let mut echoed = Vec::new();
        while echoed.len() < n {
            let chunk = session.recv(64 * 1024).await.expect("echo");
            assert!(
                !chunk.is_empty(),
                "the server ended after {} bytes",
                echoed.len()
            );
            echoed.extend(chunk);
        }
        assert_eq!(echoed, message, "{n} bytes");
    }
    session.close().await.expect("close");
    assert_eq!(subject.name(), "v1");
    assert_eq!(subject.classify(&[1, 0, 0, 0, 24, 9, 9]), PacketClass::Data);
    assert_eq!(subject.classify(&[2, 0, 0, 0, 24]), PacketClass::Unknown);
}
