//! cipherlink core: encrypted, authenticated, post-quantum-ready links.
//!
//! ```text
//!  Config (TOML / flags) --build once, validate all--> Context (Arc, per role)
//!                                                         |
//!      any AsyncRead + AsyncWrite (TCP, Unix, duplex) --> Tunnel
//!                                                   handshake / read / write / close
//! ```
//!
//! A [`Context`] is immutable and shared; every configuration mistake is
//! reported when it is built, naming the field and the fix. A [`Tunnel`]
//! carries one session and reports what was negotiated ([`TunnelInfo`]).
//! Key exchange defaults to hybrid X25519MLKEM768 with classical fallbacks,
//! under a named [`Compliance`] policy.
//!
//! The TLS implementation is a configuration choice ([`Implementation`]):
//! rustls on aws-lc-rs, or (feature `openssl`, on by default) OpenSSL 3.6
//! built from source. The Tunnel, its states, [`TunnelInfo`] and the error
//! kinds are the same on both; [`implementations::available`] says what each
//! offers on this machine.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cipherlink::Error> {
//! use cipherlink::{certs, Config, Context, PemSource};
//! let bundle = certs::generate(&certs::CertOptions::default())?;
//! let server = Context::server(
//!     &Config::builder()
//!         .identity(
//!             PemSource::inline(bundle.server.cert.clone()),
//!             PemSource::inline(bundle.server.key.clone()),
//!         )
//!         .build(),
//! )?;
//! let client = Context::client(
//!     &Config::builder()
//!         .trusted_ca(PemSource::inline(bundle.ca.cert.clone()))
//!         .build(),
//! )?;
//! let (a, b) = tokio::io::duplex(64 * 1024);
//! let (server_side, client_side) = tokio::join!(
//!     server.accept(a, "client"),
//!     client.connect(b, "localhost"),
//! );
//! let mut tunnel = client_side?;
//! tunnel.write_all(b"PING").await?;
//! # drop(server_side);
//! # Ok(()) }
//! ```

mod alpn;
mod backend;
pub mod certs;
mod chain_cache;
mod chain_errors;
#[cfg(feature = "clap")]
pub mod clap_values;
pub mod compliance;
pub mod config;
mod config_builder;
mod context;
pub mod credentials;
pub mod duration;
pub mod error;
mod failure_log;
#[doc(hidden)]
pub mod fuzzing;
mod handshake_checks;
mod hkdf;
pub mod implementations;
mod key_log;
pub mod kx;
mod lean_stream;
pub mod legacy;
mod name_constraints;
#[cfg(feature = "openssl")]
mod openssl_tls;
pub mod serve_handler;
pub mod server;
mod session_dates;
#[cfg(test)]
mod test_fixtures;
mod tunnel;
mod validate;
mod verify;

pub use compliance::{ClassicalChoice, Compliance, PostQuantumChoice, UnknownChoice};
pub use config::{Config, Dangerous, Implementation, PemSource, UnknownImplementation};
pub use config_builder::ConfigBuilder;
pub use context::{Context, Role};
pub use credentials::Identity;
pub use error::{Error, ImplementationDetail};
pub use handshake_checks::SessionRefused;
pub use kx::KeyExchange;
pub use tunnel::{Tunnel, TunnelInfo, TunnelState};
pub use verify::IdentityNotAllowed;

/// Re-exported so users name the same rustls types this crate was built with.
pub use rustls;
