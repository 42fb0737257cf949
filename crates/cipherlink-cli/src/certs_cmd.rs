//! `cipherlink certs`: a CA, a server and a client certificate.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use cipherlink::certs::{self, CertBundle, CertOptions, KeyAlgorithm, Pem};
use clap::Args;

/// Write a test PKI: ca.crt ca.key server.crt server.key client.crt client.key.
///
/// A CA already in --out is kept and the server and client certificates are
/// issued again under it (as mkcert does), so peers that trust it keep
/// trusting; --force makes a new CA.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Folder to write into (created if missing; keys get mode 0600, and a
    /// symlink in the way is replaced, not followed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace the CA in --out with a new one (peers that trust the old CA
    /// stop trusting these certificates).
    #[arg(long)]
    pub force: bool,
    /// Key algorithm: p256, p384, ed25519, rsa2048, rsa4096.
    #[arg(long, default_value = "p256")]
    pub algorithm: KeyAlgorithm,
    /// Validity in days (never past an existing CA's own end).
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Extra server names (DNS or IP) besides localhost, 127.0.0.1 and ::1. Repeatable.
    #[arg(long = "server-name", value_name = "NAME")]
    pub server_names: Vec<String>,
    /// The client certificate's common name.
    #[arg(long, default_value = "client")]
    pub client_name: String,
    /// The CA's common name (for a new CA).
    #[arg(long, default_value = "cipherlink test CA")]
    pub ca_name: String,
}

/// Runs the subcommand.
pub fn run(args: CertsArgs) -> Result<()> {
    let options = CertOptions {
        algorithm: args.algorithm,
        days: args.days,
        not_before: None,
        server_names: args.server_names.clone(),
        ca_name: args.ca_name.clone(),
        client_name: args.client_name.clone(),
    };
    let existing = if args.force {
        None
    } else {
        existing_ca(&args.out)?
    };
    let (bundle, kept) = match existing {
        Some(ca) => (certs::generate_under(&ca, &options), true),
        None => (certs::generate(&options), false),
    };
    let bundle: CertBundle = bundle.map_err(|err| match &err {
        // The library names its field; the user typed the flag.
        cipherlink::Error::Config { field: "days", .. } => {
            anyhow::Error::new(err).context("--days")
        }
        cipherlink::Error::Config { field: "ca", .. } => anyhow::Error::new(err)
            .context(format!("{}: use --force for a new CA", args.out.display())),
        _ => anyhow::Error::new(err).context("generating certificates"),
    })?;
    let written = if kept {
        bundle.write_leaves_to(&args.out)
    } else {
        bundle.write_to(&args.out)
    }
    .with_context(|| format!("--out {}", args.out.display()))?;
    if kept {
        eprintln!(
            "kept the CA in {} (ca.crt, ca.key); --force makes a new one",
            args.out.display()
        );
    }
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The CA in `dir`, when both of its files are there.
fn existing_ca(dir: &Path) -> Result<Option<Pem>> {
    let (cert_path, key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
    match (cert_path.exists(), key_path.exists()) {
        (false, false) => Ok(None),
        (true, true) => {
            let cert = cipherlink_files::read_trusted_text(&cert_path, 1 << 20)
                .context("reading the existing CA certificate")?;
            let key = cipherlink_files::read_secret_text(&key_path, 1 << 20)
                .context("reading the existing CA key")?;
            Ok(Some(Pem {
                cert,
                key: key.as_str().to_owned(),
            }))
        }
        (true, false) => bail!(
            "{} has ca.crt but no ca.key, so no certificates can be issued under it; \
             use --force for a new CA",
            dir.display()
        ),
        (false, true) => bail!(
            "{} has ca.key but no ca.crt; use --force for a new CA",
            dir.display()
        ),
    }
}
