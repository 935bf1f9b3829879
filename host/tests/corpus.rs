//! Archives other tools write, as layers, side by side with the Go umoci.
//!
//! Each case is a tar made by the real tool that makes it in the wild (GNU
//! tar in every format and sparse version, bsdtar in every format, `git
//! archive`, `dpkg-deb`'s data.tar) or taken from Go's own `archive/tar`
//! test data (Debian's golang package ships it). Each becomes the layer of
//! an image made by the Go umoci (`umoci raw add-layer`), then both unpack:
//! - where the Go umoci unpacks, rumoci's tree is the same file by file;
//! - where the Go umoci refuses, rumoci either refuses too, or (the cases
//!   listed in docs/design.md, where Go is wrong) gives bsdtar's tree.
//!
//! Sparse files keep their holes, and a repack writes them as plain files.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Where the Go umoci's verdict is not the one to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The Go umoci unpacks it: the same tree.
    Go,
    /// The Go umoci refuses it (wrongly): rumoci gives bsdtar's tree.
    Bsdtar,
    /// Decided by the outcome: Go's tree if Go unpacks, else rumoci refuses
    /// or gives bsdtar's tree (Go's own test data).
    Either,
}

struct Case {
    name: String,
    tar: PathBuf,
    expect: Expect,
    /// The archive holds `sparse.img` as a sparse member: its holes must
    /// stay holes.
    holes: bool,
}

/// A 5 MiB file with 6 bytes of data at 1 MiB and 4 at its end.
fn make_sparse(p: &Path) {
    let f = std::fs::File::create(p).expect("create");
    f.set_len(5 << 20).expect("size");
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"hello\n", 1 << 20).expect("write");
    f.write_all_at(b"end\n", (5 << 20) - 4).expect("write");
}

/// The source tree: `full` adds what ustar and v7 cannot hold (long names
/// and targets, big ids, xattrs, devices, a fifo).
fn make_src(root: &Path, full: bool) {
    std::fs::create_dir_all(root.join("dir/sub")).expect("mkdir");
    std::fs::write(root.join("dir/file"), b"content\n").expect("w");
    std::fs::write(root.join("empty"), b"").expect("w");
    std::fs::write(root.join("exec.sh"), b"#!/bin/sh\n").expect("w");
    run_ok("chmod", &["0755", s(&root.join("exec.sh"))]);
    std::os::unix::fs::symlink("dir/file", root.join("link")).expect("symlink");
    std::fs::hard_link(root.join("dir/file"), root.join("hard")).expect("hardlink");
    make_sparse(&root.join("sparse.img"));
    run_ok("chown", &["1000:1000", s(&root.join("dir/file"))]);
    if full {
        let long = "l".repeat(120);
        std::fs::create_dir_all(root.join(&long)).expect("mkdir");
        std::fs::write(root.join(&long).join("f".repeat(110)), b"deep\n").expect("w");
        std::os::unix::fs::symlink("t".repeat(150), root.join("longlink")).expect("symlink");
        std::fs::write(root.join("bigids"), b"ids\n").expect("w");
        run_ok("chown", &["3000000:3000001", s(&root.join("bigids"))]);
        run_ok(
            "setfattr",
            &["-n", "user.k", "-v", "v1", s(&root.join("dir/file"))],
        );
        run_ok("mkfifo", &[s(&root.join("fifo"))]);
        run_ok("mknod", &[s(&root.join("null")), "c", "1", "3"]);
    }
    // fixed times, directories last
    run_ok(
        "sh",
        &[
            "-c",
            &format!(
                "find {0} ! -type d -exec touch -h -d '2020-02-02 02:02:02' {{}} + && find {0} -type d -exec touch -d '2019-01-01 01:01:01' {{}} +",
                s(root)
            ),
        ],
    );
}

fn sh(script: &str) -> std::process::Output {
    Command::new("sh")
        .args(["-c", script])
        .output()
        .expect("sh")
}

