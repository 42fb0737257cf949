//! `NAME=HOST:PORT[@CERT.pem]`: a peer written on one line, as the
//! `cipherlink pool --peer` option and the Python test parties take it.
//!
//! Parsed here, next to [`PeerConfig`], so every front end gives the same
//! answers and the same errors for the same text.

use std::path::PathBuf;
use std::str::FromStr;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::config::PeerConfig;

/// What is wrong with a `NAME=HOST:PORT[@CERT]` peer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerSpecError {
    /// No `=` between the name and the address.
    #[error("peer {spec:?}: expected NAME=HOST:PORT[@CERT], found no '='")]
    NoName {
        /// The text given.
        spec: String,
    },
    /// Nothing before the `=`.
    #[error("peer {spec:?}: expected a NAME before '='")]
    EmptyName {
        /// The text given.
        spec: String,
    },
    /// No `:PORT` after the host.
    #[error("peer {spec:?}: expected HOST:PORT after '=', found {addr:?}")]
    NoPort {
        /// The text given.
        spec: String,
        /// What came after `=` (without `@CERT`).
        addr: String,
    },
    /// Nothing before `:PORT`.
    #[error("peer {spec:?}: expected a HOST before ':{port}'")]
    EmptyHost {
        /// The text given.
        spec: String,
        /// The port text.
        port: String,
    },
    /// The port is not a number from 1 to 65535.
    #[error("peer {spec:?}: port {port:?} is not a number from 1 to 65535")]
    BadPort {
        /// The text given.
        spec: String,
        /// The port text.
        port: String,
    },
    /// `@` with no path after it.
    #[error("peer {spec:?}: expected a certificate file after '@'")]
    EmptyCert {
        /// The text given.
        spec: String,
    },
    /// The certificate file could not be read as a PEM certificate.
    #[error("peer {name:?}: reading certificate {}: {reason}", path.display())]
    Cert {
        /// The peer's name.
        name: String,
        /// The file.
        path: PathBuf,
        /// Why it could not be used.
        reason: String,
    },
}

impl FromStr for PeerConfig {
    type Err = PeerSpecError;

    /// Parses `NAME=HOST:PORT`, or `NAME=HOST:PORT@CERT.pem` to pin the
    /// peer's certificate (the first certificate in the PEM file). An IPv6
    /// host is written in brackets: `Bob=[::1]:8000`.
    fn from_str(spec: &str) -> Result<PeerConfig, PeerSpecError> {
        let owned = || spec.to_string();
        let (name, rest) = spec
            .split_once('=')
            .ok_or_else(|| PeerSpecError::NoName { spec: owned() })?;
        if name.is_empty() {
            return Err(PeerSpecError::EmptyName { spec: owned() });
        }
        let (addr, cert) = match rest.split_once('@') {
            Some((a, c)) => (a, Some(c)),
            None => (rest, None),
        };
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| PeerSpecError::NoPort {
            spec: owned(),
            addr: addr.to_string(),
        })?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(PeerSpecError::EmptyHost {
                spec: owned(),
                port: port.to_string(),
            });
        }
        let port_num = port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| PeerSpecError::BadPort {
                spec: owned(),
                port: port.to_string(),
            })?;
        let peer = PeerConfig::new(name, host, port_num);
        match cert {
            None => Ok(peer),
            Some("") => Err(PeerSpecError::EmptyCert { spec: owned() }),
            Some(path) => {
                let der = CertificateDer::from_pem_file(path).map_err(|e| PeerSpecError::Cert {
                    name: name.to_string(),
                    path: PathBuf::from(path),
                    reason: e.to_string(),
                })?;
                Ok(peer.with_cert(der))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<PeerConfig, PeerSpecError> {
        s.parse()
    }

    #[test]
    fn name_host_and_port() {
        let p = parse("Bob=127.0.0.1:8001").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (p.name.as_str(), p.host.as_str(), p.port),
            ("Bob", "127.0.0.1", 8001)
        );
        assert!(p.cert.is_none());
        let p = parse("Carol=party.example:443").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.host.as_str(), p.port), ("party.example", 443));
    }

    #[test]
    fn bracketed_ipv6_host() {
        let p = parse("Bob=[::1]:8001").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.host.as_str(), p.port), ("::1", 8001));
    }

    #[test]
    fn certificate_file_is_pinned() {
        let bundle = cipherlink::certs::generate(&cipherlink::certs::CertOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let dir = std::env::temp_dir().join(format!("peer-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("bob.pem");
        std::fs::write(&path, &bundle.client.cert).unwrap_or_else(|e| panic!("{e}"));
        let parsed = parse(&format!("Bob=127.0.0.1:8001@{}", path.display()));
        let _ = std::fs::remove_dir_all(&dir);
        let p = parsed.unwrap_or_else(|e| panic!("{e}"));
        let want = CertificateDer::from_pem_slice(bundle.client.cert.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.cert, Some(want));
    }

    /// Each bad string gets its own error, naming what was expected.
    #[test]
    fn bad_strings_say_what_was_expected() {
        for (spec, want) in [
            ("Bob", "expected NAME=HOST:PORT[@CERT], found no '='"),
            ("=127.0.0.1:80", "expected a NAME before '='"),
            (
                "Bob=127.0.0.1",
                "expected HOST:PORT after '=', found \"127.0.0.1\"",
            ),
            ("Bob=:80", "expected a HOST before ':80'"),
            ("Bob=[]:80", "expected a HOST before ':80'"),
            (
                "Bob=h:http",
                "port \"http\" is not a number from 1 to 65535",
            ),
            (
                "Bob=h:65536",
                "port \"65536\" is not a number from 1 to 65535",
            ),
            ("Bob=h:0", "port \"0\" is not a number from 1 to 65535"),
            ("Bob=h:", "port \"\" is not a number from 1 to 65535"),
            ("Bob=h:80@", "expected a certificate file after '@'"),
        ] {
            match parse(spec) {
                Ok(p) => panic!("{spec:?} parsed as {p:?}"),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.contains(want), "{spec:?}: {msg}");
                    assert!(msg.contains(&format!("{spec:?}")), "{spec:?}: {msg}");
                }
            }
        }
    }

    #[test]
    fn unreadable_certificate_names_the_peer_and_file() {
        let err = parse("Bob=h:80@/nonexistent/bob.pem")
            .err()
            .unwrap_or_else(|| panic!("a missing file parsed"));
        let msg = err.to_string();
        assert!(msg.contains("\"Bob\""), "{msg}");
        assert!(msg.contains("/nonexistent/bob.pem"), "{msg}");
    }
}
