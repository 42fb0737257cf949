//! Rust server and clients against each other: the happy path once, then
//! every kind of bad input the issue lists. Short runs on loopback; no
//! timing assertions.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::time::Duration;

use cipherlink_rpc::client::connect::Connector;
use cipherlink_rpc::client::steady::{run_steady, SteadyOptions};
use cipherlink_rpc::pb::score_service_client::ScoreServiceClient;
use cipherlink_rpc::pb::JsonVector;
use cipherlink_rpc::record::{self, Outcome};
use cipherlink_rpc::timer::Timer;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(30);

fn steady(rate: f64, secs: f64) -> SteadyOptions {
    SteadyOptions {
        rate,
        duration: Duration::from_secs_f64(secs),
        warmup: Duration::from_millis(100),
        deadline: Duration::from_millis(500),
        max_outstanding: 1000,
        payload: "{\"vector\":[1,2,3]}".into(),
    }
}

/// Why opening a channel failed ("" when it opened).
async fn channel_error(c: &Connector) -> String {
    c.channel()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

async fn one_call(c: &Connector, json: String) -> Result<(), tonic::Status> {
    let ch = c
        .channel()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut client = ScoreServiceClient::new(ch);
    let mut req = tonic::Request::new(JsonVector { json });
    req.set_timeout(Duration::from_secs(5));
    client.get_score(req).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_and_coldconn_over_mutual_tls() -> TestResult {
    tokio::time::timeout(LIMIT, async {
        let p = pki(true);
        let (srv, c) = tls_pair(&p, true, true, Duration::from_millis(1)).await?;
        let (run, cold) = all_ok(
            &c,
            &steady(200.0, 0.5),
            &cold(20.0, Duration::from_millis(200)),
            (100, 4),
        )
        .await?;

        // Round trip through the files and the summarizer.
        let steady_file = p.dir().join("01.txt");
        let cold_file = p.dir().join("02.txt");
        record::write_steady(&steady_file, &run.outcomes)?;
        record::write_coldconn(&cold_file, &cold)?;
        let s = cipherlink_rpc::summary::summarize(&cipherlink_rpc::summary::read(&steady_file)?);
        assert_eq!((s.total, s.ok), (100, 100));
        let k = cipherlink_rpc::summary::summarize(&cipherlink_rpc::summary::read(&cold_file)?);
        assert_eq!(k.kind, cipherlink_rpc::summary::Kind::Coldconn);
        assert_eq!((k.total, k.ok), (4, 4));
        let svg = cipherlink_rpc::summary::plot::svg(&[s, k], "t")?;
        assert!(svg.contains("<svg"));
        srv.shutdown().await;
        Ok(())
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_is_refused_with_the_reason() -> TestResult {
    tokio::time::timeout(LIMIT, async {
        let p = pki(true);
        let other = pki(true);
        let srv = start(Some(server_tls(&p, false, false)), Duration::ZERO, None).await?;
        let mut tls = client_tls(&p, false, false);
        tls.ca = other.ca.ca_path();
        let c = connector(srv.addr, Some(tls), "localhost").await?;
        let err = channel_error(&c).await;
        // Same CA name, other key: BadSignature; other name: UnknownIssuer.
        assert!(err.contains("invalid peer certificate"), "{err}");
        srv.shutdown().await;
        Ok(())
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_client_certificate_under_mtls_fails_every_call() -> TestResult {
    tokio::time::timeout(LIMIT, async {
        let p = pki(true);
        let (srv, c) = tls_pair(&p, true, false, Duration::ZERO).await?;
        // TLS 1.3: the client finishes its handshake before the server
        // refuses it, so the channel opens and the calls fail.
        let run = match c.channel().await {
            Ok(ch) => run_steady(ch, &steady(50.0, 0.4), &Timer::precise()).await?,
            Err(_) => {
                srv.shutdown().await;
                return Ok(());
            }
        };
        assert_eq!(run.outcomes.len(), 20);
        assert!(run.outcomes.iter().all(|o| matches!(o, Outcome::Err(_))));
        srv.shutdown().await;
        Ok(())
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_mid_run_is_recorded_and_the_schedule_kept() -> TestResult {
    tokio::time::timeout(LIMIT, async {
        let p = pki(true);
        let (srv, c) = tls_pair(&p, true, true, Duration::from_millis(1)).await?;
        let ch = c.channel().await?;
        let load =
            tokio::spawn(
                async move { run_steady(ch, &steady(200.0, 1.5), &Timer::precise()).await },
            );
        // Down once it has served part of the run (not after a guessed
        // time): the first 20 calls are the warm-up, so 50 answers mean
        // measured calls succeeded, and ~250 of the 300 are still to come.
        srv.answered.at_least(50, Duration::from_millis(5)).await;
        srv.shutdown().await;
        let run = tokio::time::timeout(Duration::from_secs(15), load).await???;
        assert_eq!(
            run.outcomes.len(),
            300,
            "every scheduled request is recorded"
        );
        let ok = run
            .outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Ok(_)))
            .count();
        assert!(ok > 0 && ok < 300, "ok {ok} of 300");
        assert!(
            run.report.errors.iter().any(|(c, _)| *c == "UNAVAILABLE"),
            "{:?}",
            run.report.errors
        );
        Ok(())
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_request_is_refused_and_the_server_goes_on() -> TestResult {
    tokio::time::timeout(LIMIT, async {
        let p = pki(true);
        let (srv, c) = tls_pair(&p, true, true, Duration::ZERO).await?;
        let big = "x".repeat(200 * 1024);
        let err = one_call(&c, big).await.err().map(|s| s.code());
        assert!(
            matches!(
                err,
                Some(tonic::Code::OutOfRange | tonic::Code::ResourceExhausted)
            ),
            "{err:?}"
        );
        one_call(&c, "{}".into()).await?;
        srv.shutdown().await;
        Ok(())
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_port_costs_only_that_connection() -> TestResult {
    tokio::time::timeout(LIMIT, async {
        let p = pki(true);
        for tls in [Some(server_tls(&p, true, false)), None] {
            let secure = tls.is_some();
            let srv = start(tls, Duration::ZERO, None).await?;
            let mut s = tokio::net::TcpStream::connect(srv.addr).await?;
            let junk: Vec<u8> = (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect();
            let _ = s.write_all(&junk).await;
            // The server must close (or answer and close); never hang.
            let mut buf = vec![0u8; 8192];
            let closed = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => continue,
                    }
                }
            })
            .await;
            assert!(closed.is_ok(), "server kept a garbage connection open");
            let c = if secure {
                connector(srv.addr, Some(client_tls(&p, true, false)), "localhost").await?
            } else {
                connector(srv.addr, None, "127.0.0.1").await?
            };
            one_call(&c, "{}".into()).await?;
            srv.shutdown().await;
        }
        Ok(())
    })
    .await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cn_only_server_certificate_needs_the_documented_option() -> TestResult {
    tokio::time::timeout(LIMIT, async {
        let p = pki(false);
        let srv = start(Some(server_tls(&p, true, false)), Duration::ZERO, None).await?;
        let strict = connector(srv.addr, Some(client_tls(&p, true, false)), "localhost").await?;
        let err = channel_error(&strict).await;
        assert!(err.contains("`accept_cn_only_certificates`"), "{err}");
        let lenient = connector(srv.addr, Some(client_tls(&p, true, true)), "localhost").await?;
        one_call(&lenient, "{}".into()).await?;
        // The CN must still name the host.
        let wrong = cipherlink_rpc::client::connect::Connector::resolve(
            &cipherlink_rpc::client::connect::Target {
                host: "127.0.0.1".into(),
                port: srv.addr.port(),
                tls: Some(cipherlink_rpc::tls::client_config(&client_tls(
                    &p, true, true,
                ))?),
                server_name: Some("example.com".into()),
                connect_timeout: Duration::from_secs(5),
            },
        )
        .await?;
        assert!(wrong.channel().await.is_err());
        srv.shutdown().await;
        Ok(())
    })
    .await?
}
