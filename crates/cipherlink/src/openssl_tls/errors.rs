//! OpenSSL's failures, from its error queue and the certificate verdict,
//! mapped onto the core's error kinds (rustls' error type, which the rest of
//! cipherlink and its users already match on), with OpenSSL's own words kept
//! in the error chain as an [`ImplementationDetail`].
//!
//! The reason codes are OpenSSL's `SSL_R_*` numbers (`sslerr.h`), stable
//! across its releases; `openssl-sys` does not export them.

use std::io;
use std::sync::{Arc, OnceLock};

use openssl::ssl::{self, ErrorCode, SslRef};
use rustls::{AlertDescription, CertificateError, InvalidMessage, OtherError, PeerIncompatible};

use crate::error::ImplementationDetail;

const SSL_AD_REASON_OFFSET: i32 = 1000;
const NO_SUITABLE_KEY_SHARE: i32 = 101;
const CERTIFICATE_VERIFY_FAILED: i32 = 134;
const HTTP_REQUEST: i32 = 156;
const NO_PROTOCOLS_AVAILABLE: i32 = 191;
const NO_SHARED_CIPHER: i32 = 193;
const PACKET_LENGTH_TOO_LONG: i32 = 198;
const PEER_DID_NOT_RETURN_A_CERTIFICATE: i32 = 199;
const MISSING_SUPPORTED_GROUPS_EXTENSION: i32 = 209;
const NO_APPLICATION_PROTOCOL: i32 = 235;
const UNSUPPORTED_PROTOCOL: i32 = 258;
const WRONG_VERSION_NUMBER: i32 = 267;
const DECRYPTION_FAILED_OR_BAD_RECORD_MAC: i32 = 281;
const UNEXPECTED_EOF_WHILE_READING: i32 = 294;
const NO_SHARED_GROUPS: i32 = 410;

/// What our own certificate checks (the verify callback) decided, kept on
/// the connection so the failure can say why rather than "application
/// verification failure".
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    refusal: OnceLock<rustls::Error>,
    /// The first certificate OpenSSL found fault with (DER), for the dates
    /// and names the message shows: after a failed handshake OpenSSL no
    /// longer offers the peer's certificate.
    failed_cert: OnceLock<Vec<u8>>,
}

impl Verdict {
    pub(crate) fn refuse(&self, why: rustls::Error) {
        // The first reason wins: later ones follow from it.
        let _ = self.refusal.set(why);
    }

    pub(crate) fn failed(&self, der: Vec<u8>) {
        let _ = self.failed_cert.set(der);
    }

    fn reason(&self) -> Option<&rustls::Error> {
        self.refusal.get()
    }
}

/// A failure, as the core reports it.
pub(crate) enum Failure {
    /// A TLS failure, in the core's kinds, with OpenSSL's account.
    Tls(rustls::Error, Box<ImplementationDetail>),
    /// The transport failed (or the peer left mid-record).
    Io(io::Error),
}

/// Maps a failed OpenSSL operation. `ssl` (when the connection is at hand)
/// adds the certificate verdict and our own checks' reason; `server_name`
/// (a client's) lets a name mismatch list the certificate's names, as on
/// rustls.
pub(crate) fn map(
    err: ssl::Error,
    ssl: Option<&SslRef>,
    verdict: Option<&Verdict>,
    server_name: Option<&str>,
) -> Failure {
    let detail = ImplementationDetail::openssl(describe(&err, ssl));
    if let Some(why) = verdict.and_then(Verdict::reason) {
        return Failure::Tls(why.clone(), detail);
    }
    let reasons: Vec<i32> = err
        .ssl_error()
        .map(|stack| stack.errors().iter().map(|e| e.reason_code()).collect())
        .unwrap_or_default();
    if reasons.is_empty() {
        return match err.into_io_error() {
            Ok(io) => Failure::Io(io),
            Err(err)
                if err.code() == ErrorCode::ZERO_RETURN || err.code() == ErrorCode::SYSCALL =>
            {
                Failure::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection",
                ))
            }
            Err(err) => Failure::Tls(rustls::Error::General(err.to_string()), detail),
        };
    }
    let failed_cert = verdict
        .and_then(|v| v.failed_cert.get())
        .and_then(|der| crate::credentials::Identity::from_der(der).ok());
    let context = Context {
        ssl,
        server_name,
        failed_cert: failed_cert.as_ref(),
    };
    for reason in &reasons {
        if *reason == UNEXPECTED_EOF_WHILE_READING {
            return Failure::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection without close_notify",
            ));
        }
        if let Some(kind) = kind_of(*reason, &context) {
            return Failure::Tls(kind, detail);
        }
    }
    let first = err
        .ssl_error()
        .and_then(|stack| stack.errors().first())
        .and_then(|e| e.reason())
        .unwrap_or("unknown OpenSSL failure");
    Failure::Tls(rustls::Error::General(first.to_string()), detail)
}

/// What a failure's explanation may draw on.
struct Context<'a> {
    ssl: Option<&'a SslRef>,
    server_name: Option<&'a str>,
    failed_cert: Option<&'a crate::credentials::Identity>,
}

