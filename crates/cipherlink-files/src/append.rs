use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::write::create_folders;
use crate::{Access, FileError};

/// Opens `path` for appending secrets (a TLS key log): created 0600, never
/// through a symlink (`O_NOFOLLOW`), never a FIFO or device, and an existing
/// file that group or others may read is refused rather than filled.
pub fn open_private_append(path: &Path) -> Result<File, FileError> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    crate::trust::check_folder(folder, None)?;
    create_folders(folder, Access::Private)?;
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        // O_NONBLOCK: opening a FIFO with no reader fails instead of hanging.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ELOOP) => FileError::Symlink {
                path: path.to_path_buf(),
            },
            Some(libc::ENXIO) => FileError::NotRegular {
                path: path.to_path_buf(),
            },
            _ => FileError::Io {
                path: path.to_path_buf(),
                source,
            },
        })?;
    let meta = file.metadata().map_err(FileError::io(path))?;
    if !meta.is_file() {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    crate::trust::check_file_owner(path, &meta)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(FileError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(file)
}
