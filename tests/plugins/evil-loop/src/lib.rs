//! Test plugin: loops forever in `cas.check` (stopped by the deadline), or
//! with the option `opt.panic=MESSAGE` panics there instead (the host shows the
//! message).
use rumoci_driver_sdk::*;

struct Evil;
impl Driver for Evil {
    fn info() -> DriverInfo {
        DriverInfo::new("evil-loop", "0.0.0", &["cas"])
    }
}
impl Cas for Evil {
    fn check() -> Result<()> {
        if let Some((_, msg)) = config().into_iter().find(|(k, _)| k == "panic") {
            panic!("{msg}");
        }
        let mut x: u64 = 0;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
}
impl LayerStore for Evil {}
register_driver!(Evil);
