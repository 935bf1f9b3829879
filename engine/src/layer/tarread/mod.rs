//! The tar reader every layer goes through: it reads an archive the way Go's
//! `archive/tar` does, since Docker, containerd and the Go umoci read layers
//! with it and what it accepts is what images in the wild contain.
//!
//! What that means, beyond plain ustar:
//! - names and link targets are cut at the first NUL (header fields and
//!   GNU long names alike);
//! - of repeated extended headers before one member (two PAX `x` headers,
//!   two GNU long names), the last wins, as in Go, GNU tar and bsdtar;
//! - PAX records override the header: `path`, `linkpath`, `size`, `uid`,
//!   `gid`, `mtime`, `atime`, `SCHILY.xattr.*` (an empty value keeps the
//!   header's);
//! - a V7 regular-file entry (typeflag `\0`) whose name ends in `/` is a
//!   directory;
//! - the ustar prefix (and star's), and the "prefix" Go 1.7's writer put in
//!   GNU headers over atime/ctime, join the name;
//! - header-only types (links, devices, fifos, directories) carry no data,
//!   whatever their size field says;
//! - sparse members in every format (old GNU `S`, PAX GNU 0.0, 0.1, 1.0)
//!   come out as the real file with its map (`sparse`);
//! - PAX global headers (`g`) are returned as [`Kind::Global`] for the
//!   caller to skip; their records apply to nothing;
//! - the archive may end without its end-of-archive blocks, or inside the
//!   padding of its last member (Debian's umoci 0.4.7 writes such layers).
//!
//! What it refuses, as Go does: a bad checksum, a malformed number or PAX
//! record, a negative size, a zero block followed by a non-zero one, a
//! sparse map out of order, overlapping or past the real size. And, as a
//! bound on memory, an extended header, long name or sparse map larger than
//! [`crate::limits::MAX_TAR_EXTENSION`] (Go's own limit on the first two),
//! and a sparse file larger than [`crate::limits::MAX_SPARSE_SIZE`].
//! Safety is the caller's: paths come out as written, to be cleaned and
//! resolved beneath the root.

mod block;
mod pax;
pub(crate) mod sparse;

use std::collections::BTreeMap;
use std::io::{self, Read};

use block::BLOCK;
pub use sparse::Segment;

use crate::limits::{MAX_SPARSE_SIZE, MAX_TAR_EXTENSION};
use crate::path::BString;

/// Errors reading a tar stream.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// The stream could not be read (or ended inside a header or data).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A header is malformed.
    #[error("tar header at offset {offset}: {reason}")]
    Header {
        /// Where the header starts in the (uncompressed) stream.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// What a member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file (`0`, `\0` without a trailing slash, `7`, and
    /// sparse members).
    Regular,
    /// A directory (`5`, or `\0` with a trailing slash).
    Dir,
    /// A symbolic link (`2`).
    Symlink,
    /// A hard link (`1`).
    Link,
    /// A character device (`3`).
    Char,
    /// A block device (`4`).
    Block,
    /// A fifo (`6`).
    Fifo,
    /// A PAX global header (`g`): nothing to extract.
    Global,
    /// Any other type flag (GNU dump directories, volume labels, …).
    Other(u8),
}

/// One member, its extended headers applied.
#[derive(Debug, Clone)]
pub struct Header {
    /// What it is.
    pub kind: Kind,
    /// The type flag as written (for messages).
    pub typeflag: u8,
    /// The name as the archive gives it (not cleaned).
    pub path: BString,
    /// The link target (symlinks, hard links).
    pub link: BString,
    /// Mode bits as written.
    pub mode: i64,
    /// Owner.
    pub uid: i64,
    /// Group.
    pub gid: i64,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, u32),
    /// Access time, when the archive has one.
    pub atime: Option<(i64, u32)>,
    /// Device numbers.
    pub devmajor: i64,
    /// Device numbers.
    pub devminor: i64,
    /// The size of the real file (for a sparse member, holes included).
    pub size: u64,
    /// Extended attributes (`SCHILY.xattr.*`).
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// A sparse member's data segments; its data is their bytes in turn.
    pub sparse: Option<Vec<Segment>>,
    /// Where the member's header (its first extended header) starts.
    pub offset: u64,
}

