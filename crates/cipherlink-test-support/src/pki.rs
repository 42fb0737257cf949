//! Throwaway certificates for tests and benchmarks, as PEM in memory and as
//! files in a temporary folder (for peers that take paths: Python, openssl,
//! the `cipherlink` binary). The folder is removed when the value drops.
//!
//! Two shapes, one [`Leaf`] type:
//! - [`TestPki`]: exactly what `cipherlink certs` makes
//!   ([`cipherlink::certs::generate`]): a CA, a server leaf (`localhost`,
//!   127.0.0.1, ::1) and a client leaf, both usable as server and client,
//!   written as `ca.crt`, `ca.key`, `server.crt`, `server.key`,
//!   `client.crt`, `client.key`.
//! - [`TestCa`]: a CA that signs any number of named leaves with chosen
//!   serial numbers, under a chosen CA name. Hand-built on rcgen because
//!   `generate` makes two leaves with random serials under a fixed name,
//!   and the Pool's identity tests need a third party, pinned serials and
//!   a CA whose name does not start with CN.

use std::path::{Path, PathBuf};

use cipherlink::certs::{CertBundle, CertOptions, Pem};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// A certificate could not be made, parsed or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// `cipherlink::certs` could not make the PKI.
    #[error("test PKI: generating: {0}")]
    Generate(#[source] cipherlink::Error),
    /// A certificate just made did not parse back.
    #[error("test PKI: parsing a certificate just made: {0}")]
    Parse(#[from] rustls_pki_types::pem::Error),
    /// The temporary folder could not be made.
    #[error("test PKI: temporary folder: {0}")]
    TempDir(#[from] std::io::Error),
    /// The files could not be written.
    #[error("test PKI: writing the files: {0}")]
    Write(#[source] cipherlink::Error),
}

/// One leaf certificate, its key and its CA, as PEM and as files.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The certificate file.
    pub cert_path: PathBuf,
    /// The private key file (PKCS#8 PEM).
    pub key_path: PathBuf,
    /// The CA certificate file.
    pub ca_path: PathBuf,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The certificate, DER (what a Pool pins as a peer's identity).
    pub cert_der: CertificateDer<'static>,
}

impl Leaf {
    fn new(
        cert_path: PathBuf,
        key_path: PathBuf,
        ca_path: PathBuf,
        pem: &Pem,
        ca_pem: &str,
    ) -> Result<Leaf, PkiError> {
        let cert_der = CertificateDer::from_pem_slice(pem.cert.as_bytes())?;
        Ok(Leaf {
            cert_path,
            key_path,
            ca_path,
            cert_pem: pem.cert.clone(),
            key_pem: pem.key.clone(),
            ca_pem: ca_pem.to_string(),
            cert_der,
        })
    }
}

/// The files `cipherlink certs` writes, and [`TestPki`] with them.
pub const FILES: [&str; 6] = [
    "ca.crt",
    "ca.key",
    "server.crt",
    "server.key",
    "client.crt",
    "client.key",
];

/// `cipherlink certs`' PKI in a temporary folder: see the module docs.
#[derive(Debug)]
pub struct TestPki {
    dir: tempfile::TempDir,
    /// The certificates and keys, PEM.
    pub bundle: CertBundle,
    /// The server leaf (`server.crt`, `server.key`).
    pub server: Leaf,
    /// The client leaf (`client.crt`, `client.key`).
    pub client: Leaf,
}

impl TestPki {
    /// The default options (ECDSA P-256, client named `client`).
    pub fn new() -> Result<TestPki, PkiError> {
        TestPki::with_options(&CertOptions::default())
    }

    /// The PKI `cipherlink certs` would make with these options.
    pub fn with_options(options: &CertOptions) -> Result<TestPki, PkiError> {
        let bundle = cipherlink::certs::generate(options).map_err(PkiError::Generate)?;
        let dir = tempfile::tempdir()?;
        bundle.write_to(dir.path()).map_err(PkiError::Write)?;
        let file = |name: &str| dir.path().join(name);
        let server = Leaf::new(
            file("server.crt"),
            file("server.key"),
            file("ca.crt"),
            &bundle.server,
            &bundle.ca.cert,
        )?;
        let client = Leaf::new(
            file("client.crt"),
            file("client.key"),
            file("ca.crt"),
            &bundle.client,
            &bundle.ca.cert,
        )?;
        Ok(TestPki {
            dir,
            bundle,
            server,
            client,
        })
    }

    /// The folder holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// One of the files (`ca.crt`, `server.key`, ...).
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// One of the files, as a command-line argument.
    pub fn arg(&self, file: &str) -> String {
        self.path(file).display().to_string()
    }

    /// The CA certificate file.
    pub fn ca_path(&self) -> PathBuf {
        self.path("ca.crt")
    }
}

/// A CA issuing named leaves: see the module docs. Its methods panic on
/// failure: it is a test fixture, and a failure is a broken test machine.
pub struct TestCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    /// The CA certificate, PEM.
    pub pem: String,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

fn must<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("test CA: {what}: {e}"))
}

impl TestCa {
    /// A CA named `/CN=Test CA/O=TNO/C=NL`: CN first, as
    /// tno.mpc.communication reads the issuer's first name as its CN.
    pub fn new() -> TestCa {
        TestCa::with_dn(&[
            (rcgen::DnType::CommonName, "Test CA"),
            (rcgen::DnType::OrganizationName, "TNO"),
            (rcgen::DnType::CountryName, "NL"),
        ])
    }

    /// A CA with this subject name, in this order.
    pub fn with_dn(dn: &[(rcgen::DnType, &str)]) -> TestCa {
        let mut params = must(
            "CA parameters",
            rcgen::CertificateParams::new(Vec::<String>::new()),
        );
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (ty, v) in dn {
            params.distinguished_name.push(ty.clone(), *v);
        }
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = must("CA key", rcgen::KeyPair::generate());
        let cert = must("CA certificate", params.self_signed(&key));
        let dir = must("temporary folder", tempfile::tempdir());
        let pem = cert.pem();
        must(
            "writing ca.pem",
            std::fs::write(dir.path().join("ca.pem"), &pem),
        );
        TestCa {
            params,
            key,
            pem,
            dir,
        }
    }

    /// The CA certificate file (`ca.pem`).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The folder holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A leaf `CN=name` for `localhost` and 127.0.0.1, for server and
    /// client use, with this serial number; written as `{name}.pem` and
    /// `{name}.key`.
    pub fn leaf(&self, name: &str, serial: u64) -> Leaf {
        self.leaf_for(name, serial, &["localhost", "127.0.0.1"])
    }

    /// A leaf that names its host only in its subject's CN (no
    /// subjectAltName), as certificates made by older openssl recipes do.
    pub fn leaf_cn_only(&self, name: &str, serial: u64) -> Leaf {
        self.leaf_for(name, serial, &[])
    }

    fn leaf_for(&self, name: &str, serial: u64, names: &[&str]) -> Leaf {
        let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let mut params = must("leaf parameters", rcgen::CertificateParams::new(names));
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.serial_number = Some(rcgen::SerialNumber::from(serial.to_be_bytes().to_vec()));
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = must("leaf key", rcgen::KeyPair::generate());
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = must("leaf certificate", params.signed_by(&key, &issuer));
        let pem = Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        };
        let cert_path = self.dir.path().join(format!("{name}.pem"));
        let key_path = self.dir.path().join(format!("{name}.key"));
        must(
            "writing the certificate",
            std::fs::write(&cert_path, &pem.cert),
        );
        must("writing the key", std::fs::write(&key_path, &pem.key));
        must(
            "reading the leaf back",
            Leaf::new(cert_path, key_path, self.ca_path(), &pem, &self.pem),
        )
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_pki_writes_what_cipherlink_certs_writes() {
        let pki = TestPki::new().unwrap_or_else(|e| panic!("{e}"));
        for file in FILES {
            assert!(pki.path(file).is_file(), "{file}");
        }
        let on_disk = std::fs::read_to_string(&pki.client.cert_path).unwrap_or_default();
        assert_eq!(on_disk, pki.bundle.client.cert);
        assert_eq!(pki.server.ca_path, pki.ca_path());
        assert_ne!(pki.server.cert_der, pki.client.cert_der);
    }

    #[test]
    fn test_ca_leaves_carry_their_serials() {
        let ca = TestCa::new();
        let a = ca.leaf("alice", 0x0A1B2C3D4E);
        let b = ca.leaf("bob", 7);
        assert!(a.cert_path.ends_with("alice.pem") && a.key_path.is_file());
        assert_eq!(a.ca_pem, ca.pem);
        let der: &[u8] = a.cert_der.as_ref();
        assert!(der.windows(5).any(|w| w == [0x0A, 0x1B, 0x2C, 0x3D, 0x4E]));
        assert_ne!(a.cert_der, b.cert_der);
    }
}
