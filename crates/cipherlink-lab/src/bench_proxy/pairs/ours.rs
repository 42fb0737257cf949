//! A `cipherlink proxy client` + `cipherlink proxy server` pair.

use cipherlink_proxy::Transport;

use super::{Ctx, Pair, END_SLACK};
use crate::bench_proxy::client::Entry;
use crate::bench_proxy::options::{BenchProxyOptions, OurTransport};
use crate::bench_proxy::process::{spare_addr, wait_listening, Proc};
use crate::LabError;

pub(super) fn crypto(ours: OurTransport, options: &BenchProxyOptions) -> String {
    let crypto = crypto_of(ours.transport, options);
    if ours.mux {
        let crypto = crypto.replace("; a full handshake per tunnel", "");
        format!("{crypto}; tunnels as streams of one connection (--mux, one handshake)")
    } else {
        crypto
    }
}

fn crypto_of(transport: Transport, options: &BenchProxyOptions) -> String {
    match transport {
        Transport::Plain => "none (the proxies' own cost, without encryption)".into(),
        Transport::Tls => {
            let groups = match &options.groups {
                Some(list) => list.iter().map(|g| g.name()).collect::<Vec<_>>().join(","),
                None => "X25519MLKEM768 first (the default)".into(),
            };
            format!(
                "TLS 1.3 (rustls), groups {groups}, ECDSA P-256 certificate verified with \
                 its name, session resumption on (the default)"
            )
        }
        Transport::Link => "link protocol (X25519 + ML-KEM-768 hybrid, Elligator2, \
                            AES-256-GCM records, a token per client; a full handshake per tunnel)"
            .into(),
        Transport::V1 => "v1 frame: NaCl box (X25519 static keys, XSalsa20-Poly1305)".into(),
        Transport::Port => "SeasideVPN's PORT (X25519 with a static server key, \
                            XChaCha20-Poly1305, random tails; two connections and a full \
                            exchange per tunnel)"
            .into(),
        other => format!("{} transport", other.name()),
    }
}

pub(super) async fn start(
    ctx: &Ctx<'_>,
    ours: OurTransport,
    capacity: usize,
) -> Result<Pair, LabError> {
    let (options, material) = (ctx.options, ctx.material);
    let transport = ours.transport;
    let server_addr = spare_addr()?;
    let client_addr = spare_addr()?;
    let name = transport.name().to_string();
    let row = ours.name();
    let most = (capacity + END_SLACK).to_string();
    let mut server: Vec<String> = [
        "proxy",
        "server",
        "--listen",
        &server_addr.to_string(),
        "--forward",
        &ctx.backend.to_string(),
        "--transport",
        &name,
        "--max-connections",
        &most,
    ]
    .map(String::from)
    .to_vec();
    let mut client: Vec<String> = [
        "proxy",
        "client",
        "--listen",
        &client_addr.to_string(),
        "--connect",
        &server_addr.to_string(),
        "--transport",
        &name,
        "--max-connections",
        &most,
    ]
    .map(String::from)
    .to_vec();
    if ours.mux {
        for args in [&mut server, &mut client] {
            args.push("--mux".into());
        }
    }
    if let Some(size) = options.buffer_size {
        for args in [&mut server, &mut client] {
            args.extend(["--buffer-size".into(), size.to_string()]);
        }
    }
    match transport {
        Transport::Tls => {
            server.extend(["--cert".into(), material.arg("server.crt")]);
            server.extend(["--key".into(), material.arg("server.key")]);
            client.extend(["--ca".into(), material.arg("ca.crt")]);
            if let Some(groups) = &options.groups {
                // The proxies' own --groups, in the names they parse.
                let list = groups
                    .iter()
                    .map(|g| g.name())
                    .collect::<Vec<_>>()
                    .join(",");
                server.extend(["--groups".into(), list.clone()]);
                client.extend(["--groups".into(), list]);
            }
        }
        Transport::V1 => {
            server.extend(["--v1-key".into(), material.arg("v1-server.key")]);
            server.extend(["--v1-peer".into(), material.arg("v1-client.pub")]);
            client.extend(["--v1-key".into(), material.arg("v1-client.key")]);
            client.extend(["--v1-peer".into(), material.arg("v1-server.pub")]);
        }
        Transport::Link => {
            server.extend(["--link-key".into(), material.arg("link-server.key")]);
            // A server end keeps its replay store beside its token store,
            // and one store file serves one process: the idle case runs
            // several server ends, so each gets a copy of the tokens.
            let folder = material.fresh_folder("link-server")?;
            let tokens = folder.join("link-tokens.txt");
            let text = cipherlink_files::read_secret(&material.path("link-tokens.txt"), 1 << 20)?;
            cipherlink_files::write(
                &tokens,
                &text,
                cipherlink_files::Access::Private,
                cipherlink_files::Existing::Replace,
            )?;
            server.extend(["--link-tokens".into(), tokens.display().to_string()]);
            client.extend(["--link-file".into(), material.arg("bench.link")]);
        }
        Transport::Port => {
            server.extend(["--port-key".into(), material.arg("port-server.key")]);
            server.extend(["--port-tokens".into(), material.arg("port-tokens.txt")]);
            client.extend(["--port-file".into(), material.arg("bench.port")]);
        }
        // Plain needs nothing; a transport added later without its
        // material here fails to start, and its row says so.
        _ => {}
    }
    // Errors only: per-tunnel log lines are not what is measured.
    let env = [("CIPHERLINK_LOG", "error".to_string())];
    let mut server = Proc::spawn(
        format!("cipherlink {row} server end"),
        &options.program,
        &server,
        &env,
    )?;
    wait_listening(&mut server, server_addr).await?;
    let mut client = Proc::spawn(
        format!("cipherlink {row} client end"),
        &options.program,
        &client,
        &env,
    )?;
    wait_listening(&mut client, client_addr).await?;
    Ok(Pair {
        entry: Entry::Tcp(client_addr),
        procs: vec![server, client],
    })
}
