//! Opening an output folder as root without trusting a path: the path is
//! walked from `/` one folder at a time, each opened through the descriptor
//! of the one before (`openat`, `O_NOFOLLOW | O_DIRECTORY`), so swapping a
//! parent for a symlink while we walk redirects nothing. A missing folder
//! is made in the held parent (`mkdirat`), opened there, and handed to the
//! invoker through its own descriptor (`fchown`), only when that
//! descriptor shows the folder this process just made (ours, private,
//! empty): whatever else a swap puts at the name is checked as an existing
//! folder, never chowned.
//!
//! What is accepted on the way (see docs/chaos.md): folders of root or the
//! invoker that no one else may write to (sticky ones, like /tmp, aside), so
//! no other user can rename the output away afterwards; symlinks of root or
//! the invoker (read once with `readlinkat`, the target walked the same
//! way), never a symlink as the last part. New folders are made only in a
//! folder of the invoker's or a sticky one.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::{File, Permissions};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, mkdirat, Mode, SFlag};

use crate::output::OutputError;
use cipherlink_files::Owner;

const STICKY: u32 = 0o1000;
/// As the kernel's limit on symlinks in one lookup.
const MAX_SYMLINKS: usize = 40;

/// Whose folders the walk accepts, and who gets the folders it makes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    /// The invoking user.
    pub uid: u32,
    /// Who folders made here are handed to (`None`: they stay ours).
    pub owner: Option<Owner>,
    /// The last folder may also be root's if sticky (a single file's
    /// folder, such as /tmp), not only the invoker's.
    pub sticky_root_last: bool,
}

/// What happened at a point of the walk, for tests that act in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// A missing folder was just made (by `mkdirat`), not opened yet.
    Made,
    /// A folder was opened (and, if made here, handed over).
    Opened,
}

fn io(path: &Path, e: impl Into<std::io::Error>) -> OutputError {
    OutputError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

fn unsafe_folder(path: &Path, reason: String) -> OutputError {
    OutputError::Unsafe {
        path: path.to_path_buf(),
        reason,
    }
}

/// The names to walk from `/`: the current folder's for a relative path.
fn parts(path: &Path) -> Result<VecDeque<OsString>, OutputError> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_err(|e| io(path, e))?.join(path)
    };
    Ok(absolute
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect())
}

/// Walks to `path` (see the module docs); `hook` sees each step (tests).
pub(crate) fn walk(
    path: &Path,
    rules: Rules,
    hook: &mut dyn FnMut(&Path, Event),
) -> Result<File, OutputError> {
    let shown: PathBuf = path.components().collect();
    let mut todo = parts(path)?;
    let root = File::open("/").map_err(|e| io(Path::new("/"), e))?;
    check_existing(&root, Path::new("/"), rules, false)?;
    // The folders held so far, outermost first, with whether we made each.
    let mut held: Vec<(File, bool, PathBuf)> = vec![(root, false, PathBuf::from("/"))];
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            if held.len() > 1 {
                held.pop();
            }
            continue;
        }
        let last = todo.is_empty();
        let Some((parent, _, parent_path)) = held.last() else {
            break;
        };
        let at = parent_path.join(&name);
        match open_child(parent, &name, &at, rules, last, hook)? {
            Child::Folder(file, made) => held.push((file, made, at)),
            Child::Symlink(_) if last => return Err(OutputError::Symlink { path: shown }),
            Child::Symlink(target) => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io(&at, Errno::ELOOP));
                }
                let target = Path::new(&target);
                if target.is_absolute() {
                    held.truncate(1);
                }
                for part in parts_of(target).into_iter().rev() {
                    todo.push_front(part);
                }
            }
        }
    }
    // The walk always holds `/` at least. A folder reached back through
    // `..` was checked on the way; it is checked as the last one now.
    let Some((folder, created, at)) = held.pop() else {
        return Err(io(&shown, Errno::ENOENT));
    };
    if !created {
        check_existing(&folder, &at, rules, true)?;
    }
    Ok(folder)
}

