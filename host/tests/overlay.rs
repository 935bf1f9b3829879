//! The `overlay` layer-store plugin end to end: layers extracted alone in
//! overlayfs form, the bundle's rootfs an overlay mount of them, repack
//! from the upper directory only, `rumoci umount`/`mount`, rootless inside
//! a user namespace. Every tree is compared with the Go umoci's.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

const PLUGINS: &[&str] = &["overlay", "layer-cache"];

fn overlay_wasm() -> String {
    plugin_wasm(PLUGINS, "overlay")
}

/// Lazily unmounts every overlay beneath its directory when dropped, so a
/// failing test never leaves a mount behind.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        for m in mounts_beneath(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
    }
}

/// Mount points at or beneath `dir` (from `/proc/self/mountinfo`) with
/// their filesystem type and super options.
fn mountinfo_beneath(dir: &Path) -> Vec<(PathBuf, String, String)> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mut out = Vec::new();
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        let point = PathBuf::from(f[4].replace("\\040", " "));
        if point.starts_with(&dir) {
            out.push((
                point,
                f[sep + 1].to_string(),
                f.get(sep + 3).copied().unwrap_or("").to_string(),
            ));
        }
    }
    out
}

fn mounts_beneath(dir: &Path) -> Vec<PathBuf> {
    mountinfo_beneath(dir).into_iter().map(|m| m.0).collect()
}

/// A guard that unmounts what is mounted beneath `dir` when dropped, the
/// overlay store directory beneath `dir` and the `--driver` for it.
fn guarded_store(dir: &Path) -> (Unmount, PathBuf, String) {
    let store = dir.join("store");
    let driver = format!("{},dir={}", overlay_wasm(), s(&store));
    (Unmount(dir.to_path_buf()), store, driver)
}

/// Whether overlayfs can be mounted here at all (root, module present).
fn overlay_works() -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: not root");
        return false;
    }
    let ok = std::fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.contains("overlay"));
    if !ok {
        eprintln!("skipped: no overlayfs");
    }
    ok
}

/// The manifest of `tag` and its layers' digests.
fn layers_of(layout: &Path, tag: &str) -> Vec<String> {
    let m = read_blob_json(
        layout,
        index_entry(layout, tag)["digest"].as_str().expect("digest"),
    );
    m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect()
}

/// Names in the tar of the last layer of `tag` (`./` and trailing `/`
/// trimmed, the root as `""`), sorted.
fn top_layer_names(layout: &Path, tag: &str) -> Vec<String> {
    let top = layers_of(layout, tag).pop().expect("a layer");
    let listing = run_ok("tar", &["-tzf", s(&blob_path(layout, &top))]);
    let mut v: Vec<String> = listing
        .lines()
        .map(|l| {
            let l = l.strip_prefix("./").unwrap_or(l);
            l.trim_end_matches('/').to_string()
        })
        .collect();
    v.sort();
    v
}

/// A layer written by hand (the Go umoci never writes these): a hardlink
/// to a file of a lower layer, a file in a lower directory without that
/// directory's header, a whiteout of a lower fifo.
fn hand_layer(tmp: &Path, img: &str) {
    add_python_layer(
        img,
        &tmp.join("hand.tar"),
        r#"
add("usr/hard3", type=tarfile.LNKTYPE, linkname="usr/share/file", mtime=1600000000)
add("usr/share/added", b"added under a lower directory\n", mtime=1600000000, mode=0o640)
add("usr/.wh.fifo", b"", mtime=0)
"#,
    );
}

/// The names a repacked layer holds for the changes both repack tests make
/// to the fixture's tree beneath `etc` and `usr` (a changed file, a
/// deleted one, a directory replaced), after the root and any whiteout
/// of `bin`.
const CHANGED_NAMES: [&str; 6] = [
    "etc",
    "usr",
    "usr/.wh.new",
    "usr/lib",
    "usr/lib/.wh..wh..opq",
    "usr/lib/fresh",
];

/// `--driver DRIVER unpack --image IMG BUNDLE`.
fn unpack_args<'a>(driver: &'a str, img: &'a str, bundle: &'a Path) -> [&'a str; 6] {
    ["--driver", driver, "unpack", "--image", img, s(bundle)]
}

