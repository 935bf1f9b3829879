//! Shared helpers for the end-to-end tests: run rumoci and the real peers
//! (Go umoci, skopeo, go), compare layouts.
#![allow(dead_code, missing_docs)]

pub mod registry;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Path of the rumoci binary under test.
pub fn rumoci_bin() -> &'static str {
    env!("CARGO_BIN_EXE_rumoci")
}

/// Run rumoci with `args`.
pub fn rumoci(args: &[&str]) -> Output {
    Command::new(rumoci_bin())
        .args(args)
        .output()
        .expect("spawn rumoci")
}

/// Run rumoci and require success.
pub fn rumoci_ok(args: &[&str]) -> String {
    let out = rumoci(args);
    assert!(
        out.status.success(),
        "rumoci {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run rumoci with extra environment variables and require success;
/// returns stdout.
pub fn rumoci_env_ok(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(rumoci_bin())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("spawn rumoci");
    assert!(
        out.status.success(),
        "rumoci {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The owner of `p` (not following a symlink).
pub fn owner(p: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(p).expect("lstat");
    (md.uid(), md.gid())
}

/// Run a prepared command and require success; returns stdout.
pub fn command_ok(c: &mut Command) -> String {
    let out = c.output().expect("spawn");
    assert!(
        out.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run any program and require success; returns stdout.
pub fn run_ok(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("spawn {prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether a peer tool is installed. In CI (`CI` set) a missing peer is a
/// failure; elsewhere the test prints why it is skipped.
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("{tool} is required in CI but is not installed");
        }
        eprintln!("SKIPPED: {tool} is not installed");
    }
    found
}

/// Build (once per test binary) a Go program from `tests/go/<name>` in
/// GOPATH mode against Debian's Go packages.
pub fn go_tool(name: &str) -> Option<PathBuf> {
    static BUILT: OnceLock<std::sync::Mutex<BTreeMap<String, PathBuf>>> = OnceLock::new();
    if !have("go") {
        return None;
    }
    let map = BUILT.get_or_init(Default::default);
    let mut map = map.lock().expect("lock");
    if let Some(p) = map.get(name) {
        return Some(p.clone());
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/go")
        .join(name);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("go-{name}"));
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&src)
        .env("GOPATH", "/usr/share/gocode")
        .env("GO111MODULE", "off")
        .env(
            "GOCACHE",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("gocache"),
        )
        .status()
        .expect("spawn go build");
    assert!(status.success(), "go build of {name} failed");
    map.insert(name.to_string(), out.clone());
    Some(out)
}

/// Every file under `root` with its content hash (or link target), for
/// "nothing changed" assertions. rumoci's lock file of a plugin store
/// (`.rumoci-index.lock`, empty, serialising index updates) is left out.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).expect("prefix").to_path_buf();
            if rel.as_os_str() == ".rumoci-index.lock" {
                continue;
            }
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                out.insert(rel, "dir".into());
                walk(root, &p, out);
            } else if ft.is_symlink() {
                out.insert(rel, format!("link:{:?}", std::fs::read_link(&p).ok()));
            } else if ft.is_file() {
                let data = std::fs::read(&p).unwrap_or_default();
                out.insert(rel, rumoci::oci::Digest::sha256_of(&data).to_string());
            } else {
                // never open a fifo or a device: it could block
                out.insert(rel, format!("special:{ft:?}"));
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// The descriptor `index.json` holds for `tag`.
pub fn index_entry(layout: &Path, tag: &str) -> serde_json::Value {
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("read index"))
            .expect("parse index");
    idx["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .cloned()
        .unwrap_or_else(|| panic!("tag {tag} not in index.json"))
}

/// Rewrite `layout`'s `index.json` with `edit` applied to its `manifests`.
pub fn edit_index(layout: &Path, edit: impl FnOnce(&mut Vec<serde_json::Value>)) {
    let path = layout.join("index.json");
    let mut idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read index")).expect("parse index");
    edit(idx["manifests"].as_array_mut().expect("manifests"));
    std::fs::write(&path, serde_json::to_vec(&idx).expect("json")).expect("write index");
}

/// Path of a blob named by a `sha256:…` digest string.
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').expect("digest");
    layout.join("blobs").join(alg).join(hex)
}

/// Read a JSON blob.
pub fn read_blob_json(layout: &Path, digest: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(blob_path(layout, digest)).expect("read blob"))
        .expect("parse blob")
}

/// One file's metadata, as compared between two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFacts {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub content: Option<String>,
    pub link: Option<PathBuf>,
    pub rdev: u64,
    pub mtime: i64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Other paths in the same tree sharing this inode (hardlink group).
    pub links: Vec<PathBuf>,
}

/// Every entry under `root` (not following symlinks) with the facts that
/// must match between two unpacks.
pub fn tree_facts(root: &Path) -> BTreeMap<PathBuf, FileFacts> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).expect("lstat");
        let ft = md.file_type();
        let rel = p.strip_prefix(root).expect("prefix").to_path_buf();
        let kind = rumoci::mtree::type_name(&md);
        let mut xattrs = BTreeMap::new();
        if let Ok(names) = xattr::list(&p) {
            for n in names {
                let n = n.to_string_lossy().into_owned();
                if n == "security.selinux" {
                    continue;
                }
                if let Ok(Some(v)) = xattr::get_deref(&p, &n).or_else(|_| xattr::get(&p, &n)) {
                    xattrs.insert(n, v);
                }
            }
        }
        let content = ft
            .is_file()
            .then(|| rumoci::oci::Digest::sha256_of(&std::fs::read(&p).expect("read")).to_string());
        if !ft.is_dir() && md.nlink() > 1 {
            inodes
                .entry((md.dev(), md.ino()))
                .or_default()
                .push(rel.clone());
        }
        out.insert(
            rel.clone(),
            FileFacts {
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                size: if ft.is_dir() { 0 } else { md.size() },
                content,
                link: ft
                    .is_symlink()
                    .then(|| std::fs::read_link(&p).expect("readlink")),
                rdev: if ft.is_char_device() || ft.is_block_device() {
                    md.rdev()
                } else {
                    0
                },
                mtime: md.mtime(),
                xattrs,
                links: Vec::new(),
            },
        );
        if ft.is_dir() {
            for e in std::fs::read_dir(&p).expect("readdir") {
                stack.push(e.expect("entry").path());
            }
        }
    }
    for group in inodes.values() {
        for p in group {
            if let Some(f) = out.get_mut(p) {
                f.links = group.iter().filter(|q| *q != p).cloned().collect();
                f.links.sort();
            }
        }
    }
    out
}

