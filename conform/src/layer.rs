//! Layer-store checks: the `layer-store` exports through the host's checks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Options, Runner, ensure, page_through};
use rumoci_core::oci::Digest;
use rumoci_engine::layer_store::record::Record;
use rumoci_engine::layer_store::{
    LayerStore, Mount, Prepared, SnapshotKind, UnpackTarget, describe_mounts, resolve,
};
use rumoci_wasm::driver::{DriverSpec, WasmLayerStore};

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A made-up chain id / diff id from a label.
fn digest(label: &str) -> Result<Digest, String> {
    super::cas::digest_of(label.as_bytes())
        .parse()
        .map_err(|e| format!("{e}"))
}

/// Check a fresh target as the host would use it, write a small tree into
/// it (as if a layer were extracted) and the host's record; the tree's
/// bytes.
fn fill(store: &WasmLayerStore, t: &UnpackTarget, files: &[(&str, &[u8])]) -> Result<u64, String> {
    let root = store.root();
    let dir = resolve(root, &t.dir).map_err(|e| e.to_string())?;
    let meta = t.meta.as_deref().ok_or("prepare answers no meta file")?;
    let meta = resolve(root, meta).map_err(|e| e.to_string())?;
    ensure(dir != root, || {
        "prepare answers the store directory itself as the layer's directory".into()
    })?;
    ensure(dir.is_dir(), || {
        format!("prepare answers dir {:?}, which does not exist", t.dir)
    })?;
    ensure(!meta.starts_with(&dir), || {
        format!(
            "the meta file {:?} is inside the layer's directory {:?}",
            t.meta, t.dir
        )
    })?;
    let mut bytes = 0;
    for (name, data) in files {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&p, data).map_err(|e| format!("{}: {e}", p.display()))?;
        bytes += data.len() as u64;
    }
    let rec = Record::capture(&dir, &BTreeMap::new()).map_err(err)?;
    if let Some(parent) = meta.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    rec.write(&meta).map_err(err)?;
    Ok(bytes)
}

/// The directories `m` names, resolved beneath the store, each an
/// existing directory holding the file `holds[k]` (a file written into
/// that layer's tree).
fn mount_dirs(root: &Path, m: &Mount, holds: &[&str]) -> Result<Vec<PathBuf>, String> {
    let rels: Vec<&String> = match m {
        Mount::Copy(src) => vec![src],
        Mount::Overlay(dirs) => dirs.iter().collect(),
    };
    let mut out = Vec::new();
    for (rel, file) in rels.iter().zip(holds) {
        let p = resolve(root, rel).map_err(|e| e.to_string())?;
        ensure(p.is_dir(), || {
            format!("{m} names {rel:?}, which is not an existing directory")
        })?;
        ensure(p.join(file).is_file(), || {
            format!("{m} names {rel:?}, which lacks {file} (written into the layer it should be)")
        })?;
        out.push(p);
    }
    Ok(out)
}

