//! The replay store's database file (docs §6): opened in place without
//! following a symlink, loaded once, then written by one thread of its own
//! in group commits, so that no tokio worker waits for a disk and one fsync
//! makes a whole batch of marks durable.
//!
//! A mark's first message is answered only once its commit is durable
//! ([`ReplayCommit`]). When a commit fails the store becomes unavailable
//! (every first message is a probe: fail closed) and the thread reopens the
//! file with a growing pause until a write works again; each change of
//! state is logged once.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::backends::FileBackend;
use redb::{Database, ReadableTable, StorageBackend, TableDefinition};

use crate::error::Error;
use crate::proto::replay::ReplayFilter;

/// Mark `M` → its hour window `W`.
const MARKS: TableDefinition<[u8; 16], u64> = TableDefinition::new("cipherlink-link/1 marks");

/// First pause before reopening a file whose write failed; doubled up to
/// [`RETRY_MAX`] while it keeps failing.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One change to the file, in the order the filter made it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    Add([u8; 16], u64),
    Remove([u8; 16]),
}

#[derive(Default)]
struct CommitState {
    /// `Some(true)`: on disk; `Some(false)`: the write failed.
    done: Option<bool>,
    waker: Option<Waker>,
}

/// A first message's mark on its way to disk: the server answers it only
/// when [`ReplayCommit::poll_durable`] says it is there.
#[derive(Default)]
pub struct ReplayCommit {
    state: Mutex<CommitState>,
    cond: Condvar,
}

impl std::fmt::Debug for ReplayCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayCommit")
            .field("done", &lock(&self.state).done)
            .finish()
    }
}

impl ReplayCommit {
    /// `None` while the write is under way; then whether it reached the disk.
    pub fn outcome(&self) -> Option<bool> {
        lock(&self.state).done
    }

