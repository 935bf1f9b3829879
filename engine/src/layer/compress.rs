//! Layer decompression by media type.

use std::io::{BufReader, Read};

use crate::oci::media;

/// Open a decompressing reader for a layer of `media_type`.
pub fn decompressor<'a>(
    media_type: &str,
    blob: Box<dyn Read + 'a>,
) -> Result<Box<dyn Read + 'a>, crate::Error> {
    use crate::{Error, ErrorKind};
    let (base, suffix) = media::split_suffix(media_type);
    if base != media::LAYER && base != media::LAYER_NONDISTRIBUTABLE {
        return Err(Error::msg(
            ErrorKind::Unsupported,
            format!("unsupported layer media type {media_type}"),
        ));
    }
    match suffix {
        "" => Ok(blob),
        "gzip" => Ok(gunzip(blob)),
        "zstd" => Ok(Box::new(zstd::stream::read::Decoder::new(blob).map_err(
            |e| Error::msg(ErrorKind::of_io(&e), format!("zstd: {e}")),
        )?)),
        other => Err(Error::msg(
            ErrorKind::Unsupported,
            format!("unsupported layer compression {other:?} in {media_type}"),
        )),
    }
}

/// The gzip decoder: ISA-L's (the `isal` feature) unless
/// `RUMOCI_INFLATE=zlib-rs` asks for flate2's zlib-rs, the fallback.
fn gunzip<'a>(blob: Box<dyn Read + 'a>) -> Box<dyn Read + 'a> {
    #[cfg(feature = "isal")]
    if std::env::var_os("RUMOCI_INFLATE").is_none_or(|v| v != "zlib-rs") {
        return Box::new(super::inflate::GzReader::new(blob));
    }
    Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
        1 << 20,
        blob,
    )))
}
