//! Fixtures of the crate's unit tests: one test PKI, one pair of contexts.

use crate::certs::{self, CertOptions};
use crate::Context;

/// A server Context for `localhost` and a client Context that trusts its CA.
pub(crate) fn contexts() -> (Context, Context) {
    let bundle = certs::generate(&CertOptions::default()).expect("test certificates");
    let server = Context::server(&bundle.server_config()).expect("server context");
    let mut client = bundle.client_config();
    client.server_name = Some("localhost".into());
    (server, Context::client(&client).expect("client context"))
}
