use super::*;

fn writes(steps: &[Step]) -> Vec<(Duration, Vec<u8>)> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Write { at, data } => Some((*at, data.clone())),
            _ => None,
        })
        .collect()
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn slice(n: usize) -> Option<NonZeroUsize> {
    NonZeroUsize::new(n)
}

#[test]
fn no_impairment_forwards_at_once_unchanged() {
    let mut s = Shaper::new(Impairments::default(), 1, 0);
    let d = data(5000);
    let w = writes(&s.plan(&d, Duration::from_millis(3)));
    assert!(w.iter().all(|(at, _)| *at == Duration::from_millis(3)));
    assert_eq!(w.concat_bytes(), d);
}

trait Concat {
    fn concat_bytes(&self) -> Vec<u8>;
}

impl Concat for Vec<(Duration, Vec<u8>)> {
    fn concat_bytes(&self) -> Vec<u8> {
        self.iter().flat_map(|(_, d)| d.iter().copied()).collect()
    }
}

#[test]
fn latency_is_added_and_order_kept_under_jitter() {
    let imp = Impairments {
        latency: Duration::from_millis(100),
        jitter: Duration::from_millis(50),
        ..Impairments::default()
    };
    let mut s = Shaper::new(imp, 2, 0);
    let mut last = Duration::ZERO;
    for i in 0..1000u32 {
        let now = Duration::from_millis(u64::from(i));
        for (at, _) in writes(&s.plan(b"x", now)) {
            assert!(at >= now + Duration::from_millis(50));
            assert!(at >= last, "out of order");
            last = at;
        }
    }
}

#[test]
fn slices_are_cut_at_stream_offsets() {
    let imp = Impairments {
        slice: slice(7),
        slice_delay: Duration::from_millis(1),
        ..Impairments::default()
    };
    let mut s = Shaper::new(imp, 3, 0);
    // Chunks of 10 bytes: slices still end at multiples of 7.
    let d = data(70);
    let mut all = Vec::new();
    for chunk in d.chunks(10) {
        all.extend(writes(&s.plan(chunk, Duration::ZERO)));
    }
    assert!(all.iter().all(|(_, w)| w.len() <= 7));
    let mut offset = 0;
    for (_, w) in &all {
        offset += w.len();
        assert!(offset % 7 == 0 || offset % 10 == 0, "cut at {offset}");
    }
    assert_eq!(all.concat_bytes(), d);
    // Ten slices, nine delays between them.
    assert_eq!(
        all.last().map(|(at, _)| *at),
        Some(Duration::from_millis(9))
    );
}

#[test]
fn bandwidth_paces_the_writes() {
    let imp = Impairments {
        bandwidth: Some(1_000_000),
        ..Impairments::default()
    };
    let mut s = Shaper::new(imp, 4, 0);
    // 125,000 bytes at 1 mbit/s: one second.
    let w = writes(&s.plan(&data(125_000), Duration::ZERO));
    assert_eq!(w.last().map(|(at, _)| *at), Some(Duration::from_secs(1)));
}

#[test]
fn stall_pauses_at_the_exact_byte() {
    let imp = Impairments {
        stall_after: Some(40),
        stall_for: Some(Duration::from_secs(2)),
        ..Impairments::default()
    };
    let mut s = Shaper::new(imp, 5, 0);
    let steps = s.plan(&data(100), Duration::ZERO);
    let Some(pause) = steps.iter().position(|s| matches!(s, Step::Pause(_))) else {
        panic!("no pause in {steps:?}");
    };
    let before: usize = writes(&steps[..pause]).iter().map(|(_, d)| d.len()).sum();
    assert_eq!(before, 40);
    assert_eq!(steps[pause], Step::Pause(Duration::from_secs(2)));
    let after = writes(&steps[pause..]);
    assert_eq!(after.iter().map(|(_, d)| d.len()).sum::<usize>(), 60);
    assert!(after.iter().all(|(at, _)| *at >= Duration::from_secs(2)));
}

#[test]
fn stall_forever_blackholes_the_rest() {
    let imp = Impairments {
        stall_after: Some(40),
        ..Impairments::default()
    };
    let mut s = Shaper::new(imp, 6, 0);
    let steps = s.plan(&data(30), Duration::ZERO);
    assert_eq!(writes(&steps).concat_bytes().len(), 30);
    let steps = s.plan(&data(30), Duration::ZERO);
    assert_eq!(steps.last(), Some(&Step::Blackhole));
    assert_eq!(writes(&steps).concat_bytes().len(), 10);
    assert!(s.plan(&data(30), Duration::ZERO).is_empty());
    assert_eq!(s.forwarded(), 40);
}

#[test]
fn reset_after_exact_count() {
    let imp = Impairments {
        reset_after: Some(50),
        ..Impairments::default()
    };
    let mut s = Shaper::new(imp, 7, 0);
    let steps = s.plan(&data(100), Duration::ZERO);
    assert_eq!(steps.last(), Some(&Step::Reset));
    assert_eq!(writes(&steps).concat_bytes(), data(50));
    assert!(s.plan(&data(1), Duration::ZERO).is_empty());

    // Zero: reset on the first byte.
    let mut s = Shaper::new(
        Impairments {
            reset_after: Some(0),
            ..Impairments::default()
        },
        7,
        0,
    );
    assert_eq!(s.plan(b"a", Duration::ZERO), vec![Step::Reset]);
}

fn corrupted_run(seed: u64, chunk: usize) -> Vec<u8> {
    let imp = Impairments {
        slice: slice(100),
        corrupt: 0.3,
        ..Impairments::default()
    };
    let mut s = Shaper::new(imp, seed, 9);
    let d = data(100_000);
    d.chunks(chunk)
        .flat_map(|c| writes(&s.plan(c, Duration::ZERO)).concat_bytes())
        .collect()
}

#[test]
fn corruption_rate_one_bit_per_segment_independent_of_chunking() {
    let sent = data(100_000);
    let got = corrupted_run(11, 1000);
    let mut corrupted = 0;
    for (a, b) in sent.chunks(100).zip(got.chunks(100)) {
        let bits: u32 = a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum();
        assert!(bits <= 1);
        corrupted += bits;
    }
    let rate = f64::from(corrupted) / 1000.0;
    assert!((rate - 0.3).abs() < 0.05, "{rate}");
    // Same seed, different read sizes: same bytes.
    assert_eq!(corrupted_run(11, 1000), corrupted_run(11, 333));
    assert_ne!(corrupted_run(11, 1000), corrupted_run(12, 1000));
}
