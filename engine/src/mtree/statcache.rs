//! The bundle's stat cache: for every entry of the manifest, the inode,
//! size, mtime and ctime it had when the manifest was written. `repack`
//! trusts an entry that still has all four without reading it again; ctime
//! cannot be set from user space and every write, chmod, chown, xattr or
//! link change moves it, so a match means the entry is as recorded.
//!
//! Stored beside the manifest as `sha256_<hex>.statcache`, one text line
//! per entry: `ino size mtime_s mtime_ns ctime_s ctime_ns path` (path
//! vis-encoded), after a `rumoci-statcache 1` header line. A missing or
//! malformed cache only costs speed: repack then compares everything.
//!
//! Timestamps are coarse (a clock tick) on some kernels, so a change made
//! within the same tick as the recorded ctime could keep it. Entries whose
//! ctime is not safely older than the moment the cache writer started
//! (the "racy" entries, as git calls them) are therefore not recorded: any
//! later change happens after that moment and gets a later ctime.

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::os::unix::fs::MetadataExt;

use super::vis::{unvis, vis};

const MAGIC: &str = "rumoci-statcache 1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// A line as `BufRead::lines` gives it: without its `\n` or `\r\n`.
fn strip_newline(line: &str) -> &str {
    let l = line.strip_suffix('\n').unwrap_or(line);
    if line.len() != l.len() {
        l.strip_suffix('\r').unwrap_or(l)
    } else {
        l
    }
}

/// One line of a cache: `ino size mtime_s mtime_ns ctime_s ctime_ns path`.
fn parse_line(line: &str) -> Option<(Vec<u8>, Stamp)> {
    let mut w = line.split(' ');
    let mut n = || w.next().and_then(|s| s.parse::<i64>().ok());
    let (ino, size, ms, mns, cs, cns) = (n()?, n()?, n()?, n()?, n()?, n()?);
    let path = w.next().and_then(unvis)?;
    Some((
        path,
        Stamp {
            ino: ino as u64,
            size: size as u64,
            mtime: (ms, mns),
            ctime: (cs, cns),
        },
    ))
}

impl Stamp {
    fn of(md: &std::fs::Metadata) -> Stamp {
        Stamp {
            ino: md.ino(),
            size: md.size(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        }
    }
}

/// A loaded stat cache.
#[derive(Debug, Default)]
pub struct StatCache {
    map: HashMap<Vec<u8>, Stamp>,
}

impl StatCache {
    /// Read a cache; `None` if it is malformed (the caller then compares
    /// everything).
    pub fn read(input: impl BufRead) -> io::Result<Option<StatCache>> {
        let mut lines = input.lines();
        match lines.next().transpose()? {
            Some(l) if l == MAGIC => {}
            _ => return Ok(None),
        }
        let mut map = HashMap::new();
        for line in lines {
            let Some((path, stamp)) = parse_line(&line?) else {
                return Ok(None);
            };
            map.insert(path, stamp);
        }
        Ok(Some(StatCache { map }))
    }

