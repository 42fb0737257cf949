//! Statistical check that handshake and record bytes look uniform: byte
//! frequencies (chi-square) and no fixed values at any offset across many
//! handshakes.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use common::{params_fast, Pair, World};

const HANDSHAKES: usize = 300;

/// Chi-square statistic of byte frequencies against uniform.
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

/// Distinct values at each offset across samples.
fn min_distinct_per_offset(samples: &[Vec<u8>], offsets: usize) -> (usize, usize) {
    let mut worst = (usize::MAX, 0);
    for off in 0..offsets {
        let mut seen = [false; 256];
        for s in samples {
            seen[s[off] as usize] = true;
        }
        let n = seen.iter().filter(|&&x| x).count();
        if n < worst.0 {
            worst = (n, off);
        }
    }
    worst
}

#[test]
fn handshake_and_record_bytes_look_uniform() {
    let world = World::new(params_fast());
    let mut msg1s = Vec::new();
    let mut msg2s = Vec::new();
    let mut recs = Vec::new();
    let mut all = Vec::new();
    for i in 0..HANDSHAKES {
        let mut p = Pair::new(&world, 10_000 + 2 * i as u64);
        assert!(p.server.is_open());
        let m1 = p.c2s_log.clone();
        let m2 = p.s2c_log.clone();
        // A small data record: worst case for fixed structure.
        p.client.send(b"x").unwrap();
        let mut rec = Vec::new();
        p.client.poll_transmit(&mut rec);
        all.extend_from_slice(&m1);
        all.extend_from_slice(&m2);
        all.extend_from_slice(&rec);
        msg1s.push(m1);
        msg2s.push(m2);
        recs.push(rec);
    }
    // 255 degrees of freedom: mean 255, sd ~22.6; 400 is beyond p = 1e-9.
    let chi = chi_square(&all);
    assert!(chi < 400.0, "chi-square {chi:.1} over {} bytes", all.len());

    // First-byte-of-key checks: Elligator2 top bits are random (byte 31, bits 6-7).
    let high = msg1s.iter().filter(|m| m[31] & 0x80 != 0).count();
    assert!(
        (90..=210).contains(&high),
        "R_e bit 255 set in {high}/{HANDSHAKES}"
    );
    // Y_s is a masked public key: its bit 255 (always 0 in a u-coordinate)
    // and bit 254 must both look random.
    for (bit, mask) in [(254, 0x40u8), (255, 0x80u8)] {
        let high = msg2s.iter().filter(|m| m[31] & mask != 0).count();
        assert!(
            (90..=210).contains(&high),
            "Y_s bit {bit} set in {high}/{HANDSHAKES}"
        );
    }

    // With 300 uniform samples an offset shows ~176 distinct values; a fixed or
    // low-entropy field would show a handful.
    for (name, samples) in [("msg1", &msg1s), ("msg2", &msg2s), ("record", &recs)] {
        let (n, off) = min_distinct_per_offset(samples, 20);
        assert!(
            n > 130,
            "{name}: offset {off} took only {n} distinct values"
        );
        // Per-offset chi-square on the first 64 bytes combined.
        let column: Vec<u8> = samples.iter().flat_map(|s| s[..20].to_vec()).collect();
        let chi = chi_square(&column);
        assert!(
            chi < 400.0,
            "{name}: chi-square of the first 20 offsets {chi:.1}"
        );
    }
    // Sizes vary: padding is random.
    let sizes: std::collections::HashSet<usize> = msg1s.iter().map(Vec::len).collect();
    assert!(sizes.len() > 30, "msg1 took only {} sizes", sizes.len());
    let sizes: std::collections::HashSet<usize> = recs.iter().map(Vec::len).collect();
    assert!(sizes.len() > 30, "records took only {} sizes", sizes.len());
}