/// Python: `add(name, data=None, **attrs)` adds to the tarfile `t` an
/// entry `name` with the `TarInfo` attributes `attrs`, and with `data`
/// (bytes) as its contents if given.
const PY_ADD: &str = "
def add(name, data=None, **attrs):
    i = tarfile.TarInfo(name)
    for k, v in attrs.items():
        setattr(i, k, v)
    if data is None:
        t.addfile(i)
    else:
        i.size = len(data)
        t.addfile(i, io.BytesIO(data))
";

/// Add to `img` a layer `tar` whose entries the Python lines `entries`
/// write into the PAX `tarfile` `t` (`io` imported, [`PY_ADD`]'s `add`
/// defined).
fn add_python_layer(img: &str, tar: &Path, entries: &str) {
    let py = format!(
        "import tarfile, io\nt = tarfile.open({tar:?}, \"w\", format=tarfile.PAX_FORMAT)\n{PY_ADD}\n{entries}\nt.close()\n",
        tar = s(tar)
    );
    run_ok("python3", &["-c", &py]);
    run_ok("umoci", &["raw", "add-layer", "--image", img, s(tar)]);
}

/// [`go_fixture`]'s one layer (tagged `base`), then a hand-written layer,
/// a whiteout of the directory `/usr/share`, and an opaque insert of
/// `/usr/lib` over an earlier one, by the Go umoci.
fn fixture() -> Option<(tempfile::TempDir, String, PathBuf)> {
    if !overlay_works() {
        return None;
    }
    let (tmp, img, layout) = go_fixture()?;
    run_ok("umoci", &["tag", "--image", &img, "base"]);
    hand_layer(tmp.path(), &img);
    run_ok(
        "umoci",
        &["insert", "--image", &img, "--whiteout", "/usr/share"],
    );
    let src = tmp.path().join("ins");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    std::fs::write(src.join("sub/lib.so"), b"opaque content\n").expect("w");
    std::fs::create_dir_all(tmp.path().join("pre")).expect("mkdir");
    // a /usr/lib with content first, so that the opaque insert hides it
    std::fs::write(tmp.path().join("pre/old.so"), b"hidden\n").expect("w");
    run_ok(
        "umoci",
        &[
            "insert",
            "--image",
            &img,
            s(&tmp.path().join("pre")),
            "/usr/lib",
        ],
    );
    run_ok(
        "umoci",
        &["insert", "--opaque", "--image", &img, s(&src), "/usr/lib"],
    );
    assert_eq!(layers_of(&layout, "t").len(), 5);
    Some((tmp, img, layout))
}

/// [`fixture`] unpacked with the overlay driver into `bundle`. Fields drop
/// in order: the guard unmounts before the directory goes.
struct Unpacked {
    _guard: Unmount,
    tmp: tempfile::TempDir,
    img: String,
    layout: PathBuf,
    store: PathBuf,
    driver: String,
    bundle: PathBuf,
}

fn unpacked() -> Option<Unpacked> {
    let (tmp, img, layout) = fixture()?;
    let (_guard, store, driver) = guarded_store(tmp.path());
    let bundle = tmp.path().join("bundle");
    rd_ok(&unpack_args(&driver, &img, &bundle));
    Some(Unpacked {
        _guard,
        tmp,
        img,
        layout,
        store,
        driver,
        bundle,
    })
}

fn layer_dirs(store: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(store.join("layers"))
        .expect("layers")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

fn lowerdirs(bundle: &Path) -> Vec<PathBuf> {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("umoci.json")).expect("umoci.json"))
            .expect("json");
    meta["overlay"]["lowerdirs"]
        .as_array()
        .expect("overlay.lowerdirs in umoci.json")
        .iter()
        .map(|v| PathBuf::from(v.as_str().expect("str")))
        .collect()
}

