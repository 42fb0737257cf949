//! The `typhoon` transport of a UDP service: SeasideVPN's TYPHOON over UDP
//! (docs/typhoon-wire.md, the `cipherlink-typhoon` driver) with the port
//! transport's files: a server key and token store on the server end, a
//! connection file (`link invite --wire typhoon`) on the client end. A
//! server end re-reads its token store (every 2 s, as a port server) and
//! ends the sessions of a revoked token.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cipherlink_link::TokenStore;
use cipherlink_port::{ConnectionFile, PublicKey, ServerKey};
use cipherlink_typhoon::driver::{self, TyphoonListener};
use cipherlink_typhoon::TyphoonSettings;
use tokio::sync::watch;
use zeroize::Zeroizing;

use super::transport::{Accepted, Reader, Session, TransportError, Writer};
use crate::config::PortConfig;
use crate::port::{admit, PortTokens};

/// A client end's way to its server end: the connection file's key and
/// token.
pub(crate) struct TyphoonConnector {
    pub(crate) name: String,
    server_key: PublicKey,
    token: Zeroizing<Vec<u8>>,
    settings: TyphoonSettings,
    /// The limit of one attempt: the connect timeout, plus the longest
    /// wait for the server INIT the settings allow.
    limit: Duration,
}

impl std::fmt::Debug for TyphoonConnector {
    // Never the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TyphoonConnector")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What a server end needs before it listens.
pub(crate) struct TyphoonServerFiles {
    key: ServerKey,
    tokens: Arc<PortTokens>,
    settings: TyphoonSettings,
}

/// A server end's listener, with its token store.
#[derive(Debug)]
pub(crate) struct TyphoonServer {
    listener: TyphoonListener,
    tokens: Arc<PortTokens>,
}

/// Resolves when a re-read store no longer admits a session's token.
pub(crate) struct Revoke {
    store: watch::Receiver<Arc<TokenStore>>,
    token: Zeroizing<Vec<u8>>,
    name: String,
}

fn settings() -> Result<TyphoonSettings, (&'static str, String)> {
    // The same TYPHOON_* names and defaults as SeasideVPN and `link serve
    // --wire typhoon` (docs/typhoon-wire.md §3).
    TyphoonSettings::from_env(|k| std::env::var(k).ok())
        .map_err(|e| ("port", format!("TYPHOON_* environment: {e}")))
}

fn read(path: &Path, max: usize) -> Result<Zeroizing<String>, String> {
    cipherlink_files::read_secret_text(path, max as u64).map_err(|e| e.to_string())
}

/// The server end's files; errors name the field and the file.
pub(crate) fn server_files(
    config: &PortConfig,
) -> Result<TyphoonServerFiles, (&'static str, String)> {
    if config.connection_file.is_some() {
        return Err((
            "port.connection_file",
            "is for a client; a typhoon server needs `server_key` and `token_store`".into(),
        ));
    }
    let Some(key_path) = &config.server_key else {
        return Err((
            "port.server_key",
            "is missing (make it with `cipherlink link keygen --wire typhoon --key FILE`)".into(),
        ));
    };
    let Some(tokens_path) = &config.token_store else {
        return Err((
            "port.token_store",
            "is missing (`cipherlink link invite --wire typhoon --tokens FILE` writes it)".into(),
        ));
    };
    let field = "port.server_key";
    let text = read(key_path, cipherlink_port::keys::MAX_KEY_FILE).map_err(|e| (field, e))?;
    let key =
        ServerKey::parse(&text).map_err(|e| (field, format!("{}: {e}", key_path.display())))?;
    let tokens = PortTokens::open(tokens_path).map_err(|e| ("port.token_store", e.to_string()))?;
    Ok(TyphoonServerFiles {
        key,
        tokens: Arc::new(tokens),
        settings: settings()?,
    })
}

/// The client end's connector and its connection file's server.
pub(crate) fn client(
    config: &PortConfig,
    connect_timeout: Duration,
) -> Result<(TyphoonConnector, String), (&'static str, String)> {
    for (set, field) in [
        (config.server_key.is_some(), "port.server_key"),
        (config.token_store.is_some(), "port.token_store"),
    ] {
        if set {
            return Err((
                field,
                "is for a server; a typhoon client needs `connection_file`".into(),
            ));
        }
    }
    let field = "port.connection_file";
    let Some(path) = &config.connection_file else {
        return Err((
            field,
            "is missing (`cipherlink link invite --wire typhoon` issues one per client)".into(),
        ));
    };
    let max = cipherlink_port::keys::MAX_KEY_FILE + 2 * cipherlink_port::wire::MAX_TOKEN;
    let text = read(path, max).map_err(|e| (field, e))?;
    let file =
        ConnectionFile::parse(&text).map_err(|e| (field, format!("{}: {e}", path.display())))?;
    let settings = settings()?;
    let limit = connect_timeout + Duration::from_millis(settings.initial_range().1);
    Ok((
        TyphoonConnector {
            name: file.name,
            server_key: file.server_key,
            token: file.token,
            settings,
            limit,
        },
        file.server,
    ))
}

impl TyphoonConnector {
    pub(crate) async fn connect(&self, target: &str) -> Result<Session, TransportError> {
        let attempt = driver::connect(target, &self.server_key, &self.token, &self.settings);
        let session = match tokio::time::timeout(self.limit, attempt).await {
            Ok(session) => session?,
            // A wrong server key or a refused token looks like this: a
            // TYPHOON server answers nothing.
            Err(_) => {
                return Err(TransportError::Timeout(
                    self.limit,
                    " plus TYPHOON's INIT delay; a server key other than the connection \
                     file's, or a token the server refuses, gets no answer",
                ))
            }
        };
        Ok(Session {
            reader: Reader::Typhoon(session.reader),
            writer: Writer::Typhoon(session.writer),
        })
    }
}

impl TyphoonServerFiles {
    /// Listens on `addr` (UDP).
    pub(crate) async fn bind(self, addr: &str) -> Result<TyphoonServer, cipherlink_typhoon::Error> {
        let listener =
            TyphoonListener::bind(addr, self.key, self.tokens.admit_fn(), self.settings).await?;
        Ok(TyphoonServer {
            listener,
            tokens: self.tokens,
        })
    }

    pub(crate) fn tokens(&self) -> Arc<PortTokens> {
        self.tokens.clone()
    }
}

impl TyphoonServer {
    pub(crate) async fn accept(&mut self) -> Option<Accepted> {
        let a = self.listener.accept().await?;
        Some(Accepted {
            session: Session {
                reader: Reader::Typhoon(a.session.reader),
                writer: Writer::Typhoon(a.session.writer),
            },
            name: a.name.clone(),
            peer: a.peer,
            revoke: Some(Revoke {
                store: self.tokens.watch(),
                token: a.token,
                name: a.name,
            }),
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }
}

impl Revoke {
    /// Resolves when the store in force does not admit the token: at once
    /// if it was revoked between its INIT and now.
    pub(crate) async fn revoked(&mut self) -> TransportError {
        if admit(&self.store.borrow_and_update(), &self.token).is_none() {
            return TransportError::Revoked(self.name.clone());
        }
        loop {
            if self.store.changed().await.is_err() {
                // The store went with its service: nothing revokes now.
                return std::future::pending().await;
            }
            if admit(&self.store.borrow_and_update(), &self.token).is_none() {
                return TransportError::Revoked(self.name.clone());
            }
        }
    }
}
