use super::*;
use crate::netem::parse;

const N: usize = 100_000;

fn model(netem: &str, seed: u64) -> Model {
    Model::new(parse(netem).expect("test netem string parses"), seed)
}

/// Offers `n` packets of `len` bytes, one every `spacing`.
fn run(m: &mut Model, n: usize, len: usize, spacing: Duration) -> Vec<(Duration, Decision)> {
    (0..n)
        .map(|i| {
            let now = spacing * i as u32;
            (now, m.decide(len, now))
        })
        .collect()
}

fn within(name: &str, value: f64, expected: f64, tolerance: f64) {
    assert!(
        (value - expected).abs() <= tolerance,
        "{name}: {value} not within {expected} ± {tolerance}"
    );
}

fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

fn delays_ms(netem: &str) -> Vec<f64> {
    let mut m = model(netem, 7);
    run(&mut m, N, 100, Duration::from_millis(1))
        .iter()
        .flat_map(|(now, d)| {
            d.deliveries()
                .iter()
                .map(move |x| (x.at - *now).as_secs_f64() * 1e3)
        })
        .collect()
}

#[test]
fn no_impairment_delivers_everything_at_once() {
    let mut m = model("", 1);
    for (now, d) in run(&mut m, 1000, 1500, Duration::from_micros(10)) {
        assert_eq!(
            d,
            Decision::Deliver(Delivery {
                at: now,
                corrupt: None,
                reordered: false
            })
        );
    }
}

#[test]
fn loss_30_percent() {
    let mut m = model("loss 30%", 1);
    let lost = run(&mut m, N, 100, Duration::from_micros(10))
        .iter()
        .filter(|(_, d)| *d == Decision::Dropped(DropReason::Loss))
        .count();
    within("loss fraction", lost as f64 / N as f64, 0.30, 0.01);
}

#[test]
fn uniform_jitter_stays_in_its_band() {
    // The seed's "random jitter between 25 and 175 ms".
    let d = delays_ms("delay 100ms 75ms");
    assert!(d.iter().all(|v| (25.0..=175.0).contains(v)), "out of band");
    let (mean, sd) = mean_sd(&d);
    within("mean", mean, 100.0, 1.0);
    within("sd", sd, 75.0 / 3f64.sqrt(), 1.0);
}

#[test]
fn normal_jitter_mean_and_deviation() {
    let d = delays_ms("delay 100ms 20ms distribution normal");
    let (mean, sd) = mean_sd(&d);
    within("mean", mean, 100.0, 0.5);
    within("sd", sd, 20.0, 0.5);
    // About 68% within one deviation.
    let inside = d.iter().filter(|v| (80.0..=120.0).contains(*v)).count() as f64 / d.len() as f64;
    within("within 1 sd", inside, 0.6827, 0.01);
}

#[test]
fn pareto_jitter_is_right_skewed() {
    let d = delays_ms("delay 100ms 20ms distribution pareto");
    let (mean, _) = mean_sd(&d);
    let mut sorted = d.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    within("mean", mean, 100.0, 1.5);
    assert!(median < mean - 3.0, "median {median} not below mean {mean}");
    // Bounded below (shape 3: the minimum is 1.73 deviations under the mean).
    assert!(sorted[0] >= 100.0 - 1.74 * 20.0, "min {}", sorted[0]);
    // And a long tail above, capped as iproute2's tables are.
    assert!(sorted[sorted.len() - 1] > 100.0 + 3.0 * 20.0);
    assert!(sorted[sorted.len() - 1] <= 100.0 + 4.0 * 20.0 + 1e-6);

    let d = delays_ms("delay 100ms 20ms distribution paretonormal");
    let (mean, _) = mean_sd(&d);
    within("paretonormal mean", mean, 100.0, 1.5);
}

#[test]
fn delay_never_negative() {
    let d = delays_ms("delay 1ms 20ms distribution normal");
    assert!(d.iter().all(|v| *v >= 0.0));
}

