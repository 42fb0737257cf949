//! The seed's `score.proto`, compiled at build time (see `build.rs`).
#![allow(missing_docs, clippy::unwrap_used)]

tonic::include_proto!("score");
