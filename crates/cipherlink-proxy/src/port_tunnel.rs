//! The port transport in the proxy: a service's PORT files and settings,
//! a client's PORT session per tunnel, and the relay between a PORT
//! session's messages and the plaintext byte stream.
//!
//! PORT carries messages, not a stream: each read of the plaintext side
//! (at most `buffer_size`, and at most [`MAX_MESSAGE`]) becomes one data
//! message, the plaintext side's end becomes PORT's termination message,
//! and a peer's termination (or its close between messages) ends that
//! direction, as a FIN does. PORT has no abort message: a tunnel that fails
//! resets the data connection, and a reset from the peer is an error here.

use std::path::Path;
use std::sync::Arc;

use cipherlink_link::TokenStore;
use cipherlink_port::driver::{PortReader, PortSession, PortWriter};
use cipherlink_port::{ConnectionFile, PortSettings, PublicKey, ServerKey};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::config::{PortConfig, Role};
use crate::conn::Flow;
use crate::error::TunnelError;
use crate::port::{admit, PortTokens, MAX_MESSAGE};
use crate::relay::{self, Count, Ends};
use crate::service::Shared;

/// What a port service needs, built once per service.
pub(crate) enum PortEngine {
    /// Listens with a `PortListener`, admitting the store's tokens.
    Server {
        key: ServerKey,
        tokens: Arc<PortTokens>,
        settings: PortSettings,
    },
    /// Opens a PORT session per tunnel with the connection file's token.
    Client {
        name: String,
        server_key: PublicKey,
        token: Zeroizing<Vec<u8>>,
        settings: PortSettings,
        /// Session set-ups under way at once ([`SETUPS_AT_ONCE`]).
        setups: tokio::sync::Semaphore,
    },
}

/// Session set-ups one proxy client runs at once. Every tunnel of a client
/// comes from one address, and a PORT listener holds at most
/// `MAX_PENDING_PER_IP` connections of an address before they are sessions,
/// closing the oldest for a newer one: a burst of more set-ups would close
/// its own earlier ones (their users reset). Half the cap leaves room for
/// the server's side of a set-up that ends a little after ours.
pub(crate) const SETUPS_AT_ONCE: usize = cipherlink_port::driver::MAX_PENDING_PER_IP / 2;

impl std::fmt::Debug for PortEngine {
    // Never the keys or the token: only which files and whom.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortEngine::Server { tokens, .. } => f
                .debug_struct("PortServer")
                .field("token_store", &tokens.path())
                .finish_non_exhaustive(),
            PortEngine::Client { name, .. } => f
                .debug_struct("PortClient")
                .field("name", name)
                .finish_non_exhaustive(),
        }
    }
}

/// A PORT file (secret, bounded, never group- or world-readable).
fn read(path: &Path, max: usize) -> Result<Zeroizing<String>, String> {
    cipherlink_files::read_secret_text(path, max as u64).map_err(|e| e.to_string())
}

/// Builds a service's port engine; errors name the field and the file. A
/// client's connect address, when empty, is taken from its connection file
/// (returned as the second value).
pub(crate) fn engine(
    role: Role,
    config: &PortConfig,
) -> Result<(PortEngine, Option<String>), (&'static str, String)> {
    // The same PORT_* names and defaults as SeasideVPN and `cipherlink link
    // serve|connect --wire port` (docs/port-wire.md §4).
    let settings = cipherlink_port::PortSettings::from_env(|k| std::env::var(k).ok())
        .map_err(|e| ("port", format!("PORT_* environment: {e}")))?;
    match role {
        Role::Server => {
            if config.connection_file.is_some() {
                return Err((
                    "port.connection_file",
                    "is for a client; a server needs `server_key` and `token_store`".into(),
                ));
            }
            let Some(key_path) = &config.server_key else {
                return Err((
                    "port.server_key",
                    "is missing (make it with `cipherlink link keygen --wire port --key FILE`)"
                        .into(),
                ));
            };
            let Some(tokens_path) = &config.token_store else {
                return Err((
                    "port.token_store",
                    "is missing (`cipherlink link invite --wire port --tokens FILE` writes it)"
                        .into(),
                ));
            };
            let field = "port.server_key";
            let text =
                read(key_path, cipherlink_port::keys::MAX_KEY_FILE).map_err(|e| (field, e))?;
            let key = ServerKey::parse(&text)
                .map_err(|e| (field, format!("{}: {e}", key_path.display())))?;
            let tokens =
                PortTokens::open(tokens_path).map_err(|e| ("port.token_store", e.to_string()))?;
            let engine = PortEngine::Server {
                key,
                tokens: Arc::new(tokens),
                settings,
            };
            Ok((engine, None))
        }
        Role::Client => {
            for (set, field) in [
                (config.server_key.is_some(), "port.server_key"),
                (config.token_store.is_some(), "port.token_store"),
            ] {
                if set {
                    return Err((
                        field,
                        "is for a server; a client needs `connection_file`".into(),
                    ));
                }
            }
            let field = "port.connection_file";
            let Some(path) = &config.connection_file else {
                return Err((
                    field,
                    "is missing (`cipherlink link invite --wire port` issues one per client)"
                        .into(),
                ));
            };
            // A connection file holds a key line and a token.
            let max = cipherlink_port::keys::MAX_KEY_FILE + 2 * cipherlink_port::wire::MAX_TOKEN;
            let text = read(path, max).map_err(|e| (field, e))?;
            let file = ConnectionFile::parse(&text)
                .map_err(|e| (field, format!("{}: {e}", path.display())))?;
            let engine = PortEngine::Client {
                name: file.name,
                server_key: file.server_key,
                token: file.token,
                settings,
                setups: tokio::sync::Semaphore::new(SETUPS_AT_ONCE),
            };
            Ok((engine, Some(file.server)))
        }
    }
}

