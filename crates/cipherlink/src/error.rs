//! Errors, from general to precise: what failed, then why.
//!
//! Configuration mistakes are found when a [`crate::Context`] is built and
//! name the field, the file and the fix. Handshake failures name the peer and
//! carry the TLS reason, rendered for people by [`explain_tls`].

use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::chain_errors::{CertificateVersion2, WeakCertificate};

use crate::compliance::PolicyViolation;
use crate::kx::UnknownGroup;

/// Everything that can go wrong in the core library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is invalid or inconsistent.
    #[error("configuration `{field}`: {reason}")]
    Config {
        /// The field at fault, as named in the TOML file and the flags.
        field: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A file named by the configuration could not be read.
    #[error("configuration `{field}`: cannot read {}: {error}", path.display())]
    File {
        /// The field that named the file.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// Why (part of the message, so not repeated as a cause).
        error: io::Error,
    },
    /// A file could not be written or opened for writing (certificates,
    /// keys, the key log); the message names the file.
    #[error("writing {0}")]
    Write(#[from] cipherlink_files::FileError),
    /// A file the configuration names could not be opened for writing.
    #[error("configuration `{field}`")]
    OutputFile {
        /// The field that named the file.
        field: &'static str,
        /// Why, naming the file.
        #[source]
        source: cipherlink_files::FileError,
    },
    /// The TOML configuration does not parse.
    #[error("configuration file {}: {error}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message (has line and column).
        error: Box<toml::de::Error>,
    },
    /// The TOML configuration sets a field at the top level that now lives
    /// in a table (the options that weaken verification moved to `[dangerous]`).
    #[error("configuration file {}: `{old}` moved to {new}", path.display())]
    Moved {
        /// The file.
        path: PathBuf,
        /// The old top-level field.
        old: &'static str,
        /// Where it is now.
        new: String,
    },
    /// A key-exchange group name is unknown.
    #[error("configuration `key_exchange`: {0}")]
    UnknownGroup(#[from] UnknownGroup),
    /// The key-exchange list breaks the compliance policy.
    #[error("configuration `key_exchange`: {0}")]
    Policy(#[from] PolicyViolation),
    /// The TLS library refused the assembled configuration.
    #[error("building the TLS configuration: {0}")]
    Build(#[source] rustls::Error),
    /// The TLS implementation could not set up what the configuration asks
    /// (a library failure rather than a configuration mistake).
    #[error("setting up {implementation} ({what})")]
    Implementation {
        /// `rustls` or `openssl`.
        implementation: &'static str,
        /// What was being set up.
        what: &'static str,
        /// The library's account.
        #[source]
        detail: Box<ImplementationDetail>,
    },
    /// TLS with a peer failed (in the handshake, or an alert after it).
    #[error("TLS with {peer} failed: {}", explain_tls(error))]
    Handshake {
        /// Who we were talking to.
        peer: String,
        /// The reason, in the core's kinds (rustls' error type, for either
        /// implementation), explained in the message.
        error: rustls::Error,
        /// The implementation's own account, when it has one beyond
        /// `error` (OpenSSL's error queue and certificate verdict).
        #[source]
        detail: Option<Box<ImplementationDetail>>,
    },
    /// The peer did not finish the handshake in time.
    #[error("TLS handshake with {peer} timed out after {after:?} (configuration `handshake_timeout_ms`)")]
    HandshakeTimeout {
        /// Who we were talking to.
        peer: String,
        /// The configured limit.
        after: Duration,
    },
    /// Reading or writing the transport failed.
    #[error("I/O with {peer} during {during}: {error}")]
    Io {
        /// Who we were talking to.
        peer: String,
        /// What we were doing.
        during: &'static str,
        /// The OS reason.
        error: io::Error,
    },
    /// A tunnel operation was called in a state that does not allow it.
    #[error("cannot {op}: tunnel is {state}")]
    State {
        /// The operation.
        op: &'static str,
        /// The state it was in.
        state: crate::tunnel::TunnelState,
    },
    /// Certificate generation failed.
    #[error("generating certificates: {0}")]
    CertGen(#[from] rcgen::Error),
}

/// A TLS implementation's own words for a failure, kept in the error chain
/// below the core's explanation (OpenSSL's error queue, for example
/// `error:0A000086:SSL routines::certificate verify failed`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{implementation}: {message}")]
pub struct ImplementationDetail {
    /// `openssl` or `rustls`.
    pub implementation: &'static str,
    /// The library's text.
    pub message: String,
}

impl ImplementationDetail {
    #[cfg(feature = "openssl")]
    pub(crate) fn openssl(message: String) -> Box<ImplementationDetail> {
        Box::new(ImplementationDetail {
            implementation: "openssl",
            message,
        })
    }
}

impl Error {
    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Error {
        Error::Config {
            field,
            reason: reason.into(),
        }
    }

    /// Splits a transport error into a TLS failure (when the TLS library put
    /// one inside) or plain I/O.
    pub(crate) fn from_io(peer: &str, during: &'static str, err: io::Error) -> Error {
        #[cfg(feature = "openssl")]
        let err = match crate::openssl_tls::errors::from_io(err) {
            Ok(failure) => return Error::from_openssl(peer, during, failure),
            Err(err) => err,
        };
        match tls_error_in(&err) {
            Some(tls) => Error::Handshake {
                peer: peer.to_string(),
                error: tls.clone(),
                detail: None,
            },
            None => Error::Io {
                peer: peer.to_string(),
                during,
                error: err,
            },
        }
    }

    #[cfg(feature = "openssl")]
    pub(crate) fn from_openssl(
        peer: &str,
        during: &'static str,
        failure: crate::openssl_tls::errors::Failure,
    ) -> Error {
        use crate::openssl_tls::errors::Failure;
        match failure {
            Failure::Tls(error, detail) => Error::Handshake {
                peer: peer.to_string(),
                error,
                detail: Some(detail),
            },
            Failure::Io(error) => Error::Io {
                peer: peer.to_string(),
                during,
                error,
            },
        }
    }

    /// The TLS reason, when this is a handshake failure.
    pub fn tls_error(&self) -> Option<&rustls::Error> {
        match self {
            Error::Handshake { error, .. } | Error::Build(error) => Some(error),
            _ => None,
        }
    }
}

/// The TLS failure inside a transport error, when the TLS library (through
/// tokio-rustls) put one there: an alert that arrives on a read or write
/// after the handshake, e.g. a refused client certificate in TLS 1.3.
pub fn tls_error_in(err: &io::Error) -> Option<&rustls::Error> {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// Renders a TLS error for a person: certificate times as calendar dates,
/// alerts with what usually causes them.
pub fn explain_tls(err: &rustls::Error) -> String {
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error as E};
    match err {
        E::InvalidCertificate(Cert::ExpiredContext { time, not_after }) => format!(
            "peer certificate expired: not valid after {}, now is {}",
            unix_to_utc(not_after.as_secs()),
            unix_to_utc(time.as_secs())
        ),
        E::InvalidCertificate(Cert::NotValidYetContext { time, not_before }) => format!(
            "peer certificate not valid yet: not valid before {}, now is {}",
            unix_to_utc(not_before.as_secs()),
            unix_to_utc(time.as_secs())
        ),
        // webpki's UnsupportedCertVersion, which rustls passes on as Other.
        E::InvalidCertificate(Cert::Other(other))
            if matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::UnsupportedCertVersion)
            ) =>
        {
            "peer certificate is X.509 v1 (`openssl x509 -req` without extensions), which \
             rustls does not accept: set `dangerous.accept_legacy_certificates` to accept it as OpenSSL \
             does, or reissue it as v3 (`cipherlink certs`)"
                .to_string()
        }
        // Ours (a v2 certificate, a weak key, a name outside the
        // constraints, the legacy path's and the allow-list's refusals)
        // and webpki's other kinds: their own words, not rustls' Debug.
        E::InvalidCertificate(Cert::Other(other)) => {
            format!("invalid peer certificate: {}", other.0)
        }
        E::InvalidCertificate(Cert::UnknownIssuer) => {
            "peer certificate is not signed by a trusted CA (check `trusted_cas`)".to_string()
        }
        E::InvalidCertificate(Cert::BadSignature) => {
            "peer certificate's signature does not verify against the trusted CA of the same name: \
             `trusted_cas` holds a different CA that happens to share its name"
                .to_string()
        }
        E::InvalidCertificate(Cert::NotValidForNameContext {
            expected,
            presented,
        }) => format!(
            "peer certificate is not valid for server name {expected:?}; it names {}. \
             Set `server_name` to one of those, or reissue the certificate",
            if presented.is_empty() {
                "nothing in subjectAltName (a CN-only certificate: see `dangerous.accept_cn_only_certificates`)".to_string()
            } else {
                presented.join(", ")
            }
        ),
        E::AlertReceived(Alert::CertificateRequired) => {
            "the server requires a client certificate (set `certificate` and `private_key`)"
                .to_string()
        }
        E::AlertReceived(Alert::UnknownCA) => {
            "the peer does not trust our certificate's CA (alert unknown_ca)".to_string()
        }
        E::AlertReceived(Alert::HandshakeFailure) => {
            "the peer found nothing in common with our offer (alert handshake_failure): \
             compare key-exchange groups, cipher suites and TLS versions"
                .to_string()
        }
        E::PeerIncompatible(why) => format!(
            "the peer's offer is incompatible with ours ({why:?}): compare key-exchange groups \
             (`key_exchange`), cipher suites and TLS versions"
        ),
        E::NoCertificatesPresented => {
            "the client presented no certificate but one is required (`require_client_cert`)"
                .to_string()
        }
        E::InvalidMessage(why) => {
            format!("the peer sent something that is not TLS, or corrupt TLS ({why:?})")
        }
        other => other.to_string(),
    }
}

/// Formats seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn unix_to_utc(secs: u64) -> String {
    let Ok(secs) = i64::try_from(secs) else {
        return format!("{secs} s after 1970");
    };
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{secs} s after 1970"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_calendar_dates() {
        assert_eq!(unix_to_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(unix_to_utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn tls_errors_survive_io_wrapping() {
        let io = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::NoCertificatesPresented,
        );
        let err = Error::from_io("127.0.0.1:1", "handshake", io);
        assert!(matches!(
            err.tls_error(),
            Some(rustls::Error::NoCertificatesPresented)
        ));
        assert!(err.to_string().contains("127.0.0.1:1"));
    }

    #[test]
    fn a_v1_certificate_is_explained_by_webpkis_variant() {
        let other = |e: webpki::Error| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                std::sync::Arc::new(e),
            )))
        };
        let v1 = explain_tls(&other(webpki::Error::UnsupportedCertVersion));
        assert!(v1.contains("X.509 v1"), "{v1}");
        let else_ = explain_tls(&other(webpki::Error::UnsupportedCriticalExtension));
        assert!(!else_.contains("X.509 v1"), "{else_}");
    }
}
