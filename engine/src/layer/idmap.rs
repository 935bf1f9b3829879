//! uid/gid mappings (`--uid-map C:H[:S]`) and umoci's rootless ownership
//! xattr (`user.rootlesscontainers`).

use serde::{Deserialize, Serialize};

/// Maps a file's host owner (and its `user.rootlesscontainers` value, if
/// any) to the owner recorded in the layer.
pub type OwnerFn = dyn Fn(u32, u32, Option<&[u8]>) -> Result<(u32, u32), IdMapError> + Send + Sync;

/// One mapping range, with umoci's JSON field names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    /// First id inside the container.
    #[serde(rename = "containerID")]
    pub container_id: u32,
    /// First id on the host.
    #[serde(rename = "hostID")]
    pub host_id: u32,
    /// Number of ids.
    pub size: u32,
}

impl IdMapping {
    /// Parse `CONTAINER:HOST[:SIZE]` (size defaults to 1).
    pub fn parse(s: &str) -> Result<IdMapping, IdMapError> {
        let parts: Vec<&str> = s.split(':').collect();
        let num = |p: &str| {
            p.parse::<u32>()
                .map_err(|_| format!("id mapping {s:?}: {p:?} is not a valid 32-bit id"))
        };
        let m = match parts.as_slice() {
            [c, h] => IdMapping {
                container_id: num(c)?,
                host_id: num(h)?,
                size: 1,
            },
            [c, h, n] => IdMapping {
                container_id: num(c)?,
                host_id: num(h)?,
                size: num(n)?,
            },
            _ => {
                return Err(IdMapError(format!(
                    "id mapping {s:?}: expected CONTAINER:HOST[:SIZE]"
                )));
            }
        };
        if m.size == 0
            || u64::from(m.container_id) + u64::from(m.size) > 1 << 32
            || u64::from(m.host_id) + u64::from(m.size) > 1 << 32
        {
            return Err(IdMapError(format!("id mapping {s:?}: range out of bounds")));
        }
        Ok(m)
    }
}

/// Map a container id to the host through `maps` (identity when empty).
pub fn to_host(id: u32, maps: &[IdMapping]) -> Option<u32> {
    if maps.is_empty() {
        return Some(id);
    }
    maps.iter().find_map(|m| {
        let off = id.checked_sub(m.container_id)?;
        (off < m.size).then(|| m.host_id + off)
    })
}

/// Map a host id back into the container (identity when `maps` is empty).
pub fn to_container(id: u32, maps: &[IdMapping]) -> Option<u32> {
    if maps.is_empty() {
        return Some(id);
    }
    maps.iter().find_map(|m| {
        let off = id.checked_sub(m.host_id)?;
        (off < m.size).then(|| m.container_id + off)
    })
}

/// The owner function of a layer generator (see
/// [`OwnerFn`]) that reverses an unpack's mapping:
/// rootless bundles take the owner from the `user.rootlesscontainers` xattr
/// (0:0 without it, as umoci does); mapped bundles map host ids back into
/// the container, and an id outside every range is an error. `None` when
/// there is nothing to reverse.
pub fn owner_mapper(
    uid_map: Vec<IdMapping>,
    gid_map: Vec<IdMapping>,
    rootless: bool,
) -> Option<Box<OwnerFn>> {
    if rootless {
        return Some(Box::new(|_, _, xattr: Option<&[u8]>| match xattr {
            Some(x) => decode_rootless(x),
            None => Ok((0, 0)),
        }));
    }
    if uid_map.is_empty() && gid_map.is_empty() {
        return None;
    }
    Some(Box::new(move |uid, gid, _| {
        let u = to_container(uid, &uid_map)
            .ok_or_else(|| format!("host uid {uid} is outside every --uid-map range"))?;
        let g = to_container(gid, &gid_map)
            .ok_or_else(|| format!("host gid {gid} is outside every --gid-map range"))?;
        Ok((u, g))
    }))
}

