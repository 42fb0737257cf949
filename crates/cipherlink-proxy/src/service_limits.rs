//! How many tunnels a link or port server may hold, and how many
//! connections its listener may hold before they are admitted: each
//! admitting server gets its share of the process's open-file limit, so
//! one token holder's tunnels cannot take the descriptors the listener's
//! admission table and every other service count on.

/// `max_connections` for a link or port server, no more than its tunnels'
/// share of the open-file limit (`room`) can hold (each relayed tunnel is
/// two sockets: the authenticated connection and the service's), so that
/// one token holder's tunnels cannot take the descriptors the listener's
/// admission table and every other service count on.
pub(crate) fn relayed_tunnels_cap(name: &str, configured: usize, room: Option<u64>) -> usize {
    let held = cap_to_room(configured, room);
    if held < configured {
        tracing::warn!(
            service = %name,
            "max_connections {configured} is more than the open-file limit leaves this server's tunnels ({} descriptors, 2 per tunnel): holding {held} tunnels",
            room.unwrap_or(0)
        );
    }
    held
}

/// Descriptors a PORT listener holds apart from its tunnels: each pending
/// place its first connection, its user port and the second connection,
/// and the admitted sessions queued for a permit (`QUEUE` in
/// cipherlink-port's listener, docs/port-wire.md "Through the proxy").
fn port_listener_descriptors(pending: cipherlink_port::driver::PendingLimits) -> u64 {
    3 * pending.total as u64 + 64
}

/// One admitting server's share of `soft` open files, shared with
/// `servers` admitting (link and port) servers of the process.
fn server_share(soft: u64, servers: usize) -> u64 {
    soft.saturating_sub(cipherlink_link::gate::RESERVED_DESCRIPTORS) / servers.max(1) as u64
}

/// A port server's pending places, as the link listener sizes its table:
/// half of its share of the descriptors (three a place), at most
/// `MAX_PENDING`, a quarter of that per address group.
fn port_pending(soft: u64, servers: usize) -> cipherlink_port::driver::PendingLimits {
    let half = server_share(soft, servers) / 2;
    let total = usize::try_from(half.saturating_sub(64) / 3)
        .unwrap_or(usize::MAX)
        .clamp(1, cipherlink_port::driver::MAX_PENDING);
    cipherlink_port::driver::PendingLimits {
        total,
        per_group: (total / 4).max(1),
    }
}

/// What a port server's tunnels may hold of `soft` open files: its share
/// less its listener's.
fn port_descriptors(soft: u64, servers: usize) -> u64 {
    server_share(soft, servers)
        .saturating_sub(port_listener_descriptors(port_pending(soft, servers)))
}

fn soft_open_files() -> Option<u64> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

pub(crate) fn port_descriptors_of_this_process(servers: usize) -> Option<u64> {
    soft_open_files().map(|soft| port_descriptors(soft, servers))
}

pub(crate) fn port_pending_of_this_process(
    servers: usize,
) -> cipherlink_port::driver::PendingLimits {
    soft_open_files()
        .map(|soft| port_pending(soft, servers))
        .unwrap_or_default()
}

/// `configured`, or fewer: as many tunnels of two sockets as `room` holds.
fn cap_to_room(configured: usize, room: Option<u64>) -> usize {
    match room {
        Some(room) => configured.min(usize::try_from(room / 2).unwrap_or(usize::MAX).max(1)),
        None => configured,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Service;
    use crate::{Role, ServiceConfig, Transport};
    use cipherlink_link::gate::ServerLimits;

    /// A link server's relayed links fit in what the open-file limit
    /// leaves them beside the admission table: a token holder cannot open
    /// links until the process runs out of descriptors.
    #[test]
    fn relayed_links_fit_in_their_share_of_the_open_files() {
        for (soft, servers) in [(1024u64, 1usize), (1024, 3), (65_536, 2)] {
            let table = ServerLimits::for_open_files(soft, servers).max_unauthenticated as u64;
            let room = ServerLimits::link_descriptors(soft, servers);
            let held = cap_to_room(16_384, Some(room)) as u64;
            assert!(
                held * 2 + table <= soft / servers as u64,
                "soft {soft}, {servers} servers: {held} tunnels and {table} in the table"
            );
        }
        assert_eq!(cap_to_room(100, Some(1_000_000)), 100);
        assert_eq!(cap_to_room(100, None), 100);
    }

    /// A port server's tunnels (two sockets each) and its listener's
    /// pending connections fit in the open-file limit: one token holder
    /// cannot open tunnels until the listener has no descriptor left for
    /// the INITs and user ports of every other client.
    #[tokio::test]
    async fn a_port_servers_tunnels_fit_in_its_share_of_the_open_files() {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        use rand::SeedableRng;
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        let soft = soft.min(2048);
        setrlimit(Resource::RLIMIT_NOFILE, soft, hard).expect("setrlimit");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rng = rand::rngs::StdRng::from_os_rng();
        let key = cipherlink_port::ServerKey::generate(&mut rng);
        let mut store = cipherlink_link::TokenStore::new();
        store.issue("alice", &mut rng).expect("issue");
        for (file, text) in [
            ("server.key", key.to_text().to_string()),
            ("tokens.txt", store.to_text().to_string()),
        ] {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dir.path().join(file))
                .expect("create");
            f.write_all(text.as_bytes()).expect("write");
        }
        let mut config =
            ServiceConfig::new(Role::Server, "127.0.0.1:0", "127.0.0.1:9", Transport::Port);
        config.port = Some(crate::config::PortConfig {
            server_key: Some(dir.path().join("server.key")),
            token_store: Some(dir.path().join("tokens.txt")),
            connection_file: None,
        });
        let service = Service::bind("port", &config).await.expect("bind");
        // Each pending place holds its first connection, its user port and
        // the second connection; admitted sessions wait in a queue of 64.
        let listener = port_listener_descriptors(port_pending(soft, 1));
        let tunnels = service.max_connections as u64;
        assert!(
            tunnels * 2 + listener + cipherlink_link::gate::RESERVED_DESCRIPTORS <= soft,
            "{tunnels} tunnels and {listener} listener descriptors in an open-file limit of {soft}"
        );
    }
}
