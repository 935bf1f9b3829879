//! Image surgery: layers merged, flattened out of an image, and a root
//! filesystem tar taken in as an image — all streaming, never through a
//! tree on disk.
//!
//! * [`merge_layers`]: layers `A..B` of an image as one tar whose
//!   extraction on top of layers `..A` gives the tree all of them give
//!   (`squash`), or with no base the whole root filesystem without a
//!   single whiteout (`export`).
//! * [`import_tar`]: a root filesystem tar re-read through
//!   [`crate::layer::tarread`] and rewritten through the layer generator,
//!   refusing what does not belong in a layer (`import`).
//!
//! **How a merge streams.** Pass one reads the headers of every layer up
//! to `B` (data skipped; the layers decompressed in parallel) and replays
//! them in order on a tree of paths as
//! the extractor would apply them ([`plan`]): whiteouts and opaque
//! directories, directories merged or replaced, parents made, hard links
//! sharing a content object. The result says, per entry, whether it
//! survives and under which paths. Pass two reads the layers of the range
//! again and copies the surviving entries, header and data straight from
//! the decompressed stream into the output. Memory grows with the number
//! of entries, never with the bytes; both passes verify every blob (size,
//! digest) and diff_id. Whiteouts come first, then the directories
//! (parents first), then the other entries in layer order, hard links
//! right after the content they name (a hard link whose
//! target is overridden later gets the content under its own first path
//! instead, so every link names an entry that exists in the output).

pub mod plan;

use std::collections::HashSet;
use std::io::{self, Read, Write};

use crate::cas::{Cas, CasError, ext};
use crate::layer::compress::decompressor;
use crate::layer::generate::{GenerateError, TarGenerator};
use crate::layer::pipe::{self, ChunkReader};
use crate::layer::tarread::{self, Header, Kind, Segment, TarError};
use crate::oci::{Digest, Hasher, Image, Manifest, media};
use crate::path::{self, BStr, BString, ByteSlice};
use crate::rootfs::layer_format;

use plan::{Emit, Marker, Replay};

/// Errors of image surgery.
#[derive(Debug, thiserror::Error)]
pub enum SurgeryError {
    /// Reading the image failed.
    #[error(transparent)]
    Cas(#[from] CasError),
    /// The request does not fit the image (a range outside it, no layers).
    #[error("{0}")]
    Invalid(String),
    /// A layer cannot be read or replayed.
    #[error("layer {layer}: {reason}")]
    Layer {
        /// Index of the layer in the manifest (from 0).
        layer: usize,
        /// What is wrong.
        reason: String,
    },
    /// An entry of an imported archive is refused.
    #[error("{}: {reason}", crate::show::name(path))]
    Refused {
        /// The entry's name as written.
        path: BString,
        /// Why.
        reason: String,
    },
    /// The input archive cannot be read.
    #[error("reading the archive: {0}")]
    Tar(#[source] TarError),
    /// Writing the output failed.
    #[error(transparent)]
    Generate(#[from] GenerateError),
}

/// What a merge wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Entries written (whiteouts included).
    pub entries: u64,
    /// Whiteouts written.
    pub whiteouts: u64,
    /// Whiteouts of the range left out (they hid nothing of the base).
    pub dropped_whiteouts: u64,
}

/// Open layer `i`: verified blob, decompressed.
fn open_plain<'a>(
    cas: &'a dyn Cas,
    manifest: &Manifest,
    i: usize,
) -> Result<Box<dyn Read + 'a>, SurgeryError> {
    let layer = &manifest.layers[i];
    let blob = match ext::open_verified(cas, layer) {
        Err(CasError::NotFound(_)) if media::is_foreign_layer(&layer.media_type) => {
            return Err(SurgeryError::Layer {
                layer: i,
                reason: format!(
                    "a foreign layer ({}) that is not in the store",
                    layer.media_type
                ),
            });
        }
        r => r?,
    };
    decompressor(layer_format(&layer.media_type), Box::new(blob)).map_err(|e| SurgeryError::Layer {
        layer: i,
        reason: format!("{}: {e}", layer.digest),
    })
}

/// Layer `i` inflated on a thread of `scope` into the returned reader (its
/// digest checked as it is read; `hasher`, if any, hashes the inflated
/// stream on the reading side). Finish with [`finish_spawned`]: a bad
/// blob is the thread's error.
fn spawn_layer<'scope, 'env: 'scope>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    cas: &'env dyn Cas,
    manifest: &'env Manifest,
    i: usize,
    hasher: Option<Hasher>,
) -> (
    ChunkReader,
    std::thread::ScopedJoinHandle<'scope, Result<(), SurgeryError>>,
) {
    let (pump, reader) = pipe::channel_pair(hasher);
    let handle = scope.spawn(move || {
        let mut plain = open_plain(cas, manifest, i)?;
        pump.pump(&mut plain).map_err(|e| {
            SurgeryError::Cas(CasError::io(
                format!("layer {}", manifest.layers[i].digest),
                e,
            ))
        })
    });
    (reader, handle)
}

