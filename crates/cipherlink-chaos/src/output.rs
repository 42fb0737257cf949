//! Where the chaos lab's files go, written safely although it runs as root.
//!
//! The lab needs root (namespaces, TUN devices), so a file it opened the
//! ordinary way could be a symlink some other user planted, and `sudo
//! cipherlink chaos run` would overwrite whatever it points to. Every file
//! is therefore written through `cipherlink-files`: an exclusive temporary
//! file, renamed into place, so a planted symlink is replaced, never
//! followed. Under sudo a name that exists is replaced only if it is the
//! invoker's: root must not be a way to replace files they could not.
//!
//! The folder is reached without trusting a path (`output_walk`: `openat`
//! from `/`, one folder at a time, nothing chowned but through the
//! descriptor of a folder this process made). It must belong to the user
//! who ran the command (`SUDO_UID` under sudo), or be one this process
//! creates in a folder of theirs (or a sticky one); a single file's folder
//! may also be a sticky one of root's, such as /tmp. The folder is held
//! open and every file is named through that descriptor
//! (`/proc/self/fd/N/NAME`), so replacing the folder after the check
//! changes nothing. What is written, and folders created, are handed to
//! the invoking user (`SUDO_UID`/`SUDO_GID`).
//!
//! A file that other code opens by path (the TLS key log, which the core
//! appends to) lives in a private folder of its own until the run ends
//! ([`PrivateFile`]), where nobody else can plant or link anything.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use cipherlink_files::{Access, Existing, FileError, NewFile, Owner};
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode};

pub use crate::output_private::PrivateFile;
use crate::output_walk::{self, Event, Rules};

/// Who ran the command: whose folders are accepted, and who gets the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invoker {
    /// The user an output folder must belong to.
    pub uid: u32,
    /// Who new files and folders are handed to; `None`: they stay with the
    /// user this process runs as.
    pub owner: Option<Owner>,
}

impl Invoker {
    /// The user who ran `sudo` (`SUDO_UID`, `SUDO_GID`) when this process
    /// runs as root; else the user it runs as. (Not root: files cannot be
    /// handed to anyone, and they are the running user's already.)
    pub fn from_env() -> Invoker {
        match Owner::from_sudo_env() {
            Some(owner) if nix::unistd::geteuid().is_root() => Invoker {
                uid: owner.uid,
                owner: Some(owner),
            },
            _ => Invoker::current_user(),
        }
    }

    /// The user this process runs as, keeping what it writes.
    pub fn current_user() -> Invoker {
        Invoker {
            uid: nix::unistd::geteuid().as_raw(),
            owner: None,
        }
    }
}

/// Why an output folder or file was refused or could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// The folder is a symlink.
    #[error("{}: is a symlink; name the folder itself", path.display())]
    Symlink {
        /// The folder as given.
        path: PathBuf,
    },
    /// Not a folder.
    #[error("{}: is not a folder", path.display())]
    NotFolder {
        /// The path as given.
        path: PathBuf,
    },
    /// The folder belongs to someone else.
    #[error(
        "{} belongs to uid {found}, not to uid {expected} who ran this command; \
         name a folder of your own, or a new one (it is created)",
        path.display()
    )]
    NotYours {
        /// The folder.
        path: PathBuf,
        /// Its owner.
        found: u32,
        /// The invoking user.
        expected: u32,
    },
    /// A file name that is not a plain name in the folder.
    #[error("`{name}` is not a plain file name")]
    BadName {
        /// The name.
        name: String,
    },
    /// The system refused.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A folder on the way that someone else could change.
    #[error("{}: {reason}", path.display())]
    Unsafe {
        /// The folder, or the symlink on the way to it.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A missing folder that would be made in a folder of someone else's.
    #[error(
        "{} is not created: the folder it would be in belongs to uid {found}, not to uid \
         {expected} who ran this command, and is not sticky",
        path.display()
    )]
    CannotCreate {
        /// The folder that would be made.
        path: PathBuf,
        /// The owner of the folder it would be made in.
        found: u32,
        /// The invoking user.
        expected: u32,
    },
    /// A file that exists and belongs to someone other than the invoker.
    #[error(
        "{} exists and belongs to uid {found}, not to uid {expected} who ran this command; \
         refusing to replace it",
        path.display()
    )]
    Taken {
        /// The file.
        path: PathBuf,
        /// Its owner.
        found: u32,
        /// The invoking user.
        expected: u32,
    },
    /// `cipherlink-files` refused the file.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