impl Header {
    /// A PAX global header named `path`, found at `offset`.
    fn global(path: BString, offset: u64) -> Header {
        Header::empty(Kind::Global, b'g', path, offset)
    }

    /// A header of `kind` (type flag `typeflag`) named `path`, found at
    /// `offset`, with everything else zero or empty.
    pub(crate) fn empty(kind: Kind, typeflag: u8, path: BString, offset: u64) -> Header {
        Header {
            kind,
            typeflag,
            path,
            link: BString::from(""),
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: (0, 0),
            atime: None,
            devmajor: 0,
            devminor: 0,
            size: 0,
            xattrs: BTreeMap::new(),
            sparse: None,
            offset,
        }
    }
}

/// The extended headers read before a member: its PAX records (the last
/// `x` header's), and GNU long name and link name (the last of each).
struct Extensions {
    pax: pax::Records,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

/// A reader of the members of a tar stream.
pub struct Reader<R> {
    r: R,
    /// Bytes consumed from `r`.
    pos: u64,
    /// Data of the current member not read yet.
    left: u64,
    /// Then its padding.
    pad: u64,
    /// The end was reached.
    done: bool,
}

/// GNU sparse PAX records.
const SPARSE_MAJOR: &[u8] = b"GNU.sparse.major";
const SPARSE_MINOR: &[u8] = b"GNU.sparse.minor";
const SPARSE_NAME: &[u8] = b"GNU.sparse.name";
const SPARSE_SIZE: &[u8] = b"GNU.sparse.size";
const SPARSE_REALSIZE: &[u8] = b"GNU.sparse.realsize";
const SPARSE_NUMBLOCKS: &[u8] = b"GNU.sparse.numblocks";

impl<R: Read> Reader<R> {
    /// Read the tar stream `r`.
    pub fn new(r: R) -> Reader<R> {
        Reader {
            r,
            pos: 0,
            left: 0,
            pad: 0,
            done: false,
        }
    }

    /// The stream, for the caller to drain (what follows the archive).
    pub fn into_inner(self) -> R {
        self.r
    }

    /// The next member, or `None` at the end of the archive.
    pub fn next_header(&mut self) -> Result<Option<Header>, TarError> {
        let mut pax: Option<pax::Records> = None;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut first_offset = None;
        loop {
            if self.done || !self.skip_rest()? {
                self.done = true;
                return Ok(None);
            }
            let offset = self.pos;
            let Some(blk) = self.read_header_block()? else {
                self.done = true;
                return Ok(None);
            };
            let first = *first_offset.get_or_insert(offset);
            let raw = block::parse(&blk, offset)?;
            let bad = |reason: String| TarError::Header { offset, reason };
            if raw.size < 0 {
                return Err(bad(format!("negative size {}", raw.size)));
            }
            self.set_data(if header_only(raw.typeflag) {
                0
            } else {
                raw.size as u64
            });
            match raw.typeflag {
                b'x' | b'g' => {
                    let data = self.read_special(offset, "PAX extended header")?;
                    let records = pax::parse(&data).map_err(bad)?;
                    if raw.typeflag == b'g' {
                        return Ok(Some(Header::global(raw.name.into(), first)));
                    }
                    pax = Some(records);
                }
                b'L' => {
                    let data = self.read_special(offset, "GNU long name")?;
                    long_name = Some(block::cut_nul(&data).to_vec());
                }
                b'K' => {
                    let data = self.read_special(offset, "GNU long link name")?;
                    long_link = Some(block::cut_nul(&data).to_vec());
                }
                _ => {
                    let ext = Extensions {
                        pax: pax.take().unwrap_or_default(),
                        long_name: long_name.take(),
                        long_link: long_link.take(),
                    };
                    let mut h = self.member(raw, &blk, ext, offset)?;
                    h.offset = first;
                    return Ok(Some(h));
                }
            }
        }
    }