fn sh_ok(script: &str) {
    let out = sh(script);
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The archives made by the tools, into `dir`.
fn tool_cases(dir: &Path) -> Vec<Case> {
    let full = dir.join("src-full");
    let short = dir.join("src-short");
    make_src(&full, true);
    make_src(&short, false);
    let mut cases = Vec::new();
    let mut add = |name: &str, script: String, expect: Expect| {
        let tar = dir.join(format!("{name}.tar"));
        sh_ok(&script.replace("OUT", s(&tar)));
        // GNU tar writes holes only when asked; bsdtar whenever its format
        // can say them
        let holes = name.contains("sparse")
            || (name.starts_with("bsdtar") && !name.ends_with("ustar") && !name.ends_with("v7"));
        cases.push(Case {
            name: name.to_string(),
            tar,
            expect,
            holes,
        });
    };
    let (f, sh) = (s(&full).to_string(), s(&short).to_string());
    // GNU tar: every format, sparse or not
    for fmt in ["gnu", "oldgnu"] {
        add(
            &format!("gnutar-{fmt}"),
            format!("tar --format={fmt} -cf OUT -C {f} ."),
            Expect::Go,
        );
        // the old GNU sparse type `S`: the Go umoci refuses the type flag
        add(
            &format!("gnutar-{fmt}-sparse"),
            format!("tar --format={fmt} --sparse -cf OUT -C {f} ."),
            Expect::Bsdtar,
        );
    }
    add(
        "gnutar-posix",
        format!("tar --format=posix --xattrs -cf OUT -C {f} ."),
        Expect::Go,
    );
    for v in ["0.0", "0.1", "1.0"] {
        add(
            &format!("gnutar-posix-sparse-{v}"),
            format!("tar --format=posix --xattrs --sparse --sparse-version={v} -cf OUT -C {f} ."),
            Expect::Go,
        );
    }
    add(
        "gnutar-ustar",
        format!("tar --format=ustar -cf OUT -C {sh} ."),
        Expect::Go,
    );
    add(
        "gnutar-v7",
        format!("tar --format=v7 -cf OUT -C {sh} ."),
        Expect::Go,
    );
    // bsdtar: every format it writes; its default (restricted pax) writes
    // GNU sparse 1.0 for files with holes
    add(
        "bsdtar-default",
        format!("bsdtar -cf OUT -C {f} ."),
        Expect::Go,
    );
    add(
        "bsdtar-pax",
        format!("bsdtar --format pax -cf OUT -C {f} ."),
        Expect::Go,
    );
    add(
        "bsdtar-paxr",
        format!("bsdtar --format paxr -cf OUT -C {f} ."),
        Expect::Go,
    );
    add(
        "bsdtar-ustar",
        format!("bsdtar --format ustar -cf OUT -C {sh} ."),
        Expect::Go,
    );
    add(
        "bsdtar-v7",
        format!("bsdtar --format v7 -cf OUT -C {sh} ."),
        Expect::Go,
    );
    // git archive: a PAX global header first (the commit id), which the Go
    // umoci refuses as an unknown type flag
    let repo = dir.join("repo");
    let r = s(&repo);
    sh_ok(&format!(
        "git init -q {r} && cd {r} && mkdir -p a/b && echo one > a/b/one && echo two > two && \
         ln -s a/b/one sym && printf '#!/bin/sh\\n' > run && chmod +x run && \
         mkdir -p {long} && echo x > {long}/{long2} && \
         git add -A && git -c user.name=t -c user.email=t@t -c commit.gpgsign=false commit -q -m m",
        long = "d".repeat(110),
        long2 = "e".repeat(110)
    ));
    add(
        "git-archive",
        format!("cd {r} && git archive --format=tar HEAD > OUT"),
        Expect::Bsdtar,
    );
    add(
        "git-archive-prefix",
        format!("cd {r} && git archive --format=tar --prefix=src/ HEAD > OUT"),
        Expect::Bsdtar,
    );
    // a Debian package's data.tar, as dpkg-deb writes it
    let pkg = dir.join("pkg");
    sh_ok(&format!(
        "mkdir -p {p}/DEBIAN {p}/usr/share/doc/corpus {p}/usr/bin && \
         printf 'Package: corpus\\nVersion: 1.0\\nArchitecture: all\\nMaintainer: t <t@t>\\nDescription: t\\n' > {p}/DEBIAN/control && \
         echo doc > {p}/usr/share/doc/corpus/README && printf '#!/bin/sh\\n' > {p}/usr/bin/corpus && chmod 755 {p}/usr/bin/corpus && \
         ln -s corpus {p}/usr/bin/corpus-link && \
         dpkg-deb -Znone --root-owner-group -b {p} {p}.deb >/dev/null",
        p = s(&pkg)
    ));
    add(
        "dpkg-data",
        format!("dpkg-deb --fsys-tarfile {}.deb > OUT", s(&pkg)),
        Expect::Go,
    );
    cases
}

/// Go's archive/tar test archives, where Debian's Go ships them.
fn go_cases() -> Vec<Case> {
    let dir = Path::new("/usr/lib/go/src/archive/tar/testdata");
    let Ok(rd) = std::fs::read_dir(dir) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} missing (golang-go)",
            dir.display()
        );
        return Vec::new();
    };
    let mut cases: Vec<Case> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tar"))
        // 60 GB sparse members: the Go umoci would write every zero
        // (checked apart, rumoci only: `big_sparse_members_cost_their_data`)
        .filter(|p| !s(p).contains("sparse-big"))
        .map(|p| Case {
            name: format!(
                "go:{}",
                p.file_name().and_then(|n| n.to_str()).unwrap_or("?")
            ),
            tar: p,
            expect: Expect::Either,
            holes: false,
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

/// A layout with one image whose only layer is `tar`, made by the Go umoci.
fn go_layout(dir: &Path, tar: &Path) -> Result<String, String> {
    let l = dir.join("layout");
    let img = format!("{}:t", s(&l));
    run_ok("umoci", &["init", "--layout", s(&l)]);
    run_ok("umoci", &["new", "--image", &img]);
    let out = Command::new("umoci")
        .args(["raw", "add-layer", "--image", &img, s(tar)])
        .output()
        .expect("umoci");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(img)
}

fn unpack(prog: &str, img: &str, bundle: &Path) -> Result<(), String> {
    let out = Command::new(prog)
        .args(["unpack", "--image", img, s(bundle)])
        .output()
        .expect("unpack");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// bsdtar's extraction of `tar` (owners, modes, xattrs, times), the root
/// left out (bsdtar does not own the directory it extracts into).
fn bsdtar_tree(tar: &Path, into: &Path) -> Result<(), String> {
    std::fs::create_dir_all(into).expect("mkdir");
    let out = Command::new("bsdtar")
        .args([
            "-x",
            "-p",
            "--xattrs",
            "--numeric-owner",
            "-f",
            s(tar),
            "-C",
            s(into),
        ])
        .output()
        .expect("bsdtar");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// How the root directory is compared.
#[derive(Clone, Copy)]
enum RootTime {
    /// Not at all (bsdtar does not own the directory it extracts into).
    Skip,
    /// Fully, but where the Go umoci left the root's mtime at the time of
    /// the unpack (at or after this time: a layer that creates a missing
    /// parent directory at the root, which the Go umoci does not restore
    /// the root's times after), rumoci's is kept: a listed difference. And
    /// directories both made at the time of their unpack (no header) match
    /// whichever second each unpack fell in.
    UnpackTimeAfter(i64),
}

/// The differences between two trees' facts.
fn tree_diffs(want: &Path, got: &Path, root: RootTime) -> Vec<String> {
    let mut a = tree_facts(want);
    let mut b = tree_facts(got);
    let r = Path::new("");
    match root {
        RootTime::Skip => {
            a.remove(r);
            b.remove(r);
        }
        RootTime::UnpackTimeAfter(start) => {
            if let (Some(fa), Some(fb)) = (a.get_mut(r), b.get(r))
                && fa.mtime >= start
            {
                fa.mtime = fb.mtime;
            }
            // a directory the layer has no header for (a missing parent)
            // is made, by both, at the time of its unpack: the two unpacks
            // may fall in different seconds
            for (p, fa) in a.iter_mut() {
                if let Some(fb) = b.get(p)
                    && fa.kind == "dir"
                    && fa.mtime >= start
                    && fb.mtime >= start
                {
                    fa.mtime = fb.mtime;
                }
            }
        }
    }
    let mut diffs = Vec::new();
    for (p, fa) in &a {
        match b.get(p) {
            None => diffs.push(format!("missing {}", p.display())),
            Some(fb) if fa != fb => diffs.push(format!("{}: want {fa:?} got {fb:?}", p.display())),
            _ => {}
        }
    }
    for p in b.keys().filter(|p| !a.contains_key(*p)) {
        diffs.push(format!("extra {}", p.display()));
    }
    diffs
}

/// Every regular file of rumoci's tree that is sparse in the source keeps
/// its holes: fewer blocks than its size.
fn holes_kept(rootfs: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    for (p, f) in tree_facts(rootfs) {
        if p.file_name().is_some_and(|n| n == "sparse.img") && f.kind == "file" {
            let md = std::fs::metadata(rootfs.join(&p)).expect("stat");
            if md.blocks() * 512 >= 1 << 20 {
                bad.push(format!(
                    "{}: {} blocks for {} bytes (holes written)",
                    p.display(),
                    md.blocks(),
                    md.size()
                ));
            }
        }
    }
    bad
}

#[derive(Debug, Default)]
struct Tally {
    same_as_go: Vec<String>,
    same_as_bsdtar: Vec<String>,
    both_refuse: Vec<String>,
    failures: Vec<String>,
}

fn check(case: &Case, work: &Path, start: i64, t: &mut Tally) {
    let dir = work.join(case.name.replace(':', "_"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let img = match go_layout(&dir, &case.tar) {
        Ok(img) => img,
        Err(e) => {
            t.failures
                .push(format!("{}: umoci raw add-layer failed: {e}", case.name));
            return;
        }
    };
    let go = unpack("umoci", &img, &dir.join("go"));
    let rs = unpack(rumoci_bin(), &img, &dir.join("rs"));
    let rs_root = dir.join("rs/rootfs");
    let expect = match (case.expect, &go) {
        (Expect::Either, Ok(())) => Expect::Go,
        (Expect::Either, Err(_)) => Expect::Bsdtar,
        (e, _) => e,
    };
    match (expect, &go, &rs) {
        (Expect::Go, Ok(()), Ok(())) => {
            let diffs = tree_diffs(
                &dir.join("go/rootfs"),
                &rs_root,
                RootTime::UnpackTimeAfter(start),
            );
            if diffs.is_empty() {
                t.same_as_go.push(case.name.clone());
            } else {
                t.failures.push(format!(
                    "{}: tree differs from the Go umoci's:\n  {}",
                    case.name,
                    diffs.join("\n  ")
                ));
            }
        }
        (Expect::Go, Err(e), _) => t.failures.push(format!(
            "{}: expected the Go umoci to unpack it, it says: {e}",
            case.name
        )),
        (Expect::Go, Ok(()), Err(e)) => t.failures.push(format!(
            "{}: the Go umoci unpacks it, rumoci: {e}",
            case.name
        )),
        (Expect::Bsdtar, _, rs) => {
            if case.expect == Expect::Bsdtar && go.is_ok() {
                t.failures.push(format!(
                    "{}: listed as refused by the Go umoci, which unpacks it now",
                    case.name
                ));
                return;
            }
            let bsd = dir.join("bsdtar");
            match (bsdtar_tree(&case.tar, &bsd), rs) {
                (Err(_), Err(_)) => t.both_refuse.push(case.name.clone()),
                (Ok(()), Err(e)) if case.expect == Expect::Either => {
                    // Go and rumoci refuse what bsdtar reads
                    t.both_refuse.push(format!("{} (rumoci: {e})", case.name));
                }
                (Ok(()), Err(e)) => t
                    .failures
                    .push(format!("{}: bsdtar reads it, rumoci: {e}", case.name)),
                (Err(e), Ok(())) => t.failures.push(format!(
                    "{}: rumoci unpacks what the Go umoci and bsdtar refuse ({e})",
                    case.name
                )),
                (Ok(()), Ok(())) => {
                    let diffs = tree_diffs(&bsd, &rs_root, RootTime::Skip);
                    if diffs.is_empty() {
                        t.same_as_bsdtar.push(case.name.clone());
                    } else {
                        t.failures.push(format!(
                            "{}: tree differs from bsdtar's:\n  {}",
                            case.name,
                            diffs.join("\n  ")
                        ));
                    }
                }
            }
        }
        (Expect::Either, ..) => unreachable!("resolved above"),
    }
    if rs.is_ok() && case.holes {
        t.failures.extend(
            holes_kept(&rs_root)
                .into_iter()
                .map(|b| format!("{}: {b}", case.name)),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tools_present() -> bool {
    ["umoci", "bsdtar", "git", "dpkg-deb", "setfattr", "mknod"]
        .iter()
        .all(|t| have(t))
}

#[test]
fn archives_other_tools_write_unpack_as_the_go_umoci_or_bsdtar() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let mut cases = tool_cases(tmp.path());
    cases.extend(go_cases());
    let mut t = Tally::default();
    let work = tmp.path().join("work");
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    for c in &cases {
        check(c, &work, start, &mut t);
    }
    eprintln!(
        "corpus: {} archives; {} as the Go umoci, {} as bsdtar (the Go umoci refuses), {} refused by both\n  as bsdtar: {:?}\n  refused: {:?}",
        cases.len(),
        t.same_as_go.len(),
        t.same_as_bsdtar.len(),
        t.both_refuse.len(),
        t.same_as_bsdtar,
        t.both_refuse
    );
    assert!(
        t.failures.is_empty(),
        "{} of {} archives:\n{}",
        t.failures.len(),
        cases.len(),
        t.failures.join("\n")
    );
    // the corpus is what it says: tool cases and Go's test data both ran
    assert!(t.same_as_go.len() >= 10, "{t:?}");
}

/// Go's 60 GB sparse test members: extracted at their real size, costing
/// only their data blocks on disk, with the data where the map puts it.
#[test]
fn big_sparse_members_cost_their_data() {
    let dir = Path::new("/usr/lib/go/src/archive/tar/testdata");
    if !dir.exists() || !have("umoci") {
        return;
    }
    for name in ["gnu-sparse-big.tar", "pax-sparse-big.tar"] {
        let tmp = tempfile::tempdir().expect("tmp");
        let img = go_layout(tmp.path(), &dir.join(name)).expect("layout");
        let b = tmp.path().join("b");
        unpack(rumoci_bin(), &img, &b).expect(name);
        let mut files: BTreeMap<PathBuf, u64> = BTreeMap::new();
        for (p, f) in tree_facts_shallow(&b.join("rootfs")) {
            files.insert(p, f);
        }
        let (path, size) = files
            .iter()
            .find(|(_, s)| **s > 1 << 30)
            .expect("a big file");
        let md = std::fs::metadata(b.join("rootfs").join(path)).expect("stat");
        assert_eq!(*size, 60_000_000_000, "{name}");
        assert!(
            md.blocks() * 512 < 1 << 20,
            "{name}: {} blocks",
            md.blocks()
        );
        // the mtree records the real content's digest
        let mtree = mtree_body(&b);
        assert!(mtree.contains("size=60000000000"), "{name}: {mtree}");
    }
}

/// Path and size of every regular file (not reading content).
fn tree_facts_shallow(root: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).expect("lstat");
        if md.is_dir() {
            for e in std::fs::read_dir(&p).expect("readdir") {
                stack.push(e.expect("entry").path());
            }
        } else if md.is_file() {
            out.push((
                p.strip_prefix(root).expect("prefix").to_path_buf(),
                md.size(),
            ));
        }
    }
    out
}

/// A sparse file survives unpack, change and repack: the repacked layer
/// holds it as a plain file (as the Go umoci writes it), with the same
/// diff_id as the same tree holding a plain copy, and the Go umoci unpacks
/// it to the same content.
#[test]
fn repack_writes_sparse_files_plain() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    make_sparse(&src.join("sparse.img"));
    let tar = tmp.path().join("l.tar");
    sh_ok(&format!("bsdtar -cf {} -C {} .", s(&tar), s(&src)));
    let img = go_layout(tmp.path(), &tar).expect("layout");
    let layout = tmp.path().join("layout");
    let mut diff_ids = Vec::new();
    for (i, desparse) in [false, true].into_iter().enumerate() {
        let b = tmp.path().join(format!("b{i}"));
        rumoci_ok(&["unpack", "--image", &img, s(&b)]);
        let f = b.join("rootfs/sparse.img");
        if desparse {
            // rewritten in place (the root directory untouched): every
            // zero written
            sh_ok(&format!(
                "cp --sparse=never {0} {1} && cat {1} > {0}",
                s(&f),
                s(&tmp.path().join("plain-copy"))
            ));
            assert!(std::fs::metadata(&f).expect("stat").blocks() * 512 >= 5 << 20);
        }
        run_ok("touch", &["-d", "2022-02-02 00:00:00", s(&f)]);
        let tag = format!("{}:r{i}", s(&layout));
        rumoci_ok(&["repack", "--image", &tag, s(&b)]);
        let m = read_blob_json(
            &layout,
            index_entry(&layout, &format!("r{i}"))["digest"]
                .as_str()
                .expect("d"),
        );
        let cfg = read_blob_json(&layout, m["config"]["digest"].as_str().expect("c"));
        diff_ids.push(cfg["rootfs"]["diff_ids"][1].clone());
        // the Go umoci reads the repacked layer: same content
        let go = tmp.path().join(format!("go{i}"));
        run_ok("umoci", &["unpack", "--image", &tag, s(&go)]);
        assert_eq!(
            std::fs::read(go.join("rootfs/sparse.img")).expect("go"),
            std::fs::read(&f).expect("rs")
        );
    }
    assert!(diff_ids[0].is_string(), "{diff_ids:?}");
    assert_eq!(diff_ids[0], diff_ids[1]);
}

const PLUGINS: &[&str] = &["dir-cas", "layer-cache", "overlay"];

/// Lazily unmounts every mount beneath a directory when dropped.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let dir = std::fs::canonicalize(&self.0).unwrap_or_else(|_| self.0.clone());
        for line in info.lines() {
            if let Some(point) = line.split(' ').nth(4)
                && Path::new(point).starts_with(&dir)
            {
                let _ = Command::new("umount").args(["-l", point]).status();
            }
        }
    }
}

/// The same archives through every driver: a content-store plugin
/// (dir-cas), the layer cache (cold, then warm) and the overlay store give
/// the built-in driver's tree, the same mtree, and sparse files with their
/// holes.
#[test]
fn every_driver_reads_them_alike() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let _guard = Unmount(tmp.path().to_path_buf());
    let full = tmp.path().join("src");
    make_src(&full, true);
    let l = tmp.path().join("layout");
    let img = format!("{}:t", s(&l));
    run_ok("umoci", &["init", "--layout", s(&l)]);
    run_ok("umoci", &["new", "--image", &img]);
    // PAX GNU 1.0 sparse (bsdtar), old GNU sparse, a PAX global header
    for (i, script) in [
        format!("bsdtar -cf OUT -C {} .", s(&full)),
        format!("tar --format=gnu --sparse -cf OUT -C {} sparse.img dir", s(&full)),
        format!(
            "cd {0} && git init -q . && git add -A && git -c user.name=t -c user.email=t@t commit -q -m m && git archive --format=tar HEAD > OUT",
            s(&tmp.path().join("repo-src"))
        ),
    ]
    .iter()
    .enumerate()
    {
        if i == 2 {
            std::fs::create_dir_all(tmp.path().join("repo-src/dir")).expect("mkdir");
            std::fs::write(tmp.path().join("repo-src/dir/from-git"), b"git\n").expect("w");
        }
        let tar = tmp.path().join(format!("l{i}.tar"));
        sh_ok(&script.replace("OUT", s(&tar)));
        run_ok("umoci", &["raw", "add-layer", "--image", &img, s(&tar)]);
    }
    let plain = tmp.path().join("plain");
    rd_ok(&["unpack", "--image", &img, s(&plain)]);
    assert!(plain.join("rootfs/dir/from-git").is_file());
    let mut failures = holes_kept(&plain.join("rootfs"));

    let dir_cas = format!("{},dir={}", plugin_wasm(PLUGINS, "dir-cas"), s(&l));
    let cache = format!(
        "{},dir={}",
        plugin_wasm(PLUGINS, "layer-cache"),
        s(&tmp.path().join("cache"))
    );
    let overlay = format!(
        "{},dir={}",
        plugin_wasm(PLUGINS, "overlay"),
        s(&tmp.path().join("ovl"))
    );
    let mut runs = vec![
        ("dir-cas", dir_cas),
        ("layer-cache cold", cache.clone()),
        ("layer-cache warm", cache),
    ];
    if rustix::process::geteuid().is_root()
        && std::fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.contains("overlay"))
    {
        runs.push(("overlay", overlay));
    }
    for (i, (name, driver)) in runs.iter().enumerate() {
        let b = tmp.path().join(format!("b{i}"));
        rd_ok(&["--driver", driver, "unpack", "--image", &img, s(&b)]);
        let diffs = tree_diffs(
            &plain.join("rootfs"),
            &b.join("rootfs"),
            RootTime::UnpackTimeAfter(i64::MAX),
        );
        if !diffs.is_empty() {
            failures.push(format!("{name}: {}", diffs.join("\n  ")));
        }
        // overlayfs counts a merged directory's links as 1: nlink aside
        let no_nlink = |t: String| {
            t.split(' ')
                .filter(|w| !w.starts_with("nlink="))
                .collect::<Vec<_>>()
                .join(" ")
        };
        if no_nlink(mtree_body(&plain)) != no_nlink(mtree_body(&b)) {
            failures.push(format!("{name}: the mtree differs"));
        }
        failures.extend(
            holes_kept(&b.join("rootfs"))
                .into_iter()
                .map(|f| format!("{name}: {f}")),
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Layouts other tools write: buildah's commit of a tree (OCI, and with
/// `--format docker` converted by its `oci:` transport), and skopeo's
/// round trip through a `docker-archive:` tarball (Docker's own save
/// format). Each unpacks, with rumoci and with the Go umoci, to the same
/// tree; `verify` accepts it; `gc` keeps every blob the tags reach.
///
/// And what skopeo 1.9 does when the same archive goes into buildah's
/// layout: it reuses buildah's uncompressed layer blob under a `tar+gzip`
/// descriptor. `verify` names that layer (a blob is checked once per media
/// type it is read as, not once per digest), and both umocis refuse to
/// unpack it, leaving no bundle.
#[test]
fn layouts_buildah_and_skopeo_write_unpack_as_the_go_umoci() {
    if !tools_present() || !have("buildah") || !have("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let t = tmp.path();
    let src = t.join("src");
    make_src(&src, true);
    let storage = t.join("storage");
    let buildah = |args: &[&str]| -> String {
        let mut all = vec![
            "--storage-driver",
            "vfs",
            "--root",
            s(&storage),
            "--runroot",
            s(&storage),
        ];
        all.extend_from_slice(args);
        run_ok("buildah", &all).trim().to_string()
    };
    let c = buildah(&["from", "scratch"]);
    buildah(&["copy", &c, s(&src), "/"]);
    buildah(&["config", "--cmd", "/bin/sh", "--env", "A=1", &c]);
    let l = t.join("layout");
    buildah(&["commit", &c, &format!("oci:{}:oci", s(&l))]);
    buildah(&[
        "commit",
        "--format",
        "docker",
        &c,
        &format!("oci:{}:docker", s(&l)),
    ]);
    let archive = t.join("image.tar");
    let l3 = t.join("from-archive");
    run_ok(
        "skopeo",
        &[
            "copy",
            "-q",
            &format!("oci:{}:oci", s(&l)),
            &format!("docker-archive:{}:corpus/app:v1", s(&archive)),
        ],
    );
    run_ok(
        "skopeo",
        &[
            "copy",
            "-q",
            &format!("docker-archive:{}", s(&archive)),
            &format!("oci:{}:archive", s(&l3)),
        ],
    );
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut failures = Vec::new();
    for (layout, tag) in [(&l, "oci"), (&l, "docker"), (&l3, "archive")] {
        let img = format!("{}:{tag}", s(layout));
        let go = t.join(format!("go-{tag}"));
        let rs = t.join(format!("rs-{tag}"));
        run_ok("umoci", &["unpack", "--image", &img, s(&go)]);
        rumoci_ok(&["unpack", "--image", &img, s(&rs)]);
        let diffs = tree_diffs(
            &go.join("rootfs"),
            &rs.join("rootfs"),
            RootTime::UnpackTimeAfter(start),
        );
        if !diffs.is_empty() {
            failures.push(format!("{tag}: {}", diffs.join("\n  ")));
        }
        assert!(rs.join("rootfs/dir/file").is_file(), "{tag}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for layout in [&l, &l3] {
        rumoci_ok(&["verify", "--layout", s(layout)]);
        let blobs = || {
            std::fs::read_dir(layout.join("blobs/sha256"))
                .expect("ls")
                .count()
        };
        let before = blobs();
        rumoci_ok(&["gc", "--layout", s(layout)]);
        assert_eq!(before, blobs(), "gc removed blobs the tags reach");
    }

    // skopeo's reuse of an uncompressed blob under a gzip descriptor
    run_ok(
        "skopeo",
        &[
            "copy",
            "-q",
            &format!("docker-archive:{}", s(&archive)),
            &format!("oci:{}:reused", s(&l)),
        ],
    );
    let m = read_blob_json(&l, index_entry(&l, "reused")["digest"].as_str().expect("d"));
    let layer = m["layers"][0]["digest"]
        .as_str()
        .expect("layer")
        .to_string();
    let bytes = std::fs::read(blob_path(&l, &layer)).expect("blob");
    if bytes.starts_with(&[0x1f, 0x8b]) {
        eprintln!("skipped: this skopeo compressed the layer (no reuse to check)");
        return;
    }
    let out = rumoci(&["verify", "--layout", s(&l)]);
    let err =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&layer) && err.contains("gzip"), "{err}");
    assert!(err.contains(": 1 problem found"), "{err}");
    let img = format!("{}:reused", s(&l));
    let b = t.join("reused-bundle");
    let out = rumoci(&["unpack", "--image", &img, s(&b)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&layer), "{err}");
    assert!(!b.exists(), "a failed unpack leaves no bundle");
    let go = Command::new("umoci")
        .args(["unpack", "--image", &img, s(&t.join("go-reused"))])
        .output()
        .expect("umoci");
    assert!(!go.status.success(), "the Go umoci refuses it too");
}
