//! Whose files and folders we trust: ours and root's, as ssh does, and under
//! sudo those of the user who ran it (`SUDO_UID`: they became root, so
//! trusting them adds nothing). A file another user owns may hold what they
//! chose (a planted CA) or hand them what we append; a folder they can write
//! lets them swap what we wrote.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::FileError;

const STICKY: u32 = 0o1000;

/// Whether `uid` is this process's effective user, root, or (as root) the
/// user who ran sudo.
pub(crate) fn trusted(uid: u32) -> bool {
    let euid = nix::unistd::geteuid().as_raw();
    uid == 0
        || uid == euid
        || (euid == 0 && crate::Owner::from_sudo_env().is_some_and(|o| o.uid == uid))
}

/// Refuses a file that another user owns.
pub(crate) fn check_file_owner(path: &Path, meta: &std::fs::Metadata) -> Result<(), FileError> {
    if trusted(meta.uid()) {
        Ok(())
    } else {
        Err(FileError::NotYours {
            path: path.to_path_buf(),
            owner: meta.uid(),
        })
    }
}

/// Refuses to write into `folder` when another user could change what we
/// write: the folder must be ours or root's and writable by nobody else
/// (unless sticky, as /tmp), every folder on the way must not be writable
/// by others (unless sticky), and every symlink on the way must be ours or
/// root's. Parts that do not exist yet are fine: we create them.
///
/// `writing_for`: the user a file is written for and handed to
/// ([`crate::NewFile::create_for`]), whose folders are trusted too.
pub(crate) fn check_folder(folder: &Path, writing_for: Option<u32>) -> Result<(), FileError> {
    let trusted = |uid: u32| trusted(uid) || writing_for == Some(uid);
    let absolute = if folder.is_absolute() {
        folder.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(FileError::io(folder))?
            .join(folder)
    };
    let mut walked = PathBuf::from("/");
    for component in absolute.components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
            Component::ParentDir => {
                walked.pop();
                continue;
            }
            Component::Normal(name) => walked.push(name),
        }
        let Ok(meta) = std::fs::symlink_metadata(&walked) else {
            return Ok(());
        };
        if meta.file_type().is_symlink() {
            if !trusted(meta.uid()) {
                return Err(unsafe_folder(
                    &walked,
                    format!(
                        "a symlink of uid {}, which could point anywhere",
                        meta.uid()
                    ),
                ));
            }
            walked = std::fs::canonicalize(&walked).map_err(FileError::io(&walked))?;
            let meta = std::fs::metadata(&walked).map_err(FileError::io(&walked))?;
            check_on_the_way(&walked, &meta)?;
        } else {
            check_on_the_way(&walked, &meta)?;
        }
    }
    let meta = std::fs::metadata(&walked).map_err(FileError::io(&walked))?;
    let mode = meta.permissions().mode();
    if !trusted(meta.uid()) {
        return Err(unsafe_folder(
            &walked,
            format!("belongs to uid {}, not to this user or root", meta.uid()),
        ));
    }
    if mode & 0o022 != 0 && mode & STICKY == 0 {
        return Err(unsafe_folder(
            &walked,
            format!(
                "others may write to it (mode {:03o}); run `chmod go-w`",
                mode & 0o777
            ),
        ));
    }
    Ok(())
}

fn check_on_the_way(path: &Path, meta: &std::fs::Metadata) -> Result<(), FileError> {
    let mode = meta.permissions().mode();
    if meta.is_dir() && mode & 0o002 != 0 && mode & STICKY == 0 {
        return Err(unsafe_folder(
            path,
            format!(
                "anyone may write to it (mode {:03o}) and it is not sticky; run `chmod go-w` or pick another folder",
                mode & 0o777
            ),
        ));
    }
    Ok(())
}

fn unsafe_folder(path: &Path, reason: String) -> FileError {
    FileError::UnsafeFolder {
        path: path.to_path_buf(),
        reason,
    }
}
