//! The TLS flags every networked subcommand shares, mapped onto the core
//! `Config` (a `--config` TOML file first, flags on top).

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use cipherlink::{
    ClassicalChoice, Config, Implementation, KeyExchange, PemSource, PostQuantumChoice,
};
use clap::Args;

/// TLS options; each overrides the same field of `--config`.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// TOML configuration file (fields as in docs/config.md); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Our certificate chain (PEM), leaf first.
    #[arg(long = "cert", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The private key for --cert (PEM).
    #[arg(long = "key", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// CA certificate(s) that sign the peer (PEM); "system" for the OS roots. Repeatable.
    #[arg(long = "ca", value_name = "FILE")]
    pub ca: Vec<String>,
    /// The TLS implementation: rustls (default) or openssl (OpenSSL 3.6,
    /// built in). `cipherlink info` shows what each offers here.
    #[arg(long, value_name = "NAME")]
    pub implementation: Option<Implementation>,
    /// Key-exchange groups, most preferred first, e.g. X25519MLKEM768,X25519,P-256
    /// (or OpenSSL's X25519MLKEM768:X25519).
    // `::std::vec::Vec`: one value, the whole list, split by `GroupList`
    // (clap's `value_delimiter` takes one character, OpenSSL lists use ':').
    #[arg(long, value_name = "LIST", value_parser = GroupList)]
    pub groups: Option<::std::vec::Vec<KeyExchange>>,
    /// Whether classical-only groups may be offered.
    #[arg(long)]
    pub classical: Option<ClassicalChoice>,
    /// Post-quantum requirement.
    #[arg(long = "post-quantum")]
    pub post_quantum: Option<PostQuantumChoice>,
    /// ALPN protocols, most preferred first (comma-separated).
    #[arg(long, value_name = "LIST")]
    pub alpn: Option<String>,
    /// Handshake time limit, e.g. 10s (a bare number is milliseconds).
    #[arg(
        long,
        alias = "handshake-timeout-ms",
        value_name = "DURATION",
        value_parser = crate::values::duration_or_ms
    )]
    pub handshake_timeout: Option<std::time::Duration>,
    /// Disable session resumption.
    #[arg(long)]
    pub no_resumption: bool,
    /// Also allow TLS 1.2 (TLS 1.3 only by default).
    #[arg(long)]
    pub tls12: bool,
    /// Dangerous: accept X.509 v1 certificates (`openssl x509 -req` without
    /// extensions), ours and the peer's, as OpenSSL does: the peer's must be
    /// signed directly by a trusted CA, and a server's must name the host in its CN.
    #[arg(long = "dangerous-accept-legacy-certs", alias = "accept-legacy-certs")]
    pub dangerous_accept_legacy_certs: bool,
    /// Dangerous: append every session's TLS secrets to FILE (NSS key log
    /// format, as SSLKEYLOGFILE), for Wireshark/tshark; anyone with the file
    /// can decrypt those sessions.
    #[arg(long = "dangerous-key-log", value_name = "FILE")]
    pub dangerous_key_log: Option<PathBuf>,
}

/// Where a configuration's fields came from, so an error can name what the
/// user typed: the flag, or the field in the `--config` file.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    file: Option<PathBuf>,
    from_flags: Vec<&'static str>,
}

impl Origin {
    /// Adds fields that server- or client-only flags set.
    pub fn with(mut self, fields: Vec<&'static str>) -> Origin {
        self.from_flags.extend(fields);
        self
    }

    /// "--groups", or "`key_exchange` in FILE", for `field`.
    fn describe(&self, field: &str) -> Option<String> {
        let flag = flag_for_field(field);
        match (flag, &self.file) {
            (Some(flag), _) if self.from_flags.contains(&field) => Some(flag.to_string()),
            (_, Some(file)) => Some(format!("`{field}` in {}", file.display())),
            (Some(flag), None) => Some(flag.to_string()),
            (None, None) => None,
        }
    }
}

impl TlsArgs {
    /// Where each field of [`TlsArgs::to_config`]'s result comes from.
    pub fn origin(&self) -> Origin {
        let set = [
            ("certificate", self.cert.is_some()),
            ("private_key", self.key.is_some()),
            ("trusted_cas", !self.ca.is_empty()),
            ("implementation", self.implementation.is_some()),
            ("key_exchange", self.groups.is_some()),
            ("compliance.classical", self.classical.is_some()),
            ("compliance.post_quantum", self.post_quantum.is_some()),
            ("alpn", self.alpn.is_some()),
            ("handshake_timeout_ms", self.handshake_timeout.is_some()),
            (
                "dangerous.accept_legacy_certificates",
                self.dangerous_accept_legacy_certs,
            ),
            ("dangerous.key_log_file", self.dangerous_key_log.is_some()),
        ];
        Origin {
            file: self.config.clone(),
            from_flags: set
                .into_iter()
                .filter(|(_, on)| *on)
                .map(|(f, _)| f)
                .collect(),
        }
    }

