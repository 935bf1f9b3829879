//! End-to-end checks: the rumoci binary run with the plugin and with the
//! built-in driver on the same image, results compared byte for byte.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::cas::tags_of;
use super::{Options, Runner, ensure};
use rumoci_engine::cas::Cas;
use rumoci_wasm::driver::{DriverSource, DriverSpec, WasmCas};

/// The fixed time every image step records (`SOURCE_DATE_EPOCH`).
const EPOCH: &str = "1700000000";

/// `spec` as `--driver` text, with its store directory `dir` (and the
/// repository `repo` when it has `url=`).
fn spec_text(spec: &DriverSpec, dir: &Path, repo: Option<&str>) -> Result<String, String> {
    let DriverSource::Wasm(wasm) = &spec.source else {
        return Err("not a wasm driver".into());
    };
    let mut s = format!(
        "{},dir={},timeout={},memory={}",
        wasm.display(),
        dir.display(),
        spec.timeout.as_secs_f64(),
        spec.memory
    );
    if let Some(u) = &spec.url {
        s.push_str(&format!(",url={u}"));
    }
    if let Some(r) = repo {
        s.push_str(&format!(",repo={r}"));
    }
    // an object store's bucket=, prefix=, region=, path-style=
    for (k, v) in &spec.store_options {
        s.push_str(&format!(",{k}={v}"));
    }
    for (k, v) in &spec.options {
        s.push_str(&format!(",opt.{k}={v}"));
    }
    if s.contains(',')
        && (wasm.to_string_lossy().contains(',') || dir.to_string_lossy().contains(','))
    {
        return Err("a path holds a comma, which --driver cannot carry".into());
    }
    Ok(s)
}

/// Run `exe` with `driver` (none: the built-in driver) and `args`.
fn rumoci(opts: &Options, driver: Option<&str>, args: &[&str]) -> Result<String, String> {
    let exe = opts.exe.as_ref().ok_or("no rumoci executable")?;
    let mut cmd = Command::new(exe);
    if let Some(d) = driver {
        cmd.arg("--driver").arg(d);
    }
    let out = cmd
        .args(args)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    if !out.status.success() {
        let who = if driver.is_some() {
            "with the plugin"
        } else {
            "with the built-in driver"
        };
        return Err(format!(
            "rumoci {} ({who}) failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A small tree of every common kind: files (one of 3 MiB), an executable,
/// a symlink, a hardlink, an empty directory.
fn source_tree(dir: &Path, seed: u64) -> Result<(), String> {
    let io = |e: std::io::Error| format!("{}: {e}", dir.display());
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("bin")).map_err(io)?;
    std::fs::create_dir_all(dir.join("empty")).map_err(io)?;
    std::fs::write(dir.join("hello.txt"), format!("hello {seed}\n")).map_err(io)?;
    std::fs::write(dir.join("big.bin"), super::cas::noise(3 << 20, seed)).map_err(io)?;
    std::fs::write(dir.join("bin/tool"), b"#!/bin/sh\necho tool\n").map_err(io)?;
    std::fs::set_permissions(dir.join("bin/tool"), std::fs::Permissions::from_mode(0o755))
        .map_err(io)?;
    std::os::unix::fs::symlink("hello.txt", dir.join("link")).map_err(io)?;
    std::fs::hard_link(dir.join("hello.txt"), dir.join("hard")).map_err(io)?;
    Ok(())
}

/// The tags of the built-in layout at `path`.
fn builtin_tags(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let doc =
        std::fs::read(path.join("index.json")).map_err(|e| format!("{}: {e}", path.display()))?;
    tags_of(&doc)
}

/// An mtree manifest as two bundles of one image must agree on it: without
/// the comment header (it names the bundle's path and the time), the
/// root's `tar_time` (the unpack's, when no layer sets it), and with
/// `overlay` the `nlink=` of directories (overlayfs reports 1 for the
/// directories of a merged mount, whatever they hold).
fn comparable_mtree(mtree: &[u8], overlay: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(mtree.len());
    for line in mtree.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(b"#") {
            continue;
        }
        let root_time = line.starts_with(b". ");
        let dir_nlink = overlay && line.windows(9).any(|w| w == b" type=dir");
        if !root_time && !dir_nlink {
            out.extend_from_slice(line);
            continue;
        }
        let text = String::from_utf8_lossy(line);
        let kept: Vec<&str> = text
            .split(' ')
            .filter(|w| !(root_time && w.starts_with("tar_time=")))
            .filter(|w| !(dir_nlink && w.starts_with("nlink=")))
            .collect();
        out.extend_from_slice(kept.join(" ").as_bytes());
    }
    out
}

/// The bundle's files that must match: the mtree manifest(s), made
/// comparable, and `config.json`.
fn bundle_files(bundle: &Path, overlay: bool) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut out = BTreeMap::new();
    let rd = std::fs::read_dir(bundle).map_err(|e| format!("{}: {e}", bundle.display()))?;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".mtree") || name == "config.json" {
            let data = std::fs::read(e.path()).map_err(|e| format!("{name}: {e}"))?;
            let data = if name.ends_with(".mtree") {
                comparable_mtree(&data, overlay)
            } else {
                data
            };
            out.insert(name, data);
        }
    }
    Ok(out)
}