pub(crate) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `cipherlink-files`' error, naming the file as the user gave it rather
/// than through `/proc/self/fd`.
fn file_err(shown: &Path) -> impl FnOnce(FileError) -> OutputError + '_ {
    move |e| match e {
        FileError::Io { source, .. } => OutputError::Io {
            path: shown.to_path_buf(),
            source,
        },
        FileError::Exists { .. } => OutputError::File {
            path: shown.to_path_buf(),
            reason: "appeared while it was written; not replaced".into(),
        },
        other => OutputError::File {
            path: shown.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

/// An output folder, checked and held open. See the module docs.
#[derive(Debug)]
pub struct OutDir {
    shown: PathBuf,
    /// `/proc/self/fd/N` of `folder`, or `shown` where /proc is missing.
    pinned: PathBuf,
    /// Shared with every [`OutFile`]: the paths through it name this very
    /// descriptor, which must stay open until the last file is committed.
    folder: Arc<File>,
    invoker: Invoker,
}

impl OutDir {
    /// Opens `dir` for writing: created (with missing parents, handed to
    /// the invoker) if missing, else it must be a folder, not a symlink,
    /// belonging to `invoker`.
    pub fn open(dir: &Path, invoker: Invoker) -> Result<OutDir, OutputError> {
        OutDir::open_hooked(dir, invoker, false, &mut |_, _| {})
    }

    /// The folder of a single output file (`--pcap FILE`), and the file's
    /// name in it. The folder may also be a sticky one of root's, like
    /// /tmp: others may plant names there, which are then refused, never
    /// replaced or followed.
    pub fn for_file(path: &Path, invoker: Invoker) -> Result<(OutDir, String), OutputError> {
        let name = match path.components().next_back() {
            Some(Component::Normal(name)) => name.to_string_lossy().into_owned(),
            _ => {
                return Err(OutputError::BadName {
                    name: path.display().to_string(),
                })
            }
        };
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        Ok((
            OutDir::open_hooked(folder, invoker, true, &mut |_, _| {})?,
            name,
        ))
    }

    /// [`OutDir::open`] with `hook` called at each step of the walk, so
    /// that tests can act between the steps.
    pub(crate) fn open_hooked(
        dir: &Path,
        invoker: Invoker,
        sticky_root_last: bool,
        hook: &mut dyn FnMut(&Path, Event),
    ) -> Result<OutDir, OutputError> {
        // Without a trailing slash: `link/` would follow the symlink.
        let shown: PathBuf = dir.components().collect();
        let rules = Rules {
            uid: invoker.uid,
            owner: invoker.owner,
            sticky_root_last,
        };
        let folder = output_walk::walk(&shown, rules, hook)?;
        let proc_path = PathBuf::from(format!("/proc/self/fd/{}", folder.as_raw_fd()));
        let pinned = if proc_path.is_dir() {
            proc_path
        } else {
            shown.clone()
        };
        Ok(OutDir {
            shown,
            pinned,
            folder: Arc::new(folder),
            invoker,
        })
    }

    /// The folder as the user named it.
    pub fn path(&self) -> &Path {
        &self.shown
    }

    /// `name` in the folder, as the user would name it (for messages).
    pub fn shown(&self, name: &str) -> PathBuf {
        self.shown.join(name)
    }

    /// Starts writing `name`, which appears at commit. A name that exists
    /// is replaced (a symlink too, never followed) if it is the invoker's,
    /// else refused; one that appears meanwhile is not replaced.
    pub fn create(&self, name: &str) -> Result<OutFile, OutputError> {
        plain(name)?;
        let shown = self.shown(name);
        let existing = self.existing(name, &shown)?;
        let pinned = self.pinned.join(name);
        let file = match self.invoker.owner {
            Some(owner) => NewFile::create_for(&pinned, Access::Public, existing, owner),
            None => NewFile::create(&pinned, Access::Public, existing),
        }
        .map_err(file_err(&shown))?;
        Ok(OutFile {
            file,
            shown,
            _folder: Arc::clone(&self.folder),
        })
    }

    /// What to do with what is at `name` now: nothing there, so nothing
    /// may be replaced; the invoker's, replaced; anyone else's, refused.
    fn existing(&self, name: &str, shown: &Path) -> Result<Existing, OutputError> {
        match fstatat(&*self.folder, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => Ok(Existing::Refuse),
            Err(e) => Err(io_at(shown)(e.into())),
            Ok(st) if st.st_uid == self.invoker.uid => Ok(Existing::Replace),
            Ok(st) => Err(OutputError::Taken {
                path: shown.to_path_buf(),
                found: st.st_uid,
                expected: self.invoker.uid,
            }),
        }
    }

    /// Writes `name` whole; returns its path as the user would name it.
    pub fn write(&self, name: &str, contents: &[u8]) -> Result<PathBuf, OutputError> {
        let mut file = self.create(name)?;
        file.write_all(contents).map_err(io_at(&file.shown))?;
        file.commit()
    }

    /// A private folder in this one for `name`, which other code opens by
    /// path (the TLS key log); see [`PrivateFile`].
    pub fn private(&self, name: &str) -> Result<PrivateFile, OutputError> {
        plain(name)?;
        PrivateFile::create(Arc::clone(&self.folder), &self.shown, name, self.invoker)
    }

    /// Reads back `name`, which this run wrote, up to `max` bytes (more is
    /// an error): never through a symlink, and only a regular file (a FIFO
    /// there is refused, not waited on).
    pub fn read(&self, name: &str, max: u64) -> Result<Vec<u8>, OutputError> {
        plain(name)?;
        read_regular(&self.folder, name, &self.shown(name), max)
    }
}

/// Reads regular file `name` of `folder`, at most `max` bytes; `shown`
/// names it in errors.
pub(crate) fn read_regular(
    folder: &File,
    name: &str,
    shown: &Path,
    max: u64,
) -> Result<Vec<u8>, OutputError> {
    // O_NONBLOCK: a FIFO opens at once (and is refused below) instead of
    // waiting for a writer.
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let file = File::from(
        openat(folder, name, flags, Mode::empty()).map_err(|e| match e {
            Errno::ELOOP => OutputError::Symlink {
                path: shown.to_path_buf(),
            },
            e => io_at(shown)(e.into()),
        })?,
    );
    if !file.metadata().map_err(io_at(shown))?.is_file() {
        return Err(OutputError::File {
            path: shown.to_path_buf(),
            reason: "not a regular file".into(),
        });
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(io_at(shown))?;
    if bytes.len() as u64 > max {
        return Err(OutputError::File {
            path: shown.to_path_buf(),
            reason: format!("longer than {max} bytes"),
        });
    }
    Ok(bytes)
}

pub(crate) fn plain(name: &str) -> Result<(), OutputError> {
    let mut parts = Path::new(name).components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(_)), None) if !name.contains('/') => Ok(()),
        _ => Err(OutputError::BadName { name: name.into() }),
    }
}

/// A file being written into an [`OutDir`]; it appears under its name only
/// at [`OutFile::commit`], and dropped without a commit it is deleted.
#[derive(Debug)]
pub struct OutFile {
    file: NewFile,
    shown: PathBuf,
    /// Dropped after `file`, whose temporary path goes through it.
    _folder: Arc<File>,
}

impl OutFile {
    /// The file's path as the user would name it.
    pub fn path(&self) -> &Path {
        &self.shown
    }

    /// Flushes it to disk and renames it into place; returns its path.
    pub fn commit(self) -> Result<PathBuf, OutputError> {
        let OutFile { file, shown, .. } = self;
        file.commit().map_err(file_err(&shown))?;
        Ok(shown)
    }
}

impl Write for OutFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
#[path = "output_tests.rs"]
mod tests;
