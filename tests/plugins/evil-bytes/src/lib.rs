//! Test plugin: the dir-cas driver, except that blob reads return corrupted
//! bytes (the host's verification must refuse them).
#[allow(dead_code)]
#[path = "../../../../plugins/dir-cas/src/store.rs"]
mod store;

use rumoci_driver_sdk::*;
use store::DirCasDriver;

struct Evil;
impl Driver for Evil {
    fn info() -> DriverInfo {
        DriverInfo::new("evil-bytes", "0.0.0", &["cas"])
    }
}

struct Liar(Box<dyn BlobRead>);
impl BlobRead for Liar {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&mut self, offset: u64, len: u32) -> Result<Vec<u8>> {
        let mut b = self.0.read_at(offset, len)?;
        if offset == 0
            && let Some(x) = b.first_mut()
        {
            *x ^= 0x20;
        }
        Ok(b)
    }
}

impl Cas for Evil {
    fn check() -> Result<()> {
        <DirCasDriver as Cas>::check()
    }
    fn stat(d: &Digest) -> Result<Option<BlobInfo>> {
        <DirCasDriver as Cas>::stat(d)
    }
    fn open(d: &Digest) -> Result<Box<dyn BlobRead>> {
        Ok(Box::new(Liar(<DirCasDriver as Cas>::open(d)?)))
    }
    fn create(e: Option<&Digest>, s: Option<u64>) -> Result<Box<dyn BlobWrite>> {
        <DirCasDriver as Cas>::create(e, s)
    }
    fn delete(d: &Digest) -> Result<()> {
        <DirCasDriver as Cas>::delete(d)
    }
    fn list_blobs(c: Option<String>, l: u32) -> Result<BlobPage> {
        <DirCasDriver as Cas>::list_blobs(c, l)
    }
    fn read_index() -> Result<IndexDoc> {
        <DirCasDriver as Cas>::read_index()
    }
    fn write_index(doc: Vec<u8>, p: IndexPrecondition) -> Result<String> {
        <DirCasDriver as Cas>::write_index(doc, p)
    }
}
impl LayerStore for Evil {}
register_driver!(Evil);
