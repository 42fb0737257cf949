//! An HAProxy pair in `mode tcp`: a plain frontend whose backend server is
//! reached over TLS (`ssl verify required ca-file`), and a TLS frontend
//! (`ssl crt`) in front of the bench's backend. One process per end, in
//! the foreground (`-db`), no logging.

use std::path::Path;

use cipherlink_files::Access;

use super::{Ctx, Pair, END_SLACK};
use crate::bench_proxy::client::Entry;
use crate::bench_proxy::process::{spare_addr, wait_listening, Proc};
use crate::LabError;

pub(super) const CRYPTO: &str = "TLS 1.3 (ssl-min-ver TLSv1.3) with OpenSSL's defaults \
    (X25519, TLS_AES_256_GCM_SHA384), ECDSA P-256 certificate, client end verifies the \
    chain and name (verify required, ca-file, verifyhost); session reuse on (HAProxy's default)";

pub(super) async fn start(
    ctx: &Ctx<'_>,
    program: &Path,
    capacity: usize,
) -> Result<Pair, LabError> {
    let material = ctx.material;
    let server_addr = spare_addr()?;
    let client_addr = spare_addr()?;
    // Idle tunnels must outlive the idle case: timeouts of an hour.
    let common = format!(
        "global\n    maxconn {most}\n\
         defaults\n    mode tcp\n    maxconn {most}\n    timeout connect 10s\n    \
         timeout client 1h\n    timeout server 1h\n",
        most = capacity + END_SLACK
    );
    let server = format!(
        "{common}frontend tunnel_in\n    bind {server_addr} ssl crt {} ssl-min-ver TLSv1.3\n    \
         default_backend to_backend\n\
         backend to_backend\n    server backend {}\n",
        material.arg("server.pem"),
        ctx.backend
    );
    let client = format!(
        "{common}frontend plain_in\n    bind {client_addr}\n    default_backend to_server\n\
         backend to_server\n    server tunnel {server_addr} ssl verify required ca-file {} \
         verifyhost localhost sni str(localhost) ssl-min-ver TLSv1.3\n",
        material.arg("ca.crt")
    );
    let mut procs = Vec::new();
    for (end, text, addr) in [
        ("server", server, server_addr),
        ("client", client, client_addr),
    ] {
        let file = format!("haproxy-{end}-{}.cfg", addr.port());
        material.write(&file, text.as_bytes(), Access::Public)?;
        let args = ["-db".to_string(), "-f".to_string(), material.arg(&file)];
        let mut proc = Proc::spawn(format!("haproxy {end} end"), program, &args, &[])?;
        wait_listening(&mut proc, addr).await?;
        procs.push(proc);
    }
    Ok(Pair {
        entry: Entry::Tcp(client_addr),
        procs,
    })
}
