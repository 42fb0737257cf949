//! One OpenSSL connection over any transport: the handshake (through
//! tokio-openssl) and what it settled.

use std::pin::Pin;
use std::sync::Arc;

use openssl::ssl::{Ssl, SslRef};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_openssl::SslStream;

use super::errors::{self, Verdict};
use super::{build, ffi, ClientSide, ServerSide};
use crate::error::Error;
use crate::kx::KeyExchange;
use crate::pki::Identity;
use crate::tunnel::TunnelInfo;

/// An established OpenSSL session and what only the handshake could tell.
pub(crate) struct Session<IO> {
    pub(crate) stream: SslStream<IO>,
    hello_retry: bool,
}

/// Runs a server handshake over `io` (the caller bounds it in time).
pub(crate) async fn accept<IO>(side: &ServerSide, io: IO, peer: &str) -> Result<Session<IO>, Error>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let (ssl, verdict) = side.connection()?;
    let mut stream = start(ssl, io)?;
    let result = Pin::new(&mut stream.stream).accept().await;
    finish(
        stream,
        result,
        &verdict,
        peer,
        |_| None,
        |ssl| side.hellos(ssl) > 1,
    )
}

/// Runs a client handshake over `io` to `host` (the caller bounds it in time).
pub(crate) async fn connect<IO>(
    side: &ClientSide,
    host: &str,
    io: IO,
    peer: &str,
) -> Result<Session<IO>, Error>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let (ssl, verdict) = side.connection(host)?;
    let mut stream = start(ssl, io)?;
    let result = Pin::new(&mut stream.stream).connect().await;
    let first = side.first_group();
    finish(
        stream,
        result,
        &verdict,
        peer,
        |ssl| side.server_name(ssl),
        |ssl| group_of(ssl).is_some_and(|agreed| agreed != first),
    )
}

/// The session before its handshake. The Tunnel boxes the whole handshake
/// future and then the finished Backend, so the session needs no box of
/// its own.
fn start<IO>(ssl: Ssl, io: IO) -> Result<Session<IO>, Error>
where
    IO: AsyncRead + AsyncWrite,
{
    Ok(Session {
        stream: SslStream::new(ssl, io).map_err(build("connection"))?,
        hello_retry: false,
    })
}

/// The session, or the failure in the core's terms; `server_name` is the
/// name a client checked (for the message of a name mismatch).
fn finish<IO>(
    mut session: Session<IO>,
    result: Result<(), openssl::ssl::Error>,
    verdict: &Arc<Verdict>,
    peer: &str,
    server_name: impl Fn(&SslRef) -> Option<&str>,
    hello_retry: impl Fn(&SslRef) -> bool,
) -> Result<Session<IO>, Error> {
    match result {
        Ok(()) => {
            session.hello_retry = hello_retry(session.stream.ssl());
            Ok(session)
        }
        Err(err) => {
            let ssl = session.stream.ssl();
            Err(Error::from_openssl(
                peer,
                "handshake",
                errors::map(err, Some(ssl), Some(verdict), server_name(ssl)),
            ))
        }
    }
}

fn group_of(ssl: &SslRef) -> Option<KeyExchange> {
    ffi::negotiated_group(ssl).and_then(|name| name.parse().ok())
}

impl<IO> Session<IO> {
    /// What the handshake settled, in the same terms as rustls' sessions.
    pub(crate) fn info(&self) -> TunnelInfo {
        let ssl = self.stream.ssl();
        TunnelInfo {
            protocol: ssl.version_str().to_string(),
            cipher_suite: ssl
                .current_cipher()
                .and_then(|c| c.standard_name())
                .unwrap_or("unknown")
                .to_string(),
            key_exchange: group_of(ssl),
            peer_identity: ssl
                .peer_certificate()
                .and_then(|cert| cert.to_der().ok())
                .and_then(|der| Identity::from_der(&der).ok()),
            alpn: ssl
                .selected_alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            resumed: ssl.session_reused(),
            hello_retry: self.hello_retry,
        }
    }

    pub(crate) fn resumed(&self) -> bool {
        self.stream.ssl().session_reused()
    }
}
