//! `--image` / tag / digest / platform parsing never panics, and an accepted
//! digest always yields a blob path inside `blobs/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rumoci::cas::refs::{ImageRef, PlatformSpec, is_valid_tag};
use rumoci::oci::Digest;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = ImageRef::parse(s) {
        assert!(is_valid_tag(&r.tag));
    }
    let _ = PlatformSpec::parse(s);
    if let Ok(d) = s.parse::<Digest>() {
        let p = d.blob_path();
        assert!(p.starts_with("blobs/") && !p.contains(".."));
        assert_eq!(p.matches('/').count(), 2);
        assert_eq!(d.to_string(), s);
    }
});
