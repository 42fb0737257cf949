//! `bench idle` against servers in processes of their own: every connection
//! completes its handshake and is still open when memory is read, and the
//! report has the shape the CLI writes as JSON. (No memory figure is
//! asserted: that is what the benchmark is for.)
//!
//! The servers are this test binary run again as a child (the ignored test
//! `idle_server_child` with an environment variable saying what to serve),
//! because the `cipherlink` binary belongs to another package.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cipherlink::server::TlsServer;
use cipherlink::{Config, Context, PemSource};
use cipherlink_lab::bench_idle::{
    self, ChildSpec, IdleBenchOptions, IdleEvent, IdleMode, IdleObserver, IdleServer,
};

const CHILD_MODE: &str = "CIPHERLINK_IDLE_TEST_CHILD";
const CHILD_CERT: &str = "CIPHERLINK_IDLE_TEST_CERT";
const CHILD_KEY: &str = "CIPHERLINK_IDLE_TEST_KEY";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_handshakes_and_stays_open_in_a_server_process() {
    let exe = std::env::current_exe().unwrap();
    let command = Arc::new(move |spec: &ChildSpec<'_>| {
        let mut command = Command::new(&exe);
        command
            .args(["idle_server_child", "--exact", "--ignored", "--nocapture"])
            .env(CHILD_MODE, spec.mode.to_string())
            .env(CHILD_CERT, spec.cert)
            .env(CHILD_KEY, spec.key);
        command
    });
    // (Opening, Tried, Opened) counts per mode, in order.
    let heard = Arc::new(Mutex::new(Vec::<(usize, usize, usize)>::new()));
    let observer = {
        let heard = heard.clone();
        IdleObserver::new(move |event: &IdleEvent| {
            let mut heard = heard.lock().unwrap();
            match event {
                IdleEvent::Opening { total, .. } => {
                    assert_eq!(*total, 50);
                    heard.push((1, 0, 0));
                }
                IdleEvent::Tried => heard.last_mut().unwrap().1 += 1,
                IdleEvent::Opened => heard.last_mut().unwrap().2 += 1,
                _ => {}
            }
        })
    };
    let options = IdleBenchOptions {
        connections: 50,
        modes: vec![IdleMode::Tls, IdleMode::Plain],
        server: IdleServer::Spawn(command),
        concurrency: 8,
        observer: Some(observer),
    };
    let report = bench_idle::run(&options).await.expect("bench runs");
    // Per mode: the start, one event per measured connection, the end.
    assert_eq!(
        heard.lock().unwrap().as_slice(),
        [(1, 50, 1), (1, 50, 1)].as_slice()
    );
    assert_eq!(report.cases.len(), 2);
    for (case, mode) in report.cases.iter().zip([IdleMode::Tls, IdleMode::Plain]) {
        assert_eq!(case.mode, mode);
        assert_eq!(case.opened, 50, "{case:?}");
        assert_eq!(case.failed, 0, "{:?}", case.first_error);
        assert_eq!(case.still_open, 50, "{case:?}");
        assert_eq!(case.pids.len(), 1);
        assert_ne!(
            case.pids[0],
            std::process::id(),
            "the server is another process"
        );
        assert!(case.rss_before_bytes > 0 && case.rss_after_bytes > 0);
        assert!(case.bytes_per_connection.is_some());
    }
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["connections"], 50);
    assert_eq!(json["cases"][0]["mode"], "tls");
    assert_eq!(json["cases"][1]["mode"], "plain");
    assert!(json["cases"][0]["bytes_per_connection"].is_number());
    assert!(json["client_fd_limit"]["hard"].is_number());
}

/// A TLS target is measured by its PIDs, and is refused without a CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_target_needs_its_ca() {
    let options = IdleBenchOptions {
        connections: 1,
        modes: vec![IdleMode::Tls],
        server: IdleServer::Target {
            addr: "127.0.0.1:9".parse().unwrap(),
            pids: vec![std::process::id()],
            ca: None,
            server_name: None,
        },
        concurrency: 1,
        observer: None,
    };
    let err = bench_idle::run(&options).await.unwrap_err().to_string();
    assert!(err.contains("CA"), "{err}");
}

/// The server child: runs only when the test above starts this binary with
/// `CIPHERLINK_IDLE_TEST_CHILD` set, and then serves until killed.
#[test]
#[ignore = "a server process for the test above, not a test"]
fn idle_server_child() {
    let Ok(mode) = std::env::var(CHILD_MODE) else {
        return;
    };
    // Ends with the test that started it, even one killed before it could
    // kill this child: its end of the stdin pipe closes.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let idle = Duration::from_secs(300);
        if mode == "plain" {
            eprintln!("serving plain TCP on {addr}");
            bench_idle::plain::serve(listener, 1024, idle).await;
            return;
        }
        let path = |var| PemSource::path(std::env::var(var).unwrap());
        let config = Config::builder()
            .identity(path(CHILD_CERT), path(CHILD_KEY))
            .build();
        let context = Context::server(&config).unwrap();
        let server = TlsServer::from_listener(listener, context);
        eprintln!("serving TLS on {addr}");
        // Echo, as `cipherlink serve --echo` does.
        let task = server.spawn(|mut tunnel| async move {
            loop {
                let chunk = tunnel.read_chunk(16 * 1024).await?;
                if chunk.is_empty() {
                    return tunnel.close().await;
                }
                tunnel.write_all(&chunk).await?;
            }
        });
        let _ = task.await;
    });
}
