//! One end of the path: a tokio runtime whose threads all live in one
//! network namespace (or in this process's own, for loopback). Sockets
//! belong to the namespace of the thread that creates them, and a
//! transport's driver makes its sockets on whatever worker runs it, so the
//! whole runtime is moved, thread by thread, as each starts.

use std::fs::File;
use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::sched::{setns, CloneFlags};
use tokio::runtime::{Handle, Runtime};

use crate::LabError;

/// A runtime for one end.
pub(super) struct Side {
    runtime: Option<Runtime>,
    name: &'static str,
}

impl Drop for Side {
    fn drop(&mut self) {
        // Dropping a runtime from inside another one would panic; its
        // tasks only hold sockets and timers, so nothing waits for them.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Side {
    /// A one-worker runtime named `name`, in the namespace at `netns`
    /// (`/var/run/netns/NAME`) when given, logging to `log` when given.
    pub(super) async fn new(
        name: &'static str,
        netns: Option<&Path>,
        log: Option<&tracing::Dispatch>,
    ) -> Result<Side, LabError> {
        let ns = match netns {
            Some(path) => Some(Arc::new(File::open(path).map_err(|source| {
                LabError::Io {
                    what: "opening a network namespace",
                    source,
                }
            })?)),
            None => None,
        };
        let failed = Arc::new(AtomicBool::new(false));
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(1).enable_all().thread_name(name);
        let (ns2, failed2, log) = (ns.clone(), failed.clone(), log.cloned());
        builder.on_thread_start(move || {
            if let Some(ns) = &ns2 {
                if setns(&**ns, CloneFlags::CLONE_NEWNET).is_err() {
                    failed2.store(true, Ordering::Release);
                }
            }
            if let Some(log) = &log {
                // For the thread's whole life: the guard is never dropped.
                std::mem::forget(tracing::dispatcher::set_default(log));
            }
        });
        let runtime = builder.build().map_err(|source| LabError::Io {
            what: "starting a runtime for one end",
            source,
        })?;
        let side = Side {
            runtime: Some(runtime),
            name,
        };
        if let (Some(path), Some(_)) = (netns, ns) {
            let expected = std::fs::metadata(path)
                .map_err(|source| LabError::Io {
                    what: "reading a network namespace",
                    source,
                })?
                .ino();
            let here = side
                .run(async { std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino()) })
                .await?
                .map_err(|source| LabError::Io {
                    what: "reading a thread's network namespace",
                    source,
                })?;
            if here != expected || failed.load(Ordering::Acquire) {
                return Err(LabError::Setup(format!(
                    "the {name} end could not enter the network namespace {}",
                    path.display()
                )));
            }
        }
        Ok(side)
    }

    fn handle(&self) -> Result<&Handle, LabError> {
        self.runtime
            .as_ref()
            .map(Runtime::handle)
            .ok_or_else(|| LabError::Setup(format!("the {} end has stopped", self.name)))
    }

    /// Runs `f` on this end and waits for it.
    pub(super) async fn run<F>(&self, f: F) -> Result<F::Output, LabError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle()?
            .spawn(f)
            .await
            .map_err(|source| LabError::Task {
                what: "a task of one end",
                source,
            })
    }

    /// Starts `f` on this end; it stops when the handle is aborted or the
    /// end is dropped.
    pub(super) fn spawn<F>(&self, f: F) -> Result<tokio::task::JoinHandle<F::Output>, LabError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Ok(self.handle()?.spawn(f))
    }
}
