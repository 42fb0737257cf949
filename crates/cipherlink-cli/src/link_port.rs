//! `cipherlink link ... --wire port`: SeasideVPN's PORT (docs/port-wire.md)
//! with the link's token store and invitation flow, and PORT's own key and
//! token formats at the edges.
//!
//! A PORT token is a link token's id and secret, 48 bytes
//! ([`cipherlink_proxy::port`], shared with the proxy's `port` transport):
//! the server finds the entry by the id and compares the secret in
//! constant time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use cipherlink_files::Existing;
use cipherlink_link::TokenStore;
use cipherlink_port::driver::{
    connect as port_connect, Accepted, PortListener, PortReader, PortWriter,
};
use cipherlink_port::{ConnectionFile, PortSettings, ServerKey};
use cipherlink_proxy::port::{token_bytes, PortTokens, MAX_MESSAGE};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::link_cmd::{hex_encode, load_tokens, lock_tokens, read_text, write_secret};

fn settings() -> Result<PortSettings> {
    PortSettings::from_env(|k| std::env::var(k).ok()).context("reading PORT_* settings")
}

pub(crate) fn load_key(path: &Path) -> Result<ServerKey> {
    let text = read_text(path, "PORT server key file")?;
    ServerKey::parse(&text).with_context(|| format!("PORT server key file {}", path.display()))
}

/// `link keygen --wire port`.
pub fn keygen(path: &Path, force: bool) -> Result<()> {
    if path.symlink_metadata().is_ok() && !force {
        bail!("{} exists (use --force to replace it; clients given the old public key will stop connecting)", path.display());
    }
    let key = ServerKey::generate(&mut StdRng::from_os_rng());
    let existing = if force {
        Existing::Replace
    } else {
        Existing::Refuse
    };
    write_secret(path, &key.to_text(), existing)?;
    println!("wrote {}", path.display());
    println!("public key {}", key.public().to_hex());
    Ok(())
}

/// `link invite --wire port|typhoon` options.
pub struct Invite {
    pub key: PathBuf,
    pub tokens: PathBuf,
    pub name: String,
    pub server: String,
    pub out: Option<PathBuf>,
    pub force: bool,
    /// TYPHOON's invitation (`NAME.typhoon`, a TyphoonClient's token): the
    /// same keys, store and file as PORT's.
    pub typhoon: bool,
}

/// `link invite --wire port|typhoon`.
pub fn invite(a: Invite) -> Result<()> {
    let (extension, client) = if a.typhoon {
        ("typhoon", "TyphoonClient")
    } else {
        ("port", "PortClient")
    };
    let key = load_key(&a.key)?;
    let _lock = lock_tokens(&a.tokens)?;
    let mut store = load_tokens(&a.tokens, true)?;
    let token = store.issue(&a.name, &mut StdRng::from_os_rng())?;
    let out = a
        .out
        .unwrap_or_else(|| PathBuf::from(format!("{}.{extension}", a.name)));
    let existing = if a.force {
        Existing::Replace
    } else {
        Existing::Refuse
    };
    if existing == Existing::Refuse && out.symlink_metadata().is_ok() {
        bail!(
            "{} already exists: use --force to replace it",
            out.display()
        );
    }
    let file = ConnectionFile {
        name: a.name.clone(),
        server: a.server,
        server_key: *key.public(),
        token: token_bytes(&token),
    };
    // The store first: a connection file whose token is not recorded would be refused.
    write_secret(&a.tokens, &store.to_text(), Existing::Replace)?;
    write_secret(&out, &file.to_text(), existing)?;
    println!(
        "wrote {} for {} (token recorded in {})",
        out.display(),
        a.name,
        a.tokens.display()
    );
    println!("server public key {}", key.public().to_hex());
    let hex = Zeroizing::new(hex_encode(&file.token));
    println!("{client} token {}", hex.as_str());
    Ok(())
}

