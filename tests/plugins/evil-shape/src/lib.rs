//! Test plugin: answers whose *shape* is hostile (every single answer is
//! well-formed). `opt.mode=` picks it:
//!
//! * `typo`: the dir-cas content store declaring a misspelt capability
//!   (`cas.open-strem`);
//! * `list`: a content store (the dir-cas driver) whose `list-blobs` never
//!   ends: page after page of made-up digests, the cursor always advancing;
//! * `loop`: a layer store whose snapshots' parents form a cycle
//!   (`a` ← `b` ← `c` ← `a`);
//! * `deep`: a layer store with one chain of `opt.depth=` committed
//!   snapshots (default 10,000), each the parent of the next.
//!
//! The host must end each with a clean error naming the plugin (or, for a
//! chain within its limits, answer normally), never hang or abort.
#[allow(dead_code)]
#[path = "../../../../plugins/dir-cas/src/store.rs"]
mod store;
#[macro_use]
#[path = "../../dir_cas_methods.rs"]
mod dir_cas_methods;

use rumoci_driver_sdk::*;
use store::DirCasDriver;

struct Evil;

fn opt(key: &str) -> String {
    config()
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

fn mode() -> String {
    opt("mode")
}

/// The number of snapshots in `deep` mode.
fn depth() -> u64 {
    opt("depth").parse().unwrap_or(10_000)
}

impl Driver for Evil {
    fn info() -> DriverInfo {
        let m = mode();
        if m == "list" {
            DriverInfo::new("evil-shape", "0.0.0", &["cas"])
        } else if m == "typo" {
            DriverInfo::new("evil-shape", "0.0.0", &["cas", "cas.open-strem"])
        } else {
            DriverInfo::new("evil-shape", "0.0.0", &["layer-store"])
        }
    }
}

impl Cas for Evil {
    dir_cas_methods!(check, stat, open, create, delete, read_index, write_index);
    fn list_blobs(cursor: Option<String>, limit: u32) -> Result<BlobPage> {
        let start: u64 = cursor.as_deref().unwrap_or("0").parse().unwrap_or(0);
        let items = (start..start + u64::from(limit))
            .map(|i| BlobInfo {
                digest: format!("sha256:{i:064x}"),
                size: 1,
                committed_at: None,
                labels: Vec::new(),
            })
            .collect();
        Ok(BlobPage {
            items,
            next: Some((start + u64::from(limit)).to_string()),
        })
    }
}

fn snapshot(i: u64, parent: Option<u64>) -> SnapshotInfo {
    SnapshotInfo {
        name: format!("s{i:06}"),
        parent: parent.map(|p| format!("s{p:06}")),
        kind: SnapshotKind::Committed,
        diff_id: None,
        labels: Vec::new(),
        meta: None,
    }
}

impl LayerStore for Evil {
    fn list_snapshots(cursor: Option<String>, limit: u32) -> Result<SnapshotPage> {
        let start: u64 = cursor.as_deref().unwrap_or("0").parse().unwrap_or(0);
        let looped = match mode().as_str() {
            // s0 ← s1 ← s2 ← s0
            "loop" => true,
            // s0 ← s1 ← … ← s(n-1)
            "deep" => false,
            m => return Err(Error::Other(format!("list-snapshots in mode {m}"))),
        };
        let count = if looped { 3 } else { depth() };
        let parent = |i: u64| {
            if looped {
                Some((i + 2) % 3)
            } else {
                i.checked_sub(1)
            }
        };
        let end = count.min(start + u64::from(limit));
        Ok(SnapshotPage {
            items: (start..end).map(|i| snapshot(i, parent(i))).collect(),
            next: (end < count).then(|| end.to_string()),
        })
    }
    fn usage(_name: String) -> Result<DiskUsage> {
        Ok(DiskUsage { size: 0, inodes: 0 })
    }
    fn remove(_name: String) -> Result<()> {
        Ok(())
    }
}
register_driver!(Evil);
