//! The seed's Alice and Bob greeting, in Rust: two parties in one process.
//!
//! Run: `cargo run -p cipherlink-pool --example alice_bob`
//! (Alice on 127.0.0.1:61001, Bob on 127.0.0.1:61002, as in the seed; either
//! side may instead be the package's `alice.py` / `bob.py`.)

use cipherlink_pool::{PeerConfig, Pool, PoolConfig, PoolError, Value};

async fn alice() -> Result<(), PoolError> {
    let cfg = PoolConfig::new("Alice", ([127, 0, 0, 1], 61001).into()).peer(PeerConfig::new(
        "Bob",
        "127.0.0.1",
        61002,
    ));
    let pool = Pool::start(cfg).await?;
    pool.send(
        "Bob",
        &Value::str("Hello Bob! This is Alice speaking."),
        None,
    )
    .await?;
    let reply = pool.recv("Bob", None).await?;
    println!("Alice got: {}", cipherlink_pool::json::to_json(&reply));
    pool.shutdown().await;
    Ok(())
}

async fn bob() -> Result<(), PoolError> {
    let cfg = PoolConfig::new("Bob", ([127, 0, 0, 1], 61002).into()).peer(PeerConfig::new(
        "Alice",
        "127.0.0.1",
        61001,
    ));
    let pool = Pool::start(cfg).await?;
    let message = pool.recv("Alice", None).await?;
    println!("Bob got: {}", cipherlink_pool::json::to_json(&message));
    pool.send("Alice", &Value::str("Hello back to you, Alice!"), None)
        .await?;
    pool.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), PoolError> {
    tracing_subscriber::fmt().with_target(false).init();
    let (a, b) = tokio::join!(alice(), bob());
    a?;
    b
}
