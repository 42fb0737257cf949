//! The Pool's msgpack value decoder: any bytes decode or fail, and the
//! memory it charges covers what it really allocates. A counting global
//! allocator measures every block (its size plus glibc's 8-byte header,
//! the least any block costs, which the charge's model includes): after a
//! decode, the value holds at most what it was charged, and the peak while
//! decoding was no higher either (the decoder's own stack is charged too);
//! a refused input never allocated past the limit, and whatever the outcome
//! nothing is left behind once the value is dropped. A decoded value also
//! survives a round trip through the encoder unchanged.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use cipherlink_pool::codec::{self, DEFAULT_MAX_DEPTH};
use cipherlink_pool::fuzzing::{decode_value, memory_bound, stack_bound};
use cipherlink_pool::Value;
use libfuzzer_sys::fuzz_target;

/// What glibc adds to every block, at least (its size field).
const HEADER: usize = 8;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting live bytes (and headers) and their peak.
/// A reallocation counts as the change in size, as dhat counts it (the
/// heap-accounting test's allocator), not as both blocks at once.
struct Counting;

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    LIVE.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every call is passed on to `System` unchanged; only counters
// are kept besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size() + HEADER);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size() + HEADER);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size() + HEADER);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Whatever was decoded encodes again (as the package would send it back)
/// and decodes to the same value: the decoder never makes a value the
/// encoder cannot write, nor reads one thing as another.
fn round_trip(value: &Value) {
    let wire = codec::encode(value)
        .unwrap_or_else(|e| panic!("a decoded value does not encode: {e}; {value:?}"));
    let (again, _) = decode_value(&wire)
        .unwrap_or_else(|e| panic!("its encoding does not decode: {e}; {value:?}"));
    assert_eq!(&again, value, "changed by a round trip");
}

fuzz_target!(|data: &[u8]| {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let limit = memory_bound(data.len()) + stack_bound(data.len(), DEFAULT_MAX_DEPTH);
    match decode_value(data) {
        Ok((value, charged)) => {
            let held = LIVE.load(Ordering::Relaxed) - base;
            let peak = PEAK.load(Ordering::Relaxed) - base;
            assert!(
                held <= charged && peak <= charged,
                "charged {charged} bytes, the value holds {held}, the peak was {peak}, \
                 for {} wire bytes",
                data.len()
            );
            assert!(charged <= limit, "charged {charged} over the limit {limit}");
            round_trip(&value);
            drop(value);
        }
        Err(_) => {
            let peak = PEAK.load(Ordering::Relaxed) - base;
            assert!(
                peak <= limit,
                "refused after a peak of {peak}, over the limit {limit}"
            );
        }
    }
    let left = LIVE.load(Ordering::Relaxed) - base;
    assert_eq!(left, 0, "{left} bytes left behind");
});
