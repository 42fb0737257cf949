use super::*;

fn ok(s: &str) -> Netem {
    match parse(s) {
        Ok(n) => n,
        Err(e) => panic!("{s:?} refused: {e}"),
    }
}

fn err(s: &str) -> NetemError {
    match parse(s) {
        Ok(n) => panic!("{s:?} accepted as {n:?}"),
        Err(e) => e,
    }
}

fn pct(v: f64) -> Percent {
    Percent::from_fraction(v / 100.0).expect("test percent in range")
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[test]
fn seed_jitter() {
    let n = ok("delay 100ms 75ms");
    assert_eq!(
        n.delay,
        Some(Delay {
            latency: ms(100),
            jitter: ms(75),
            correlation: Percent::ZERO,
            distribution: Distribution::Uniform,
        })
    );
    assert_eq!(n.loss, None);
}

#[test]
fn seed_loss() {
    let n = ok("loss 30%");
    assert_eq!(
        n.loss,
        Some(Loss::Random(Chance {
            probability: pct(30.0),
            correlation: Percent::ZERO
        }))
    );
}

#[test]
fn seed_duplicate() {
    assert_eq!(
        ok("duplicate 30%").duplicate.map(|c| c.probability),
        Some(pct(30.0))
    );
}

#[test]
fn seed_reorder() {
    let n = ok("delay 125ms reorder 30% 50%");
    assert_eq!(n.delay.map(|d| d.latency), Some(ms(125)));
    assert_eq!(
        n.reorder,
        Some(Reorder {
            chance: Chance {
                probability: pct(30.0),
                correlation: pct(50.0)
            },
            gap: 1
        })
    );
}

#[test]
fn seed_corrupt() {
    assert_eq!(
        ok("corrupt 30%").corrupt.map(|c| c.probability),
        Some(pct(30.0))
    );
}

#[test]
fn delay_correlation_and_distributions() {
    let d = ok("delay 100ms 75ms 25%").delay.expect("delay");
    assert_eq!(d.correlation, pct(25.0));
    for (name, dist) in [
        ("normal", Distribution::Normal),
        ("pareto", Distribution::Pareto),
        ("paretonormal", Distribution::ParetoNormal),
        ("uniform", Distribution::Uniform),
    ] {
        let d = ok(&format!("delay 100ms 20ms distribution {name}"))
            .delay
            .expect("delay");
        assert_eq!(d.distribution, dist);
        assert_eq!(d.jitter, ms(20));
    }
    // Order does not matter, as in tc.
    let d = ok("distribution normal delay 1s 10ms")
        .delay
        .expect("delay");
    assert_eq!(d.distribution, Distribution::Normal);
    assert_eq!(d.latency, Duration::from_secs(1));
}

/// iproute2's `get_time64` (lib/utils.c), which q_netem.c reads `delay`
/// and its jitter with: `strcasecmp` against s/sec/secs, ms/msec/msecs,
/// us/usec/usecs, ns/nsec/nsecs, and no unit is nanoseconds.
#[test]
fn time_units() {
    for (s, d) in [
        ("250us", Duration::from_micros(250)),
        ("250", Duration::from_nanos(250)),
        ("1.5ms", Duration::from_micros(1500)),
        ("2s", Duration::from_secs(2)),
        ("2secs", Duration::from_secs(2)),
        ("3msec", ms(3)),
        ("10usec", Duration::from_micros(10)),
        ("7ns", Duration::from_nanos(7)),
        ("7nsecs", Duration::from_nanos(7)),
        // Any case, as strcasecmp.
        ("100MS", ms(100)),
        ("100Ms", ms(100)),
        ("3MSEC", ms(3)),
        ("2S", Duration::from_secs(2)),
        ("2Sec", Duration::from_secs(2)),
        ("2SECS", Duration::from_secs(2)),
        ("10US", Duration::from_micros(10)),
        ("10uSec", Duration::from_micros(10)),
        ("5NS", Duration::from_nanos(5)),
        // strtod's forms.
        (".5s", ms(500)),
        ("2e3us", ms(2)),
    ] {
        assert_eq!(
            ok(&format!("delay {s}")).delay.map(|d| d.latency),
            Some(d),
            "{s}"
        );
    }
}

#[test]
fn rate_units() {
    for (s, bits) in [
        ("1mbit", 1_000_000),
        ("1Mbit", 1_000_000),
        ("56kbit", 56_000),
        ("1gbit", 1_000_000_000),
        ("800bit", 800),
        ("800", 800),
        ("100bps", 800),
        ("1kbps", 8_000),
        ("2mbps", 16_000_000),
        ("1kibit", 1024),
        // Any case, as strcasecmp against lib/utils_math.c's suffixes.
        ("1MBIT", 1_000_000),
        ("1mBiT", 1_000_000),
        ("1KBPS", 8_000),
        ("1KiBps", 8 * 1024),
        ("1MIBIT", 1024 * 1024),
        ("1TBps", 8_000_000_000_000),
    ] {
        let r = ok(&format!("rate {s}")).rate.expect("rate");
        assert_eq!(r.bits_per_second, bits, "{s}");
    }
    let r = ok("rate 1mbit -4 53 5").rate.expect("rate");
    assert_eq!(
        (r.packet_overhead, r.cell_size, r.cell_overhead),
        (-4, 53, 5)
    );
}

#[test]
fn loss_forms() {
    assert_eq!(
        ok("loss random 30% 25%").loss,
        Some(Loss::Random(Chance {
            probability: pct(30.0),
            correlation: pct(25.0)
        }))
    );
    // Without `%`, as tc accepts it.
    assert_eq!(
        ok("drop 30").loss,
        Some(Loss::Random(Chance {
            probability: pct(30.0),
            correlation: Percent::ZERO
        }))
    );
    // iproute2's defaults for the simple Gilbert model.
    assert_eq!(
        ok("loss gemodel 1%").loss,
        Some(Loss::GilbertElliott {
            p: pct(1.0),
            r: pct(99.0),
            bad_loss: Percent::ONE,
            good_loss: Percent::ZERO
        })
    );
    assert_eq!(
        ok("loss gemodel 1% 10% 70% 0.1%").loss,
        Some(Loss::GilbertElliott {
            p: pct(1.0),
            r: pct(10.0),
            bad_loss: pct(70.0),
            good_loss: pct(0.1)
        })
    );
    assert_eq!(
        ok("loss state 1% 30%").loss,
        Some(Loss::State {
            p13: pct(1.0),
            p31: pct(30.0),
            p32: Percent::ZERO,
            p23: Percent::ONE,
            p14: Percent::ZERO
        })
    );
}

#[test]
fn combination_in_one_string() {
    let n = ok(
        "limit 500 delay 10ms 5ms 25% distribution normal loss gemodel 1% 20% \
         duplicate 1% corrupt 0.1% reorder 25% 50% gap 5 rate 10mbit seed 42",
    );
    assert_eq!(n.limit, 500);
    assert_eq!(n.delay.map(|d| d.distribution), Some(Distribution::Normal));
    assert!(matches!(n.loss, Some(Loss::GilbertElliott { .. })));
    assert_eq!(n.duplicate.map(|c| c.probability), Some(pct(1.0)));
    assert_eq!(n.corrupt.map(|c| c.probability), Some(pct(0.1)));
    assert_eq!(n.reorder.map(|r| r.gap), Some(5));
    assert_eq!(n.rate.map(|r| r.bits_per_second), Some(10_000_000));
    assert_eq!(n.seed, Some(42));
}

#[test]
fn empty_string_is_no_impairment() {
    assert_eq!(ok(""), Netem::default());
    assert_eq!(ok("  \t "), Netem::default());
}

#[test]
fn display_parses_back() {
    let n = ok(
        "limit 10 delay 10ms 5ms 25% distribution pareto loss gemodel 1% 20% \
         duplicate 1% corrupt 5% reorder 25% gap 3 rate 10mbit 14 seed 7",
    );
    let text = n.to_string();
    assert!(
        text.starts_with("limit 10 delay 10ms 5ms 25% distribution pareto"),
        "{text}"
    );
    assert_eq!(
        ok("delay 125ms reorder 30% 50%").to_string(),
        "delay 125ms reorder 30% 50% gap 1"
    );
    assert_eq!(ok("loss 30%").to_string(), "loss random 30%");
    let again = ok(&text);
    assert_eq!(again.to_string(), text);
    assert_eq!(again.limit, 10);
    assert_eq!(again.rate, n.rate);
    assert_eq!(again.delay.map(|d| d.latency), Some(ms(10)));
}

#[test]
fn invalid_strings_name_position_and_expectation() {
    let cases: &[(&str, usize, &str, &str)] = &[
        ("delay", 5, "a time after `delay`", "end of input"),
        ("delay 100xs", 6, "a time after `delay`", "`100xs`"),
        ("delay 100ms 75ms 25% loss 130%", 26, "(0 to 100", "`130%`"),
        ("loss banana", 5, "`random`, `state`, `gemodel`", "`banana`"),
        ("loss 30% jitter 5ms", 9, "an option (", "`jitter`"),
        (
            "reorder 30%",
            0,
            "a non-zero `delay` for `reorder`",
            "`reorder`",
        ),
        (
            "delay 10ms distribution normal",
            11,
            "both non-zero",
            "`distribution`",
        ),
        (
            "delay 10ms 1ms distribution gauss",
            28,
            "a distribution",
            "`gauss`",
        ),
        ("rate 1furlong", 5, "a rate after `rate`", "`1furlong`"),
        ("rate 0bit", 5, "from 1bit", "`0bit`"),
        ("loss 30% loss 1%", 9, "already given", "`loss`"),
        ("delay -5ms", 6, "a time after `delay`", "`-5ms`"),
        ("delay nanms", 6, "a time after `delay`", "`nanms`"),
        ("delay 9999s", 6, "at most 3600s", "`9999s`"),
        ("limit 0", 6, "from 1 to", "`0`"),
        ("limit 99999999999", 6, "from 1 to", "`99999999999`"),
        ("delay 10ms slot 1ms", 11, "not implemented", "`slot`"),
        ("loss 1% ecn", 8, "not implemented", "`ecn`"),
        ("loss gemodel", 12, "p, a percentage", "end of input"),
        ("corrupt 30%%", 8, "a percentage after `corrupt`", "`30%%`"),
        ("duplicate 5% gap 5", 13, "for `gap`", "`gap`"),
    ];
    for (input, position, expected, found) in cases {
        let e = err(input);
        assert_eq!(e.position, *position, "{input:?}: {e}");
        assert!(e.expected.contains(expected), "{input:?}: {e}");
        assert_eq!(e.found, *found, "{input:?}: {e}");
        // The message carries all three for the user.
        let shown = e.to_string();
        assert!(shown.contains(&format!("byte {position}")), "{shown}");
    }
}

#[test]
fn position_counts_bytes_not_characters() {
    // A non-ASCII word before the fault moves the offset by its UTF-8 length.
    let e = err("delay 1ms\u{00a0}x");
    assert_eq!(e.position, 11);
    assert_eq!(e.found, "`x`");
    let e = err("délai 1ms");
    assert_eq!(e.position, 0);
    assert_eq!(e.found, "`délai`");
}

#[test]
fn single_values_for_flags() {
    assert_eq!(parse_time("100ms"), Ok(ms(100)));
    assert_eq!(parse_rate("1mbit"), Ok(1_000_000));
    let e = parse_time("100ms 5ms").expect_err("two values");
    assert_eq!((e.position, e.found.as_str()), (6, "`5ms`"));
    assert_eq!(parse_rate("fast").map_err(|e| e.position), Err(0));
    assert_eq!(parse_rate("1mbit 5").map_err(|e| e.position), Err(6));
}

/// q_netem.c, after reading every option: "gap specified without reorder
/// probability" when `opt.gap > 0` and no reorder probability was given;
/// with one, `gap 0` becomes gap 1. `reorder 0%` gives no probability, so
/// it asks for no delay and allows no gap.
#[test]
fn gap_needs_a_reorder_probability_as_in_tc() {
    for input in ["gap 5", "delay 10ms gap 1", "delay 10ms reorder 0% gap 3"] {
        let e = err(input);
        assert!(e.expected.contains("for `gap`"), "{input}: {e}");
        assert_eq!(e.found, "`gap`", "{input}");
    }
    // No gap to speak of: accepted, as tc does.
    assert_eq!(ok("gap 0").reorder, None);
    assert_eq!(
        ok("delay 10ms reorder 25% gap 0").reorder.map(|r| r.gap),
        Some(1)
    );
    assert_eq!(
        ok("delay 10ms reorder 25% gap 4").reorder.map(|r| r.gap),
        Some(4)
    );
    // `reorder 0%` reorders nothing and so needs no delay.
    assert_eq!(ok("reorder 0%").reorder, None);
    assert_eq!(ok("reorder 0 50%").reorder, None);
    // get_u32(.., 0): C integers.
    assert_eq!(
        ok("delay 1ms reorder 5% gap 0x10").reorder.map(|r| r.gap),
        Some(16)
    );
    assert_eq!(
        ok("delay 1ms reorder 5% gap 010").reorder.map(|r| r.gap),
        Some(8)
    );
}

/// q_netem.c: "distribution specified but no latency and jitter values"
/// when `latency64 == 0 || jitter64 == 0`.
#[test]
fn distribution_needs_a_delay_and_a_jitter_as_in_tc() {
    for (input, at) in [
        ("distribution normal", 0),
        ("delay 10ms distribution normal", 11),
        ("delay 0ms 10ms distribution pareto", 15),
        ("distribution normal delay 0 5ms", 0),
    ] {
        let e = err(input);
        assert_eq!(e.position, at, "{input}: {e}");
        assert!(e.expected.contains("both non-zero"), "{input}: {e}");
    }
    let d = ok("delay 10ms 5ms distribution paretonormal")
        .delay
        .expect("delay");
    assert_eq!(d.distribution, Distribution::ParetoNormal);
    // Without a distribution, a zero latency with a jitter is fine.
    assert_eq!(ok("delay 0ms 10ms").delay.map(|d| d.jitter), Some(ms(10)));
}

/// q_netem.c compares each word with `matches()` (lib/utils.c), which
/// accepts any prefix, in netem_parse_opt's order: `l` is limit, `d` delay,
/// `r` reorder, `s` seed.
#[test]
fn options_abbreviate_as_tc_matches_them() {
    let n = ok("l 10 lat 10ms 5ms di normal lo 1% du 2% r 25% g 3 c 1% ra 1mbit s 7");
    assert_eq!(n.limit, 10);
    assert_eq!(
        n.delay.map(|d| (d.latency, d.distribution)),
        Some((ms(10), Distribution::Normal))
    );
    assert!(matches!(n.loss, Some(Loss::Random(_))));
    assert_eq!(n.duplicate.map(|c| c.probability), Some(pct(2.0)));
    assert_eq!(n.reorder.map(|r| r.gap), Some(3));
    assert_eq!(n.corrupt.map(|c| c.probability), Some(pct(1.0)));
    assert_eq!(n.rate.map(|r| r.bits_per_second), Some(1_000_000));
    assert_eq!(n.seed, Some(7));
    assert_eq!(ok("d 5ms").delay.map(|d| d.latency), Some(ms(5)));
    assert!(matches!(ok("dr 5%").loss, Some(Loss::Random(_))));
    // A word that is no option's prefix, or longer than the option.
    assert_eq!(err("delays 5ms").found, "`delays`");
    assert_eq!(err("x 5ms").found, "`x`");
    // `loss` models are compared whole (strcmp): no `gmodel`.
    assert_eq!(err("loss gmodel 1%").found, "`gmodel`");
    // `limit` is read with get_size: `k` is 1024.
    assert_eq!(ok("limit 2k").limit, 2048);
}
