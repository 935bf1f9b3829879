//! Hostile layers: nothing is created, read or changed outside the rootfs,
//! whatever the tar says; corrupt input fails with a clear error and the
//! partial rootfs is removed.

mod common;

use std::path::Path;

use common::*;

/// One raw tar entry; names are written into the header bytes directly so
/// that `..` and absolute paths survive.
enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    /// A PAX `path` record overriding the header name.
    PaxFile(&'a str, &'a str, &'a [u8]),
}

fn header(name: &str, kind: tar::EntryType, size: u64, link: Option<&str>) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    {
        let raw = h.as_old_mut();
        let nb = name.as_bytes();
        raw.name[..nb.len().min(100)].copy_from_slice(&nb[..nb.len().min(100)]);
        if let Some(l) = link {
            let lb = l.as_bytes();
            raw.linkname[..lb.len().min(100)].copy_from_slice(&lb[..lb.len().min(100)]);
        }
    }
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_mtime(1_600_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    h
}

fn build_tar(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            E::Dir(n) => b.append(&header(n, tar::EntryType::Directory, 0, None), &[][..]),
            E::File(n, d) => b.append(
                &header(n, tar::EntryType::Regular, d.len() as u64, None),
                *d,
            ),
            E::Symlink(n, t) => b.append(&header(n, tar::EntryType::Symlink, 0, Some(t)), &[][..]),
            E::Hardlink(n, t) => b.append(&header(n, tar::EntryType::Link, 0, Some(t)), &[][..]),
            E::PaxFile(n, real, d) => {
                b.append_pax_extensions([("path", real.as_bytes())])
                    .expect("pax");
                b.append(
                    &header(n, tar::EntryType::Regular, d.len() as u64, None),
                    *d,
                )
            }
        }
        .expect("append");
    }
    b.into_inner().expect("finish")
}

struct World {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    layout: std::path::PathBuf,
    outside: std::path::PathBuf,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let outside = dir.join("outside");
        std::fs::create_dir_all(outside.join("secret")).expect("mkdir");
        std::fs::write(outside.join("secret/file"), b"do not touch\n").expect("w");
        std::fs::write(outside.join("victim"), b"original\n").expect("w");
        let layout = dir.join("layout");
        rumoci_ok(&["init", "--layout", s(&layout)]);
        World {
            _tmp: tmp,
            dir,
            layout,
            outside,
        }
    }

    /// Image `tag` = the given layers, in order.
    fn image(&self, tag: &str, layers: &[Vec<u8>]) -> String {
        let img = format!("{}:{tag}", s(&self.layout));
        rumoci_ok(&["new", "--image", &img]);
        for (i, l) in layers.iter().enumerate() {
            let p = self.dir.join(format!("{tag}-{i}.tar"));
            std::fs::write(&p, l).expect("w");
            rumoci_ok(&["raw", "add-layer", "--image", &img, s(&p)]);
        }
        img
    }
}

/// Unpack; whatever happens, nothing outside the bundle changes.
fn unpack_contained(w: &World, img: &str, bundle: &str) -> std::process::Output {
    let before = snapshot(&w.outside);
    let host_before = std::fs::read("/etc/hostname").ok();
    let out = rumoci(&["unpack", "--image", img, s(&w.dir.join(bundle))]);
    assert_eq!(
        before,
        snapshot(&w.outside),
        "{img}: something outside the rootfs changed"
    );
    assert_eq!(host_before, std::fs::read("/etc/hostname").ok());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{img}: panic: {err}");
    out
}

