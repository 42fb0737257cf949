//! The replay filter of one server key (docs §6): one per key in the
//! process, shared by every endpoint of that key, and optionally kept in an
//! embedded database file (redb) so that a restart remembers it.
//!
//! The file mirrors the in-memory filter: the filter answers every lookup,
//! and every mark it takes is committed to the file (durably, one fsync)
//! before the first message is answered. When the file cannot be written
//! the store fails closed: every later first message is refused (a probe)
//! until the process is restarted with a working file, and the failure is
//! logged at error level once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};

use redb::{Database, ReadableTable, TableDefinition};

use crate::error::Error;
use crate::proto::replay::ReplayFilter;

/// Mark `M` → its hour window `W`.
const MARKS: TableDefinition<[u8; 16], u64> = TableDefinition::new("cipherlink-link/1 marks");

/// What a lookup or an insert found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Not seen: go on (after an insert: recorded, durably when there is a file).
    Fresh,
    /// Seen before: a replay.
    Replay,
    /// The file failed: refuse, whatever the mark (fail closed).
    Unavailable,
}

struct Inner {
    filter: ReplayFilter,
    db: Option<(PathBuf, Database)>,
    failed: bool,
}

/// The replay filter of one server key.
pub struct ReplayStore {
    inner: Mutex<Inner>,
}

/// Every shared store of this process, by server public key.
static REGISTRY: LazyLock<Mutex<HashMap<[u8; 32], Weak<ReplayStore>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn store_err(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Store {
        path: path.display().to_string(),
        reason: format!("{what}: {e}"),
    }
}

/// Opens (or creates) the database at `path` and loads its marks into `filter`,
/// oldest window first.
fn open(path: &Path, filter: &mut ReplayFilter) -> Result<Database, Error> {
    let db = Database::create(path).map_err(|e| store_err(path, "opening", e))?;
    let txn = db
        .begin_write()
        .map_err(|e| store_err(path, "reading", e))?;
    let mut marks = Vec::new();
    {
        let table = txn
            .open_table(MARKS)
            .map_err(|e| store_err(path, "reading", e))?;
        for row in table.iter().map_err(|e| store_err(path, "reading", e))? {
            let (m, w) = row.map_err(|e| store_err(path, "reading", e))?;
            marks.push((m.value(), w.value()));
        }
    }
    txn.commit().map_err(|e| store_err(path, "writing", e))?;
    marks.sort_by_key(|&(_, w)| w);
    let newest = marks.last().map_or(0, |&(_, w)| w);
    for (m, w) in marks {
        filter.insert(m, w, newest);
    }
    Ok(db)
}

/// One durable transaction (redb's default durability is `Immediate`:
/// committed means on disk).
fn commit(db: &Database, add: &[([u8; 16], u64)], dropped: &[[u8; 16]]) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut table = txn.open_table(MARKS).map_err(|e| e.to_string())?;
        for m in dropped {
            table.remove(m).map_err(|e| e.to_string())?;
        }
        for (m, w) in add {
            table.insert(m, w).map_err(|e| e.to_string())?;
        }
    }
    txn.commit().map_err(|e| e.to_string())
}

impl ReplayStore {
    fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                filter: ReplayFilter::new(capacity),
                db: None,
                failed: false,
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
        match &inner.db {
            Some((p, _)) if same_file(p, path) => Ok(()),
            Some((p, _)) => Err(Error::Config(format!(
                "this server key already keeps its replay store in {}, not {}",
                p.display(),
                path.display()
            ))),
            None => {
                let db = open(path, &mut inner.filter)?;
                // What this process saw before the file was attached goes in too.
                let held: Vec<_> = inner.filter.marks().collect();
                commit(&db, &held, &[]).map_err(|e| store_err(path, "writing", e))?;
                inner.db = Some((path.to_path_buf(), db));
                Ok(())
            }
        }
    }

    /// Whether `mark` was seen (a lookup in memory).
    pub(crate) fn check(&self, mark: &[u8; 16]) -> Seen {
        let inner = lock(&self.inner);
        if inner.failed {
            Seen::Unavailable
        } else if inner.filter.contains(mark) {
            Seen::Replay
        } else {
            Seen::Fresh
        }
    }

    /// Records `mark` of window `w` unless it was seen; with a file, durably
    /// before returning `Fresh`.
    pub(crate) fn insert(&self, mark: [u8; 16], w: u64, now_w: u64) -> Seen {
        let mut inner = lock(&self.inner);
        if inner.failed {
            return Seen::Unavailable;
        }
        if inner.filter.contains(&mark) {
            return Seen::Replay;
        }
        let dropped = inner.filter.insert(mark, w, now_w);
        if let Some((path, db)) = &inner.db {
            if let Err(e) = commit(db, &[(mark, w)], &dropped) {
                tracing::error!(
                    "link replay store {}: {e}; refusing every first message until restarted with a working file",
                    path.display()
                );
                inner.failed = true;
                return Seen::Unavailable;
            }
        }
        Seen::Fresh
    }

    /// Marks held.
    pub fn len(&self) -> usize {
        lock(&self.inner).filter.len()
    }

    /// Whether no mark is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
