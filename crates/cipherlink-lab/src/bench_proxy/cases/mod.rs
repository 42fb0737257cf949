//! The cases every pair runs, with the same client and backend: one
//! tunnel's throughput, new tunnels per second with their CPU cost, and
//! memory per idle tunnel.

pub(super) mod bulk;
pub(super) mod cpu;
pub(super) mod idle;
pub(super) mod rate;
