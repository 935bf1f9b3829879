//! Test plugin: allocates without bound in `cas.check` (stopped by the
//! memory limit).
use rumoci_driver_sdk::*;

struct Evil;
impl Driver for Evil {
    fn info() -> DriverInfo {
        DriverInfo::new("evil-alloc", "0.0.0", &["cas"])
    }
}
impl Cas for Evil {
    fn check() -> Result<()> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
        }
    }
}
impl LayerStore for Evil {}
register_driver!(Evil);
