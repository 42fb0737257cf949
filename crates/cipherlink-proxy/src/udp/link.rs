//! The `link` transport of a UDP service: the link protocol's datagram
//! mode (docs/link-protocol.md §11, `cipherlink_link::dgram`) with the link
//! transport's files: a server key and token store on the server end, a
//! connection file on the client end. Keepalive from the `TYPHOON_*`
//! names, as `link serve|connect --udp`. The server end re-reads its token
//! store every 2 s; the link's own sweep ends a revoked token's sessions
//! (their readers then fail with the reason).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cipherlink_link::dgram::driver::{self, DgramListener};
use cipherlink_link::dgram::DgramServerOptions;
use cipherlink_link::{ClientConfig, LinkParams, ServerEndpoint};

use super::transport::{Accepted, Reader, Session, TransportError, Writer};
use crate::config::{LinkConfig, Role};
use crate::link::LinkEngine;

/// A client end's way to its server end.
pub(crate) struct LinkUdpConnector {
    config: ClientConfig,
}

impl std::fmt::Debug for LinkUdpConnector {
    // Never the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkUdpConnector")
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

/// A server end's endpoint and where its token store is.
pub(crate) struct LinkUdpFiles {
    endpoint: Arc<ServerEndpoint>,
    token_store: PathBuf,
}

/// A server end's listener.
#[derive(Debug)]
pub(crate) struct LinkUdpServer {
    listener: DgramListener,
}

fn params() -> Result<LinkParams, (&'static str, String)> {
    LinkParams::from_typhoon_env(|k| std::env::var(k).ok())
        .map_err(|e| ("link", format!("TYPHOON_* environment: {e}")))
}

/// The client end's connector and its connection file's server; the
/// handshake may take `connect_timeout`.
pub(crate) fn client(
    config: &LinkConfig,
    connect_timeout: Duration,
) -> Result<(LinkUdpConnector, Option<String>), (&'static str, String)> {
    match crate::link::engine_with(Role::Client, config, params()?)? {
        (LinkEngine::Client(mut c), server) => {
            c.params.handshake_timeout = connect_timeout;
            Ok((LinkUdpConnector { config: *c }, server))
        }
        (LinkEngine::Server { .. }, _) => Err(("link", "a client end built a server".into())),
    }
}

/// The server end's key, token store and replay store.
pub(crate) fn server_files(config: &LinkConfig) -> Result<LinkUdpFiles, (&'static str, String)> {
    match crate::link::engine_with(Role::Server, config, params()?)? {
        (
            LinkEngine::Server {
                endpoint,
                token_store,
            },
            _,
        ) => Ok(LinkUdpFiles {
            endpoint,
            token_store,
        }),
        (LinkEngine::Client(_), _) => Err(("link", "a server end built a client".into())),
    }
}

impl LinkUdpConnector {
    pub(crate) async fn connect(&self, target: &str) -> Result<Session, TransportError> {
        // The driver gives up after the handshake timeout (the connect
        // timeout) by itself: a wrong server key gets no answer.
        let session = driver::connect(target, self.config.clone()).await?;
        Ok(Session {
            reader: Reader::Link(session.reader),
            writer: Writer::Link(session.writer),
        })
    }
}

impl LinkUdpFiles {
    /// Listens on `addr` (UDP), holding at most `max_sessions`.
    pub(crate) async fn bind(
        &self,
        addr: &str,
        max_sessions: usize,
    ) -> Result<LinkUdpServer, cipherlink_link::Error> {
        let options = DgramServerOptions {
            max_sessions,
            ..DgramServerOptions::default()
        };
        let listener = DgramListener::bind(addr, Arc::clone(&self.endpoint), options).await?;
        Ok(LinkUdpServer { listener })
    }

    /// What the token store's reloader needs.
    pub(crate) fn reload(&self) -> (Arc<ServerEndpoint>, PathBuf) {
        (Arc::clone(&self.endpoint), self.token_store.clone())
    }
}

impl std::fmt::Debug for LinkUdpFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkUdpFiles")
            .field("token_store", &self.token_store)
            .finish_non_exhaustive()
    }
}

impl LinkUdpServer {
    pub(crate) async fn accept(&mut self) -> Option<Accepted> {
        let a = self.listener.accept().await?;
        Some(Accepted {
            session: Session {
                reader: Reader::Link(a.session.reader),
                writer: Writer::Link(a.session.writer),
            },
            name: a.name,
            peer: a.peer,
            revoke: None,
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }
}