#[test]
fn escapes_stay_inside_the_rootfs() {
    let w = World::new();
    let out_rel = "../../outside"; // bundle/rootfs/../../outside == w.outside
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "dotdot",
            vec![build_tar(&[
                E::File("../../outside/victim", b"pwned\n"),
                E::File("../../../../../tmp/rumoci-escape", b"x"),
            ])],
        ),
        (
            "absolute",
            vec![build_tar(&[E::File("/outside/victim", b"pwned\n")])],
        ),
        (
            "symlink-abs",
            vec![build_tar(&[
                E::Symlink("link", &format!("{}", w.outside.display())),
                E::File("link/victim", b"pwned\n"),
            ])],
        ),
        (
            "symlink-rel",
            vec![build_tar(&[
                E::Symlink("link", out_rel),
                E::File("link/victim", b"pwned\n"),
                E::Dir("link/newdir"),
            ])],
        ),
        (
            "symlink-chain",
            vec![build_tar(&[
                E::Symlink("a", "b"),
                E::Symlink("b", "c/../../../.."),
                E::Dir("c"),
                E::File("a/outside/victim", b"pwned\n"),
            ])],
        ),
        (
            "symlink-across-layers",
            vec![
                build_tar(&[E::Symlink("etc", out_rel)]),
                build_tar(&[E::File("etc/victim", b"pwned\n")]),
            ],
        ),
        (
            "hardlink-out",
            vec![build_tar(&[E::Hardlink(
                "stolen",
                "../../outside/secret/file",
            )])],
        ),
        (
            "hardlink-via-symlink",
            vec![build_tar(&[
                E::Symlink("link", out_rel),
                E::Hardlink("stolen", "link/secret/file"),
            ])],
        ),
        (
            "whiteout-dotdot",
            vec![build_tar(&[E::File("../.wh.outside", b"")])],
        ),
        (
            "whiteout-through-symlink",
            vec![build_tar(&[
                E::Symlink("link", out_rel),
                E::File("link/.wh.secret", b""),
                E::File("link/secret/.wh..wh..opq", b""),
            ])],
        ),
        (
            "pax-path",
            vec![build_tar(&[E::PaxFile(
                "innocent",
                "../../outside/victim",
                b"pwned\n",
            )])],
        ),
        (
            "root-symlink",
            vec![build_tar(&[
                E::Symlink(".", out_rel),
                E::File("victim", b"pwned\n"),
            ])],
        ),
        ("root-file", vec![build_tar(&[E::File("/", b"x")])]),
        (
            "longname",
            vec![build_tar(&[E::PaxFile(
                "short",
                &format!("{}/../../../../outside/victim", "d/".repeat(60)),
                b"pwned\n",
            )])],
        ),
    ];
    for (name, layers) in cases {
        let img = w.image(name, &layers);
        let out = unpack_contained(&w, &img, &format!("b-{name}"));
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            assert_eq!(
                err.trim()
                    .lines()
                    .filter(|l| l.starts_with("rumoci:"))
                    .count(),
                1,
                "{name}: {err}"
            );
            assert!(
                !w.dir.join(format!("b-{name}/rootfs")).exists(),
                "{name}: partial rootfs left"
            );
        }
        assert!(
            !Path::new("/tmp/rumoci-escape").exists(),
            "{name}: escaped to /tmp"
        );
    }
    // where contained, the writes landed inside the rootfs instead
    for case in [
        "symlink-abs",
        "symlink-rel",
        "dotdot",
        "absolute",
        "pax-path",
        "symlink-across-layers",
    ] {
        let found = tree_facts(&w.dir.join(format!("b-{case}/rootfs")))
            .into_iter()
            .any(|(p, f)| {
                p.file_name().is_some_and(|n| n == "victim")
                    && f.content.as_deref()
                        == Some(&rumoci::oci::Digest::sha256_of(b"pwned\n").to_string())
            });
        assert!(found, "{case}: the write did not land inside the rootfs");
    }
}

