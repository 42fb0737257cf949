//! The datagram mode's bytes look uniform (docs §11): byte frequencies
//! (chi-square) of every kind of datagram, no fixed value at any of their
//! first offsets across handshakes, and none across the records of one
//! session (no session id in clear: its datagrams cannot be linked by a
//! field that repeats).
#![allow(clippy::unwrap_used)]

mod dgram_common;

use std::collections::HashSet;

use cipherlink_link::dgram::DgramServerOptions;
use cipherlink_link::LinkParams;
use dgram_common::{Faults, Net, World};

const HANDSHAKES: usize = 300;

fn chi_square(bytes: &[u8]) -> f64 {
    let mut counts = [0u64; 256];
    for &b in bytes {
        counts[b as usize] += 1;
    }
    let expected = bytes.len() as f64 / 256.0;
    counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum()
}

/// The fewest distinct values any of the first `offsets` offsets takes.
fn min_distinct(samples: &[Vec<u8>], offsets: usize) -> (usize, usize) {
    (0..offsets)
        .map(|off| {
            let seen: HashSet<u8> = samples.iter().map(|s| s[off]).collect();
            (seen.len(), off)
        })
        .min()
        .unwrap()
}

fn check(name: &str, samples: &[Vec<u8>]) {
    // 300 uniform samples show ~176 distinct values per offset; a fixed or
    // low-entropy field shows a handful.
    let (n, off) = min_distinct(samples, 24);
    assert!(
        n > 130,
        "{name}: offset {off} took only {n} distinct values"
    );
    let all: Vec<u8> = samples.concat();
    // 255 degrees of freedom: 400 is beyond p = 1e-9.
    let chi = chi_square(&all);
    assert!(
        chi < 400.0,
        "{name}: chi-square {chi:.1} over {} bytes",
        all.len()
    );
}

#[test]
fn every_datagram_kind_looks_uniform() {
    let world = World::new(LinkParams::default());
    let cookies = DgramServerOptions {
        cookie_threshold: 0,
        ..DgramServerOptions::default()
    };
    let (mut first, mut second, mut msg2, mut cookie, mut c2s, mut s2c) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut proofs = vec![];
    for i in 0..HANDSHAKES as u64 {
        let mut n = Net::new(&world, cookies.clone(), Faults::default(), 5000 + 2 * i);
        n.connect();
        // Two pieces, a cookie reply, the two pieces with the proof, msg2.
        first.push(n.c2s[0].clone());
        second.push(n.c2s[1].clone());
        // The resent piece 1 differs only in Q, the cookie proof.
        proofs.push(n.c2s[3][16..32].to_vec());
        cookie.push(n.s2c[0].1.clone());
        msg2.push(n.s2c[1].1.clone());
        let sid = n.sid();
        n.client.send(b"x").unwrap();
        n.server.send(sid, b"y").unwrap();
        n.drive();
        c2s.push(n.c2s.last().unwrap().clone());
        s2c.push(n.s2c.last().unwrap().1.clone());
    }
    check("piece 0", &first);
    check("piece 1", &second);
    let (n, off) = min_distinct(&proofs, 16);
    assert!(
        n > 130,
        "cookie proof: offset {off} took only {n} distinct values"
    );
    check("cookie reply", &cookie);
    check("msg2", &msg2);
    check("client record", &c2s);
    check("server record", &s2c);

    // One session's records: the header changes with every one.
    let mut n = Net::new(&world, DgramServerOptions::default(), Faults::default(), 9);
    n.connect();
    let sid = n.sid();
    let start = (n.c2s.len(), n.s2c.len());
    for _ in 0..HANDSHAKES {
        n.client.send(b"same").unwrap();
        n.server.send(sid, b"same").unwrap();
    }
    n.drive();
    check("one session's client records", &n.c2s[start.0..]);
    let back: Vec<Vec<u8>> = n.s2c[start.1..].iter().map(|(_, d)| d.clone()).collect();
    check("one session's server records", &back);

    // Sizes vary: padding and the cut are drawn.
    for (name, s) in [("piece 0", &first), ("client record", &c2s)] {
        let sizes: HashSet<usize> = s.iter().map(Vec::len).collect();
        assert!(sizes.len() > 30, "{name} took only {} sizes", sizes.len());
    }
}
