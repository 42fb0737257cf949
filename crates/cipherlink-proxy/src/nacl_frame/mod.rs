//! The NaCl frame of the asyncio tunnel ("v1", its name on the wire and in
//! flags and files), sans-IO (docs/v1-frame.md).
//!
//! ```text
//!  plaintext --Sealer::seal--> [9-byte header | 24-byte nonce | tag + box] --> bytes
//!  bytes --Decoder::decode--> Frame --Opener::open--> plaintext
//! ```
//!
//! Nothing here reads a socket or a clock: the relay moves bytes, the tests
//! and the fuzz target feed slices. The frame is hand-written because it is
//! the seed's own format (no crate speaks it); the cryptography is the
//! `crypto_box` crate's NaCl box, unchanged.

mod decoder;
mod frame;
pub mod keys;
mod nonce;
mod session;

pub use decoder::{Decoder, Frame};
pub use frame::{
    FrameError, Header, DEFAULT_MAX_DATA_SIZE, HEADER_LEN, LIMIT_MAX_DATA_SIZE,
    MAX_FIRST_DATA_SIZE, NONCE_LEN, OVERHEAD, TAG_LEN, VERSION,
};
pub use nonce::{Mode, NonceSequence, ReplayGuard, Side, PREFIX_LEN, RECENT_NONCES};
pub use session::{open_frame, seal_frame, session, Keys, Opener, Sealer, V1Error};
