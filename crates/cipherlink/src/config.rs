//! The declarative configuration a [`crate::Context`] is built from.
//!
//! The same fields come from a TOML file or from command-line flags. Nothing
//! here is checked: [`crate::Context::server`] and [`crate::Context::client`]
//! check everything at once and name the field at fault.
//!
//! ```toml
//! implementation = "rustls"
//! key_exchange = ["X25519MLKEM768", "X25519"]
//! certificate = "server.crt"        # a path, or inline PEM
//! private_key = "server.key"
//! trusted_cas = ["ca.crt"]          # or ["system"]
//! require_client_cert = true
//! allowed_identities = ["client"]
//!
//! [compliance]
//! classical = "allow"               # or "forbid"
//! post_quantum = "require_hybrid"   # "allow" | "require_hybrid" | "require_pure"
//!
//! [dangerous]                       # options that weaken verification; see Dangerous
//! accept_legacy_certificates = false
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::compliance::Compliance;
use crate::error::Error;
use crate::kx::KeyExchange;

/// Which TLS implementation carries the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Implementation {
    /// rustls with the aws-lc-rs provider.
    #[default]
    Rustls,
    /// OpenSSL 3.6 (built from source into cipherlink, with ML-KEM).
    Openssl,
}

impl Implementation {
    /// Both, rustls first.
    pub const ALL: [Implementation; 2] = [Implementation::Rustls, Implementation::Openssl];

    /// The name, as in the TOML file and the flags.
    pub fn name(self) -> &'static str {
        match self {
            Implementation::Rustls => "rustls",
            Implementation::Openssl => "openssl",
        }
    }
}

impl std::fmt::Display for Implementation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An implementation name that is not `rustls` or `openssl`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown TLS implementation {0:?}; valid: rustls, openssl")]
pub struct UnknownImplementation(pub String);

impl std::str::FromStr for Implementation {
    type Err = UnknownImplementation;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rustls" => Ok(Implementation::Rustls),
            "openssl" => Ok(Implementation::Openssl),
            _ => Err(UnknownImplementation(s.to_string())),
        }
    }
}

/// PEM data: a file, or the PEM text itself.
///
/// In a TOML file or a flag both are strings: one that contains `-----BEGIN`
/// is the text, any other a path ([`PemSource::from_text`]), relative to the
/// TOML file's folder. In code, say which with [`PemSource::path`] or
/// [`PemSource::inline`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum PemSource {
    /// A PEM file (or [`SYSTEM_ROOTS`] in `trusted_cas`).
    Path(PathBuf),
    /// The PEM text.
    Inline(String),
}

impl PemSource {
    /// A PEM file.
    pub fn path(path: impl AsRef<Path>) -> PemSource {
        PemSource::Path(path.as_ref().to_path_buf())
    }

    /// Inline PEM text.
    pub fn inline(pem: impl Into<String>) -> PemSource {
        PemSource::Inline(pem.into())
    }

    /// A TOML string or flag value: the PEM text if it contains
    /// `-----BEGIN`, otherwise a path.
    pub fn from_text(text: impl Into<String>) -> PemSource {
        let text = text.into();
        if text.contains("-----BEGIN") {
            PemSource::Inline(text)
        } else {
            PemSource::Path(PathBuf::from(text))
        }
    }

    /// The operating system's roots, in `trusted_cas`.
    pub fn system_roots() -> PemSource {
        PemSource::path(SYSTEM_ROOTS)
    }

    /// Whether this is [`SYSTEM_ROOTS`] rather than a file.
    pub fn is_system_roots(&self) -> bool {
        matches!(self, PemSource::Path(path) if path.as_os_str() == SYSTEM_ROOTS)
    }

    /// Whether this holds the PEM text rather than a path.
    pub fn is_inline(&self) -> bool {
        matches!(self, PemSource::Inline(_))
    }

    /// The path, when this is a file.
    pub fn as_path(&self) -> Option<&Path> {
        match self {
            PemSource::Path(path) => Some(path),
            PemSource::Inline(_) => None,
        }
    }

