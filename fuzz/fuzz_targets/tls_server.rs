//! A server Context as `cipherlink serve` builds it, fed arbitrary bytes as
//! if from a client, in memory: rustls' record and handshake parsing, the
//! core's verifiers and key exchange choices must refuse them without panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;

fn server_config() -> &'static Arc<rustls::ServerConfig> {
    static CONFIG: OnceLock<Arc<rustls::ServerConfig>> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let bundle = cipherlink::certs::generate(&cipherlink::certs::CertOptions::default())
            .expect("test certificates");
        let config = {
 let mut edited = cipherlink::Config::default();
 edited.certificate = Some(cipherlink::PemSource::inline(bundle.server.cert.clone()));
 edited.private_key = Some(cipherlink::PemSource::inline(bundle.server.key.clone()));
 edited.trusted_cas = vec![cipherlink::PemSource::inline(bundle.ca.cert.clone())];
 edited
};
        cipherlink::Context::server(&config)
            .expect("server context")
            .rustls_server_config()
            .expect("a server context has a server config")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut conn) = rustls::ServerConnection::new(server_config().clone()) else {
        return;
    };
    let mut input = data;
    // Feed in pieces as a socket would, answering whatever the server writes.
    while !input.is_empty() {
        match conn.read_tls(&mut input) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if conn.process_new_packets().is_err() {
            break;
        }
        let mut sink = Vec::new();
        while conn.wants_write() {
            if conn.write_tls(&mut sink).is_err() {
                break;
            }
        }
    }
});
