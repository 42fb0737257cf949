//! The load generators: channel setup, the steady and cold-connection tests,
//! the sustainable-rate search, and the progress of a steady run.

pub mod coldconn;
pub mod connect;
pub mod findmax;
pub mod progress;
pub mod steady;