fn is_whiteout(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

#[test]
fn unpack_mounts_layers_extracted_alone_and_matches_the_go_umoci() {
    let Some((tmp, img, layout)) = fixture() else {
        return;
    };
    let (_guard, store, driver) = guarded_store(tmp.path());
    let out = rd_ok(&["driver", "info", &overlay_wasm()]);
    assert!(
        out.contains("capabilities: layer-store, layer-store.overlay"),
        "{out}"
    );

    // the two-layer base first: its layer directories are reused below
    let base = tmp.path().join("base");
    rd_ok(&unpack_args(
        &driver,
        &format!("{}:base", s(&layout)),
        &base,
    ));
    let go_base = tmp.path().join("go-base");
    run_ok(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:base", s(&layout)),
            s(&go_base),
        ],
    );
    assert_same_tree(&go_base.join("rootfs"), &base.join("rootfs"));
    let base_dirs = layer_dirs(&store);
    assert_eq!(base_dirs.len(), 1);
    let base_inodes: Vec<u64> = base_dirs
        .iter()
        .map(|d| std::fs::metadata(d).expect("stat").ino())
        .collect();

    let b = tmp.path().join("bundle");
    rd_ok(&unpack_args(&driver, &img, &b));
    let go = tmp.path().join("go");
    run_ok("umoci", &["unpack", "--image", &img, s(&go)]);
    assert_same_tree(&go.join("rootfs"), &b.join("rootfs"));
    // config.json and the mtree as from a plain rumoci unpack
    let plain = tmp.path().join("plain");
    rd_ok(&["unpack", "--image", &img, s(&plain)]);
    assert_same_tree(&plain.join("rootfs"), &b.join("rootfs"));
    assert_eq!(
        std::fs::read(plain.join("config.json")).expect("read"),
        std::fs::read(b.join("config.json")).expect("read"),
        "config.json differs"
    );
    // the same but for nlink: overlayfs counts a merged directory's links
    // as 1, and a hardlink group's from the layer holding it
    let no_nlink = |t: String| {
        t.split(' ')
            .filter(|w| !w.starts_with("nlink="))
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(no_nlink(mtree_body(&plain)), no_nlink(mtree_body(&b)));

    // an overlay on rootfs, with the layers as lowerdirs
    let m = mountinfo_beneath(&b);
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(
        m[0].0,
        std::fs::canonicalize(b.join("rootfs")).expect("canon")
    );
    assert_eq!(m[0].1, "overlay");
    assert!(m[0].2.contains("redirect_dir=nofollow"), "{m:?}");
    assert!(!m[0].2.contains("userxattr"), "{m:?}");
    let lower = lowerdirs(&b);
    assert_eq!(lower.len(), 5);
    assert!(b.join("overlay/upper").is_dir() && b.join("overlay/work").is_dir());
    assert_eq!(
        std::fs::read_dir(b.join("overlay/upper"))
            .expect("upper")
            .count(),
        0,
        "nothing changed yet"
    );

    // the base layers were shared, not extracted again
    let dirs = layer_dirs(&store);
    assert_eq!(dirs.len(), 5, "one directory per layer");
    for (d, ino) in base_dirs.iter().zip(&base_inodes) {
        assert!(dirs.contains(d));
        assert_eq!(std::fs::metadata(d).expect("stat").ino(), *ino);
    }
    assert_eq!(&lower[4..], &lowerdirs(&base)[..], "same base directories");
    // each directory holds its own layer only, in overlayfs form
    let (l1, l2, l3, l4, l5) = (&lower[4], &lower[3], &lower[2], &lower[1], &lower[0]);
    assert!(l1.join("etc").is_file() && l1.join("usr/share/file").is_file());
    // hardlink to a lower file: the target copied up with the other name
    // of its group (usr/hard), all sharing one inode as in one tree
    let h = std::fs::symlink_metadata(l2.join("usr/hard3")).expect("hard3");
    let t = std::fs::symlink_metadata(l2.join("usr/share/file")).expect("copied up");
    let g = std::fs::symlink_metadata(l2.join("usr/hard")).expect("group copied up");
    assert_eq!((h.ino(), h.nlink()), (t.ino(), 3));
    assert_eq!(g.ino(), t.ino());
    assert!(is_whiteout(&l2.join("usr/fifo")), "whiteout as char 0:0");
    assert!(l2.join("usr/share/added").is_file());
    // a parent the layer has no header for keeps the lower metadata
    let lower_share = std::fs::symlink_metadata(l1.join("usr/share")).expect("share");
    let copied = std::fs::symlink_metadata(l2.join("usr/share")).expect("share");
    assert_eq!(
        (copied.mode(), copied.uid(), copied.mtime()),
        (lower_share.mode(), lower_share.uid(), lower_share.mtime())
    );
    assert_eq!(
        xattr::get(l2.join("usr/share"), "user.dir").expect("xattr"),
        Some(b"d".to_vec())
    );
    assert!(!l2.join("etc").exists(), "nothing else of the lower layers");
    assert!(is_whiteout(&l3.join("usr/share")), "a whited-out directory");
    assert!(l4.join("usr/lib/old.so").is_file());
    assert_eq!(
        xattr::get(l5.join("usr/lib"), "trusted.overlay.opaque").expect("xattr"),
        Some(b"y".to_vec()),
        "opaque whiteout as the overlay xattr"
    );
    assert!(!l5.join("usr/lib/.wh..wh..opq").exists());

    // the Go umoci repacks the mounted bundle too (it walks the mtree); its
    // --refresh-bundle drops the overlay field, and umount still works
    run_ok(
        "umoci",
        &[
            "repack",
            "--refresh-bundle",
            "--image",
            &format!("{}:go-repack", s(&layout)),
            s(&b),
        ],
    );
    rd_ok(&["umount", s(&b)]);
    assert!(mountinfo_beneath(&b).is_empty());
}

#[test]
fn repack_reads_only_the_upper_directory() {
    let Some(u) = unpacked() else {
        return;
    };
    let (tmp, b) = (&u.tmp, u.bundle.clone());
    let r = b.join("rootfs");
    // change a file, delete a file, delete a directory, replace a directory
    std::fs::write(r.join("etc"), b"changed through the overlay\n").expect("w");
    std::fs::remove_file(r.join("usr/new")).expect("rm");
    std::fs::remove_dir_all(r.join("bin")).expect("rm");
    std::fs::remove_dir_all(r.join("usr/lib")).expect("rm");
    std::fs::create_dir(r.join("usr/lib")).expect("mkdir");
    std::fs::write(r.join("usr/lib/fresh"), b"fresh\n").expect("w");
    // times before SOURCE_DATE_EPOCH, so the layer keeps them
    let touch = |paths: &[&str]| {
        let mut args = vec!["-h", "-d", "@1600000000"];
        let full: Vec<PathBuf> = paths.iter().map(|p| r.join(p)).collect();
        args.extend(full.iter().map(|p| s(p)));
        run_ok("touch", &args);
    };
    touch(&["", "etc", "usr", "usr/lib", "usr/lib/fresh"]);
    let l = s(&u.layout);
    rd_ok(&["repack", "--image", &format!("{l}:new"), s(&b)]);
    assert_eq!(
        top_layer_names(&u.layout, "new"),
        [&["", ".wh.bin"][..], &CHANGED_NAMES].concat(),
        "the new layer holds exactly the changes"
    );
    let go = tmp.path().join("go");
    run_ok("umoci", &["unpack", "--image", &format!("{l}:new"), s(&go)]);
    assert_same_tree(&go.join("rootfs"), &r);

    // unmounted, the upper directory still repacks, to the same layer
    rd_ok(&["umount", s(&b)]);
    rd_ok(&["umount", s(&b)]);
    assert!(mountinfo_beneath(&b).is_empty());
    rd_ok(&["repack", "--image", &format!("{l}:again"), s(&b)]);
    assert_eq!(
        layers_of(&u.layout, "new").last(),
        layers_of(&u.layout, "again").last(),
        "deterministic"
    );
    // masked paths stay out
    rd_ok(&[
        "repack",
        "--mask-path",
        "/usr",
        "--image",
        &format!("{l}:masked"),
        s(&b),
    ]);
    assert_eq!(top_layer_names(&u.layout, "masked"), ["", ".wh.bin", "etc"]);

    // mount again, refresh: the next repack holds only the next change
    rd_ok(&["mount", s(&b)]);
    rd_ok(&["mount", s(&b)]);
    assert_eq!(mountinfo_beneath(&b).len(), 1);
    assert!(r.join("usr/lib/fresh").is_file());
    rd_ok(&[
        "repack",
        "--refresh-bundle",
        "--image",
        &format!("{l}:r1"),
        s(&b),
    ]);
    assert_eq!(lowerdirs(&b).len(), 6, "the old upper became a layer");
    assert_eq!(
        std::fs::read_dir(b.join("overlay/upper"))
            .expect("upper")
            .count(),
        0
    );
    assert_same_tree(&go.join("rootfs"), &r);
    std::fs::write(r.join("usr/lib/fresh"), b"fresher\n").expect("w");
    touch(&["usr/lib/fresh"]);
    rd_ok(&["repack", "--image", &format!("{l}:r2"), s(&b)]);
    assert_eq!(
        top_layer_names(&u.layout, "r2"),
        ["", "usr", "usr/lib", "usr/lib/fresh"]
    );
    let go2 = tmp.path().join("go2");
    run_ok("umoci", &["unpack", "--image", &format!("{l}:r2"), s(&go2)]);
    assert_same_tree(&go2.join("rootfs"), &r);
    // no change, no layer
    rd_ok(&[
        "repack",
        "--refresh-bundle",
        "--image",
        &format!("{l}:r3"),
        s(&b),
    ]);
    rd_ok(&["repack", "--image", &format!("{l}:r4"), s(&b)]);
    assert_eq!(layers_of(&u.layout, "r3"), layers_of(&u.layout, "r4"));

    // umount, then the bundle goes like any directory; the store stays
    rd_ok(&["umount", s(&b)]);
    std::fs::remove_dir_all(&b).expect("rm -rf bundle");
    let again = tmp.path().join("again");
    rd_ok(&unpack_args(&u.driver, &u.img, &again));
    let go3 = tmp.path().join("go3");
    run_ok("umoci", &["unpack", "--image", &u.img, s(&go3)]);
    assert_same_tree(&go3.join("rootfs"), &again.join("rootfs"));
    rd_ok(&["umount", s(&again)]);

    // a plain bundle is no overlay bundle
    let plain = tmp.path().join("plain");
    rd_ok(&["unpack", "--image", &u.img, s(&plain)]);
    let e = rd_err(&["umount", s(&plain)]);
    assert!(e.contains("not an overlay bundle"), "{e}");
}

#[test]
fn a_failed_unpack_leaves_no_mount_and_no_bundle() {
    let Some((tmp, img, layout)) = fixture() else {
        return;
    };
    let (_guard, _, driver) = guarded_store(tmp.path());
    // a failure after the mount: umoci.json cannot be written
    let b = tmp.path().join("b1");
    std::fs::create_dir_all(b.join("umoci.json/blocker")).expect("mkdir");
    let e = rd_err(&unpack_args(&driver, &img, &b));
    assert!(e.contains("umoci.json"), "{e}");
    assert!(mountinfo_beneath(&b).is_empty(), "mount left behind");
    assert!(!b.join("rootfs").exists() && !b.join("overlay").exists());
    // a corrupt layer blob (a fresh store: nothing cached)
    let top = layers_of(&layout, "t").pop().expect("layer");
    let blob = blob_path(&layout, &top);
    let mut data = std::fs::read(&blob).expect("read");
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&blob, data).expect("corrupt");
    let store2 = tmp.path().join("store2");
    let driver2 = format!("{},dir={}", overlay_wasm(), s(&store2));
    let b2 = tmp.path().join("b2");
    let e = rd_err(&unpack_args(&driver2, &img, &b2));
    assert!(e.contains(&top), "{e}");
    assert!(mountinfo_beneath(&b2).is_empty());
    assert!(!b2.join("rootfs").exists() && !b2.join("overlay").exists());
    // the layers before it were committed; the broken one left nothing
    assert_eq!(layer_dirs(&store2).len(), 4);
    // a layer directory changed behind rumoci's back is refused by name
    let good = tmp.path().join("good");
    rd_ok(&unpack_args(
        &driver,
        &format!("{}:base", s(&layout)),
        &good,
    ));
    rd_ok(&["umount", s(&good)]);
    let base_dir = lowerdirs(&good).remove(0);
    std::fs::write(base_dir.join("usr/new"), b"tampered\n").expect("tamper");
    let b4 = tmp.path().join("b4");
    let e = rd_err(&unpack_args(&driver, &format!("{}:base", s(&layout)), &b4));
    assert!(e.contains("changed after the tree was recorded"), "{e}");
    assert!(e.contains("overlay"), "names the driver: {e}");
    assert!(mountinfo_beneath(&b4).is_empty());
    assert!(!b4.join("rootfs").exists() && !b4.join("overlay").exists());
    // --keep-dirlinks cannot be honoured in overlayfs form
    let e = rd_err(&[
        "--driver",
        &driver,
        "unpack",
        "--keep-dirlinks",
        "--image",
        &format!("{}:base", s(&layout)),
        s(&tmp.path().join("b3")),
    ]);
    assert!(e.contains("--keep-dirlinks"), "{e}");
}