/// Finish a spawned layer: read its rest (trailing bytes count), then
/// report the reading thread's error (a bad blob explains anything), else
/// hand back `outcome` and the hash of the whole stream (if one was asked
/// for; a wrong diff_id explains the outcome's errors too).
fn finish_spawned<T>(
    r: tarread::Reader<ChunkReader>,
    handle: std::thread::ScopedJoinHandle<'_, Result<(), SurgeryError>>,
    i: usize,
    outcome: Result<T, SurgeryError>,
) -> Result<(Result<T, SurgeryError>, Option<Digest>), SurgeryError> {
    let mut inner = r.into_inner();
    let _ = io::copy(&mut inner, &mut io::sink());
    // the hash is complete once the reading thread is done
    let joined = handle.join();
    let hash = inner.digest();
    match joined {
        Ok(Err(blob)) => Err(blob),
        Ok(Ok(())) => Ok((outcome, hash)),
        Err(_) => Err(SurgeryError::Layer {
            layer: i,
            reason: "the reading thread panicked".into(),
        }),
    }
}

fn tar_err(i: usize, manifest: &Manifest) -> impl Fn(TarError) -> SurgeryError + '_ {
    move |e| match e {
        // a blob that fails its digest or size check reads as an I/O error
        TarError::Io(io) => SurgeryError::Cas(CasError::io(
            format!("layer {}", manifest.layers[i].digest),
            io,
        )),
        e => SurgeryError::Layer {
            layer: i,
            reason: e.to_string(),
        },
    }
}

/// The headers of layer `i` (the whole blob read and checked: digest,
/// inflated on another thread; diff_id, hashed here).
fn read_headers(
    cas: &dyn Cas,
    manifest: &Manifest,
    config: &Image,
    i: usize,
) -> Result<Vec<Header>, SurgeryError> {
    tracing::info!(
        "reading the headers of layer {} ({})",
        manifest.layers[i].digest,
        i + 1
    );
    let want = &config.rootfs.diff_ids[i];
    let (headers, got) = std::thread::scope(|s| {
        let (reader, handle) = spawn_layer(s, cas, manifest, i, Some(want.algorithm().hasher()));
        let mut r = tarread::Reader::new(reader);
        let mut out = Vec::new();
        let outcome = loop {
            match r.next_header().map_err(tar_err(i, manifest)) {
                Ok(Some(h)) => out.push(h),
                Ok(None) => break Ok(out),
                Err(e) => break Err(e),
            }
        };
        finish_spawned(r, handle, i, outcome)
    })?;
    match got {
        Some(got) if &got == want => headers,
        got => Err(SurgeryError::Layer {
            layer: i,
            reason: format!(
                "{}: diff_id mismatch: config says {want}, content is {}",
                manifest.layers[i].digest,
                got.map_or_else(|| "unhashed".to_string(), |d| d.to_string())
            ),
        }),
    }
}

/// The headers of layers `0..end`, read on as many threads as there are
/// CPUs (decompression is the cost; the replay that follows is in order).
/// The first failing layer's error, in layer order.
fn read_all_headers(
    cas: &dyn Cas,
    manifest: &Manifest,
    config: &Image,
    end: usize,
) -> Result<Vec<Vec<Header>>, SurgeryError> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    // layers after a failure are skipped
    crate::parallel::in_order(
        end,
        workers,
        |i| read_headers(cas, manifest, config, i),
        |i| SurgeryError::Layer {
            layer: i,
            reason: "not read".into(),
        },
    )
}

/// A sparse member's data (its segments one after the other) as the real
/// file: zeros in the holes.
struct SparseExpand<'s, R> {
    inner: R,
    segments: &'s [Segment],
    next: usize,
    pos: u64,
    size: u64,
}

impl<R: Read> Read for SparseExpand<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(s) = self.segments.get(self.next) {
            if self.pos < s.offset + s.len {
                break;
            }
            self.next += 1;
        }
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let cap = |n: u64| buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        match self.segments.get(self.next) {
            Some(s) if self.pos >= s.offset => {
                let want = cap(s.offset + s.len - self.pos);
                let n = self.inner.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "sparse member shorter than its map",
                    ));
                }
                self.pos += n as u64;
                Ok(n)
            }
            next => {
                let until = next.map_or(self.size, |s| s.offset.min(self.size));
                let n = cap(until - self.pos);
                buf[..n].fill(0);
                self.pos += n as u64;
                Ok(n)
            }
        }
    }
}

