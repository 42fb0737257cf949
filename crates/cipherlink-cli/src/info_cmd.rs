//! `cipherlink info`: what each TLS implementation offers on this machine.

use std::path::PathBuf;

use anyhow::Result;
use cipherlink::implementations::{self, ImplementationInfo};
use clap::Args;

/// Show each TLS implementation built in: version, key-exchange groups,
/// TLS 1.3 cipher suites, signature algorithms, and which compliance
/// policies it can satisfy here. Every answer is asked of the library.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Also write the same as JSON to FILE; `-` prints only the JSON, on stdout.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

pub fn run(args: InfoArgs) -> Result<()> {
    let all = implementations::available();
    if !args.json.as_deref().is_some_and(crate::output::is_stdout) {
        for info in &all {
            print!("{}", render(info));
        }
    }
    crate::json_report::write(args.json.as_deref(), &all)
}

fn render(info: &ImplementationInfo) -> String {
    let list = |items: Vec<String>| items.join(", ");
    let mut out = format!(
        "{}: {}\n  key exchange:   {}\n  cipher suites:  {}\n  signatures:     {}\n  compliance:\n",
        info.implementation,
        info.version,
        list(info.key_exchange.iter().map(|k| k.to_string()).collect()),
        list(info.cipher_suites.clone()),
        list(info.signature_algorithms.clone()),
    );
    for policy in &info.compliance {
        let groups = list(policy.groups.iter().map(|k| k.to_string()).collect());
        out.push_str(&format!(
            "    {:<48} {}\n",
            policy.policy,
            if policy.satisfiable() {
                format!("yes: {groups}")
            } else {
                "no".to_string()
            }
        ));
    }
    out.push('\n');
    out
}

/// `--version`: cipherlink's own, and each TLS implementation's.
pub fn long_version() -> &'static str {
    let text = format!(
        "{}\n{}",
        env!("CARGO_PKG_VERSION"),
        implementations::versions().join("\n")
    );
    Box::leak(text.into_boxed_str())
}
