//! Runs a shell block's commands, one at a time, in one `bash` with job
//! control (`set -m`: `&` jobs get their own process group, `kill %2` works
//! as in a terminal). The test feeds bash a command, its output goes to
//! files, and bash answers `__status N RC` (or `__bg N PID`) on its stdout,
//! so each command's failure is reported with its own stderr.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::procfs;
use super::shell::segments;

/// How long one foreground command may take (the slowest runs in seconds;
/// this stops a server that a doc forgot to put in the background).
pub const STEP_DEADLINE: Duration = Duration::from_secs(120);

/// How long a background server may take to listen (generous: 2 shared cores).
pub const LISTEN_DEADLINE: Duration = Duration::from_secs(60);

/// How long a stopped job may take to exit before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

const POLL: Duration = Duration::from_millis(50);

/// A background job of the block.
struct Job {
    pgid: u32,
    at: String,
}

/// One bash running a block's commands.
pub struct Shell {
    child: Child,
    stdin: Option<ChildStdin>,
    answers: Receiver<String>,
    logs: PathBuf,
    jobs: Vec<Job>,
    count: usize,
}

/// The environment a block's shell runs in.
pub struct ShellEnv<'a> {
    /// Its working folder (fresh per block).
    pub cwd: &'a Path,
    /// Where command output goes (outside `cwd`, so the doc's files are alone there).
    pub logs: &'a Path,
    /// PATH, the folder with `cipherlink` (and the peers) first.
    pub path: &'a std::ffi::OsStr,
    /// `CIPHERLINK_PARSE_ONLY=1` for every command.
    pub parse_only: bool,
}

