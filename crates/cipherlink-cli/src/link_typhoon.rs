//! `cipherlink link ... --wire typhoon`: SeasideVPN's TYPHOON over UDP
//! (docs/typhoon-wire.md) with the link's token store and invitation flow.
//! Keys, tokens and connection files are PORT's (SeasideVPN uses one key
//! format for both transports): a token is a link token's id and secret,
//! 48 bytes, checked by [`cipherlink_proxy::port::admit`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use cipherlink_link::TokenStore;
use cipherlink_port::ConnectionFile;
use cipherlink_proxy::port::{admit, PortTokens};
use cipherlink_typhoon::driver::{
    connect as typhoon_connect, Accepted, TyphoonListener, TyphoonReader, TyphoonWriter,
};
use cipherlink_typhoon::TyphoonSettings;
use tokio::sync::watch;

use crate::link_cmd::read_text;
use crate::link_port::load_key;

/// Most bytes of stdin sent as one message: one datagram each way must
/// hold it whole (and SeasideVPN's peer adds up to 1 KiB of tail).
const MAX_MESSAGE: usize = 60_000;

fn settings() -> Result<TyphoonSettings> {
    TyphoonSettings::from_env(|k| std::env::var(k).ok()).context("reading TYPHOON_* settings")
}

/// `link serve --wire typhoon` options.
pub struct Serve {
    pub key: PathBuf,
    pub tokens: PathBuf,
    pub listen: std::net::SocketAddr,
    pub echo: bool,
    pub count: Option<u64>,
}

/// `link serve --wire typhoon`.
pub async fn serve(a: Serve) -> Result<()> {
    let key = load_key(&a.key)?;
    let settings = settings()?;
    let tokens = PortTokens::open(&a.tokens).context("reading the token store")?;
    let listener = TyphoonListener::bind(&a.listen.to_string(), key, tokens.admit_fn(), settings)
        .await
        .with_context(|| format!("listening on {} (UDP)", a.listen))?;
    // Status on stderr: stdout carries only what clients send.
    eprintln!(
        "listening on {} (TYPHOON over UDP; every client sends to this port)",
        listener.local_addr()
    );
    crate::seaside_serve::serve(
        "TYPHOON", listener, &tokens, &a.tokens, a.echo, a.count, handle,
    )
    .await
}

/// Serves one client: echo or print its messages; ends it when its token
/// is revoked.
async fn handle(
    acc: Accepted,
    mut store: watch::Receiver<Arc<TokenStore>>,
    echo: bool,
) -> Result<()> {
    let Accepted {
        session,
        token,
        name,
        ..
    } = acc;
    // The INIT was admitted up to MAX_NEXT_IN × INITIAL_NEXT_IN earlier, and
    // `store` only reports changes after now: a revocation in between shows
    // only here.
    if admit(&store.borrow_and_update(), &token).is_none() {
        tracing::info!("TYPHOON client {name}: token revoked; terminating");
        session.writer.terminate().await?;
        return Ok(());
    }
    let halves = (session.reader, session.writer);
    crate::seaside_serve::echo_or_print(halves, (&token, &name), "TYPHOON", store, echo).await
}

/// `link connect --wire typhoon FILE`.
pub async fn connect(file: &Path, server: Option<String>, timeout: Duration) -> Result<()> {
    let text = read_text(file, "TYPHOON connection file")?;
    let conn = ConnectionFile::parse(&text)
        .with_context(|| format!("TYPHOON connection file {}", file.display()))?;
    let settings = settings()?;
    if timeout.is_zero() {
        bail!("--timeout must be more than 0");
    }
    let addr = server.unwrap_or(conn.server.clone());
    let session = tokio::time::timeout(
        timeout,
        typhoon_connect(&addr, &conn.server_key, &conn.token, &settings),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no server INIT within --timeout"))
    .and_then(|r| r.map_err(anyhow::Error::from))
    .with_context(|| format!("connecting to {addr} as {} (TYPHOON)", conn.name))?;
    eprintln!(
        "connected to {addr} as {} (TYPHOON over UDP, data to {}; no forward secrecy, no retransmission)",
        conn.name,
        session.peer()
    );
    // A termination ends a TYPHOON session both ways (unlike PORT's, which
    // the server answers after its last message): after stdin's end the
    // pipe reads until the server terminates or stays quiet for a while.
    crate::stdio_session::datagrams(session.reader, session.writer, MAX_MESSAGE).await
}

impl crate::stdio_session::DatagramSource for TyphoonReader {
    async fn next(&mut self) -> Result<Option<Vec<u8>>> {
        Ok(self.recv().await?)
    }
}

impl crate::stdio_session::DatagramSink for TyphoonWriter {
    async fn put(&mut self, datagram: &[u8]) -> Result<()> {
        Ok(self.send(datagram).await?)
    }

    async fn finish(self) -> Result<()> {
        Ok(self.terminate().await?)
    }
}
