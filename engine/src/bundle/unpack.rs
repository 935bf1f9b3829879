//! An image into a new runtime bundle (`rootfs/`, `config.json`,
//! `sha256_<manifest hex>.mtree`, `umoci.json`). A failed unpack removes
//! what it created.

use std::collections::BTreeMap;
use std::path::Path;

use super::meta::{MapOptions, Meta};
use super::runtime::{RuntimeMapping, runtime_config, to_json};
use super::{BundleError, ROOTFS, mtree_name, statcache_name};
use crate::cas::refs::DescriptorPath;
use crate::cas::{Cas, ext};
use crate::fs::atomic::AtomicFile;
use crate::fs::root::Root;
use crate::layer::extract::ExtractOptions;
use crate::layer_store::{InPlace, LayerStore};
use crate::mtree;
use crate::oci::{Image, Manifest};
use crate::path::BString;
use crate::readahead::ReadAhead;
use crate::rootfs::{LayerUnpack, unpack_layers_from};

fn io(what: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |e| BundleError::Other(format!("{}: {e}", what.display()))
}

/// Write `bundle/sha256_<manifest hex>.mtree` for the tree at `rootfs`
/// (files in `digests` are not re-read) and its stat cache
/// (`.statcache`), both atomically. Returns how many files were hashed.
pub fn write_bundle_manifest(
    rootfs: &Path,
    bundle: &Path,
    path: &DescriptorPath,
    digests: &BTreeMap<BString, [u8; 32]>,
) -> Result<usize, BundleError> {
    let header = mtree::Header {
        user: std::env::var("USER").unwrap_or_else(|_| "root".into()),
        machine: rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
        tree: rootfs.display().to_string(),
        date: chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
            .format("%a %b %e %H:%M:%S %Y")
            .to_string(),
    };
    let mtree_path = bundle.join(mtree_name(path));
    let cache_path = bundle.join(statcache_name(path));
    // streamed to their files (a million entries make hundreds of MB of
    // manifest), each renamed into place whole once complete
    let mut manifest = AtomicFile::create(&mtree_path).map_err(io(&mtree_path))?;
    let mut cache = AtomicFile::create(&cache_path).map_err(io(&cache_path))?;
    let rehashed = mtree::write_manifest(rootfs, &header, digests, &mut manifest, Some(&mut cache))
        .map_err(|e| BundleError::Other(format!("{}: {e}", mtree_path.display())))?;
    manifest.commit().map_err(io(&mtree_path))?;
    cache.commit().map_err(io(&cache_path))?;
    if rehashed > 0 {
        tracing::debug!("mtree: {rehashed} files re-hashed");
    }
    Ok(rehashed)
}

/// Unpack the image at `path` into `bundle`, through the layer store
/// `layers` (`None`: extract in place, [`crate::layer_store::InPlace`]).
/// Returns what was done with each layer (cached or extracted).
pub fn unpack_bundle(
    cas: &dyn Cas,
    path: &DescriptorPath,
    bundle: &Path,
    opts: ExtractOptions,
    layers: Option<&dyn LayerStore>,
) -> Result<Vec<LayerUnpack>, BundleError> {
    let manifest = ext::fetch_manifest(cas, path.target())?;
    // extracted in place, every layer is read
    crate::rootfs::config_then_layers(
        cas,
        path.target(),
        &manifest,
        layers.is_none(),
        |ahead, config| unpack_bundle_from(ahead, path, bundle, opts, layers, &manifest, config),
    )
}