#[test]
fn corrupt_input_fails_cleanly() {
    let w = World::new();
    let good = build_tar(&[E::Dir("d"), E::File("d/f", &[7u8; 5000])]);
    let img = w.image("good", std::slice::from_ref(&good));
    rumoci_ok(&["unpack", "--image", &img, s(&w.dir.join("ok"))]);

    // a truncated tar (its diff_id is its own, so only the tar is wrong)
    let truncated = good[..1200].to_vec();
    let img_t = w.image("truncated", &[truncated]);
    let out = unpack_contained(&w, &img_t, "b-trunc");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("layer"));
    assert!(
        !w.dir.join("b-trunc/rootfs").exists(),
        "partial rootfs left"
    );

    // lies about the layer: digest, size and diff_id
    let manifest_of = |tag: &str| -> (serde_json::Value, String) {
        let d = index_entry(&w.layout, tag)["digest"]
            .as_str()
            .expect("d")
            .to_string();
        (read_blob_json(&w.layout, &d), d)
    };
    let (m, _) = manifest_of("good");
    let layer_digest = m["layers"][0]["digest"]
        .as_str()
        .expect("layer")
        .to_string();
    let lpath = blob_path(&w.layout, &layer_digest);
    let original = std::fs::read(&lpath).expect("layer blob");

    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    std::fs::write(&lpath, &flipped).expect("corrupt");
    let out = unpack_contained(&w, &img, "b-digest");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&layer_digest) || err.contains("corrupt") || err.contains("mismatch"),
        "{err}"
    );
    assert!(!w.dir.join("b-digest/rootfs").exists());

    let mut longer = original.clone();
    longer.extend_from_slice(b"trailing junk");
    std::fs::write(&lpath, &longer).expect("extend");
    let out = unpack_contained(&w, &img, "b-size");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("size mismatch"));
    std::fs::write(&lpath, &original).expect("restore");

    // a diff_id that lies
    let cfg = rumoci_ok(&["stat", "--json", "--image", &img]);
    let v: serde_json::Value = serde_json::from_str(&cfg).expect("json");
    assert!(v["config"]["blob"]["rootfs"]["diff_ids"][0].is_string());
    let other = build_tar(&[E::File("other", b"other")]);
    let other_path = w.dir.join("other.tar");
    std::fs::write(&other_path, &other).expect("w");
    // graft: a manifest whose layer is `good` but whose diff_id is `other`'s
    let img_lie = w.image("lie", &[other]);
    let (mut lie_m, _) = manifest_of("lie");
    lie_m["layers"] = m["layers"].clone();
    let lie_bytes = serde_json::to_vec(&lie_m).expect("ser");
    let d = rumoci::oci::Digest::sha256_of(&lie_bytes);
    std::fs::write(w.layout.join("blobs/sha256").join(d.hex()), &lie_bytes).expect("w");
    let mut idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.layout.join("index.json")).expect("idx"))
            .expect("json");
    for e in idx["manifests"].as_array_mut().expect("arr") {
        if e["annotations"]["org.opencontainers.image.ref.name"] == "lie" {
            e["digest"] = d.to_string().into();
            e["size"] = lie_bytes.len().into();
        }
    }
    std::fs::write(w.layout.join("index.json"), idx.to_string()).expect("w");
    let out = unpack_contained(&w, &img_lie, "b-diffid");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("diff_id mismatch"));
    assert!(!w.dir.join("b-diffid/rootfs").exists());
    // and verify reports it too
    let out = rumoci(&["verify", "--layout", s(&w.layout)]);
    assert!(!out.status.success());
}