/// A malformed id mapping or rootless xattr, or an id no mapping covers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdMapError(pub String);

impl From<String> for IdMapError {
    fn from(s: String) -> IdMapError {
        IdMapError(s)
    }
}

/// The xattr rootless unpack stores the container owner in.
pub const ROOTLESS_XATTR: &str = "user.rootlesscontainers";
/// "Unchanged" in the rootless protobuf (treated as 0).
const NOOP_ID: u32 = u32::MAX;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Encode `Resource{uid=1, gid=2}` as umoci does; `None` for 0:0 (no xattr).
pub fn encode_rootless(uid: u32, gid: u32) -> Option<Vec<u8>> {
    if uid == 0 && gid == 0 {
        return None;
    }
    let field = |v: u32| if v == 0 { NOOP_ID } else { v };
    let mut out = Vec::new();
    out.push(0x08);
    put_varint(&mut out, u64::from(field(uid)));
    out.push(0x10);
    put_varint(&mut out, u64::from(field(gid)));
    Some(out)
}

/// Decode the rootless xattr into (uid, gid).
pub fn decode_rootless(data: &[u8]) -> Result<(u32, u32), IdMapError> {
    let mut uid = 0u32;
    let mut gid = 0u32;
    let mut i = 0;
    while i < data.len() {
        let key = data[i];
        i += 1;
        if key & 7 != 0 {
            return Err(IdMapError(format!(
                "{ROOTLESS_XATTR}: unsupported wire type in key {key:#x}"
            )));
        }
        let mut v: u64 = 0;
        let mut shift = 0;
        loop {
            let b = *data
                .get(i)
                .ok_or_else(|| format!("{ROOTLESS_XATTR}: truncated varint"))?;
            i += 1;
            if shift > 63 {
                return Err(IdMapError(format!("{ROOTLESS_XATTR}: varint too long")));
            }
            v |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        let v = u32::try_from(v).map_err(|_| format!("{ROOTLESS_XATTR}: id out of range"))?;
        let v = if v == NOOP_ID { 0 } else { v };
        match key >> 3 {
            1 => uid = v,
            2 => gid = v,
            _ => {}
        }
    }
    Ok((uid, gid))
}

impl crate::layer::idmap::IdMapError {
    /// What kind of failure this is: always [`crate::error::ErrorKind::InvalidInput`].
    pub fn kind(&self) -> crate::error::ErrorKind {
        crate::error::ErrorKind::InvalidInput
    }
}

rumoci_core::wraps!(crate::layer::idmap::IdMapError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn umoci_encodings() {
        assert_eq!(
            hex::encode(encode_rootless(992, 123).expect("xattr")),
            "08e007107b"
        );
        assert_eq!(
            hex::encode(encode_rootless(0, 456).expect("xattr")),
            "08ffffffff0f10c803"
        );
        assert_eq!(
            hex::encode(encode_rootless(98, 0).expect("xattr")),
            "086210ffffffff0f"
        );
        assert_eq!(encode_rootless(0, 0), None);
        for (u, g) in [(992, 123), (0, 456), (98, 0), (u32::MAX - 1, 7)] {
            let e = encode_rootless(u, g).expect("xattr");
            assert_eq!(decode_rootless(&e), Ok((u, g)));
        }
        assert!(decode_rootless(&[0x08, 0xff]).is_err());
    }

    #[test]
    fn mapping() {
        let m = IdMapping::parse("0:1000:10").expect("valid");
        assert_eq!(to_host(5, &[m]), Some(1005));
        assert_eq!(to_host(10, &[m]), None);
        assert_eq!(to_container(1009, &[m]), Some(9));
        assert_eq!(IdMapping::parse("1:2").expect("valid").size, 1);
        assert!(IdMapping::parse("a:1").is_err());
        assert!(IdMapping::parse("0:4294967295:2").is_err());
        assert!(IdMapping::parse("1:2:3:4").is_err());
    }
}
