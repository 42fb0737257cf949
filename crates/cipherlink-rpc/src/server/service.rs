//! The ScoreService handler: wait the artificial delay, answer a random score.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use crate::pb::score_service_server::ScoreService;
use crate::pb::{JsonVector, ScoreResponse};
use crate::timer::Timer;

/// The seed's service: `GetScore` sleeps `delay` without blocking a thread.
#[derive(Debug, Clone)]
pub struct Scorer {
    delay: Duration,
    timer: Timer,
    answered: Option<Answered>,
}

impl Scorer {
    /// A handler that waits `delay` on `timer` before each answer, and
    /// counts its answers in `answered` if given.
    pub fn new(delay: Duration, timer: Timer, answered: Option<Answered>) -> Self {
        Self {
            delay,
            timer,
            answered,
        }
    }
}

/// How many calls a server has answered so far, readable while it runs: a
/// caller can act on the event "the server is serving" (a test stopping it
/// mid-run once calls have succeeded) instead of guessing a time. One
/// relaxed atomic add per call.
#[derive(Debug, Clone, Default)]
pub struct Answered(Arc<AtomicU64>);

impl Answered {
    /// The calls answered so far (all threads together).
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` calls are answered, looking every `poll`.
    pub async fn at_least(&self, n: u64, poll: Duration) {
        while self.get() < n {
            tokio::time::sleep(poll).await;
        }
    }
}

#[tonic::async_trait]
impl ScoreService for Scorer {
    async fn get_score(
        &self,
        _request: Request<JsonVector>,
    ) -> Result<Response<ScoreResponse>, Status> {
        // The deadline is taken on arrival, so time spent here counts toward it.
        self.timer.sleep(self.delay).await;
        if let Some(answered) = &self.answered {
            answered.0.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Response::new(ScoreResponse {
            score: rand::random::<f64>(),
        }))
    }
}