/// Path, kind, mode, content digest, symlink target.
type Facts = Vec<(PathBuf, &'static str, u32, Option<String>, Option<PathBuf>)>;

/// Facts of a rootless tree that must match the Go umoci's rootless unpack
/// (owners differ: nobody's user namespace against root).
fn rootless_facts(root: &Path) -> Facts {
    tree_facts(root)
        .into_iter()
        .map(|(p, f)| (p, f.kind, f.mode, f.content, f.link))
        .collect()
}

#[test]
fn rootless_inside_a_user_namespace() {
    let Some((tmp, _img, layout)) = fixture() else {
        return;
    };
    if !have("setpriv") || !have("unshare") {
        eprintln!("skipped: setpriv or unshare missing");
        return;
    }
    let _guard = Unmount(tmp.path().to_path_buf());
    // everything nobody works on lives in a directory nobody owns
    let home = tmp.path().join("nobody");
    std::fs::create_dir(&home).expect("mkdir");
    run_ok("chmod", &["0755", s(tmp.path())]);
    let l = home.join("layout");
    run_ok("cp", &["-a", s(&layout), s(&l)]);
    let wasm = home.join("overlay.wasm");
    std::fs::copy(overlay_wasm(), &wasm).expect("copy plugin");
    run_ok("chown", &["-R", "nobody:nogroup", s(&home)]);
    let as_nobody = |userns: bool, script: &str| -> Output {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"]);
        if userns {
            c.args(["unshare", "-Urm"]);
        }
        c.args(["sh", "-c", script])
            .env("R", rumoci_bin())
            .env("W", format!("{},dir={}", s(&wasm), s(&home.join("store"))))
            .env("L", s(&l))
            .env("B", s(&home.join("bundle")))
            .env("XDG_CACHE_HOME", s(&home.join("cache")))
            .env("HOME", s(&home))
            .output()
            .expect("spawn")
    };
    // without a user namespace there is no mount: a clear error, nothing left
    let out = as_nobody(
        false,
        r#""$R" --driver "$W" unpack --rootless --image "$L:t" "$B""#,
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        e.contains("CAP_SYS_ADMIN") && e.contains("unshare -Urm"),
        "{e}"
    );
    assert!(!home.join("bundle/rootfs").exists());

    // inside one: unpack, change, repack, umount, all as nobody
    let out = as_nobody(
        true,
        r#"set -e
        "$R" --driver "$W" unpack --rootless --image "$L:t" "$B"
        grep -q "userxattr" /proc/self/mountinfo
        echo rootless > "$B/rootfs/etc"
        rm "$B/rootfs/usr/new"
        rm -r "$B/rootfs/usr/lib"
        mkdir "$B/rootfs/usr/lib"
        echo fresh > "$B/rootfs/usr/lib/fresh"
        "$R" repack --image "$L:new" "$B"
        "$R" umount "$B"
        "$R" umount "$B""#,
    );
    assert!(
        out.status.success(),
        "rootless run failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lower = lowerdirs(&home.join("bundle"));
    let top = &lower[0];
    assert_eq!(
        xattr::get(top.join("usr/lib"), "user.overlay.opaque").expect("xattr"),
        Some(b"y".to_vec()),
        "rootless opaque whiteouts use user.overlay.*"
    );
    assert_eq!(
        xattr::get(top.join("usr/lib"), "trusted.overlay.opaque").expect("xattr"),
        None
    );
    assert!(
        is_whiteout(&lower[2].join("usr/share")),
        "mknod 0:0 works in a user namespace"
    );
    assert_eq!(
        top_layer_names(&l, "new"),
        [&[""][..], &CHANGED_NAMES].concat()
    );
    // the Go umoci unpacks the result (rootless) to the changed tree
    let go = tmp.path().join("go");
    run_ok(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:new", s(&l)),
            s(&go),
        ],
    );
    let want = rootless_facts(&go.join("rootfs"));
    // mount the bundle again (as root, to look at it) and compare
    let b = home.join("bundle");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("umoci.json")).expect("read")).expect("json");
    assert_eq!(meta["overlay"]["rootless"], true);
    assert_eq!(meta["map_options"]["rootless"], true);
    rd_ok(&["mount", s(&b)]);
    let got = rootless_facts(&b.join("rootfs"));
    rd_ok(&["umount", s(&b)]);
    assert_eq!(want, got, "rootless tree differs from the Go umoci's");
}

