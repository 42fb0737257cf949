//! The OpenSSL calls the safe `openssl` crate does not offer: two it offers
//! only unsafely, the certificate-verification hook (with the two
//! accessors it needs) that the verified-chain cache plugs into, the
//! ticket-decryption hook that refuses sessions past their peer
//! certificate's notAfter, and the message callback that sees whether a
//! ServerHello carried a key share. Everything else in the OpenSSL
//! implementation is safe code.

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::os::raw::{c_int, c_void};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use foreign_types::ForeignTypeRef;
use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslContext, SslContextBuilder, SslRef, SslSessionRef};
use openssl::stack::StackRef;
use openssl::x509::{X509Ref, X509StoreContextRef, X509};

use super::chain_cache::ChainCache;
use super::state::Notes;

/// The name of the key-exchange group the handshake settled on, as OpenSSL
/// spells it (`X25519MLKEM768`, `x25519`, `secp256r1`, ...).
pub(crate) fn negotiated_group(ssl: &SslRef) -> Option<&str> {
    // SAFETY: `ssl` is a live SSL for the duration of the call.
    // SSL_get0_group_name (OpenSSL 3.2+) returns NULL or a pointer to a
    // NUL-terminated name in the group list of the SSL's SSL_CTX (built-in
    // or provider-supplied names), which lives as long as that SSL_CTX; the
    // SSL holds a reference to its SSL_CTX, so the name outlives `ssl`'s
    // borrow, which the returned lifetime is tied to.
    let name = unsafe { openssl_sys::SSL_get0_group_name(ssl.as_ptr()) };
    if name.is_null() {
        return None;
    }
    // SAFETY: non-null, NUL-terminated, alive as long as `ssl` (above).
    unsafe { CStr::from_ptr(name) }.to_str().ok()
}