/// Assert two trees are equal file by file; lists every difference.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    assert_same_facts(&tree_facts(expected), &tree_facts(actual));
}

/// Assert two trees' [`tree_facts`] are equal; lists every difference.
pub fn assert_same_facts(a: &BTreeMap<PathBuf, FileFacts>, b: &BTreeMap<PathBuf, FileFacts>) {
    let mut diffs = Vec::new();
    for (p, fa) in a {
        match b.get(p) {
            None => diffs.push(format!("missing: {}", p.display())),
            Some(fb) if fa != fb => diffs.push(format!(
                "differs: {}\n  want {fa:?}\n  got  {fb:?}",
                p.display()
            )),
            _ => {}
        }
    }
    for p in b.keys() {
        if !a.contains_key(p) {
            diffs.push(format!("extra: {}", p.display()));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// A path as the `&str` a command line takes (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `touch -d DATE PATHS…`: set the times of `paths` to `date`.
pub fn touch_at(date: &str, paths: &[&Path]) {
    let mut args = vec!["-d", date];
    args.extend(paths.iter().map(|p| s(p)));
    run_ok("touch", &args);
}

/// The digest `tag` names in the built-in layout `l`.
pub fn tag_digest(l: &Path, tag: &str) -> Option<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(l.join("index.json")).ok()?).ok()?;
    index["manifests"]
        .as_array()?
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .map(|m| m["digest"].as_str().unwrap_or_default().to_string())
}

/// Write each `(path, contents)` beneath `root`, making parent directories.
pub fn write_files(root: &Path, files: &[(&str, &[u8])]) {
    for (rel, data) in files {
        let p = root.join(rel);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        std::fs::write(&p, data).expect("write");
    }
}

/// `--uid-map` and `--gid-map` flags mapping container ids 0-65535 to host
/// uids from 100000 and gids from 200000.
pub const ID_MAPS: [&str; 4] = ["--uid-map", "0:100000:65536", "--gid-map", "0:200000:65536"];

/// `referrers attach --image IMG --artifact-type application/spdx+json`
/// followed by `rest` (more flags, then the artifact's file).
pub fn attach_sbom_args<'a>(img: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "referrers",
        "attach",
        "--image",
        img,
        "--artifact-type",
        "application/spdx+json",
    ];
    args.extend_from_slice(rest);
    args
}

