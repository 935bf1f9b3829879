//! Tests of [`super::copy_tree`].
#![allow(clippy::unwrap_used)]

use super::*;
use rustix::fs::{Timespec, Timestamps};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};

fn set_times(p: &Path, sec: i64, nsec: i64) {
    let t = Timestamps {
        last_access: Timespec {
            tv_sec: sec - 7,
            tv_nsec: nsec / 2,
        },
        last_modification: Timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        },
    };
    rustix::fs::utimensat(rustix::fs::CWD, p, &t, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn write(p: &Path, data: &[u8], mode: u32) {
    std::fs::write(p, data).unwrap();
    chmod(p, mode);
}

/// The test tree, described in the module brief.
fn build_tree(s: &Path) {
    use std::os::unix::fs::{chown, lchown, symlink};
    let d = |p: &str, mode: u32| {
        std::fs::create_dir_all(s.join(p)).unwrap();
        chmod(&s.join(p), mode);
    };
    d("a/b/c", 0o700);
    d("a/b", 0o750);
    d("x", 0o755);
    d("e", 0o755);
    write(&s.join("a/b/c/file"), b"hello world\n", 0o644);
    write(&s.join("empty"), b"", 0o600);
    write(&s.join("suid"), b"#!/bin/sh\necho hi\n", 0o644);
    chown(s.join("suid"), Some(1000), Some(1000)).unwrap();
    chmod(&s.join("suid"), 0o4755);
    write(&s.join("sgid-sticky"), b"x", 0o3711);
    write(&s.join("xattrs"), b"with xattrs", 0o640);
    xattr::set(s.join("xattrs"), "user.test", b"u\xff\x00v").unwrap();
    xattr::set(s.join("xattrs"), "trusted.test", b"t").unwrap();
    xattr::set(s.join("x"), "user.dir", b"on a dir").unwrap();
    // hardlinks: a pair across two directories, and a third link
    write(&s.join("a/h1"), b"linked content", 0o640);
    chown(s.join("a/h1"), Some(7), Some(8)).unwrap();
    std::fs::hard_link(s.join("a/h1"), s.join("x/h2")).unwrap();
    std::fs::hard_link(s.join("a/h1"), s.join("h3")).unwrap();
    symlink("a/b/c/file", s.join("rel")).unwrap();
    symlink("/etc/passwd", s.join("e/passwd")).unwrap();
    symlink("does/not/exist", s.join("dangling")).unwrap();
    symlink("a", s.join("dirlink")).unwrap();
    lchown(s.join("dangling"), Some(33), Some(44)).unwrap();
    xattr::set(s.join("dirlink"), "trusted.link", b"on a symlink").unwrap();
    let node = |p: &str, ft: FileType, mode: u32, dev: u64| {
        rustix::fs::mknodat(rustix::fs::CWD, s.join(p), ft, Mode::from_raw_mode(0), dev).unwrap();
        chmod(&s.join(p), mode);
    };
    node("fifo", FileType::Fifo, 0o640, 0);
    node(
        "null",
        FileType::CharacterDevice,
        0o666,
        rustix::fs::makedev(1, 3),
    );
    node(
        "loop",
        FileType::BlockDevice,
        0o660,
        rustix::fs::makedev(7, 0),
    );
    xattr::set(s.join("fifo"), "trusted.fifo", b"f").unwrap();
    chown(s.join("null"), Some(0), Some(5)).unwrap();
    // a name that is not UTF-8
    write(
        &s.join(std::ffi::OsStr::from_bytes(b"caf\xe9")),
        b"latin-1",
        0o644,
    );
    // a socket: skipped
    let _ = std::os::unix::net::UnixListener::bind(s.join("sock")).unwrap();
    // directories without write (or any) permission, with content
    d("ro", 0o755);
    write(&s.join("ro/inside"), b"read only dir", 0o444);
    chmod(&s.join("ro"), 0o500);
    d("none", 0o755);
    write(&s.join("none/inside"), b"no permission dir", 0o000);
    chmod(&s.join("none"), 0o000);
    // sparse: 4 MiB with 5 bytes of data in the middle
    let f = std::fs::File::create(s.join("sparse")).unwrap();
    f.set_len(4 << 20).unwrap();
    rustix::io::pwrite(&f, b"sparse", 2 << 20).unwrap();
    drop(f);
    // times: pre-1970, nanoseconds, on files, directories and a symlink
    set_times(&s.join("a/b/c/file"), -1_000_000_000, 0);
    set_times(&s.join("empty"), -123_456_789, 987_654_321);
    set_times(&s.join("suid"), 1_600_000_000, 123_456_789);
    set_times(&s.join("rel"), 1_234_567_890, 42);
    set_times(&s.join("a/b/c"), 1_500_000_000, 999_999_999);
    set_times(&s.join("a"), 1_000_000_000, 1);
    set_times(&s.join("ro"), 1_700_000_000, 5);
    // the root's own metadata
    chown(s, Some(1234), Some(5678)).unwrap();
    chmod(s, 0o751);
    xattr::set(s, "user.root", b"r").unwrap();
    set_times(s, 1_111_111_111, 111_111_111);
}

#[derive(Debug, PartialEq)]
struct Meta {
    kind: FileType,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    size: u64,
    content: Option<Vec<u8>>,
    target: Option<PathBuf>,
    rdev: u64,
    xattrs: BTreeMap<OsString, Vec<u8>>,
    atime: (i64, i64),
    mtime: (i64, i64),
}

#[derive(Default)]
struct Snap {
    meta: BTreeMap<PathBuf, Meta>,
    ino: BTreeMap<PathBuf, (u64, u64)>,
}

/// Every entry's metadata, taken before the entry is read (reads use
/// `O_NOATIME`, so atimes stay comparable).
fn snapshot(root: &Path) -> Snap {
    fn walk(root: &Path, rel: &Path, out: &mut Snap) {
        let p = root.join(rel);
        let md = std::fs::symlink_metadata(&p).unwrap();
        let kind = FileType::from_raw_mode(md.mode());
        if kind == FileType::Socket {
            return;
        }
        let mut xattrs = BTreeMap::new();
        for k in xattr::list(&p).unwrap() {
            xattrs.insert(k.clone(), xattr::get(&p, &k).unwrap().unwrap());
        }
        let content = (kind == FileType::RegularFile).then(|| {
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(OFlags::NOATIME.bits() as i32)
                .open(&p)
                .unwrap();
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut v).unwrap();
            v
        });
        let target = (kind == FileType::Symlink).then(|| std::fs::read_link(&p).unwrap());
        out.meta.insert(
            rel.to_path_buf(),
            Meta {
                kind,
                mode: md.mode(),
                uid: md.uid(),
                gid: md.gid(),
                nlink: if kind == FileType::Directory {
                    0
                } else {
                    md.nlink()
                },
                size: if kind == FileType::Directory {
                    0
                } else {
                    md.size()
                },
                content,
                target,
                rdev: md.rdev(),
                xattrs,
                atime: (md.atime(), md.atime_nsec()),
                mtime: (md.mtime(), md.mtime_nsec()),
            },
        );
        out.ino.insert(rel.to_path_buf(), (md.dev(), md.ino()));
        if kind == FileType::Directory {
            let mut names: Vec<_> = std::fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for n in names {
                walk(root, &rel.join(n), out);
            }
        }
    }
    let mut out = Snap::default();
    walk(root, Path::new(""), &mut out);
    out
}

