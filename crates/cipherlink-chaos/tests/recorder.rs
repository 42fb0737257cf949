//! The proxy's pcap recording: each connection becomes a TCP flow whose
//! payload is exactly what each side received.

use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use cipherlink_chaos::output::{Invoker, OutDir};
use cipherlink_chaos::recorder::Recorder;
use cipherlink_chaos::stream_proxy::{ProxyConfig, StreamProxy};
use cipherlink_chaos::stream_shaper::Impairments;
use etherparse::{SlicedPacket, TransportSlice};
use pcap_file::pcap::PcapReader;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);

use cipherlink_test_support::echo_server;

#[derive(Default, Debug)]
struct Flow {
    from_client: Vec<u8>,
    from_server: Vec<u8>,
    syn: usize,
    fin: usize,
    rst: usize,
}

fn read_flow(path: &Path, client_port: u16) -> Option<Flow> {
    let file = std::fs::File::open(path).ok()?;
    let mut reader = PcapReader::new(file).ok()?;
    let mut flow = Flow::default();
    while let Some(Ok(packet)) = reader.next_packet() {
        let sliced = SlicedPacket::from_ip(&packet.data).ok()?;
        let Some(TransportSlice::Tcp(tcp)) = sliced.transport else {
            return None;
        };
        flow.syn += usize::from(tcp.syn());
        flow.fin += usize::from(tcp.fin());
        flow.rst += usize::from(tcp.rst());
        if tcp.source_port() == client_port {
            flow.from_client.extend_from_slice(tcp.payload());
        } else {
            flow.from_server.extend_from_slice(tcp.payload());
        }
    }
    Some(flow)
}

#[tokio::test]
async fn proxy_records_what_each_side_received() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = OutDir::open(dir.path(), Invoker::current_user()).expect("out dir");
    let (recorder, writer) =
        Recorder::create(out.create("chaos.pcap").expect("pcap")).expect("recorder");
    let mut config = ProxyConfig::new(
        "127.0.0.1:0".parse().expect("addr"),
        echo_server().await.to_string(),
    );
    // Corrupt on the way up: the capture must show the corrupted bytes.
    config.up = Impairments {
        corrupt: 1.0,
        slice: NonZeroUsize::new(1000),
        ..Impairments::default()
    };
    config.recorder = Some(recorder);
    config.idle_timeout = LIMIT;
    let proxy = StreamProxy::bind(config).await.expect("bind");
    let addr = proxy.local_addr().expect("addr");
    let proxy_task = tokio::spawn(proxy.run());

    let mut c = TcpStream::connect(addr).await.expect("connect");
    let client_port = c.local_addr().expect("local").port();
    let sent: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    c.write_all(&sent).await.expect("write");
    c.shutdown().await.expect("shutdown");
    let mut echoed = Vec::new();
    timeout(LIMIT, c.read_to_end(&mut echoed))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(echoed.len(), sent.len());
    assert_ne!(echoed, sent, "every 1000-byte slice had a bit flipped");

    // The file appears when the recording ends, once the connection's task
    // (and its recorder handles) is gone: with both FINs in it.
    proxy_task.abort();
    let dropped = writer.dropped();
    let (_, path) = writer.finish(LIMIT).await.expect("capture committed");
    assert_eq!(path, dir.path().join("chaos.pcap"));
    let flow = read_flow(&path, client_port).expect("a readable capture");
    assert_eq!(flow.fin, 2);
    assert_eq!(flow.syn, 2);
    assert_eq!(flow.rst, 0);
    // What the upstream received (corrupted) and what the client received.
    assert_eq!(flow.from_client, echoed);
    assert_eq!(flow.from_server, echoed);
    assert_eq!(dropped, 0);
}