/// What ends a server's tunnel when its token is revoked: the store the
/// listener admits by, the token the client presented and its name.
pub(crate) struct Revocation {
    pub(crate) store: watch::Receiver<Arc<TokenStore>>,
    pub(crate) token: Zeroizing<Vec<u8>>,
    pub(crate) name: String,
}

impl Revocation {
    /// An error if the token is no longer admitted now.
    pub(crate) fn check(&self) -> Result<(), TunnelError> {
        match admit(&self.store.borrow(), &self.token) {
            Some(_) => Ok(()),
            None => Err(TunnelError::Revoked(self.name.clone())),
        }
    }

    /// Resolves when a re-read store no longer admits the token.
    async fn revoked(&mut self) -> TunnelError {
        loop {
            if self.store.changed().await.is_err() {
                // The store is gone with its service: nothing revokes now.
                return std::future::pending().await;
            }
            if admit(&self.store.borrow_and_update(), &self.token).is_none() {
                return TunnelError::Revoked(self.name.clone());
            }
        }
    }
}

/// A tunnel's PORT session; a server's also ends when its token is revoked.
pub(crate) struct PortSide {
    pub(crate) session: PortSession,
    pub(crate) revocation: Option<Revocation>,
}

/// Client side: a PORT session to the proxy server (or a SeasideVPN
/// listener), its INITs and second connection within the connect timeout.
pub(crate) async fn connect(shared: &Shared, engine: &PortEngine) -> Result<PortSide, TunnelError> {
    let PortEngine::Client {
        server_key,
        token,
        settings,
        setups,
        ..
    } = engine
    else {
        return Err(crate::conn::not_this_transport("target"));
    };
    // Waiting for a turn counts against the connect timeout too.
    let attempt = async {
        let _turn = setups.acquire().await.ok();
        cipherlink_port::driver::connect(&shared.connect, server_key, token, settings).await
    };
    let error = |error| TunnelError::PortConnect {
        target: shared.connect.clone(),
        error,
    };
    let session = match tokio::time::timeout(shared.connect_timeout, attempt).await {
        Ok(session) => session.map_err(error)?,
        // A wrong server key or a refused token looks like this: a PORT
        // server answers nothing.
        Err(_) => {
            return Err(error(cipherlink_port::Error::Timeout(format!(
                "no server INIT within {:?} (--connect-timeout; a server key other than the \
                 connection file's, or a token the server refuses, gets none)",
                shared.connect_timeout
            ))))
        }
    };
    Ok(PortSide {
        session,
        revocation: None,
    })
}

/// Relays between a PORT session and the plaintext side, both directions
/// at once; a failure (or a revoked token) resets the data connection.
pub(crate) async fn relay(
    side: PortSide,
    plain: &mut TcpStream,
    flow: Flow<'_>,
) -> Result<(), TunnelError> {
    let PortSide {
        session,
        revocation,
    } = side;
    let (mut reader, mut writer) = (session.reader, session.writer);
    let (plain_read, plain_write) = plain.split();
    let size = flow.size.min(MAX_MESSAGE);
    let pumps = relay::drive(
        from_port(&mut reader, plain_write, flow.to_plain, flow.into_plain),
        to_port(
            plain_read,
            &mut writer,
            size,
            flow.to_encrypted,
            flow.into_encrypted,
        ),
        flow.idle,
        flow.moved(),
        flow.cut,
    );
    let result = match revocation {
        Some(mut revocation) => tokio::select! {
            result = pumps => result,
            error = revocation.revoked() => Err(error),
        },
        None => pumps.await,
    };
    if result.is_err() {
        PortSession { reader, writer }.reset();
    }
    result
}

fn port_error(side: &'static str) -> impl Fn(cipherlink_port::Error) -> TunnelError {
    move |error| TunnelError::Port { side, error }
}

/// PORT messages in, plaintext out; the peer's termination (or close
/// between messages) shuts the plaintext side's write half.
async fn from_port<W: AsyncWrite + Unpin>(
    reader: &mut PortReader,
    mut writer: W,
    count: Count<'_>,
    ends: Ends,
) -> Result<(), TunnelError> {
    while let Some(data) = reader.recv().await.map_err(port_error(ends.from))? {
        relay::send(&mut writer, &data, ends).await?;
        count.add(data.len());
    }
    relay::pass_end(&mut writer, ends).await
}

/// Plaintext in, one PORT data message per read; its end sends PORT's
/// termination message.
async fn to_port<R: AsyncRead + Unpin>(
    mut reader: R,
    writer: &mut PortWriter,
    size: usize,
    count: Count<'_>,
    ends: Ends,
) -> Result<(), TunnelError> {
    let mut buf = Vec::new();
    loop {
        let n = relay::next_chunk(&mut reader, &mut buf, size, ends).await?;
        if n == 0 {
            return writer.terminate().await.map_err(port_error(ends.to));
        }
        writer.send(&buf[..n]).await.map_err(port_error(ends.to))?;
        count.add(n);
    }
}