/// `driver snapshots` lists the layers; `driver rm` refuses a layer a
/// mounted bundle reads, and removes it once the bundle is unmounted.
#[test]
fn driver_rm_refuses_a_layer_of_a_mounted_bundle() {
    let Some(u) = unpacked() else {
        return;
    };
    let (tmp, b) = (&u.tmp, u.bundle.clone());
    let rows = snapshot_rows(&u.driver);
    assert!(rows.len() >= 2, "{rows:?}");
    assert!(rows.iter().all(|r| r[1] == "committed"), "{rows:?}");
    // the top layer: the one that is nobody's parent
    let top = rows
        .iter()
        .find(|r| !rows.iter().any(|c| c[2] == r[0]))
        .expect("a top layer")[0]
        .clone();
    let layers = || {
        std::fs::read_dir(u.store.join("layers"))
            .expect("layers")
            .count()
    };
    let before = layers();
    let e = rd_err(&["--driver", &u.driver, "driver", "rm", &top]);
    assert!(
        e.contains("is a lower layer of the overlay mounted at") && e.contains("bundle/rootfs"),
        "{e}"
    );
    assert_eq!(layers(), before, "nothing removed");
    assert_eq!(snapshot_rows(&u.driver).len(), rows.len());
    rd_ok(&["umount", s(&b)]);
    rd_ok(&["--driver", &u.driver, "driver", "rm", &top]);
    assert_eq!(layers(), before - 1);
    assert_eq!(snapshot_rows(&u.driver).len(), rows.len() - 1);
    // remounting the bundle now fails clearly, and unpacking again works
    let e = rd_err(&["mount", s(&b)]);
    assert!(e.contains("is missing or not a directory"), "{e}");
    let b2 = tmp.path().join("again");
    rd_ok(&unpack_args(&u.driver, &u.img, &b2));
    assert_eq!(snapshot_rows(&u.driver).len(), rows.len());
    rd_ok(&["umount", s(&b2)]);
}

