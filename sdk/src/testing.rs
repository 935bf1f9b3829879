//! Small helpers for the native unit tests of a layer store (they panic on
//! anything unexpected).

use crate::{Commit, Digest, Labels, Prepare, Prepared, Result, UnpackTarget};

/// `sha256:` followed by the byte `n` in hex, 32 times.
pub fn digest(n: u8) -> Digest {
    match Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))) {
        Ok(d) => d,
        Err(e) => panic!("digest({n}): {e:?}"),
    }
}

/// The arguments of a `prepare`.
pub fn prepare(key: &str, parent: Option<&str>, target: Option<&str>, labels: Labels) -> Prepare {
    Prepare {
        key: key.to_string(),
        parent: parent.map(str::to_string),
        target: target.map(str::to_string),
        labels,
    }
}

/// The arguments of a `commit`.
pub fn commit(name: &str, key: &str, diff_id: Digest, labels: Labels) -> Commit {
    Commit {
        name: name.to_string(),
        key: key.to_string(),
        diff_id,
        labels,
    }
}

/// The target of a fresh `prepare`; panics on `cached`.
pub fn fresh(p: Prepared) -> UnpackTarget {
    match p {
        Prepared::Fresh(t) => t,
        Prepared::Cached(i) => panic!("expected fresh, got cached {}", i.name),
    }
}

/// The error of `r` as debug-printed (without `Error::`), checked to start
/// with `want` (a variant name, e.g. `NotFound`); panics otherwise.
pub fn is_err<T: std::fmt::Debug>(r: Result<T>, want: &str) -> String {
    match r {
        Err(e) => {
            let s = format!("{e:?}").trim_start_matches("Error::").to_string();
            assert!(s.starts_with(want), "expected {want}, got {s}");
            s
        }
        Ok(v) => panic!("expected {want}, got Ok({v:?})"),
    }
}