/// The keywords compared on an overlay rootfs (umoci's, without `nlink`).
const OVERLAY_KEYWORDS: &str = "size,type,uid,gid,mode,link,tar_time,sha256digest,xattr";

/// Whether the bundle's rootfs is an overlay mount (`umoci.json` records
/// one: the layer store answered an overlay view).
fn is_overlay_bundle(bundle: &Path) -> Result<bool, String> {
    let p = bundle.join("umoci.json");
    let data = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&data).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(v.get("overlay").is_some_and(|o| !o.is_null()))
}

/// Whether the bundle `plugin` (unpacked through the plugin) matches the
/// bundle `builtin` (unpacked in place by the built-in driver).
fn same_bundles(builtin: &Path, plugin: &Path, opts: &Options) -> Result<(), String> {
    let overlay = is_overlay_bundle(plugin)?;
    let a = bundle_files(builtin, overlay)?;
    let b = bundle_files(plugin, overlay)?;
    ensure(a.keys().eq(b.keys()), || {
        format!("bundle files differ: {:?} vs {:?}", a.keys(), b.keys())
    })?;
    for (k, v) in &a {
        ensure(b.get(k) == Some(v), || {
            format!("{k} differs from the built-in driver's")
        })?;
    }
    // the tree itself against the built-in driver's manifest
    let mtree = a
        .keys()
        .find(|k| k.ends_with(".mtree"))
        .ok_or("no mtree manifest")?;
    // the root's time is the unpack's: borrow the built-in one's meanwhile
    let times = |p: &Path| -> Result<rustix::fs::Timestamps, String> {
        let st = rustix::fs::stat(p.join("rootfs")).map_err(|e| format!("{}: {e}", p.display()))?;
        let ts = |sec: i64, nsec: i64| rustix::fs::Timespec {
            tv_sec: sec,
            tv_nsec: nsec as _,
        };
        Ok(rustix::fs::Timestamps {
            last_access: ts(st.st_atime as i64, st.st_atime_nsec as i64),
            last_modification: ts(st.st_mtime as i64, st.st_mtime_nsec as i64),
        })
    };
    let set = |p: &Path, t: &rustix::fs::Timestamps| {
        rustix::fs::utimensat(
            rustix::fs::CWD,
            p.join("rootfs"),
            t,
            rustix::fs::AtFlags::empty(),
        )
        .map_err(|e| format!("{}: {e}", p.display()))
    };
    let own = times(plugin)?;
    set(plugin, &times(builtin)?)?;
    let res = same_tree(
        &builtin.join(mtree),
        plugin,
        opts,
        overlay.then_some(OVERLAY_KEYWORDS),
    );
    set(plugin, &own)?;
    res.map_err(|e| format!("the plugin's rootfs differs from the built-in driver's: {e}"))
}