#[test]
fn gilbert_elliott_bursts() {
    // p = 1%, r = 10%, everything lost in the bad state: loss rate
    // p / (p + r) = 9.09%, bursts of 1 / r = 10 packets on average.
    let mut m = model("loss gemodel 1% 10%", 3);
    let lost: Vec<bool> = run(&mut m, 4 * N, 100, Duration::from_micros(10))
        .iter()
        .map(|(_, d)| matches!(d, Decision::Dropped(_)))
        .collect();
    let rate = lost.iter().filter(|l| **l).count() as f64 / lost.len() as f64;
    within("loss rate", rate, 0.01 / 0.11, 0.01);
    let mut bursts = Vec::new();
    let mut run_len = 0;
    for l in &lost {
        if *l {
            run_len += 1;
        } else if run_len > 0 {
            bursts.push(run_len as f64);
            run_len = 0;
        }
    }
    let (mean_burst, _) = mean_sd(&bursts);
    within("mean burst", mean_burst, 10.0, 1.0);
}

#[test]
fn four_state_isolated_losses() {
    // Only isolated losses (p14 = 5%): never two losses in a row.
    let mut m = model("loss state 0% 100% 0% 100% 5%", 4);
    let lost: Vec<bool> = run(&mut m, N, 100, Duration::from_micros(10))
        .iter()
        .map(|(_, d)| matches!(d, Decision::Dropped(_)))
        .collect();
    assert!(lost.windows(2).all(|w| !(w[0] && w[1])));
    let rate = lost.iter().filter(|l| **l).count() as f64 / N as f64;
    // Each loss is followed by a forced good packet: 0.05 / 1.05.
    within("isolated loss rate", rate, 0.05 / 1.05, 0.005);
}

#[test]
fn duplicate_30_percent() {
    let mut m = model("duplicate 30%", 5);
    let dup = run(&mut m, N, 100, Duration::from_micros(10))
        .iter()
        .filter(|(_, d)| d.deliveries().len() == 2)
        .count();
    within("duplicate fraction", dup as f64 / N as f64, 0.30, 0.01);
}

#[test]
fn corrupt_30_percent_flips_one_bit_inside_the_packet() {
    let mut m = model("corrupt 30%", 6);
    let mut corrupted = 0;
    for (_, d) in run(&mut m, N, 64, Duration::from_micros(10)) {
        for x in d.deliveries() {
            if let Some(flip) = x.corrupt {
                corrupted += 1;
                assert!(flip.byte < 64 && flip.bit < 8);
                let mut packet = [0u8; 64];
                flip.apply(&mut packet);
                assert_eq!(packet.iter().map(|b| b.count_ones()).sum::<u32>(), 1);
            }
        }
    }
    within("corrupt fraction", corrupted as f64 / N as f64, 0.30, 0.01);
}

#[test]
fn reorder_sends_a_fraction_at_once() {
    let mut m = model("delay 125ms reorder 30%", 8);
    let decisions = run(&mut m, N, 100, Duration::from_millis(1));
    let mut immediate = 0;
    for (now, d) in &decisions {
        let [x] = d.deliveries() else {
            panic!("one delivery expected: {d:?}");
        };
        if x.reordered {
            assert_eq!(x.at, *now);
            immediate += 1;
        } else {
            assert_eq!(x.at, *now + Duration::from_millis(125));
        }
    }
    within(
        "reordered fraction",
        immediate as f64 / N as f64,
        0.30,
        0.01,
    );
    // Packets sent at once overtake ones offered before them.
    let overtaken = decisions
        .windows(2)
        .filter(|w| w[1].1.deliveries()[0].at < w[0].1.deliveries()[0].at)
        .count();
    assert!(overtaken > N / 10);
}

#[test]
fn reorder_correlation_as_netem() {
    // netem's correlation narrows the draws, so fewer than 30% jump ahead.
    let mut m = model("delay 125ms reorder 30% 50%", 9);
    let immediate = run(&mut m, N, 100, Duration::from_millis(1))
        .iter()
        .filter(|(_, d)| d.deliveries()[0].reordered)
        .count() as f64
        / N as f64;
    assert!(immediate > 0.1 && immediate < 0.3, "{immediate}");
}

#[test]
fn reorder_gap_is_exact() {
    let mut m = model("delay 10ms reorder 100% gap 5", 10);
    for (i, (_, d)) in run(&mut m, 100, 100, Duration::from_millis(1))
        .iter()
        .enumerate()
    {
        assert_eq!(d.deliveries()[0].reordered, i % 5 == 4, "packet {i}");
    }
}