/// With the Go umoci: `config --image IMG` with `flags`.
pub fn go_config(img: &str, flags: &[&str]) {
    run_ok("umoci", &[&["config", "--image", img][..], flags].concat());
}

/// With the Go umoci: a new layout `l` holding a blank image tagged `t`;
/// returns the image (`L:t`).
pub fn go_new_layout(l: &Path) -> String {
    run_ok("umoci", &["init", "--layout", s(l)]);
    let img = format!("{}:t", s(l));
    run_ok("umoci", &["new", "--image", &img]);
    img
}

/// With the Go umoci: a new layout `tmp/layout` holding an image tagged
/// `t`, unpacked into `tmp/gobundle`, its rootfs filled by `fill` and
/// repacked. Returns the image (`LAYOUT:t`), the layout and the bundle.
pub fn go_new_image(tmp: &Path, fill: impl FnOnce(&Path)) -> (String, PathBuf, PathBuf) {
    let l = tmp.join("layout");
    let img = go_new_layout(&l);
    let b = tmp.join("gobundle");
    run_ok("umoci", &["unpack", "--image", &img, s(&b)]);
    fill(&b.join("rootfs"));
    run_ok("umoci", &["repack", "--image", &img, s(&b)]);
    (img, l, b)
}

/// A tree with every kind of entry: files, empty file, long names, a big
/// file, absolute/relative symlinks, hardlinks (also to a symlink), a fifo,
/// devices, setuid/sticky, xattrs, odd owners.
pub fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::create_dir_all(root.join("usr/share/deep/er/still")).expect("mkdir");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    write_files(
        root,
        &[
            (
                "etc/passwd",
                b"root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\n",
            ),
            ("etc/group", b"root:x:0:\nstaff:x:50:alice\nalice:x:1000:\n"),
            ("usr/share/file", b"hello\n"),
            ("usr/share/empty", b""),
            (&format!("usr/share/{}", "x".repeat(150)), b"long\n"),
            ("usr/share/deep/er/still/big", &vec![42u8; 3_000_000]),
        ],
    );
    std::os::unix::fs::symlink("/etc/passwd", root.join("usr/abs")).expect("symlink");
    std::os::unix::fs::symlink("../share/file", root.join("usr/share/deep/rel")).expect("symlink");
    std::fs::hard_link(root.join("usr/share/file"), root.join("usr/hard")).expect("link");
    run_ok("mkfifo", &[s(&root.join("usr/fifo"))]);
    run_ok("mknod", &[s(&root.join("usr/null")), "c", "1", "3"]);
    run_ok("mknod", &[s(&root.join("usr/blk")), "b", "7", "0"]);
    run_ok("chmod", &["4755", s(&root.join("usr/share/file"))]);
    run_ok("chmod", &["1777", s(&root.join("usr/share/deep"))]);
    run_ok("chown", &["1000:50", s(&root.join("usr/share/empty"))]);
    run_ok("chown", &["-h", "123:456", s(&root.join("usr/abs"))]);
    run_ok(
        "setfattr",
        &[
            "-n",
            "user.note",
            "-v",
            "hi there",
            s(&root.join("usr/share/file")),
        ],
    );
    run_ok(
        "setfattr",
        &["-n", "user.dir", "-v", "d", s(&root.join("usr/share"))],
    );
    // xattrs on a device and a fifo (trusted.*: user.* is not allowed there)
    for (n, f) in [("trusted.dev", "usr/blk"), ("trusted.pipe", "usr/fifo")] {
        run_ok("setfattr", &["-h", "-n", n, "-v", "x", s(&root.join(f))]);
    }
    if Path::new("/bin/busybox").exists() {
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).expect("symlink");
    }
    run_ok(
        "find",
        &[
            s(root),
            "-exec",
            "touch",
            "-h",
            "-d",
            "2020-05-06 07:08:09",
            "{}",
            "+",
        ],
    );
}

/// Build an image with the Go umoci: layer 1 = the tree, layer 2 = changes
/// (deletions → whiteouts, a replaced directory, new files).
pub fn go_image(tmp: &Path) -> (String, std::path::PathBuf) {
    let (img, l, b) = go_new_image(tmp, make_tree);
    let r = b.join("rootfs");
    // second layer
    std::fs::remove_dir_all(r.join("usr/share/deep")).expect("rm");
    std::fs::remove_file(r.join("usr/null")).expect("rm");
    std::fs::remove_dir_all(r.join("etc")).expect("rm");
    std::fs::write(r.join("etc"), b"now a file\n").expect("w");
    std::fs::write(r.join("usr/new"), b"new\n").expect("w");
    touch_at("2021-01-01 00:00:00", &[&r.join("usr/new"), &r.join("etc")]);
    run_ok("umoci", &["repack", "--image", &img, s(&b)]);
    go_config(
        &img,
        &["--config.user", "1000:50", "--config.cmd", "/bin/sh"],
    );
    (img, l)
}

