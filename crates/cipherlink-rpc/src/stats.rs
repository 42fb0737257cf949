//! Latency statistics from an HdrHistogram (microsecond units, 3 significant
//! digits), so percentiles are exact to 0.1% however many samples there are.

use hdrhistogram::Histogram;

/// The percentiles every report shows.
pub const PERCENTILES: [(f64, &str); 6] = [
    (50.0, "p50"),
    (90.0, "p90"),
    (95.0, "p95"),
    (99.0, "p99"),
    (99.9, "p99.9"),
    (100.0, "max"),
];

/// A histogram of milliseconds, stored as microseconds.
#[derive(Debug, Clone)]
pub struct Latencies {
    hist: Histogram<u64>,
    sum_ms: f64,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    /// An empty histogram covering 1 us to one hour.
    pub fn new() -> Self {
        // Fails only for invalid bounds; these are constants, checked by the tests.
        let hist = Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .expect("constant histogram bounds are valid");
        Self { hist, sum_ms: 0.0 }
    }

    /// Records one latency in milliseconds (negative or NaN are ignored).
    pub fn record_ms(&mut self, ms: f64) {
        if !(ms.is_finite() && ms >= 0.0) {
            return;
        }
        let us = (ms * 1000.0).round().max(1.0) as u64;
        // Above the top bound: saturate rather than drop, so max stays honest-ish.
        let us = us.min(self.hist.high());
        if self.hist.record(us).is_ok() {
            self.sum_ms += ms;
        }
    }

    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// Mean in milliseconds (from the exact sum, not the buckets).
    pub fn mean_ms(&self) -> f64 {
        if self.is_empty() {
            0.0
        } else {
            self.sum_ms / self.len() as f64
        }
    }

    /// The value at `q` percent, in milliseconds.
    pub fn percentile_ms(&self, q: f64) -> f64 {
        if self.is_empty() {
            return 0.0;
        }
        if q >= 100.0 {
            return self.hist.max() as f64 / 1000.0;
        }
        self.hist.value_at_percentile(q) as f64 / 1000.0
    }

    /// (percentile, ms) points for a distribution plot, log-spaced toward the tail.
    pub fn distribution(&self) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        if self.is_empty() {
            return out;
        }
        // "Nines" spacing: 0, 90, 99, 99.9 ... as in HdrHistogram's own plots.
        let mut tail = 1.0_f64;
        while tail > 1e-6 {
            for step in 0..20 {
                let q = 100.0 * (1.0 - tail * (1.0 - 0.9 * f64::from(step) / 20.0));
                out.push((q, self.percentile_ms(q)));
            }
            tail /= 10.0;
            if (tail * self.len() as f64) < 1.0 {
                break;
            }
        }
        out.push((100.0, self.percentile_ms(100.0)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_ramp() {
        let mut l = Latencies::new();
        for i in 1..=1000 {
            l.record_ms(f64::from(i) / 100.0);
        }
        assert_eq!(l.len(), 1000);
        assert!((l.percentile_ms(50.0) - 5.0).abs() < 0.01);
        assert!((l.percentile_ms(99.0) - 9.9).abs() < 0.02);
        assert!((l.percentile_ms(100.0) - 10.0).abs() < 0.01);
        assert!((l.mean_ms() - 5.005).abs() < 1e-9);
    }
}
