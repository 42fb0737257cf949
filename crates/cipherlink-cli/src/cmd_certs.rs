//! `cipherlink certs`: a CA, a server and a client certificate.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use cipherlink::certs::{self, CertOptions, KeyAlgorithm};
use clap::Args;

/// Write a throwaway PKI: ca.crt ca.key server.crt server.key client.crt client.key.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Folder to write into (created if missing; existing files are replaced
    /// by new ones, keys with mode 0600; a symlink there is replaced, not followed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Key algorithm: p256, p384, ed25519, rsa2048, rsa4096.
    #[arg(long, default_value = "p256")]
    pub algorithm: KeyAlgorithm,
    /// Validity in days.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Extra server names (DNS or IP) besides localhost, 127.0.0.1 and ::1. Repeatable.
    #[arg(long = "server-name", value_name = "NAME")]
    pub server_names: Vec<String>,
    /// The client certificate's common name.
    #[arg(long, default_value = "client")]
    pub client_name: String,
    /// The CA's common name.
    #[arg(long, default_value = "cipherlink test CA")]
    pub ca_name: String,
}

/// Runs the subcommand.
pub fn run(args: CertsArgs) -> Result<()> {
    let bundle = certs::generate(&CertOptions {
        algorithm: args.algorithm,
        days: args.days,
        not_before: None,
        server_names: args.server_names,
        ca_name: args.ca_name,
        client_name: args.client_name,
    })
    .map_err(|err| match &err {
        // The library names its field; the user typed the flag.
        cipherlink::Error::Config { field: "days", .. } => {
            anyhow::Error::new(err).context("--days")
        }
        _ => anyhow::Error::new(err).context("generating certificates"),
    })?;
    let written = bundle
        .write_to(&args.out)
        .with_context(|| format!("--out {}", args.out.display()))?;
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}