/// A temporary directory holding [`go_image`]'s layout, or `None` (the test
/// is skipped, with a message) where the Go umoci or setfattr is missing.
pub fn go_fixture() -> Option<(tempfile::TempDir, String, PathBuf)> {
    if !have("umoci") || !have("setfattr") {
        eprintln!("skipped: umoci or setfattr missing");
        return None;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (img, layout) = go_image(tmp.path());
    Some((tmp, img, layout))
}

/// Hold gc's exclusive lock on `dir` (a layout or a plugin's store), start
/// `cmd`, check it is still waiting after a while (`while_held` runs then),
/// release the lock, and check it succeeds.
pub fn waits_for_gc_lock(
    dir: &Path,
    cmd: &mut std::process::Command,
    held_by: &str,
    while_held: impl FnOnce(),
) {
    let lock = std::fs::File::open(dir).expect("open directory");
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("flock");
    let mut child = cmd
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "tag finished while gc held the {held_by}"
    );
    while_held();
    drop(lock);
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Build the workspace plugins `names` for `wasm32-wasip2` (once per test
/// binary; cargo caches across runs) into `$CARGO_TARGET_TMPDIR/plugins`,
/// their own target directory so the outer cargo's lock is not contended.
/// Returns the directory holding the `.wasm` files.
pub fn build_plugins(names: &[&str]) -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugins");
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(root)
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            // Smaller components compile faster; no debug info needed here.
            .args(["--config", "profile.release.debug=false"])
            .args(["--config", "profile.release.strip=true"])
            .env("CARGO_TARGET_DIR", &target);
        for p in names {
            cmd.args(["-p", p]);
        }
        let status = cmd.status().expect("run cargo build for the plugins");
        assert!(
            status.success(),
            "building the test plugins {names:?} failed"
        );
        target.join("wasm32-wasip2").join("release")
    })
}

/// The `.wasm` file of plugin `name`, one of `names` (built by
/// [`build_plugins`]).
pub fn plugin_wasm(names: &[&str], name: &str) -> String {
    let p = build_plugins(names).join(format!("{}.wasm", name.replace('-', "_")));
    assert!(p.is_file(), "{} missing", p.display());
    p.to_str().expect("utf-8").to_string()
}

/// The test-local cache of compiled plugins (`XDG_CACHE_HOME`).
pub fn cache_home() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("xdg-cache")
}

/// Run rumoci with the test-local compiled-plugin cache and a fixed time.
pub fn rd(args: &[&str]) -> Output {
    Command::new(rumoci_bin())
        .args(args)
        .env("XDG_CACHE_HOME", cache_home())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("spawn rumoci")
}

/// [`rd`], requiring success; returns stdout.
pub fn rd_ok(args: &[&str]) -> String {
    let out = rd(args);
    assert!(
        out.status.success(),
        "rumoci {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`rd`], requiring failure; returns stderr.
pub fn rd_err(args: &[&str]) -> String {
    let out = rd(args);
    assert!(!out.status.success(), "rumoci {args:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A bundle's mtree manifest without its header comments (user, host,
/// date and tree path differ between bundles).
pub fn mtree_body(bundle: &Path) -> String {
    let f = std::fs::read_dir(bundle)
        .expect("read bundle")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "mtree"))
        .expect("mtree in bundle");
    let text = std::fs::read_to_string(f).expect("read mtree");
    // the header ends where the root entry starts
    let at = text.find("\n# .\n").expect("root entry in the mtree");
    text[at..].to_string()
}

/// `driver snapshots` output: the header, then (name, kind, parent, size,
/// inodes) per line.
pub fn snapshot_rows(driver: &str) -> Vec<[String; 5]> {
    let out = rd_ok(&["--driver", driver, "driver", "snapshots"]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "KIND", "PARENT", "SIZE", "INODES"],
        "{out}"
    );
    lines
        .map(|l| {
            let c: Vec<String> = l.split_whitespace().map(String::from).collect();
            c.try_into()
                .unwrap_or_else(|c| panic!("not 5 columns: {c:?}"))
        })
        .collect()
}

/// `rumoci driver test`'s last line says no check failed.
pub fn assert_no_check_failed(stdout: &str) {
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.contains(" 0 failed"), "{stdout}");
}
