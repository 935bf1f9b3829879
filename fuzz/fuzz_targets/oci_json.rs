//! The image JSON parsers never panic, and what they accept re-serialises
//! and re-parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rumoci::oci::{self, Blob, media};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let mt = [
        media::INDEX,
        media::MANIFEST,
        media::CONFIG,
        media::DESCRIPTOR,
        media::EMPTY_JSON,
    ][usize::from(sel) % 5];
    if let Ok(blob) = oci::parse_blob(mt, body) {
        let again = match &blob {
            Blob::Index(i) => oci::to_go_json(i).ok(),
            Blob::Manifest(m) => oci::to_go_json(m).ok(),
            Blob::Config(c) => oci::to_go_json(c).ok(),
            Blob::Descriptor(d) => oci::to_go_json(d).ok(),
            Blob::Empty | Blob::Other => None,
        };
        if let Some(bytes) = again {
            let re = oci::parse_blob(mt, &bytes).expect("re-parse of our own output");
            let _ = re.children();
        }
    }
});
