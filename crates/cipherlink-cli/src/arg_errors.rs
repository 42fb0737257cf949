//! Command-line mistakes, reported without steering a user toward an
//! option that weakens verification: clap suggests the nearest flag for a
//! typo, and for `--skip-server-name-check` that would be
//! `--dangerous-skip-server-name-check`. Such a tip (and the usage line
//! built around it) is dropped; every other tip stays.

use clap::error::{ContextKind, ErrorKind};
use clap::CommandFactory;

/// Spellings that turn off a check: the `--dangerous-*` flags and the old
/// names they still answer to.
const WEAKENING: [&str; 4] = [
    "--dangerous-",
    "--accept-legacy-certs",
    "--accept-cn-only",
    "--legacy-cn-certs",
];

/// `error`, without a suggestion of a weakening flag.
pub fn without_weakening_tips<C: CommandFactory>(error: clap::Error) -> clap::Error {
    if error.kind() != ErrorKind::UnknownArgument {
        return error;
    }
    let weakening = error
        .get(ContextKind::SuggestedArg)
        .is_some_and(|tip| WEAKENING.iter().any(|w| tip.to_string().contains(w)));
    if !weakening {
        return error;
    }
    let mut plain = clap::Error::new(ErrorKind::UnknownArgument).with_cmd(&C::command());
    for (kind, value) in error.context() {
        if matches!(kind, ContextKind::InvalidArg) {
            plain.insert(kind, value.clone());
        }
    }
    plain
}
