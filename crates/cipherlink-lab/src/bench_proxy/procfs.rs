//! What another process costs, from /proc: resident memory (VmRSS) and CPU
//! time (utime + stime of every thread, in clock ticks).

use std::time::Duration;

use crate::LabError;

/// Resident memory of `pids` together, bytes.
pub(super) fn rss_bytes(pids: &[u32]) -> Result<u64, LabError> {
    pids.iter().map(|&pid| rss_of(pid)).sum()
}

fn rss_of(pid: u32) -> Result<u64, LabError> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|source| LabError::Proc {
        pid,
        path: path.clone(),
        source,
    })?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .ok_or(LabError::ProcFormat {
            path,
            field: "VmRSS",
        })?;
    Ok(kib * 1024)
}

/// Waits until `pids`' memory stops moving (ends free handshake buffers a
/// little after the client is done), at most a few seconds; the last reading.
pub(super) async fn settled_rss(pids: &[u32]) -> Result<u64, LabError> {
    const STEP: Duration = Duration::from_millis(250);
    const STILL: u64 = 64 * 1024;
    let mut last = rss_bytes(pids)?;
    for _ in 0..20 {
        tokio::time::sleep(STEP).await;
        let now = rss_bytes(pids)?;
        if now.abs_diff(last) <= STILL {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

/// CPU time `pids` have used together (all their threads).
pub(super) fn cpu_time(pids: &[u32]) -> Result<Duration, LabError> {
    let ticks: u64 = pids
        .iter()
        .map(|&pid| cpu_ticks_of(pid))
        .sum::<Result<u64, LabError>>()?;
    Ok(ticks_to_time(ticks, clock_ticks_per_second()))
}

fn cpu_ticks_of(pid: u32) -> Result<u64, LabError> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|source| LabError::Proc {
        pid,
        path: path.clone(),
        source,
    })?;
    stat_cpu_ticks(&stat).ok_or(LabError::ProcFormat {
        path,
        field: "utime and stime",
    })
}

/// utime + stime from a /proc/PID/stat line. The command name (field 2) is
/// in parentheses and may itself hold spaces and parentheses, so fields are
/// counted from the last `)`: state is field 3, utime 14, stime 15.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after) = stat.rsplit_once(')')?;
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> u64 {
    use nix::unistd::{sysconf, SysconfVar};
    // Linux reports 100 everywhere user space can see; the fallback only
    // matters where sysconf cannot answer.
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(hz)) if hz > 0 => u64::try_from(hz).unwrap_or(100),
        _ => 100,
    }
}

fn ticks_to_time(ticks: u64, hz: u64) -> Duration {
    Duration::from_micros(ticks.saturating_mul(1_000_000) / hz.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_counted_after_a_command_name_with_spaces_and_parentheses() {
        // Fields 14 and 15 (utime 250, stime 31) of a process named "a) (b".
        let stat = "4242 (a) (b) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 31 0 0 20 0 3 0 100 \
                    1000000 500 18446744073709551615";
        assert_eq!(stat_cpu_ticks(stat), Some(281));
        assert_eq!(stat_cpu_ticks("4242 (x) S 1 2"), None);
        assert_eq!(ticks_to_time(281, 100), Duration::from_millis(2810));
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let rss = rss_bytes(&[me]).expect("own VmRSS");
        assert!(rss > 0);
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        // Only "it moved": 60 ms of work is at least one 10 ms tick.
        assert!(cpu_time(&[me]).expect("own stat") > Duration::ZERO);
    }
}