fn kind_of(reason: i32, context: &Context<'_>) -> Option<rustls::Error> {
    let alert = reason - SSL_AD_REASON_OFFSET;
    if (0..256).contains(&alert) {
        let description = u8::try_from(alert).ok()?;
        return Some(rustls::Error::AlertReceived(AlertDescription::from(
            description,
        )));
    }
    Some(match reason {
        CERTIFICATE_VERIFY_FAILED => rustls::Error::InvalidCertificate(
            context
                .ssl
                .map(|ssl| certificate_error(ssl.verify_result().as_raw(), ssl, context))
                .unwrap_or(CertificateError::ApplicationVerificationFailure),
        ),
        NO_SHARED_GROUPS | NO_SUITABLE_KEY_SHARE | MISSING_SUPPORTED_GROUPS_EXTENSION => {
            rustls::Error::PeerIncompatible(PeerIncompatible::NoKxGroupsInCommon)
        }
        NO_SHARED_CIPHER => {
            rustls::Error::PeerIncompatible(PeerIncompatible::NoCipherSuitesInCommon)
        }
        UNSUPPORTED_PROTOCOL | NO_PROTOCOLS_AVAILABLE => {
            rustls::Error::PeerIncompatible(PeerIncompatible::SupportedVersionsExtensionRequired)
        }
        PEER_DID_NOT_RETURN_A_CERTIFICATE => rustls::Error::NoCertificatesPresented,
        NO_APPLICATION_PROTOCOL => rustls::Error::NoApplicationProtocol,
        WRONG_VERSION_NUMBER | HTTP_REQUEST | PACKET_LENGTH_TOO_LONG => {
            rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType)
        }
        DECRYPTION_FAILED_OR_BAD_RECORD_MAC => rustls::Error::DecryptError,
        _ => return None,
    })
}

/// The verify result (`X509_V_ERR_*`) as the core's certificate error.
fn certificate_error(code: i32, ssl: &SslRef, context: &Context<'_>) -> CertificateError {
    use openssl_sys as c;
    match code {
        c::X509_V_ERR_CERT_HAS_EXPIRED | c::X509_V_ERR_CERT_NOT_YET_VALID => {
            validity_error(code == c::X509_V_ERR_CERT_HAS_EXPIRED, context.failed_cert)
        }
        c::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
        | c::X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
        | c::X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
        | c::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        | c::X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE => CertificateError::UnknownIssuer,
        c::X509_V_ERR_CERT_SIGNATURE_FAILURE => CertificateError::BadSignature,
        c::X509_V_ERR_HOSTNAME_MISMATCH | c::X509_V_ERR_IP_ADDRESS_MISMATCH => {
            name_mismatch(context.server_name, context.failed_cert)
        }
        c::X509_V_ERR_INVALID_PURPOSE => CertificateError::InvalidPurpose,
        _ => CertificateError::Other(OtherError(Arc::new(VerifyFailure(
            ssl.verify_result().error_string().to_string(),
        )))),
    }
}

/// An expired or not-yet-valid peer certificate, with its dates when the
/// certificate at fault is the peer's leaf, as rustls reports them.
fn validity_error(expired: bool, leaf: Option<&crate::credentials::Identity>) -> CertificateError {
    use rustls::pki_types::UnixTime;
    let now = UnixTime::now();
    let at =
        |secs: i64| UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs.max(0) as u64));
    match (leaf, expired) {
        (Some(leaf), true) if now.as_secs() > leaf.not_after.max(0) as u64 => {
            CertificateError::ExpiredContext {
                time: now,
                not_after: at(leaf.not_after),
            }
        }
        (Some(leaf), false) if now.as_secs() < leaf.not_before.max(0) as u64 => {
            CertificateError::NotValidYetContext {
                time: now,
                not_before: at(leaf.not_before),
            }
        }
        (_, true) => CertificateError::Expired,
        (_, false) => CertificateError::NotValidYet,
    }
}

/// The names the peer's certificate has, beside the one expected.
fn name_mismatch(
    server_name: Option<&str>,
    leaf: Option<&crate::credentials::Identity>,
) -> CertificateError {
    let expected =
        server_name.and_then(|name| rustls::pki_types::ServerName::try_from(name.to_string()).ok());
    let presented = leaf.map(|l| l.alt_names.clone()).unwrap_or_default();
    match expected {
        Some(expected) => CertificateError::NotValidForNameContext {
            expected,
            presented,
        },
        None => CertificateError::NotValidForName,
    }
}

/// A certificate verdict of OpenSSL's that has no counterpart in the core's kinds.
#[derive(Debug, thiserror::Error)]
#[error("OpenSSL certificate verification: {0}")]
struct VerifyFailure(String);

/// OpenSSL's own account: the error queue, and the certificate verdict when
/// there was one.
fn describe(err: &ssl::Error, ssl: Option<&SslRef>) -> String {
    let mut text = match err.ssl_error() {
        Some(stack) => stack
            .errors()
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; "),
        None => err.to_string(),
    };
    if let Some(ssl) = ssl {
        let verdict = ssl.verify_result();
        if verdict.as_raw() != openssl_sys::X509_V_OK {
            text.push_str(&format!(" (certificate: {})", verdict.error_string()));
        }
    }
    text
}

/// The OpenSSL failure inside a transport error from the tunnel's stream,
/// if there is one (tokio-openssl puts it there after the handshake).
pub(crate) fn from_io(err: io::Error) -> Result<Failure, io::Error> {
    let is_ssl = err.get_ref().is_some_and(|inner| inner.is::<ssl::Error>());
    if !is_ssl {
        return Err(err);
    }
    match err.into_inner().map(|inner| inner.downcast::<ssl::Error>()) {
        Some(Ok(ssl_err)) => Ok(map(*ssl_err, None, None, None)),
        Some(Err(other)) => Err(io::Error::other(other)),
        None => Err(io::Error::other("OpenSSL failure without detail")),
    }
}
