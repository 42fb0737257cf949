//! What queued data really costs in memory, for the bounds of the stream
//! proxy's queue and the router's.
//!
//! A queue bounded by its payload alone is far off when the items are
//! small: with `--slice 1` the stream proxy queues each byte as a step of
//! its own, a 40-byte `Step` plus a heap block for the byte (~70 bytes per
//! byte of payload). The bounds count what the allocator hands out instead.

/// Bytes the allocator takes for a heap block of `bytes` (0 for none):
/// glibc's malloc adds an 8-byte header and rounds up to 16 bytes, 32 at
/// least; mimalloc's size classes are no larger for these sizes. An upper
/// estimate, so a bound on it holds with either.
pub fn heap_block(bytes: usize) -> usize {
    if bytes == 0 {
        0
    } else {
        bytes.saturating_add(8).next_multiple_of(16).max(32)
    }
}

#[cfg(test)]
mod tests {
    use super::heap_block;

    #[test]
    fn small_blocks_cost_at_least_32_bytes() {
        assert_eq!(heap_block(0), 0);
        assert_eq!(heap_block(1), 32);
        assert_eq!(heap_block(24), 32);
        assert_eq!(heap_block(25), 48);
        assert_eq!(heap_block(1500), 1520);
        // Never more than 32 bytes above the request.
        assert!((1..5000).all(|n| heap_block(n) <= n + 32));
    }
}