    /// Ready with the outcome once the write is done; otherwise wakes `cx` then.
    pub fn poll_durable(&self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut s = lock(&self.state);
        match s.done {
            Some(ok) => Poll::Ready(ok),
            None => {
                match &s.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => s.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    /// Blocks until the write is done (tests, and callers without a runtime).
    pub fn wait(&self) -> bool {
        let mut s = lock(&self.state);
        loop {
            if let Some(ok) = s.done {
                return ok;
            }
            s = self.cond.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn finish(&self, ok: bool) {
        let waker = {
            let mut s = lock(&self.state);
            s.done = Some(ok);
            s.waker.take()
        };
        self.cond.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Test switches on the file's fsyncs (nothing else turns them on).
#[derive(Debug, Default)]
struct Faults {
    /// The next this many fsyncs fail.
    fail: AtomicU32,
    /// Every fsync takes this many more milliseconds.
    slow_ms: AtomicU64,
    /// Transactions committed (counted for tests of group commit).
    commits: AtomicU64,
}

/// redb's file backend, with the test switches of [`Faults`].
#[derive(Debug)]
struct Backend {
    file: FileBackend,
    faults: Arc<Faults>,
}

impl StorageBackend for Backend {
    fn len(&self) -> std::io::Result<u64> {
        self.file.len()
    }
    fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        self.file.read(offset, len)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.file.set_len(len)
    }
    fn sync_data(&self, eventual: bool) -> std::io::Result<()> {
        let injected = self
            .faults
            .fail
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if injected.is_ok() {
            return Err(std::io::Error::other("injected fsync failure"));
        }
        let slow = self.faults.slow_ms.load(Ordering::Acquire);
        if slow > 0 {
            std::thread::sleep(Duration::from_millis(slow));
        }
        self.file.sync_data(eventual)
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.file.write(offset, data)
    }
}

fn store_err(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Store {
        path: path.display().to_string(),
        reason: format!("{what}: {e}"),
    }
}

/// Opens the database at `path` (created 0600 if missing, never through a
/// symlink, only a regular file of ours).
fn open_db(path: &Path, faults: &Arc<Faults>) -> Result<Database, Error> {
    let file = crate::owned_file::open_owned(path).map_err(|e| store_err(path, "opening", e))?;
    let file = FileBackend::new(file).map_err(|e| store_err(path, "opening", e))?;
    let backend = Backend {
        file,
        faults: Arc::clone(faults),
    };
    redb::Builder::new()
        .create_with_backend(backend)
        .map_err(|e| store_err(path, "opening", e))
}

/// One durable transaction (redb's default durability is `Immediate`:
/// committed means on disk).
fn commit(db: &Database, ops: &[Op]) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut table = txn.open_table(MARKS).map_err(|e| e.to_string())?;
        for op in ops {
            match op {
                Op::Add(m, w) => table.insert(m, w).map(|_| ()),
                Op::Remove(m) => table.remove(m).map(|_| ()),
            }
            .map_err(|e| e.to_string())?;
        }
    }
    txn.commit().map_err(|e| e.to_string())
}

/// Opens the file, loads its marks into `filter` (oldest window first) and,
/// in the same transaction, deletes the rows the filter did not keep
/// (expired or over capacity) and adds `held`, the marks this process took
/// before the file was attached.
fn open_and_load(
    path: &Path,
    filter: &mut ReplayFilter,
    faults: &Arc<Faults>,
) -> Result<Database, Error> {
    let held: Vec<_> = filter.marks().collect();
    let db = open_db(path, faults)?;
    let txn = db
        .begin_write()
        .map_err(|e| store_err(path, "reading", e))?;
    {
        let mut table = txn
            .open_table(MARKS)
            .map_err(|e| store_err(path, "reading", e))?;
        let mut rows = Vec::new();
        for row in table.iter().map_err(|e| store_err(path, "reading", e))? {
            let (m, w) = row.map_err(|e| store_err(path, "reading", e))?;
            rows.push((m.value(), w.value()));
        }
        rows.sort_by_key(|&(_, w)| w);
        let newest = rows.last().map_or(0, |&(_, w)| w);
        let mut dropped = Vec::new();
        for &(m, w) in &rows {
            dropped.extend(filter.insert(m, w, newest));
        }
        for m in &dropped {
            table.remove(m).map_err(|e| store_err(path, "writing", e))?;
        }
        for (m, w) in held.iter().filter(|(m, _)| filter.contains(m)) {
            table
                .insert(m, w)
                .map_err(|e| store_err(path, "writing", e))?;
        }
    }
    txn.commit().map_err(|e| store_err(path, "writing", e))?;
    Ok(db)
}

#[derive(Default)]
struct Queue {
    ops: Vec<Op>,
    waiting: Vec<Arc<ReplayCommit>>,
    stop: bool,
}

struct Shared {
    path: PathBuf,
    queue: Mutex<Queue>,
    cond: Condvar,
    /// False while the file cannot be written: first messages are probes.
    available: AtomicBool,
    faults: Arc<Faults>,
}

/// The file of one replay store and its writer thread.
pub(crate) struct ReplayFile {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ReplayFile {
    /// Opens `path`, loads it into `filter`, and starts the writer.
    pub(crate) fn open(path: &Path, filter: &mut ReplayFilter) -> Result<Self, Error> {
        let faults = Arc::new(Faults::default());
        let db = open_and_load(path, filter, &faults)?;
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            queue: Mutex::new(Queue::default()),
            cond: Condvar::new(),
            available: AtomicBool::new(true),
            faults,
        });
        let thread = std::thread::Builder::new()
            .name("link-replay-writer".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || write_loop(&shared, db)
            })
            .map_err(|e| store_err(path, "starting its writer thread", e))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Whether writes work (otherwise every first message is a probe).
    pub(crate) fn available(&self) -> bool {
        self.shared.available.load(Ordering::Acquire)
    }

    /// Queues `ops` for the next group commit; `commit` learns when they are on disk.
    pub(crate) fn submit(&self, ops: &[Op], commit: Option<Arc<ReplayCommit>>) {
        let mut q = lock(&self.shared.queue);
        q.ops.extend_from_slice(ops);
        q.waiting.extend(commit);
        drop(q);
        self.shared.cond.notify_one();
    }

    /// Tests only: the next `n` fsyncs of the file fail.
    pub(crate) fn inject_faults(&self, n: u32) {
        self.shared.faults.fail.store(n, Ordering::Release);
    }

    /// Tests only: every fsync takes `ms` milliseconds more.
    pub(crate) fn slow_down(&self, ms: u64) {
        self.shared.faults.slow_ms.store(ms, Ordering::Release);
    }

    /// Group commits made since the file was opened.
    pub(crate) fn commits(&self) -> u64 {
        self.shared.faults.commits.load(Ordering::Acquire)
    }
}

impl Drop for ReplayFile {
    fn drop(&mut self) {
        lock(&self.shared.queue).stop = true;
        self.shared.cond.notify_all();
        if let Some(t) = self.thread.take() {
            // What was queued is written first; the file is closed (and
            // its lock released) before a new store may open it again.
            let _ = t.join();
        }
    }
}

/// Takes the whole queue once something is in it; `None` when stopped.
fn next_batch(shared: &Shared) -> Option<(Vec<Op>, Vec<Arc<ReplayCommit>>)> {
    let mut q = lock(&shared.queue);
    loop {
        if !q.ops.is_empty() || !q.waiting.is_empty() {
            return Some((std::mem::take(&mut q.ops), std::mem::take(&mut q.waiting)));
        }
        if q.stop {
            return None;
        }
        q = shared.cond.wait(q).unwrap_or_else(|p| p.into_inner());
    }
}

fn write_loop(shared: &Shared, db: Database) {
    let mut db = Some(db);
    while let Some((ops, waiting)) = next_batch(shared) {
        let result = match &db {
            Some(d) => commit(d, &ops),
            None => Err("not open".into()),
        };
        if result.is_ok() {
            shared.faults.commits.fetch_add(1, Ordering::Relaxed);
        }
        if result.is_err() {
            // Before anyone learns of the failure: no first message may
            // slip in between.
            shared.available.store(false, Ordering::Release);
        }
        for w in waiting {
            w.finish(result.is_ok());
        }
        if let Err(e) = result {
            tracing::error!(
                "link replay store {}: {e}; every first message is refused until it can be written again",
                shared.path.display()
            );
            // redb wants a database whose write failed closed and reopened;
            // its file lock goes with it.
            drop(db.take());
            db = recover(shared);
            if db.is_none() {
                return;
            }
            shared.available.store(true, Ordering::Release);
            tracing::warn!(
                "link replay store {}: writable again; first messages are answered again",
                shared.path.display()
            );
        }
    }
}

/// Reopens the file with a growing pause until a write works; first
/// messages queued meanwhile fail at once (they become probes). `None`
/// when the store is dropped first.
fn recover(shared: &Shared) -> Option<Database> {
    let mut pause = RETRY_FIRST;
    loop {
        {
            let mut q = lock(&shared.queue);
            let deadline = std::time::Instant::now() + pause;
            loop {
                for w in q.waiting.drain(..) {
                    w.finish(false);
                }
                q.ops.clear();
                let now = std::time::Instant::now();
                if q.stop {
                    return None;
                }
                if now >= deadline {
                    break;
                }
                q = shared
                    .cond
                    .wait_timeout(q, deadline - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        match open_db(&shared.path, &shared.faults) {
            Ok(db) if commit(&db, &[]).is_ok() => return Some(db),
            Ok(_) | Err(_) => pause = (pause * 2).min(RETRY_MAX),
        }
    }
}