/// An image of one hand-written layer (the Go umoci never writes these in
/// a base layer): the root, an opaque directory `d` that keeps its own
/// file `d/f`, and a whiteout of `absent`, which no layer has.
fn base_whiteouts_image(tmp: &Path) -> String {
    let layout = tmp.join("wh-layout");
    run_ok("umoci", &["init", "--layout", s(&layout)]);
    let img = format!("{}:wh", s(&layout));
    run_ok("umoci", &["new", "--image", &img]);
    add_python_layer(
        &img,
        &tmp.join("wh.tar"),
        r#"
add("./", type=tarfile.DIRTYPE, mode=0o755, mtime=1600000000)
add("d", type=tarfile.DIRTYPE, mode=0o755, mtime=1600000000)
add("d/.wh..wh..opq", b"", mtime=1600000000)
add("d/f", b"kept\n", mtime=1600000000, mode=0o644)
add(".wh.absent", b"", mtime=1600000000)
"#,
    );
    img
}

/// What overlayfs form leaves in a tree: whiteout devices, `.wh.` names,
/// overlay xattrs (paths relative to `root`).
fn overlay_traces(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).expect("readdir") {
            let p = e.expect("entry").path();
            let rel = p.strip_prefix(root).expect("beneath").display().to_string();
            let md = std::fs::symlink_metadata(&p).expect("lstat");
            if is_whiteout(&p)
                || rel
                    .rsplit('/')
                    .next()
                    .is_some_and(|n| n.starts_with(".wh."))
            {
                out.push(rel.clone());
            }
            if !md.file_type().is_symlink() {
                for x in xattr::list(&p).expect("listxattr") {
                    let x = x.to_string_lossy().into_owned();
                    if x.starts_with("trusted.overlay.") || x.starts_with("user.overlay.") {
                        out.push(format!("{rel} {x}"));
                    }
                }
            }
            if md.is_dir() {
                todo.push(p);
            }
        }
    }
    out
}

