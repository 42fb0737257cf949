//! Which processes listen on which TCP ports, read from /proc (Linux), so
//! the docs test can wait for a server a doc starts with `&` without
//! knowing its port, and name whoever holds a port a doc needs.

use std::collections::HashSet;
use std::fs;

/// One process: its id, parent and process group.
#[derive(Debug, Clone, Copy)]
pub struct ProcInfo {
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// Process group id.
    pub pgrp: u32,
}

/// Every process we can see.
pub fn processes() -> Vec<ProcInfo> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces and parentheses: fields follow the last ')'.
        let fields: Vec<&str> = stat
            .get(stat.rfind(')')? + 1..)?
            .split_whitespace()
            .collect();
        let state = *fields.first()?;
        if state == "Z" || state == "X" {
            return None;
        }
        Some(ProcInfo {
            pid,
            ppid: fields.get(1)?.parse().ok()?,
            pgrp: fields.get(2)?.parse().ok()?,
        })
    })
    .collect()
}

/// The live processes of process group `pgrp`.
pub fn group(pgrp: u32) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|p| p.pgrp == pgrp)
        .map(|p| p.pid)
        .collect()
}

/// `root` and every live process below it.
pub fn descendants(root: u32) -> Vec<u32> {
    let all = processes();
    let mut out = vec![root];
    let mut i = 0;
    while let Some(&parent) = out.get(i) {
        out.extend(all.iter().filter(|p| p.ppid == parent).map(|p| p.pid));
        i += 1;
    }
    out
}

/// (socket inode, port) of every listening TCP socket (IPv4 and IPv6).
fn listening() -> Vec<(u64, u16)> {
    let mut out = Vec::new();
    // TCP in state 0A (LISTEN); UDP unconnected (07) with no remote: a
    // datagram server's socket (`link serve --wire typhoon`).
    let tables = [
        ("/proc/net/tcp", "0A"),
        ("/proc/net/tcp6", "0A"),
        ("/proc/net/udp", "07"),
        ("/proc/net/udp6", "07"),
    ];
    for (table, state) in tables {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for row in text.lines().skip(1) {
            // sl local_address rem_address st ... inode
            let fields: Vec<&str> = row.split_whitespace().collect();
            if fields.get(3) != Some(&state) {
                continue;
            }
            let unconnected = fields
                .get(2)
                .is_some_and(|r| r.split(':').next_back().is_some_and(|p| p == "0000"));
            if state == "07" && !unconnected {
                continue;
            }
            let port = fields
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            let inode = fields.get(9).and_then(|i| i.parse().ok());
            if let (Some(inode), Some(port)) = (inode, port) {
                out.push((inode, port));
            }
        }
    }
    out
}

/// The socket inodes `pid` holds open.
fn sockets_of(pid: u32) -> HashSet<u64> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    dir.filter_map(|fd| {
        let target = fs::read_link(fd.ok()?.path()).ok()?;
        let target = target.to_str()?;
        target
            .strip_prefix("socket:[")?
            .strip_suffix(']')?
            .parse()
            .ok()
    })
    .collect()
}

/// The ports the processes in `pids` listen on.
pub fn listening_ports(pids: &[u32]) -> Vec<u16> {
    let mine: HashSet<u64> = pids.iter().flat_map(|&pid| sockets_of(pid)).collect();
    let mut ports: Vec<u16> = listening()
        .into_iter()
        .filter(|(inode, _)| mine.contains(inode))
        .map(|(_, port)| port)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Who listens on `port`, if anyone: "pid N (command line)", or "a process
/// we cannot see" when the socket is someone else's.
pub fn holder(port: u16) -> Option<String> {
    let inodes: HashSet<u64> = listening()
        .into_iter()
        .filter(|&(_, p)| p == port)
        .map(|(inode, _)| inode)
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let found = processes()
        .into_iter()
        .find(|p| !sockets_of(p.pid).is_disjoint(&inodes));
    Some(match found {
        Some(p) => {
            let cmdline = fs::read(format!("/proc/{}/cmdline", p.pid)).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace(['\0', '\n'], " ");
            let cmdline: String = cmdline.trim().chars().take(120).collect();
            format!("pid {} ({cmdline})", p.pid)
        }
        None => "a process this user cannot see".into(),
    })
}

/// Sends `signal` (`TERM`, `KILL`) to a process, or with `group` to its whole
/// process group; a process already gone is not an error.
pub fn signal(id: u32, group: bool, signal: &str) {
    let target = if group {
        format!("-{id}")
    } else {
        id.to_string()
    };
    let _ = std::process::Command::new("kill")
        .args([&format!("-{signal}"), "--", &target])
        .stderr(std::process::Stdio::null())
        .status();
}
