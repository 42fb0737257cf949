//! The ScoreService handler: wait the artificial delay, answer a random score.

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
}

impl Scorer {
    /// A handler that waits `delay` on `timer` before each answer.
    pub fn new(delay: Duration, timer: Timer) -> Self {
        Self { delay, timer }
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
        Ok(Response::new(ScoreResponse {
            score: rand::random::<f64>(),
        }))
    }
}
