//! cipherlink-rpc: the gRPC latency lab (`cipherlink rpc`, `cipherlink summarize`),
//! a Rust port of the original Python grpcio latency suite.
//!
//! ```text
//!  rpc serve ──> server::BoundServer ── one thread per core, each: accept + TLS
//!                     (tls::server_config) ── tonic ── ScoreService (delay, random score)
//!                     |
//!  rpc steady ──> client::connect::Connector ──> one Channel ──> client::steady (open loop)
//!  rpc coldconn ─> client::connect::Connector ──> new Channel per attempt ──> client::coldconn
//!                     |
//!                     v  results files (record), JSON lines
//!  summarize ────> summary (read, stats, SVG + HTML plots)
//! ```
//!
//! The proto is the original suite's `score.proto`, compiled at build time
//! by protox (pure Rust, no system `protoc`) and tonic-prost-build. TLS is
//! rustls with aws-lc-rs, TLS 1.3 only, hybrid post-quantum key exchange
//! preferred; the original suite's openssl certificates (X.509 v1, CN-only)
//! work with `--dangerous-accept-legacy-certs` (see [`tls`]).

pub mod client;
pub mod env;
pub mod error;
pub mod pb;
pub mod record;
pub mod server;
pub mod stats;
pub mod summary;
pub mod timer;
pub mod tls;

pub use error::RpcError;
