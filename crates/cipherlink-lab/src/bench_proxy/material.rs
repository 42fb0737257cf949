//! Key material for every pair, in one temporary folder: a test PKI (TLS
//! pairs: ours, stunnel, HAProxy), v1 key pairs, a link server key and a
//! PORT server key, each with a connection file (made by `cipherlink link
//! keygen`/`link invite`, as a user makes them), spiped's shared key and
//! shadowsocks' password.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cipherlink_files::{Access, Existing};

use crate::LabError;

/// The longest a key-making helper command may take.
const HELPER_TIMEOUT: Duration = Duration::from_secs(60);

/// The folder and what is in it; removed on drop.
pub(super) struct Material {
    dir: tempfile::TempDir,
    folders: AtomicUsize,
    ss_password: String,
}

impl Material {
    /// Writes everything every pair needs; `program` is the `cipherlink` binary.
    pub(super) async fn new(program: &Path) -> Result<Material, LabError> {
        let dir = tempfile::tempdir().map_err(|source| LabError::Folder {
            path: std::env::temp_dir(),
            source,
        })?;
        let material = Material {
            dir,
            folders: AtomicUsize::new(0),
            // Kept in memory: it goes into each ss pair's configuration file.
            ss_password: hex(&random_bytes::<16>("the shadowsocks password")?),
        };
        let bundle = cipherlink::certs::generate(&cipherlink::certs::CertOptions::default())?;
        bundle.write_to(material.dir.path())?;
        // HAProxy's `crt` takes the certificate and its key in one file.
        let pem = format!("{}{}", bundle.server.cert, bundle.server.key);
        material.write("server.pem", pem.as_bytes(), Access::Private)?;
        for name in ["v1-server", "v1-client"] {
            cipherlink_proxy::nacl_frame::keys::write_key_pair(
                material.dir.path(),
                name,
                cipherlink_proxy::nacl_frame::keys::Existing::Refuse,
            )?;
        }
        // spiped's recommended key: 32 bytes from the system's random source.
        let key = random_bytes::<32>("spiped's key")?;
        material.write("spiped.key", &key, Access::Private)?;
        material.invite_files(program, "link").await?;
        material.invite_files(program, "port").await?;
        Ok(material)
    }

    /// A file in the folder, as a command-line argument.
    pub(super) fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// A file in the folder.
    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `name` whole (secrets 0600).
    pub(super) fn write(&self, name: &str, bytes: &[u8], access: Access) -> Result<(), LabError> {
        cipherlink_files::write(&self.path(name), bytes, access, Existing::Replace)?;
        Ok(())
    }

    /// A new empty folder for one process's state (obfs4's), named after `what`.
    pub(super) fn fresh_folder(&self, what: &str) -> Result<PathBuf, LabError> {
        let n = self.folders.fetch_add(1, Ordering::Relaxed);
        let path = self.path(&format!("{what}-{n}"));
        std::fs::create_dir(&path).map_err(|source| LabError::Folder {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// shadowsocks' password.
    pub(super) fn ss_password(&self) -> &str {
        &self.ss_password
    }

    /// `WIRE-server.key`, `WIRE-tokens.txt` and `bench.WIRE` for the link
    /// protocol or PORT (`wire` is `link` or `port`).
    async fn invite_files(&self, program: &Path, wire: &str) -> Result<(), LabError> {
        let key = self.arg(&format!("{wire}-server.key"));
        helper(program, &["link", "keygen", "--wire", wire, "--key", &key]).await?;
        // Each pair's client is given its server with --connect; the one
        // token holds many links at once.
        helper(
            program,
            &[
                "link",
                "invite",
                "--wire",
                wire,
                "--key",
                &key,
                "--tokens",
                &self.arg(&format!("{wire}-tokens.txt")),
                "--name",
                "bench",
                "--server",
                "127.0.0.1:1",
                "--out",
                &self.arg(&format!("bench.{wire}")),
            ],
        )
        .await
    }
}

async fn helper(program: &Path, args: &[&str]) -> Result<(), LabError> {
    let command = format!("{} {}", program.display(), args.join(" "));
    let run = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(HELPER_TIMEOUT, run)
        .await
        .map_err(|_| LabError::Helper {
            command: command.clone(),
            status: format!("not done within {HELPER_TIMEOUT:?}"),
            said: String::new(),
        })?
        .map_err(|source| LabError::Spawn {
            program: program.to_path_buf(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(LabError::Helper {
        command,
        status: out.status.to_string(),
        said: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn random_bytes<const N: usize>(what: &'static str) -> Result<[u8; N], LabError> {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| LabError::Random { what })?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
