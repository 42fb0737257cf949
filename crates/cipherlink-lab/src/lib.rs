//! The measurement lab: benchmarks that print numbers and write JSON.
//!
//! Every benchmark compares against its baseline in the same run (plain TCP,
//! the crypto floor), because a shared machine is noisy from one run to the
//! next.

pub mod bench_conn;
pub mod bench_idle;
pub mod bench_pool;
pub mod cpu;
pub mod fd_limit;
pub mod format;
