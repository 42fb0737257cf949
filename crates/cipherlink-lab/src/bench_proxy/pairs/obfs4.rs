//! An obfs4 pair: obfs4proxy twice, each run as Tor runs a managed
//! pluggable transport (pt-spec.txt): the server end listens where it says
//! (`SMETHOD`) and forwards to the backend as its "ORPort"; the client end
//! offers a SOCKS5 port (`CMETHOD`), which the bench's client asks for the
//! server, passing the bridge line's `cert` and `iat-mode` as the SOCKS5
//! username/password.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use super::{Ctx, Pair};
use crate::bench_proxy::client::Entry;
use crate::bench_proxy::process::Proc;
use crate::bench_proxy::socks5::Socks5Dialer;
use crate::LabError;

const PEER: &str = "obfs4";

pub(super) const CRYPTO: &str = "obfs4 (ntor handshake over X25519 with Elligator2-encoded \
    keys, frames sealed with NaCl secretbox: XSalsa20-Poly1305, lengths masked with \
    SipHash-2-4), iat-mode=0 (its default)";

/// The bridge line's longest accepted size.
const BRIDGE_LINE_MAX: u64 = 64 * 1024;

pub(super) async fn start(ctx: &Ctx<'_>, program: &Path) -> Result<Pair, LabError> {
    let material = ctx.material;
    let state = material.fresh_folder("obfs4-server")?;
    let managed = |state: &Path| {
        vec![
            ("TOR_PT_MANAGED_TRANSPORT_VER", "1".to_string()),
            ("TOR_PT_STATE_LOCATION", state.display().to_string()),
            // Ends with the bench, however it ends.
            ("TOR_PT_EXIT_ON_STDIN_CLOSE", "1".to_string()),
        ]
    };
    let mut env = managed(&state);
    env.extend([
        ("TOR_PT_SERVER_TRANSPORTS", "obfs4".to_string()),
        // Port 0: it picks one and says which, so no port can be taken meanwhile.
        ("TOR_PT_SERVER_BINDADDR", "obfs4-127.0.0.1:0".to_string()),
        ("TOR_PT_ORPORT", ctx.backend.to_string()),
    ]);
    let mut server = Proc::spawn("obfs4proxy server end", program, &[], &env)?;
    let server_addr = server
        .stdout_line(
            |line| method_line(line, "SMETHOD obfs4 "),
            "its SMETHOD line",
        )
        .await?
        .map_err(|detail| LabError::PeerProtocol { peer: PEER, detail })?;
    let bridge_file = state.join("obfs4_bridgeline.txt");
    let bridge = cipherlink_files::read_trusted_text(&bridge_file, BRIDGE_LINE_MAX)?;
    let (cert, iat_mode) = bridge_args(&bridge).ok_or_else(|| LabError::PeerProtocol {
        peer: PEER,
        detail: format!(
            "{} has no `Bridge obfs4 ... cert=... iat-mode=...` line",
            bridge_file.display()
        ),
    })?;
    let mut env = managed(&material.fresh_folder("obfs4-client")?);
    env.push(("TOR_PT_CLIENT_TRANSPORTS", "obfs4".to_string()));
    let mut client = Proc::spawn("obfs4proxy client end", program, &[], &env)?;
    let socks = client
        .stdout_line(
            |line| method_line(line, "CMETHOD obfs4 socks5 "),
            "its CMETHOD line",
        )
        .await?
        .map_err(|detail| LabError::PeerProtocol { peer: PEER, detail })?;
    let dialer = Socks5Dialer::with_pt_args(
        socks,
        server_addr,
        &[("cert", &cert), ("iat-mode", &iat_mode)],
    )
    .map_err(|e| LabError::PeerProtocol {
        peer: PEER,
        detail: e.to_string(),
    })?;
    Ok(Pair {
        entry: Entry::Socks5(Arc::new(dialer)),
        procs: vec![server, client],
    })
}

/// `Some(Ok(addr))` for `PREFIX<addr> ...`, `Some(Err)` for the spec's
/// error lines, `None` for anything else (e.g. `VERSION 1`).
fn method_line(line: &str, prefix: &str) -> Option<Result<SocketAddr, String>> {
    if let Some(rest) = line.strip_prefix(prefix) {
        let addr = rest.split_whitespace().next().unwrap_or_default();
        return Some(
            addr.parse()
                .map_err(|_| format!("cannot read the address in {line:?}")),
        );
    }
    let errors = [
        "ENV-ERROR",
        "VERSION-ERROR",
        "SMETHOD-ERROR",
        "CMETHOD-ERROR",
        "PROXY-ERROR",
    ];
    errors
        .iter()
        .any(|e| line.starts_with(e))
        .then(|| Err(format!("it refused to start: {line}")))
}

/// `cert` and `iat-mode` from obfs4_bridgeline.txt's `Bridge obfs4 ...` line.
fn bridge_args(text: &str) -> Option<(String, String)> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("Bridge obfs4 "))?;
    let value = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .map(str::to_string)
    };
    Some((value("cert=")?, value("iat-mode=")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_managed_transport_lines_and_the_bridge_line() {
        assert_eq!(
            method_line(
                "SMETHOD obfs4 127.0.0.1:46137 ARGS:cert=Lk,iat-mode=0",
                "SMETHOD obfs4 "
            ),
            Some(Ok("127.0.0.1:46137".parse().expect("addr")))
        );
        assert_eq!(method_line("VERSION 1", "SMETHOD obfs4 "), None);
        assert!(matches!(
            method_line("SMETHOD-ERROR obfs4 no state", "SMETHOD obfs4 "),
            Some(Err(_))
        ));
        let file = "# obfs4 torrc client bridge line\n#\n\
                    Bridge obfs4 <IP ADDRESS>:<PORT> <FINGERPRINT> cert=mooP+A/x iat-mode=0\n";
        assert_eq!(
            bridge_args(file),
            Some(("mooP+A/x".to_string(), "0".to_string()))
        );
        assert_eq!(bridge_args("# nothing here\n"), None);
    }
}