/// [`unpack_bundle`] once the manifest and config are read, the layers read
/// through `ahead`.
fn unpack_bundle_from(
    ahead: &mut ReadAhead<'_, '_>,
    path: &DescriptorPath,
    bundle: &Path,
    opts: ExtractOptions,
    layers: Option<&dyn LayerStore>,
    manifest: &Manifest,
    config: &Image,
) -> Result<Vec<LayerUnpack>, BundleError> {
    crate::rootfs::check_image(manifest, config)?;
    if config.os != "linux" {
        return Err(BundleError::Other(format!(
            "config {}: unsupported OS {:?}: only linux images can be unpacked into bundles",
            manifest.config.digest, config.os
        )));
    }
    let bundle_existed = std::fs::symlink_metadata(bundle).is_ok();
    std::fs::create_dir_all(bundle).map_err(io(bundle))?;
    // keep unprivileged users away from setuid files inside
    std::fs::set_permissions(bundle, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(io(bundle))?;
    let rootfs = bundle.join(ROOTFS);
    let config_path = bundle.join("config.json");
    let mtree_path = bundle.join(mtree_name(path));
    let meta_path = bundle.join(super::meta::META_NAME);
    let cache_path = bundle.join(statcache_name(path));
    for p in [&rootfs, &config_path] {
        if std::fs::symlink_metadata(p).is_ok() {
            return Err(BundleError::Other(format!(
                "{}: already exists",
                p.display()
            )));
        }
    }
    std::fs::create_dir(&rootfs).map_err(io(&rootfs))?;
    let mut created_files: Vec<&Path> = Vec::new();
    let mut overlay_made = false;
    let res = (|| -> Result<Vec<LayerUnpack>, BundleError> {
        let in_place = InPlace::new(&rootfs);
        let store = layers.unwrap_or(&in_place);
        let unpacked =
            unpack_layers_from(ahead, store, manifest, config, &rootfs, opts.clone(), true)?;
        let digests = unpacked.digests;
        let mut overlay = None;
        if let Some(dirs) = unpacked.lowerdirs {
            // the store answered an overlay view: the rootfs is mounted, its
            // upper and work directories made in `overlay/` (never over
            // someone else's)
            let ov_dir = bundle.join(super::mount::OVERLAY_DIR);
            if std::fs::symlink_metadata(&ov_dir).is_ok() {
                return Err(BundleError::Other(format!(
                    "{}: already exists",
                    ov_dir.display()
                )));
            }
            overlay_made = true;
            let mut ov = super::mount::make_dirs(bundle, &dirs[0], opts.rootless)
                .map_err(|e| BundleError::Other(e.to_string()))?;
            for d in &dirs {
                let d = d.to_str().ok_or_else(|| {
                    BundleError::Other(format!("{}: path is not UTF-8", d.display()))
                })?;
                ov.lowerdirs.push(d.to_string());
            }
            super::mount::mount(bundle, &ov).map_err(|e| BundleError::Other(e.to_string()))?;
            overlay = Some(ov);
        }
        let root = Root::open(&rootfs).map_err(io(&rootfs))?;
        let spec = runtime_config(
            config,
            Some(&root),
            ROOTFS,
            &RuntimeMapping {
                uid_map: opts.uid_map.clone(),
                gid_map: opts.gid_map.clone(),
                rootless: opts.rootless,
            },
        )
        .map_err(|e| BundleError::Other(format!("config.json: {e}")))?;
        let data = to_json(&spec).map_err(|e| BundleError::Other(format!("config.json: {e}")))?;
        created_files.push(&config_path);
        super::write_atomic(&config_path, &data)?;

        created_files.push(&mtree_path);
        created_files.push(&cache_path);
        write_bundle_manifest(&rootfs, bundle, path, &digests)?;

        let mut meta = Meta::new(
            path,
            MapOptions {
                uid_mappings: (!opts.uid_map.is_empty()).then(|| opts.uid_map.clone()),
                gid_mappings: (!opts.gid_map.is_empty()).then(|| opts.gid_map.clone()),
                rootless: opts.rootless,
            },
        );
        meta.overlay = overlay;
        created_files.push(&meta_path);
        meta.write(bundle)?;
        Ok(unpacked.layers)
    })();
    if res.is_err() {
        if overlay_made {
            // never delete through a mount: detach it, then remove our dirs
            if super::mount::is_mounted(&rootfs)
                && let Err(e) = rustix::mount::unmount(&rootfs, rustix::mount::UnmountFlags::DETACH)
            {
                tracing::warn!("cannot unmount {}: {e}", rootfs.display());
            }
            let ov = bundle.join(super::mount::OVERLAY_DIR);
            if !super::mount::is_mounted(&rootfs)
                && let Err(e) = crate::fs::root::remove_tree(&ov)
            {
                tracing::warn!("cannot remove partial {}: {e}", ov.display());
            }
        }
        if super::mount::is_mounted(&rootfs) {
            tracing::warn!("{} is still mounted: left in place", rootfs.display());
        } else if let Err(e) = crate::fs::root::remove_tree(&rootfs) {
            tracing::warn!("cannot remove partial {}: {e}", rootfs.display());
        }
        for f in created_files {
            let _ = std::fs::remove_file(f);
        }
        // a bundle directory this unpack made goes too (only if empty:
        // remove_dir never deletes anything else)
        if !bundle_existed {
            let _ = std::fs::remove_dir(bundle);
        }
    }
    res
}
