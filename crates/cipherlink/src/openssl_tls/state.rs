//! What each OpenSSL connection (and context) keeps for the shared
//! callbacks, and the ex-data indices it is kept under. OpenSSL never
//! releases an ex-data index, so they are registered once per process, not
//! once per Context (which leaked a few per Context built).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslContext};

use super::chain_cache::ChainCache;
use super::errors::Verdict;
use crate::error::{Error, ImplementationDetail};

/// What the handshake of one connection showed the callbacks.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    /// ClientHellos a server saw: a second answers a HelloRetryRequest.
    pub(crate) hellos: AtomicU8,
    /// Whether the ServerHello (the last one, not a HelloRetryRequest)
    /// carried a key share: in TLS 1.3, whether a fresh (EC)DHE or ML-KEM
    /// exchange ran. OpenSSL reports the session's original group either way.
    pub(crate) key_share: AtomicBool,
    /// The earliest notAfter (Unix seconds) of the chain the peer was
    /// verified through in this handshake, trust anchor and certificates
    /// from the store included (OpenSSL dates them all); 0 if none was
    /// verified (a resumption, or no peer certificate). It dates the
    /// sessions the handshake leaves: resuming skips verification.
    pub(crate) verified_until: AtomicU64,
}

impl Notes {
    pub(crate) fn verified(&self, until: u64) {
        self.verified_until.store(until, Ordering::Relaxed);
    }

    /// `verified_until`, `None` for 0.
    pub(crate) fn verified_until(&self) -> Option<u64> {
        Some(self.verified_until.load(Ordering::Relaxed)).filter(|&until| until != 0)
    }
}

/// The ex-data indices, the same for every Context.
#[derive(Clone, Copy)]
pub(crate) struct Indices {
    pub(crate) verdict: Index<Ssl, Arc<Verdict>>,
    pub(crate) notes: Index<Ssl, Arc<Notes>>,
    /// The server name a client connection checks, which also keys its
    /// resumable sessions.
    pub(crate) server_name: Index<Ssl, String>,
    /// Until when the session a client connection offered may be resumed
    /// (Unix seconds): the tickets of a resumed session inherit it.
    pub(crate) offered_until: Index<Ssl, u64>,
    /// A context's verified-chain cache (`ffi::install_chain_cache`).
    pub(crate) chain_cache: Index<SslContext, Arc<ChainCache>>,
}

/// The indices, registered on first use.
pub(crate) fn indices() -> Result<Indices, Error> {
    static INDICES: OnceLock<Result<Indices, String>> = OnceLock::new();
    let registered = INDICES.get_or_init(|| {
        Ok(Indices {
            verdict: Ssl::new_ex_index().map_err(|e| e.to_string())?,
            notes: Ssl::new_ex_index().map_err(|e| e.to_string())?,
            server_name: Ssl::new_ex_index().map_err(|e| e.to_string())?,
            offered_until: Ssl::new_ex_index().map_err(|e| e.to_string())?,
            chain_cache: SslContext::new_ex_index().map_err(|e| e.to_string())?,
        })
    });
    registered.clone().map_err(|detail| Error::Implementation {
        implementation: "openssl",
        what: "connection state",
        detail: ImplementationDetail::openssl(detail),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{self, CertOptions};
    use crate::{Context, Implementation};

    fn contexts(bundle: &certs::CertBundle) {
        let mut server = bundle.server_config();
        server.trusted_cas = vec![crate::PemSource::inline(bundle.ca.cert.clone())];
        server.require_client_cert = true;
        server.implementation = Implementation::Openssl;
        Context::server(&server).expect("server");
        let mut client = bundle.mtls_client_config();
        client.implementation = Implementation::Openssl;
        Context::client(&client).expect("client");
    }

    /// Contexts share the indices: building more registers nothing new.
    #[test]
    fn contexts_register_no_indices_of_their_own() {
        let bundle = certs::generate(&CertOptions::default()).expect("test PKI");
        // Whatever registers once per process (ours, the openssl crate's
        // own) has done so after one round.
        contexts(&bundle);
        let before = Ssl::new_ex_index::<u8>().expect("an index").as_raw();
        for _ in 0..3 {
            contexts(&bundle);
        }
        let after = Ssl::new_ex_index::<u8>().expect("an index").as_raw();
        // Each Context used to take three (so 18 here); a test running
        // alongside may take one or two of its own.
        assert!(after - before <= 3, "{} indices taken", after - before - 1);
    }
}
