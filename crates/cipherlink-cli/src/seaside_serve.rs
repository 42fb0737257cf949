//! The accept loop `link serve --wire port` and `--wire typhoon` share:
//! SeasideVPN's two wires admit clients by the same token store, so each
//! session runs on its own task with a watch on the store, the store is
//! re-read every [`TOKEN_RELOAD`], and the loop ends after `count` sessions
//! or at Ctrl-C.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Result};
use cipherlink_link::TokenStore;
use cipherlink_proxy::port::{admit, PortTokens, Reload};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::stdio_session::{DatagramSink, DatagramSource};

use crate::link_cmd::TOKEN_RELOAD;

/// A listener of admitted sessions, and who each one is.
pub(crate) trait Sessions {
    /// One admitted session.
    type Session: Send + 'static;
    /// The next session, `None` once the listener stopped.
    fn next(&mut self) -> impl Future<Output = Option<Self::Session>>;
    /// The token's name and the client's address, for logs.
    fn who(session: &Self::Session) -> (&str, SocketAddr);
}

impl Sessions for cipherlink_port::driver::PortListener {
    type Session = cipherlink_port::driver::Accepted;
    fn next(&mut self) -> impl Future<Output = Option<Self::Session>> {
        self.accept()
    }
    fn who(s: &Self::Session) -> (&str, SocketAddr) {
        (&s.name, s.peer)
    }
}

impl Sessions for cipherlink_typhoon::driver::TyphoonListener {
    type Session = cipherlink_typhoon::driver::Accepted;
    fn next(&mut self) -> impl Future<Output = Option<Self::Session>> {
        self.accept()
    }
    fn who(s: &Self::Session) -> (&str, SocketAddr) {
        (&s.name, s.peer)
    }
}

/// Serves `listener`'s sessions with `handle` (given the session, a watch
/// on the token store and `echo`); `wire` names them in logs.
pub(crate) async fn serve<L, H, F>(
    wire: &'static str,
    mut listener: L,
    tokens: &PortTokens,
    tokens_path: &Path,
    echo: bool,
    count: Option<u64>,
    handle: H,
) -> Result<()>
where
    L: Sessions,
    H: Fn(L::Session, watch::Receiver<Arc<TokenStore>>, bool) -> F,
    F: Future<Output = Result<()>> + Send + 'static,
{
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut ended = 0u64;
    let mut tick = tokio::time::interval(TOKEN_RELOAD);
    loop {
        if count.is_some_and(|c| ended >= c) {
            return Ok(());
        }
        tokio::select! {
            session = listener.next() => {
                let Some(session) = session else { bail!("the {wire} listener stopped") };
                let (name, peer) = L::who(&session);
                let who = format!("{name} ({peer})");
                tracing::info!("{wire} client {name} from {peer}");
                let served = handle(session, tokens.watch(), echo);
                let done = done_tx.clone();
                tokio::spawn(async move {
                    if let Err(e) = served.await {
                        tracing::warn!("{wire} client {who}: {e:#}");
                    }
                    let _ = done.send(());
                });
            }
            Some(()) = done_rx.recv() => ended += 1,
            _ = tick.tick() => match tokens.reload() {
                Reload::Applied { tokens: n } => {
                    tracing::info!("reloaded {} ({n} tokens)", tokens_path.display());
                }
                Reload::Failed { reason } => {
                    tracing::error!("{reason}: refusing every token until it is fixed");
                }
                _ => {}
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// Serves one admitted session: echoes or prints its messages until the
/// client ends it, then terminates it; ends it at once when the re-read
/// store no longer admits its token. `wire` names it in logs.
pub(crate) async fn echo_or_print<R: DatagramSource, W: DatagramSink>(
    (mut reader, mut writer): (R, W),
    (token, name): (&[u8], &str),
    wire: &str,
    mut store: watch::Receiver<Arc<TokenStore>>,
    echo: bool,
) -> Result<()> {
    let mut stdout = tokio::io::stdout();
    loop {
        tokio::select! {
            m = reader.next() => {
                let Some(m) = m? else { break };
                if echo {
                    writer.put(&m).await?;
                } else {
                    stdout.write_all(&m).await?;
                    stdout.flush().await?;
                }
            }
            Ok(()) = store.changed() => {
                if admit(&store.borrow_and_update(), token).is_none() {
                    tracing::info!("{wire} client {name}: token revoked; terminating");
                    break;
                }
            }
        }
    }
    writer.finish().await
}
