//! The load generators: channel setup, the steady and cold-connection tests,
//! and the sustainable-rate search.

pub mod coldconn;
pub mod connect;
pub mod findmax;
pub mod steady;
