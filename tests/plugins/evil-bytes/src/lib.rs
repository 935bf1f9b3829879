//! Test plugin: the dir-cas driver, except that blob reads return corrupted
//! bytes (the host's verification must refuse them).
#[allow(dead_code)]
#[path = "../../../../plugins/dir-cas/src/store.rs"]
mod store;
#[macro_use]
#[path = "../../dir_cas_methods.rs"]
mod dir_cas_methods;

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
    dir_cas_methods!(
        check,
        stat,
        create,
        delete,
        list_blobs,
        read_index,
        write_index
    );
    fn open(d: &Digest) -> Result<Box<dyn BlobRead>> {
        Ok(Box::new(Liar(<DirCasDriver as Cas>::open(d)?)))
    }
}
impl LayerStore for Evil {}
register_driver!(Evil);
