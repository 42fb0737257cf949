//! The server's ALPN choice from a client's offered list, as sent on the
//! wire (length-prefixed names). rustls parses the list itself; OpenSSL's
//! selection callback hands us the client's raw bytes, so this parser sees
//! peer input and has a fuzz target (`alpn_offer`).

/// Our most preferred protocol that the client offered, as a slice of the
/// client's list (OpenSSL requires the answer to point into it). A
/// malformed list (an empty name, or a length past the end) offers nothing.
pub(crate) fn pick<'a>(ours: &[Vec<u8>], offered: &'a [u8]) -> Option<&'a [u8]> {
    let names = parse(offered)?;
    ours.iter()
        .find_map(|want| names.iter().find(|name| **name == want.as_slice()).copied())
}

/// The names of a length-prefixed list, or `None` if it is malformed.
pub(crate) fn parse(offered: &[u8]) -> Option<Vec<&[u8]>> {
    let mut names = Vec::new();
    let mut rest = offered;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len);
        if len == 0 || tail.len() < len {
            return None;
        }
        let (name, next) = tail.split_at(len);
        names.push(name);
        rest = next;
    }
    Some(names)
}

/// Our names in the wire's form (for OpenSSL's client list). Names longer than 255 bytes cannot be
/// sent, and empty ones are not names: both are left out.
#[cfg(any(feature = "openssl", test))]
pub(crate) fn wire(names: &[String]) -> Vec<u8> {
    let mut wire = Vec::new();
    for name in names {
        if let Ok(len @ 1..) = u8::try_from(name.len()) {
            wire.push(len);
            wire.extend_from_slice(name.as_bytes());
        }
    }
    wire
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(names: &[&str]) -> Vec<Vec<u8>> {
        names.iter().map(|n| n.as_bytes().to_vec()).collect()
    }

    #[test]
    fn our_preference_wins_and_the_answer_points_into_the_offer() {
        let offer = wire(&["http/1.1".into(), "h2".into()]);
        let chosen = pick(&ours(&["h2", "http/1.1"]), &offer).unwrap();
        assert_eq!(chosen, b"h2");
        let start = chosen.as_ptr() as usize - offer.as_ptr() as usize;
        assert_eq!(&offer[start..start + 2], b"h2");
        assert_eq!(pick(&ours(&["spdy"]), &offer), None);
    }

    #[test]
    fn malformed_offers_offer_nothing() {
        for bad in [&[3u8, b'h', b'2'][..], &[0, 2, b'h', b'2'], &[5]] {
            assert_eq!(pick(&ours(&["h2"]), bad), None, "{bad:?}");
        }
        assert_eq!(parse(&[]), Some(vec![]));
    }

    #[test]
    fn unsendable_names_are_left_out() {
        let long = "x".repeat(256);
        assert_eq!(wire(&["".into(), long, "h2".into()]), b"\x02h2");
    }
}