/// Paths grouped by inode.
fn groups(s: &Snap) -> BTreeSet<BTreeSet<PathBuf>> {
    let mut by: BTreeMap<(u64, u64), BTreeSet<PathBuf>> = BTreeMap::new();
    for (p, i) in &s.ino {
        by.entry(*i).or_default().insert(p.clone());
    }
    by.into_values().collect()
}

fn root() -> bool {
    rustix::process::geteuid().is_root()
}

fn no_check(_: &BStr, _: &Stat) -> Result<(), crate::Error> {
    Ok(())
}

fn copy(src: &Path, dst: &Path) -> Result<CopyStats, CopyError> {
    copy_tree(src, dst, &CopyOptions::default(), &mut no_check)
}

/// Build, copy and compare the test tree with the source under `sbase`
/// and the destination under `dbase`.
fn round_trip(sbase: &Path, dbase: &Path) -> CopyStats {
    assert!(root(), "needs root (chown, mknod, trusted.* xattrs)");
    let st = tempfile::tempdir_in(sbase).unwrap();
    let dt = tempfile::tempdir_in(dbase).unwrap();
    let (src, dst) = (st.path().join("src"), dt.path().join("dst"));
    std::fs::create_dir(&src).unwrap();
    std::fs::create_dir(&dst).unwrap();
    build_tree(&src);
    let mut seen = Vec::new();
    let mut atimes = BTreeMap::new();
    let stats = copy_tree(&src, &dst, &CopyOptions::default(), &mut |p, st| {
        seen.push((p.to_string(), ident(st)));
        atimes.insert(
            PathBuf::from(crate::path::os(p)),
            (st.st_atime, st.st_atime_nsec as i64),
        );
        Ok(())
    })
    .unwrap();
    let (mut a, b) = (snapshot(&src), snapshot(&dst));
    // Reading a symlink (the copy's readlink, then the snapshot's) may
    // update its atime: the copy has the atime `check` saw.
    for (p, m) in a.meta.iter_mut() {
        let name = p.file_name().map(|n| n.as_bytes().to_vec());
        if name.as_deref() != Some(b"caf\xe9") {
            assert_eq!(b.meta[p].atime, atimes[p], "{}", p.display());
        }
        m.atime = b.meta[p].atime;
    }
    // every entry, sockets aside, was checked once, in name order
    assert_eq!(seen.len(), a.meta.len() + 1);
    assert_eq!(seen[0].0, "");
    assert!(seen.iter().any(|(p, _)| p == "caf\u{fffd}"));
    for (p, i) in &seen {
        if p != "sock" && p != "caf\u{fffd}" {
            assert_eq!(a.ino.get(Path::new(p)), Some(i), "{p}");
        }
    }
    let names: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
    assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    for (p, m) in &a.meta {
        assert_eq!(Some(m), b.meta.get(p), "{}", p.display());
    }
    assert_eq!(
        a.meta.keys().collect::<Vec<_>>(),
        b.meta.keys().collect::<Vec<_>>()
    );
    assert_eq!(groups(&a), groups(&b));
    let src_inodes: BTreeSet<_> = a.ino.values().collect();
    assert!(b.ino.values().all(|i| !src_inodes.contains(i)));
    // spot checks of what the comparison covers
    let m = &b.meta[Path::new("suid")];
    assert_eq!((m.mode & 0o7777, m.uid, m.gid), (0o4755, 1000, 1000));
    assert_eq!(b.meta[Path::new("a/h1")].nlink, 3);
    assert_eq!(
        b.meta[Path::new("empty")].mtime,
        (-123_456_789, 987_654_321)
    );
    assert_eq!(b.meta[Path::new("rel")].mtime, (1_234_567_890, 42));
    assert_eq!(b.meta[Path::new("")].mode & 0o7777, 0o751);
    assert_eq!(b.meta[Path::new("none")].mode & 0o7777, 0);
    assert_eq!(
        b.meta[Path::new("xattrs")].xattrs[&OsString::from("user.test")],
        b"u\xff\x00v"
    );
    assert_eq!(
        b.meta[Path::new("dirlink")].xattrs[&OsString::from("trusted.link")],
        b"on a symlink"
    );
    let null = &b.meta[Path::new("null")];
    assert_eq!((null.kind, null.rdev), (FileType::CharacterDevice, 0x103));
    assert!(!dst.join("sock").exists());
    // holes kept
    let sparse = std::fs::metadata(dst.join("sparse")).unwrap();
    assert!(sparse.blocks() * 512 < 1 << 20, "{}", sparse.blocks());
    assert_eq!(stats.skipped, 1);
    assert_eq!(stats.hardlinks, 2);
    assert_eq!(stats.entries, a.meta.len() as u64);
    let files: u64 = a
        .meta
        .values()
        .filter(|m| m.kind == FileType::RegularFile && m.nlink == 1)
        .map(|m| m.size)
        .sum();
    assert_eq!(stats.bytes, files + b"linked content".len() as u64);
    // the non-empty files, the hardlinked one once
    assert_eq!(stats.reflinked + stats.copied, 9);
    stats
}

