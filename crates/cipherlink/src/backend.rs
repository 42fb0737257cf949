//! The TLS session inside a [`crate::Tunnel`], on rustls or on OpenSSL. The
//! Tunnel's public type names neither: this enum is private, and each arm
//! forwards the same few operations.

use std::io;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use rustls::HandshakeKind;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::credentials::Identity;
use crate::handshake_checks::{self, Settled};
use crate::kx::KeyExchange;
use crate::lean_stream::{LeanClient, LeanServer};
use crate::tunnel::TunnelInfo;

// The rustls arm is over a kilobyte and OpenSSL's a few pointers, but the
// Tunnel boxes the whole Backend (`Stage::Ready`): boxing an arm again would
// only add an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Backend<IO> {
    /// A rustls client on the unbuffered API: no buffer while idle.
    LeanClient(LeanClient<IO>),
    /// A rustls server on the unbuffered API: no buffer while idle.
    LeanServer(LeanServer<IO>),
    #[cfg(feature = "openssl")]
    Openssl(crate::openssl_tls::stream::Session<IO>),
}

impl<IO> Backend<IO> {
    pub(crate) fn transport(&self) -> &IO {
        match self {
            Backend::LeanClient(stream) => stream.get_ref(),
            Backend::LeanServer(stream) => stream.get_ref(),
            #[cfg(feature = "openssl")]
            Backend::Openssl(session) => session.stream.get_ref().get_ref(),
        }
    }

    pub(crate) fn resumed(&self) -> bool {
        match self {
            Backend::LeanClient(stream) => {
                stream.connection().handshake_kind() == Some(HandshakeKind::Resumed)
            }
            Backend::LeanServer(stream) => {
                stream.connection().handshake_kind() == Some(HandshakeKind::Resumed)
            }
            #[cfg(feature = "openssl")]
            Backend::Openssl(session) => session.resumed(),
        }
    }

    /// Refuses a finished handshake for what it settled (see
    /// `handshake_checks`), under `policy`, the configured groups.
    pub(crate) fn check_settled(&self, policy: &[KeyExchange]) -> Result<(), rustls::Error> {
        let now = rustls::pki_types::UnixTime::now();
        match self {
            Backend::LeanClient(stream) => check_rustls(stream.connection(), policy, now),
            Backend::LeanServer(stream) => check_rustls(stream.connection(), policy, now),
            #[cfg(feature = "openssl")]
            Backend::Openssl(session) => {
                let certs = session.peer_certificates();
                handshake_checks::check(&session.settled(&certs), policy, now)
            }
        }
    }

    pub(crate) fn info(&self) -> TunnelInfo {
        match self {
            Backend::LeanClient(stream) => rustls_info(stream.connection()),
            Backend::LeanServer(stream) => rustls_info(stream.connection()),
            #[cfg(feature = "openssl")]
            Backend::Openssl(session) => session.info(),
        }
    }
}

fn check_rustls(
    conn: &rustls::CommonState,
    policy: &[KeyExchange],
    now: rustls::pki_types::UnixTime,
) -> Result<(), rustls::Error> {
    let group = conn
        .negotiated_key_exchange_group()
        .and_then(|g| KeyExchange::from_code_point(u16::from(g.name())));
    let settled = Settled {
        tls13: conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3),
        resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
        group,
        // rustls offers and accepts only psk_dhe_ke: a group means an
        // exchange ran in this handshake.
        fresh_key_exchange: conn.negotiated_key_exchange_group().is_some(),
        peer_certificates: conn
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|c| c.as_ref())
            .collect(),
        // rustls' session stores date their sessions themselves.
        chain_until: None,
    };
    handshake_checks::check(&settled, policy, now)
}

fn rustls_info(conn: &rustls::CommonState) -> TunnelInfo {
    TunnelInfo {
        protocol: conn
            .protocol_version()
            .map(|v| match v {
                rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
                rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default(),
        cipher_suite: conn
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .map_or_else(|| "unknown".to_string(), iana_suite_name),
        key_exchange: conn
            .negotiated_key_exchange_group()
            .and_then(|g| KeyExchange::from_code_point(u16::from(g.name()))),
        peer_identity: conn
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|leaf| Identity::from_der(leaf).ok()),
        alpn: conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
        hello_retry: conn.handshake_kind() == Some(HandshakeKind::FullWithHelloRetryRequest),
    }
}

/// rustls names TLS 1.3 suites `TLS13_...`; the IANA registry (and
/// OpenSSL) says `TLS_...`, which is what a Tunnel reports on either.
pub(crate) fn iana_suite_name(rustls_name: &str) -> String {
    match rustls_name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => rustls_name.to_string(),
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Backend<IO> {
    /// What has arrived, at most `max` bytes, in a buffer made for it: the
    /// caller holds no buffer while it waits (see `Tunnel::read_chunk`).
    pub(crate) fn poll_read_chunk(
        &mut self,
        cx: &mut TaskContext<'_>,
        max: usize,
    ) -> Poll<io::Result<Vec<u8>>> {
        let max = max.max(1);
        match self {
            Backend::LeanClient(stream) => stream.poll_read_chunk(cx, max),
            Backend::LeanServer(stream) => stream.poll_read_chunk(cx, max),
            #[cfg(feature = "openssl")]
            Backend::Openssl(session) => {
                // On the stack only while polled; OpenSSL keeps the rest
                // of a record for the next call.
                // Uninitialised: zeroing 16 KiB on every poll would cost
                // more than the read.
                let mut scratch = [std::mem::MaybeUninit::<u8>::uninit(); 16 * 1024];
                let len = max.min(scratch.len());
                let mut buf = ReadBuf::uninit(&mut scratch[..len]);
                match session.poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().to_vec())),
                    Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Backend<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Backend::LeanClient(stream) => Pin::new(stream).poll_read(cx, buf),
            Backend::LeanServer(stream) => Pin::new(stream).poll_read(cx, buf),
            #[cfg(feature = "openssl")]
            Backend::Openssl(session) => session.poll_read(cx, buf),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Backend<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Backend::LeanClient(stream) => Pin::new(stream).poll_write(cx, buf),
            Backend::LeanServer(stream) => Pin::new(stream).poll_write(cx, buf),
            #[cfg(feature = "openssl")]
            Backend::Openssl(session) => Pin::new(&mut session.stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Backend::LeanClient(stream) => Pin::new(stream).poll_flush(cx),
            Backend::LeanServer(stream) => Pin::new(stream).poll_flush(cx),
            #[cfg(feature = "openssl")]
            // OpenSSL buffers nothing itself: the transport's flush, for
            // real (its own flushes may be deferred, see `Transport`).
            Backend::Openssl(session) => session.stream.get_mut().poll_flush_now(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Backend::LeanClient(stream) => Pin::new(stream).poll_shutdown(cx),
            Backend::LeanServer(stream) => Pin::new(stream).poll_shutdown(cx),
            #[cfg(feature = "openssl")]
            Backend::Openssl(session) => Pin::new(&mut session.stream).poll_shutdown(cx),
        }
    }
}
