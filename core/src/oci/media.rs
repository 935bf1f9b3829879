//! Media types: the OCI image spec's and their Docker schema 2 twins.
//!
//! This module is the one place that knows what a media type says a blob
//! is ([`kind`]): every walk over a layout (resolution, `verify`, gc,
//! `copy`, `stat`, `referrers`) and the parser ([`crate::oci::parse_blob`])
//! ask it instead of comparing strings. A Docker manifest list is an index,
//! a Docker schema 2 manifest a manifest, a Docker image config a config
//! and Docker layers are layers, exactly like their OCI twins.

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
/// A Docker schema 2 manifest list (an index).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// A Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// A Docker image configuration.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// A Docker uncompressed layer.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// A Docker gzip-compressed layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// A Docker foreign layer (uncompressed): distributed from its `urls`, so
/// it may be absent from a store.
pub const DOCKER_LAYER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar";
/// A Docker foreign layer (gzip), see [`DOCKER_LAYER_FOREIGN`].
pub const DOCKER_LAYER_FOREIGN_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// Annotation carrying a tag name in `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The digest and size of [`EMPTY_JSON`]'s only allowed content, `{}`.
pub const EMPTY_JSON_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// What a media type says a blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An index: OCI image index or Docker manifest list.
    Index,
    /// A manifest: OCI image manifest or Docker schema 2 manifest.
    Manifest,
    /// An image configuration: OCI or Docker.
    Config,
    /// A descriptor stored as a blob.
    Descriptor,
    /// The empty JSON blob.
    EmptyJson,
    /// A layer (OCI or Docker, any compression; foreign and
    /// non-distributable ones included).
    Layer,
    /// Anything else (artifacts' files, unknown documents).
    Other,
}

/// What `media_type` says a blob is.
pub fn kind(media_type: &str) -> Kind {
    match media_type {
        INDEX | DOCKER_MANIFEST_LIST => Kind::Index,
        MANIFEST | DOCKER_MANIFEST => Kind::Manifest,
        CONFIG | DOCKER_CONFIG => Kind::Config,
        DESCRIPTOR => Kind::Descriptor,
        EMPTY_JSON => Kind::EmptyJson,
        DOCKER_LAYER | DOCKER_LAYER_GZIP | DOCKER_LAYER_FOREIGN | DOCKER_LAYER_FOREIGN_GZIP => {
            Kind::Layer
        }
        _ => match split_suffix(media_type).0 {
            LAYER | LAYER_NONDISTRIBUTABLE => Kind::Layer,
            _ => Kind::Other,
        },
    }
}

/// Split `base+suffix` into `(base, suffix)`; the suffix is empty when absent.
pub fn split_suffix(media_type: &str) -> (&str, &str) {
    media_type.split_once('+').unwrap_or((media_type, ""))
}

/// Whether blobs of this media type are JSON documents that may reference
/// other blobs (indexes, manifests, descriptor blobs), and so are parsed
/// when walking an image.
pub fn is_parseable(media_type: &str) -> bool {
    matches!(
        kind(media_type),
        Kind::Index | Kind::Manifest | Kind::Descriptor
    )
}

/// Whether blobs of this media type are JSON documents rumoci parses
/// (the [`is_parseable`] ones, configs and the empty JSON blob).
pub fn is_document(media_type: &str) -> bool {
    !matches!(kind(media_type), Kind::Layer | Kind::Other)
}

/// An index: OCI image index or Docker manifest list.
pub fn is_index(media_type: &str) -> bool {
    kind(media_type) == Kind::Index
}

/// A manifest: OCI image manifest or Docker schema 2 manifest.
pub fn is_manifest(media_type: &str) -> bool {
    kind(media_type) == Kind::Manifest
}

/// An image configuration: OCI or Docker.
pub fn is_config(media_type: &str) -> bool {
    kind(media_type) == Kind::Config
}