#[test]
fn copies_on_tmpfs() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let s = round_trip(Path::new("/dev/shm"), Path::new("/dev/shm"));
    assert_eq!(s.reflinked, 0);
}

#[test]
fn copies_on_disk() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let tmp = std::env::temp_dir();
    round_trip(&tmp, &tmp);
}

#[test]
fn copies_across_filesystems() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    // copy_file_range refuses (EXDEV): read and write
    round_trip(&std::env::temp_dir(), Path::new("/dev/shm"));
}

fn pair() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tempfile::tempdir_in("/dev/shm").unwrap();
    let (src, dst) = (t.path().join("src"), t.path().join("dst"));
    std::fs::create_dir(&src).unwrap();
    std::fs::create_dir(&dst).unwrap();
    (t, src, dst)
}

#[test]
fn symlinks_are_never_followed() {
    let (t, src, dst) = pair();
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"secret").unwrap();
    std::fs::create_dir(src.join("etc")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("etc/passwd")).unwrap();
    std::os::unix::fs::symlink(&outside, src.join("out")).unwrap();
    std::os::unix::fs::symlink("../..", src.join("etc/up")).unwrap();
    let mut seen = Vec::new();
    let stats = copy_tree(&src, &dst, &CopyOptions::default(), &mut |p, _| {
        seen.push(p.to_string());
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, ["", "etc", "etc/passwd", "etc/up", "out"]);
    assert_eq!(stats.bytes, 0);
    assert_eq!(
        std::fs::read_link(dst.join("etc/passwd")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(std::fs::read_link(dst.join("out")).unwrap(), outside);
    assert!(
        std::fs::symlink_metadata(dst.join("etc/passwd"))
            .unwrap()
            .is_symlink()
    );
    assert!(
        std::fs::symlink_metadata(dst.join("out"))
            .unwrap()
            .is_symlink()
    );
}

#[test]
fn check_refusal_aborts() {
    let (_t, src, dst) = pair();
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("a/b/bad"), b"x").unwrap();
    std::fs::write(src.join("z"), b"x").unwrap();
    let err = copy_tree(&src, &dst, &CopyOptions::default(), &mut |p, st| {
        if p == "a/b/bad" {
            Err(crate::Error::invalid(format!(
                "inode {} was not cached",
                st.st_ino
            )))
        } else {
            Ok(())
        }
    })
    .unwrap_err();
    assert!(
        matches!(&err, CopyError::Rejected { path, reason }
            if path == "a/b/bad" && reason.contains("was not cached")),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("a/b/bad") && msg.contains("was not cached"),
        "{msg}"
    );
    assert!(!dst.join("a/b/bad").exists());
    assert!(!dst.join("z").exists());
    // the root too
    let (_t, src, dst) = pair();
    let err = copy_tree(&src, &dst, &CopyOptions::default(), &mut |_, _| {
        Err(crate::Error::invalid("no"))
    })
    .unwrap_err();
    assert!(matches!(&err, CopyError::Rejected { path, .. } if path.is_empty()));
}

#[test]
fn bad_roots() {
    let (t, src, dst) = pair();
    std::fs::write(src.join("f"), b"x").unwrap();
    let dest = |e: CopyError| match e {
        CopyError::Destination { reason, .. } => reason,
        e => panic!("{e:?}"),
    };
    let missing = t.path().join("missing");
    let e = dest(copy(&src, &missing).unwrap_err());
    assert_eq!(e, "does not exist");
    assert!(!missing.exists());
    std::fs::write(dst.join("x"), b"").unwrap();
    assert_eq!(dest(copy(&src, &dst).unwrap_err()), "is not empty");
    std::fs::remove_file(dst.join("x")).unwrap();
    let link = t.path().join("link");
    std::os::unix::fs::symlink(&dst, &link).unwrap();
    assert_eq!(dest(copy(&src, &link).unwrap_err()), "is a symlink");
    assert_eq!(
        dest(copy(&src, &src.join("f")).unwrap_err()),
        "is not a directory"
    );
    let e = copy(&link, &dst).unwrap_err();
    assert!(
        matches!(&e, CopyError::Source { reason, .. } if reason == "is a symlink"),
        "{e:?}"
    );
    assert!(copy(&t.path().join("missing"), &dst).is_err());
    // the destination is the source, or inside it
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_eq!(dest(copy(&empty, &empty).unwrap_err()), "is the source");
    std::fs::create_dir(src.join("inner")).unwrap();
    let e = copy(&src, &src.join("inner")).unwrap_err();
    assert!(e.to_string().contains("inside the source"), "{e}");
    assert!(std::fs::read_dir(dst).unwrap().next().is_none());
}

/// `check` runs between the `lstat` and the copy: it can swap the entry
/// as an attacker racing the copy would.
fn race(prepare: impl Fn(&Path), victim: &str, swap: impl Fn(&Path)) -> (CopyError, PathBuf) {
    let (t, src, dst) = pair();
    prepare(&src);
    let err = copy_tree(&src, &dst, &CopyOptions::default(), &mut |p, _| {
        if p == victim {
            swap(&src);
        }
        Ok(())
    })
    .unwrap_err();
    std::mem::forget(t); // inspected by the caller; removed below
    (err, dst)
}

#[test]
fn races_are_detected() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let outside = tempfile::tempdir_in("/dev/shm").unwrap();
    std::fs::write(outside.path().join("secret"), b"secret").unwrap();
    let out = outside.path().to_path_buf();
    let cleanup = |dst: &Path| {
        let _ = std::fs::remove_dir_all(dst.parent().unwrap());
    };

    // a file replaced by a symlink to a file outside
    let (e, dst) = race(
        |s| std::fs::write(s.join("f"), b"mine").unwrap(),
        "f",
        |s| {
            std::fs::remove_file(s.join("f")).unwrap();
            std::os::unix::fs::symlink(out.join("secret"), s.join("f")).unwrap();
        },
    );
    assert!(
        matches!(e, CopyError::Changed { ref path, .. } if path == "f"),
        "{e:?}"
    );
    assert!(!dst.join("f").exists());
    cleanup(&dst);

    // a directory replaced by a symlink to a directory outside
    let (e, dst) = race(
        |s| std::fs::create_dir(s.join("d")).unwrap(),
        "d",
        |s| {
            std::fs::remove_dir(s.join("d")).unwrap();
            std::os::unix::fs::symlink(&out, s.join("d")).unwrap();
        },
    );
    assert!(
        matches!(e, CopyError::Io { ref path, .. } if path == "d"),
        "{e:?}"
    );
    assert!(!dst.join("d").exists());
    cleanup(&dst);

    // a file replaced by a device node (never opened)
    let (e, dst) = race(
        |s| {
            std::fs::write(s.join("f"), b"mine").unwrap();
            rustix::fs::mknodat(
                rustix::fs::CWD,
                s.join("zero"),
                FileType::CharacterDevice,
                Mode::from_raw_mode(0o666),
                rustix::fs::makedev(1, 5),
            )
            .unwrap();
        },
        "f",
        |s| std::fs::rename(s.join("zero"), s.join("f")).unwrap(),
    );
    assert!(
        matches!(e, CopyError::Changed { ref path, .. } if path == "f"),
        "{e:?}"
    );
    cleanup(&dst);

    // a file modified after it was checked
    let (e, dst) = race(
        |s| std::fs::write(s.join("f"), b"mine").unwrap(),
        "f",
        |s| std::fs::write(s.join("f"), b"theirs, longer").unwrap(),
    );
    assert!(
        matches!(e, CopyError::Changed { ref path, .. } if path == "f"),
        "{e:?}"
    );
    cleanup(&dst);

    // a symlink retargeted after it was checked
    let (e, dst) = race(
        |s| std::os::unix::fs::symlink("a", s.join("l")).unwrap(),
        "l",
        |s| {
            std::fs::remove_file(s.join("l")).unwrap();
            std::os::unix::fs::symlink("/etc/shadow", s.join("l")).unwrap();
        },
    );
    assert!(
        matches!(e, CopyError::Changed { ref path, .. } if path == "l"),
        "{e:?}"
    );
    assert!(std::fs::symlink_metadata(dst.join("l")).is_err());
    cleanup(&dst);

    // an entry added to a directory while it is copied
    let (e, dst) = race(
        |s| std::fs::write(s.join("f"), b"mine").unwrap(),
        "f",
        |s| std::fs::write(s.join("new"), b"").unwrap(),
    );
    assert!(
        matches!(e, CopyError::Changed { ref path, .. } if path.is_empty()),
        "{e:?}"
    );
    cleanup(&dst);
}

/// By hand: `RUMOCI_COPY_BENCH=/path/to/tree cargo test --release -p
/// rumoci --lib layer::copy::tests::bench -- --ignored --nocapture`
/// (default /work/bench-cache/rootfs-base) copies the tree to /dev/shm.
#[test]
#[ignore]
fn bench() {
    let src = std::env::var_os("RUMOCI_COPY_BENCH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/bench-cache/rootfs-base"));
    let t = tempfile::tempdir_in("/dev/shm").unwrap();
    let dst = t.path().join("dst");
    std::fs::create_dir(&dst).unwrap();
    let start = std::time::Instant::now();
    let stats = copy(&src, &dst).unwrap();
    eprintln!(
        "copy_tree {}: {:?} {stats:?}",
        src.display(),
        start.elapsed()
    );
}
