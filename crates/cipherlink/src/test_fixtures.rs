//! Fixtures of the crate's unit tests: one test PKI, one pair of contexts.

use crate::certs::{self, CertOptions};
use crate::{Config, Context, PemSource};

/// A server Context for `localhost` and a client Context that trusts its CA.
pub(crate) fn contexts() -> (Context, Context) {
    let bundle = certs::generate(&CertOptions::default()).expect("test certificates");
    let server = Context::server(
        &Config::builder()
            .identity(
                PemSource::inline(bundle.server.cert.clone()),
                PemSource::inline(bundle.server.key.clone()),
            )
            .build(),
    )
    .expect("server context");
    let client = Context::client(
        &Config::builder()
            .trusted_ca(PemSource::inline(bundle.ca.cert.clone()))
            .server_name("localhost")
            .build(),
    )
    .expect("client context");
    (server, client)
}
