//! PAX extended header records (`x`, `g`): parsed as Go's `archive/tar`
//! parses them, GNU sparse format 0.0's repeated records included.

use std::collections::BTreeMap;

/// The records of one PAX extended header, key → value (a key repeated in
/// one header: the last wins). GNU sparse 0.0's repeated
/// `GNU.sparse.offset`/`GNU.sparse.numbytes` pairs are gathered into one
/// `GNU.sparse.map` record, as format 0.1 writes it.
pub type Records = BTreeMap<Vec<u8>, Vec<u8>>;

/// GNU sparse records.
pub const SPARSE_MAP: &[u8] = b"GNU.sparse.map";
const SPARSE_OFFSET: &[u8] = b"GNU.sparse.offset";
const SPARSE_NUMBYTES: &[u8] = b"GNU.sparse.numbytes";

/// Parse the data of a PAX header; the error says what is wrong.
pub(super) fn parse(mut data: &[u8]) -> Result<Records, String> {
    let mut records = Records::new();
    let mut sparse: Vec<&[u8]> = Vec::new();
    while !data.is_empty() {
        let (key, value, rest) = record(data)?;
        data = rest;
        if key == SPARSE_OFFSET || key == SPARSE_NUMBYTES {
            let want = if sparse.len().is_multiple_of(2) {
                SPARSE_OFFSET
            } else {
                SPARSE_NUMBYTES
            };
            if key != want || value.contains(&b',') {
                return Err("GNU sparse 0.0 records out of order".into());
            }
            sparse.push(value);
        } else {
            records.insert(key.to_vec(), value.to_vec());
        }
    }
    if !sparse.is_empty() {
        records.insert(SPARSE_MAP.to_vec(), sparse.join(&b","[..]));
    }
    Ok(records)
}

/// A record's key and value, and the bytes that follow it.
type Record<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// One `"<len> <key>=<value>\n"` record: key, value and what follows.
fn record(s: &[u8]) -> Result<Record<'_>, String> {
    let bad = || {
        format!(
            "malformed PAX record {:?}",
            crate::show::name(&s[..s.len().min(40)])
        )
    };
    let sp = s.iter().position(|&c| c == b' ').ok_or_else(bad)?;
    let n: usize = std::str::from_utf8(&s[..sp])
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(bad)?;
    if n < 5 || n > s.len() || n <= sp + 1 {
        return Err(bad());
    }
    let rec = &s[sp + 1..n];
    let (rec, nl) = rec.split_at(rec.len() - 1);
    if nl != b"\n" {
        return Err(bad());
    }
    let eq = rec.iter().position(|&c| c == b'=').ok_or_else(bad)?;
    let (key, value) = (&rec[..eq], &rec[eq + 1..]);
    // as Go: names and owner names cannot hold a NUL; no key can
    let nul_forbidden_in_value = matches!(key, b"path" | b"linkpath" | b"uname" | b"gname");
    if key.is_empty() || key.contains(&0) || (nul_forbidden_in_value && value.contains(&0)) {
        return Err(format!("invalid PAX record {}", crate::show::name(key)));
    }
    Ok((key, value, &s[n..]))
}

/// Parse a decimal integer record value as Go's `strconv.ParseInt`.
pub fn int(v: &[u8]) -> Option<i64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Parse a PAX time (`123`, `123.456`, `-1.5`) into seconds and
/// nanoseconds (normalised: `-1.5` is `(-2, 500_000_000)`); digits past
/// nanoseconds are dropped.
pub fn time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs_s, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs_s.parse().ok()?;
    if frac.is_empty() {
        return Some((secs, 0));
    }
    if !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut nanos = 0u32;
    for (i, c) in frac.bytes().take(9).enumerate() {
        nanos += u32::from(c - b'0') * 10u32.pow(8 - i as u32);
    }
    if secs_s.starts_with('-') && nanos > 0 {
        Some((secs.checked_sub(1)?, 1_000_000_000 - nanos))
    } else {
        Some((secs, nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One record, its length computed.
    fn rec(k: &str, v: &str) -> Vec<u8> {
        let body = format!(" {k}={v}\n");
        let mut n = body.len() + 1;
        while format!("{n}").len() + body.len() != n {
            n += 1;
        }
        format!("{n}{body}").into_bytes()
    }

    #[test]
    fn records_last_wins_and_sparse_00_gathered() {
        let data: Vec<u8> = [
            rec("path", "a"),
            rec("path", "b"),
            rec("GNU.sparse.offset", "10"),
            rec("GNU.sparse.numbytes", "5"),
            rec("GNU.sparse.offset", "30"),
            rec("GNU.sparse.numbytes", "2"),
        ]
        .concat();
        let r = parse(&data).expect("parse");
        assert_eq!(r[&b"path"[..]], b"b");
        assert_eq!(r[SPARSE_MAP], b"10,5,30,2");
        assert!(parse(&rec("GNU.sparse.numbytes", "5")).is_err());
        assert_eq!(parse(&rec("path", "a")).expect("one")[&b"path"[..]], b"a");
    }

    #[test]
    fn malformed_records_refused() {
        let mut long = rec("path", "a");
        long[1] += 1; // length one too many
        for bad in [
            &b"4 a=\n"[..],
            &long,
            b"x path=a\n",
            b"8 noeq\n\n",
            &rec("path", "a\0b"),
            &rec("", "v"),
            &rec("a\0b", "v"),
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        // a NUL in an xattr value is fine
        assert!(parse(&rec("SCHILY.xattr.user.a", "\0")).is_ok());
    }

    #[test]
    fn times() {
        assert_eq!(time(b"1350244992.023960108"), Some((1350244992, 23960108)));
        assert_eq!(time(b"1350244992.3"), Some((1350244992, 300000000)));
        assert_eq!(time(b"1350244992.0239601089"), Some((1350244992, 23960108)));
        assert_eq!(time(b"-1.5"), Some((-2, 500000000)));
        assert_eq!(time(b"1.x"), None);
        assert_eq!(time(b"12"), Some((12, 0)));
    }
}
