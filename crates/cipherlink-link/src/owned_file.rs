//! Files the link server and its commands open in place (the replay
//! database, a token store's lock): never through a symlink, only a
//! regular file, only one that belongs to the user running us. The
//! commands may run as root in a folder others can write to; a planted
//! symlink or FIFO must not make root write elsewhere or hang.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::libc;

/// Opens (creating it 0600 if missing) `path` for reading and writing:
/// `O_NOFOLLOW` (a symlink is an error, even a dangling one), `O_NONBLOCK`
/// while opening (a FIFO fails instead of waiting for a reader), then
/// checks that it is a regular file owned by our effective user and takes
/// group and other permissions away (the file is ours; 0600 is how every
/// link file is kept). The error says why, for the caller to name the file.
pub(crate) fn open_owned(path: &Path) -> Result<File, String> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "is a symlink; refusing to follow it".to_string(),
            Some(libc::ENXIO) | Some(libc::EISDIR) => "is not a regular file".to_string(),
            _ => e.to_string(),
        })?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(format!(
            "belongs to user id {}, not to us ({me}); remove it or run as its owner",
            meta.uid()
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("making it 0600: {e}"))?;
    }
    // Back to blocking I/O: the descriptor is a regular file now.
    nix::fcntl::fcntl(
        &file,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    )
    .map_err(|e| e.to_string())?;
    Ok(file)
}
