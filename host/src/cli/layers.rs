//! Layer-level helpers shared by commands.

use std::io::Read;

use rumoci::oci::{Descriptor, Digest};

/// Check one layer blob (already size/digest verified while read).
// TODO(unpack): decompress by media type and compare with the diff_id.
pub fn check_layer(
    desc: &Descriptor,
    _diff_id: Option<&Digest>,
    r: &mut dyn Read,
) -> Result<(), String> {
    std::io::copy(r, &mut std::io::sink())
        .map(|_| ())
        .map_err(|e| format!("layer {}: {e}", desc.digest))
}
