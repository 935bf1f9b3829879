//! go-mtree compatible manifests: writer, parser and diff.