/// A symlink's target as names to walk (relative to the symlink's folder).
fn parts_of(target: &Path) -> Vec<OsString> {
    target
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

enum Child {
    Folder(File, bool),
    Symlink(OsString),
}

fn open_dir(parent: &File, name: &OsStr) -> Result<File, Errno> {
    openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(File::from)
}

/// Opens (or makes) folder `name` in `parent`; `at` is its path for messages.
fn open_child(
    parent: &File,
    name: &OsStr,
    at: &Path,
    rules: Rules,
    last: bool,
    hook: &mut dyn FnMut(&Path, Event),
) -> Result<Child, OutputError> {
    match open_dir(parent, name) {
        Ok(folder) => {
            check_existing(&folder, at, rules, last)?;
            hook(at, Event::Opened);
            return Ok(Child::Folder(folder, false));
        }
        Err(Errno::ELOOP | Errno::ENOTDIR) => return not_a_folder(parent, name, at, rules),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(io(at, e)),
    }
    may_create_in(parent, at, rules)?;
    match mkdirat(parent, name, Mode::from_bits_truncate(0o700)) {
        Ok(()) => {}
        // Made by someone else meanwhile: checked as any existing folder.
        Err(Errno::EEXIST) => {
            let folder = open_dir(parent, name).map_err(|e| io(at, e))?;
            check_existing(&folder, at, rules, last)?;
            return Ok(Child::Folder(folder, false));
        }
        Err(e) => return Err(io(at, e)),
    }
    hook(at, Event::Made);
    // A symlink swapped in is refused here (`O_NOFOLLOW`), not followed.
    let folder = open_dir(parent, name).map_err(|e| match e {
        Errno::ELOOP | Errno::ENOTDIR => match not_a_folder(parent, name, at, rules) {
            Ok(Child::Symlink(_)) => OutputError::Symlink {
                path: at.to_path_buf(),
            },
            Ok(Child::Folder(..)) => io(at, e),
            Err(e) => e,
        },
        e => io(at, e),
    })?;
    if !is_fresh(&folder).map_err(|e| io(at, e))? {
        // Not the folder we made: someone put another one at the name.
        check_existing(&folder, at, rules, last)?;
        return Ok(Child::Folder(folder, false));
    }
    if let Some(o) = rules.owner {
        std::os::unix::fs::fchown(&folder, Some(o.uid), Some(o.gid)).map_err(|e| io(at, e))?;
    }
    folder
        .set_permissions(Permissions::from_mode(0o755))
        .map_err(|e| io(at, e))?;
    hook(at, Event::Opened);
    Ok(Child::Folder(folder, true))
}

/// `name` in `parent` could not be opened as a folder: a symlink (whose
/// target is returned if root or the invoker owns it), or not a folder.
fn not_a_folder(
    parent: &File,
    name: &OsStr,
    at: &Path,
    rules: Rules,
) -> Result<Child, OutputError> {
    let st = fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| io(at, e))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFLNK {
        return Err(OutputError::NotFolder {
            path: at.to_path_buf(),
        });
    }
    if st.st_uid != 0 && st.st_uid != rules.uid {
        return Err(unsafe_folder(
            at,
            format!(
                "a symlink of uid {}, who could point it anywhere",
                st.st_uid
            ),
        ));
    }
    Ok(Child::Symlink(
        readlinkat(parent, name).map_err(|e| io(at, e))?,
    ))
}

/// Whether `folder` is one this process just made: ours, with no access
/// for group or others (as `mkdirat` made it), and empty. Nobody else can
/// make such a folder, nor add to it.
pub(crate) fn is_fresh(folder: &File) -> std::io::Result<bool> {
    let meta = folder.metadata()?;
    if meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o7077 != 0 {
        return Ok(false);
    }
    let mut dir = nix::dir::Dir::openat(
        folder,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for entry in dir.iter() {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

/// New folders go only into a folder of the invoker's, or a sticky one
/// (where no one else can rename them away).
fn may_create_in(parent: &File, at: &Path, rules: Rules) -> Result<(), OutputError> {
    let meta = parent.metadata().map_err(|e| io(at, e))?;
    if meta.uid() == rules.uid || meta.mode() & STICKY != 0 {
        return Ok(());
    }
    Err(OutputError::CannotCreate {
        path: at.to_path_buf(),
        found: meta.uid(),
        expected: rules.uid,
    })
}

/// An existing folder on the way (or the last one) that we did not make.
fn check_existing(folder: &File, at: &Path, rules: Rules, last: bool) -> Result<(), OutputError> {
    let meta = folder.metadata().map_err(|e| io(at, e))?;
    let (uid, mode) = (meta.uid(), meta.mode());
    let sticky = mode & STICKY != 0;
    if last {
        let root_sticky = rules.sticky_root_last && uid == 0 && sticky;
        if uid != rules.uid && !root_sticky {
            return Err(OutputError::NotYours {
                path: at.to_path_buf(),
                found: uid,
                expected: rules.uid,
            });
        }
    } else if uid != 0 && uid != rules.uid {
        return Err(unsafe_folder(
            at,
            format!(
                "belongs to uid {uid}, who could rename what is in it; \
                 name a folder below folders of your own or root's"
            ),
        ));
    }
    if mode & 0o022 != 0 && !sticky {
        return Err(unsafe_folder(
            at,
            format!(
                "others may write to it (mode {:03o}) and it is not sticky, so they could \
                 replace what is written; run `chmod go-w` or pick another folder",
                mode & 0o777
            ),
        ));
    }
    Ok(())
}
