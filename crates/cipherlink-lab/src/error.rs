//! The lab's one error type.

use crate::bench_conn::floor::FloorError;

/// Errors that stop a benchmark (a failed connection or message does not:
/// it is counted).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// Preparing certificates, contexts, listeners, threads or runtimes failed.
    #[error("benchmark setup: {0}")]
    Setup(String),
    /// The core library refused a configuration.
    #[error(transparent)]
    Core(#[from] cipherlink::Error),
    /// Measuring the floor failed.
    #[error(transparent)]
    Floor(#[from] FloorError),
    /// A Pool operation failed.
    #[error("{phase}: {source}")]
    Pool {
        /// Which phase.
        phase: String,
        /// The cause.
        source: Box<cipherlink_pool::PoolError>,
    },
    /// A Python party (tno.mpc.communication) failed: its case is left out
    /// and the other cases run.
    #[error("Python {role} ({python}) failed: {detail}")]
    PythonParty {
        /// "Alice" or "Bob".
        role: &'static str,
        /// The interpreter.
        python: String,
        /// What it printed on stderr, and what it needs.
        detail: String,
    },
}