/// Hostile sizes and shapes: a gzip bomb (256 MiB of zeros in a small blob),
/// a header claiming a terabyte, 4000 nested directories, a 5000-byte name,
/// 200,000 tiny entries. Each gives a correct result or a clear error, never
/// a panic (the bomb is streamed and nothing is preallocated from a header;
/// peak memory is measured in bench/, not asserted here).
#[test]
fn hostile_sizes_and_shapes_stay_bounded() {
    let w = World::new();

    // gzip bomb: a tar of 256 MiB of zeros, gzip-compressed to a small file
    let bomb_tar = w.dir.join("bomb.tar.gz");
    {
        let f = std::fs::File::create(&bomb_tar).expect("create");
        let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        let size: u64 = 256 << 20;
        let h = header("zeros", tar::EntryType::Regular, size, None);
        b.append(&h, std::io::Read::take(std::io::repeat(0), size))
            .expect("append");
        b.into_inner().expect("tar").finish().expect("gz");
    }
    // add it as a gzip layer: the decompressed stream goes through a pipe
    // to raw add-layer --compress gzip (no 256 MiB temporary)
    let img = format!("{}:bomb", s(&w.layout));
    rumoci_ok(&["new", "--image", &img]);
    let status = std::process::Command::new("sh")
        .args([
            "-c",
            &format!(
                "zcat {} | {} raw add-layer --compress gzip --image {img} /dev/stdin",
                s(&bomb_tar),
                rumoci_bin(),
            ),
        ])
        .status()
        .expect("sh");
    assert!(status.success());
    let out = unpack_contained(&w, &img, "b-bomb");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::metadata(w.dir.join("b-bomb/rootfs/zeros")).expect("stat");
    assert_eq!(md.len(), 256 << 20);
    std::fs::remove_dir_all(w.dir.join("b-bomb")).expect("rm");

    // a header claiming a terabyte, with a few bytes behind it
    let mut b = tar::Builder::new(Vec::new());
    let h = header("huge", tar::EntryType::Regular, 1 << 40, None);
    let mut raw = h.as_bytes().to_vec();
    raw.extend_from_slice(&[1u8; 4096]);
    b.get_mut().extend_from_slice(&raw);
    let huge = b.into_inner().expect("tar");
    let img = w.image("huge", &[huge]);
    let out = unpack_contained(&w, &img, "b-huge");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!w.dir.join("b-huge/rootfs").exists(), "partial rootfs left");

    // 4000 nested directories (a 8000-byte path, longer than PATH_MAX)
    let mut b = tar::Builder::new(Vec::new());
    let mut p = String::new();
    for _ in 0..4000 {
        p.push_str("d/");
        b.append_pax_extensions([("path", p.as_bytes())])
            .expect("pax");
        b.append(&header("x", tar::EntryType::Directory, 0, None), &[][..])
            .expect("append");
    }
    let deep = b.into_inner().expect("tar");
    let img = w.image("deep", &[deep]);
    let out = unpack_contained(&w, &img, "b-deep");
    if out.status.success() {
        let mut q = w.dir.join("b-deep/rootfs");
        let mut depth = 0;
        while std::fs::symlink_metadata(q.join("d")).is_ok() {
            q.push("d");
            depth += 1;
            if depth > 100 {
                break; // deep enough to prove the structure
            }
        }
        assert!(depth > 100);
    } else {
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }

    // a 5000-byte file name (longer than NAME_MAX): a clear error
    let long = "n".repeat(5000);
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("path", long.as_bytes())])
        .expect("pax");
    b.append(
        &header("short", tar::EntryType::Regular, 1, None),
        &b"x"[..],
    )
    .expect("append");
    let img = w.image("long", &[b.into_inner().expect("tar")]);
    let out = unpack_contained(&w, &img, "b-long");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!w.dir.join("b-long/rootfs").exists());

    // 200,000 tiny entries in 200 directories
    let mut b = tar::Builder::new(Vec::new());
    for d in 0..200 {
        b.append(
            &header(&format!("d{d}"), tar::EntryType::Directory, 0, None),
            &[][..],
        )
        .expect("dir");
        for f in 0..1000 {
            b.append(
                &header(&format!("d{d}/f{f}"), tar::EntryType::Regular, 0, None),
                &[][..],
            )
            .expect("file");
        }
    }
    let img = w.image("many", &[b.into_inner().expect("tar")]);
    let out = unpack_contained(&w, &img, "b-many");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(w.dir.join("b-many/rootfs/d199/f999").is_file());
}