/// A layer, OCI or Docker.
pub fn is_layer(media_type: &str) -> bool {
    kind(media_type) == Kind::Layer
}

/// A layer that is distributed from its `urls` rather than with the image
/// (Docker foreign layers, OCI non-distributable layers), so that a store
/// may lack it without being broken.
pub fn is_foreign_layer(media_type: &str) -> bool {
    matches!(media_type, DOCKER_LAYER_FOREIGN | DOCKER_LAYER_FOREIGN_GZIP)
        || split_suffix(media_type).0 == LAYER_NONDISTRIBUTABLE
}

/// The OCI layer media type with the same content format as the layer
/// type `media_type` (itself for an OCI layer type; the twin for a Docker
/// one), which decompression is chosen by; `None` for a non-layer.
pub fn oci_layer_type(media_type: &str) -> Option<&str> {
    match media_type {
        DOCKER_LAYER => Some(LAYER),
        DOCKER_LAYER_GZIP => Some(LAYER_GZIP),
        DOCKER_LAYER_FOREIGN => Some(LAYER_NONDISTRIBUTABLE),
        DOCKER_LAYER_FOREIGN_GZIP => {
            Some("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip")
        }
        _ if is_layer(media_type) => Some(media_type),
        _ => None,
    }
}

/// Whether a document of media type `declared` (its own `mediaType`) may be
/// read through a descriptor of media type `descriptor`: the same type, or
/// a twin of the same kind (an OCI manifest's descriptor leading to a
/// Docker manifest, as go-containerregistry writes). A twin is unambiguous
/// (the content has one shape) and only worth a warning; a document
/// claiming another kind is refused (CVE-2021-41190).
pub fn compatible(descriptor: &str, declared: &str) -> bool {
    descriptor == declared
        || (kind(descriptor) != Kind::Other && kind(descriptor) == kind(declared))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_types_are_their_oci_twins() {
        for (oci, docker) in [
            (INDEX, DOCKER_MANIFEST_LIST),
            (MANIFEST, DOCKER_MANIFEST),
            (CONFIG, DOCKER_CONFIG),
            (LAYER, DOCKER_LAYER),
            (LAYER_GZIP, DOCKER_LAYER_GZIP),
        ] {
            assert_eq!(kind(oci), kind(docker), "{oci} / {docker}");
            assert_ne!(kind(oci), Kind::Other, "{oci}");
            assert!(compatible(oci, docker) && compatible(docker, oci));
        }
        assert_eq!(oci_layer_type(DOCKER_LAYER_GZIP), Some(LAYER_GZIP));
        assert_eq!(oci_layer_type(DOCKER_LAYER), Some(LAYER));
        assert_eq!(oci_layer_type(LAYER_ZSTD), Some(LAYER_ZSTD));
        assert_eq!(
            oci_layer_type(DOCKER_LAYER_FOREIGN_GZIP).map(split_suffix),
            Some((LAYER_NONDISTRIBUTABLE, "gzip"))
        );
        assert_eq!(oci_layer_type(CONFIG), None);
        assert!(is_foreign_layer(DOCKER_LAYER_FOREIGN_GZIP));
        assert!(is_foreign_layer(
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        ));
        assert!(!is_foreign_layer(DOCKER_LAYER_GZIP));
        assert!(is_parseable(DOCKER_MANIFEST_LIST) && is_parseable(DOCKER_MANIFEST));
        assert!(!is_parseable(DOCKER_CONFIG) && is_document(DOCKER_CONFIG));
        // kinds that disagree, and unknown types, are not compatible
        assert!(!compatible(MANIFEST, INDEX));
        assert!(!compatible(MANIFEST, DOCKER_MANIFEST_LIST));
        assert!(!compatible(MANIFEST, "application/vnd.example+json"));
        assert!(!compatible("application/x-a", "application/x-b"));
        assert!(compatible("application/x-a", "application/x-a"));
    }
}
