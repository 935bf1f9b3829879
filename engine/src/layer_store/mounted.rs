//! Which layer directories of an overlay store are in use: the lower
//! directories of the overlay mounts this process can see
//! (`/proc/self/mountinfo`). `driver rm` refuses to delete a snapshot a
//! mounted bundle still reads.

use std::path::{Path, PathBuf};

/// One overlay mount: where it is mounted and its lower directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayMount {
    /// The mount point (a bundle's `rootfs`).
    pub target: PathBuf,
    /// Its lower directories, as the kernel reports them.
    pub lowerdirs: Vec<PathBuf>,
}

/// The overlay mounts in `/proc/self/mountinfo` (none if it cannot be
/// read).
pub fn overlay_mounts() -> Vec<OverlayMount> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default()
}

/// The overlay mounts of a mountinfo text.
fn parse_mountinfo(text: &str) -> Vec<OverlayMount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        if r.next() != Some("overlay") {
            continue;
        }
        let Some(target) = left.split(' ').nth(4) else {
            continue;
        };
        let opts = r.nth(1).unwrap_or_default();
        let mut lowerdirs = Vec::new();
        for o in opts.split(',') {
            if let Some(d) = o.strip_prefix("lowerdir+=") {
                lowerdirs.push(PathBuf::from(unescape(d)));
            } else if let Some(ds) = o.strip_prefix("lowerdir=") {
                lowerdirs.extend(ds.split(':').map(|d| PathBuf::from(unescape(d))));
            }
        }
        out.push(OverlayMount {
            target: PathBuf::from(unescape(target)),
            lowerdirs,
        });
    }
    out
}

/// mountinfo's octal escapes (`\040` for a space, …).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount point of an overlay mount reading `dir` as a lower directory.
pub fn user_of(mounts: &[OverlayMount], dir: &Path) -> Option<PathBuf> {
    mounts
        .iter()
        .find(|m| m.lowerdirs.iter().any(|l| l == dir))
        .map(|m| m.target.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_lines_are_parsed() {
        let text = "\
47 27 0:40 / /tmp/b/rootfs rw,relatime - overlay rumoci rw,lowerdir+=/s/layers/a/fs,lowerdir+=/s/layers/b\\040c/fs,upperdir=/tmp/b/overlay/upper,workdir=/w
48 27 0:41 / /old\\040style rw - overlay none rw,lowerdir=/l1:/l2,upperdir=/u,workdir=/w
22 1 8:1 / / rw - ext4 /dev/vda rw
";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].target, Path::new("/tmp/b/rootfs"));
        assert_eq!(
            m[0].lowerdirs,
            [Path::new("/s/layers/a/fs"), Path::new("/s/layers/b c/fs")]
        );
        assert_eq!(m[1].target, Path::new("/old style"));
        assert_eq!(m[1].lowerdirs, [Path::new("/l1"), Path::new("/l2")]);
        assert_eq!(
            user_of(&m, Path::new("/l2")).as_deref(),
            Some(Path::new("/old style"))
        );
        assert_eq!(user_of(&m, Path::new("/s/layers/a")), None);
    }
}
