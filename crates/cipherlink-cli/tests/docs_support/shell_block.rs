//! One shell block, run (or parsed) as its plan says, with every command's
//! outcome and the first failure, named by file and line.

use std::path::Path;

use cipherlink_test_support::Peer;

use super::markdown::{Block, Plan};
use super::procfs;
use super::runner::{Shell, ShellEnv};
use super::shell::{self, Line, Step};

/// Foreign programs a run block may call, found as the interop tests find
/// them (missing: the block is skipped, or fails under
/// `CIPHERLINK_REQUIRE_PEERS=1`).
pub const PEER_PROGRAMS: [(&str, Peer); 4] = [
    ("tshark", Peer::Tshark),
    ("openssl", Peer::Openssl),
    ("stunnel4", Peer::Stunnel),
    ("dnsmasq", Peer::Dnsmasq),
];

/// What the test needs to run blocks.
pub struct Ctx<'a> {
    /// A folder with `cipherlink` (and the peers found) in it, first on PATH.
    pub bin: &'a Path,
    /// The PATH value.
    pub path: std::ffi::OsString,
    /// The test's name, for the peer count.
    pub test_name: &'a str,
}

/// How one command is treated.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Run,
    /// Parsed only: the command as run.
    Parse(String),
    NotRun(&'static str),
}

/// What happened to a block.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Commands run for real.
    pub ran: usize,
    /// Commands only parsed.
    pub parsed: usize,
    /// Commands not run, with why (`file:line why: command`).
    pub not_run: Vec<String>,
    /// Set when the whole block was skipped (a missing peer).
    pub skipped: Option<String>,
    /// The first failure.
    pub failure: Option<String>,
}

