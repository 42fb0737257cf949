//! The measurement lab: benchmarks that return reports (serde `Serialize`,
//! for JSON), and tell an [`observer::Observer`] how a run goes; the
//! `cipherlink` binary prints both. Errors are [`LabError`].
//!
//! Every benchmark compares against its baseline in the same run (plain TCP,
//! the crypto floor), because a shared machine is noisy from one run to the
//! next.

pub mod bench_conn;
pub mod bench_datagram;
pub mod bench_idle;
pub mod bench_link;
pub mod bench_pool;
pub mod bench_proxy;
pub mod cpu;
mod error;
pub mod fd_limit;
pub mod format;
pub mod observer;
mod procfs;

pub use error::{BulkFailure, LabError};
