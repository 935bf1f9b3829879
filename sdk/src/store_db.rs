//! The serde records of a layer store that keeps them in one JSON file
//! (e.g. `db.json`): the snapshot [`Kind`] as stored, and the file's
//! envelope [`Db`] (version, id counter, the records by name), loaded and
//! saved through a [`RecordFile`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::store_util::{RecordFile, io_err, remove_any};
use crate::{Error, Result, SnapshotKind};

/// A snapshot's kind as stored: `"active"`, `"view"` or `"committed"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Being filled by the host; becomes committed.
    Active,
    /// A read-only view of a committed snapshot; has no directory.
    View,
    /// Complete and immutable.
    Committed,
}

impl From<Kind> for SnapshotKind {
    fn from(k: Kind) -> SnapshotKind {
        match k {
            Kind::Active => SnapshotKind::Active,
            Kind::View => SnapshotKind::View,
            Kind::Committed => SnapshotKind::Committed,
        }
    }
}

/// The contents of a record file: `version`, `next_id`, the store's own
/// fields `X` (flattened in between, e.g. a clock; `()` for none) and the
/// records `R` by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Db<R, X = ()> {
    /// Format version of the file.
    pub version: u32,
    /// The next number to try for a new directory.
    pub next_id: u64,
    /// The store's own fields, stored beside `version` and `next_id`.
    #[serde(flatten)]
    pub extra: X,
    /// Keyed by name (committed) or key (active, view): one namespace.
    pub snapshots: BTreeMap<String, R>,
}

impl<R, X: Default> Db<R, X> {
    /// An empty file of format `version`: `next_id` 1, default `extra`, no
    /// records.
    pub fn new(version: u32) -> Self {
        Db {
            version,
            next_id: 1,
            extra: X::default(),
            snapshots: BTreeMap::new(),
        }
    }
}

impl<R: Serialize + DeserializeOwned, X: Serialize + DeserializeOwned + Default> Db<R, X> {
    /// Load `file` beneath `root`, [`Db::new`] if it does not exist. A file
    /// that does not decode is `integrity` (`"<file> in <store> is corrupt
    /// (…); move it away to start an empty <empty>"`), as is a version
    /// other than `version` ([`RecordFile::check_version`]).
    pub fn load(
        file: &RecordFile,
        root: &Path,
        version: u32,
        store: &str,
        empty: &str,
    ) -> Result<Self> {
        match file.read(root)? {
            Some(bytes) => {
                let db: Self = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Integrity(format!(
                        "{} in {store} is corrupt ({e}); move it away to start an empty {empty}",
                        file.name
                    ))
                })?;
                file.check_version(db.version, version)?;
                Ok(db)
            }
            None => Ok(Db::new(version)),
        }
    }

    /// The first number from `next_id` on that is not `taken` (in use, or
    /// a directory that survived); `next_id` moves past it.
    pub fn allocate_id(&mut self, taken: impl Fn(u64) -> bool) -> u64 {
        let mut id = self.next_id;
        while taken(id) {
            id += 1;
        }
        self.next_id = id + 1;
        id
    }

    /// Record `key` as `record` and save, then create the directory `rel`
    /// beneath `root` with its `fs/`. Record first, directory second: a
    /// crash in between leaves a harmless record (removable), never a
    /// directory that a concurrent load would take for garbage. If the
    /// directory cannot be made, the record is dropped and saved again and
    /// the error names `<rel>/fs`.
    pub fn insert_with_dir(
        &mut self,
        file: &RecordFile,
        root: &Path,
        key: &str,
        record: R,
        rel: &str,
    ) -> Result<()> {
        self.snapshots.insert(key.to_string(), record);
        self.save(file, root)?;
        let path = root.join(rel);
        let made = std::fs::create_dir(&path).and_then(|()| std::fs::create_dir(path.join("fs")));
        if let Err(e) = made {
            self.snapshots.remove(key);
            let _ = remove_any(&path);
            self.save(file, root)?;
            return Err(io_err(format!("{rel}/fs"), e));
        }
        Ok(())
    }

    /// Replace `file` beneath `root` with these records (pretty-printed
    /// JSON), atomically ([`RecordFile::write`]).
    pub fn save(&self, file: &RecordFile, root: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Other(format!("cannot encode {}: {e}", file.name)))?;
        file.write(root, &bytes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store_util::random_suffix;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Clock {
        clock: u64,
    }

    const FILE: RecordFile = RecordFile {
        name: "db.json",
        tmp_prefix: "db.json.tmp-",
    };

    #[test]
    fn layout_and_load_save() {
        let root = std::env::temp_dir().join(format!("rumoci-sdk-db-{}", random_suffix()));
        std::fs::create_dir(&root).unwrap();
        let mut db: Db<Kind, Clock> = Db::load(&FILE, &root, 1, "the test store", "store").unwrap();
        assert_eq!((db.version, db.next_id, db.extra.clock), (1, 1, 0));
        db.extra.clock = 5;
        db.snapshots.insert("a".into(), Kind::Committed);
        db.save(&FILE, &root).unwrap();
        let text = String::from_utf8(std::fs::read(root.join("db.json")).unwrap()).unwrap();
        assert_eq!(
            text,
            "{\n  \"version\": 1,\n  \"next_id\": 1,\n  \"clock\": 5,\n  \"snapshots\": {\n    \"a\": \"committed\"\n  }\n}"
        );
        let back: Db<Kind, Clock> = Db::load(&FILE, &root, 1, "the test store", "store").unwrap();
        assert_eq!(back.extra, Clock { clock: 5 });
        assert_eq!(
            SnapshotKind::from(back.snapshots["a"]),
            SnapshotKind::Committed
        );
        let plain: Db<Kind> = Db::new(1);
        assert_eq!(
            serde_json::to_string(&plain).unwrap(),
            "{\"version\":1,\"next_id\":1,\"snapshots\":{}}"
        );
        std::fs::write(root.join("db.json"), b"{").unwrap();
        let e = format!(
            "{:?}",
            Db::<Kind>::load(&FILE, &root, 1, "the test store", "store").unwrap_err()
        );
        assert!(
            e.contains("db.json in the test store is corrupt (")
                && e.contains("start an empty store"),
            "{e}"
        );
        std::fs::write(
            root.join("db.json"),
            b"{\"version\":2,\"next_id\":1,\"snapshots\":{}}",
        )
        .unwrap();
        let e = format!(
            "{:?}",
            Db::<Kind>::load(&FILE, &root, 1, "the test store", "store").unwrap_err()
        );
        assert!(e.contains("has version 2"), "{e}");
        remove_any(&root).unwrap();
    }
}
