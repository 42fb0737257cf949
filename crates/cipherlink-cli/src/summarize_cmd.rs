//! `cipherlink summarize FILE...`: statistics, SVG and HTML of results files.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use cipherlink_rpc::summary::{self, html, plot};
use clap::Args;

/// `cipherlink summarize ...`
#[derive(Debug, Args)]
pub struct SummarizeArgs {
    /// Results files of `rpc steady` or `rpc coldconn` (JSON lines; the
    /// Python suite's files with a `#TEST=` header line too); several are
    /// compared side by side.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// SVG output (default: beside the first file, with .svg).
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Self-contained HTML output (default: beside the first file, with .html).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Print the numbers only.
    #[arg(long)]
    no_plots: bool,
}

/// Runs `cipherlink summarize`.
pub fn run(args: SummarizeArgs) -> Result<()> {
    let mut all = Vec::with_capacity(args.files.len());
    for path in &args.files {
        let file = summary::read(path)?;
        let s = summary::summarize(&file);
        print!("{}", summary::render(&s));
        all.push(s);
    }
    if all.len() > 1 {
        println!("\n{}", summary::render_comparison(&all));
    }
    if args.no_plots {
        return Ok(());
    }
    let first = args.files.first().context("no input file")?;
    let svg_path = args.svg.unwrap_or_else(|| first.with_extension("svg"));
    let html_path = args.html.unwrap_or_else(|| first.with_extension("html"));
    let labels: Vec<&str> = all.iter().map(|s| s.label.as_str()).collect();
    let title = format!("cipherlink rpc: {}", labels.join(" vs "));
    let svg = plot::write_svg(&svg_path, &all, &title)?;
    html::write_html(&html_path, &all, &svg, &title)?;
    println!("plots: {} {}", svg_path.display(), html_path.display());
    Ok(())
}
