//! Text a peer chose (ids, map keys, cookie values, certificate names), cut
//! to a fixed length before it goes into a reply or a log line: a peer may
//! cost only what it sent, and an echo of a megabyte key list costs the log
//! a megabyte per refusal.

use std::borrow::Cow;

/// The most characters of one piece of peer text shown.
pub const MAX_PEER_TEXT: usize = 64;
/// The longest reason phrase (and error body) we answer with, in characters.
pub const MAX_REASON: usize = 256;
/// Map keys listed in an error before the rest are counted instead.
const MAX_KEYS_SHOWN: usize = 4;

/// `s` when at most `max` characters; else its first `max` characters,
/// `...` and its length in bytes.
pub fn cut(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some((at, _)) => Cow::Owned(format!("{}...({} bytes)", &s[..at], s.len())),
    }
}

/// A peer's str as `"..."` (Rust escapes), cut to [`MAX_PEER_TEXT`].
pub fn quoted(s: &str) -> String {
    match s.char_indices().nth(MAX_PEER_TEXT) {
        None => format!("{s:?}"),
        Some((at, _)) => format!("{:?}...({} bytes)", &s[..at], s.len()),
    }
}

/// Map keys for an error: comma-separated as the package prints them, each
/// cut, at most [`MAX_KEYS_SHOWN`] of them and then how many more.
pub fn key_list<'a>(keys: impl ExactSizeIterator<Item = &'a str>) -> String {
    let total = keys.len();
    let mut out: Vec<Cow<'_, str>> = keys.take(MAX_KEYS_SHOWN).map(|k| cut(k, 24)).collect();
    if total > MAX_KEYS_SHOWN {
        out.push(Cow::Owned(format!("... ({total} keys)")));
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_and_measured() {
        assert_eq!(cut("short", 8), "short");
        assert_eq!(cut(&"x".repeat(100), 4), "xxxx...(100 bytes)");
        // Never splits a character.
        assert_eq!(cut("ééééé", 2), "éé...(10 bytes)");
        let keys: Vec<String> = (0..1000).map(|k| format!("k{k}")).collect();
        let list = key_list(keys.iter().map(String::as_str));
        assert_eq!(list, "k0,k1,k2,k3,... (1000 keys)");
        assert!(quoted(&"q".repeat(10_000)).len() < 100);
    }
}