    /// The configuration: file (if any), then flags.
    pub fn to_config(&self) -> Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_toml_file(path)
                .with_context(|| format!("--config {}", path.display()))?,
            None => Config::default(),
        };
        if let Some(implementation) = self.implementation {
            config.implementation = implementation;
        }
        if let Some(cert) = &self.cert {
            config.certificate = Some(PemSource::path(cert));
        }
        if let Some(key) = &self.key {
            config.private_key = Some(PemSource::path(key));
        }
        if !self.ca.is_empty() {
            config.trusted_cas = self.ca.iter().cloned().map(PemSource::from_text).collect();
        }
        if let Some(groups) = &self.groups {
            config.key_exchange = Some(groups.clone());
        }
        if let Some(classical) = self.classical {
            config.compliance.classical = classical;
        }
        if let Some(pq) = self.post_quantum {
            config.compliance.post_quantum = pq;
        }
        if let Some(alpn) = &self.alpn {
            config.alpn = alpn
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
        }
        if let Some(limit) = self.handshake_timeout {
            config.handshake_timeout_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        }
        if self.no_resumption {
            config.resumption = false;
        }
        if self.tls12 {
            config.allow_tls12 = true;
        }
        if self.dangerous_accept_legacy_certs {
            config.dangerous.accept_legacy_certificates = true;
        }
        if let Some(path) = &self.dangerous_key_log {
            config.dangerous.key_log_file = Some(path.clone());
        }
        Ok(config)
    }
}

/// Server-only TLS options.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerTlsArgs {
    /// Demand a client certificate signed by --ca (mutual TLS).
    #[arg(long)]
    pub require_client_cert: bool,
    /// Only let in clients whose certificate names this (CN or subjectAltName). Repeatable.
    #[arg(long = "allow-identity", value_name = "NAME")]
    pub allow_identity: Vec<String>,
    /// Dangerous: let --ca system authenticate clients (the system roots
    /// vouch for public web sites, not for your clients).
    #[arg(long)]
    pub dangerous_client_certs_from_system_roots: bool,
}

impl ServerTlsArgs {
    /// The fields these flags set, for [`Origin::with`].
    pub fn fields(&self) -> Vec<&'static str> {
        [
            ("require_client_cert", self.require_client_cert),
            ("allowed_identities", !self.allow_identity.is_empty()),
            (
                "dangerous.client_certs_from_system_roots",
                self.dangerous_client_certs_from_system_roots,
            ),
        ]
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(f, _)| f)
        .collect()
    }

    /// Applies these on top of a configuration.
    pub fn apply(&self, config: &mut Config) {
        if self.require_client_cert {
            config.require_client_cert = true;
        }
        if !self.allow_identity.is_empty() {
            config.allowed_identities = self.allow_identity.clone();
        }
        if self.dangerous_client_certs_from_system_roots {
            config.dangerous.client_certs_from_system_roots = true;
        }
    }
}

/// Client-only TLS options.
#[derive(Debug, Clone, Default, Args)]
pub struct ClientTlsArgs {
    /// The server name to send (SNI) and verify; defaults to the host connected to.
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// Dangerous: accept a server certificate without subjectAltName whose CN
    /// equals the server name (legacy certificates, as gRPC's own stack does).
    /// The chain is still verified.
    #[arg(long = "dangerous-accept-cn-only", alias = "accept-cn-only")]
    pub dangerous_accept_cn_only: bool,
    /// Dangerous: do not check that the server certificate names the server
    /// (the chain is still verified; refused with --ca system).
    #[arg(long)]
    pub dangerous_skip_server_name_check: bool,
}

impl ClientTlsArgs {
    /// The fields these flags set, for [`Origin::with`].
    pub fn fields(&self) -> Vec<&'static str> {
        [
            ("server_name", self.server_name.is_some()),
            (
                "dangerous.accept_cn_only_certificates",
                self.dangerous_accept_cn_only,
            ),
            (
                "dangerous.skip_server_name_check",
                self.dangerous_skip_server_name_check,
            ),
        ]
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(f, _)| f)
        .collect()
    }

    /// Applies these on top of a configuration.
    pub fn apply(&self, config: &mut Config) {
        if let Some(name) = &self.server_name {
            config.server_name = Some(name.clone());
        }
        if self.dangerous_accept_cn_only {
            config.dangerous.accept_cn_only_certificates = true;
        }
        if self.dangerous_skip_server_name_check {
            config.dangerous.skip_server_name_check = true;
        }
    }
}

