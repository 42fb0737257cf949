//! `PortSession::reset`: PORT has no abort message, so a session that ends
//! in failure resets its connection; the peer must read an error, where a
//! session merely dropped between messages reads as a clean end.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::sync::Arc;
use std::time::Duration;

use cipherlink_port::driver::{connect, Admit, PortListener, PortSession};
use cipherlink_port::{PortSettings, ServerKey};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Stops a hung test; nothing asserts on timing.
const DEADLINE: Duration = Duration::from_secs(30);

/// An admitted client session and the server's side of it.
async fn pair() -> (PortSession, PortSession) {
    let key = ServerKey::generate(&mut StdRng::from_os_rng());
    let public = *key.public();
    let admit: Admit = Arc::new(|t: &[u8]| (t == b"tok").then(|| "t".to_string()));
    let settings = PortSettings::default();
    let mut listener = PortListener::bind("127.0.0.1:0", key, admit, settings.clone())
        .await
        .unwrap();
    let addr = listener.local_addr().to_string();
    let client = connect(&addr, &public, b"tok", &settings);
    let (client, accepted) = tokio::join!(client, listener.accept());
    (client.unwrap(), accepted.unwrap().session)
}

#[tokio::test]
async fn a_reset_session_is_an_error_for_the_peer_and_a_drop_is_a_clean_end() {
    let (client, mut server) = pair().await;
    client.reset();
    let got = tokio::time::timeout(DEADLINE, server.reader.recv())
        .await
        .unwrap();
    assert!(got.is_err(), "a reset read as {got:?}");

    let (client, mut server) = pair().await;
    drop(client);
    let got = tokio::time::timeout(DEADLINE, server.reader.recv())
        .await
        .unwrap();
    assert_eq!(got.unwrap(), None);
}