/// Copy the member `hdr` (data read from `r`) as `name`.
fn copy_member<R: Read, W: Write>(
    out: &mut TarGenerator<W>,
    name: &BStr,
    hdr: &Header,
    r: &mut tarread::Reader<R>,
) -> Result<(), GenerateError> {
    if hdr.kind != Kind::Regular {
        return out.add_entry(name, hdr, None, &mut io::empty());
    }
    match &hdr.sparse {
        Some(segments) => {
            let mut data = SparseExpand {
                inner: r.data(),
                segments,
                next: 0,
                pos: 0,
                size: hdr.size,
            };
            out.add_entry(name, hdr, None, &mut data)
        }
        None => out.add_entry(name, hdr, None, &mut r.data()),
    }
}

/// Copy the entries of layer `i` (read from `r`) that the plan keeps.
fn copy_layer<R: Read, W: Write>(
    r: &mut tarread::Reader<R>,
    plan: &plan::Plan,
    i: usize,
    manifest: &Manifest,
    out: &mut TarGenerator<W>,
    stats: &mut MergeStats,
) -> Result<(), SurgeryError> {
    let mut idx = 0u64;
    while let Some(h) = r.next_header().map_err(tar_err(i, manifest))? {
        if let Some(Emit { primary, links }) = plan.emits.get(&(i, idx)) {
            copy_member(out, primary.as_ref(), &h, r)?;
            for l in links {
                out.add_entry(l.as_ref(), &h, Some(primary.as_ref()), &mut io::empty())?;
            }
            stats.entries += 1 + links.len() as u64;
        }
        idx += 1;
    }
    Ok(())
}

/// A zero-sized regular file header, the shape of a whiteout marker.
fn marker_header() -> Header {
    Header::empty(Kind::Regular, b'0', BString::from(""), 0)
}

/// Write layers `start..end` of the image as one tar into `out`: the
/// surviving entries in layer order, whiteouts (only those hiding
/// something layers `..start` hold) first. With `start` 0 there is no
/// base and no whiteout: the flattened root filesystem (`export`).
/// Does not finish `out`.
pub fn merge_layers<W: Write>(
    cas: &dyn Cas,
    manifest: &Manifest,
    config: &Image,
    start: usize,
    end: usize,
    out: &mut TarGenerator<W>,
) -> Result<MergeStats, SurgeryError> {
    crate::rootfs::check_image(manifest, config)
        .map_err(|e| SurgeryError::Invalid(e.to_string()))?;
    let n = manifest.layers.len();
    if n == 0 {
        return Err(SurgeryError::Invalid("the image has no layers".into()));
    }
    if start >= end || end > n {
        return Err(SurgeryError::Invalid(format!(
            "layer range {start}:{end} is outside the image's {n} layers (0:{n})"
        )));
    }
    // pass one: headers only, the layers read in parallel, replayed in order
    let headers = read_all_headers(cas, manifest, config, end)?;
    let mut replay = Replay::new();
    for (i, layer) in headers.into_iter().enumerate() {
        if i == start {
            replay.start_range(start);
        }
        replay.start_layer();
        for (idx, h) in layer.iter().enumerate() {
            replay.apply((i, idx as u64), h)?;
        }
    }
    let plan = replay.plan();
    let mut stats = MergeStats {
        dropped_whiteouts: plan.dropped_markers as u64,
        ..MergeStats::default()
    };
    // whiteouts first
    let marker = marker_header();
    for m in &plan.markers {
        let name = match m {
            Marker::Whiteout(p) => {
                let (dir, base) = path::split_parent(p.as_ref());
                let mut wh = BString::from(".wh.");
                wh.extend_from_slice(base);
                path::join(dir, &wh)
            }
            Marker::Opaque(d) => path::join(d, b".wh..wh..opq"),
        };
        out.add_entry(name.as_ref(), &marker, None, &mut io::empty())?;
        stats.whiteouts += 1;
        stats.entries += 1;
    }
    // directory headers, parents first
    let mut made = marker_header();
    made.kind = Kind::Dir;
    made.typeflag = b'5';
    made.mode = 0o755;
    for (p, h) in &plan.dirs {
        out.add_entry(
            p.as_ref(),
            h.as_ref().unwrap_or(&made),
            None,
            &mut io::empty(),
        )?;
        stats.entries += 1;
    }
    // pass two: the surviving entries, in order, each layer inflated on
    // another thread (the next one begins while this one is copied)
    let layers: Vec<usize> = plan.layers().into_iter().collect();
    std::thread::scope(|s| -> Result<(), SurgeryError> {
        let mut next = layers
            .first()
            .map(|&i| spawn_layer(s, cas, manifest, i, None));
        for (k, &i) in layers.iter().enumerate() {
            let Some((reader, handle)) = next.take() else {
                break;
            };
            next = layers
                .get(k + 1)
                .map(|&j| spawn_layer(s, cas, manifest, j, None));
            tracing::info!(
                "copying layer {} ({}/{end})",
                manifest.layers[i].digest,
                i + 1
            );
            let mut r = tarread::Reader::new(reader);
            let outcome = copy_layer(&mut r, &plan, i, manifest, out, &mut stats);
            finish_spawned(r, handle, i, outcome)?.0?;
        }
        Ok(())
    })?;
    // hard links to base files still in place
    for (p, target) in &plan.base_links {
        out.add_entry(p.as_ref(), &marker, Some(target.as_ref()), &mut io::empty())?;
        stats.entries += 1;
    }
    Ok(stats)
}

