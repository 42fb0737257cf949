//! Every documented example is a test: each fenced code block in README.md
//! and docs/*.md is run against the freshly built `cipherlink`, or says, in
//! a marker the reader barely notices, why it is not.
//!
//! # What a block gets
//!
//! | block | without a marker | with a marker on the line right before its fence |
//! |---|---|---|
//! | ```` ```sh ````, ```` ```bash ```` | run, every line a command | `<!-- example: parse-only (reason) -->`, `<!-- example: skip (reason) -->`, `<!-- example: run, parse-only WORD (reason) -->` |
//! | ```` ```console ```` | run, the `$ ` lines; an `Error: ...` line under one means it must fail with that message (up to its last `: `); other output is not compared | the same |
//! | ```` ```toml ```` | fails: name the schema | `<!-- example: toml core-server -->`, `toml core-client`, `toml proxy` |
//! | ```` ```text ```` | not run (output, grammar, diagrams, test vectors) | `skip (reason)` |
//! | untagged, or another language | fails: tag it, or `skip (reason)` | `skip (reason)` |
//!
//! A marker that is not on the line right before a fence, or a `skip` or
//! `parse-only` without a reason, fails the test, so no example is left out
//! silently.
//!
//! # Running shell blocks
//!
//! Blocks run one after another (they use fixed ports and `/tmp` paths, as
//! the docs do), each in its own bash (`set -m`, so `&` and `kill %N` behave
//! as in a terminal), in a fresh temporary folder, with PATH starting with a
//! folder that holds `cipherlink` (this build) and the foreign peers a block
//! calls (`tshark`, `openssl`, `stunnel4`: found as the interop tests find
//! them; a missing one skips the block, or fails it under
//! `CIPHERLINK_REQUIRE_PEERS=1`). Before it runs:
//!
//! - `cargo run --release -p cipherlink-cli --`, `cargo run --release --`,
//!   `target/release/cipherlink` and `target/debug/cipherlink` become
//!   `cipherlink`; a `cargo build ...` line (with the `&& alias` it chains)
//!   is dropped: cargo built the binary for this test already.
//! - Every command runs with stdin from /dev/null unless the doc pipes into it;
//!   a failing command fails the test with its file:line and stderr, and the
//!   block stops there.
//! - A command ending in `&` starts in the background; the next one waits
//!   until one of its processes listens on a TCP port (up to 60 s; exiting
//!   first is a failure). Every port a `--listen` names must be free first.
//!   At the block's end its jobs get SIGTERM (SIGKILL 10 s later, which
//!   fails the block).
//! - The `/tmp/NAME` paths a block mentions, and their `NAME.*` siblings (a
//!   token store's `.lock` and `.replay`), are removed before and after it.
//! - A `sudo` command fails a run block unless its marker says
//!   `run, parse-only sudo (reason)`: tests never run as root.
//!
//! # Parse-only
//!
//! `CIPHERLINK_PARSE_ONLY=1` (a test-only hook in main.rs) makes the binary
//! parse its arguments, every flag and value, and exit 0. In a `parse-only`
//! block each command that calls `cipherlink` runs that way (`sudo` and
//! `time` in front of it dropped); other commands (nginx, python, a
//! repository script) are listed as not run. Use it for benchmarks that
//! take minutes, root, foreign hosts and long-running servers.
//!
//! # TOML blocks
//!
//! Checked in a folder holding what the docs' commands make
//! ([`docs_support::toml_check::FIXTURE`]: `certs --out .` and
//! `--out certs/`, v1 keys in `keys/`, a link key and token store in
//! `link/`, `alice.link`, a PORT key and token store in `port/`,
//! `alice.port`), so their paths name real files. `core-server` and
//! `core-client`: `Config::from_toml_file`, then `Context::server`/`client`
//! (every check the core makes). `proxy`: `cipherlink proxy run --config`
//! until every service listens (the proxy checks a service as it binds it).
//!
//! `CIPHERLINK_DOCS_FILE=docs/chaos.md` runs only the files whose path
//! contains the value (for working on one doc).

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod docs_support;

use std::path::Path;
use std::time::Instant;

use docs_support::markdown::{self, Plan, Schema};
use docs_support::shell::{self, Line};
use docs_support::shell_block::{self, Ctx};
use docs_support::toml_check;

const TEST_NAME: &str = "docs_examples::every_documented_example_runs_or_says_why_not";

/// README.md, then docs/*.md by name, relative to the repository root.
fn doc_files(root: &Path) -> Vec<String> {
    let mut docs: Vec<String> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    docs.insert(0, "README.md".into());
    match std::env::var("CIPHERLINK_DOCS_FILE") {
        Ok(only) => docs.into_iter().filter(|f| f.contains(&only)).collect(),
        Err(_) => docs,
    }
}