/// Run the layer-store checks.
pub(super) fn run(r: &mut Runner, wasm: &Path, spec: &DriverSpec, opts: &Options) {
    let dir = opts.work.join("layer-store");
    let mut store = None;
    r.gate(
        "the store opens in an empty directory",
        "the plugin works in the store directory it is given (created empty by the host)",
        || {
            let spec = DriverSpec {
                source: rumoci_wasm::driver::DriverSource::Wasm(wasm.to_path_buf()),
                dir: Some(dir.clone()),
                ..spec.clone()
            };
            store = Some(WasmLayerStore::open(&spec).map_err(err)?);
            Ok(None)
        },
    );
    let Some(st) = store else {
        return;
    };
    // the store's form, from its answer for the base layer: `[overlay([])]`
    // (each layer alone, in overlayfs form) or `[]` (whole trees)
    let mut overlay = false;
    let (Ok(c1), Ok(c2), Ok(c3), Ok(d1), Ok(d2)) = (
        digest("chain 1"),
        digest("chain 2"),
        digest("chain 3"),
        digest("diff 1"),
        digest("diff 2"),
    ) else {
        return;
    };
    let (c1s, c2s, c3s) = (c1.to_string(), c2.to_string(), c3.to_string());
    let mut base_bytes = 0;
    r.gate(
        "prepare of a base layer answers a fresh directory; commit names it",
        "prepare(key, none, target): fresh{dir, mounts, meta} with mounts [] (a store of whole trees) or [overlay([])] (a store of overlayfs layers: a layer over no directory), dir and meta relative, beneath the store, meta outside dir; commit(name, key, diff-id) answers a committed snapshot with that name and diff-id",
        || {
            let t = match st.prepare("conformance-k1", None, Some(&c1s)).map_err(err)? {
                Prepared::Fresh(t) => t,
                Prepared::Cached(_) => return Err("answered cached for a target never committed".into()),
            };
            overlay = match t.mounts.as_slice() {
                [] => false,
                [Mount::Overlay(dirs)] if dirs.is_empty() => true,
                other => {
                    return Err(format!(
                        "a base layer with mounts {}: [] or [overlay([])] expected",
                        describe_mounts(other)
                    ));
                }
            };
            base_bytes = fill(&st, &t, &[("etc/hello", b"hello\n"), ("data.bin", &[7u8; 5000])])?;
            let i = st.commit(&c1s, "conformance-k1", &d1).map_err(err)?;
            ensure(i.name == c1s && i.kind == SnapshotKind::Committed, || format!("commit answered {i:?}"))?;
            ensure(i.diff_id.as_ref() == Some(&d1), || format!("commit answered diff-id {:?}", i.diff_id))?;
            ensure(i.parent.is_none(), || format!("a base layer with parent {:?}", i.parent))?;
            Ok(None)
        },
    );
    r.check(
        "stat answers committed snapshots and none for unknown names",
        "stat(name): the snapshot-info, none if absent",
        || {
            let i = st
                .stat(&c1s)
                .map_err(err)?
                .ok_or("stat of the committed snapshot answers none")?;
            ensure(i.kind == SnapshotKind::Committed && i.name == c1s, || {
                format!("stat answered {i:?}")
            })?;
            ensure(st.stat("conformance-never").map_err(err)?.is_none(), || {
                "stat of an unknown name answers a snapshot".into()
            })?;
            Ok(None)
        },
    );
    r.check(
        "prepare of a committed target answers cached",
        "prepare(key, parent, target): cached(info of target) when target is committed (download and extraction skipped)",
        || match st.prepare("conformance-k1-again", None, Some(&c1s)).map_err(err)? {
            Prepared::Cached(i) => ensure(i.name == c1s, || format!("cached answers {}", i.name)).map(|()| None),
            Prepared::Fresh(_) => Err("answered fresh for a committed target".into()),
        },
    );
    r.gate(
        "a child layer on a parent",
        "prepare(key, parent, target): a store of whole trees answers [copy(the parent's dir)], a store of overlayfs layers [overlay(the parent chain's dirs, topmost first)] (one form for every layer); commit records the parent",
        || {
            let t = match st.prepare("conformance-k2", Some(&c1s), Some(&c2s)).map_err(err)? {
                Prepared::Fresh(t) => t,
                Prepared::Cached(_) => return Err("answered cached for a target never committed".into()),
            };
            match t.mounts.as_slice() {
                [m @ Mount::Copy(_)] if !overlay => {
                    mount_dirs(st.root(), m, &["etc/hello"])?;
                }
                [m @ Mount::Overlay(dirs)] if overlay => {
                    ensure(dirs.len() == 1, || {
                        format!("{m} for a parent chain of 1 layer: one directory expected")
                    })?;
                    mount_dirs(st.root(), m, &["etc/hello"])?;
                }
                other => {
                    let want = if overlay {
                        "[overlay([the parent's dir])], as the base layer was an overlayfs layer"
                    } else {
                        "[copy(the parent's dir)], as the base layer was a whole tree"
                    };
                    return Err(format!("a child layer with mounts {}: {want} expected", describe_mounts(other)));
                }
            }
            fill(&st, &t, &[("etc/child", b"child\n")])?;
            let i = st.commit(&c2s, "conformance-k2", &d2).map_err(err)?;
            ensure(i.parent.as_deref() == Some(c1s.as_str()), || format!("committed child has parent {:?}", i.parent))?;
            Ok(None)
        },
    );
    r.check(
        "view of a chain answers one mount of the chain, beneath the store",
        "view(key, parent): one mount in the store's form: [copy(the top's dir)] or [overlay(the chain's dirs, topmost first: as many as layers)]; paths relative, beneath the store",
        || {
            let ms = st.view("conformance-view", &c2s).map_err(err)?;
            match ms.as_slice() {
                [m @ Mount::Copy(_)] if !overlay => {
                    mount_dirs(st.root(), m, &["etc/child"])?;
                }
                [m @ Mount::Overlay(dirs)] if overlay => {
                    ensure(dirs.len() == 2, || {
                        format!("{m} for a chain of 2 layers: two directories expected")
                    })?;
                    mount_dirs(st.root(), m, &["etc/child", "etc/hello"])?;
                }
                other => {
                    let want = if overlay { "[overlay([top dir, base dir])]" } else { "[copy(the top's dir)]" };
                    return Err(format!("view answered {}: {want} expected", describe_mounts(other)));
                }
            }
            st.remove("conformance-view").map_err(|e| format!("remove of the view: {e}"))?;
            Ok(None)
        },
    );
    r.check(
        "usage counts a snapshot's bytes and inodes",
        "usage(name): size at least the bytes of its files, inodes at least its entries",
        || {
            let u = st.usage(&c1s).map_err(err)?.ok_or("no usage")?;
            ensure(u.size >= base_bytes && u.inodes >= 3, || {
                format!(
                    "usage answers {} bytes, {} inodes for {base_bytes} bytes in 3 entries",
                    u.size, u.inodes
                )
            })?;
            Ok(None)
        },
    );
    r.check(
        "list-snapshots pages through every snapshot, for any limit",
        "list-snapshots(cursor, limit): the paging contract of list-blobs",
        || {
            for limit in [1u32, 2, 256] {
                let seen = page_through(limit, 100, |cursor, limit| {
                    st.page(cursor, limit).map_err(err)
                })?;
                for c in [&c1s, &c2s] {
                    ensure(seen.iter().filter(|n| n == &c).count() == 1, || {
                        format!(
                            "limit {limit}: {c} listed {} times",
                            seen.iter().filter(|n| n == &c).count()
                        )
                    })?;
                }
            }
            Ok(None)
        },
    );
    r.check(
        "a parent is not removed while a snapshot on it is in use; then both are",
        "remove(name): refused (an error, nothing removed) while an active snapshot or view has it as parent, and in a store of overlayfs layers while any child exists (its layer is the child's lower directory); removing frees the snapshot",
        || {
            let c4 = digest("chain 4").map_err(err)?.to_string();
            match st.prepare("conformance-k4", Some(&c1s), Some(&c4)).map_err(err)? {
                Prepared::Fresh(_) => {}
                Prepared::Cached(_) => return Err("answered cached for a target never committed".into()),
            }
            ensure(st.remove(&c1s).is_err(), || "the parent of an active snapshot was removed".into())?;
            ensure(st.stat(&c1s).map_err(err)?.is_some(), || "a refused remove removed the parent".into())?;
            st.remove("conformance-k4").map_err(|e| format!("remove of an active snapshot: {e}"))?;
            if overlay {
                ensure(st.remove(&c1s).is_err(), || "a store of overlayfs layers removed the parent of a committed child".into())?;
            }
            st.remove(&c2s).map_err(err)?;
            st.remove(&c1s).map_err(err)?;
            for c in [&c1s, &c2s] {
                ensure(st.stat(c).map_err(err)?.is_none(), || format!("{c} is still there after remove"))?;
            }
            Ok(None)
        },
    );
    r.check(
        "a killed unpack's leftovers do not block the next one",
        "prepare after a process died between prepare and commit (its active snapshot left behind) answers fresh for the same target under a new key, and commit works",
        || {
            let t = match st.prepare("conformance-killed", None, Some(&c3s)).map_err(err)? {
                Prepared::Fresh(t) => t,
                Prepared::Cached(_) => return Err("answered cached for a target never committed".into()),
            };
            fill(&st, &t, &[("half", b"half")])?;
            st.kill();
            let t = match st.prepare("conformance-k3", None, Some(&c3s)).map_err(err)? {
                Prepared::Fresh(t) => t,
                Prepared::Cached(_) => return Err("answered cached for a target never committed".into()),
            };
            fill(&st, &t, &[("whole", b"whole")])?;
            st.commit(&c3s, "conformance-k3", &d1).map_err(err)?;
            st.remove(&c3s).map_err(err)?;
            Ok(None)
        },
    );
}
