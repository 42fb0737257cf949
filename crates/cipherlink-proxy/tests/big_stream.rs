//! 1 GiB through a proxy pair, checked by SHA-256 at the far end, for
//! each encrypted transport. Dev profile: dependencies (rustls, aws-lc,
//! the NaCl box, sha2) are optimised by the workspace profile, so this runs
//! in seconds here; it is a correctness test, the speed is `bench proxy`'s.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use cipherlink_proxy::Transport;
use common::*;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOTAL: usize = 1 << 30;
const CHUNK: usize = 1 << 20;

/// A sink that hashes everything, replies with the digest after EOF.
async fn hashing_service() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut hash = Sha256::new();
                let mut buf = vec![0u8; 256 * 1024];
                let mut total = 0u64;
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => {
                            hash.update(&buf[..n]);
                            total += n as u64;
                        }
                        Err(_) => return,
                    }
                }
                let mut reply = hash.finalize().to_vec();
                reply.extend_from_slice(&total.to_be_bytes());
                let _ = stream.write_all(&reply).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

async fn one_gib(transport: Transport) {
    let material = Material::new();
    let backend = hashing_service().await;
    let pair = Pair::start(&material, transport, backend).await;
    let mut stream = TcpStream::connect(pair.client.addr).await.unwrap();
    let mut rng = rand::rng();
    let mut chunk = vec![0u8; CHUNK];
    let mut hash = Sha256::new();
    let sent = tokio::time::timeout(std::time::Duration::from_secs(300), async {
        for _ in 0..TOTAL / CHUNK {
            rng.fill_bytes(&mut chunk);
            hash.update(&chunk);
            stream.write_all(&chunk).await.unwrap();
        }
        stream.shutdown().await.unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.unwrap();
        reply
    })
    .await
    .expect("1 GiB went through in 5 minutes");
    let mut expect = hash.finalize().to_vec();
    expect.extend_from_slice(&(TOTAL as u64).to_be_bytes());
    assert_eq!(hex::encode(sent), hex::encode(expect), "{transport:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_through_a_tls_pair_hashes_equal() {
    one_gib(Transport::Tls).await;
}

/// Ignored by default: the NaCl box is generic code that gets compiled into
/// this crate, so in the dev profile it runs unoptimised (~7 MB/s here:
/// 148 s for 1 GiB). Run it with `cargo test --release -p cipherlink-proxy
/// --test big_stream -- --ignored`; `cipherlink bench proxy` also streams
/// through v1 in release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "unoptimised NaCl box in the dev profile; run with --release -- --ignored"]
async fn one_gib_through_a_v1_pair_hashes_equal() {
    one_gib(Transport::V1).await;
}