/// One docs test at a time on this machine (other worktrees, other CI
/// jobs): the examples use fixed ports and /tmp paths.
fn machine_lock() -> std::fs::File {
    let path = std::env::temp_dir().join("cipherlink-docs-examples.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    file.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", path.display()));
    file
}

struct Row {
    at: String,
    plan: String,
    result: String,
    secs: f64,
}

fn plan_name(plan: &Plan) -> String {
    match plan {
        Plan::Run { parse_only_words } if parse_only_words.is_empty() => "run".into(),
        Plan::Run { parse_only_words } => format!("run, parse-only {}", parse_only_words.join(" ")),
        Plan::ParseOnly { reason } => format!("parse-only ({reason})"),
        Plan::Skip { reason } => format!("skip ({reason})"),
        Plan::Text => "text".into(),
        Plan::Toml(schema) => format!("toml {schema:?}"),
    }
}

/// Runs or checks one block; Err is its failure.
fn one_block(block: &markdown::Block, plan: &Plan, ctx: &Ctx) -> Result<String, String> {
    match plan {
        Plan::Text | Plan::Skip { .. } => Ok("not run".into()),
        Plan::Toml(schema) => toml_check::check(block, *schema).map_err(|why| {
            format!(
                "{} (```toml, {schema:?}): the tool refuses the example:\n{why}",
                block.at()
            )
        }),
        Plan::Run { .. } | Plan::ParseOnly { .. } => {
            let outcome = shell_block::run(block, plan, ctx);
            for line in &outcome.not_run {
                eprintln!("    not run: {line}");
            }
            if let Some(failure) = outcome.failure {
                return Err(failure);
            }
            Ok(match outcome.skipped {
                Some(why) => format!("SKIPPED: {why}"),
                None => format!(
                    "{} run, {} parsed, {} not run",
                    outcome.ran,
                    outcome.parsed,
                    outcome.not_run.len()
                ),
            })
        }
    }
}

#[test]
fn every_documented_example_runs_or_says_why_not() {
    let root = cipherlink_test_support::workspace_root();
    let _lock = machine_lock();
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_cipherlink"),
        bin.path().join("cipherlink"),
    )
    .unwrap();
    let mut path = std::ffi::OsString::from(bin.path());
    if let Some(rest) = std::env::var_os("PATH") {
        path.push(":");
        path.push(rest);
    }
    let ctx = Ctx {
        bin: bin.path(),
        path,
        test_name: TEST_NAME,
    };
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for file in doc_files(&root) {
        let text = std::fs::read_to_string(root.join(&file)).unwrap();
        let blocks = match markdown::scan(&file, &text) {
            Ok(blocks) => blocks,
            Err(errors) => {
                failures.extend(errors);
                continue;
            }
        };
        for block in blocks {
            let plan = match markdown::plan(&block) {
                Ok(plan) => plan,
                Err(why) => {
                    failures.push(format!("{}: {why}", block.at()));
                    continue;
                }
            };
            eprintln!("{} ```{} {}", block.at(), block.lang, plan_name(&plan));
            let start = Instant::now();
            let result = one_block(&block, &plan, &ctx).unwrap_or_else(|failure| {
                failures.push(failure);
                "FAILED".into()
            });
            rows.push(Row {
                at: block.at(),
                plan: plan_name(&plan),
                result,
                secs: start.elapsed().as_secs_f64(),
            });
        }
    }
    eprintln!("\n| block | plan | result | s |\n|---|---|---|---|");
    for row in &rows {
        eprintln!(
            "| {} | {} | {} | {:.1} |",
            row.at, row.plan, row.result, row.secs
        );
    }
    assert!(
        failures.is_empty(),
        "{} documented example(s) fail (rules: tests/docs_examples.rs):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn block(lang: &str, marker: Option<&str>, body: &str) -> markdown::Block {
    let mut text = String::from("intro\n");
    if let Some(marker) = marker {
        text.push_str(marker);
        text.push('\n');
    }
    text.push_str(&format!("```{lang}\n{body}\n```\n"));
    let mut blocks = markdown::scan("doc.md", &text).unwrap();
    assert_eq!(blocks.len(), 1);
    blocks.remove(0)
}

