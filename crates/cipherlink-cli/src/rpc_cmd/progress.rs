//! `rpc steady`'s progress on stderr: a bar on a terminal, otherwise a line
//! when the phase changes and every few seconds. stdout carries results
//! only.
//!
//! The display runs on a thread of its own and reads the scheduler's
//! [`SteadyProgress`] on a timer: the steady client is a single-threaded,
//! latency-sensitive loop that must not draw anything per request.

use std::io::IsTerminal as _;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cipherlink_rpc::client::progress::{Progress, SteadyProgress};
use indicatif::{ProgressBar, ProgressStyle};

/// How often the display looks at the run.
const TICK: Duration = Duration::from_millis(250);

/// Without a terminal, a line at least this often (and at each new phase).
const LINE_EVERY: Duration = Duration::from_secs(5);

/// The rate so far is shown once recording has run this long: over the
/// first few requests it says little.
const RATE_AFTER: Duration = Duration::from_secs(1);

/// A running display; dropping it stops it (a final line without a terminal).
pub struct Display {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    bar: Option<ProgressBar>,
}

impl Display {
    /// Starts showing `progress` on stderr.
    pub fn start(progress: Arc<SteadyProgress>) -> Display {
        let bar = std::io::stderr().is_terminal().then(new_bar);
        let (stop, stopped) = mpsc::channel();
        let shown = bar.clone();
        let thread = std::thread::Builder::new()
            .name("rpc-progress".into())
            .spawn(move || match shown {
                Some(bar) => draw_bar(&progress, &stopped, &bar),
                None => print_lines(&progress, &stopped),
            });
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(err) => {
                // The run matters more than its progress display.
                tracing::debug!("no progress display: {err}");
                None
            }
        };
        Display {
            stop: Some(stop),
            thread,
            bar,
        }
    }

    /// Prints a result line on stdout without tearing the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn new_bar() -> ProgressBar {
    let bar = ProgressBar::new(1);
    if let Ok(style) = ProgressStyle::with_template("steady: {prefix:9} [{bar:30}] {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Waits one tick; false once the display is told to stop.
fn tick(stopped: &mpsc::Receiver<()>) -> bool {
    matches!(stopped.recv_timeout(TICK), Err(RecvTimeoutError::Timeout))
}

fn draw_bar(progress: &SteadyProgress, stopped: &mpsc::Receiver<()>, bar: &ProgressBar) {
    while tick(stopped) {
        let Some(view) = View::of(progress.at(Instant::now())) else {
            continue;
        };
        bar.set_prefix(view.phase);
        bar.set_length(view.of.max(1));
        bar.set_position(view.done);
        bar.set_message(view.text);
    }
    bar.finish_and_clear();
}

fn print_lines(progress: &SteadyProgress, stopped: &mpsc::Receiver<()>) {
    let mut last: Option<(&'static str, Instant)> = None;
    while tick(stopped) {
        let now = Instant::now();
        let Some(view) = View::of(progress.at(now)) else {
            continue;
        };
        let due = last
            .is_none_or(|(phase, at)| phase != view.phase || now.duration_since(at) >= LINE_EVERY);
        if due {
            eprintln!("steady: {} {}", view.phase, view.text);
            last = Some((view.phase, now));
        }
    }
    // How the run ended, unless just said: a run shorter than a tick too.
    if let Some(view) = View::of(progress.at(Instant::now())) {
        if last.is_none_or(|(phase, _)| phase != view.phase) {
            eprintln!("steady: {} {}", view.phase, view.text);
        }
    }
}

/// What the display shows of a [`Progress`].
#[derive(Debug, PartialEq)]
struct View {
    phase: &'static str,
    text: String,
    /// Bar position and length, in milliseconds of the phase.
    done: u64,
    of: u64,
}

impl View {
    fn of(progress: Progress) -> Option<View> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Some(match progress {
            Progress::Waiting => return None,
            Progress::WarmUp { elapsed, total } => View {
                phase: "warm-up",
                text: format!("{} of {}", secs(elapsed), secs(total)),
                done: ms(elapsed),
                of: ms(total),
            },
            Progress::Recording {
                elapsed,
                total,
                achieved_rps,
                ..
            } => View {
                phase: "recording",
                text: if elapsed < RATE_AFTER {
                    format!("{} of {}", secs(elapsed), secs(total))
                } else {
                    format!(
                        "{} of {}, {achieved_rps:.0}/s so far",
                        secs(elapsed),
                        secs(total)
                    )
                },
                done: ms(elapsed),
                of: ms(total),
            },
            Progress::Finishing { issued } => View {
                phase: "finishing",
                text: format!("all {issued} requests sent; waiting for the last answers"),
                done: 1,
                of: 1,
            },
        })
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_show_elapsed_of_total_and_the_rate_so_far() {
        assert_eq!(View::of(Progress::Waiting), None);
        let view = View::of(Progress::Recording {
            elapsed: Duration::from_secs(12),
            total: Duration::from_secs(300),
            issued: 6000,
            achieved_rps: 499.6,
        });
        assert_eq!(
            view,
            Some(View {
                phase: "recording",
                text: "12.0 s of 300.0 s, 500/s so far".into(),
                done: 12_000,
                of: 300_000,
            })
        );
        let view = View::of(Progress::WarmUp {
            elapsed: Duration::from_millis(1500),
            total: Duration::from_secs(30),
        });
        assert!(
            matches!(view, Some(View { phase: "warm-up", ref text, .. }) if text == "1.5 s of 30.0 s")
        );
        let view = View::of(Progress::Recording {
            elapsed: Duration::from_millis(20),
            total: Duration::from_secs(300),
            issued: 11,
            achieved_rps: 500.0,
        });
        assert!(matches!(view, Some(View { ref text, .. }) if text == "0.0 s of 300.0 s"));
    }
}
