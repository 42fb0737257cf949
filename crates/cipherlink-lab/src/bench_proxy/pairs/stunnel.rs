//! A stunnel4 pair: `client = yes` in front, a TLS server end behind.

use std::path::Path;

use cipherlink_files::Access;

use super::{Ctx, Pair};
use crate::bench_proxy::client::Entry;
use crate::bench_proxy::process::{spare_addr, wait_listening, Proc};
use crate::LabError;

pub(super) const CRYPTO: &str = "TLS 1.3 with OpenSSL's defaults (X25519, \
    TLS_AES_256_GCM_SHA384), ECDSA P-256 certificate, client verifies the chain and \
    host (verifyChain, checkHost); session resumption on (stunnel's default)";

pub(super) async fn start(ctx: &Ctx<'_>, program: &Path) -> Result<Pair, LabError> {
    let material = ctx.material;
    let server_addr = spare_addr()?;
    let client_addr = spare_addr()?;
    // Errors only (debug = 3): per-tunnel log lines are not what is measured.
    let common = "foreground = yes\npid =\ndebug = 3\n";
    let server = format!(
        "{common}[server]\naccept = {server_addr}\nconnect = {}\ncert = {}\nkey = {}\n",
        ctx.backend,
        material.arg("server.crt"),
        material.arg("server.key")
    );
    let client = format!(
        "{common}[client]\nclient = yes\naccept = {client_addr}\nconnect = {server_addr}\n\
         CAfile = {}\nverifyChain = yes\ncheckHost = localhost\n",
        material.arg("ca.crt")
    );
    let mut procs = Vec::new();
    for (end, text, addr) in [
        ("server", server, server_addr),
        ("client", client, client_addr),
    ] {
        let file = format!("stunnel-{end}-{}.conf", addr.port());
        material.write(&file, text.as_bytes(), Access::Public)?;
        let mut proc = Proc::spawn(
            format!("stunnel {end} end"),
            program,
            &[material.arg(&file)],
            &[],
        )?;
        wait_listening(&mut proc, addr).await?;
        procs.push(proc);
    }
    Ok(Pair {
        entry: Entry::Tcp(client_addr),
        procs,
    })
}
