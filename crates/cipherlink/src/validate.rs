//! The checks of a [`Config`] that do not depend on the TLS implementation:
//! which fields belong to which role, what needs what, and the key-exchange
//! policy. Both implementations run them first, so a mistake reads the same
//! whichever one carries the tunnel.

use crate::config::{Config, PemSource};
use crate::error::Error;

const SERVER_ONLY: [&str; 3] = [
    "require_client_cert",
    "allowed_identities",
    "dangerous.client_certs_from_system_roots",
];
const CLIENT_ONLY: [&str; 3] = [
    "server_name",
    "dangerous.accept_cn_only_certificates",
    "dangerous.skip_server_name_check",
];

/// Whether and how a server asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientAuth {
    /// No `trusted_cas`: no certificate is asked for.
    None,
    /// Asked for, verified when sent, not required.
    Optional,
    /// Required (`require_client_cert`).
    Required,
}

/// Checks a server configuration's implementation-independent fields and
/// returns its certificate and key sources.
pub(crate) fn server(config: &Config) -> Result<(&PemSource, &PemSource), Error> {
    for (field, set) in CLIENT_ONLY.iter().zip([
        config.server_name.is_some(),
        config.dangerous.accept_cn_only_certificates,
        config.dangerous.skip_server_name_check,
    ]) {
        if set {
            return Err(Error::config(
                field,
                "is a client option; remove it from a server configuration",
            ));
        }
    }
    groups(config)?;
    let (Some(cert), Some(key)) = (&config.certificate, &config.private_key) else {
        return Err(Error::config(
            if config.certificate.is_none() {
                "certificate"
            } else {
                "private_key"
            },
            "a server needs both `certificate` and `private_key` \
                 (make a test set with `cipherlink certs --out DIR`)",
        ));
    };
    Ok((cert, key))
}

/// Checks a client configuration's implementation-independent fields and
/// returns its own certificate and key, if it has them (mutual TLS).
pub(crate) fn client(config: &Config) -> Result<Option<(&PemSource, &PemSource)>, Error> {
    for (field, set) in SERVER_ONLY.iter().zip([
        config.require_client_cert,
        !config.allowed_identities.is_empty(),
        config.dangerous.client_certs_from_system_roots,
    ]) {
        if set {
            return Err(Error::config(
                field,
                "is a server option; remove it from a client configuration",
            ));
        }
    }
    groups(config)?;
    if config.trusted_cas.is_empty() {
        return Err(Error::config(
            "trusted_cas",
            "a client needs the CA that signed the server's certificate \
                 (a PEM file such as ca.crt, or \"system\" for the OS roots)",
        ));
    }
    if config.dangerous.skip_server_name_check && trusts_system_roots(config) {
        return Err(Error::config(
            "dangerous.skip_server_name_check",
            "is refused with `trusted_cas = [\"system\"]`: without the name check, any \
             certificate any public CA issued to anyone would be accepted. Trust the private \
             CA that issues your servers' certificates instead",
        ));
    }
    match (&config.certificate, &config.private_key) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(Error::config(
            "private_key",
            "a client certificate needs its private key",
        )),
        (None, Some(_)) => Err(Error::config(
            "certificate",
            "a client private key needs its certificate",
        )),
    }
}

/// The key-exchange list: not empty, no repeats, within the policy. A list
/// the user did not set is trimmed to the policy instead (`Config::groups`).
pub(crate) fn groups(config: &Config) -> Result<(), Error> {
    let groups = config.groups();
    if groups.is_empty() {
        return Err(Error::config(
            "key_exchange",
            "is empty; name at least one group, e.g. [\"X25519MLKEM768\", \"X25519\"]",
        ));
    }
    for (i, group) in groups.iter().enumerate() {
        if groups[..i].contains(group) {
            return Err(Error::config(
                "key_exchange",
                format!("{group} is listed twice"),
            ));
        }
    }
    config.compliance.check(&groups)?;
    Ok(())
}

/// A server's client-certificate policy, checked for consistency.
pub(crate) fn client_auth(config: &Config) -> Result<ClientAuth, Error> {
    if config.trusted_cas.is_empty() {
        if config.require_client_cert {
            return Err(Error::config(
                "require_client_cert",
                "needs `trusted_cas`: the CA that signs client certificates",
            ));
        }
        if !config.allowed_identities.is_empty() {
            return Err(Error::config(
                "allowed_identities",
                "needs `require_client_cert` and `trusted_cas`",
            ));
        }
        return Ok(ClientAuth::None);
    }
    if !config.allowed_identities.is_empty() && !config.require_client_cert {
        return Err(Error::config(
            "allowed_identities",
            "needs `require_client_cert = true`: an allow-list is pointless if clients may skip certificates",
        ));
    }
    if trusts_system_roots(config) && !config.dangerous.client_certs_from_system_roots {
        return Err(Error::config(
            "trusted_cas",
            "\"system\" on a server would authenticate clients by the system roots, which \
             vouch for public web sites, not for your clients: anyone holding any public \
             certificate would get in. Name the CA that issues client certificates, or set \
             `dangerous.client_certs_from_system_roots` if that is really meant",
        ));
    }
    Ok(if config.require_client_cert {
        ClientAuth::Required
    } else {
        ClientAuth::Optional
    })
}

/// Whether `trusted_cas` names the operating system's roots.
pub(crate) fn trusts_system_roots(config: &Config) -> bool {
    config.trusted_cas.iter().any(PemSource::is_system_roots)
}

/// The configured server name, checked (client).
pub(crate) fn server_name(
    config: &Config,
) -> Result<Option<rustls::pki_types::ServerName<'static>>, Error> {
    match &config.server_name {
        Some(name) => Ok(Some(
            rustls::pki_types::ServerName::try_from(name.clone()).map_err(|_| {
                Error::config(
                    "server_name",
                    format!("{name:?} is neither a DNS name nor an IP address"),
                )
            })?,
        )),
        None => Ok(None),
    }
}