/// The form of a layer follows the mount its `prepare` answered: the
/// overlay store answers `overlay([])` for a base layer, which is then an
/// overlayfs layer (an opaque directory marked so, no whiteout file) and
/// the mounted rootfs is the Go umoci's tree; the layer cache answers no
/// mount and copies, and its trees never hold overlayfs form.
#[test]
fn a_base_layer_is_extracted_in_the_form_its_prepare_answered() {
    if !overlay_works() || !have("umoci") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_guard, store, driver) = guarded_store(tmp.path());
    let img = base_whiteouts_image(tmp.path());
    let go = tmp.path().join("go");
    run_ok("umoci", &["unpack", "--image", &img, s(&go)]);
    assert!(go.join("rootfs/d/f").is_file() && !go.join("rootfs/d/.wh..wh..opq").exists());

    // the overlay store: the base layer in overlayfs form, mounted
    let b = tmp.path().join("b");
    rd_ok(&unpack_args(&driver, &img, &b));
    assert_eq!(mounts_beneath(&b).len(), 1, "the rootfs is mounted");
    assert_same_tree(&go.join("rootfs"), &b.join("rootfs"));
    let dirs = layer_dirs(&store);
    assert_eq!(dirs.len(), 1);
    let layer = dirs[0].join("fs");
    assert_eq!(
        overlay_traces(&layer),
        ["d trusted.overlay.opaque"],
        "an opaque directory in overlayfs form, nothing else"
    );
    assert_eq!(
        xattr::get(layer.join("d"), "trusted.overlay.opaque").expect("getxattr"),
        Some(b"y".to_vec())
    );
    assert!(layer.join("d/f").is_file());

    // a bundle directory holding an overlay/ of its own: refused once the
    // store answers an overlay view, and that overlay/ is left alone
    let b2 = tmp.path().join("b2");
    std::fs::create_dir_all(b2.join("overlay/mine")).expect("mkdir");
    let e = rd_err(&unpack_args(&driver, &img, &b2));
    assert!(e.contains("b2/overlay: already exists"), "{e}");
    assert!(b2.join("overlay/mine").is_dir(), "someone's overlay/ kept");
    assert!(!b2.join("rootfs").exists() && mounts_beneath(&b2).is_empty());

    // the layer cache: whole trees, whiteouts applied, never overlayfs form
    let cache = tmp.path().join("cache");
    let cdriver = format!("{},dir={}", plugin_wasm(PLUGINS, "layer-cache"), s(&cache));
    for name in ["c1", "c2"] {
        let c = tmp.path().join(name);
        rd_ok(&unpack_args(&cdriver, &img, &c));
        assert!(mounts_beneath(&c).is_empty(), "a copy is not mounted");
        assert_same_tree(&go.join("rootfs"), &c.join("rootfs"));
        assert_eq!(overlay_traces(&c.join("rootfs")), Vec::<String>::new());
    }
    assert_eq!(overlay_traces(&cache), Vec::<String>::new());
}
