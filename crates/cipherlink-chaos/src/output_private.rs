//! A file that other code opens by path while we run as root (the TLS key
//! log: the core appends each session's secrets to `dangerous.key_log_file`)
//! kept in a folder of its own that only root can enter, made fresh in the
//! output folder. Nobody else can plant a file, a hard link or a FIFO
//! there, or swap it: the path handed out goes through that folder's
//! descriptor (`/proc/self/fd/N/NAME`). At the end of the run
//! ([`PrivateFile::publish`], or when dropped) the file is handed to the
//! invoker through its own descriptor and renamed next to the other
//! output, and the folder removed. In the output folder, which the invoker
//! owns, a name could be anything by then (a hard link to someone's file):
//! nothing there is ever chowned or appended to by name.

use std::ffi::OsString;
use std::fs::{File, Permissions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, renameat2, AtFlags, OFlag, RenameFlags};
use nix::sys::stat::{fstatat, mkdirat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::output::{io_at, read_regular, Invoker, OutputError};
use crate::output_walk::is_fresh;

/// Names tried for the private folder before giving up.
const ATTEMPTS: usize = 16;

/// A file in a private folder until the run ends. See the module docs.
#[derive(Debug)]
pub struct PrivateFile {
    /// The output folder.
    out: Arc<File>,
    out_shown: PathBuf,
    /// The private folder, and its name in the output folder.
    dir: File,
    dir_name: OsString,
    name: String,
    invoker: Invoker,
    /// Set once the file was handed over (or found missing).
    done: Mutex<bool>,
}

impl PrivateFile {
    pub(crate) fn create(
        out: Arc<File>,
        out_shown: &Path,
        name: &str,
        invoker: Invoker,
    ) -> Result<PrivateFile, OutputError> {
        for _ in 0..ATTEMPTS {
            let dir_name = OsString::from(format!(".cipherlink-{:016x}", rand::random::<u64>()));
            let shown = out_shown.join(&dir_name);
            match mkdirat(&*out, dir_name.as_os_str(), Mode::from_bits_truncate(0o700)) {
                Ok(()) => {}
                // Taken (by a file of the invoker's, say): another name.
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(io_at(&shown)(e.into())),
            }
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let dir = File::from(
                openat(&*out, dir_name.as_os_str(), flags, Mode::empty())
                    .map_err(|e| io_at(&shown)(e.into()))?,
            );
            // The invoker may swap names in their folder: only the folder
            // made here (root's, private, empty) will do.
            if !is_fresh(&dir).map_err(io_at(&shown))? {
                return Err(OutputError::Unsafe {
                    path: shown,
                    reason: "replaced while it was being made".into(),
                });
            }
            if !Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).is_dir() {
                let _ = unlinkat(&*out, dir_name.as_os_str(), UnlinkatFlags::RemoveDir);
                return Err(OutputError::File {
                    path: out_shown.join(name),
                    reason: "needs /proc to name a file through a held folder".into(),
                });
            }
            return Ok(PrivateFile {
                out,
                out_shown: out_shown.to_path_buf(),
                dir,
                dir_name,
                name: name.to_string(),
                invoker,
                done: Mutex::new(false),
            });
        }
        Err(OutputError::File {
            path: out_shown.join(name),
            reason: format!("no free name for a private folder in {ATTEMPTS} attempts"),
        })
    }

    /// The path for the code that opens the file (through the held private
    /// folder, so no one can redirect it).
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.dir.as_raw_fd())).join(&self.name)
    }

    /// Where the file ends up, as the user would name it.
    pub fn shown(&self) -> PathBuf {
        self.out_shown.join(&self.name)
    }

    /// Reads what has been written so far, at most `max` bytes (more is an
    /// error).
    pub fn read(&self, max: u64) -> Result<Vec<u8>, OutputError> {
        read_regular(&self.dir, &self.name, &self.shown(), max)
    }

    /// Hands the file to the invoker and renames it into the output folder
    /// (replacing only a file of the invoker's there), then removes the
    /// private folder. Returns where the file is, `None` if it was never
    /// written. Once done, later calls do nothing.
    pub fn publish(&self) -> Result<Option<PathBuf>, OutputError> {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        if *done {
            return Ok(None);
        }
        let shown = self.shown();
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let file = match openat(&self.dir, self.name.as_str(), flags, Mode::empty()) {
            Ok(fd) => File::from(fd),
            Err(Errno::ENOENT) => {
                *done = true;
                self.remove_dir();
                return Ok(None);
            }
            Err(e) => return Err(io_at(&shown)(e.into())),
        };
        let meta = file.metadata().map_err(io_at(&shown))?;
        if !meta.is_file() || std::os::unix::fs::MetadataExt::nlink(&meta) != 1 {
            return Err(OutputError::File {
                path: shown,
                reason: "not a regular file with one name".into(),
            });
        }
        // Private whatever made it (the core makes it 0600 already).
        file.set_permissions(Permissions::from_mode(0o600))
            .map_err(io_at(&shown))?;
        if let Some(o) = self.invoker.owner {
            std::os::unix::fs::fchown(&file, Some(o.uid), Some(o.gid)).map_err(io_at(&shown))?;
        }
        if let Err(e) = self.place(&shown) {
            // Left where it is, but the invoker's now: folder and file.
            *done = true;
            let kept = self.out_shown.join(&self.dir_name).join(&self.name);
            if let Some(o) = self.invoker.owner {
                std::os::unix::fs::fchown(&self.dir, Some(o.uid), Some(o.gid))
                    .map_err(io_at(&kept))?;
            }
            return Err(OutputError::File {
                path: shown,
                reason: format!("{e}; the file stays at {}", kept.display()),
            });
        }
        *done = true;
        self.remove_dir();
        Ok(Some(shown))
    }

    /// Renames the file into the output folder, over a file of the
    /// invoker's only.
    fn place(&self, shown: &Path) -> Result<(), OutputError> {
        let name = self.name.as_str();
        let renamed = match fstatat(&*self.out, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => renameat2(
                &self.dir,
                name,
                &*self.out,
                name,
                RenameFlags::RENAME_NOREPLACE,
            ),
            Err(e) => Err(e),
            Ok(st) if st.st_uid == self.invoker.uid => renameat(&self.dir, name, &*self.out, name),
            Ok(st) => {
                return Err(OutputError::Taken {
                    path: shown.to_path_buf(),
                    found: st.st_uid,
                    expected: self.invoker.uid,
                })
            }
        };
        renamed.map_err(|e| io_at(shown)(io::Error::from(e)))
    }

    /// Removes the private folder once empty (by name: only an empty folder
    /// can be removed, so whatever is at the name by then loses nothing).
    fn remove_dir(&self) {
        if let Err(e) = unlinkat(
            &*self.out,
            self.dir_name.as_os_str(),
            UnlinkatFlags::RemoveDir,
        ) {
            tracing::warn!(
                "removing {}: {e}",
                self.out_shown.join(&self.dir_name).display()
            );
        }
    }
}

impl Drop for PrivateFile {
    /// A run that ends early (an error, a signal) still hands the file over.
    fn drop(&mut self) {
        if let Err(e) = self.publish() {
            tracing::warn!(
                "{e}; it stays in {}",
                self.out_shown.join(&self.dir_name).display()
            );
        }
    }
}
