//! What one heap block really takes: the model the decoder charges by.
//!
//! An allocator hands out more than was asked for: its size classes round
//! the request up, and it keeps a header. [`block_cost`] is an upper bound
//! of that for the two allocators our processes run on:
//!
//! * glibc malloc (the system allocator, which the library and its tests
//!   use): an 8-byte header and 16-byte granules, 32 bytes at least
//!   (`request2size`); from 128 KiB (the initial mmap threshold) its own
//!   mapping, the size and a 16-byte header rounded up to 4 KiB pages.
//! * mimalloc 3 (the `cipherlink` binary's global allocator): up to 64 bytes
//!   in 8-byte steps; up to 512 KiB in size classes four to a power of two
//!   (`mi_bin`: at most 25% over); beyond, a block of its own whose unused
//!   tail is address space, not memory, plus its page header (within
//!   [`LARGE_SLACK`]).
//!
//! Memory the allocator keeps after a block is freed, and fragmentation
//! between blocks, belong to the process, not to any one value, and are not
//! counted.

/// Blocks above this have pages of their own (mimalloc's largest size class).
const SIZE_CLASS_MAX: usize = 512 * 1024;

/// glibc serves blocks from this size by mmap (its initial threshold; the
/// dynamic threshold only moves blocks to the heap, where they take less).
const GLIBC_MMAP_MIN: usize = 128 * 1024;

/// What a block beyond [`SIZE_CLASS_MAX`] may take beyond its size: a page
/// of rounding and the allocator's header, with room to spare (mimalloc's
/// slice is 64 KiB).
pub const LARGE_SLACK: usize = 64 * 1024;

/// An upper bound of the memory one heap block of `n` bytes takes (0 for
/// no block: empty vectors and strings do not allocate).
pub fn block_cost(n: usize) -> usize {
    match n {
        0 => 0,
        1..=SIZE_CLASS_MAX => glibc_chunk(n).max(mimalloc_class(n)),
        _ => n.saturating_add(LARGE_SLACK),
    }
}

/// [`block_cost`] of `count` elements of `size` bytes each.
pub fn array_cost(count: usize, size: usize) -> usize {
    block_cost(count.saturating_mul(size))
}

fn glibc_chunk(n: usize) -> usize {
    if n < GLIBC_MMAP_MIN {
        ((n + 23) & !15).max(32)
    } else {
        (n + 16).next_multiple_of(4096)
    }
}

fn mimalloc_class(n: usize) -> usize {
    let words = n.div_ceil(8);
    if words <= 8 {
        return 8 * words;
    }
    // Four classes between consecutive powers of two: the step is a
    // quarter of the power below `words - 1`.
    let step = 1usize << ((words - 1).ilog2() - 2);
    8 * words.next_multiple_of(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_blocks_cost_a_glibc_chunk() {
        assert_eq!(block_cost(0), 0);
        assert_eq!(block_cost(1), 32);
        assert_eq!(block_cost(24), 32);
        assert_eq!(block_cost(25), 48);
        assert_eq!(block_cost(40), 48);
        assert_eq!(block_cost(64), 80);
    }

    #[test]
    fn medium_blocks_cost_their_mimalloc_class() {
        // 9 words is in the class of 10; 1025 words in the class of 1280.
        assert_eq!(mimalloc_class(72), 80);
        assert_eq!(block_cost(8200), 10240);
        // A power of two is a class of its own; glibc's header then costs more.
        assert_eq!(block_cost(4096), 4096 + 16);
        // From 128 KiB glibc maps pages of its own.
        assert_eq!(block_cost(256 * 1024), 256 * 1024 + 4096);
    }

    #[test]
    fn large_blocks_cost_their_size_and_the_slack() {
        assert_eq!(block_cost(64 << 20), (64 << 20) + LARGE_SLACK);
        assert_eq!(block_cost(usize::MAX), usize::MAX);
        // Never less than the size and glibc's header, at every size.
        for n in (1..(1 << 20)).step_by(7) {
            assert!(block_cost(n) >= n + 8, "{n}");
        }
    }
}
