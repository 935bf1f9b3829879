//! Reading go-mtree manifests: the format rumoci writes (every keyword on
//! every entry) and the one the Go umoci writes through go-mtree (`/set`
//! and `/unset` defaults, relative entries, `..` to climb, full paths).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::Arc;

use super::vis::unvis;

/// Errors while parsing a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Reading failed.
    #[error("reading mtree manifest: {0}")]
    Io(#[from] std::io::Error),
    /// A line is malformed.
    #[error("mtree manifest line {line}: {reason}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// The keywords of one entry (`size`, `type`, `sha256digest`, `xattr.NAME`, …),
/// with `/set` defaults merged in. Values are as written (still vis-encoded
/// where the format encodes them, e.g. `link`).
pub type Keywords = BTreeMap<String, String>;

/// A parsed manifest: entries by path relative to the root (`""` is the root
/// itself, children are `a/b`), in the byte order of their paths.
#[derive(Debug, Default, Clone)]
pub struct Spec {
    /// The entries.
    pub entries: BTreeMap<Vec<u8>, Keywords>,
    /// The keyword set from the `# keywords:` header comment, if any.
    pub keywords: Option<Vec<String>>,
}

impl Spec {
    /// Whether `keyword` is compared: named in the header, or no header.
    pub fn uses(&self, keyword: &str) -> bool {
        self.keywords
            .as_ref()
            .is_none_or(|k| k.iter().any(|w| w == keyword))
    }
}

fn syntax(line: usize, reason: impl Into<String>) -> ParseError {
    ParseError::Syntax {
        line,
        reason: reason.into(),
    }
}

/// Normalise a manifest path (`./a/b`, `a/b/`, `.`) to the relative form
/// used as key (`a/b`, `""`). `..` components are refused.
fn normalise(raw: &[u8], line: usize) -> Result<Vec<u8>, ParseError> {
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(syntax(line, "path climbs with \"..\"")),
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(out)
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        let mut p = dir.to_vec();
        p.push(b'/');
        p.extend_from_slice(name);
        p
    }
}

fn parse_keywords<'a>(
    words: impl Iterator<Item = &'a str>,
    into: &mut Keywords,
) -> Result<(), String> {
    for w in words {
        match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                into.insert(k.to_string(), v.to_string());
            }
            Some(_) => return Err(format!("keyword without a name: {w:?}")),
            // flag keywords such as `optional` or `ignore`
            None => {
                into.insert(w.to_string(), String::new());
            }
        }
    }
    Ok(())
}

/// The keywords of one entry as read by a [`Reader`]: its line as written
/// and the `/set` defaults in force there, looked up only when asked. A
/// repack that finds an entry unchanged through the stat cache never looks
/// at its keywords, so a million entries cost no map of strings each.
#[derive(Debug, Clone)]
pub struct EntryKeywords {
    defaults: Arc<Keywords>,
    /// The (joined) line.
    line: String,
    /// Where in `line` the keywords (after the name) start and end.
    words: std::ops::Range<usize>,
    /// `type=dir`.
    dir: bool,
}

impl EntryKeywords {
    fn words(&self) -> impl Iterator<Item = (&str, &str)> {
        self.line[self.words.clone()]
            .split_ascii_whitespace()
            // flag keywords such as `optional` or `ignore` have no value
            .map(|w| w.split_once('=').unwrap_or((w, "")))
    }

    /// The value of keyword `k` (the entry's own, else the default).
    pub fn get(&self, k: &str) -> Option<&str> {
        // the last of a repeated keyword wins, as in a map
        let mut found = None;
        for (key, v) in self.words() {
            if key == k {
                found = Some(v);
            }
        }
        found.or_else(|| self.defaults.get(k).map(String::as_str))
    }

    /// Whether the entry has keyword `k`.
    pub fn contains_key(&self, k: &str) -> bool {
        self.get(k).is_some()
    }

    /// Whether the entry is a directory (`type=dir`).
    pub fn is_dir(&self) -> bool {
        self.dir
    }

    /// Every keyword with its value, sorted by keyword.
    pub fn to_map(&self) -> Keywords {
        let mut m = (*self.defaults).clone();
        for (k, v) in self.words() {
            m.insert(k.to_string(), v.to_string());
        }
        m
    }

    /// Every keyword with its value, by keyword, borrowed.
    pub fn borrowed(&self) -> BTreeMap<&str, &str> {
        let mut m: BTreeMap<&str, &str> = self
            .defaults
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        m.extend(self.words());
        m
    }
}

impl PartialEq for EntryKeywords {
    fn eq(&self, other: &Self) -> bool {
        self.borrowed() == other.borrowed()
    }
}