/// `link serve --wire port` options.
pub struct Serve {
    pub key: PathBuf,
    pub tokens: PathBuf,
    pub listen: std::net::SocketAddr,
    pub echo: bool,
    pub count: Option<u64>,
}

/// `link serve --wire port`.
pub async fn serve(a: Serve) -> Result<()> {
    let key = load_key(&a.key)?;
    let settings = settings()?;
    let tokens = PortTokens::open(&a.tokens).context("reading the token store")?;
    let listener = PortListener::bind(&a.listen.to_string(), key, tokens.admit_fn(), settings)
        .await
        .with_context(|| format!("listening on {}", a.listen))?;
    // Every client holds two descriptors while it connects, and one per
    // session after: the hard limit, not the default 1024, bounds them.
    let fds = match cipherlink_lab::fd_limit::raise() {
        Ok(l) => format!("open-file limit {} (hard limit {})", l.soft, l.hard),
        Err(e) => format!("open-file limit not raised ({e})"),
    };
    // Status on stderr: stdout carries only what clients send.
    eprintln!(
        "listening on {} (PORT; each client reconnects to a port of its own); {fds}",
        listener.local_addr()
    );
    crate::seaside_serve::serve(
        "PORT", listener, &tokens, &a.tokens, a.echo, a.count, handle,
    )
    .await
}

/// Serves one client: echo or print its messages; ends it when its token
/// is revoked.
async fn handle(acc: Accepted, store: watch::Receiver<Arc<TokenStore>>, echo: bool) -> Result<()> {
    let Accepted {
        session,
        token,
        name,
        ..
    } = acc;
    let halves = (session.reader, session.writer);
    crate::seaside_serve::echo_or_print(halves, (&token, &name), "PORT", store, echo).await
}

impl crate::stdio_session::DatagramSource for PortReader {
    async fn next(&mut self) -> Result<Option<Vec<u8>>> {
        Ok(self.recv().await?)
    }
}

impl crate::stdio_session::DatagramSink for PortWriter {
    async fn put(&mut self, message: &[u8]) -> Result<()> {
        Ok(self.send(message).await?)
    }

    async fn finish(mut self) -> Result<()> {
        Ok(self.terminate().await?)
    }
}

/// `link connect --wire port FILE`.
pub async fn connect(file: &Path, server: Option<String>, timeout: Duration) -> Result<()> {
    let text = read_text(file, "PORT connection file")?;
    let conn = ConnectionFile::parse(&text)
        .with_context(|| format!("PORT connection file {}", file.display()))?;
    let mut settings = settings()?;
    if timeout.is_zero() {
        anyhow::bail!("--timeout must be more than 0");
    }
    settings.timeout = timeout;
    let addr = server.unwrap_or(conn.server.clone());
    let session = port_connect(&addr, &conn.server_key, &conn.token, &settings)
        .await
        .with_context(|| format!("connecting to {addr} as {} (PORT)", conn.name))?;
    eprintln!(
        "connected to {addr} as {} (PORT, data on {}; no forward secrecy)",
        conn.name,
        session.peer()
    );
    let (mut reader, mut writer) = (session.reader, session.writer);
    let upload = async {
        let mut stdin = tokio::io::stdin();
        // A message must arrive whole at SeasideVPN's reader (MAX_MESSAGE).
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            let n = stdin.read(&mut buf).await.context("reading stdin")?;
            if n == 0 {
                break;
            }
            writer
                .send(&buf[..n])
                .await
                .with_context(|| format!("sending to {addr}"))?;
        }
        writer.terminate().await.context("terminating")?;
        anyhow::Ok(())
    };
    let download = async {
        let mut stdout = tokio::io::stdout();
        while let Some(m) = reader
            .recv()
            .await
            .with_context(|| format!("receiving from {addr}"))?
        {
            stdout.write_all(&m).await?;
            stdout.flush().await?;
        }
        anyhow::Ok(())
    };
    crate::stdio_session::until_server_done(upload, download).await
}
