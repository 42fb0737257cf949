//! The open-file limit, which caps how many connections one process holds:
//! every socket is a file descriptor. Both `serve` (for its clients) and
//! `bench idle` (for its own client sockets) raise their soft limit to the
//! hard limit at start, which any process may do without privileges.

use serde::Serialize;

/// File descriptors a process keeps besides its connections: stdio, the
/// listener, the runtime's epoll and wake-up descriptors, files it reads
/// (certificates, /proc), with room to spare.
pub const RESERVED: u64 = 64;

/// The open-file limit before and after raising it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FdLimit {
    /// The soft limit the process started with.
    pub soft_before: u64,
    /// The soft limit in force now.
    pub soft: u64,
    /// The hard limit: the ceiling for an unprivileged process.
    pub hard: u64,
}

impl FdLimit {
    /// Connections this process can hold at once with this limit.
    pub fn connections(&self) -> usize {
        usize::try_from(self.soft.saturating_sub(RESERVED)).unwrap_or(usize::MAX)
    }
}

/// Raises the soft open-file limit as far as the hard limit allows.
pub fn raise() -> std::io::Result<FdLimit> {
    let (soft_before, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    let soft = rlimit::increase_nofile_limit(u64::MAX)?;
    Ok(FdLimit {
        soft_before,
        soft,
        hard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_reaches_the_hard_limit_and_never_lowers() {
        let limit = raise().expect("getrlimit works on this OS");
        assert!(limit.soft >= limit.soft_before, "{limit:?}");
        // rlimit caps at the kernel's nr_open too, which can be below an unlimited hard limit.
        assert!(limit.soft <= limit.hard, "{limit:?}");
        let again = raise().expect("second raise");
        assert_eq!(again.soft, limit.soft);
        assert_eq!(again.soft_before, limit.soft);
    }
}
