//! Rootless work on trees the owner cannot read.
//!
//! Fedora and RHEL images ship `/etc/shadow` with mode 000, and builds
//! create mode-000 directories. root reads and enters them anyway
//! (`CAP_DAC_OVERRIDE`); an unprivileged user who owns them cannot, not even
//! to list or remove them. Like the Go umoci's `pkg/unpriv`, rumoci then
//! grants the owner the bits it needs for as long as it works on the tree and
//! puts the original modes back afterwards, so the tree on disk and the
//! layers keep the original modes exactly:
//!
//! * [`TreeGrant`] opens up every directory of a tree that its owner cannot
//!   list, search or write (and remembers its mode) for the duration of a
//!   walk: `repack`'s diff and layer, the bundle's mtree, `insert`'s source
//!   tree. The walkers report the remembered mode ([`Modes::mode`]).
//! * [`read_file`] opens a file its owner cannot read by granting `u+r` just
//!   for the `open` (the descriptor stays readable).
//! * Extraction keeps the directories it creates open for the owner while
//!   layers are applied and sets their modes at the end of each layer (see
//!   `extract`), and removal grants what it needs on what it deletes (see
//!   [`super::root::remove_all_at`]).
//!
//! Nothing here happens as root (or inside a user namespace owning the
//! tree), where it is not needed.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Whether the process may lack access to its own files (not euid 0).
/// Asked once per file by walkers: the answer is read once per process
/// (rumoci never changes its effective user).
pub fn needed() -> bool {
    static NEEDED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *NEEDED.get_or_init(|| !rustix::process::geteuid().is_root())
}

/// Original modes of directories opened up by a [`TreeGrant`], by host path.
#[derive(Debug, Default)]
pub struct Modes(BTreeMap<PathBuf, u32>);

impl Modes {
    /// The permission bits (`& 0o7777`) of `path` as they were before the
    /// grant, else as `md` shows them.
    pub fn mode(&self, path: &Path, md: &std::fs::Metadata) -> u32 {
        self.0.get(path).copied().unwrap_or(md.mode() & 0o7777)
    }
}

/// The mode of `path` as a walker should report it: through `modes` if a
/// grant is active, else from `md`.
pub fn mode_of(modes: Option<&Modes>, path: &Path, md: &std::fs::Metadata) -> u32 {
    match modes {
        Some(m) => m.mode(path, md),
        None => md.mode() & 0o7777,
    }
}

/// Every directory of a tree opened up for its owner (`u+rwx`) while the
/// value lives; dropping it puts the original modes back, deepest first.
#[derive(Debug, Default)]
pub struct TreeGrant {
    modes: Modes,
}

impl TreeGrant {
    /// Open up the tree at `root` (not following symlinks; iterative, any
    /// depth). Does nothing unless [`needed`]. Fails only if a directory
    /// the caller owns cannot be changed; a directory owned by someone
    /// else is left alone (its walk fails later, naming it).
    pub fn new(root: &Path) -> std::io::Result<TreeGrant> {
        let mut g = TreeGrant::default();
        if !needed() {
            return Ok(g);
        }
        let uid = rustix::process::geteuid().as_raw();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let md = std::fs::symlink_metadata(&dir)?;
            if !md.is_dir() {
                continue;
            }
            let mode = md.mode() & 0o7777;
            if mode & 0o700 != 0o700 && md.uid() == uid {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode | 0o700))?;
                g.modes.0.insert(dir.clone(), mode);
            }
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                // not ours: the walk that needs it reports it
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => continue,
                Err(e) => return Err(e),
            };
            for e in rd {
                let e = e?;
                if e.file_type()?.is_dir() {
                    stack.push(e.path());
                }
            }
        }
        if !g.modes.0.is_empty() {
            tracing::debug!(
                "{}: {} directories opened up for the owner while working on the tree",
                root.display(),
                g.modes.0.len()
            );
        }
        Ok(g)
    }

    /// The original modes, for the walkers.
    pub fn modes(&self) -> &Modes {
        &self.modes
    }
}

impl Drop for TreeGrant {
    fn drop(&mut self) {
        // deepest first: a parent closed before its child would lock us out
        for (p, mode) in self.modes.0.iter().rev() {
            match std::fs::symlink_metadata(p) {
                Ok(md) if md.is_dir() => {
                    if let Err(e) =
                        std::fs::set_permissions(p, std::fs::Permissions::from_mode(*mode))
                    {
                        tracing::warn!("{}: cannot restore mode {mode:o}: {e}", p.display());
                    }
                }
                _ => {}
            }
        }
    }
}

/// Open the file at `path` for reading, never through a symlink; a file
/// its owner cannot read (mode 000) is given `u+r` for the `open` only.
pub fn read_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
    };
    match open() {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && needed() => {
            let md = std::fs::symlink_metadata(path)?;
            if !md.is_file() || md.uid() != rustix::process::geteuid().as_raw() {
                return Err(e);
            }
            let mode = md.mode() & 0o7777;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o400))?;
            let f = open();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
            f
        }
        r => r,
    }
}

/// Run `f` (which reads the xattrs of `path`) with `u+r` granted on a file
/// or directory its owner cannot read: reading `user.*` xattrs needs read
/// permission.
pub fn with_read<T>(
    path: &Path,
    md: &std::fs::Metadata,
    f: impl FnOnce() -> std::io::Result<T>,
) -> std::io::Result<T> {
    let mode = md.mode() & 0o7777;
    if !needed()
        || md.file_type().is_symlink()
        || mode & 0o400 != 0
        || md.uid() != rustix::process::geteuid().as_raw()
    {
        return f();
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o400))?;
    let r = f();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    r
}
