//! Process CPU time, so a rate can be expressed as CPU cost per operation:
//! unlike wall-clock rates, that stays comparable when other work shares
//! the machine.

use std::time::Duration;

use nix::sys::resource::{getrusage, UsageWho};

/// User + system CPU time this process has used (getrusage, microsecond
/// resolution), if the OS tells us.
pub fn process_cpu_time() -> Option<Duration> {
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    Some(timeval(usage.user_time()) + timeval(usage.system_time()))
}

fn timeval(t: nix::sys::time::TimeVal) -> Duration {
    let micros = t.tv_sec() as i128 * 1_000_000 + t.tv_usec() as i128;
    Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_has_microsecond_resolution() {
        // /proc/self/stat counted 10 ms ticks, so the first change seen was a
        // whole tick; getrusage moves in microseconds.
        let before = process_cpu_time().expect("getrusage works on this OS");
        let mut after = before;
        let mut x = 0u64;
        while after == before {
            for _ in 0..1000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            after = process_cpu_time().expect("getrusage works on this OS");
        }
        std::hint::black_box(x);
        assert!(
            after - before < Duration::from_millis(5),
            "{before:?} -> {after:?}"
        );
    }

    #[test]
    fn cpu_time_advances_under_work() {
        let Some(before) = process_cpu_time() else {
            return; // not Linux
        };
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = process_cpu_time().expect("worked a moment ago");
        assert!(after > before, "{before:?} -> {after:?}");
    }
}
