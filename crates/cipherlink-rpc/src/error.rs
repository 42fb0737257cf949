//! Typed errors of the RPC lab. Each names the file, address or setting at
//! fault and, where one exists, the fix.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can go wrong while configuring or running the lab.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// Our own certificate is X.509 v1 and acceptance is off.
    #[error(transparent)]
    Legacy(#[from] crate::tls::LegacyCertificate),
    /// The core library refused the TLS configuration; `field` is the field
    /// of [`crate::tls::ServerTls`] / [`crate::tls::ClientTls`] behind the
    /// core field it names.
    #[error("TLS setting `{field}`: {error}")]
    Context {
        /// The field at fault.
        field: &'static str,
        /// The core library's error (names the field, the file and the fix);
        /// part of the message, so not repeated as a cause.
        error: cipherlink::Error,
    },
    /// The name the client should check in the server certificate is invalid.
    #[error("invalid TLS server name {name:?}: {detail}")]
    ServerName {
        /// The name given.
        name: String,
        /// Why it is invalid.
        detail: String,
    },
    /// Binding the listening socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Resolving the server's host name failed or gave no address.
    #[error("cannot resolve {host}:{port}: {detail}")]
    Resolve {
        /// Host name.
        host: String,
        /// Port.
        port: u16,
        /// Why.
        detail: String,
    },
    /// The gRPC channel could not be set up (TCP, TLS or HTTP/2).
    #[error("cannot open a gRPC channel to {target}: {detail}")]
    Connect {
        /// host:port.
        target: String,
        /// The full cause chain, innermost last.
        detail: String,
    },
    /// The gRPC server stopped with an error.
    #[error("gRPC server failed: {0}")]
    Serve(String),
    /// A load setting is out of range.
    #[error("invalid setting `{field}`: {detail}")]
    Setting {
        /// The options field at fault (`rate`, `duration`, ...).
        field: &'static str,
        /// What would be valid.
        detail: String,
    },
    /// Reading or writing a results file failed.
    #[error("{path}: {source}")]
    ResultsIo {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A results file line is not in either format.
    #[error("{path}:{line}: {detail}")]
    ResultsFormat {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        detail: String,
    },
    /// Drawing a plot failed.
    #[error("cannot draw {path}: {detail}")]
    Plot {
        /// The output file.
        path: PathBuf,
        /// The backend's reason.
        detail: String,
    },
}

/// Joins an error and all its sources into one line, so a TLS failure deep in
/// the connector ("invalid peer certificate: UnknownIssuer") reaches the user.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let s = readable(e).unwrap_or_else(|| e.to_string());
        if !out.contains(&s) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

/// rustls prints errors it carries for a verifier with `Debug`; find ours
/// (inside an `io::Error` from tokio-rustls) and use its `Display` instead.
fn readable(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let tls = match e.downcast_ref::<std::io::Error>() {
        Some(io) => cipherlink::error::tls_error_in(io)?,
        None => e.downcast_ref::<rustls::Error>()?,
    };
    match tls {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            let inner: &(dyn std::error::Error + 'static) = &*other.0;
            Some(format!("invalid peer certificate: {inner}"))
        }
        rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. },
        ) => Some(format!(
            "{tls}. If the certificate names the host only in its subject CN (no \
             subjectAltName, as the original suite's openssl commands make), set `{}` to \
             accept it as gRPC's own TLS stack does, or make new certificates with \
             `cipherlink certs`",
            crate::tls::CN_ONLY_FIELD
        )),
        _ => None,
    }
}