    /// A relative path taken relative to `base` (a configuration file's
    /// folder); inline PEM and [`SYSTEM_ROOTS`] stay as they are.
    pub fn rebase(&mut self, base: &Path) {
        if self.is_system_roots() {
            return;
        }
        if let PemSource::Path(path) = self {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// For messages: the path, or `inline PEM`.
    pub fn describe(&self) -> String {
        match self {
            PemSource::Path(path) => path.display().to_string(),
            PemSource::Inline(_) => "inline PEM".to_string(),
        }
    }

    /// Reads the bytes, naming `field` when the file cannot be read.
    pub fn read(&self, field: &'static str) -> Result<Vec<u8>, Error> {
        match self {
            PemSource::Inline(text) => Ok(text.as_bytes().to_vec()),
            PemSource::Path(path) => std::fs::read(path).map_err(|error| Error::File {
                field,
                path: path.clone(),
                error,
            }),
        }
    }
}

impl From<String> for PemSource {
    fn from(text: String) -> PemSource {
        PemSource::from_text(text)
    }
}

/// The TOML form. A path that is not UTF-8 is written lossily: TOML strings
/// are UTF-8.
impl From<PemSource> for String {
    fn from(source: PemSource) -> String {
        match source {
            PemSource::Path(path) => path.to_string_lossy().into_owned(),
            PemSource::Inline(text) => text,
        }
    }
}

/// The value of `trusted_cas` that means the operating system's roots.
pub const SYSTEM_ROOTS: &str = "system";

/// Everything a client or server Context needs. See the module docs.
///
/// `#[non_exhaustive]`: build one with [`Config::builder`] (or start from
/// `Config::default()` and set fields), so that new fields do not break
/// callers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// The TLS implementation.
    #[serde(default)]
    pub implementation: Implementation,
    /// Key-exchange groups, most preferred first. `None` (not set): the
    /// defaults ([`KeyExchange::default_list`]) that `compliance` permits, as
    /// OpenSSL's security level trims its defaults. A list set here is used
    /// as it is, and refused if the policy forbids a group in it.
    #[serde(default)]
    pub key_exchange: Option<Vec<KeyExchange>>,
    /// What the key-exchange list may contain.
    #[serde(default)]
    pub compliance: Compliance,
    /// Our certificate chain, leaf first (a server's, or a client's for mutual TLS).
    #[serde(default)]
    pub certificate: Option<PemSource>,
    /// The private key for `certificate`.
    #[serde(default)]
    pub private_key: Option<PemSource>,
    /// CAs that sign the peer's certificate; `"system"` means the OS roots.
    #[serde(default)]
    pub trusted_cas: Vec<PemSource>,
    /// Server: demand a client certificate signed by `trusted_cas`.
    #[serde(default)]
    pub require_client_cert: bool,
    /// Server: client identities (subject CN or a subjectAltName) allowed in;
    /// empty allows any client the CAs vouch for.
    #[serde(default)]
    pub allowed_identities: Vec<String>,
    /// Client: the name to send (SNI) and verify; defaults to the host connected to.
    #[serde(default)]
    pub server_name: Option<String>,
    /// ALPN protocols, most preferred first.
    #[serde(default)]
    pub alpn: Vec<String>,
    /// How long a handshake may take before the connection is dropped.
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
    /// Session resumption (tickets on the server, a session cache on the client).
    #[serde(default = "default_true")]
    pub resumption: bool,
    /// Also allow TLS 1.2 (TLS 1.3 only by default).
    #[serde(default)]
    pub allow_tls12: bool,
    /// Remember a peer's verified certificate chain for up to 300 s (never
    /// past the notAfter of a certificate in the chain), so a reconnecting
    /// peer costs one signature verification (its handshake signature)
    /// instead of two. The handshake signature, which proves the peer holds
    /// its key now, is checked every time; only successes are kept. On by
    /// default, as browsers cache verdicts; `false` verifies every chain in
    /// full. Both implementations keep it (docs/config.md).
    #[serde(default = "default_true")]
    pub chain_cache: bool,
    /// Options that weaken verification, kept apart so they are seen.
    #[serde(default)]
    pub dangerous: Dangerous,
}

/// Options that weaken certificate verification, in one `[dangerous]` table
/// (and `--dangerous-*` flags), as rustls keeps its own behind `dangerous()`:
/// a reviewer finds every one of them in one place. All are off by default,
/// and combinations that would trust any certificate a public CA issued are
/// refused when the Context is built.
///
/// ```toml
/// [dangerous]
/// accept_legacy_certificates = true
/// ```
///
/// `#[non_exhaustive]`, as [`Config`]: start from `Dangerous::default()`
/// and set the fields wanted, so a new option never breaks a caller.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Dangerous {
    /// Accept X.509 v1 certificates (what `openssl x509 -req` writes without
    /// an extension file): our own, and the peer's when it is the leaf and
    /// a trusted CA signed it directly (never under an intermediate). A v1
    /// server certificate must name the server in its subjectAltName when
    /// it has one, else in its subject CN. The CN of a v3 certificate does
    /// not count for this option (see `accept_cn_only_certificates`).
    #[serde(default)]
    pub accept_legacy_certificates: bool,
    /// Client: accept a server certificate with no subjectAltName extension
    /// at all when its subject CN equals the server name (exactly, no
    /// wildcard), as gRPC's legacy check does. The chain is still verified.
    #[serde(default)]
    pub accept_cn_only_certificates: bool,
    /// Client: do not check that the server certificate names `server_name`.
    /// The chain is still verified against `trusted_cas`; it is what
    /// tno.mpc.communication parties do (`check_hostname=False`), where a
    /// private CA issues each party one certificate. Refused with the system
    /// roots, where it would accept any public web site's certificate.
    #[serde(default)]
    pub skip_server_name_check: bool,
    /// Server: let `trusted_cas` contain `"system"`. The system roots vouch
    /// for public web sites, not for anyone's clients: any holder of any
    /// public certificate would be authenticated.
    #[serde(default)]
    pub client_certs_from_system_roots: bool,
    /// Append every session's TLS secrets to this file in the NSS key log
    /// format (`SSLKEYLOGFILE`), so Wireshark, tshark and `cipherlink chaos
    /// run` can decrypt captured traffic. Anyone holding the file can read
    /// every session it lists: for debugging and labs only.
    #[serde(default)]
    pub key_log_file: Option<PathBuf>,
}