impl Eq for EntryKeywords {}

/// One step of a manifest read in order by a [`Reader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An entry, with `/set` defaults merged into its keywords.
    Entry {
        /// Path relative to the root (`""` is the root itself).
        path: Vec<u8>,
        /// The keywords (parsed on demand: see [`EntryKeywords`]).
        keywords: EntryKeywords,
        /// Named relative to the current directory (`name`, or `.` for the
        /// root), not by a full path (`./a/b`). A relative directory opens
        /// a block that a later [`Event::Up`] closes.
        relative: bool,
    },
    /// `..`: the current directory's block is closed.
    Up,
}

/// Reads a manifest entry by entry, holding only the current directory
/// chain and the `/set` defaults: a manifest of a million files is never
/// in memory whole.
pub struct Reader<R: BufRead> {
    lines: std::iter::Enumerate<std::io::Lines<R>>,
    keywords: Option<Vec<String>>,
    /// Shared by the entries read while they are in force (copied when a
    /// `/set` or `/unset` changes them).
    defaults: Arc<Keywords>,
    /// The directories relative entries are in; empty before the root
    /// entry and after the root has been closed.
    cwd: Vec<Vec<u8>>,
}

impl<R: BufRead> Reader<R> {
    /// Read the manifest `input`.
    pub fn new(input: R) -> Reader<R> {
        Reader {
            lines: input.lines().enumerate(),
            keywords: None,
            defaults: Arc::new(Keywords::new()),
            cwd: Vec::new(),
        }
    }

    /// The keyword set from the `# keywords:` header comment, once read
    /// (it precedes the entries).
    pub fn keywords(&self) -> Option<&[String]> {
        self.keywords.as_deref()
    }

    /// Whether `keyword` is compared: named in the header, or no header
    /// (see [`Spec::uses`]).
    pub fn uses(&self, keyword: &str) -> bool {
        self.keywords
            .as_ref()
            .is_none_or(|k| k.iter().any(|w| w == keyword))
    }

    /// The next entry or `..`; `None` at the end.
    pub fn next_event(&mut self) -> Result<Option<Event>, ParseError> {
        let mut pending: Option<String> = None;
        let mut start_line = 0;
        while let Some((i, line)) = self.lines.next() {
            let line = line?;
            let no = i + 1;
            if pending.is_none() {
                start_line = no;
            }
            // a trailing backslash continues the entry on the next line
            if let Some(head) = line.strip_suffix('\\') {
                let p = pending.get_or_insert_with(String::new);
                p.push_str(head);
                p.push(' ');
                continue;
            }
            let full = match pending.take() {
                Some(mut p) => {
                    p.push_str(&line);
                    p
                }
                None => line,
            };
            if let Some(ev) = self.line(full, start_line)? {
                return Ok(Some(ev));
            }
        }
        if pending.is_some() {
            return Err(syntax(start_line, "manifest ends in a line continuation"));
        }
        Ok(None)
    }

    /// One whole (joined) line: an event, or `None` for comments, blank
    /// lines, `/set` and `/unset`.
    fn line(&mut self, full: String, start_line: usize) -> Result<Option<Event>, ParseError> {
        let start = full.len() - full.trim_start().len();
        let end = start.max(full.trim_end().len());
        let text = &full[start..end];
        if let Some(c) = text.strip_prefix('#') {
            if let Some(k) = c.trim().strip_prefix("keywords:")
                && self.keywords.is_none()
            {
                self.keywords = Some(
                    k.split([',', ' '])
                        .filter(|w| !w.is_empty())
                        .map(str::to_string)
                        .collect(),
                );
            }
            return Ok(None);
        }
        if text.is_empty() {
            return Ok(None);
        }
        let mut words = text.split_ascii_whitespace();
        let first = words.next().unwrap_or_default();
        match first {
            "/set" => {
                parse_keywords(words, Arc::make_mut(&mut self.defaults))
                    .map_err(|r| syntax(start_line, r))?;
                return Ok(None);
            }
            "/unset" => {
                for w in words {
                    let d = Arc::make_mut(&mut self.defaults);
                    if w == "all" {
                        d.clear();
                    } else {
                        d.remove(w.split('=').next().unwrap_or(w));
                    }
                }
                return Ok(None);
            }
            ".." => {
                if self.cwd.pop().is_none() {
                    return Err(syntax(start_line, "\"..\" above the root"));
                }
                return Ok(Some(Event::Up));
            }
            _ => {}
        }
        if first.starts_with('/') {
            return Err(syntax(start_line, format!("unknown command {first:?}")));
        }
        let name = unvis(first)
            .ok_or_else(|| syntax(start_line, format!("bad escape in name {first:?}")))?;
        // the text is trimmed, so its first word starts it
        let words = start + first.len()..end;
        // one pass over the words: none without a name, and the type (the
        // last one given, else the default)
        let mut ty = None;
        for w in full[words.clone()].split_ascii_whitespace() {
            if w.starts_with('=') {
                return Err(syntax(start_line, format!("keyword without a name: {w:?}")));
            }
            if let Some(v) = w.strip_prefix("type") {
                if v.is_empty() {
                    ty = Some("");
                } else if let Some(v) = v.strip_prefix('=') {
                    ty = Some(v);
                }
            }
        }
        let is_dir = ty.or_else(|| self.defaults.get("type").map(String::as_str)) == Some("dir");
        let relative = !name.contains(&b'/');
        let path = if !relative {
            // a full path: never changes the current directory
            normalise(&name, start_line)?
        } else if name == b"." && self.cwd.is_empty() {
            Vec::new()
        } else {
            if name == b"." || name == b".." {
                return Err(syntax(start_line, "\".\" or \"..\" as an entry name"));
            }
            let Some(dir) = self.cwd.last() else {
                return Err(syntax(
                    start_line,
                    "relative entry outside of the root directory",
                ));
            };
            join(dir, &name)
        };
        if is_dir && relative {
            self.cwd.push(path.clone());
        }
        let kw = EntryKeywords {
            defaults: Arc::clone(&self.defaults),
            line: full,
            words,
            dir: is_dir,
        };
        Ok(Some(Event::Entry {
            path,
            keywords: kw,
            relative,
        }))
    }
}

