//! Resolving the image's `User` through the image's own `/etc/passwd` and
//! `/etc/group`, read inside the rootfs as if chrooted (a symlinked
//! `/etc/passwd` can never reach the host's files).

use std::io::Read;

use rustix::fs::OFlags;

use crate::fs::root::Root;

/// Largest passwd/group file read.
const MAX_DB: u64 = 16 << 20;

/// The resolved user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Supplementary gids.
    pub additional_gids: Vec<u32>,
    /// Home directory (from passwd), if known.
    pub home: Option<String>,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn read_db(root: &Root, path: &str) -> Result<Option<String>, String> {
    match root.open_at(path.into(), OFlags::RDONLY) {
        Ok(fd) => {
            let mut s = Vec::new();
            std::fs::File::from(fd)
                .take(MAX_DB)
                .read_to_end(&mut s)
                .map_err(|e| format!("/{path}: {e}"))?;
            Ok(Some(String::from_utf8_lossy(&s).into_owned()))
        }
        Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => Ok(None),
        Err(e) => Err(format!("/{path}: {e}")),
    }
}

fn parse_passwd(s: &str) -> Vec<PasswdEntry> {
    s.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

fn parse_group(s: &str) -> Vec<GroupEntry> {
    s.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|x| !x.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolve `spec` (`user`, `uid`, `user:group`, `uid:gid`, or empty for
/// root) against the databases in `root` (or none without a rootfs, where
/// names cannot be resolved).
pub fn resolve_user(spec: &str, root: Option<&Root>) -> Result<ExecUser, super::BundleError> {
    resolve(spec, root).map_err(super::BundleError::Other)
}

fn resolve(spec: &str, root: Option<&Root>) -> Result<ExecUser, String> {
    let (passwd, group) = match root {
        Some(r) => (
            read_db(r, "etc/passwd")?
                .map(|s| parse_passwd(&s))
                .unwrap_or_default(),
            read_db(r, "etc/group")?
                .map(|s| parse_group(&s))
                .unwrap_or_default(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let mut out = ExecUser {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
        home: None,
    };
    let user_entry = if user_part.is_empty() {
        passwd.iter().find(|p| p.uid == 0)
    } else if let Ok(uid) = user_part.parse::<u32>() {
        out.uid = uid;
        passwd.iter().find(|p| p.uid == uid)
    } else {
        match passwd.iter().find(|p| p.name == user_part) {
            Some(p) => Some(p),
            None => {
                return Err(format!(
                    "cannot parse user spec {spec:?}: unable to find user {user_part}"
                ));
            }
        }
    };
    if let Some(p) = user_entry {
        out.uid = p.uid;
        out.gid = p.gid;
        out.home = Some(p.home.clone());
    }
    match group_part {
        Some(g) if !g.is_empty() => {
            if let Ok(gid) = g.parse::<u32>() {
                out.gid = gid;
            } else {
                match group.iter().find(|e| e.name == g) {
                    Some(e) => out.gid = e.gid,
                    None => {
                        return Err(format!(
                            "cannot parse user spec {spec:?}: unable to find group {g}"
                        ));
                    }
                }
            }
        }
        _ => {
            if let Some(p) = user_entry {
                out.additional_gids = group
                    .iter()
                    .filter(|e| e.members.contains(&p.name))
                    .map(|e| e.gid)
                    .collect();
            }
        }
    }
    Ok(out)
}