impl Shell {
    /// Starts bash in `env.cwd`.
    pub fn start(env: &ShellEnv) -> Result<Shell, String> {
        let mut cmd = Command::new("bash");
        cmd.args(["--noprofile", "--norc", "-s"])
            .current_dir(env.cwd)
            .env("PATH", env.path)
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "0")
            .env_remove("CIPHERLINK_LOG")
            .env_remove("CIPHERLINK_PARSE_ONLY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if env.parse_only {
            cmd.env("CIPHERLINK_PARSE_ONLY", "1");
        }
        let shell_err = std::fs::File::create(env.logs.join("shell.err"))
            .map_err(|e| format!("creating the shell's log: {e}"))?;
        cmd.stderr(shell_err);
        let mut child = cmd.spawn().map_err(|e| format!("starting bash: {e}"))?;
        let stdout = child.stdout.take().ok_or("bash has no stdout")?;
        let (tx, answers) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut shell = Shell {
            stdin: child.stdin.take(),
            child,
            answers,
            logs: env.logs.to_path_buf(),
            jobs: Vec::new(),
            count: 0,
        };
        shell.send("set -m\n")?;
        Ok(shell)
    }

    fn send(&mut self, text: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("the shell's stdin is closed")?;
        stdin
            .write_all(text.as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("writing to bash: {e}"))
    }

    fn out_err(&self, n: usize) -> (PathBuf, PathBuf) {
        (
            self.logs.join(format!("{n}.out")),
            self.logs.join(format!("{n}.err")),
        )
    }

    fn answer(&mut self, n: usize, what: &str, deadline: Duration) -> Result<String, String> {
        let prefix = format!("{what} {n} ");
        let start = Instant::now();
        loop {
            let left = deadline.saturating_sub(start.elapsed());
            match self.answers.recv_timeout(left) {
                Ok(line) => {
                    if let Some(value) = line.strip_prefix(&prefix) {
                        return Ok(value.to_string());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                    "did not finish within {deadline:?} (a server the doc should start with `&`?)"
                ))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let log = read(&self.logs.join("shell.err"));
                    return Err(format!("bash exited\n--- bash stderr:\n{log}"));
                }
            }
        }
    }

    /// Runs `command` in the foreground: Ok((exit code, stdout, stderr)).
    pub fn run(&mut self, command: &str) -> Result<(i32, String, String), String> {
        self.count += 1;
        let n = self.count;
        let (out, err) = self.out_err(n);
        self.send(&format!(
            "{{ {command}\n}} </dev/null >{} 2>{}; echo \"__status {n} $?\"\n",
            quote(&out),
            quote(&err)
        ))?;
        let status = self
            .answer(n, "__status", STEP_DEADLINE)
            .map_err(|why| format!("{why}\n--- stderr so far:\n{}", read(&err)))?;
        let code = status.trim().parse().unwrap_or(-1);
        Ok((code, read(&out), read(&err)))
    }

    /// Starts `step` in the background; with `wait_listen`, returns once one
    /// of its processes listens on a TCP port (fails if it exits first).
    pub fn start_bg(&mut self, at: &str, command: &str, wait_listen: bool) -> Result<(), String> {
        self.count += 1;
        let n = self.count;
        let (out, err) = self.out_err(n);
        let redirect = format!("</dev/null >{} 2>{}", quote(&out), quote(&err));
        // A simple command is the job itself (so `wait %N` reports its
        // status); redirections come first, so the doc's own ones win.
        let line = if segments(command).len() == 1 && !command.starts_with('(') {
            format!("{redirect} {command} &\n")
        } else {
            format!("{{ {command}\n}} {redirect} &\n")
        };
        self.send(&format!("{line}echo \"__bg {n} $!\"\n"))?;
        let pgid: u32 = self
            .answer(n, "__bg", STEP_DEADLINE)?
            .trim()
            .parse()
            .map_err(|e| format!("bash's $!: {e}"))?;
        self.jobs.push(Job {
            pgid,
            at: at.to_string(),
        });
        if !wait_listen {
            return Ok(());
        }
        let start = Instant::now();
        loop {
            let pids = procfs::group(pgid);
            if pids.is_empty() {
                return Err(format!(
                    "exited before listening\n--- stderr:\n{}",
                    read(&err)
                ));
            }
            if !procfs::listening_ports(&pids).is_empty() {
                return Ok(());
            }
            if start.elapsed() > LISTEN_DEADLINE {
                return Err(format!(
                    "not listening after {LISTEN_DEADLINE:?}\n--- stderr:\n{}",
                    read(&err)
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Stops every background job (SIGTERM, then SIGKILL) and the shell.
    /// Returns the jobs that had to be killed.
    pub fn finish(mut self) -> Vec<String> {
        let mut killed = Vec::new();
        for job in std::mem::take(&mut self.jobs) {
            if procfs::group(job.pgid).is_empty() {
                continue;
            }
            procfs::signal(job.pgid, true, "TERM");
            let start = Instant::now();
            while !procfs::group(job.pgid).is_empty() {
                if start.elapsed() > STOP_DEADLINE {
                    procfs::signal(job.pgid, true, "KILL");
                    killed.push(job.at.clone());
                    break;
                }
                std::thread::sleep(POLL);
            }
        }
        let _ = self.send("exit 0\n");
        self.stdin = None;
        let start = Instant::now();
        while let Ok(None) = self.child.try_wait() {
            if start.elapsed() > STOP_DEADLINE {
                // A foreground command that outlived its deadline: Drop kills it.
                break;
            }
            std::thread::sleep(POLL);
        }
        killed
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        // A panic mid-block: leave no process behind. Only while bash is
        // unreaped is its pid still its own (no reused pid gets a signal).
        for job in &self.jobs {
            if !procfs::group(job.pgid).is_empty() {
                procfs::signal(job.pgid, true, "KILL");
            }
        }
        if let Ok(None) = self.child.try_wait() {
            for pid in procfs::descendants(self.child.id())
                .into_iter()
                .skip(1)
                .rev()
            {
                procfs::signal(pid, false, "KILL");
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A path as one single-quoted shell word.
pub fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// A file's text, or nothing.
pub fn read(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