#[test]
fn a_block_runs_or_says_why_not() {
    let plan = |lang, marker, body| markdown::plan(&block(lang, marker, body));
    assert_eq!(
        plan("sh", None, "cipherlink info"),
        Ok(Plan::Run {
            parse_only_words: vec![]
        })
    );
    assert_eq!(plan("text", None, "output"), Ok(Plan::Text));
    for (lang, marker) in [
        ("", None),
        ("rust", None),
        ("toml", None),
        ("sh", Some("<!-- example: skip -->")),
        ("sh", Some("<!-- example: parse-only -->")),
        ("sh", Some("<!-- example: run, parse-only sudo -->")),
        ("sh", Some("<!-- example: sometimes (why) -->")),
        ("toml", Some("<!-- example: toml nginx -->")),
        ("toml", Some("<!-- example: parse-only (why) -->")),
    ] {
        let result = plan(lang, marker, "x");
        assert!(
            result.is_err(),
            "```{lang} {marker:?} was accepted: {result:?}"
        );
    }
    assert_eq!(
        plan(
            "sh",
            Some("<!-- example: run, parse-only sudo (root) -->"),
            "x"
        ),
        Ok(Plan::Run {
            parse_only_words: vec!["sudo".into()]
        })
    );
    assert_eq!(
        plan("toml", Some("<!-- example: toml proxy -->"), "x"),
        Ok(Plan::Toml(Schema::Proxy))
    );
    assert_eq!(
        plan("python", Some("<!-- example: skip (an excerpt) -->"), "x"),
        Ok(Plan::Skip {
            reason: "an excerpt".into()
        })
    );
    // A marker that does not touch its fence would silently do nothing.
    let stray = "<!-- example: skip (why) -->\n\n```sh\nx\n```\n";
    assert!(markdown::scan("doc.md", stray).is_err());
    assert!(
        markdown::scan("doc.md", "```sh\nx\n").is_err(),
        "unclosed fence"
    );
}

fn steps(lang: &str, body: &str) -> Vec<Line> {
    shell::lines(&block(lang, None, body))
}

#[test]
fn commands_are_read_as_a_user_types_them() {
    let lines = steps(
        "sh",
        "cargo build --release -p cipherlink-cli && alias cipherlink=$PWD/target/release/cipherlink\n\
         # a comment\n\
         cargo run --release -p cipherlink-cli -- bench conn     # first\n\
         cipherlink serve --listen 127.0.0.1:4433 \\\n    --echo &   # in the background\n\
         echo hello | target/release/cipherlink connect 127.0.0.1:4433 2>&1",
    );
    assert!(
        matches!(&lines[0], Line::Dropped { line: 3, .. }),
        "{lines:?}"
    );
    let Line::Step(bench) = &lines[1] else {
        panic!("{lines:?}")
    };
    assert_eq!(
        (bench.line, bench.command.as_str()),
        (5, "cipherlink bench conn")
    );
    let Line::Step(serve) = &lines[2] else {
        panic!("{lines:?}")
    };
    assert_eq!(
        serve.command,
        "cipherlink serve --listen 127.0.0.1:4433 --echo"
    );
    assert!(serve.background);
    assert_eq!(shell::listen_ports(&serve.command), vec![4433]);
    let Line::Step(connect) = &lines[3] else {
        panic!("{lines:?}")
    };
    assert!(!connect.background, "2>&1 is not a background job");
    assert_eq!(shell::programs(&connect.command), ["echo", "cipherlink"]);

    let console = steps(
        "console",
        "$ cipherlink certs --out certs\n\
         wrote certs/ca.crt\n\
         $ echo hi | cipherlink connect 127.0.0.1:1 --ca certs/ca.crt\n\
         Error: TLS with 127.0.0.1:1 failed: connection refused",
    );
    let Line::Step(connect) = &console[1] else {
        panic!("{console:?}")
    };
    assert_eq!(
        connect.expect_error.as_deref(),
        Some("Error: TLS with 127.0.0.1:1 failed")
    );
    assert!(matches!(&console[0], Line::Step(s) if s.expect_error.is_none()));

    let timed = "/usr/bin/time -v cipherlink pool serve --name 'Bob B' >/dev/null 2>t.txt";
    assert_eq!(
        shell::unwrap_cipherlink(timed),
        "cipherlink pool serve --name 'Bob B' >/dev/null 2>t.txt"
    );
    assert_eq!(
        shell::unwrap_cipherlink("sudo cipherlink chaos run"),
        "cipherlink chaos run"
    );
    assert_eq!(shell::wrappers("X=1 sudo cipherlink chaos run"), ["sudo"]);
    assert_eq!(
        shell::programs("(cd py && python party.py) ; wait"),
        ["(cd", "python", "wait"]
    );
}

/// The hook parse-only blocks rely on: flags and values are checked, the
/// command does not run (here it would fail: its files do not exist).
#[test]
fn parse_only_checks_flags_without_running() {
    let bin = env!("CARGO_BIN_EXE_cipherlink");
    let run = |args: &[&str]| {
        cipherlink_test_support::process::cipherlink(bin)
            .env("CIPHERLINK_PARSE_ONLY", "1")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "serve",
        "--cert",
        "/nonexistent/s.crt",
        "--key",
        "/nonexistent/s.key",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    let out = run(&["bench", "idle", "--target", "ADDR"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("'ADDR'"),
        "{out:?}"
    );
}