    /// The member of header `raw` (block `blk`) with its extended headers
    /// applied (PAX records, then GNU long names, as Go applies them), its
    /// V7 type read from its name, and its sparse map read.
    fn member(
        &mut self,
        raw: block::RawHeader,
        blk: &[u8; BLOCK],
        ext: Extensions,
        offset: u64,
    ) -> Result<Header, TarError> {
        let bad = |reason: String| TarError::Header { offset, reason };
        let mut h = Header {
            kind: kind(raw.typeflag),
            typeflag: raw.typeflag,
            path: raw.name.into(),
            link: raw.link.into(),
            mode: raw.mode,
            uid: raw.uid,
            gid: raw.gid,
            mtime: (raw.mtime, 0),
            atime: raw.atime.map(|a| (a, 0)),
            devmajor: raw.devmajor,
            devminor: raw.devminor,
            size: raw.size as u64,
            xattrs: BTreeMap::new(),
            sparse: None,
            offset,
        };
        let records = ext.pax;
        let mut stored = raw.size;
        for (k, v) in &records {
            if v.is_empty() {
                continue; // keep the header's value
            }
            let num = |what: &str| {
                pax::int(v)
                    .ok_or_else(|| bad(format!("invalid PAX {what} {:?}", crate::show::name(v))))
            };
            let time = |what: &str| {
                pax::time(v)
                    .ok_or_else(|| bad(format!("invalid PAX {what} {:?}", crate::show::name(v))))
            };
            match k.as_slice() {
                b"path" => h.path = v.clone().into(),
                b"linkpath" => h.link = v.clone().into(),
                b"uid" => h.uid = num("uid")?,
                b"gid" => h.gid = num("gid")?,
                b"mtime" => h.mtime = time("mtime")?,
                b"atime" => h.atime = Some(time("atime")?),
                b"ctime" => {
                    time("ctime")?;
                }
                b"size" => stored = num("size")?,
                _ => {
                    if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                        match std::str::from_utf8(name) {
                            Ok(n) => {
                                h.xattrs.insert(n.to_string(), v.clone());
                            }
                            Err(_) => tracing::warn!(
                                "{}: ignoring xattr with a name that is not UTF-8",
                                crate::show::name(&h.path)
                            ),
                        }
                    }
                }
            }
        }
        if let Some(n) = ext.long_name.filter(|n| !n.is_empty()) {
            h.path = n.into();
        }
        if let Some(l) = ext.long_link.filter(|l| !l.is_empty()) {
            h.link = l.into();
        }
        if raw.typeflag == 0 {
            h.kind = if h.path.ends_with(b"/") {
                Kind::Dir
            } else {
                Kind::Regular
            };
        }
        if stored < 0 {
            return Err(bad(format!("negative size {stored}")));
        }
        let data = if header_only(raw.typeflag) {
            0
        } else {
            stored as u64
        };
        self.set_data(data);
        h.size = data;

        // sparse members
        let map = if raw.typeflag == b'S' {
            Some(self.old_gnu_map(blk, raw.format, &mut h, offset)?)
        } else {
            self.pax_sparse_map(&records, &mut h, offset)?
        };
        if let Some(entries) = map {
            if header_only(raw.typeflag) {
                return Err(bad("sparse map on a member that has no data".into()));
            }
            if h.size > MAX_SPARSE_SIZE {
                return Err(bad(format!(
                    "{}: a sparse file of {} bytes exceeds the limit of {MAX_SPARSE_SIZE} bytes (limit MAX_SPARSE_SIZE)",
                    crate::show::name(&h.path),
                    h.size
                )));
            }
            let segments = sparse::validate(&entries, h.size as i64)
                .map_err(|e| bad(format!("{}: {e}", crate::show::name(&h.path))))?;
            let have = sparse::data_len(&segments);
            if have != self.left {
                return Err(bad(format!(
                    "{}: sparse map covers {have} bytes but the member stores {}",
                    crate::show::name(&h.path),
                    self.left
                )));
            }
            h.kind = Kind::Regular;
            h.sparse = Some(segments);
        }
        Ok(h)
    }

