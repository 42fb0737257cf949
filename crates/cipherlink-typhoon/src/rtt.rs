//! TYPHOON's RTT estimate (RFC 6298's smoothing with SeasideVPN's
//! constants): what the handshake timers wait for.

use crate::settings::TyphoonSettings;

/// Smoothed RTT and its variance, in ms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rtt {
    srtt: Option<f64>,
    rttvar: Option<f64>,
}

impl Rtt {
    /// Folds in one sample (ms).
    pub fn sample(&mut self, s: &TyphoonSettings, rtt: f64) {
        match (self.srtt, self.rttvar) {
            (Some(srtt), Some(var)) => {
                self.rttvar = Some((1.0 - s.beta) * var + s.beta * (srtt - rtt).abs());
                self.srtt = Some((1.0 - s.alpha) * srtt + s.alpha * rtt);
            }
            _ => {
                self.srtt = Some(rtt);
                self.rttvar = Some(rtt / 2.0);
            }
        }
    }

    /// The RTT the timers use: SRTT (or the default) within [MIN_RTT, MAX_RTT].
    pub fn rtt(&self, s: &TyphoonSettings) -> u64 {
        let r = self.srtt.unwrap_or(s.default_rtt as f64);
        (r as u64).clamp(s.min_rtt, s.max_rtt)
    }

    /// How long past a `next_in` an answer may take: SRTT + RTT_MULT ×
    /// RTTVAR (or the default) within [MIN_TIMEOUT, MAX_TIMEOUT].
    pub fn timeout(&self, s: &TyphoonSettings) -> u64 {
        let t = match (self.srtt, self.rttvar) {
            (Some(srtt), Some(var)) => srtt + s.rtt_mult * var,
            _ => s.default_timeout as f64,
        };
        (t as u64).clamp(s.min_timeout, s.max_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_until_the_first_sample_then_smoothed_and_clamped() {
        let s = TyphoonSettings::default();
        let mut r = Rtt::default();
        assert_eq!((r.rtt(&s), r.timeout(&s)), (5_000, 30_000));
        r.sample(&s, 2_000.0);
        // srtt 2000, rttvar 1000: timeout 2000 + 4 * 1000.
        assert_eq!((r.rtt(&s), r.timeout(&s)), (2_000, 6_000));
        r.sample(&s, 10_000.0);
        // rttvar 0.75*1000 + 0.25*8000 = 2750; srtt 0.875*2000 + 0.125*10000 = 3000.
        assert_eq!((r.rtt(&s), r.timeout(&s)), (3_000, 14_000));
        for _ in 0..20 {
            r.sample(&s, 0.0);
        }
        assert_eq!((r.rtt(&s), r.timeout(&s)), (s.min_rtt, s.min_timeout));
        let mut big = Rtt::default();
        big.sample(&s, 1e9);
        assert_eq!((big.rtt(&s), big.timeout(&s)), (s.max_rtt, s.max_timeout));
    }
}
