//! [`Config::builder`]: a [`Config`] made in code without naming every
//! field, so that code outside this crate keeps compiling when a field is
//! added (a struct literal with `..Config::default()` does too, but only
//! until `Config` becomes `#[non_exhaustive]`, which forbids literals
//! outside this crate).
//!
//! Like the TOML file and the flags, the builder checks nothing:
//! [`crate::Context::server`] and [`crate::Context::client`] check the
//! finished configuration and name the field at fault.

use std::time::Duration;

use crate::compliance::Compliance;
use crate::config::{Config, Dangerous, Implementation, PemSource};
use crate::kx::KeyExchange;

/// Builds a [`Config`], starting from [`Config::default`].
#[derive(Debug, Clone, Default)]
#[must_use = "call build() to get the Config"]
pub struct ConfigBuilder {
    config: Config,
}

impl Config {
    /// A builder starting from the defaults.
    ///
    /// ```
    /// use cipherlink::{Config, KeyExchange, PemSource};
    /// let config = Config::builder()
    ///     .trusted_ca(PemSource::path("ca.crt"))
    ///     .key_exchange([KeyExchange::X25519MlKem768, KeyExchange::X25519])
    ///     .server_name("localhost")
    ///     .build();
    /// assert_eq!(config.server_name.as_deref(), Some("localhost"));
    /// ```
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }
}

impl ConfigBuilder {
    /// The finished configuration (unchecked, as a parsed file is).
    pub fn build(self) -> Config {
        self.config
    }

    /// The TLS implementation.
    pub fn implementation(mut self, implementation: Implementation) -> Self {
        self.config.implementation = implementation;
        self
    }

    /// Key-exchange groups, most preferred first (replaces the default list).
    pub fn key_exchange(mut self, groups: impl IntoIterator<Item = KeyExchange>) -> Self {
        self.config.key_exchange = Some(groups.into_iter().collect());
        self
    }

    /// The compliance policy the groups are checked against.
    pub fn compliance(mut self, compliance: Compliance) -> Self {
        self.config.compliance = compliance;
        self
    }

    /// Our certificate chain and its private key.
    pub fn identity(mut self, certificate: PemSource, private_key: PemSource) -> Self {
        self.config.certificate = Some(certificate);
        self.config.private_key = Some(private_key);
        self
    }

    /// Our certificate chain, leaf first.
    pub fn certificate(mut self, certificate: PemSource) -> Self {
        self.config.certificate = Some(certificate);
        self
    }

    /// The private key for the certificate.
    pub fn private_key(mut self, private_key: PemSource) -> Self {
        self.config.private_key = Some(private_key);
        self
    }

    /// Adds a CA that signs the peer's certificate.
    pub fn trusted_ca(mut self, ca: PemSource) -> Self {
        self.config.trusted_cas.push(ca);
        self
    }

    /// Replaces the trusted CAs.
    pub fn trusted_cas(mut self, cas: impl IntoIterator<Item = PemSource>) -> Self {
        self.config.trusted_cas = cas.into_iter().collect();
        self
    }

    /// Server: demand a client certificate signed by the trusted CAs.
    pub fn require_client_cert(mut self, require: bool) -> Self {
        self.config.require_client_cert = require;
        self
    }

    /// Server: adds a client identity (CN or subjectAltName) allowed in.
    pub fn allowed_identity(mut self, identity: impl Into<String>) -> Self {
        self.config.allowed_identities.push(identity.into());
        self
    }

    /// Client: the name to send (SNI) and verify.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.config.server_name = Some(name.into());
        self
    }

    /// ALPN protocols, most preferred first (replaces any set before).
    pub fn alpn<S: Into<String>>(mut self, protocols: impl IntoIterator<Item = S>) -> Self {
        self.config.alpn = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// How long a handshake may take, to the millisecond (longer saturates).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Session resumption on or off.
    pub fn resumption(mut self, on: bool) -> Self {
        self.config.resumption = on;
        self
    }

    /// The verified-chain cache on or off (see [`Config::chain_cache`]).
    pub fn chain_cache(mut self, on: bool) -> Self {
        self.config.chain_cache = on;
        self
    }

    /// Also allow TLS 1.2.
    pub fn allow_tls12(mut self, allow: bool) -> Self {
        self.config.allow_tls12 = allow;
        self
    }

    /// Options that weaken verification.
    pub fn dangerous(mut self, dangerous: Dangerous) -> Self {
        self.config.dangerous = dangerous;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compliance::PostQuantumChoice;

    #[test]
    fn an_empty_builder_is_the_default() {
        assert_eq!(Config::builder().build(), Config::default());
    }

    #[test]
    fn each_setter_sets_its_field_as_a_literal_would() {
        let dangerous = Dangerous {
            accept_legacy_certificates: true,
            ..Dangerous::default()
        };
        let compliance = Compliance {
            post_quantum: PostQuantumChoice::RequireHybrid,
            ..Compliance::default()
        };
        let built = Config::builder()
            .implementation(Implementation::Rustls)
            .key_exchange([KeyExchange::X25519MlKem768])
            .compliance(compliance)
            .identity(PemSource::path("s.crt"), PemSource::path("s.key"))
            .trusted_ca(PemSource::path("a.crt"))
            .trusted_ca(PemSource::system_roots())
            .require_client_cert(true)
            .allowed_identity("client")
            .server_name("localhost")
            .alpn(["h2", "http/1.1"])
            .handshake_timeout(Duration::from_millis(2500))
            .resumption(false)
            .allow_tls12(true)
            .chain_cache(false)
            .dangerous(dangerous.clone())
            .build();
        let literal = Config {
            implementation: Implementation::Rustls,
            key_exchange: Some(vec![KeyExchange::X25519MlKem768]),
            compliance,
            certificate: Some(PemSource::path("s.crt")),
            private_key: Some(PemSource::path("s.key")),
            trusted_cas: vec![PemSource::path("a.crt"), PemSource::system_roots()],
            require_client_cert: true,
            allowed_identities: vec!["client".into()],
            server_name: Some("localhost".into()),
            alpn: vec!["h2".into(), "http/1.1".into()],
            handshake_timeout_ms: 2500,
            resumption: false,
            allow_tls12: true,
            chain_cache: false,
            dangerous,
        };
        assert_eq!(built, literal);
        let replaced = Config::builder()
            .trusted_ca(PemSource::path("old.crt"))
            .trusted_cas([PemSource::path("new.crt")])
            .certificate(PemSource::path("c.crt"))
            .private_key(PemSource::path("c.key"))
            .handshake_timeout(Duration::MAX)
            .build();
        assert_eq!(replaced.trusted_cas, [PemSource::path("new.crt")]);
        assert_eq!(replaced.certificate, Some(PemSource::path("c.crt")));
        assert_eq!(replaced.private_key, Some(PemSource::path("c.key")));
        assert_eq!(replaced.handshake_timeout_ms, u64::MAX);
    }
}