/// `bash -n`: a doc's unbalanced quote would otherwise leave bash waiting
/// for the rest of the command until the step's deadline.
fn syntax(command: &str) -> Result<(), String> {
    let out = std::process::Command::new("bash")
        .args(["-n", "-c", command])
        .output()
        .map_err(|e| format!("running bash -n: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "is not valid shell: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn mode(step: &Step, plan: &Plan) -> Result<Mode, String> {
    let programs = shell::programs(&step.command);
    let wrappers = shell::wrappers(&step.command);
    let cipherlink = programs.iter().any(|p| p == "cipherlink");
    let parse = || {
        if cipherlink {
            Mode::Parse(shell::unwrap_cipherlink(&step.command))
        } else {
            Mode::NotRun("not a cipherlink command, in a parse-only block")
        }
    };
    match plan {
        Plan::ParseOnly { .. } => Ok(parse()),
        Plan::Run { parse_only_words } => {
            let listed = |w: &String| parse_only_words.contains(w);
            if wrappers.iter().chain(&programs).any(listed) {
                Ok(parse())
            } else if wrappers.iter().any(|w| w == "sudo") {
                Err(
                    "runs as root: mark the block <!-- example: run, parse-only sudo (reason) -->"
                        .into(),
                )
            } else {
                Ok(Mode::Run)
            }
        }
        _ => Err("not a shell plan".into()),
    }
}

/// Runs `block`'s commands as `plan` says.
pub fn run(block: &Block, plan: &Plan, ctx: &Ctx) -> Outcome {
    let mut outcome = Outcome::default();
    let mut steps = Vec::new();
    for line in shell::lines(block) {
        match line {
            Line::Dropped { line, shown, why } => outcome
                .not_run
                .push(format!("{}:{line} {why}: {shown}", block.file)),
            Line::Step(step) => match syntax(&step.command).and_then(|()| mode(&step, plan)) {
                Ok(mode) => steps.push((step, mode)),
                Err(why) => {
                    outcome.failure = Some(format!(
                        "{}:{}: `{}` {why}",
                        block.file, step.line, step.shown
                    ));
                    return outcome;
                }
            },
        }
    }
    for (step, mode) in &steps {
        if let Mode::NotRun(why) = mode {
            outcome.not_run.push(format!(
                "{}:{} {why}: {}",
                block.file, step.line, step.shown
            ));
        }
        if *mode == Mode::Run {
            match find_peers(&step.command, ctx) {
                Ok(None) => {}
                Ok(Some(missing)) => {
                    outcome.skipped = Some(missing);
                    return outcome;
                }
                Err(why) => {
                    outcome.failure = Some(format!("{}:{}: {why}", block.file, step.line));
                    return outcome;
                }
            }
            if step.background {
                let mut ports = shell::listen_ports(&step.command);
                if ports.is_empty() {
                    ports.extend(default_listen_port(&step.command, ctx));
                }
                for port in ports {
                    if let Some(holder) = procfs::holder(port) {
                        outcome.failure = Some(format!(
                            "{}:{}: `{}` needs port {port}, which {holder} holds: \
                             stop it and run again",
                            block.file, step.line, step.shown
                        ));
                        return outcome;
                    }
                }
            }
        }
    }
    let tmp = shell::tmp_paths(block);
    remove(&tmp);
    outcome.failure = in_fresh_folder(block, plan, ctx, &steps, &mut outcome).err();
    remove(&tmp);
    outcome
}

fn in_fresh_folder(
    block: &Block,
    plan: &Plan,
    ctx: &Ctx,
    steps: &[(Step, Mode)],
    outcome: &mut Outcome,
) -> Result<(), String> {
    let cwd = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
    let logs = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
    let mut shell = Shell::start(&ShellEnv {
        cwd: cwd.path(),
        logs: logs.path(),
        path: &ctx.path,
        parse_only: matches!(plan, Plan::ParseOnly { .. }),
    })?;
    let mut result = Ok(());
    for (step, mode) in steps {
        let at = format!("{}:{}", block.file, step.line);
        let command = match mode {
            Mode::NotRun(_) => continue,
            Mode::Run => step.command.clone(),
            Mode::Parse(command) if matches!(plan, Plan::ParseOnly { .. }) => command.clone(),
            Mode::Parse(command) if shell::segments(command).len() == 1 => {
                format!("CIPHERLINK_PARSE_ONLY=1 {command}")
            }
            Mode::Parse(command) => format!("(export CIPHERLINK_PARSE_ONLY=1; {command})"),
        };
        let parse_only = matches!(mode, Mode::Parse(_));
        let failed = |why: String| {
            let ran_as = if command == step.shown {
                String::new()
            } else {
                format!("\n  run as: {command}")
            };
            format!(
                "{at} (block {}): `{}`{ran_as}\n  {why}",
                block.at(),
                step.shown
            )
        };
        let step_result = if step.background {
            shell.start_bg(&at, &command, !parse_only).map_err(failed)
        } else {
            foreground(&mut shell, step, &command).map_err(failed)
        };
        let how = if parse_only { "parsed" } else { "ran" };
        let bg = if step.background { " &" } else { "" };
        eprintln!("    {how} {at}: {command}{bg}");
        if let Err(why) = step_result {
            result = Err(why);
            break;
        }
        if parse_only {
            outcome.parsed += 1;
        } else {
            outcome.ran += 1;
        }
    }
    let killed = shell.finish();
    if result.is_ok() && !killed.is_empty() {
        result = Err(format!(
            "{}: background jobs did not stop within 10 s of SIGTERM: {}",
            block.at(),
            killed.join(", ")
        ));
    }
    result
}

fn foreground(shell: &mut Shell, step: &Step, command: &str) -> Result<(), String> {
    let (code, stdout, stderr) = shell.run(command)?;
    let shown = |what: &str| format!("{what}\n--- stderr:\n{stderr}--- stdout:\n{stdout}---");
    match (&step.expect_error, code) {
        (None, 0) => Ok(()),
        (None, code) => Err(shown(&format!("exited with {code}"))),
        (Some(_), 0) => Err(shown("succeeded, but the doc shows it failing")),
        (Some(expected), _) if !stderr.contains(expected.as_str()) => Err(shown(&format!(
            "failed as the doc shows, but its stderr lacks {expected:?}"
        ))),
        (Some(_), _) => Ok(()),
    }
}

/// The port a `cipherlink` server started without `--listen` takes, from
/// its `--help` (`[default: 127.0.0.1:4433]`), so it too is checked free.
fn default_listen_port(command: &str, ctx: &Ctx) -> Option<u16> {
    let words = shell::words(shell::segments(command).first()?);
    let (at, _) = shell::program(&words);
    if words.get(at)? != "cipherlink" {
        return None;
    }
    let subcommand: Vec<&String> = words[at + 1..]
        .iter()
        .take_while(|w| !w.starts_with('-'))
        .collect();
    let help = std::process::Command::new(ctx.bin.join("cipherlink"))
        .args(subcommand)
        .arg("--help")
        .output()
        .ok()?;
    let help = String::from_utf8_lossy(&help.stdout);
    let mut lines = help
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("--listen <"));
    let first = lines.next()?;
    let option: String = std::iter::once(first)
        .chain(lines.take_while(|l| !l.trim_start().starts_with('-')))
        .collect();
    let value = &option[option.find("[default: ")? + "[default: ".len()..];
    value[..value.find(']')?].rsplit(':').next()?.parse().ok()
}

/// Puts the peers `command` calls on PATH; Ok(Some) names one that is
/// not installed (the block is skipped; `find` panics instead under
/// `CIPHERLINK_REQUIRE_PEERS=1`).
fn find_peers(command: &str, ctx: &Ctx) -> Result<Option<String>, String> {
    for program in shell::programs(command) {
        let Some((name, peer)) = PEER_PROGRAMS.iter().find(|(name, _)| *name == program) else {
            continue;
        };
        let link = ctx.bin.join(name);
        if link.exists() {
            continue;
        }
        let Some(path) = cipherlink_test_support::find(*peer, ctx.test_name) else {
            return Ok(Some(format!("peer {name} ({peer:?}) is not installed")));
        };
        std::os::unix::fs::symlink(&path, &link)
            .map_err(|e| format!("linking {} into {}: {e}", path.display(), ctx.bin.display()))?;
    }
    Ok(None)
}

/// Removes each path and its `NAME.*` siblings (a token store's `.lock`
/// and `.replay`), so a block starts as on a fresh machine and leaves
/// nothing behind.
fn remove(paths: &[std::path::PathBuf]) {
    let siblings = |path: &Path| -> Vec<std::path::PathBuf> {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Vec::new();
        };
        let prefix = format!("{}.", name.to_string_lossy());
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    for path in paths {
        for path in std::iter::once(path.clone()).chain(siblings(path)) {
            let _ = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}
