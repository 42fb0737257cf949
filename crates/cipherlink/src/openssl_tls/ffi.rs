//! The two OpenSSL calls the safe `openssl` crate does not offer safely.
//! Everything else in the OpenSSL implementation is safe code.

#![allow(unsafe_code)]

use std::ffi::CStr;

use foreign_types::ForeignTypeRef;
use openssl::ssl::{SslRef, SslSessionRef};

/// The name of the key-exchange group the handshake settled on, as OpenSSL
/// spells it (`X25519MLKEM768`, `x25519`, `secp256r1`, ...).
pub(crate) fn negotiated_group(ssl: &SslRef) -> Option<&'static str> {
    // SAFETY: `ssl` is a live SSL for the duration of the call.
    // SSL_get0_group_name (OpenSSL 3.2+) returns NULL or a pointer to a
    // NUL-terminated name in OpenSSL's static group tables, which live as
    // long as the library does; it never frees or retains `ssl`.
    let name = unsafe { openssl_sys::SSL_get0_group_name(ssl.as_ptr()) };
    if name.is_null() {
        return None;
    }
    // SAFETY: non-null, NUL-terminated and static, as above.
    unsafe { CStr::from_ptr(name) }.to_str().ok()
}

/// Offers `session` for resumption on a connection not yet started.
///
/// Callers pass only sessions that connections of the same `SslContext`
/// produced: [`super::session_cache::SessionCache`] belongs to one client
/// Context and is filled only by that Context's new-session callback (it
/// keeps them DER-encoded and decodes them here, see its docs).
pub(crate) fn offer_session(ssl: &mut SslRef, session: &SslSessionRef) -> bool {
    // SAFETY: `SslRef::set_session` is unsafe only because the session must
    // belong to the same SSL_CTX as `ssl` (same method and version range),
    // which the caller guarantees: it was negotiated by a connection of this
    // very context (see above). OpenSSL takes its own reference to it.
    unsafe { ssl.set_session(session) }.is_ok()
}