    /// The old GNU sparse map (type `S`): in the header, then in extension
    /// blocks before the data. Sets the real size.
    fn old_gnu_map(
        &mut self,
        blk: &[u8; BLOCK],
        format: block::Format,
        h: &mut Header,
        offset: u64,
    ) -> Result<Vec<(i64, i64)>, TarError> {
        let (real, mut entries, mut more) = block::gnu_sparse(blk, format, offset)?;
        let mut read = 0u64;
        while more {
            read += BLOCK as u64;
            if read > MAX_TAR_EXTENSION {
                return Err(TarError::Header {
                    offset,
                    reason: format!(
                        "old GNU sparse map exceeds the limit of {MAX_TAR_EXTENSION} bytes (limit MAX_TAR_EXTENSION)"
                    ),
                });
            }
            let mut ext = [0u8; BLOCK];
            self.r.read_exact(&mut ext)?;
            self.pos += BLOCK as u64;
            let (e, m) = block::gnu_sparse_ext(&ext, offset)?;
            entries.extend(e);
            more = m;
        }
        h.size = u64::try_from(real).map_err(|_| TarError::Header {
            offset,
            reason: format!("negative sparse real size {real}"),
        })?;
        Ok(entries)
    }

    /// The map of a PAX GNU sparse member (formats 0.0, 0.1, 1.0), if this
    /// is one; sets the real name and size.
    fn pax_sparse_map(
        &mut self,
        records: &pax::Records,
        h: &mut Header,
        offset: u64,
    ) -> Result<Option<Vec<(i64, i64)>>, TarError> {
        let bad = |reason: String| TarError::Header { offset, reason };
        let get = |k: &[u8]| records.get(k).map(Vec::as_slice).unwrap_or(b"");
        let is_10 = match (get(SPARSE_MAJOR), get(SPARSE_MINOR)) {
            (b"0", b"0" | b"1") => false,
            (b"1", b"0") => true,
            (b"", b"") if !get(pax::SPARSE_MAP).is_empty() => false,
            // not sparse, or a version nobody writes: read as a plain file
            _ => return Ok(None),
        };
        if !get(SPARSE_NAME).is_empty() {
            h.path = get(SPARSE_NAME).to_vec().into();
        }
        let size = match get(SPARSE_SIZE) {
            b"" => get(SPARSE_REALSIZE),
            s => s,
        };
        if !size.is_empty() {
            let n = pax::int(size)
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| bad("invalid GNU sparse size".into()))?;
            h.size = n;
        }
        if is_10 {
            let mut data = (&mut self.r).take(self.left);
            let (entries, used) = sparse::read_map_10(&mut data, MAX_TAR_EXTENSION)
                .map_err(|e| bad(format!("{}: {e}", crate::show::name(&h.path))))?;
            self.pos += used;
            self.left -= used;
            Ok(Some(entries))
        } else {
            sparse::parse_map_01(get(SPARSE_NUMBLOCKS), get(pax::SPARSE_MAP))
                .map(Some)
                .map_err(|e| bad(format!("{}: {e}", crate::show::name(&h.path))))
        }
    }

    /// The current member's data (for a sparse member, the segments' bytes
    /// one after the other). Reading past it gives end of file; a stream
    /// that ends early is an error.
    pub fn data(&mut self) -> Data<'_, R> {
        Data { tar: self }
    }

    fn set_data(&mut self, len: u64) {
        self.left = len;
        self.pad = (BLOCK as u64 - len % BLOCK as u64) % BLOCK as u64;
    }

    /// Skip the rest of the current member and its padding. `false`: the
    /// stream ended inside the padding (the end, as Go takes it).
    fn skip_rest(&mut self) -> Result<bool, TarError> {
        if self.left > 0 {
            let n = io::copy(&mut (&mut self.r).take(self.left), &mut io::sink())?;
            self.pos += n;
            if n < self.left {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the layer ends inside a member's data (truncated?)",
                )
                .into());
            }
            self.left = 0;
        }
        if self.pad > 0 {
            let n = io::copy(&mut (&mut self.r).take(self.pad), &mut io::sink())?;
            self.pos += n;
            if n < self.pad {
                tracing::warn!("layer ends without tar padding or end-of-archive marker");
                return Ok(false);
            }
            self.pad = 0;
        }
        Ok(true)
    }

    /// Read up to one block; `None` when the stream ends at a block
    /// boundary or at the end-of-archive blocks.
    fn read_header_block(&mut self) -> Result<Option<[u8; BLOCK]>, TarError> {
        let mut blk = [0u8; BLOCK];
        if !self.fill(&mut blk)? {
            return Ok(None);
        }
        if !block::is_zero(&blk) {
            return Ok(Some(blk));
        }
        let offset = self.pos;
        if !self.fill(&mut blk)? || block::is_zero(&blk) {
            return Ok(None);
        }
        Err(TarError::Header {
            offset,
            reason: "a header after a zero block".into(),
        })
    }

    /// Fill `blk`; `false` if the stream ends before its first byte.
    fn fill(&mut self, blk: &mut [u8; BLOCK]) -> Result<bool, TarError> {
        let mut got = 0;
        while got < BLOCK {
            match self.r.read(&mut blk[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.pos += got as u64;
        match got {
            0 => Ok(false),
            BLOCK => Ok(true),
            _ => Err(TarError::Header {
                offset: self.pos - got as u64,
                reason: format!("the layer ends inside a header ({got} of 512 bytes)"),
            }),
        }
    }

    /// The whole data of a special member (extended header, long name),
    /// bounded by [`MAX_TAR_EXTENSION`].
    fn read_special(&mut self, offset: u64, what: &str) -> Result<Vec<u8>, TarError> {
        if self.left > MAX_TAR_EXTENSION {
            return Err(TarError::Header {
                offset,
                reason: format!(
                    "a {what} of {} bytes exceeds the limit of {MAX_TAR_EXTENSION} bytes (limit MAX_TAR_EXTENSION)",
                    self.left
                ),
            });
        }
        let mut data = vec![0u8; self.left as usize];
        self.data().read_exact(&mut data)?;
        Ok(data)
    }
}

/// The data of the current member ([`Reader::data`]).
pub struct Data<'a, R> {
    tar: &'a mut Reader<R>,
}

impl<R: Read> Read for Data<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let t = &mut *self.tar;
        if t.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(t.left).unwrap_or(usize::MAX));
        let n = t.r.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the layer ends inside a member's data (truncated?)",
            ));
        }
        t.left -= n as u64;
        t.pos += n as u64;
        Ok(n)
    }
}

