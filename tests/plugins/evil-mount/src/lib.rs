//! Test plugin: a layer store that hands the host paths and mounts outside
//! its store directory. `opt.mode=` picks the attack:
//!
//! * `dir`: extract a fresh layer into `../outside`;
//! * `meta`: keep the host's record at `../../record`;
//! * `copy-abs` / `copy-up`: claim the whole chain is cached and make the
//!   view a copy of `/etc` / `../../etc`;
//! * `copy-link`: the same through `esc`, a symlink in the store pointing
//!   out (made by the test), with a forged record beside it;
//! * `bind`: ask for a bind mount of the store;
//! * `overlay-abs` / `overlay-up` / `overlay-link` (declaring
//!   `layer-store.overlay`): a view whose lower directories are `/etc`,
//!   `../../etc` (after a good one), or `esc` (the symlink pointing out);
//! * `overlay-opts`: an overlay view that also asks for its own
//!   `upperdir=` outside the store.
//!
//! The host must refuse each one, naming the plugin, and touch nothing
//! outside the store.
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

fn mount(kind: &str, source: &str) -> MountSpec {
    MountSpec {
        kind: kind.into(),
        source: source.into(),
        options: vec!["ro".into()],
    }
}

fn overlay(options: &[&str]) -> MountSpec {
    MountSpec {
        kind: "overlay".into(),
        source: String::new(),
        options: options.iter().map(|o| o.to_string()).collect(),
    }
}

impl Driver for Evil {
    fn info() -> DriverInfo {
        if mode().starts_with("overlay") {
            DriverInfo::new(
                "evil-mount",
                "0.0.0",
                &["layer-store", "layer-store.overlay"],
            )
        } else {
            DriverInfo::new("evil-mount", "0.0.0", &["layer-store"])
        }
    }
}
impl Cas for Evil {}
impl LayerStore for Evil {
    fn stat(name: String) -> Result<Option<SnapshotInfo>> {
        Ok(match mode().as_str() {
            "copy-abs" | "copy-up" | "copy-link" | "bind" => Some(committed(name)),
            m if m.starts_with("overlay") => Some(committed(name)),
            _ => None,
        })
    }
    fn prepare(
        _key: String,
        _parent: Option<String>,
        _target: Option<String>,
        _labels: Labels,
    ) -> Result<Prepared> {
        let (dir, meta) = match mode().as_str() {
            "dir" => ("../outside", "record"),
            "meta" => ("fs", "../../record"),
            m => return Err(Error::Other(format!("prepare not expected in mode {m}"))),
        };
        Ok(Prepared::Fresh(UnpackTarget {
            dir: dir.into(),
            mounts: Vec::new(),
            meta: meta.into(),
        }))
    }
    fn view(_key: String, _parent: String) -> Result<Vec<MountSpec>> {
        Ok(match mode().as_str() {
            "copy-abs" => vec![mount("copy", "/etc")],
            "copy-up" => vec![mount("copy", "../../etc")],
            "copy-link" => vec![mount("copy", "esc")],
            "bind" => vec![mount("bind", ".")],
            "overlay-abs" => vec![overlay(&["lowerdir=/etc"])],
            "overlay-up" => vec![overlay(&["lowerdir=fs:../../etc"])],
            "overlay-link" => vec![overlay(&["lowerdir=esc"])],
            "overlay-opts" => vec![overlay(&["lowerdir=fs", "upperdir=../../etc"])],
            m => return Err(Error::Other(format!("view not expected in mode {m}"))),
        })
    }
    fn commit(
        name: String,
        _key: String,
        _diff_id: Digest,
        _labels: Labels,
    ) -> Result<SnapshotInfo> {
        Ok(committed(name))
    }
    fn remove(_name: String) -> Result<()> {
        Ok(())
    }
}
register_driver!(Evil);
