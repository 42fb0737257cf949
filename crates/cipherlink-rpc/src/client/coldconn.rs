//! `rpc coldconn` (the Python suite's 02_coldconn): a new secure channel per attempt, at a fixed rate.
//!
//! Attempts run one at a time so they do not compete for the CPU; attempt `i`
//! starts at `start + i / rate`, or at once if the previous one ran late.
//! t_connect covers TCP connect + TLS handshake + HTTP/2 setup; t_first_rpc
//! the first call on that channel. Session resumption is off in the client
//! configuration (see [`crate::tls::ClientTls::resumption`]), so every
//! attempt pays for a full handshake.

use std::time::{Duration, Instant};

use crate::client::connect::Connector;
use crate::error::RpcError;
use crate::pb::score_service_client::ScoreServiceClient;
use crate::pb::JsonVector;
use crate::record::{failure_name, ColdOutcome};
use crate::timer::Timer;

/// How a cold-connection run proceeds.
#[derive(Debug, Clone)]
pub struct ColdOptions {
    /// Attempts per second.
    pub rate: f64,
    /// Length of the run.
    pub duration: Duration,
    /// Deadline of the first call.
    pub deadline: Duration,
    /// The `json` field of the request.
    pub payload: String,
    /// Unrecorded attempts first: the process's first connection also pays
    /// one-time costs (lazy initialisation, page faults, thread start-up)
    /// that are not the connection's.
    pub warmup_attempts: u32,
}

/// Runs the cold-connection test; one outcome per attempt.
pub async fn run_coldconn(
    connector: &Connector,
    opts: &ColdOptions,
    timer: &Timer,
) -> Result<Vec<ColdOutcome>, RpcError> {
    if !(opts.rate.is_finite() && opts.rate > 0.0 && opts.rate <= 1e6) {
        return Err(RpcError::Setting {
            field: "rate",
            detail: format!("{} is not a rate in (0, 1,000,000]", opts.rate),
        });
    }
    let n = ((opts.duration.as_secs_f64() * opts.rate).round() as u64).max(1);
    for _ in 0..opts.warmup_attempts {
        let _ = attempt(connector, opts).await;
    }
    let start = Instant::now();
    let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    for i in 0..n {
        timer
            .sleep_until(start + Duration::from_secs_f64(i as f64 / opts.rate))
            .await;
        out.push(attempt(connector, opts).await);
    }
    Ok(out)
}

/// One attempt: connect, one call, close.
pub async fn attempt(connector: &Connector, opts: &ColdOptions) -> ColdOutcome {
    let t0 = Instant::now();
    let channel = match connector.channel().await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!("cold connection failed: {e}");
            return ColdOutcome::Err("UNAVAILABLE");
        }
    };
    let t1 = Instant::now();
    let mut client = ScoreServiceClient::new(channel);
    let mut req = tonic::Request::new(JsonVector {
        json: opts.payload.clone(),
    });
    req.set_timeout(opts.deadline);
    let outcome = match tokio::time::timeout(opts.deadline, client.get_score(req)).await {
        Ok(Ok(_)) => ColdOutcome::Ok {
            connect: t1 - t0,
            first_rpc: t1.elapsed(),
        },
        Ok(Err(status)) => ColdOutcome::Err(failure_name(&status, t1, opts.deadline)),
        Err(_) => ColdOutcome::Err("DEADLINE_EXCEEDED"),
    };
    // Dropping the last handle closes the connection.
    drop(client);
    outcome
}
