//! Test plugin: a layer store that hands the host paths and mounts outside
//! its store directory, or mounts that break the contract. `opt.mode=`
//! picks the attack:
//!
//! * `dir`: extract a fresh layer into `../outside`;
//! * `meta`: keep the host's record at `../../record`;
//! * `copy-abs` / `copy-up`: claim the whole chain is cached and make the
//!   view a copy of `/etc` / `../../etc`;
//! * `copy-link`: the same through `esc`, a symlink in the store pointing
//!   out (made by the test), with a forged record beside it;
//! * `overlay-abs` / `overlay-up` / `overlay-link`: a view whose lower
//!   directories are `/etc`, `../../etc` (after a good one), or `esc` (the
//!   symlink pointing out);
//! * `overlay-count`: a view naming nine directories (the image has fewer
//!   layers);
//! * `several`: a view of two copy mounts;
//! * `mixed`: a view of a copy mount and an overlay mount;
//! * `prepare-up`: a fresh base layer over `overlay(["../../etc"])`;
//! * `prepare-count`: a fresh base layer over one lower directory;
//! * `mixed-forms`: a base layer prepared as an overlayfs layer, then its
//!   child with no mount (a whole tree), and a view that copies the chain.
//!
//! Only `layer-store` is declared, never `layer-store.overlay`: the host
//! must act on the mounts answered. It must refuse each one, naming the
//! plugin, and touch nothing outside the store.
use rumoci_driver_sdk::*;

struct Evil;

fn mode() -> String {
    config()
        .into_iter()
        .find(|(k, _)| k == "mode")
        .map(|(_, v)| v)
        .unwrap_or_default()
}

fn committed(name: String) -> SnapshotInfo {
    SnapshotInfo {
        name,
        parent: None,
        kind: SnapshotKind::Committed,
        diff_id: None,
        labels: Vec::new(),
        meta: Some("record".into()),
    }
}

fn overlay(dirs: &[&str]) -> Mount {
    Mount::Overlay(dirs.iter().map(|d| d.to_string()).collect())
}

/// Whether the mode claims the whole chain is cached (the attack is in
/// the view).
fn cached() -> bool {
    let m = mode();
    m.starts_with("copy") || m.starts_with("overlay") || m == "several" || m == "mixed"
}

impl Driver for Evil {
    fn info() -> DriverInfo {
        DriverInfo::new("evil-mount", "0.0.0", &["layer-store"])
    }
}
impl Cas for Evil {}
impl LayerStore for Evil {
    fn stat(name: String) -> Result<Option<SnapshotInfo>> {
        Ok(cached().then(|| committed(name)))
    }
    fn prepare(req: Prepare) -> Result<Prepared> {
        let parent = req.parent;
        let (dir, meta, mounts) = match mode().as_str() {
            "dir" => ("../outside", "record", vec![]),
            "meta" => ("fs", "../../record", vec![]),
            "prepare-up" => ("fs", "record", vec![overlay(&["../../etc"])]),
            "prepare-count" => ("fs", "record", vec![overlay(&["fs"])]),
            "mixed-forms" if parent.is_none() => ("fs", "record", vec![overlay(&[])]),
            "mixed-forms" => ("fs", "record", vec![]),
            m => return Err(Error::Other(format!("prepare not expected in mode {m}"))),
        };
        Ok(Prepared::Fresh(UnpackTarget {
            dir: dir.into(),
            mounts,
            meta: meta.into(),
        }))
    }
    fn view(_key: String, _parent: String) -> Result<Vec<Mount>> {
        Ok(match mode().as_str() {
            "copy-abs" => vec![Mount::Copy("/etc".into())],
            "copy-up" => vec![Mount::Copy("../../etc".into())],
            "copy-link" => vec![Mount::Copy("esc".into())],
            "overlay-abs" => vec![overlay(&["/etc"])],
            "overlay-up" => vec![overlay(&["fs", "../../etc"])],
            "overlay-link" => vec![overlay(&["esc"])],
            "overlay-count" => vec![overlay(&["fs"; 9])],
            "several" => vec![Mount::Copy("fs".into()), Mount::Copy("fs".into())],
            "mixed" => vec![Mount::Copy("fs".into()), overlay(&["fs"])],
            "mixed-forms" => vec![Mount::Copy("fs".into())],
            m => return Err(Error::Other(format!("view not expected in mode {m}"))),
        })
    }
    fn commit(req: Commit) -> Result<SnapshotInfo> {
        Ok(committed(req.name))
    }
    fn remove(_name: String) -> Result<()> {
        Ok(())
    }
}
register_driver!(Evil);
