//! The replay filter of one server key (docs §6): one per key in the
//! process, shared by every endpoint of that key, and optionally kept in an
//! embedded database file (redb, `replay_file`) so that a restart
//! remembers it.
//!
//! Besides the marks of answered first messages it holds the marks whose
//! handshake is in progress: a first message whose MAC verified takes its
//! mark here before it takes a handshake slot, so one recorded header holds
//! at most one slot however many connections repeat it.
//!
//! The filter answers every lookup in memory; with a file, every mark it
//! takes is committed (in a group, by the file's own thread) before its
//! first message is answered. While the file cannot be written the store
//! is unavailable and every first message is a probe (fail closed).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};

use crate::error::Error;
use crate::proto::replay::ReplayFilter;
pub use crate::replay_file::ReplayCommit;
use crate::replay_file::{Op, ReplayFile};

/// Why a first message's mark cannot go on (the message is a probe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Answered before.
    Replay,
    /// Another connection is handshaking with the same mark right now.
    InProgress,
    /// The file cannot be written: refuse, whatever the mark (fail closed).
    Unavailable,
}

impl Refused {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Replay => "replayed first message",
            Self::InProgress => "first message already in progress",
            Self::Unavailable => "replay store unavailable",
        }
    }
}

/// What recording a mark gave.
pub(crate) enum Recorded {
    /// Recorded (no file: in memory is all there is).
    Done,
    /// Recorded in memory; answer once this commit is durable.
    Durable(Arc<ReplayCommit>),
    /// The store became unavailable meanwhile.
    Unavailable,
}

struct Inner {
    filter: ReplayFilter,
    in_progress: HashSet<[u8; 16]>,
    file: Option<ReplayFile>,
}

/// The replay filter of one server key.
pub struct ReplayStore {
    inner: Mutex<Inner>,
}

/// A mark whose handshake is in progress, held until dropped.
pub(crate) struct InProgress {
    store: Arc<ReplayStore>,
    mark: [u8; 16],
}

impl Drop for InProgress {
    fn drop(&mut self) {
        lock(&self.store.inner).in_progress.remove(&self.mark);
    }
}

/// Every shared store of this process, by server public key.
static REGISTRY: LazyLock<Mutex<HashMap<[u8; 32], Weak<ReplayStore>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ReplayStore {
    fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                filter: ReplayFilter::new(capacity),
                in_progress: HashSet::new(),
                file: None,
            }),
        }
    }

    /// A store of its own, shared with nobody (tests and fuzzing: a replay
    /// to another endpoint of the same key goes through).
    pub(crate) fn private(capacity: usize) -> Arc<Self> {
        Arc::new(Self::new(capacity))
    }

    /// The store of server key `public` in this process, made on first use
    /// with `capacity`; with `file`, kept in that database file too. One
    /// key has one file: asking for another one is an error.
    pub(crate) fn shared(
        public: &[u8; 32],
        capacity: usize,
        file: Option<&Path>,
    ) -> Result<Arc<Self>, Error> {
        let mut reg = lock(&REGISTRY);
        reg.retain(|_, w| w.strong_count() > 0);
        let store = match reg.get(public).and_then(Weak::upgrade) {
            Some(s) => s,
            None => {
                let s = Arc::new(Self::new(capacity));
                reg.insert(*public, Arc::downgrade(&s));
                s
            }
        };
        if let Some(path) = file {
            store.attach(path)?;
        }
        Ok(store)
    }

    fn attach(&self, path: &Path) -> Result<(), Error> {
        let mut inner = lock(&self.inner);
        match &inner.file {
            Some(f) if same_file(f.path(), path) => Ok(()),
            Some(f) => Err(Error::Config(format!(
                "this server key already keeps its replay store in {}, not {}",
                f.path().display(),
                path.display()
            ))),
            None => {
                // What this process saw before the file was attached goes in too.
                let file = ReplayFile::open(path, &mut inner.filter)?;
                inner.file = Some(file);
                Ok(())
            }
        }
    }

    /// Takes `mark` for a handshake about to start, unless it was answered
    /// before, is being handshaken right now, or the store is unavailable.
    pub(crate) fn begin(self: &Arc<Self>, mark: [u8; 16]) -> Result<InProgress, Refused> {
        let mut inner = lock(&self.inner);
        if inner.file.as_ref().is_some_and(|f| !f.available()) {
            return Err(Refused::Unavailable);
        }
        if inner.filter.contains(&mark) {
            return Err(Refused::Replay);
        }
        if !inner.in_progress.insert(mark) {
            return Err(Refused::InProgress);
        }
        Ok(InProgress {
            store: Arc::clone(self),
            mark,
        })
    }

    /// Records the mark of a first message that decrypted (window `w`,
    /// `now_w` the server's window); with a file, the answer waits for the
    /// returned commit.
    pub(crate) fn record(&self, p: &InProgress, w: u64, now_w: u64) -> Recorded {
        let mut inner = lock(&self.inner);
        if inner.file.as_ref().is_some_and(|f| !f.available()) {
            return Recorded::Unavailable;
        }
        let dropped = inner.filter.insert(p.mark, w, now_w);
        let Some(file) = &inner.file else {
            return Recorded::Done;
        };
        let mut ops: Vec<Op> = dropped.into_iter().map(Op::Remove).collect();
        ops.push(Op::Add(p.mark, w));
        let commit = Arc::new(ReplayCommit::default());
        file.submit(&ops, Some(Arc::clone(&commit)));
        Recorded::Durable(commit)
    }

    /// Marks held.
    pub fn len(&self) -> usize {
        lock(&self.inner).filter.len()
    }

    /// Whether no mark is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether first messages can be answered: `false` while the file
    /// cannot be written (docs §6).
    pub fn is_available(&self) -> bool {
        lock(&self.inner)
            .file
            .as_ref()
            .is_none_or(|f| f.available())
    }

    /// Tests only: the next `n` fsyncs of the file fail, as a full or
    /// failing disk would make them.
    #[doc(hidden)]
    pub fn inject_write_failures(&self, n: u32) {
        if let Some(f) = &lock(&self.inner).file {
            f.inject_faults(n);
        }
    }

    /// Tests only: every fsync of the file takes `ms` milliseconds more.
    #[doc(hidden)]
    pub fn slow_down_writes(&self, ms: u64) {
        if let Some(f) = &lock(&self.inner).file {
            f.slow_down(ms);
        }
    }

    /// Group commits to the file since it was opened (each one fsync, for
    /// any number of marks); 0 without a file.
    pub fn file_commits(&self) -> u64 {
        lock(&self.inner)
            .file
            .as_ref()
            .map_or(0, ReplayFile::commits)
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
