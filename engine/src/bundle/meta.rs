//! `umoci.json`: what a bundle was unpacked from and how.

use super::BundleError;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cas::refs::DescriptorPath;
use crate::layer::idmap::IdMapping;
use crate::oci::{Descriptor, to_go_json};

/// The file name inside a bundle.
pub const META_NAME: &str = "umoci.json";
/// The only metadata version understood.
pub const META_VERSION: &str = "2";

/// Mapping options recorded in the bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapOptions {
    /// uid mappings (`null` when none).
    pub uid_mappings: Option<Vec<IdMapping>>,
    /// gid mappings (`null` when none).
    pub gid_mappings: Option<Vec<IdMapping>>,
    /// Rootless unpack.
    pub rootless: bool,
}

/// The descriptor walk from `index.json` to the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DescriptorWalk {
    /// The walk.
    pub descriptor_walk: Vec<Descriptor>,
}

/// Contents of `umoci.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Always "2".
    pub umoci_version: String,
    /// Where the bundle came from.
    pub from_descriptor_path: DescriptorWalk,
    /// How ids were mapped.
    pub map_options: MapOptions,
    /// Deprecated; must be 0 or absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whiteout_mode: Option<i64>,
    /// rumoci only: the rootfs is an overlay mount (see
    /// [`super::mount`]); the Go umoci ignores the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<super::mount::OverlayMeta>,
}

impl Meta {
    /// Metadata for a bundle unpacked from `path`.
    pub fn new(path: &DescriptorPath, map: MapOptions) -> Meta {
        Meta {
            umoci_version: META_VERSION.into(),
            from_descriptor_path: DescriptorWalk {
                descriptor_walk: path.0.clone(),
            },
            map_options: map,
            whiteout_mode: None,
            overlay: None,
        }
    }

    /// Read and validate a bundle's `umoci.json`.
    pub fn read(bundle: &Path) -> Result<Meta, BundleError> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let p = bundle.join(META_NAME);
        let shown = || crate::show::name(&p);
        // a regular file only (never a fifo that would block), and bounded
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(
                (rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW).bits() as i32,
            )
            .open(&p)
            .map_err(|e| BundleError::Other(format!("{}: {e}", shown())))?;
        if !f.metadata().is_ok_and(|m| m.is_file()) {
            return Err(BundleError::Other(format!(
                "{}: not a regular file",
                shown()
            )));
        }
        let max = crate::limits::MAX_DOCUMENT_SIZE;
        let mut data = Vec::new();
        f.take(max + 1)
            .read_to_end(&mut data)
            .map_err(|e| BundleError::Other(format!("{}: {e}", shown())))?;
        if data.len() as u64 > max {
            return Err(BundleError::Other(format!(
                "{}: {}",
                shown(),
                crate::limits::Limit::DocumentSize(data.len() as u64)
            )));
        }
        let m: Meta = serde_json::from_slice(&data)
            .map_err(|e| BundleError::Other(format!("{}: {e}", p.display())))?;
        if m.umoci_version != META_VERSION {
            return Err(BundleError::Other(format!(
                "{}: unsupported umoci_version {:?}",
                p.display(),
                m.umoci_version
            )));
        }
        if m.whiteout_mode.unwrap_or(0) != 0 {
            return Err(BundleError::Other(format!(
                "{}: deprecated (broken) whiteout_mode field set",
                p.display()
            )));
        }
        if m.from_descriptor_path.descriptor_walk.is_empty() {
            return Err(BundleError::Other(format!(
                "{}: empty descriptor walk",
                p.display()
            )));
        }
        Ok(m)
    }

    /// Write atomically into `bundle`.
    pub fn write(&self, bundle: &Path) -> Result<(), BundleError> {
        let data = to_go_json(self)
            .map_err(|e| BundleError::Other(format!("serialising {META_NAME}: {e}")))?;
        super::write_atomic(&bundle.join(META_NAME), &data)
    }
}