/// The fields that moved from the top level into `[dangerous]`, for the
/// message that says where they went.
const MOVED_TO_DANGEROUS: [(&str, &str); 3] = [
    ("accept_legacy_certificates", "accept_legacy_certificates"),
    ("accept_cn_only_certificates", "accept_cn_only_certificates"),
    ("verify_server_name", "skip_server_name_check (inverted)"),
];

fn default_handshake_timeout_ms() -> u64 {
    10_000
}

fn default_true() -> bool {
    true
}

impl Default for Config {
    fn default() -> Self {
        Config {
            implementation: Implementation::default(),
            key_exchange: None,
            compliance: Compliance::default(),
            certificate: None,
            private_key: None,
            trusted_cas: Vec::new(),
            require_client_cert: false,
            allowed_identities: Vec::new(),
            server_name: None,
            alpn: Vec::new(),
            handshake_timeout_ms: default_handshake_timeout_ms(),
            resumption: true,
            allow_tls12: false,
            chain_cache: true,
            dangerous: Dangerous::default(),
        }
    }
}

impl Config {
    /// The groups a Context offers: `key_exchange` when set, otherwise the
    /// defaults that the compliance policy permits (every permitted group,
    /// in preference order, if the policy permits none of the defaults).
    pub fn groups(&self) -> Vec<KeyExchange> {
        if let Some(chosen) = &self.key_exchange {
            return chosen.clone();
        }
        let permitted = |list: Vec<KeyExchange>| -> Vec<KeyExchange> {
            list.into_iter()
                .filter(|&group| self.compliance.permits(group))
                .collect()
        };
        let trimmed = permitted(KeyExchange::default_list());
        if trimmed.is_empty() {
            permitted(KeyExchange::ALL.to_vec())
        } else {
            trimmed
        }
    }

    /// The rustls server configuration this describes, checked field by
    /// field as [`crate::Context::server`] checks it; for libraries that take
    /// a rustls configuration (hyper, tonic). rustls has no handshake time
    /// limit: `handshake_timeout_ms` is then the caller's to apply.
    pub fn rustls_server_config(&self) -> Result<std::sync::Arc<rustls::ServerConfig>, Error> {
        crate::context::server_tls(self)
    }

    /// The rustls client configuration this describes, checked field by
    /// field as [`crate::Context::client`] checks it.
    pub fn rustls_client_config(&self) -> Result<std::sync::Arc<rustls::ClientConfig>, Error> {
        crate::context::client_tls(self).map(|(tls, _server_name)| tls)
    }

    /// The options that weaken verification (the `[dangerous]` table).
    pub fn dangerous(&self) -> &Dangerous {
        &self.dangerous
    }

