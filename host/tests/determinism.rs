//! The same change gives the same blob digest whatever the machine: zstd
//! layers written on one CPU and on several are byte-identical.

mod common;

use std::process::Command;

use common::*;

#[test]
fn zstd_layers_do_not_depend_on_the_cpu_count() {
    if !have("taskset") {
        eprintln!("skipped: taskset missing");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    // 12 MiB of compressible but not trivial data: several zstd jobs
    let mut data = Vec::with_capacity(12 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < 12 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let word = format!("{:x} ", x % 100_000);
        data.extend_from_slice(word.as_bytes());
    }
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_600_000_000);
    b.append_data(&mut h, "words", data.as_slice())
        .expect("append");
    let layer = tmp.path().join("layer.tar");
    std::fs::write(&layer, b.into_inner().expect("tar")).expect("write");
    let digest = |cpus: Option<&str>| {
        let l = tmp.path().join(format!("layout-{}", cpus.unwrap_or("all")));
        let img = format!("{}:t", s(&l));
        rumoci_ok(&["init", "--layout", s(&l)]);
        rumoci_ok(&["new", "--image", &img]);
        let mut c = match cpus {
            Some(list) => {
                let mut c = Command::new("taskset");
                c.args(["-c", list, rumoci_bin()]);
                c
            }
            None => Command::new(rumoci_bin()),
        };
        command_ok(
            c.args([
                "raw",
                "add-layer",
                "--compress",
                "zstd",
                "--image",
                &img,
                s(&layer),
            ])
            .env("SOURCE_DATE_EPOCH", "1700000000"),
        );
        let m = read_blob_json(&l, index_entry(&l, "t")["digest"].as_str().expect("digest"));
        m["layers"][0]["digest"]
            .as_str()
            .expect("layer")
            .to_string()
    };
    let one = digest(Some("0"));
    let all = digest(None);
    assert_eq!(one, all, "one CPU and all CPUs give the same zstd blob");
}