/// A PAX header or GNU long name claiming 64 MiB (zeros: a small layer
/// once compressed) is refused before the parser buffers it, with one
/// line naming the layer and the limit, and the partial rootfs goes; one
/// just under the limit (an xattr-sized record set) still unpacks.
#[test]
fn oversized_tar_header_extensions_are_refused() {
    let w = World::new();
    for (kind, what) in [
        (tar::EntryType::XHeader, "PAX extended header"),
        (tar::EntryType::GNULongName, "GNU long name"),
    ] {
        let path = w.dir.join(format!("ext-{}.tar", kind.as_byte()));
        {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
            let mut b = tar::Builder::new(Vec::new());
            b.append(&header("ok", tar::EntryType::Regular, 2, None), &b"ok"[..])
                .expect("append");
            let mut raw = b.into_inner().expect("tar");
            // into_inner wrote the end-of-archive blocks: drop them
            raw.truncate(raw.len() - 1024);
            std::io::Write::write_all(&mut f, &raw).expect("w");
            let size: u64 = 64 << 20;
            let h = header("ext", kind, size, None);
            std::io::Write::write_all(&mut f, h.as_bytes()).expect("w");
            std::io::copy(
                &mut std::io::Read::take(std::io::repeat(b'a'), size),
                &mut f,
            )
            .expect("w");
            std::io::Write::write_all(&mut f, &[0u8; 1024]).expect("w");
        }
        let img = format!("{}:ext{}", s(&w.layout), kind.as_byte());
        rumoci_ok(&["new", "--image", &img]);
        rumoci_ok(&[
            "raw",
            "add-layer",
            "--compress",
            "gzip",
            "--image",
            &img,
            s(&path),
        ]);
        let bundle = format!("b-ext{}", kind.as_byte());
        let out = unpack_contained(&w, &img, &bundle);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(what) && err.contains("1048576"), "{err}");
        assert!(!w.dir.join(&bundle).join("rootfs").exists());
    }
    // 900 KiB of PAX records (many xattrs) is within the limit
    let mut b = tar::Builder::new(Vec::new());
    let value = vec![b'v'; 1000];
    let names: Vec<String> = (0..900)
        .map(|i| format!("SCHILY.xattr.user.x{i}"))
        .collect();
    b.append_pax_extensions(names.iter().map(|n| (n.as_str(), value.as_slice())))
        .expect("pax");
    b.append(
        &header("many-xattrs", tar::EntryType::Regular, 1, None),
        &b"x"[..],
    )
    .expect("append");
    let img = w.image("xattrs", &[b.into_inner().expect("tar")]);
    let out = unpack_contained(&w, &img, "b-xattrs");
    // the filesystem may refuse that many xattrs (tmpfs, ext4 block limit):
    // either way a clean answer, never a panic or an abort
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || err.trim().lines().count() == 1,
        "{err}"
    );
}

/// A bundle's `umoci.json` is outside data too: a fifo in its place fails
/// at once (it used to block for good) and a huge one is refused by the
/// document size limit, each in one line.
#[test]
fn hostile_umoci_json_fails_cleanly() {
    let w = World::new();
    let img = w.image("t", &[build_tar(&[E::File("f", b"x")])]);
    let b = w.dir.join("bundle");
    rumoci_ok(&["unpack", "--image", &img, s(&b)]);
    let meta = b.join("umoci.json");
    std::fs::remove_file(&meta).expect("rm");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &meta,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .expect("mkfifo");
    let t = std::time::Instant::now();
    let out = rumoci(&["repack", "--image", &img, s(&b)]);
    assert!(!out.status.success());
    assert!(t.elapsed() < std::time::Duration::from_secs(20));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("umoci.json") && err.contains("not a regular file"),
        "{err}"
    );
    std::fs::remove_file(&meta).expect("rm");
    let f = std::fs::File::create(&meta).expect("create");
    f.set_len(65 << 20).expect("sparse 65 MiB");
    let out = rumoci(&["repack", "--image", &img, s(&b)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("MAX_DOCUMENT_SIZE"), "{err}");
}
