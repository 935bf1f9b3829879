//! Layer decompression by media type.

use std::io::{BufReader, Read};

use crate::oci::media;

/// Open a decompressing reader for a layer of `media_type`.
pub fn decompressor<'a>(
    media_type: &str,
    blob: Box<dyn Read + 'a>,
) -> Result<Box<dyn Read + 'a>, String> {
    let (base, suffix) = media::split_suffix(media_type);
    if base != media::LAYER && base != media::LAYER_NONDISTRIBUTABLE {
        return Err(format!("unsupported layer media type {media_type}"));
    }
    match suffix {
        "" => Ok(blob),
        "gzip" => Ok(Box::new(flate2::read::MultiGzDecoder::new(
            BufReader::with_capacity(1 << 20, blob),
        ))),
        "zstd" => Ok(Box::new(
            zstd::stream::read::Decoder::new(blob).map_err(|e| format!("zstd: {e}"))?,
        )),
        other => Err(format!(
            "unsupported layer compression {other:?} in {media_type}"
        )),
    }
}