/// Whether the peer's close_notify arrived (`SSL_RECEIVED_SHUTDOWN`).
pub(crate) fn close_notify_received(ssl: &SslRef) -> bool {
    const SSL_RECEIVED_SHUTDOWN: c_int = 2;
    // SAFETY: `ssl` is a live SSL; the call only reads its shutdown state.
    let state = unsafe { openssl_sys::SSL_get_shutdown(ssl.as_ptr()) };
    state & SSL_RECEIVED_SHUTDOWN != 0
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

/// A TLS handshake record's content type, and the ServerHello's message type.
const HANDSHAKE: c_int = 22;
const SERVER_HELLO: u8 = 2;

/// `SSL_set_msg_callback`'s callback.
type MessageCallback = unsafe extern "C" fn(
    write_p: c_int,
    version: c_int,
    content_type: c_int,
    buf: *const c_void,
    len: usize,
    ssl: *mut openssl_sys::SSL,
    arg: *mut c_void,
);

/// `SSL_CTX_set_session_ticket_cb`'s decryption callback.
type DecryptTicketCallback = unsafe extern "C" fn(
    ssl: *mut openssl_sys::SSL,
    session: *mut openssl_sys::SSL_SESSION,
    key_name: *const u8,
    key_name_len: usize,
    status: c_int,
    arg: *mut c_void,
) -> c_int;

/// `SSL_CTX_set_session_ticket_cb`'s generation callback.
type GenerateTicketCallback = unsafe extern "C" fn(*mut openssl_sys::SSL, *mut c_void) -> c_int;

// Ticket statuses and the decryption callback's answers (`ssl.h`).
const SSL_TICKET_SUCCESS: c_int = 5;
const SSL_TICKET_SUCCESS_RENEW: c_int = 6;
const SSL_TICKET_RETURN_IGNORE_RENEW: c_int = 2;
const SSL_TICKET_RETURN_USE: c_int = 3;
const SSL_TICKET_RETURN_USE_RENEW: c_int = 4;
/// `SSL_set_msg_callback_arg` is a macro over this control.
const SSL_CTRL_SET_MSG_CALLBACK_ARG: c_int = 16;

// Declared here because openssl-sys does not bind them; all are public
// OpenSSL API (since 1.1.0; the ticket callback since 1.1.1) and live in
// the libraries openssl-sys links.
extern "C" {
    fn SSL_set_msg_callback(ssl: *mut openssl_sys::SSL, callback: Option<MessageCallback>);
    fn SSL_CTX_set_session_ticket_cb(
        ctx: *mut openssl_sys::SSL_CTX,
        generate: Option<GenerateTicketCallback>,
        decrypt: Option<DecryptTicketCallback>,
        arg: *mut c_void,
    ) -> c_int;
    fn SSL_SESSION_get0_peer(session: *mut openssl_sys::SSL_SESSION) -> *mut openssl_sys::X509;
    fn SSL_SESSION_set1_ticket_appdata(
        session: *mut openssl_sys::SSL_SESSION,
        data: *const c_void,
        len: usize,
    ) -> c_int;
    fn SSL_SESSION_get0_ticket_appdata(
        session: *mut openssl_sys::SSL_SESSION,
        data: *mut *mut c_void,
        len: *mut usize,
    ) -> c_int;
    fn SSL_CTX_set_cert_verify_callback(
        ctx: *mut openssl_sys::SSL_CTX,
        callback: Option<
            unsafe extern "C" fn(*mut openssl_sys::X509_STORE_CTX, *mut c_void) -> c_int,
        >,
        arg: *mut c_void,
    );
    fn X509_STORE_CTX_get0_cert(ctx: *const openssl_sys::X509_STORE_CTX) -> *mut openssl_sys::X509;
    fn SSL_CTX_set_block_padding_ex(
        ctx: *mut openssl_sys::SSL_CTX,
        app_block_size: usize,
        hs_block_size: usize,
    ) -> c_int;
    fn X509_STORE_CTX_get0_untrusted(
        ctx: *const openssl_sys::X509_STORE_CTX,
    ) -> *mut openssl_sys::stack_st_X509;
}

/// `SSL_CTX_set1_client_sigalgs_list` and `SSL_CTX_clear_cert_flags` are
/// macros over these controls (`ssl.h`).
const SSL_CTRL_CLEAR_CERT_FLAGS: c_int = 100;
const SSL_CTRL_SET_CLIENT_SIGALGS_LIST: c_int = 102;
/// `SSL_CERT_FLAG_TLS_STRICT` (`StrictCertCheck`).
const SSL_CERT_FLAG_TLS_STRICT: std::os::raw::c_long = 1;

/// Sets back what a system configuration may have set on a new context
/// and the safe `openssl` crate has no setter for: the signature schemes
/// asked of a client (`ClientSignatureAlgorithms`) to `sigalgs`, strict
/// certificate-chain checks (`StrictCertCheck`, which refuse chains rustls
/// accepts) off, and no record padding (`RecordPadding`).
pub(crate) fn undo_system_config(
    builder: &mut SslContextBuilder,
    sigalgs: &str,
) -> Result<(), openssl::error::ErrorStack> {
    let sigalgs = std::ffi::CString::new(sigalgs).map_err(|_| openssl::error::ErrorStack::get())?;
    // SAFETY: `builder` is a live SSL_CTX. The client-sigalgs control reads
    // the NUL-terminated list for the duration of the call only; the
    // cert-flags control takes a plain value and no pointer;
    // SSL_CTX_set_block_padding_ex (OpenSSL 3.4+) takes sizes only.
    let (listed, padding) = unsafe {
        let listed = openssl_sys::SSL_CTX_ctrl(
            builder.as_ptr(),
            SSL_CTRL_SET_CLIENT_SIGALGS_LIST,
            0,
            sigalgs.as_ptr().cast_mut().cast::<c_void>(),
        );
        openssl_sys::SSL_CTX_ctrl(
            builder.as_ptr(),
            SSL_CTRL_CLEAR_CERT_FLAGS,
            SSL_CERT_FLAG_TLS_STRICT,
            std::ptr::null_mut(),
        );
        let padding = SSL_CTX_set_block_padding_ex(builder.as_ptr(), 0, 0);
        (listed, padding)
    };
    if listed != 1 || padding != 1 {
        return Err(openssl::error::ErrorStack::get());
    }
    Ok(())
}

/// Makes `cache` decide, for every connection of this context, whether the
/// peer's chain needs OpenSSL's full verification (`X509_verify_cert`,
/// which `cache` runs itself on a miss). The context owns `cache` from here
/// on (its ex_data), so it lives exactly as long as any connection that
/// can call back into it.
pub(crate) fn install_chain_cache(
    builder: &mut SslContextBuilder,
    index: Index<SslContext, Arc<ChainCache>>,
    cache: Arc<ChainCache>,
) {
    let arg = Arc::as_ptr(&cache).cast_mut().cast::<c_void>();
    builder.set_ex_data(index, cache);
    // SAFETY: `builder` is a live SSL_CTX. `arg` points into the Arc just
    // stored in that SSL_CTX's ex_data, which OpenSSL frees only with the
    // SSL_CTX; every SSL that can run the callback holds a reference to its
    // SSL_CTX, so `arg` is valid whenever `verify_with_cache` runs.
    unsafe {
        SSL_CTX_set_cert_verify_callback(builder.as_ptr(), Some(verify_with_cache), arg);
    }
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

/// Makes a server context refuse (as if it could not decrypt it, so that
/// a full handshake follows) any ticket whose session's client chain has
/// expired since: resuming skips certificate verification, and OpenSSL
/// would resume it for the ticket's lifetime. Each ticket carries (as its
/// application data, inside the encrypted ticket) the earliest notAfter of
/// the chain the client was verified through, intermediates and trust
/// anchor included; the session itself keeps only the leaf.
pub(crate) fn refuse_tickets_past_peer_expiry(builder: &mut SslContextBuilder) {
    // SAFETY: `builder` is a live SSL_CTX; the callbacks keep no state
    // (NULL argument).
    unsafe {
        SSL_CTX_set_session_ticket_cb(
            builder.as_ptr(),
            Some(date_ticket),
            Some(decrypt_ticket),
            std::ptr::null_mut(),
        );
    }
}

/// OpenSSL's ticket-generation hook: writes the date of the chain verified
/// in this handshake into the session's ticket data. A resumed session's
/// new ticket keeps the data it was resumed with (OpenSSL copies it), as
/// no chain was verified. 1 lets the ticket be made.
unsafe extern "C" fn date_ticket(ssl: *mut openssl_sys::SSL, _arg: *mut c_void) -> c_int {
    if ssl.is_null() {
        return 1;
    }
    // A panic must not unwind into C: the ticket is then not dated, and
    // `decrypt_ticket` refuses an undated one that has a client certificate.
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: OpenSSL passes the live SSL making the ticket, ours to
        // read until we return.
        let ssl_ref = unsafe { SslRef::from_ptr(ssl) };
        let Some(until) = super::state::indices()
            .ok()
            .and_then(|indices| ssl_ref.ex_data(indices.notes))
            .and_then(|notes| notes.verified_until())
        else {
            return;
        };
        let data = until.to_be_bytes();
        // SAFETY: SSL_get_session returns the SSL's current session (or
        // NULL), borrowed; set1 copies `data`, which lives for the call.
        unsafe {
            let session = openssl_sys::SSL_get_session(ssl);
            if !session.is_null() {
                SSL_SESSION_set1_ticket_appdata(session, data.as_ptr().cast(), data.len());
            }
        }
    });
    1
}