    /// Whether the entry at `path` still has the recorded stamp.
    pub fn unchanged(&self, path: &[u8], md: &std::fs::Metadata) -> bool {
        self.map.get(path) == Some(&Stamp::of(md))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A cache read line by line, alongside the manifest it was written with
/// (its entries are that manifest's, in the same order, less the racy
/// ones): only the next line is held. A malformed line ends the cache
/// (what follows is compared in full).
pub struct StatCacheStream<R: BufRead> {
    /// `None` once the cache has ended (or a line was malformed).
    input: Option<R>,
    /// The line being read (reused: no allocation per line).
    line: String,
    /// The next entry, when `has_next`: its path (buffer reused) and stamp.
    path: Vec<u8>,
    stamp: Stamp,
    has_next: bool,
}

/// The line `line` (no newline) into `path` and a stamp, as [`parse_line`]
/// reads it, reusing `path`'s buffer.
fn parse_line_into(line: &str, path: &mut Vec<u8>) -> Option<Stamp> {
    let mut w = line.split(' ');
    let mut n = || w.next().and_then(|s| s.parse::<i64>().ok());
    let (ino, size, ms, mns, cs, cns) = (n()?, n()?, n()?, n()?, n()?, n()?);
    let p = w.next()?;
    path.clear();
    if p.as_bytes().contains(&b'\\') {
        path.extend_from_slice(&unvis(p)?);
    } else {
        path.extend_from_slice(p.as_bytes());
    }
    Some(Stamp {
        ino: ino as u64,
        size: size as u64,
        mtime: (ms, mns),
        ctime: (cs, cns),
    })
}

impl<R: BufRead> StatCacheStream<R> {
    /// Start reading a cache; `None` if it has no valid header.
    pub fn new(mut input: R) -> io::Result<Option<StatCacheStream<R>>> {
        let mut line = String::new();
        input.read_line(&mut line)?;
        if strip_newline(&line) != MAGIC {
            return Ok(None);
        }
        let mut s = StatCacheStream {
            input: Some(input),
            line,
            path: Vec::new(),
            stamp: Stamp {
                ino: 0,
                size: 0,
                mtime: (0, 0),
                ctime: (0, 0),
            },
            has_next: false,
        };
        s.advance();
        Ok(Some(s))
    }

    fn advance(&mut self) {
        self.has_next = false;
        let Some(input) = &mut self.input else {
            return;
        };
        self.line.clear();
        match input.read_line(&mut self.line) {
            Ok(0) => self.input = None,
            Ok(_) => match parse_line_into(strip_newline(&self.line), &mut self.path) {
                Some(stamp) => {
                    self.stamp = stamp;
                    self.has_next = true;
                }
                None => {
                    tracing::warn!("stat cache: malformed line, the rest is ignored");
                    self.input = None;
                }
            },
            Err(e) => {
                tracing::warn!("stat cache: {e}, the rest is ignored");
                self.input = None;
            }
        }
    }

    /// Whether the manifest entry `path`, whose tree entry has metadata
    /// `md`, still has the recorded stamp. Must be called for every entry
    /// of the manifest, in its order (with `md` `None` where the tree has
    /// no such entry), so the cache keeps pace.
    pub fn unchanged(&mut self, path: &[u8], md: Option<&std::fs::Metadata>) -> bool {
        // the root is written as "."
        let path = if path.is_empty() { b"." } else { path };
        if !self.has_next || self.path != path {
            return false;
        }
        let hit = md.is_some_and(|md| self.stamp == Stamp::of(md));
        self.advance();
        hit
    }
}

/// Writes a cache entry by entry.
pub struct StatCacheWriter<W: Write> {
    out: W,
    /// Entries with a ctime at or after this are racy and left out.
    cutoff: (i64, i64),
    skipped: usize,
}

/// How far before the writer's start a ctime must lie to be trusted.
const RACY_MARGIN: std::time::Duration = std::time::Duration::from_millis(50);

impl<W: Write> StatCacheWriter<W> {
    /// Start a cache.
    pub fn new(mut out: W) -> io::Result<Self> {
        writeln!(out, "{MAGIC}")?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(RACY_MARGIN);
        Ok(StatCacheWriter {
            out,
            cutoff: (
                i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
                i64::from(now.subsec_nanos()),
            ),
            skipped: 0,
        })
    }

    /// Record one entry.
    pub fn add(&mut self, path: &[u8], md: &std::fs::Metadata) -> io::Result<()> {
        let s = Stamp::of(md);
        if s.ctime >= self.cutoff {
            self.skipped += 1;
            return Ok(());
        }
        // an empty path (the root) is written as "."
        let p = if path.is_empty() {
            ".".to_string()
        } else {
            vis(path)
        };
        writeln!(
            self.out,
            "{} {} {} {} {} {} {p}",
            s.ino, s.size, s.mtime.0, s.mtime.1, s.ctime.0, s.ctime.1
        )
    }

    /// Flush; returns the writer and how many racy entries were left out.
    pub fn finish(mut self) -> io::Result<(W, usize)> {
        self.out.flush()?;
        Ok((self.out, self.skipped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_change_detection() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("a b");
        std::fs::write(&f, b"x").expect("write");
        let md = std::fs::symlink_metadata(&f).expect("stat");
        // a file changed just now is racy and not recorded
        let mut w = StatCacheWriter::new(Vec::new()).expect("new");
        w.add(b"a b", &md).expect("add");
        let (data, skipped) = w.finish().expect("finish");
        assert_eq!(skipped, 1);
        assert_eq!(
            StatCache::read(&data[..]).expect("read").expect("ok").len(),
            0
        );
        std::thread::sleep(RACY_MARGIN * 2);
        let mut w = StatCacheWriter::new(Vec::new()).expect("new");
        w.add(b"a b", &md).expect("add");
        let (data, skipped) = w.finish().expect("finish");
        assert_eq!(skipped, 0);
        let c = StatCache::read(&data[..]).expect("read").expect("valid");
        assert_eq!(c.len(), 1);
        assert!(c.unchanged(b"a b", &md));
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        let md2 = std::fs::symlink_metadata(&f).expect("stat");
        assert!(!c.unchanged(b"a b", &md2), "chmod must move ctime");
        assert!(!c.unchanged(b"other", &md));
        assert!(StatCache::read(&b"garbage\n"[..]).expect("read").is_none());
        assert!(
            StatCache::read(format!("{MAGIC}\n1 2 x\n").as_bytes())
                .expect("read")
                .is_none()
        );
    }

    #[test]
    fn stream_reads_escaped_paths_and_stops_at_a_bad_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("x");
        std::fs::write(&f, b"x").expect("write");
        let md = std::fs::symlink_metadata(&f).expect("stat");
        let line = |p: &str| {
            format!(
                "{} {} {} {} {} {} {p}",
                md.ino(),
                md.size(),
                md.mtime(),
                md.mtime_nsec(),
                md.ctime(),
                md.ctime_nsec()
            )
        };
        let data = format!(
            "{MAGIC}\r\n{}\n{}\r\nbad\n{}\n",
            line("."),
            line("a\\040b"),
            line("c")
        );
        let mut s = StatCacheStream::new(data.as_bytes())
            .expect("read")
            .expect("valid");
        assert!(s.unchanged(b"", Some(&md)));
        assert!(!s.unchanged(b"zzz", Some(&md)), "not the next entry");
        assert!(s.unchanged(b"a b", Some(&md)));
        assert!(!s.unchanged(b"c", Some(&md)), "after a malformed line");
    }
}
