//! Runs the model over a synthetic packet train and summarises what it did,
//! so a netem string can be checked (`cipherlink chaos netem ...`) before
//! a scenario depends on it.

use std::time::Duration;

use crate::model::{Decision, DropReason, Model};
use crate::netem::Netem;

/// The packet train offered to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Train {
    /// Packets offered.
    pub packets: u32,
    /// Bytes per packet.
    pub size: usize,
    /// Time between offers.
    pub interval: Duration,
    /// Seed of the model.
    pub seed: u64,
}

/// What the model did to the train.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Packets offered.
    pub offered: u32,
    /// Copies delivered (duplicates included).
    pub delivered: u64,
    /// Packets lost by the loss model.
    pub lost: u64,
    /// Packets dropped because `limit` were held.
    pub queue_full: u64,
    /// Packets delivered twice.
    pub duplicated: u64,
    /// Copies with a bit flipped.
    pub corrupted: u64,
    /// Copies sent at once by `reorder`.
    pub reordered: u64,
    /// Copies delivered before one offered earlier.
    pub out_of_order: u64,
    /// Delay of each delivered copy, sorted, in seconds.
    pub delays: Vec<f64>,
    /// Delivered bits per second between the first offer and the last delivery.
    pub throughput_bps: f64,
}

impl Summary {
    /// The `q`-quantile of the delays (0.0 to 1.0), in seconds.
    pub fn delay_quantile(&self, q: f64) -> Option<f64> {
        let last = self.delays.len().checked_sub(1)?;
        let index = ((last as f64) * q.clamp(0.0, 1.0)).round() as usize;
        self.delays.get(index).copied()
    }

    /// Mean and standard deviation of the delays, in seconds.
    pub fn delay_mean_sd(&self) -> Option<(f64, f64)> {
        let n = self.delays.len() as f64;
        if self.delays.is_empty() {
            return None;
        }
        let mean = self.delays.iter().sum::<f64>() / n;
        let var = self.delays.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n;
        Some((mean, var.sqrt()))
    }
}

/// Offers the train to a model of `netem`.
pub fn simulate(netem: &Netem, train: Train) -> Summary {
    let mut model = Model::new(netem.clone(), train.seed);
    let mut s = Summary {
        offered: train.packets,
        delivered: 0,
        lost: 0,
        queue_full: 0,
        duplicated: 0,
        corrupted: 0,
        reordered: 0,
        out_of_order: 0,
        // Grows with what is delivered; the caller bounds the train.
        delays: Vec::with_capacity((train.packets as usize).min(1 << 20)),
        throughput_bps: 0.0,
    };
    let mut latest = Duration::ZERO;
    for i in 0..train.packets {
        let now = train.interval.saturating_mul(i);
        let decision = model.decide(train.size, now);
        match decision {
            Decision::Dropped(DropReason::Loss) => s.lost += 1,
            Decision::Dropped(DropReason::QueueFull) => s.queue_full += 1,
            Decision::Duplicate(_) => s.duplicated += 1,
            Decision::Deliver(_) => {}
        }
        for d in decision.deliveries() {
            s.delivered += 1;
            s.corrupted += u64::from(d.corrupt.is_some());
            s.reordered += u64::from(d.reordered);
            if d.at < latest {
                s.out_of_order += 1;
            }
            latest = latest.max(d.at);
            s.delays.push((d.at - now).as_secs_f64());
        }
    }
    s.delays.sort_by(f64::total_cmp);
    if !latest.is_zero() {
        s.throughput_bps = s.delivered as f64 * train.size as f64 * 8.0 / latest.as_secs_f64();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netem::parse;

    fn train() -> Train {
        Train {
            packets: 10_000,
            size: 1250,
            interval: Duration::from_millis(1),
            seed: 1,
        }
    }

    #[test]
    fn summary_of_the_seed_scenarios() {
        let s = simulate(&parse("loss 30%").expect("parses"), train());
        assert_eq!(s.lost + s.delivered, 10_000);
        assert!((2_800..3_200).contains(&s.lost), "{}", s.lost);

        let s = simulate(&parse("delay 100ms 75ms").expect("parses"), train());
        let (mean, _) = s.delay_mean_sd().expect("delays");
        assert!((mean - 0.1).abs() < 0.003, "{mean}");
        assert!(s.delay_quantile(0.0).is_some_and(|d| d >= 0.025));
        assert!(s.delay_quantile(1.0).is_some_and(|d| d <= 0.175));
        // Jitter wider than the spacing reorders, as kernel netem's tfifo does.
        assert!(s.out_of_order > 1000);

        let s = simulate(&parse("duplicate 30%").expect("parses"), train());
        assert_eq!(s.delivered, 10_000 + s.duplicated);

        let s = simulate(&parse("rate 5mbit").expect("parses"), train());
        // 10 mbit/s offered into 5: the link's rate comes out.
        assert!((s.throughput_bps - 5e6).abs() < 5e3, "{}", s.throughput_bps);
    }
}
