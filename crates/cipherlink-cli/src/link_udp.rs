//! `cipherlink link serve|connect --udp`: the link protocol's datagram mode
//! (docs/link-protocol.md §11). The same key, token store, replay store
//! and connection files as over TCP; each read of stdin is one datagram,
//! each datagram received is written to stdout as it comes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use cipherlink_link::dgram::driver::{
    connect, DgramAccepted, DgramListener, DgramReader, DgramWriter,
};
use cipherlink_link::dgram::DgramServerOptions;
use cipherlink_link::keys::ConnectionFile;
use cipherlink_link::proto::EndpointOptions;
use cipherlink_link::token_file::{Reload, TokenFile};
use cipherlink_link::{ClientConfig, LinkParams, ServerEndpoint, TokenStore};
use tokio::io::AsyncWriteExt;

use crate::link_cmd::{load_key, read_text, TOKEN_RELOAD};

/// Most bytes of stdin sent as one datagram.
const MAX_MESSAGE: usize = 60_000;

/// The datagram mode's parameters, from the `TYPHOON_*` environment.
fn params() -> Result<LinkParams> {
    LinkParams::from_typhoon_env(|k| std::env::var(k).ok()).context("reading TYPHOON_* settings")
}

/// `link serve --udp` options.
pub struct Serve {
    pub key: PathBuf,
    pub tokens: PathBuf,
    pub replay_store: Option<PathBuf>,
    pub listen: SocketAddr,
    pub echo: bool,
    pub count: Option<u64>,
}

/// `link serve --udp`.
pub async fn serve(a: Serve) -> Result<()> {
    let key = load_key(&a.key)?;
    // A file of its own beside the TCP server's (`NAME.udp.replay`): the
    // file can be open in one process only, and a first message of one
    // mode never opens the other (docs/link-protocol.md §11.1), so the two
    // need not share marks.
    let replay = a.replay_store.clone().unwrap_or_else(|| {
        cipherlink_link::proto::default_replay_file(&a.tokens).with_extension("udp.replay")
    });
    let options = EndpointOptions {
        replay_file: Some(replay.clone()),
        ..EndpointOptions::default()
    };
    let endpoint = Arc::new(
        ServerEndpoint::with_options(key, TokenStore::new(), params()?, options)
            .with_context(|| format!("replay store {}", replay.display()))?,
    );
    let mut tokens = TokenFile::new(&a.tokens);
    if let Reload::Failed { reason, .. } = tokens.reload(&endpoint) {
        bail!("token store {reason}");
    }
    let mut listener = DgramListener::bind(
        &a.listen.to_string(),
        endpoint.clone(),
        DgramServerOptions::default(),
    )
    .await
    .with_context(|| format!("listening on {} (UDP)", a.listen))?;
    // Status on stderr: stdout carries only what clients send.
    eprintln!(
        "listening on {} (link over UDP, datagram mode)",
        listener.local_addr()
    );
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut ended = 0u64;
    let mut reload = tokio::time::interval(TOKEN_RELOAD);
    loop {
        if a.count.is_some_and(|c| ended >= c) {
            eprintln!("stopped after {ended} session(s) (--count)");
            return Ok(());
        }
        tokio::select! {
            acc = listener.accept() => {
                let Some(acc) = acc else { bail!("the UDP listener stopped") };
                tracing::info!("link (UDP) from {} as {}", acc.peer, acc.name);
                let done = done_tx.clone();
                let echo = a.echo;
                tokio::spawn(async move {
                    let who = format!("{} ({})", acc.name, acc.peer);
                    if let Err(e) = handle(acc, echo).await {
                        tracing::warn!("link (UDP) {who}: {e:#}");
                    }
                    let _ = done.send(());
                });
            }
            Some(()) = done_rx.recv() => ended += 1,
            _ = reload.tick() => {
                crate::link_cmd::log_reload(tokens.reload(&endpoint), &a.tokens, "sessions");
            }
            () = crate::shutdown::requested() => return Ok(()),
        }
    }
}

async fn handle(acc: DgramAccepted, echo: bool) -> Result<()> {
    let DgramAccepted { session, name, .. } = acc;
    let (mut reader, mut writer) = (session.reader, session.writer);
    let mut stdout = tokio::io::stdout();
    while let Some(d) = reader
        .recv()
        .await
        .with_context(|| format!("receiving from {name}"))?
    {
        if echo {
            writer.send(&d).await.context("echoing")?;
        } else {
            stdout.write_all(&d).await?;
            stdout.flush().await?;
        }
    }
    Ok(())
}

/// `link connect --udp FILE`.
pub async fn connect_cmd(file: &Path, server: Option<String>, timeout: Duration) -> Result<()> {
    let text = read_text(file, "connection file")?;
    let conn = ConnectionFile::parse(&text)
        .with_context(|| format!("connection file {}", file.display()))?;
    if timeout.is_zero() {
        bail!("--timeout 0 would fail every connection; give a limit such as 30s");
    }
    let mut cfg = ClientConfig::from_file(&conn, params()?, |k| {
        // The tail comes from the file unless TYPHOON_MAX_TAIL_LENGTH says otherwise.
        (k == "PORT_TAIL_LENGTH")
            .then(|| std::env::var("TYPHOON_MAX_TAIL_LENGTH").ok())
            .flatten()
    });
    cfg.params.handshake_timeout = timeout;
    let addr = server.unwrap_or(conn.server.clone());
    let session = connect(&addr, cfg)
        .await
        .with_context(|| format!("connecting to {addr} as {} (UDP)", conn.name))?;
    eprintln!(
        "connected to {addr} as {} (hybrid X25519+ML-KEM-768 link over UDP; datagrams may be lost, nothing is resent)",
        conn.name
    );
    crate::stdio_session::datagrams(session.reader, session.writer, MAX_MESSAGE).await
}

impl crate::stdio_session::DatagramSource for DgramReader {
    async fn next(&mut self) -> Result<Option<Vec<u8>>> {
        Ok(self.recv().await?)
    }
}

impl crate::stdio_session::DatagramSink for DgramWriter {
    async fn put(&mut self, datagram: &[u8]) -> Result<()> {
        Ok(self.send(datagram).await?)
    }

    async fn finish(self) -> Result<()> {
        Ok(self.close().await?)
    }
}
