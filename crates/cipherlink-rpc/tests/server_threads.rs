//! The server's threads: they serve more connections than there are of them,
//! and none outlives the server, whether it is stopped or dropped. One test
//! in its own binary, so no other test's server threads are counted.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cipherlink_rpc::pb::score_service_client::ScoreServiceClient;
use cipherlink_rpc::pb::JsonVector;
use cipherlink_rpc::server::{BoundServer, ServerOptions};
use cipherlink_rpc::tls;
use common::{client_tls, connector, pki, server_tls, TestResult};
use tokio::sync::oneshot;

/// Threads of this process named like the server's.
fn server_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|name| name.starts_with("rpc-shard-"))
        .count()
}

/// Waits (bounded) until `want` server threads exist; returns how many do.
async fn wait_for_server_threads(want: usize) -> usize {
    let until = Instant::now() + Duration::from_secs(5);
    while server_threads() != want && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server_threads()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_serve_many_connections_and_none_outlives_the_server() -> TestResult {
    let p = pki(true);
    let cfg = tls::server_config(&server_tls(&p, true, false))?;
    let mut opts = ServerOptions::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Duration::ZERO,
        Some(cfg),
    );
    opts.threads = 3;

    // Stopped: run() returns Ok and the threads are gone.
    let bound = BoundServer::bind(opts.clone()).await?;
    let addr = bound.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(bound.run(async move {
        let _ = stopped.await;
    }));
    assert_eq!(
        wait_for_server_threads(3).await,
        3,
        "one thread per --threads"
    );
    let c = connector(addr, Some(client_tls(&p, true, false)), "localhost").await?;
    // More connections than threads, all answering at once.
    let mut calls = Vec::new();
    for i in 0..6 {
        let channel = c.channel().await?;
        calls.push(tokio::spawn(async move {
            let mut client = ScoreServiceClient::new(channel);
            for _ in 0..20 {
                client
                    .get_score(JsonVector {
                        json: format!("[{i}]"),
                    })
                    .await?;
            }
            Ok::<_, tonic::Status>(())
        }));
    }
    for call in calls {
        call.await??;
    }
    let _ = stop.send(());
    let result = tokio::time::timeout(Duration::from_secs(5), task).await??;
    assert!(result.is_ok(), "run() after stop: {result:?}");
    assert_eq!(wait_for_server_threads(0).await, 0, "threads after stop");

    // Dropped mid-run: the threads still stop by themselves.
    let bound = BoundServer::bind(opts).await?;
    let task = tokio::spawn(bound.run(std::future::pending()));
    assert_eq!(wait_for_server_threads(3).await, 3);
    task.abort();
    assert_eq!(wait_for_server_threads(0).await, 0, "threads after drop");
    Ok(())
}