    /// Parses TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Config, Error> {
        toml::from_str(text).map_err(|error| {
            let message = error.message();
            let moved = MOVED_TO_DANGEROUS
                .iter()
                .find(|(old, _)| message.contains(&format!("unknown field `{old}`")));
            match moved {
                Some((old, new)) => Error::Moved {
                    path: origin.to_path_buf(),
                    old,
                    new: format!("[dangerous] {new}"),
                },
                None => Error::Toml {
                    path: origin.to_path_buf(),
                    error: Box::new(error),
                },
            }
        })
    }

    /// Reads and parses a TOML file. Relative PEM paths in it are taken
    /// relative to the file's folder, so a config travels with its certificates.
    pub fn from_toml_file(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|error| Error::File {
            field: "config",
            path: path.to_path_buf(),
            error,
        })?;
        let mut config = Config::from_toml(&text, path)?;
        if let Some(base) = path.parent() {
            config.rebase_paths(base);
        }
        Ok(config)
    }

    fn rebase_paths(&mut self, base: &Path) {
        let rebase = |source: &mut PemSource| source.rebase(base);
        self.certificate.iter_mut().for_each(rebase);
        self.private_key.iter_mut().for_each(rebase);
        self.trusted_cas.iter_mut().for_each(rebase);
    }

    /// The handshake timeout as a duration.
    pub fn handshake_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.handshake_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_hybrid_first_tls13_with_resumption() {
        let config = Config::from_toml("", Path::new("x.toml")).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.groups()[0], KeyExchange::X25519MlKem768);
        assert!(config.resumption && !config.allow_tls12);
    }

    /// A policy trims the defaults the user did not choose, and leaves a
    /// chosen list alone (the Context then refuses it, naming the group).
    #[test]
    fn a_policy_trims_the_default_groups_but_not_a_chosen_list() {
        use crate::compliance::{ClassicalChoice, PostQuantumChoice};
        use KeyExchange::*;
        let mut config = Config::default();
        config.compliance.post_quantum = PostQuantumChoice::RequireHybrid;
        assert_eq!(config.groups(), vec![X25519MlKem768]);
        config.compliance.post_quantum = PostQuantumChoice::RequirePure;
        assert_eq!(config.groups(), vec![MlKem768]);
        config.compliance.post_quantum = PostQuantumChoice::Allow;
        config.compliance.classical = ClassicalChoice::Forbid;
        assert!(config
            .groups()
            .iter()
            .all(|g| config.compliance.permits(*g)));
        assert_eq!(config.groups()[0], X25519MlKem768);
        config.key_exchange = Some(vec![X25519, P256]);
        assert_eq!(config.groups(), vec![X25519, P256]);
    }

    #[test]
    fn full_file_parses() {
        let text = r#"
            key_exchange = ["X25519MLKEM768", "prime256v1"]
            certificate = "server.crt"
            private_key = "server.key"
            trusted_cas = ["ca.crt"]
            require_client_cert = true
            allowed_identities = ["client"]
            [compliance]
            classical = "forbid"
            post_quantum = "require_hybrid"
        "#;
        let mut config = Config::from_toml(text, Path::new("x.toml")).unwrap();
        assert_eq!(config.groups()[1], KeyExchange::P256);
        config.rebase_paths(Path::new("/etc/cl"));
        assert_eq!(
            config.certificate,
            Some(PemSource::path("/etc/cl/server.crt"))
        );
    }

    #[test]
    fn pem_strings_are_inline_when_they_hold_pem_and_paths_otherwise() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let text = format!(
            "certificate = \"\"\"\n{pem}\"\"\"\nprivate_key = \"keys/server.key\"\n\
             trusted_cas = [\"system\", \"/abs/ca.crt\", \"ca.crt\"]\n"
        );
        let mut config = Config::from_toml(&text, Path::new("x.toml")).unwrap();
        config.rebase_paths(Path::new("/etc/cl"));
        assert_eq!(config.certificate, Some(PemSource::inline(pem)));
        assert_eq!(
            config.private_key,
            Some(PemSource::path("/etc/cl/keys/server.key"))
        );
        assert_eq!(
            config.trusted_cas,
            [
                PemSource::system_roots(),
                PemSource::path("/abs/ca.crt"),
                PemSource::path("/etc/cl/ca.crt"),
            ]
        );
        assert!(config.trusted_cas[0].is_system_roots());
        assert_eq!(PemSource::from_text(pem), PemSource::inline(pem));
        assert_eq!(
            PemSource::from_text("a.pem").as_path(),
            Some(Path::new("a.pem"))
        );
        // Written back, the file reads the same.
        let written = toml::to_string(&config).unwrap();
        assert_eq!(
            Config::from_toml(&written, Path::new("y.toml")).unwrap(),
            config
        );
    }

    #[test]
    fn unknown_group_and_unknown_field_are_reported_with_position() {
        let err = Config::from_toml("key_exchange = [\"kyber\"]", Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("a.toml") && err.contains("kyber"), "{err}");
        let err = Config::from_toml("certificat = \"x\"", Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("certificat"), "{err}");
    }

    #[test]
    fn dangerous_options_live_in_their_own_table() {
        let text =
            "[dangerous]\naccept_legacy_certificates = true\nskip_server_name_check = true\n";
        let config = Config::from_toml(text, Path::new("d.toml")).unwrap();
        assert!(config.dangerous().accept_legacy_certificates);
        assert!(config.dangerous.skip_server_name_check);
        assert!(!config.dangerous.accept_cn_only_certificates);
        assert_eq!(Config::default().dangerous, Dangerous::default());
    }

    #[test]
    fn a_moved_field_at_the_top_level_says_where_it_went() {
        for (text, new) in [
            (
                "accept_legacy_certificates = true",
                "[dangerous] accept_legacy_certificates",
            ),
            (
                "verify_server_name = false",
                "[dangerous] skip_server_name_check",
            ),
        ] {
            let err = Config::from_toml(text, Path::new("old.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("old.toml") && err.contains(new), "{err}");
        }
    }
}
