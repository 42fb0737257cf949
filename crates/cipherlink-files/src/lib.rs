//! How cipherlink writes and reads the files that matter.
//!
//! Every command that writes a key, a token store, a CA or a result file as
//! root goes through [`write()`] or [`NewFile`], so the rules are kept in one
//! place:
//!
//! * A file is written to a temporary file created exclusively (`O_EXCL`,
//!   a random name) in the target's own folder, with its final mode from the
//!   first byte, then flushed to disk, renamed over the target and the folder
//!   synced. A reader sees the old file or the new one, never half of one.
//! * Nothing is ever opened through a symlink for writing: a symlink planted
//!   at the target is replaced by the rename, not followed (`O_EXCL` refuses
//!   to create through one). [`open_private_append`] adds `O_NOFOLLOW`.
//! * [`Existing::Refuse`] is atomic: the rename refuses to replace a file that
//!   appeared in the meantime (`renameat2(RENAME_NOREPLACE)`, or a hard link).
//! * Missing parent folders are created (0700 for secrets). An existing
//!   folder must be ours or root's and writable by nobody else (unless
//!   sticky), with no other user's symlink or world-writable folder on the
//!   way: another user could otherwise swap what we wrote, or steer it.
//! * Secrets are read by [`read_secret`], which refuses a file that group or
//!   others can read or another user owns (as ssh does), bounds the length
//!   before reading, never blocks on a FIFO, and returns memory that is
//!   wiped when dropped.
//!
//! A hand-written module rather than a crate: `tempfile` does the exclusive
//! creation and the no-clobber rename; what is added is the policy.

mod append;
mod error;
mod read;
mod trust;
mod write;

pub use append::open_private_append;
pub use error::FileError;
pub use read::{read_secret, read_secret_text, read_trusted_text};
pub use write::{write, Access, Existing, NewFile, Owner};
