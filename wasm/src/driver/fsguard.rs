//! The filesystem guard: a plugin may open regular files, directories and
//! symlinks in its store directory, never a fifo, a device or a socket.
//!
//! Trees in a store (a layer cache's snapshots, say) are extracted from
//! images by rumoci as root, so they can hold any special file an image
//! asks for. Opening one from inside the sandbox would be harmful twice
//! over:
//!
//! * a fifo blocks `open(2)` until a writer appears. The call runs on the
//!   host's thread, in host code, where no epoch deadline reaches: the
//!   plugin, and rumoci with it, would hang forever;
//! * a device node is the real device: a hostile image could ship
//!   `/dev/sda` (block 8:0) or `/dev/mem`, and a plugin opening that node
//!   in its store would read or write the host's disk or memory.
//!
//! wasmtime-wasi's `open-at` opens whatever the path names, so the guard
//! shadows `wasi:filesystem/types.[method]descriptor.open-at` in the
//! linker: it resolves the path first with `openat2(O_PATH)` beneath the
//! directory the plugin gave (which never opens the file itself, so it
//! cannot block), refuses a special file with `access`, and hands every
//! other call to wasmtime-wasi unchanged. A path that does not resolve
//! (absent, escaping, a loop) is left to wasmtime-wasi, which reports its
//! own error or creates the file.
//!
//! The check and the open are two steps, but nothing can swap the file in
//! between from inside the sandbox: a plugin runs single-threaded and is
//! inside this very call, and WASI cannot create special files at all.

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::sync::filesystem::types::{
    DescriptorFlags, ErrorCode, Host, HostDescriptor, OpenFlags, PathFlags,
};

/// What the guard needs of a plugin's store state: the resource table
/// holding its descriptors, the WASI filesystem, and the plugin's name
/// for messages.
pub(crate) trait Guarded: WasiFilesystemView + 'static {
    /// The resource table holding the plugin's descriptors.
    fn table(&self) -> &ResourceTable;
    /// The plugin's name.
    fn plugin(&self) -> &str;
}

/// The interface whose `open-at` is guarded, at the version wasmtime-wasi
/// 48 defines (a plugin's import of an older 0.2 release resolves to it).
const FILESYSTEM_TYPES: &str = "wasi:filesystem/types@0.2.12";
/// The function shadowed.
const OPEN_AT: &str = "[method]descriptor.open-at";

/// Replace wasmtime-wasi's `open-at` in `linker` (which must already hold
/// the WASI filesystem) with the guarded one.
pub(crate) fn add_to_linker<T: Guarded>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let res = linker
        .instance(FILESYSTEM_TYPES)
        .and_then(|mut i| i.func_wrap(OPEN_AT, guarded_open_at::<T>));
    linker.allow_shadowing(false);
    res
}

type OpenAtParams = (
    Resource<Descriptor>,
    PathFlags,
    String,
    OpenFlags,
    DescriptorFlags,
);

fn guarded_open_at<T: Guarded>(
    mut store: StoreContextMut<'_, T>,
    (fd, path_flags, path, oflags, flags): OpenAtParams,
) -> wasmtime::Result<(Result<Resource<Descriptor>, ErrorCode>,)> {
    let state = store.data_mut();
    let follow = path_flags.contains(PathFlags::SYMLINK_FOLLOW);
    if let Some(kind) = special_file(state.table(), &fd, &path, follow) {
        tracing::warn!(
            "driver {}: refused to open {path:?} in its store: {kind}",
            state.plugin()
        );
        return Ok((Err(ErrorCode::Access),));
    }
    let mut fs = state.filesystem();
    let opened = match HostDescriptor::open_at(&mut fs, fd, path_flags, path, oflags, flags) {
        Ok(d) => Ok(d),
        Err(e) => Err(Host::convert_error_code(&mut fs, e)?),
    };
    Ok((opened,))
}

/// What kind of special file `path` (beneath the directory `fd`) is, or
/// `None` for anything that may be opened or that does not resolve.
fn special_file(
    table: &ResourceTable,
    fd: &Resource<Descriptor>,
    path: &str,
    follow: bool,
) -> Option<&'static str> {
    let Ok(Descriptor::Dir(dir)) = table.get(fd) else {
        return None;
    };
    let mut flags = OFlags::PATH | OFlags::CLOEXEC;
    if !follow {
        flags |= OFlags::NOFOLLOW;
    }
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    let target = rustix::fs::openat2(&*dir.dir, path, flags, Mode::empty(), resolve).ok()?;
    let st = rustix::fs::fstat(&target).ok()?;
    classify(FileType::from_raw_mode(st.st_mode))
}

/// The name of a file type a plugin may not open.
fn classify(t: FileType) -> Option<&'static str> {
    match t {
        FileType::Fifo => Some("a fifo"),
        FileType::CharacterDevice => Some("a character device"),
        FileType::BlockDevice => Some("a block device"),
        FileType::Socket => Some("a socket"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_special_files_are_refused() {
        assert_eq!(classify(FileType::Fifo), Some("a fifo"));
        assert_eq!(classify(FileType::BlockDevice), Some("a block device"));
        assert_eq!(
            classify(FileType::CharacterDevice),
            Some("a character device")
        );
        assert_eq!(classify(FileType::Socket), Some("a socket"));
        for ok in [
            FileType::RegularFile,
            FileType::Directory,
            FileType::Symlink,
        ] {
            assert_eq!(classify(ok), None);
        }
    }
}
