//! The OpenSSL calls the safe `openssl` crate does not offer: two it offers
//! only unsafely, and the certificate-verification hook (with the two
//! accessors it needs) that the verified-chain cache plugs into. Everything
//! else in the OpenSSL implementation is safe code.

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::os::raw::{c_int, c_void};
use std::sync::Arc;

use foreign_types::ForeignTypeRef;
use openssl::error::ErrorStack;
use openssl::ssl::{SslContext, SslContextBuilder, SslRef, SslSessionRef};
use openssl::stack::StackRef;
use openssl::x509::{X509Ref, X509StoreContextRef, X509};

use super::chain_cache::ChainCache;

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

// Declared here because openssl-sys does not bind them; all three are
// public OpenSSL API since 1.1.0 and live in the libraries openssl-sys links.
extern "C" {
    fn SSL_CTX_set_cert_verify_callback(
        ctx: *mut openssl_sys::SSL_CTX,
        callback: Option<
            unsafe extern "C" fn(*mut openssl_sys::X509_STORE_CTX, *mut c_void) -> c_int,
        >,
        arg: *mut c_void,
    );
    fn X509_STORE_CTX_get0_cert(ctx: *const openssl_sys::X509_STORE_CTX) -> *mut openssl_sys::X509;
    fn X509_STORE_CTX_get0_untrusted(
        ctx: *const openssl_sys::X509_STORE_CTX,
    ) -> *mut openssl_sys::stack_st_X509;
}

/// Makes `cache` decide, for every connection of this context, whether the
/// peer's chain needs OpenSSL's full verification (`X509_verify_cert`,
/// which `cache` runs itself on a miss). The context owns `cache` from here
/// on (its ex_data), so it lives exactly as long as any connection that
/// can call back into it.
pub(crate) fn install_chain_cache(
    builder: &mut SslContextBuilder,
    cache: Arc<ChainCache>,
) -> Result<(), ErrorStack> {
    let index = SslContext::new_ex_index::<Arc<ChainCache>>()?;
    let arg = Arc::as_ptr(&cache).cast_mut().cast::<c_void>();
    builder.set_ex_data(index, cache);
    // SAFETY: `builder` is a live SSL_CTX. `arg` points into the Arc just
    // stored in that SSL_CTX's ex_data, which OpenSSL frees only with the
    // SSL_CTX; every SSL that can run the callback holds a reference to its
    // SSL_CTX, so `arg` is valid whenever `verify_with_cache` runs.
    unsafe {
        SSL_CTX_set_cert_verify_callback(builder.as_ptr(), Some(verify_with_cache), arg);
    }
    Ok(())
}

/// OpenSSL's certificate-verification hook: 1 accepts the chain, 0 refuses.
unsafe extern "C" fn verify_with_cache(
    ctx: *mut openssl_sys::X509_STORE_CTX,
    arg: *mut c_void,
) -> c_int {
    // A panic must not unwind into C: it refuses the chain instead.
    let accepted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: `arg` is the `ChainCache` of `install_chain_cache`, alive
        // for as long as the SSL_CTX (see there), and only read here.
        let cache = unsafe { &*arg.cast::<ChainCache>() };
        // SAFETY: OpenSSL passes the live, initialised X509_STORE_CTX of
        // this verification, exclusively ours until we return.
        let ctx = unsafe { X509StoreContextRef::from_ptr_mut(ctx) };
        cache.verify(ctx)
    }));
    c_int::from(matches!(accepted, Ok(true)))
}

/// The chain the peer presented, leaf first, as DER (empty if OpenSSL has
/// no leaf in `ctx` or one does not encode).
pub(crate) fn presented_chain(ctx: &X509StoreContextRef) -> Vec<Vec<u8>> {
    // SAFETY: `ctx` is a live X509_STORE_CTX; get0 accessors return
    // borrowed pointers (or NULL) valid while `ctx` is, which outlives this
    // function; nothing is retained or freed.
    let (leaf, untrusted) = unsafe {
        (
            X509_STORE_CTX_get0_cert(ctx.as_ptr()),
            X509_STORE_CTX_get0_untrusted(ctx.as_ptr()),
        )
    };
    if leaf.is_null() {
        return Vec::new();
    }
    // SAFETY: non-null and borrowed from `ctx`, as above.
    let Ok(leaf_der) = unsafe { X509Ref::from_ptr(leaf) }.to_der() else {
        return Vec::new();
    };
    let mut chain = vec![leaf_der];
    if !untrusted.is_null() {
        // SAFETY: non-null STACK_OF(X509) borrowed from `ctx`, as above.
        let stack = unsafe { StackRef::<X509>::from_ptr(untrusted) };
        for cert in stack {
            let Ok(der) = cert.to_der() else {
                return Vec::new();
            };
            // A client's untrusted stack starts with the leaf itself.
            if der != chain[0] {
                chain.push(der);
            }
        }
    }
    chain
}
