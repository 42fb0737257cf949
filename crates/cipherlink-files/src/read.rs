use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use crate::FileError;

/// Opens `path` for reading without blocking on a FIFO, and checks it is a
/// regular file that we, root, or (under sudo) the invoking user own.
fn open_trusted(path: &Path) -> Result<(std::fs::File, std::fs::Metadata), FileError> {
    // O_NONBLOCK: a FIFO planted at the path fails the check below instead
    // of hanging the open.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(FileError::io(path))?;
    let meta = file.metadata().map_err(FileError::io(path))?;
    if !meta.is_file() {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    crate::trust::check_file_owner(path, &meta)?;
    Ok((file, meta))
}

/// Reads a file that decides what we trust though it is not secret (a CA
/// certificate): bounded, and refused when another user owns it.
pub fn read_trusted_text(path: &Path, max: u64) -> Result<String, FileError> {
    let (file, meta) = open_trusted(path)?;
    if meta.len() > max {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(FileError::io(path))?;
    if bytes.len() as u64 > max {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    String::from_utf8(bytes).map_err(|_| FileError::NotText {
        path: path.to_path_buf(),
    })
}

/// Reads a secret file of at most `max` bytes into memory that is wiped
/// when dropped. Refuses a file that group or others may read or write, as
/// ssh does: such a key may already be in someone else's hands, and saying
/// so is better than using it.
pub fn read_secret(path: &Path, max: u64) -> Result<Zeroizing<Vec<u8>>, FileError> {
    let (file, meta) = open_trusted(path)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(FileError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    let too_large = || FileError::TooLarge {
        path: path.to_path_buf(),
        max,
    };
    if meta.len() > max {
        return Err(too_large());
    }
    // Room for the whole file up front: a growing Vec would leave copies of
    // the secret behind in freed memory.
    let capacity = usize::try_from(meta.len()).map_err(|_| too_large())? + 1;
    let mut contents = Zeroizing::new(Vec::with_capacity(capacity));
    file.take(max + 1)
        .read_to_end(&mut contents)
        .map_err(FileError::io(path))?;
    if contents.len() as u64 > max {
        return Err(too_large());
    }
    Ok(contents)
}

/// [`read_secret`] for a text file.
pub fn read_secret_text(path: &Path, max: u64) -> Result<Zeroizing<String>, FileError> {
    let mut bytes = read_secret(path, max)?;
    match String::from_utf8(std::mem::take(&mut *bytes)) {
        Ok(text) => Ok(Zeroizing::new(text)),
        Err(not_text) => {
            drop(Zeroizing::new(not_text.into_bytes()));
            Err(FileError::NotText {
                path: path.to_path_buf(),
            })
        }
    }
}
