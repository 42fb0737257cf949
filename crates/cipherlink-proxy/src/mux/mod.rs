//! Many TCP tunnels as streams over one encrypted connection (a link or a
//! TLS tunnel), so a new tunnel costs a stream open instead of a key
//! exchange. Wire: docs/mux.md.
//!
//! Built here rather than on the `yamux` crate: yamux speaks futures-io and
//! must be driven through one `Connection` polled for inbound and outbound
//! streams alike, so it would still need a driver task, a compat layer for
//! both the connection and every stream, and the proxy's own rules on top
//! (a lost connection failing each stream as an error rather than an end of
//! stream, the server refusing streams with a reason, an open that must be
//! answered in time, a keepalive for a peer that vanished silently). The
//! protocol those rules need is small: eight frames,
//! per-stream credit windows as yamux and HTTP/2 have them, no
//! connection-level window (each stream's buffer is bounded by its own
//! window, and the number of streams by `Limits::max_streams`). It is split
//! as the link crate's protocol is: [`frame`] (codec, fuzzed) and
//! [`session`] (state, no I/O) are tested without sockets; `driver` and
//! `stream` are the tokio side.
//!
//! Flow control: each stream starts with a window of
//! [`session::DEFAULT_WINDOW`] bytes each way. A sender sends no more than
//! its credit; the receiver buffers what arrives and grants credit back
//! (WINDOW) as its reader consumes, in batches of half a window. So a
//! stream whose reader stalls holds at most one window, its sender stops,
//! and the connection's reader never waits for it: every other stream
//! keeps moving. A peer that sends past its credit breaks the protocol and
//! loses the connection.

pub mod frame;
pub mod keepalive;
pub mod session;

mod driver;
mod stream;

pub use driver::MuxConn;
pub use frame::{Frame, FrameError, Reason};
pub use keepalive::KeepaliveConfig;
pub use session::{Limits, MuxError, Side};
pub use stream::MuxStream;

#[cfg(test)]
mod tests;
