//! Test plugin: loops forever in `cas.check` (stopped by the deadline).
use rumoci_driver_sdk::*;

struct Evil;
impl Driver for Evil {
    fn info() -> DriverInfo {
        DriverInfo::new("evil-loop", "0.0.0", &["cas"])
    }
}
impl Cas for Evil {
    fn check() -> Result<()> {
        let mut x: u64 = 0;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
}
impl LayerStore for Evil {}
register_driver!(Evil);
