//! Applying an arbitrary tar stream as a layer never panics and never
//! touches anything outside the root filesystem.
//!
//! Per input, a fresh scratch tree is made:
//!
//! ```text
//! W/                       wrapper: must keep holding only `T`
//! W/T/outside/sentinel     must keep its content, inode metadata and links
//! W/T/outside/sub/inner
//! W/T/rootfs/              the layer is applied here
//!            dir/file, file
//!            out  -> ../outside        sent -> ../outside/sentinel
//!            abs  -> /                 dir/up -> ../../outside
//!            dotdot -> ../..
//! ```
//!
//! The input is applied to `W/T/rootfs` (errors are fine). Afterwards
//! everything beneath `W/T/outside` must be exactly as before (names, types,
//! inode numbers, modes, owners, link counts, sizes, mtimes, ctimes, file
//! content, symlink targets), `W/T` must hold only `outside` and `rootfs`, and
//! `W` only `T`; anything else is an escape from the root and panics.
//!
//! The last input byte (beyond the tar end-of-archive marker it changes
//! nothing in the archive) selects options: bit 0 `keep_dirlinks`, bit 1
//! non-rootless (real chown/mknod; when running as root), bit 2 apply the
//! same stream a second time as the next layer.
#![no_main]

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rumoci::layer::extract::{ExtractOptions, Extractor};
use rumoci::fs::root::Root;

const SENTINEL: &[u8] = b"sentinel: must never change\n";

#[path = "scratch.rs"]
mod scratch_dir;

fn scratch() -> &'static Path {
    scratch_dir::scratch(PREFIX)
}

/// Scratch directories are named `PREFIX<pid>-<random>`.
const PREFIX: &str = "rumoci-fuzz-tar-";

fn prefix() -> String {
    format!("{PREFIX}{}-", std::process::id())
}

/// What is observable about one object outside the root.
#[derive(Debug, PartialEq, Eq)]
struct Obs {
    mode: u32,
    ino: u64,
    uid: u32,
    gid: u32,
    nlink: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    /// file content or symlink target
    data: Option<Vec<u8>>,
}

fn snapshot(host: &Path, rel: String, out: &mut BTreeMap<String, Obs>) {
    let md = std::fs::symlink_metadata(host)
        .unwrap_or_else(|e| panic!("ESCAPE: outside/{rel} cannot be stat'ed: {e}"));
    let ft = md.file_type();
    let data = if ft.is_file() {
        Some(std::fs::read(host).unwrap_or_else(|e| panic!("ESCAPE: outside/{rel}: {e}")))
    } else if ft.is_symlink() {
        Some(
            std::fs::read_link(host)
                .unwrap_or_else(|e| panic!("ESCAPE: outside/{rel}: {e}"))
                .as_os_str()
                .as_bytes()
                .to_vec(),
        )
    } else {
        None
    };
    out.insert(
        rel.clone(),
        Obs {
            mode: md.mode(),
            ino: md.ino(),
            uid: md.uid(),
            gid: md.gid(),
            nlink: md.nlink(),
            size: md.size(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
            data,
        },
    );
    if ft.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(host)
            .unwrap_or_else(|e| panic!("ESCAPE: outside/{rel}: {e}"))
            .map(|e| e.expect("dir entry").file_name())
            .collect();
        names.sort();
        for n in names {
            let child = format!("{rel}/{}", n.to_string_lossy());
            snapshot(&host.join(&n), child, out);
        }
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("ESCAPE: {} unreadable: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    let sel = data.last().copied().unwrap_or(0);
    let opts = ExtractOptions {
        keep_dirlinks: sel & 1 != 0,
        rootless: sel & 2 == 0,
        ..Default::default()
    };
    let twice = sel & 4 != 0;

    let w = tempfile::Builder::new()
        .prefix(&prefix())
        .tempdir_in(scratch())
        .expect("tempdir");
    let t = w.path().join("T");
    let outside = t.join("outside");
    let rootfs = t.join("rootfs");
    std::fs::create_dir_all(outside.join("sub")).expect("mkdir outside");
    std::fs::write(outside.join("sentinel"), SENTINEL).expect("sentinel");
    std::fs::write(outside.join("sub/inner"), b"inner").expect("inner");
    std::fs::create_dir_all(rootfs.join("dir")).expect("mkdir rootfs");
    std::fs::write(rootfs.join("dir/file"), b"lower").expect("file");
    std::fs::write(rootfs.join("file"), b"lower").expect("file");
    symlink("../outside", rootfs.join("out")).expect("symlink");
    symlink("../outside/sentinel", rootfs.join("sent")).expect("symlink");
    symlink("/", rootfs.join("abs")).expect("symlink");
    symlink("../../outside", rootfs.join("dir/up")).expect("symlink");
    symlink("../..", rootfs.join("dotdot")).expect("symlink");

    let mut before = BTreeMap::new();
    snapshot(&outside, String::new(), &mut before);

    {
        let root = Root::open(&rootfs).expect("open root");
        let mut ex = Extractor::new(opts);
        let r = ex.apply_layer(&root, data);
        if twice && r.is_ok() {
            let _ = ex.apply_layer(&root, data);
        }
    }

    assert_eq!(names(w.path()), ["T"], "ESCAPE: wrapper dir changed");
    assert_eq!(names(&t), ["outside", "rootfs"], "ESCAPE: T changed");
    let mut after = BTreeMap::new();
    snapshot(&outside, String::new(), &mut after);
    if before != after {
        let changed: std::collections::BTreeSet<_> = before
            .keys()
            .chain(after.keys())
            .filter(|k| before.get(*k) != after.get(*k))
            .collect();
        panic!("ESCAPE: outside changed at {changed:?}\nbefore: {before:#?}\nafter: {after:#?}");
    }
    assert_eq!(
        std::fs::read(outside.join("sentinel")).expect("sentinel"),
        SENTINEL
    );
    drop(w);
});
