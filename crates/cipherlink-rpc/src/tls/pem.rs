//! Reading certificates and keys from PEM files, with errors that name the file.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::RpcError;

/// Reads every certificate in a PEM file (a chain or a CA bundle).
pub fn certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, RpcError> {
    // Read first so a missing file is reported as such, not as a PEM error.
    let bytes = std::fs::read(path).map_err(|source| RpcError::ReadPem {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RpcError::BadPem {
            what,
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(RpcError::EmptyPem {
            what,
            path: path.to_path_buf(),
            expected: "-----BEGIN CERTIFICATE-----",
        });
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 RSA or SEC1 EC) in a PEM file.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, RpcError> {
    let what = "private key";
    let bytes = std::fs::read(path).map_err(|source| RpcError::ReadPem {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => RpcError::EmptyPem {
            what,
            path: path.to_path_buf(),
            expected: "-----BEGIN PRIVATE KEY-----",
        },
        other => RpcError::BadPem {
            what,
            path: path.to_path_buf(),
            detail: other.to_string(),
        },
    })
}