/// Parse a whole manifest into memory.
pub fn parse(input: impl BufRead) -> Result<Spec, ParseError> {
    let mut spec = Spec::default();
    let mut r = Reader::new(input);
    while let Some(ev) = r.next_event()? {
        if let Event::Entry { path, keywords, .. } = ev {
            spec.entries.insert(path, keywords.to_map());
        }
    }
    spec.keywords = r.keywords;
    Ok(spec)
}

impl crate::mtree::parse::ParseError {
    /// What kind of failure this is.
    pub fn kind(&self) -> crate::error::ErrorKind {
        match self {
            crate::mtree::parse::ParseError::Io(e) => crate::error::ErrorKind::of_io(e),
            crate::mtree::parse::ParseError::Syntax { .. } => crate::error::ErrorKind::InvalidInput,
        }
    }
}

rumoci_core::wraps!(crate::mtree::parse::ParseError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_mtree_style_with_set_lines() {
        let text = "#          user: root\n\
                    /set type=file nlink=1 mode=0664 uid=0 gid=0\n\
                    . size=4096 type=dir mode=0755 nlink=3 tar_time=1.000000000\n\
                    \x20   hello size=5 mode=0644 tar_time=2.000000000 sha256digest=ab\n\
                    \x20   sp\\040ace size=0 tar_time=3.000000000\n\
                    \n# etc\n\
                    etc size=4096 type=dir nlink=2 tar_time=4.000000000\n\
                    \x20   passwd size=9 \\\n\
                    \x20       tar_time=5.000000000\n\
                    /unset mode\n\
                    \x20   group size=1 tar_time=6.000000000\n\
                    ..\n\
                    ..\n";
        let s = parse(text.as_bytes()).expect("parse");
        let keys: Vec<_> = s
            .entries
            .keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        assert_eq!(
            keys,
            ["", "etc", "etc/group", "etc/passwd", "hello", "sp ace"]
        );
        let p = &s.entries[&b"etc/passwd"[..]];
        assert_eq!(p["type"], "file");
        assert_eq!(p["mode"], "0664");
        assert_eq!(p["tar_time"], "5.000000000");
        assert!(!s.entries[&b"etc/group"[..]].contains_key("mode"));
        assert_eq!(s.entries[&b"hello"[..]]["mode"], "0644");
        assert!(s.keywords.is_none() && s.uses("xattr"));
        let k =
            parse("#      keywords: size,type,uid\n. type=dir\n..\n".as_bytes()).expect("parse");
        assert!(k.uses("size") && !k.uses("xattr"));
    }

    #[test]
    fn full_paths_and_errors() {
        let s = parse(". type=dir\n./a/b type=file\n..\n".as_bytes()).expect("parse");
        assert!(s.entries.contains_key(&b"a/b"[..]));
        for bad in [
            "..\n",
            "x type=file\n",
            ". type=dir\n./../x type=file\n",
            ". type=dir\n/bogus\n",
            ". type=dir\nbad\\9 type=file\n",
            ". type=dir\nx =1\n",
            ". type=dir \\",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
