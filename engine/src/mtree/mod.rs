//! go-mtree compatible manifests of a root filesystem, as umoci writes them
//! into bundles (`sha256_<hex>.mtree`) with its keyword set
//! `size,type,uid,gid,mode,link,nlink,tar_time,sha256digest,xattr`.
//!
//! The layout follows go-mtree's walk: per directory, its non-directory
//! children sorted by name (indented), then each subdirectory as a block
//! opened by a `# path` comment and closed by `..`. rumoci writes every
//! keyword explicitly on every entry (no `/set` lines), which go-mtree
//! parses and checks the same way. File digests computed while extracting
//! are reused instead of re-reading the files.

pub mod diff;
pub mod parse;
pub mod statcache;
mod vis;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use sha2::Digest as _;

pub use vis::{unvis, vis};

use statcache::StatCacheWriter;

use crate::path::{self, BStr, BString};

/// umoci's mtree keywords, in go-mtree's order.
pub const UMOCI_KEYWORDS: &str = "size,type,uid,gid,mode,link,nlink,tar_time,sha256digest,xattr";

/// Errors while writing a manifest.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", crate::show::name(path))]
pub struct MtreeError {
    /// Where.
    pub path: String,
    /// What.
    #[source]
    pub source: io::Error,
}

fn err(path: &Path) -> impl FnOnce(io::Error) -> MtreeError + '_ {
    move |source| MtreeError {
        path: path.display().to_string(),
        source,
    }
}

/// The informational header of a manifest.
#[derive(Debug, Clone)]
pub struct Header {
    /// `user:` line.
    pub user: String,
    /// `machine:` line.
    pub machine: String,
    /// `tree:` line (the rootfs path).
    pub tree: String,
    /// `date:` line.
    pub date: String,
}

/// The mtree `type` of a file.
pub fn type_name(md: &std::fs::Metadata) -> &'static str {
    let ft = md.file_type();
    if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "link"
    } else if ft.is_file() {
        "file"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else if ft.is_fifo() {
        "fifo"
    } else {
        "socket"
    }
}

fn mode_str(m: u32) -> String {
    if m == 0 {
        "0".into()
    } else {
        format!("0{m:o}")
    }
}

/// The xattrs of the entry at `path` (not followed) that an mtree records.
pub(crate) fn list_xattrs(path: &Path) -> io::Result<BTreeMap<String, Vec<u8>>> {
    use crate::fs::xattr;
    Ok(xattr::read_all(xattr::Node::Path(path), |n| {
        crate::fs::xattr::FORBIDDEN.contains(&n)
    })?)
}

pub(crate) fn sha256_file(path: &Path) -> io::Result<[u8; 32]> {
    sha256_reader(crate::fs::unpriv::read_file(path)?)
}

/// The sha256 of everything `f` reads.
pub(crate) fn sha256_reader(mut f: impl Read) -> io::Result<[u8; 32]> {
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// Writes the manifest of one tree.
struct Writer<'a, W: Write> {
    out: W,
    root: &'a Path,
    digests: &'a BTreeMap<BString, [u8; 32]>,
    rehashed: usize,
    cache: Option<StatCacheWriter<&'a mut dyn Write>>,
    /// Directories opened up for an unprivileged owner while the writer
    /// lives (their original modes are written).
    grant: crate::fs::unpriv::TreeGrant,
}