/// The date `date_ticket` wrote into `session`'s ticket data, if any.
///
/// # Safety
/// `session` must be a live SSL_SESSION, not freed during the call.
unsafe fn ticket_date(session: *mut openssl_sys::SSL_SESSION) -> Option<u64> {
    let mut data: *mut c_void = std::ptr::null_mut();
    let mut len = 0usize;
    // SAFETY: `session` is live (the caller's contract); get0 borrows the
    // session's copy of the data, valid while the session is.
    let got = unsafe { SSL_SESSION_get0_ticket_appdata(session, &mut data, &mut len) };
    if got != 1 || data.is_null() || len != 8 {
        return None;
    }
    // SAFETY: non-null, `len` (8) readable bytes borrowed from `session`.
    let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) };
    bytes.try_into().ok().map(u64::from_be_bytes)
}

/// The date of the chain a resumed server session's client was verified
/// through (its ticket data), if it has one.
pub(crate) fn resumed_chain_date(ssl: &SslRef) -> Option<u64> {
    // SAFETY: `ssl` is a live SSL; SSL_get_session borrows its session,
    // alive as long as `ssl`'s borrow.
    unsafe {
        let session = openssl_sys::SSL_get_session(ssl.as_ptr());
        if session.is_null() {
            return None;
        }
        ticket_date(session)
    }
}

