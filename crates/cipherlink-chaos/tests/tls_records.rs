//! A real TLS 1.3 session through the recording proxy, decoded with its key
//! log: every record gets the class it really has (the server's encrypted
//! certificate flight is handshake, the echo is data, close_notify a
//! close), where the record headers alone say "application data" for all.

use std::time::Duration;

use cipherlink::certs::{self, CertOptions};
use cipherlink::Context;
use cipherlink_chaos::output::{Invoker, OutDir};
use cipherlink_chaos::recorder::Recorder;
use cipherlink_chaos::stream_proxy::{ProxyConfig, StreamProxy};
use cipherlink_chaos::subject::PacketClass;
use cipherlink_chaos::tls_records::{KeyLog, RecordMap};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_captured_tls_session_decodes_record_by_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = dir.path().join("keys.log");
    let bundle = certs::generate(&CertOptions::default()).expect("certificates");
    let server = Context::server(&bundle.server_config()).expect("server context");
    let mut client_config = bundle.client_config();
    client_config.dangerous.key_log_file = Some(keys.clone());
    let client = Context::client(&client_config).expect("client context");

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut tunnel = server
            .accept(tcp, "client")
            .await
            .expect("server handshake");
        let mut ping = [0u8; 4];
        tunnel.read_exact(&mut ping).await.expect("ping");
        tunnel.write_all_and_close(b"PONG").await.expect("pong");
    });
    let out = OutDir::open(dir.path(), Invoker::current_user()).expect("out dir");
    let (recorder, writer) =
        Recorder::create(out.create("tls.pcap").expect("pcap")).expect("recorder");
    let mut config = ProxyConfig::new("127.0.0.1:0".parse().expect("addr"), upstream.to_string());
    config.recorder = Some(recorder);
    config.idle_timeout = LIMIT;
    let proxy = StreamProxy::bind(config).await.expect("proxy");
    let via = proxy.local_addr().expect("proxy addr");
    let proxy_task = tokio::spawn(proxy.run());

    let tcp = TcpStream::connect(via).await.expect("connect");
    let mut tunnel = client
        .connect(tcp, "localhost")
        .await
        .expect("client handshake");
    tunnel.write_all(b"PING").await.expect("ping");
    let mut pong = [0u8; 4];
    tunnel.read_exact(&mut pong).await.expect("pong");
    assert_eq!(&pong, b"PONG");
    assert!(tunnel
        .read_chunk(16)
        .await
        .expect("close_notify")
        .is_empty());
    tunnel.close().await.expect("close");

    let key_log = KeyLog::parse(&std::fs::read_to_string(&keys).expect("key log"));
    // The file appears when the recording ends: once the connection's task
    // (and with it its recorder handles) is gone.
    proxy_task.abort();
    let (_, path) = writer.finish(LIMIT).await.expect("capture committed");
    let bytes = std::fs::read(&path).expect("capture");
    let classes = match RecordMap::from_capture(&bytes, &key_log)
        .classes()
        .as_slice()
    {
        [[up, down]] => (up.clone(), down.clone(), bytes.clone()),
        other => panic!("one connection expected: {other:?}"),
    };
    let (up, down, bytes) = classes;
    use PacketClass::{Close, Data, Handshake};
    // Client: ClientHello (and the compatibility ChangeCipherSpec), its
    // encrypted Finished, PING, close_notify.
    assert_eq!(up.first(), Some(&Handshake), "{up:?}");
    assert_eq!(up[up.len() - 2..], [Data, Close], "{up:?}");
    assert!(up[..up.len() - 2].iter().all(|c| *c == Handshake), "{up:?}");
    // Server: ServerHello, the encrypted flight and the ticket (handshake),
    // then PONG and close_notify.
    assert!(
        down.iter().filter(|c| **c == Handshake).count() >= 3,
        "{down:?}"
    );
    assert_eq!(down[down.len() - 2..], [Data, Close], "{down:?}");
    assert!(!down.contains(&PacketClass::Unknown), "{down:?}");

    // Without the keys, the same records are only their headers.
    let blind = RecordMap::from_capture(&bytes, &KeyLog::default()).classes();
    assert!(blind[0][1].contains(&PacketClass::Unknown), "{blind:?}");
}