impl<W: Write> Writer<'_, W> {
    fn keywords(
        &mut self,
        path: &Path,
        rel: &BStr,
        md: &std::fs::Metadata,
    ) -> Result<String, MtreeError> {
        if let Some(c) = &mut self.cache {
            c.add(rel, md).map_err(err(path))?;
        }
        let ft = md.file_type();
        let kind = type_name(md);
        let mut s = format!(
            "size={} type={kind} uid={} gid={} mode={}",
            md.size(),
            md.uid(),
            md.gid(),
            mode_str(self.grant.modes().mode(path, md))
        );
        if ft.is_symlink() {
            let target = std::fs::read_link(path).map_err(err(path))?;
            s.push_str(" link=");
            s.push_str(&vis(target.as_os_str().as_bytes()));
        }
        s.push_str(&format!(
            " nlink={} tar_time={}.000000000",
            md.nlink(),
            md.mtime()
        ));
        if ft.is_file() {
            let d = match self.digests.get(rel) {
                Some(d) => *d,
                None => {
                    self.rehashed += 1;
                    sha256_file(path).map_err(err(path))?
                }
            };
            s.push_str(" sha256digest=");
            s.push_str(&hex::encode(d));
        }
        if ft.is_file() || ft.is_dir() {
            let xattrs = crate::fs::unpriv::with_read(path, md, || list_xattrs(path));
            for (k, v) in xattrs.map_err(err(path))? {
                s.push_str(" xattr.");
                s.push_str(&vis(k.as_bytes()));
                s.push('=');
                s.push_str(&base64::engine::general_purpose::STANDARD.encode(v));
            }
        }
        Ok(s)
    }

    /// Write the entry of the directory `path` and its non-directory
    /// children; returns its subdirectories, sorted, for the caller to
    /// visit (then close the block with `..`).
    fn open_dir(&mut self, path: &Path, rel: &BStr) -> Result<Vec<OsString>, MtreeError> {
        let md = std::fs::symlink_metadata(path).map_err(err(path))?;
        let kw = self.keywords(path, rel, &md)?;
        let io = |e| MtreeError {
            path: path.display().to_string(),
            source: e,
        };
        if rel.is_empty() {
            write!(self.out, "# .\n. {kw}\n").map_err(io)?;
        } else {
            write!(
                self.out,
                "\n# {}\n{} {kw}\n",
                vis(rel),
                vis(path::base_name(rel))
            )
            .map_err(io)?;
        }
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        for e in std::fs::read_dir(path).map_err(err(path))? {
            let e = e.map_err(err(path))?;
            let is_dir = e.file_type().map_err(err(path))?.is_dir();
            let name = e.file_name();
            if is_dir {
                dirs.push(name)
            } else {
                // stat relative to the open directory (not its full path)
                let md = e.metadata().map_err(err(&e.path()))?;
                files.push((name, md))
            }
        }
        files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        dirs.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for (name, md) in files {
            let p = path.join(&name);
            let child_rel = path::join(rel, path::bytes(&name));
            let kw = self.keywords(&p, child_rel.as_ref(), &md)?;
            writeln!(self.out, "    {} {kw}", vis(name.as_bytes())).map_err(io)?;
        }
        Ok(dirs)
    }

    /// The whole tree, in go-mtree's order, iteratively: trees from images
    /// can be thousands of directories deep.
    fn tree(&mut self, root: &Path) -> Result<(), MtreeError> {
        struct Frame {
            path: PathBuf,
            rel: BString,
            /// Subdirectories still to visit, last first.
            dirs: Vec<OsString>,
        }
        let mut dirs = self.open_dir(root, b"".into())?;
        dirs.reverse();
        let mut stack = vec![Frame {
            path: root.to_path_buf(),
            rel: BString::from(""),
            dirs,
        }];
        while let Some(top) = stack.last_mut() {
            match top.dirs.pop() {
                Some(name) => {
                    let path = top.path.join(&name);
                    let rel = path::join(&top.rel, path::bytes(&name));
                    let mut dirs = self.open_dir(&path, rel.as_ref())?;
                    dirs.reverse();
                    stack.push(Frame { path, rel, dirs });
                }
                None => {
                    writeln!(self.out, "..").map_err(err(&top.path))?;
                    stack.pop();
                }
            }
        }
        Ok(())
    }
}

/// Write the manifest of the tree at `root` to `out`. `digests` maps
/// relative paths of regular files to their sha256 (as recorded while
/// extracting); files missing from it are hashed. With `cache`, the
/// [`statcache`] of the same walk is written there. Returns how many files
/// had to be re-read.
pub fn write_manifest<'a>(
    root: &'a Path,
    header: &Header,
    digests: &'a BTreeMap<BString, [u8; 32]>,
    out: impl Write,
    cache: Option<&'a mut dyn Write>,
) -> Result<usize, MtreeError> {
    let cache = match cache {
        Some(c) => Some(StatCacheWriter::new(c).map_err(err(root))?),
        None => None,
    };
    let grant = crate::fs::unpriv::TreeGrant::new(root).map_err(err(root))?;
    let mut w = Writer {
        out: io::BufWriter::with_capacity(1 << 20, out),
        root,
        digests,
        rehashed: 0,
        cache,
        grant,
    };
    write!(
        w.out,
        "#          user: {}\n#       machine: {}\n#          tree: {}\n#          date: {}\n#      keywords: {UMOCI_KEYWORDS}\n\n",
        header.user, header.machine, header.tree, header.date
    )
    .map_err(err(root))?;
    let root_path = w.root.to_path_buf();
    w.tree(&root_path)?;
    w.out.flush().map_err(err(root))?;
    if let Some(c) = w.cache.take() {
        let (_, racy) = c.finish().map_err(err(root))?;
        if racy > 0 {
            tracing::debug!("stat cache: {racy} entries changed too recently to be trusted");
        }
    }
    Ok(w.rehashed)
}

impl crate::mtree::MtreeError {
    /// What kind of failure this is (that of the I/O error).
    pub fn kind(&self) -> crate::error::ErrorKind {
        crate::error::ErrorKind::of_io(&self.source)
    }
}

rumoci_core::wraps!(crate::mtree::MtreeError);