/// `raw mtree-validate` of `bundle`'s rootfs against the manifest `mtree`
/// (umoci's keywords, or `keywords`).
fn same_tree(
    mtree: &Path,
    bundle: &Path,
    opts: &Options,
    keywords: Option<&str>,
) -> Result<(), String> {
    let mut args = vec!["raw".to_string(), "mtree-validate".into(), "-f".into()];
    args.push(mtree.to_string_lossy().into_owned());
    args.push("-p".into());
    args.push(bundle.join("rootfs").to_string_lossy().into_owned());
    if !is_root() {
        args.push("--rootless".into());
    }
    if let Some(k) = keywords {
        args.extend(["-k".into(), k.into()]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    rumoci(opts, None, &refs).map(|_| ())
}

/// A change made the same way in both bundles.
fn change(bundle: &Path) -> Result<(), String> {
    let root = bundle.join("rootfs");
    let io = |e: std::io::Error| format!("{}: {e}", root.display());
    std::fs::write(root.join("data/new.txt"), b"a new file\n").map_err(io)?;
    std::fs::remove_file(root.join("data/hello.txt")).map_err(io)?;
    std::fs::remove_dir_all(root.join("data/empty")).map_err(io)?;
    Ok(())
}

/// Content store end to end: one image made, changed and collected with the
/// plugin and with the built-in driver; then tags from several processes.
pub(super) fn cas(r: &mut Runner, spec: &DriverSpec, opts: &Options) {
    if opts.exe.is_none() {
        r.check("end to end", "", || {
            Ok(Some("no rumoci executable given".into()))
        });
        return;
    }
    let DriverSource::Wasm(wasm) = &spec.source else {
        return;
    };
    let w = opts.work.join("e2e-cas");
    let _ = std::fs::remove_dir_all(&w);
    let builtin = w.join("builtin");
    let store = w.join("store");
    let remote = spec.url.is_some();
    let repo = format!("rumoci-driver-test/e2e-{}", std::process::id());
    // the layout argument: the repository with url=, else the store itself
    let layout = if remote {
        PathBuf::from(&repo)
    } else {
        store.clone()
    };
    let driver = match spec_text(spec, &store, remote.then_some(repo.as_str())) {
        Ok(d) => d,
        Err(e) => {
            r.check("end to end", "", || Err(e));
            return;
        }
    };
    let mut lib_spec = spec.clone();
    lib_spec.dir = Some(store.clone());
    if remote {
        lib_spec.repo = Some(repo.clone());
    }
    let plugin_tags = || -> Result<BTreeMap<String, String>, String> {
        let cas = WasmCas::open(wasm, &lib_spec, &store).map_err(|e| e.to_string())?;
        tags_of(&cas.read_index_raw().map_err(|e| format!("{e:#}"))?)
    };
    let src = w.join("src");
    let b0 = w.join("bundle-builtin");
    let b1 = w.join("bundle-plugin");
    let rootless: &[&str] = if is_root() { &[] } else { &["--rootless"] };
    let both = |args: &[&str]| -> Result<(), String> {
        let sub = |l: &Path| -> Vec<String> {
            args.iter()
                .map(|a| a.replace("@L", &l.to_string_lossy()))
                .collect()
        };
        let a = sub(&builtin);
        let b = sub(&layout);
        rumoci(
            opts,
            None,
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
        )?;
        rumoci(
            opts,
            Some(&driver),
            &b.iter().map(String::as_str).collect::<Vec<_>>(),
        )?;
        Ok(())
    };
    let same_tags = || -> Result<(), String> {
        let a = builtin_tags(&builtin)?;
        let b = plugin_tags()?;
        ensure(a == b, || {
            format!("the plugin's tags {b:?} differ from the built-in driver's {a:?}")
        })
    };
    let src_s = src.to_string_lossy().into_owned();
    r.gate(
        "init, new, insert and config give the built-in driver's image",
        "every blob and tag written through the plugin is the one the built-in driver writes (same digests)",
        || {
            source_tree(&src, 1)?;
            both(&["init", "--layout", "@L"])?;
            both(&["new", "--image", "@L:t"])?;
            both(&["insert", "--image", "@L:t", &src_s, "/data"])?;
            both(&["config", "--image", "@L:t", "--config.env", "A=1", "--config.label", "x=y"])?;
            same_tags()?;
            Ok(None)
        },
    );
    r.gate(
        "unpack gives the built-in driver's bundle",
        "blob reads through the plugin return what was written: same mtree, config.json and rootfs",
        || {
            for (driver, img, bundle) in [
                (None, format!("{}:t", builtin.display()), &b0),
                (
                    Some(driver.as_str()),
                    format!("{}:t", layout.display()),
                    &b1,
                ),
            ] {
                let mut args = vec!["unpack"];
                args.extend_from_slice(rootless);
                let bs = bundle.to_string_lossy().into_owned();
                args.extend(["--image", img.as_str(), bs.as_str()]);
                rumoci(opts, driver, &args)?;
            }
            same_bundles(&b0, &b1, opts)?;
            Ok(None)
        },
    );
    r.check(
        "repack gives the built-in driver's result",
        "a new layer written through the plugin and the tag moved: the same manifest as the built-in driver's",
        || {
            change(&b0)?;
            change(&b1)?;
            rumoci(opts, None, &["repack", "--image", &format!("{}:t", builtin.display()), &b0.to_string_lossy()])?;
            rumoci(opts, Some(&driver), &["repack", "--image", &format!("{}:t", layout.display()), &b1.to_string_lossy()])?;
            same_tags()?;
            Ok(None)
        },
    );
    r.check(
        "gc gives the built-in driver's result",
        "list-blobs and delete as `rumoci gc` uses them: the same blobs are left as in the built-in layout",
        || {
            if remote {
                // a registry cannot list blobs; an object store can
                let cas = WasmCas::open(wasm, &lib_spec, &store).map_err(|e| e.to_string())?;
                if let Err(e) = cas.list_blobs() {
                    let e = format!("{e:#}");
                    if e.contains("unsupported") {
                        return Ok(Some(format!("gc does not run through this store: {e}")));
                    }
                    return Err(e);
                }
            }
            both(&["gc", "--layout", "@L"])?;
            let cas = WasmCas::open(wasm, &lib_spec, &store).map_err(|e| e.to_string())?;
            let a = rumoci_engine::cas::DirCas::open(&builtin).map_err(|e| e.to_string())?.list_blobs().map_err(|e| e.to_string())?;
            let b = cas.list_blobs().map_err(|e| format!("{e:#}"))?;
            ensure(a == b, || format!("after gc the plugin holds {} blobs, the built-in driver {}", b.len(), a.len()))?;
            Ok(None)
        },
    );
    r.check(
        "tags from 4 processes at once are all kept",
        "write-index compare-and-swap across processes: no update is lost (rumoci retries a lost race)",
        || {
            let l = format!("{}:t", layout.display());
            let exe = opts.exe.clone().ok_or("no rumoci executable")?;
            for round in 0..3 {
                let children: Vec<_> = (0..4)
                    .map(|p| {
                        Command::new(&exe)
                            .args(["--driver", &driver, "tag", "--image", &l, &format!("p{p}-{round}")])
                            .stderr(std::process::Stdio::piped())
                            .spawn()
                            .map_err(|e| e.to_string())
                    })
                    .collect::<Result<_, _>>()?;
                for c in children {
                    let out = c.wait_with_output().map_err(|e| e.to_string())?;
                    ensure(out.status.success(), || {
                        format!("rumoci tag failed: {}", String::from_utf8_lossy(&out.stderr).trim())
                    })?;
                }
            }
            let tags = plugin_tags()?;
            let missing: Vec<String> = (0..3)
                .flat_map(|r| (0..4).map(move |p| format!("p{p}-{r}")))
                .filter(|t| !tags.contains_key(t))
                .collect();
            ensure(missing.is_empty(), || format!("tags lost: {}", missing.join(", ")))?;
            Ok(None)
        },
    );
}

/// Layer store end to end: an image of three layers (one deleting a file)
/// unpacked cold and warm through the plugin and in place by the built-in
/// driver, then changed and repacked by both.
pub(super) fn layers(r: &mut Runner, spec: &DriverSpec, opts: &Options) {
    if opts.exe.is_none() {
        r.check("end to end", "", || {
            Ok(Some("no rumoci executable given".into()))
        });
        return;
    }
    let w = opts.work.join("e2e-layers");
    let _ = std::fs::remove_dir_all(&w);
    let layout = w.join("layout");
    let store = w.join("store");
    let l = layout.to_string_lossy().into_owned();
    let driver = match spec_text(spec, &store, None) {
        Ok(d) => d,
        Err(e) => {
            r.check("end to end", "", || Err(e));
            return;
        }
    };
    let rootless: &[&str] = if is_root() { &[] } else { &["--rootless"] };
    let unpack = |driver: Option<&str>, bundle: &Path| -> Result<(), String> {
        let mut a = vec!["unpack"];
        a.extend_from_slice(rootless);
        let img = format!("{l}:t");
        let b = bundle.to_string_lossy().into_owned();
        a.extend(["--image", img.as_str(), b.as_str()]);
        rumoci(opts, driver, &a).map(|_| ())
    };
    let b0 = w.join("bundle-builtin");
    let b1 = w.join("bundle-cold");
    let b2 = w.join("bundle-warm");
    // the plugin's bundles are overlay mounts (it answered an overlay view)
    let mut overlay = false;
    r.gate(
        "cold and warm unpacks give the built-in driver's bundle",
        "the snapshots the plugin keeps, the chain its mounts make: the same tree as extracting in place",
        || {
            let (s1, s2) = (w.join("src1"), w.join("src2"));
            source_tree(&s1, 1)?;
            source_tree(&s2, 2)?;
            rumoci(opts, None, &["init", "--layout", &l])?;
            rumoci(opts, None, &["new", "--image", &format!("{l}:t")])?;
            rumoci(opts, None, &["insert", "--image", &format!("{l}:t"), &s1.to_string_lossy(), "/data"])?;
            rumoci(opts, None, &["insert", "--image", &format!("{l}:t"), &s2.to_string_lossy(), "/more"])?;
            rumoci(opts, None, &["insert", "--image", &format!("{l}:t"), "--whiteout", "/more/big.bin"])?;
            unpack(None, &b0)?;
            unpack(Some(&driver), &b1)?;
            overlay = is_overlay_bundle(&b1)?;
            same_bundles(&b0, &b1, opts).map_err(|e| format!("cold: {e}"))?;
            unpack(Some(&driver), &b2)?;
            same_bundles(&b0, &b2, opts).map_err(|e| format!("warm: {e}"))?;
            Ok(None)
        },
    );
    r.check(
        "repack of a bundle unpacked through the plugin gives the built-in driver's layer",
        "the plugin's tree is the bundle's: the same change gives the same layer",
        || {
            change(&b0)?;
            change(&b1)?;
            rumoci(
                opts,
                None,
                &[
                    "repack",
                    "--image",
                    &format!("{l}:r0"),
                    &b0.to_string_lossy(),
                ],
            )?;
            rumoci(
                opts,
                Some(&driver),
                &[
                    "repack",
                    "--image",
                    &format!("{l}:r1"),
                    &b1.to_string_lossy(),
                ],
            )?;
            let tags = builtin_tags(&layout)?;
            if !overlay {
                ensure(tags.get("r0") == tags.get("r1"), || {
                    format!(
                        "repacked manifests differ: {:?} vs {:?}",
                        tags.get("r0"),
                        tags.get("r1")
                    )
                })?;
                return Ok(None);
            }
            // an overlay repack reads the upper directory: the layer may
            // differ in bytes (a copied-up parent directory, an unchanged
            // hardlink partner) but must give the same tree
            let (u0, u1) = (w.join("repacked-builtin"), w.join("repacked-plugin"));
            for (tag, b) in [("r0", &u0), ("r1", &u1)] {
                let mut a = vec!["unpack"];
                a.extend_from_slice(rootless);
                let img = format!("{l}:{tag}");
                let bs = b.to_string_lossy().into_owned();
                a.extend(["--image", img.as_str(), bs.as_str()]);
                rumoci(opts, None, &a)?;
            }
            let m = bundle_files(&u0, false)?
                .into_keys()
                .find(|k| k.ends_with(".mtree"))
                .ok_or("no mtree manifest")?;
            same_tree(
                &u0.join(m),
                &u1,
                opts,
                Some("size,type,uid,gid,mode,link,sha256digest,xattr"),
            )
            .map_err(|e| format!("the repacked images unpack to different trees: {e}"))?;
            Ok(None)
        },
    );
    if overlay {
        for b in [&b1, &b2] {
            let _ = rumoci(opts, None, &["umount", &b.to_string_lossy()]);
        }
    }
    r.check(
        "driver snapshots lists the chain; driver rm removes it",
        "list-snapshots, usage and remove as `rumoci driver snapshots` and `driver rm` use them",
        || {
            let out = rumoci(opts, Some(&driver), &["driver", "snapshots"])?;
            let names: Vec<&str> = out
                .lines()
                .skip(1)
                .filter(|l| l.contains("committed"))
                .filter_map(|l| l.split_whitespace().next())
                .collect();
            ensure(names.len() >= 3, || {
                format!(
                    "{} committed snapshots listed for 3 layers: {out}",
                    names.len()
                )
            })?;
            let mut args = vec!["driver", "rm"];
            args.extend(names.iter().copied());
            rumoci(opts, Some(&driver), &args)?;
            let out = rumoci(opts, Some(&driver), &["driver", "snapshots"])?;
            ensure(out.lines().count() == 1, || {
                format!("snapshots left after driver rm: {out}")
            })?;
            Ok(None)
        },
    );
}