impl<R: io::BufRead> Data<'_, R> {
    /// Hand the member's data to `each`, slice by slice, where the stream
    /// holds it (no copy into a buffer of the caller's); the bytes handed.
    /// A read error, or a stream that ends early, goes through `read_err`;
    /// an error of `each` stops and is returned as it is.
    pub fn each_slice<E>(
        &mut self,
        read_err: impl Fn(io::Error) -> E,
        mut each: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<u64, E> {
        let t = &mut *self.tar;
        let mut handed = 0u64;
        while t.left > 0 {
            let avail = match t.r.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(e)),
            };
            if avail.is_empty() {
                return Err(read_err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the layer ends inside a member's data (truncated?)",
                )));
            }
            let n = avail
                .len()
                .min(usize::try_from(t.left).unwrap_or(usize::MAX));
            each(&avail[..n])?;
            t.r.consume(n);
            t.left -= n as u64;
            t.pos += n as u64;
            handed += n as u64;
        }
        Ok(handed)
    }
}

/// Types whose size field is not followed by data (Go's reading).
fn header_only(typeflag: u8) -> bool {
    matches!(typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6')
}

fn kind(typeflag: u8) -> Kind {
    match typeflag {
        b'0' | 0 | b'7' | b'S' => Kind::Regular,
        b'5' => Kind::Dir,
        b'2' => Kind::Symlink,
        b'1' => Kind::Link,
        b'3' => Kind::Char,
        b'4' => Kind::Block,
        b'6' => Kind::Fifo,
        b'g' => Kind::Global,
        other => Kind::Other(other),
    }
}

#[cfg(test)]
mod tests;
