//! Media types of the OCI image spec.

/// An OCI image index (also `index.json`).
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// An OCI image manifest.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image configuration.
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// An OCI descriptor stored as a blob.
pub const DESCRIPTOR: &str = "application/vnd.oci.descriptor.v1+json";
/// The empty JSON blob `{}`.
pub const EMPTY_JSON: &str = "application/vnd.oci.empty.v1+json";
/// An uncompressed layer.
pub const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// A gzip-compressed layer.
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// A zstd-compressed layer.
pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// The deprecated non-distributable layer base type.
pub const LAYER_NONDISTRIBUTABLE: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
/// A Docker schema 2 manifest list (not supported as a target, recognised for messages).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// A Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Annotation carrying a tag name in `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The digest and size of [`EMPTY_JSON`]'s only allowed content, `{}`.
pub const EMPTY_JSON_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// Split `base+suffix` into `(base, suffix)`; the suffix is empty when absent.
pub fn split_suffix(media_type: &str) -> (&str, &str) {
    media_type.split_once('+').unwrap_or((media_type, ""))
}

/// Whether blobs of this media type are JSON documents that may reference
/// other blobs (and so are parsed when walking an image).
pub fn is_parseable(media_type: &str) -> bool {
    matches!(
        media_type,
        INDEX | MANIFEST | DESCRIPTOR | DOCKER_MANIFEST_LIST
    )
}
