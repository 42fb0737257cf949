use std::fs::{DirBuilder, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::FileError;

/// Who may read a file once it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The owner only: mode 0600 (new parent folders 0700).
    Private,
    /// Everyone may read: mode 0644 (new parent folders 0755).
    Public,
}

impl Access {
    fn file_mode(self) -> u32 {
        match self {
            Access::Private => 0o600,
            Access::Public => 0o644,
        }
    }

    fn folder_mode(self) -> u32 {
        match self {
            Access::Private => 0o700,
            Access::Public => 0o755,
        }
    }
}

/// What to do when the target path already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Fail with [`FileError::Exists`], also when the file appears while
    /// this one is being written.
    Refuse,
    /// Replace it (a file, or a symlink, which is replaced and not followed).
    Replace,
}

/// A user and group to hand a file to, for a command run as root for a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl Owner {
    /// The user who ran `sudo`, from `SUDO_UID` and `SUDO_GID`; `None` when
    /// either is missing or not a number.
    pub fn from_sudo_env() -> Option<Owner> {
        let read = |name| std::env::var(name).ok()?.parse().ok();
        Some(Owner {
            uid: read("SUDO_UID")?,
            gid: read("SUDO_GID")?,
        })
    }
}

/// A file being written: it lives under a random temporary name in the
/// target's folder until [`NewFile::commit`] renames it into place. Dropped
/// without a commit, it is deleted and the target is untouched.
#[derive(Debug)]
pub struct NewFile {
    temp: tempfile::NamedTempFile,
    target: PathBuf,
    existing: Existing,
}

impl NewFile {
    /// Starts writing `path`. Missing parent folders are created; with
    /// [`Existing::Refuse`], an existing `path` fails here already (and
    /// again at commit if one appeared meanwhile).
    pub fn create(path: &Path, access: Access, existing: Existing) -> Result<NewFile, FileError> {
        NewFile::start(path, access, existing, None)
    }

    /// [`NewFile::create`], the file handed to `owner` (a command run as
    /// root for the user who ran sudo).
    pub fn create_for(
        path: &Path,
        access: Access,
        existing: Existing,
        owner: Owner,
    ) -> Result<NewFile, FileError> {
        let mut file = NewFile::start(path, access, existing, Some(owner.uid))?;
        file.set_owner(owner)?;
        Ok(file)
    }

    fn start(
        path: &Path,
        access: Access,
        existing: Existing,
        writing_for: Option<u32>,
    ) -> Result<NewFile, FileError> {
        if existing == Existing::Refuse && path.symlink_metadata().is_ok() {
            return Err(FileError::Exists {
                path: path.to_path_buf(),
            });
        }
        let folder = folder_of(path);
        crate::trust::check_folder(folder, writing_for)?;
        create_folders(folder, access)?;
        let temp = tempfile::Builder::new()
            .prefix(".cipherlink-")
            .suffix(".tmp")
            .permissions(Permissions::from_mode(access.file_mode()))
            .tempfile_in(folder)
            .map_err(FileError::io(folder))?;
        // The creation mode went through the umask; a public file is 0644
        // whatever the umask says.
        temp.as_file()
            .set_permissions(Permissions::from_mode(access.file_mode()))
            .map_err(FileError::io(temp.path()))?;
        Ok(NewFile {
            temp,
            target: path.to_path_buf(),
            existing,
        })
    }

    /// Hands the file to `owner` (a command run as root writing for a user).
    pub fn set_owner(&mut self, owner: Owner) -> Result<(), FileError> {
        std::os::unix::fs::fchown(self.temp.as_file(), Some(owner.uid), Some(owner.gid))
            .map_err(FileError::io(&self.target))
    }

    /// Flushes the contents to disk, renames the file into place and syncs
    /// the folder, so the rename survives a crash.
    pub fn commit(self) -> Result<(), FileError> {
        let NewFile {
            temp,
            target,
            existing,
        } = self;
        temp.as_file().sync_all().map_err(FileError::io(&target))?;
        let persisted = match existing {
            Existing::Replace => temp.persist(&target),
            Existing::Refuse => temp.persist_noclobber(&target),
        };
        if let Err(failure) = persisted {
            return Err(match failure.error.kind() {
                io::ErrorKind::AlreadyExists if existing == Existing::Refuse => {
                    FileError::Exists { path: target }
                }
                _ => FileError::Io {
                    path: target,
                    source: failure.error,
                },
            });
        }
        let folder = folder_of(&target);
        File::open(folder)
            .and_then(|f| f.sync_all())
            .map_err(FileError::io(folder))
    }
}

impl Write for NewFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.temp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.temp.flush()
    }
}

/// Writes `contents` to `path` whole: see the crate's rules.
pub fn write(
    path: &Path,
    contents: &[u8],
    access: Access,
    existing: Existing,
) -> Result<(), FileError> {
    let mut file = NewFile::create(path, access, existing)?;
    file.write_all(contents).map_err(FileError::io(path))?;
    file.commit()
}

/// The folder a relative bare file name lives in is the current one.
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

pub(crate) fn create_folders(folder: &Path, access: Access) -> Result<(), FileError> {
    if folder.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(access.folder_mode())
        .create(folder)
        .map_err(FileError::io(folder))
}
