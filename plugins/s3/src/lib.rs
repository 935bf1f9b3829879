//! `s3`: a rumoci content-store driver keeping an OCI image layout in an
//! S3 bucket (AWS S3, SeaweedFS, MinIO, moto, anything speaking the S3
//! API).
//!
//! Options (from `--driver s3.wasm,url=http[s]://HOST[:PORT],bucket=B
//! [,prefix=P][,region=R][,path-style=true|false]`): `url` (the endpoint:
//! the host lets the plugin's `wasi:http` requests reach exactly that
//! origin and signs each with AWS Signature V4, because this driver
//! declares `net.aws-sigv4`: the plugin never sees a key), `bucket`,
//! `prefix` (a key prefix: the layout is at `PREFIX/LAYOUT`, LAYOUT
//! being the command's layout path, `.` for the prefix itself), `path-style` (`true`, the default:
//! `/BUCKET/KEY`; `false`: `url` is the bucket's own virtual host), and
//! through `opt.`: `part-size` (8M), `gc-grace` (seconds, 600),
//! `upload-grace` (seconds, 86400), `single-writer` (`true`: change
//! `index.json` without conditional requests).
//!
//! Mapping: the prefix is an OCI image layout, `PREFIX/oci-layout`,
//! `PREFIX/index.json` and `PREFIX/blobs/<alg>/<hex>`, so a copy of it to
//! a directory (`aws s3 sync`, `rclone copy`) is a layout any OCI tool
//! reads. Blobs up to a part are sent with one PUT on commit; larger ones
//! as a multipart upload while they are written (one part in memory at a
//! time), straight to the blob's key when the host says which digest to
//! expect (copies), else to `PREFIX/.rumoci-uploads/RANDOM`, copied on the
//! server to the blob's key on commit. An unfinished upload is never
//! visible. Reads are ranged GETs. `index.json` changes are
//! compare-and-swap with conditional writes (`If-Match` on the ETag,
//! `If-None-Match: *` to create); a server that ignores them is detected
//! before the first index write (a probe object that must be refused) and
//! index writes are then refused unless `opt.single-writer=true`. gc does
//! not see blobs younger than `gc-grace` (another writer may be about to
//! tag them).

mod blobs;
mod conf;
mod index;
mod request;

use blobs::*;
use conf::*;
use index::*;
use request::*;

use std::cell::RefCell;

use rumoci_driver_sdk::http::{
    Body, Endpoint, HttpError, RangeReader, RangeSource, Response, sanitize,
};
use rumoci_driver_sdk::{
    BlobInfo, BlobPage, BlobRead, BlobWrite, Cas, Digest, Driver, DriverInfo, Error, IndexDoc,
    IndexPrecondition, LayerStore, Level, Result, config, log, store_util::random_suffix,
};

/// Largest index document handled.
const MAX_INDEX: usize = 64 << 20;
/// Largest `ListObjectsV2` answer read.
const MAX_LISTING: usize = 16 << 20;
/// Where uploads of blobs whose digest is not known yet go, beneath the
/// prefix.
const UPLOADS: &str = ".rumoci-uploads";
/// `oci-layout` of a new layout.
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The driver.
pub struct S3;

rumoci_driver_sdk::register_driver!(S3);

impl Driver for S3 {
    fn info() -> DriverInfo {
        DriverInfo::new(
            "s3",
            env!("CARGO_PKG_VERSION"),
            &["cas", "cas.init", "net.aws-sigv4"],
        )
    }
}

impl LayerStore for S3 {}

/// Whether the bucket exists (`HEAD` of it); an error other than 404
/// (credentials, transport) is returned as is.
fn bucket_exists(c: &Conf) -> Result<bool> {
    Ok(bucket(c, "HEAD", "").found()?.is_some())
}

fn no_bucket(c: &Conf) -> Error {
    Error::NotFound(format!(
        "bucket {} does not exist on {} (create it first, e.g. `aws s3 mb s3://{}`)",
        c.bucket, c.url, c.bucket
    ))
}

/// A failure to reach the endpoint, said as such.
fn reachable(c: &Conf, e: Error) -> Error {
    match e {
        Error::Io(m) if m.contains("connect") => {
            Error::Io(format!("object store {} is not reachable: {m}", c.url))
        }
        e => e,
    }
}

impl Cas for S3 {
    fn init(initial_index: Vec<u8>) -> Result<()> {
        let c = conf()?;
        if !bucket_exists(&c).map_err(|e| reachable(&c, e))? {
            return Err(no_bucket(&c));
        }
        if head_index(&c)?.is_some() {
            return Err(Error::AlreadyExists(format!(
                "an OCI layout exists at {} (it has an index.json)",
                c.layout()
            )));
        }
        put_index(&c, &initial_index, IndexPrecondition::Absent).map_err(|e| match e {
            Error::FailedPrecondition(_) => Error::AlreadyExists(format!(
                "an OCI layout was created at {} meanwhile",
                c.layout()
            )),
            e => e,
        })?;
        let call = object(&c, "PUT", &c.key("oci-layout"), "");
        call.expect(
            &[("Content-Type", "application/json")],
            Body::Bytes(OCI_LAYOUT),
            &[200, 201, 204],
        )?;
        Ok(())
    }

    fn check() -> Result<()> {
        let c = conf()?;
        if head_index(&c).map_err(|e| reachable(&c, e))?.is_some() {
            return Ok(());
        }
        if !bucket_exists(&c)? {
            return Err(no_bucket(&c));
        }
        Err(Error::NotFound(format!(
            "no OCI layout at {} (no index.json): create one with `rumoci --driver s3.wasm,… init --layout PREFIX`",
            c.layout()
        )))
    }

    fn stat(digest: &Digest) -> Result<Option<BlobInfo>> {
        let c = conf()?;
        Ok(head_object(&c, &c.blob_key(digest))?.map(|h| BlobInfo {
            digest: digest.to_string(),
            size: h.size,
            committed_at: h.modified,
            labels: vec![],
        }))
    }

    fn open(digest: &Digest) -> Result<Box<dyn BlobRead>> {
        let c = conf()?;
        Ok(Box::new(BlobSource::open(c, digest)?))
    }

    fn create(expected: Option<&Digest>, size_hint: Option<u64>) -> Result<Box<dyn BlobWrite>> {
        let c = conf()?;
        Ok(Box::new(Writer::new(c, expected, size_hint)?))
    }

    fn delete(digest: &Digest) -> Result<()> {
        let c = conf()?;
        let key = c.blob_key(digest);
        object(&c, "DELETE", &key, "").expect(&[], Body::Empty, &[200, 204, 404])?;
        Ok(())
    }

    fn list_blobs(cursor: Option<String>, limit: u32) -> Result<BlobPage> {
        let c = conf()?;
        list_blob_page(&c, cursor, limit)
    }

    fn read_index() -> Result<IndexDoc> {
        let c = conf()?;
        let (bytes, version) = get_index(&c)?
            .ok_or_else(|| Error::NotFound(format!("no index.json at {}", c.layout())))?;
        Ok(IndexDoc { bytes, version })
    }

    fn write_index(doc: Vec<u8>, precondition: IndexPrecondition) -> Result<String> {
        let c = conf()?;
        put_index(&c, &doc, precondition)
    }

    fn clean() -> Result<()> {
        let c = conf()?;
        clean_uploads(&c)
    }
}
