//! OCI image-spec types.