/// The flag that sets a configuration field, for error messages: the core
/// names fields as the TOML file does, a command-line user typed flags.
fn flag_for_field(field: &str) -> Option<&'static str> {
    Some(match field {
        "certificate" => "--cert",
        "private_key" => "--key",
        "trusted_cas" => "--ca",
        "key_exchange" => "--groups",
        "compliance.classical" => "--classical",
        "compliance.post_quantum" => "--post-quantum",
        "require_client_cert" => "--require-client-cert",
        "allowed_identities" => "--allow-identity",
        "server_name" => "--server-name",
        "dangerous.accept_cn_only_certificates" => "--dangerous-accept-cn-only",
        "dangerous.accept_legacy_certificates" => "--dangerous-accept-legacy-certs",
        "dangerous.skip_server_name_check" => "--dangerous-skip-server-name-check",
        "dangerous.client_certs_from_system_roots" => "--dangerous-client-certs-from-system-roots",
        "dangerous.key_log_file" => "--dangerous-key-log",
        "handshake_timeout_ms" => "--handshake-timeout",
        "alpn" => "--alpn",
        "implementation" => "--implementation",
        _ => return None,
    })
}

/// Builds a Context; an error names the flag or the `--config` field behind it.
pub fn build_context(
    role: cipherlink::Role,
    config: &Config,
    origin: &Origin,
) -> Result<cipherlink::Context> {
    let built = match role {
        cipherlink::Role::Server => cipherlink::Context::server(config),
        cipherlink::Role::Client => cipherlink::Context::client(config),
    };
    built.map_err(|err| {
        let field = match &err {
            cipherlink::Error::Config { field, .. }
            | cipherlink::Error::File { field, .. }
            | cipherlink::Error::OutputFile { field, .. } => Some(*field),
            cipherlink::Error::Policy(_) | cipherlink::Error::UnknownGroup(_) => {
                Some("key_exchange")
            }
            _ => None,
        };
        let side = match role {
            cipherlink::Role::Server => "server",
            cipherlink::Role::Client => "client",
        };
        match field.and_then(|f| origin.describe(f)) {
            Some(source) => anyhow::Error::new(err)
                .context(format!("{source}: building the {side} TLS context")),
            None => anyhow::Error::new(err).context(format!("building the {side} TLS context")),
        }
    })
}

/// A key-exchange group list, names separated by `,` or by `:` as OpenSSL
/// writes them (`X25519MLKEM768:X25519`); each name is parsed, and refused
/// with the core's message, by the core's own parser.
#[derive(Debug, Clone, Copy, Default)]
pub struct GroupList;

impl clap::builder::TypedValueParser for GroupList {
    type Value = Vec<KeyExchange>;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Vec<KeyExchange>, clap::Error> {
        let one = <KeyExchange as clap::builder::ValueParserFactory>::value_parser();
        match value.to_str() {
            Some(text) => text
                .split([',', ':'])
                .map(|name| one.parse_ref(cmd, arg, std::ffi::OsStr::new(name)))
                .collect(),
            // Not UTF-8: the core's parser says so, naming the flag.
            None => one.parse_ref(cmd, arg, value).map(|kx| vec![kx]),
        }
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        use cipherlink::clap_values::Vocabulary as _;
        Some(Box::new(KeyExchange::possible_values().into_iter()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct Flags {
        #[command(flatten)]
        tls: TlsArgs,
    }

    #[test]
    fn groups_split_on_commas_and_on_openssl_colons() -> Result<(), clap::Error> {
        use KeyExchange::*;
        for list in [
            "X25519MLKEM768,X25519,P-256",
            "X25519MLKEM768:X25519:prime256v1",
        ] {
            let flags = Flags::try_parse_from(["t", "--groups", list])?;
            assert_eq!(flags.tls.groups, Some(vec![X25519MlKem768, X25519, P256]));
        }
        let err = Flags::try_parse_from(["t", "--groups", "X25519:kyber768"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("--groups") && err.contains("\"kyber768\"") && err.contains("P-384"),
            "{err}"
        );
        Ok(())
    }
}