#[test]
fn rate_gives_its_throughput() {
    // 1000 packets of 1250 bytes offered at once on 1 mbit/s: 10 ms each.
    let mut m = model("rate 1mbit limit 2000", 11);
    let last = (0..1000)
        .map(|_| m.decide(1250, Duration::ZERO).deliveries()[0].at)
        .max()
        .expect("some packets");
    assert_eq!(last, Duration::from_secs(10));
    let throughput = 1000.0 * 1250.0 * 8.0 / last.as_secs_f64();
    within("bit/s", throughput, 1e6, 1.0);

    // Packets spaced wider than their transmission time do not queue.
    let mut m = model("rate 1mbit", 11);
    for (now, d) in run(&mut m, 100, 1250, Duration::from_millis(20)) {
        assert_eq!(d.deliveries()[0].at, now + Duration::from_millis(10));
    }
}

#[test]
fn rate_cells_and_overhead() {
    let rate = parse("rate 8kbit 5 48 5")
        .expect("parses")
        .rate
        .expect("rate");
    // 100 + 5 = 105 bytes -> 3 cells of 48 + 5 = 159 bytes at 1000 bytes/s.
    assert_eq!(transmission_time(rate, 100), Duration::from_millis(159));
}

#[test]
fn limit_drops_when_full_and_recovers() {
    let mut m = model("limit 10 delay 1s", 12);
    for _ in 0..10 {
        assert!(matches!(
            m.decide(100, Duration::ZERO),
            Decision::Deliver(_)
        ));
    }
    assert_eq!(
        m.decide(100, Duration::ZERO),
        Decision::Dropped(DropReason::QueueFull)
    );
    assert!(matches!(
        m.decide(100, Duration::from_secs(1)),
        Decision::Deliver(_)
    ));
}

#[test]
fn same_seed_same_decisions() {
    let netem = "delay 100ms 75ms 25% distribution paretonormal loss gemodel 2% 30% \
                 duplicate 5% corrupt 5% reorder 10% rate 10mbit";
    let a = run(
        &mut model(netem, 42),
        10_000,
        900,
        Duration::from_micros(300),
    );
    let b = run(
        &mut model(netem, 42),
        10_000,
        900,
        Duration::from_micros(300),
    );
    assert_eq!(a, b);
    let c = run(
        &mut model(netem, 43),
        10_000,
        900,
        Duration::from_micros(300),
    );
    assert_ne!(a, c);
}

/// The kernel seeds each correlated generator's `last` with a random
/// 32-bit value, not 0 (net/sched/sch_netem.c, `init_crandom`:
/// `state->last = get_random_u32()`). With a strong correlation the first
/// draws stay near that start, so across seeds the first packet's fate
/// follows the configured probability; from 0, `loss 50% 99%` would lose
/// the first packet under every seed (0.01 * u < 0.5).
#[test]
fn correlated_draws_start_from_a_random_value_as_the_kernels_do() {
    let netem = parse("loss 50% 99%").expect("netem");
    let lost = (0..2000u64)
        .filter(|seed| {
            Model::new(netem.clone(), *seed).decide(100, Duration::ZERO)
                == Decision::Dropped(DropReason::Loss)
        })
        .count();
    within("first packets lost", lost as f64 / 2000.0, 0.5, 0.05);
    // The same for each correlated draw: duplicate, corrupt, reorder, delay.
    for (netem, hit) in [
        (
            "duplicate 50% 99%",
            (|d: &Decision| matches!(d, Decision::Duplicate(_))) as fn(&Decision) -> bool,
        ),
        ("corrupt 50% 99%", |d| d.deliveries()[0].corrupt.is_some()),
        ("delay 10ms reorder 50% 99%", |d| {
            d.deliveries()[0].reordered
        }),
        ("delay 100ms 100ms 99%", |d| {
            d.deliveries()[0].at < Duration::from_millis(100)
        }),
    ] {
        let netem = parse(netem).expect("netem");
        let hits = (0..2000u64)
            .filter(|seed| hit(&Model::new(netem.clone(), *seed).decide(100, Duration::ZERO)))
            .count();
        within(&format!("{netem}"), hits as f64 / 2000.0, 0.5, 0.05);
    }
    // The start comes from a stream of its own: an uncorrelated model
    // draws exactly what it drew before the start existed.
    let mut plain = model("loss 30%", 3);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..1000 {
        let lost = rng.random::<f64>() < 0.3;
        assert_eq!(
            plain.decide(100, Duration::ZERO) == Decision::Dropped(DropReason::Loss),
            lost
        );
    }
}
