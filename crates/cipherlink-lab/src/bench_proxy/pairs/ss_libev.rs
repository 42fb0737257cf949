//! A shadowsocks-libev pair: `ss-tunnel -L backend` (a plain TCP port
//! forward through the server) in front of `ss-server`. Both read the
//! password and cipher from a 0600 configuration file.

use std::path::Path;

use cipherlink_files::Access;

use super::{Ctx, Pair};
use crate::bench_proxy::client::Entry;
use crate::bench_proxy::process::{spare_addr, wait_listening, Proc};
use crate::LabError;

/// ss-libev's default cipher.
const METHOD: &str = "chacha20-ietf-poly1305";

pub(super) const CRYPTO: &str = "AEAD chacha20-ietf-poly1305 (ss-libev's default) under a \
    key from a shared password, per-connection HKDF-SHA1 subkey from a random salt; no \
    handshake, no forward secrecy";

pub(super) async fn start(ctx: &Ctx<'_>, program: &Path) -> Result<Pair, LabError> {
    let material = ctx.material;
    let server_addr = spare_addr()?;
    let client_addr = spare_addr()?;
    // Debian's packaged configuration: its timeout (a day) keeps idle
    // tunnels open through the idle case; the password is ours.
    let config = format!(
        "{{\"server\":\"127.0.0.1\",\"server_port\":{},\"password\":\"{}\",\
         \"timeout\":86400,\"method\":\"{METHOD}\"}}\n",
        server_addr.port(),
        material.ss_password()
    );
    let file = format!("ss-{}.json", server_addr.port());
    material.write(&file, config.as_bytes(), Access::Private)?;
    let mut server = Proc::spawn(
        "ss-server (server end)",
        program,
        &["-c".into(), material.arg(&file)],
        &[],
    )?;
    wait_listening(&mut server, server_addr).await?;
    let tunnel = program.with_file_name("ss-tunnel");
    let args = [
        "-c".to_string(),
        material.arg(&file),
        "-b".into(),
        "127.0.0.1".into(),
        "-l".into(),
        client_addr.port().to_string(),
        "-L".into(),
        ctx.backend.to_string(),
    ];
    let mut client = Proc::spawn("ss-tunnel (client end)", &tunnel, &args, &[])?;
    wait_listening(&mut client, client_addr).await?;
    Ok(Pair {
        entry: Entry::Tcp(client_addr),
        procs: vec![server, client],
    })
}
