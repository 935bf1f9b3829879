//! `rumoci umount BUNDLE` and `rumoci mount BUNDLE`: undo and redo the
//! overlay mount of a bundle unpacked through an overlay layer store.

use std::path::PathBuf;

use anyhow::{Context, Result};
use rumoci::bundle::meta::Meta;
use rumoci::bundle::mount::{self, OverlayError};

/// Arguments of `umount` and `mount`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The bundle made by `unpack` through an overlay layer store.
    bundle: PathBuf,
}

fn overlay_meta(a: &Args) -> Result<mount::OverlayMeta> {
    let meta = Meta::read(&a.bundle)?;
    meta.overlay
        .ok_or_else(|| OverlayError::NotOverlay(rumoci::show::name(&a.bundle)).into())
}

/// Unmount the bundle's rootfs overlay (nothing to do if not mounted).
pub fn umount(a: Args) -> Result<()> {
    if let Err(e) = overlay_meta(&a) {
        // umoci.json rewritten by a tool that drops the field (the Go
        // umoci's `repack --refresh-bundle`): still end the mount
        let rootfs = a.bundle.join(rumoci::bundle::ROOTFS);
        if !mount::is_mounted(&rootfs) {
            return Err(e);
        }
        tracing::warn!(
            "{e}; {} is an overlay mount all the same: unmounting it",
            rumoci::show::name(&rootfs)
        );
    }
    let was = mount::umount(&a.bundle)
        .with_context(|| format!("umount {}", rumoci::show::name(&a.bundle)))?;
    if was {
        tracing::info!("unmounted {}/rootfs", rumoci::show::name(&a.bundle));
    } else {
        tracing::info!("{}/rootfs was not mounted", rumoci::show::name(&a.bundle));
    }
    Ok(())
}

/// Mount the bundle's rootfs overlay again from `umoci.json` (nothing to
/// do if mounted).
pub fn mount(a: Args) -> Result<()> {
    let ov = overlay_meta(&a)?;
    let rootfs = a.bundle.join(rumoci::bundle::ROOTFS);
    if mount::is_mounted(&rootfs) {
        tracing::info!("{} is mounted already", rumoci::show::name(&rootfs));
        return Ok(());
    }
    mount::mount(&a.bundle, &ov).with_context(|| format!("mount {}", rumoci::show::name(&a.bundle)))
}
