use std::path::PathBuf;

/// Why a file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The target exists and the caller asked not to replace it.
    #[error("{} already exists", path.display())]
    Exists {
        /// The file that exists.
        path: PathBuf,
    },
    /// A secret file that group or others may read.
    #[error(
        "{} holds a secret but is readable by others (mode {mode:03o}); run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A secret owned by another user (not us, not root): whoever owns it
    /// chose its contents (a planted CA) or reads what we append.
    #[error(
        "{} belongs to uid {owner}, not to this user or root; refusing to trust it",
        path.display()
    )]
    NotYours {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
    },
    /// A folder another user could change under us.
    #[error("{}: {reason}", path.display())]
    UnsafeFolder {
        /// The folder (or the symlink on the way to it).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A symlink where a file is opened in place; it is not followed.
    #[error("{} is a symlink; refusing to follow it", path.display())]
    Symlink {
        /// The path.
        path: PathBuf,
    },
    /// A directory, device, FIFO or socket where a file was expected.
    #[error("{} is not a regular file", path.display())]
    NotRegular {
        /// The path.
        path: PathBuf,
    },
    /// A file longer than the caller's bound.
    #[error("{} is larger than {max} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The bound.
        max: u64,
    },
    /// A text file that is not UTF-8.
    #[error("{} is not UTF-8 text", path.display())]
    NotText {
        /// The file.
        path: PathBuf,
    },
    /// The operating system refused.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path being written or read.
        path: PathBuf,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
}

impl FileError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
        move |source| FileError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