/// What [`import_tar`] refuses and allows.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportRules {
    /// Device nodes are allowed (as root).
    pub devices: bool,
}

/// Check one member of an imported archive; its clean name (and a hard
/// link's clean target), or `None` to skip it (a PAX global header).
fn check_import(
    h: &Header,
    seen: &HashSet<BString>,
    rules: ImportRules,
) -> Result<Option<(BString, Option<BString>)>, SurgeryError> {
    let refuse = |reason: &str| SurgeryError::Refused {
        path: h.path.clone(),
        reason: reason.to_string(),
    };
    let escapes = |p: &[u8]| p.starts_with(b"/") || p.split(|&b| b == b'/').any(|c| c == b"..");
    match h.kind {
        Kind::Global => return Ok(None),
        Kind::Other(flag) => {
            return Err(refuse(&format!("unknown typeflag {:?}", flag as char)));
        }
        _ => {}
    }
    if escapes(&h.path) {
        return Err(refuse("path is absolute or escapes the root ('..')"));
    }
    let p = path::clean(&h.path);
    if p.is_empty() && h.kind != Kind::Dir {
        return Err(refuse("the root must be a directory"));
    }
    if crate::layer::generate::is_whiteout_name(&p) {
        return Err(refuse(
            "a root filesystem holds no whiteouts (name starts with \".wh.\")",
        ));
    }
    if matches!(h.kind, Kind::Char | Kind::Block) && !rules.devices {
        return Err(refuse("device node: only root can import device nodes"));
    }
    if h.kind != Kind::Link {
        return Ok(Some((p, None)));
    }
    if escapes(&h.link) {
        return Err(refuse("hard link target is absolute or escapes the root"));
    }
    let t = path::clean(&h.link);
    if !seen.contains(&t) || t == p {
        return Err(refuse(&format!(
            "hard link to {}, which is not an earlier file of the archive",
            crate::show::name(&t)
        )));
    }
    Ok(Some((p, Some(t))))
}

/// Copy the root filesystem archive `input` into `out`, member by member,
/// through rumoci's reader and generator: names cleaned, an absolute or
/// escaping name, a whiteout, an unknown type, a hard link to anything but
/// an earlier file and (unless `rules.devices`) a device node refused.
/// Returns the number of entries. Does not finish `out`.
pub fn import_tar<W: Write>(
    input: &mut dyn Read,
    out: &mut TarGenerator<W>,
    rules: ImportRules,
) -> Result<u64, SurgeryError> {
    let mut r = tarread::Reader::new(input);
    let mut seen: HashSet<BString> = HashSet::new();
    let mut n = 0;
    while let Some(h) = r.next_header().map_err(SurgeryError::Tar)? {
        let Some((p, link)) = check_import(&h, &seen, rules)? else {
            continue;
        };
        if let Some(t) = link {
            out.add_entry(p.as_ref(), &h, Some(t.as_bstr()), &mut io::empty())?;
        } else {
            copy_member(out, p.as_ref(), &h, &mut r).map_err(|e| match e {
                GenerateError::Io { source, .. }
                    if source.kind() == io::ErrorKind::UnexpectedEof =>
                {
                    SurgeryError::Tar(TarError::Io(source))
                }
                e => SurgeryError::Generate(e),
            })?;
        }
        if h.kind != Kind::Dir {
            seen.insert(p);
        }
        n += 1;
    }
    Ok(n)
}

impl crate::surgery::SurgeryError {
    /// What kind of failure this is.
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        use crate::surgery::SurgeryError as E;
        match self {
            E::Cas(c) => c.kind(),
            E::Invalid(_) | E::Refused { .. } => ErrorKind::InvalidInput,
            E::Layer { .. } => ErrorKind::Integrity,
            E::Tar(TarError::Io(e)) => ErrorKind::of_io(e),
            E::Tar(_) => ErrorKind::InvalidInput,
            E::Generate(g) => g.kind(),
        }
    }
}

rumoci_core::wraps!(crate::surgery::SurgeryError);

#[cfg(test)]
mod tests;