/// OpenSSL's ticket-decryption hook: keeps its own decision (use, renew,
/// ignore) except that a session whose client chain has expired, or that
/// has a client certificate but no date, is not used.
unsafe extern "C" fn decrypt_ticket(
    _ssl: *mut openssl_sys::SSL,
    session: *mut openssl_sys::SSL_SESSION,
    _key_name: *const u8,
    _key_name_len: usize,
    status: c_int,
    _arg: *mut c_void,
) -> c_int {
    let usable = status == SSL_TICKET_SUCCESS || status == SSL_TICKET_SUCCESS_RENEW;
    if !usable || session.is_null() {
        // Nothing to resume: OpenSSL's own answer (a full handshake).
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    }
    // A panic must not unwind into C: the session is not used instead.
    let expired = std::panic::catch_unwind(|| {
        // SAFETY: `session` is the live, non-null session OpenSSL just
        // decrypted, ours to read until we return; get0 borrows its peer
        // certificate (or NULL) for as long as the session lives.
        let peer = unsafe { SSL_SESSION_get0_peer(session) };
        if peer.is_null() {
            return false;
        }
        // SAFETY: as above.
        let Some(until) = (unsafe { ticket_date(session) }) else {
            return true;
        };
        // SAFETY: non-null and borrowed from `session`, as above.
        let peer = unsafe { X509Ref::from_ptr(peer) };
        let now = rustls::pki_types::UnixTime::now().as_secs();
        let leaf_expired = openssl::asn1::Asn1Time::days_from_now(0)
            .map_or(true, |asn1_now| peer.not_after() <= asn1_now);
        leaf_expired || now > until
    });
    match (expired, status) {
        (Ok(false), SSL_TICKET_SUCCESS) => SSL_TICKET_RETURN_USE,
        (Ok(false), _) => SSL_TICKET_RETURN_USE_RENEW,
        _ => SSL_TICKET_RETURN_IGNORE_RENEW,
    }
}

/// Records in `notes` whether the connection's ServerHello (sent or
/// received) carries a key share. `notes` must be what `ssl`'s ex_data
/// holds for it, so that it lives as long as `ssl` does.
pub(crate) fn watch_server_hello(ssl: &mut Ssl, notes: &Arc<Notes>) {
    let arg = Arc::as_ptr(notes).cast_mut().cast::<c_void>();
    // SAFETY: `ssl` is a live SSL. `arg` points into an Arc that the SSL's
    // own ex_data holds (the caller's contract), freed only with the SSL,
    // so it is valid whenever the callback runs; the callback only reads
    // `buf` within `len` and stores into the atomics.
    unsafe {
        openssl_sys::SSL_ctrl(ssl.as_ptr(), SSL_CTRL_SET_MSG_CALLBACK_ARG, 0, arg);
        SSL_set_msg_callback(ssl.as_ptr(), Some(on_message));
    }
}

unsafe extern "C" fn on_message(
    _write_p: c_int,
    _version: c_int,
    content_type: c_int,
    buf: *const c_void,
    len: usize,
    _ssl: *mut openssl_sys::SSL,
    arg: *mut c_void,
) {
    if content_type != HANDSHAKE || buf.is_null() || arg.is_null() {
        return;
    }
    // SAFETY: OpenSSL passes `len` readable bytes at `buf` for the call.
    let message = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) };
    if message.first() != Some(&SERVER_HELLO) {
        return;
    }
    // A panic must not unwind into C; the parser does not panic, but if it
    // did the connection would count as without key share, and fail.
    let parsed = std::panic::catch_unwind(|| super::server_hello::key_share(message));
    // SAFETY: `arg` is the `Notes` of `watch_server_hello`, alive as long
    // as the SSL, and only read through shared atomics.
    let notes = unsafe { &*arg.cast::<Notes>() };
    match parsed {
        Ok(Some(has_key_share)) => notes.key_share.store(has_key_share, Ordering::Relaxed),
        // A HelloRetryRequest says nothing yet.
        Ok(None) => {}
        Err(_) => notes.key_share.store(false, Ordering::Relaxed),
    }
}

/// Sessions in a context's internal cache (`SSL_CTX_sess_number`).
#[cfg(test)]
pub(crate) fn internal_sessions(context: &SslContext) -> std::os::raw::c_long {
    const SSL_CTRL_SESS_NUMBER: c_int = 20;
    // SAFETY: `context` is a live SSL_CTX; the control only reads a count.
    unsafe {
        openssl_sys::SSL_CTX_ctrl(
            context.as_ptr(),
            SSL_CTRL_SESS_NUMBER,
            0,
            std::ptr::null_mut(),
        )
    }
}
