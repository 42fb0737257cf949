//! Where the chaos lab's files go, written safely although it runs as root.
//!
//! The lab needs root (namespaces, TUN devices), so a file it opened the
//! ordinary way could be a symlink some other user planted, and `sudo
//! cipherlink chaos run` would overwrite whatever it points to. Every file
//! is therefore written through `cipherlink-files`: an exclusive temporary
//! file, renamed into place, so a planted symlink is replaced, never
//! followed.
//!
//! The folder must belong to the user who ran the command (`SUDO_UID` under
//! sudo), or be one this process creates: in a folder of someone else's,
//! that someone could have left a file we would append to (the TLS key
//! log) or swap the folder while we write. The folder is opened once,
//! without following a symlink, and every file is named through that open
//! descriptor (`/proc/self/fd/N/NAME`), so replacing the folder after the
//! check changes nothing. What is written, and folders created, are handed
//! to the invoking user (`SUDO_UID`/`SUDO_GID`).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use cipherlink_files::{Access, Existing, FileError, NewFile, Owner};

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
    /// `cipherlink-files` refused the file.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> OutputError + '_ {
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
    owner: Option<Owner>,
}

impl OutDir {
    /// Opens `dir` for writing: created (with missing parents, handed to
    /// the invoker) if missing, else it must be a folder, not a symlink,
    /// belonging to `invoker`.
    pub fn open(dir: &Path, invoker: Invoker) -> Result<OutDir, OutputError> {
        OutDir::open_with(dir, invoker, false)
    }

    /// The folder of a single output file (`--pcap FILE`), and the file's
    /// name in it. The folder may also belong to root: no other user can
    /// plant anything in a root folder except a sticky one like /tmp, where
    /// the rename replaces whatever is there and follows nothing.
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
        Ok((OutDir::open_with(folder, invoker, true)?, name))
    }

    fn open_with(dir: &Path, invoker: Invoker, root_too: bool) -> Result<OutDir, OutputError> {
        // Without a trailing slash: `link/` would follow the symlink.
        let shown: PathBuf = dir.components().collect();
        let created = create_missing(&shown, invoker.owner)?;
        let folder = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&shown)
            .map_err(|source| match source.raw_os_error() {
                Some(libc::ELOOP) => OutputError::Symlink {
                    path: shown.clone(),
                },
                Some(libc::ENOTDIR) if is_symlink(&shown) => OutputError::Symlink {
                    path: shown.clone(),
                },
                Some(libc::ENOTDIR) => OutputError::NotFolder {
                    path: shown.clone(),
                },
                _ => OutputError::Io {
                    path: shown.clone(),
                    source,
                },
            })?;
        let found = folder.metadata().map_err(io_at(&shown))?.uid();
        let ours = nix::unistd::geteuid().as_raw();
        if created && found == ours {
            if let Some(o) = invoker.owner {
                std::os::unix::fs::fchown(&folder, Some(o.uid), Some(o.gid))
                    .map_err(io_at(&shown))?;
            }
        } else if found != invoker.uid && !(root_too && found == 0) {
            return Err(OutputError::NotYours {
                path: shown,
                found,
                expected: invoker.uid,
            });
        }
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
            owner: invoker.owner,
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

    /// `name` through the held folder, for code that opens the file itself
    /// (the TLS key log, opened without following symlinks by the core).
    pub fn pinned(&self, name: &str) -> Result<PathBuf, OutputError> {
        plain(name)?;
        Ok(self.pinned.join(name))
    }

    /// Starts writing `name` (replacing it, or a symlink there, at commit).
    pub fn create(&self, name: &str) -> Result<OutFile, OutputError> {
        let shown = self.shown(name);
        let pinned = self.pinned(name)?;
        let file = match self.owner {
            Some(owner) => NewFile::create_for(&pinned, Access::Public, Existing::Replace, owner),
            None => NewFile::create(&pinned, Access::Public, Existing::Replace),
        }
        .map_err(file_err(&shown))?;
        Ok(OutFile {
            file,
            shown,
            _folder: Arc::clone(&self.folder),
        })
    }

    /// Writes `name` whole; returns its path as the user would name it.
    pub fn write(&self, name: &str, contents: &[u8]) -> Result<PathBuf, OutputError> {
        let mut file = self.create(name)?;
        file.write_all(contents).map_err(io_at(&file.shown))?;
        file.commit()
    }

    /// Hands `name`, which other code wrote here, to the invoker; a symlink
    /// is left alone (its target never changes hands), a missing file is
    /// not an error.
    pub fn hand_over(&self, name: &str) -> Result<(), OutputError> {
        let (Some(owner), path) = (self.owner, self.pinned(name)?) else {
            return Ok(());
        };
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => {
                std::os::unix::fs::lchown(&path, Some(owner.uid), Some(owner.gid))
                    .map_err(io_at(&self.shown(name)))
            }
            _ => Ok(()),
        }
    }

    /// Reads back `name`, which this run wrote, up to `max` bytes (more is
    /// an error), never through a symlink.
    pub fn read(&self, name: &str, max: u64) -> Result<Vec<u8>, OutputError> {
        let shown = self.shown(name);
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.pinned(name)?)
            .map_err(io_at(&shown))?;
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut io::Read::take(&file, max + 1), &mut bytes)
            .map_err(io_at(&shown))?;
        if bytes.len() as u64 > max {
            return Err(OutputError::File {
                path: shown,
                reason: format!("longer than {max} bytes"),
            });
        }
        Ok(bytes)
    }
}

fn is_symlink(path: &Path) -> bool {
    path.symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
}

fn plain(name: &str) -> Result<(), OutputError> {
    let mut parts = Path::new(name).components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(_)), None) if !name.contains('/') => Ok(()),
        _ => Err(OutputError::BadName { name: name.into() }),
    }
}

/// Creates `dir` and its missing parents, outermost first, handing each to
/// `owner`; returns whether `dir` itself was made here. A folder someone
/// else makes meanwhile is left to the ownership check.
fn create_missing(dir: &Path, owner: Option<Owner>) -> Result<bool, OutputError> {
    let mut missing = Vec::new();
    let mut at = dir;
    loop {
        match at.symlink_metadata() {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(at);
                match at.parent() {
                    Some(p) if !p.as_os_str().is_empty() => at = p,
                    _ => break,
                }
            }
            Err(e) => return Err(io_at(at)(e)),
        }
    }
    let mut made_last = false;
    for folder in missing.iter().rev() {
        match DirBuilder::new().mode(0o755).create(folder) {
            Ok(()) => {
                made_last = folder == &dir;
                // The last one is handed over through its descriptor, once checked.
                if let (Some(o), false) = (owner, made_last) {
                    std::os::unix::fs::lchown(folder, Some(o.uid), Some(o.gid))
                        .map_err(io_at(folder))?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => made_last = false,
            Err(e) => return Err(io_at(folder)(e)),
        }
    }
    Ok(made_last)
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
