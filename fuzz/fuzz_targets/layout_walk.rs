//! Whole image layouts, generated structurally (not as bytes): layers,
//! configs, manifests, indexes, chains of nested indexes (sometimes past
//! `limits::MAX_INDEX_DEPTH`), raw blobs, and broken descriptors (wrong
//! size, wrong digest, missing blob, embedded data), tagged in `index.json`.
//! Each layout is written with the built-in driver, then walked in-process
//! the way the commands do: resolve every tag, `verify`, unpack every
//! resolved image into a bundle, `gc`.
//!
//! Fails on any panic or abort (a stack overflow is an abort), and when gc
//! deletes something a tag needed: every tag that resolved before gc must
//! resolve to the same path after it.
#![no_main]

use std::path::Path;

use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use rumoci::cas::{Cas, DirCas, check, gc, refs};
use rumoci::layer::extract::ExtractOptions;
use rumoci::limits::MAX_INDEX_DEPTH;
use rumoci::oci::{Digest, media};
use serde_json::{Value, json};

#[path = "scratch.rs"]
mod scratch_dir;

/// Scratch directories are named `PREFIX<pid>-<random>`.
const PREFIX: &str = "rumoci-fuzz-layout-";

/// A generated layout: blobs to store, and the `index.json` entries.
#[derive(Debug)]
struct Layout {
    blobs: Vec<Vec<u8>>,
    roots: Vec<Value>,
}

/// Names that exercise the extractor's paths (and some that must fail).
const NAMES: &[&str] = &["a", "b/c", "../x", "a/.wh.b", ".wh..wh..opq", "/abs", "d/"];
const TAGS: &[&str] = &["latest", "a", "b"];

/// A ustar archive of regular files (`name`, `content`).
fn tar(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, content) in entries {
        let mut h = [0u8; 512];
        let n = name.as_bytes();
        h[..n.len().min(100)].copy_from_slice(&n[..n.len().min(100)]);
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{:011o}", content.len()).as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = if name.ends_with('/') { b'5' } else { b'0' };
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(content);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({
        "mediaType": media_type,
        "digest": Digest::sha256_of(bytes).to_string(),
        "size": bytes.len(),
    })
}

fn random_digest(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    let b: [u8; 32] = u.arbitrary()?;
    Ok(Digest::sha256_of(&b).to_string())
}

impl<'a> Arbitrary<'a> for Layout {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut blobs = Vec::new();
        // descriptors later documents may refer to
        let mut descs: Vec<Value> = Vec::new();
        let mut diff_ids: Vec<String> = Vec::new();
        let pick = |u: &mut Unstructured<'a>, descs: &[Value]| -> arbitrary::Result<Value> {
            if descs.is_empty() || u.ratio(1, 16)? {
                return Ok(json!({
                    "mediaType": *u.choose(&[media::MANIFEST, media::INDEX, media::LAYER])?,
                    "digest": random_digest(u)?,
                    "size": u.int_in_range(0..=64u64)?,
                }));
            }
            Ok(u.choose(descs)?.clone())
        };
        let store = |bytes: Vec<u8>, media_type: &str, blobs: &mut Vec<Vec<u8>>| {
            let d = descriptor(media_type, &bytes);
            blobs.push(bytes);
            d
        };
        let mut long_chain = false;
        let steps = u.int_in_range(1..=24)?;
        for _ in 0..steps {
            let d = match u.int_in_range(0..=6u8)? {
                0 => {
                    let mut entries = Vec::new();
                    for _ in 0..u.int_in_range(0..=3)? {
                        let name = if u.ratio(1, 4)? {
                            String::arbitrary(u)?
                        } else {
                            (*u.choose(NAMES)?).to_string()
                        };
                        let len = u.int_in_range(0..=32)?;
                        entries.push((name, u.bytes(len)?.to_vec()));
                    }
                    let t = tar(&entries);
                    diff_ids.push(Digest::sha256_of(&t).to_string());
                    store(t, media::LAYER, &mut blobs)
                }
                1 => {
                    let mut ids = Vec::new();
                    for _ in 0..u.int_in_range(0..=3)? {
                        if !diff_ids.is_empty() && u.ratio(3, 4)? {
                            ids.push(u.choose(&diff_ids)?.clone());
                        } else {
                            ids.push(random_digest(u)?);
                        }
                    }
                    let doc = json!({
                        "architecture": "amd64",
                        "os": *u.choose(&["linux", "windows"])?,
                        "config": {},
                        "rootfs": {"type": "layers", "diff_ids": ids},
                    });
                    let bytes = serde_json::to_vec(&doc).unwrap_or_default();
                    store(bytes, media::CONFIG, &mut blobs)
                }
                2 => {
                    let config = pick(u, &descs)?;
                    let mut layers = Vec::new();
                    for _ in 0..u.int_in_range(0..=3)? {
                        layers.push(pick(u, &descs)?);
                    }
                    let doc = json!({
                        "schemaVersion": 2,
                        "mediaType": media::MANIFEST,
                        "config": config,
                        "layers": layers,
                    });
                    let bytes = serde_json::to_vec(&doc).unwrap_or_default();
                    store(bytes, media::MANIFEST, &mut blobs)
                }
                3 => {
                    let mut children = Vec::new();
                    for _ in 0..u.int_in_range(0..=4)? {
                        let mut c = pick(u, &descs)?;
                        if u.ratio(1, 2)? {
                            c["platform"] = json!({
                                "os": "linux",
                                "architecture": *u.choose(&["amd64", "arm64"])?,
                            });
                        }
                        children.push(c);
                    }
                    let doc = json!({
                        "schemaVersion": 2,
                        "mediaType": media::INDEX,
                        "manifests": children,
                    });
                    let bytes = serde_json::to_vec(&doc).unwrap_or_default();
                    store(bytes, media::INDEX, &mut blobs)
                }
                4 => {
                    // a chain of nested indexes, sometimes around the limit,
                    // rarely far past it (a recursive walk overflows there);
                    // at most one long chain per layout, and few layouts
                    // with one (thousands of blobs make an input slow)
                    let depth = if !long_chain && u.ratio(1, 512)? {
                        long_chain = true;
                        5 * MAX_INDEX_DEPTH
                    } else if !long_chain && u.ratio(1, 128)? {
                        long_chain = true;
                        u.int_in_range(MAX_INDEX_DEPTH - 2..=MAX_INDEX_DEPTH + 2)?
                    } else {
                        u.int_in_range(1..=16)?
                    };
                    let mut child = pick(u, &descs)?;
                    for _ in 0..depth {
                        let doc = json!({
                            "schemaVersion": 2,
                            "mediaType": media::INDEX,
                            "manifests": [child],
                        });
                        let bytes = serde_json::to_vec(&doc).unwrap_or_default();
                        child = store(bytes, media::INDEX, &mut blobs);
                    }
                    child
                }
                5 => {
                    let mt = *u.choose(&[
                        media::INDEX,
                        media::MANIFEST,
                        media::CONFIG,
                        media::DESCRIPTOR,
                        media::LAYER_GZIP,
                        "application/octet-stream",
                    ])?;
                    let len = u.int_in_range(0..=128)?;
                    let bytes = u.bytes(len)?.to_vec();
                    store(bytes, mt, &mut blobs)
                }
                _ => {
                    // a broken descriptor of something known
                    let mut d = pick(u, &descs)?;
                    match u.int_in_range(0..=3u8)? {
                        0 => d["size"] = json!(d["size"].as_u64().unwrap_or(0).saturating_add(1)),
                        1 => d["digest"] = json!(random_digest(u)?),
                        2 => d["data"] = json!("e30="),
                        _ => d["size"] = json!(u64::MAX),
                    }
                    d
                }
            };
            descs.push(d);
        }
        let mut roots = Vec::new();
        for _ in 0..u.int_in_range(1..=4)? {
            let mut d = pick(u, &descs)?;
            let tag = if u.ratio(1, 8)? {
                String::arbitrary(u)?
            } else {
                (*u.choose(TAGS)?).to_string()
            };
            d["annotations"] = json!({ media::ANNOTATION_REF_NAME: tag });
            roots.push(d);
        }
        Ok(Layout { blobs, roots })
    }
}

fn scratch() -> &'static Path {
    scratch_dir::scratch(PREFIX)
}

fuzz_target!(|layout: Layout| {
    if std::env::var_os("LAYOUT_WALK_DEBUG").is_some() {
        eprintln!("LAYOUT {} blobs", layout.blobs.len());
    }
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{PREFIX}{}-", std::process::id()))
        .tempdir_in(scratch())
        .expect("scratch directory");
    let l = tmp.path().join("layout");
    let cas = DirCas::create(&l).expect("create layout");
    // blobs are written directly (a long chain is thousands of them; the
    // driver's write path, with its temporaries and fsyncs, is not what is
    // tested here)
    for b in &layout.blobs {
        let digest = Digest::sha256_of(b);
        std::fs::write(l.join("blobs/sha256").join(digest.hex()), b).expect("write blob");
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media::INDEX,
        "manifests": layout.roots,
    });
    let raw = cas.read_index_raw().expect("read index.json");
    cas.swap_index_raw(&raw, &serde_json::to_vec(&index).expect("json"))
        .expect("write index.json");

    let mut tags: Vec<String> = layout
        .roots
        .iter()
        .filter_map(|r| r["annotations"][media::ANNOTATION_REF_NAME].as_str())
        .map(str::to_string)
        .collect();
    tags.sort();
    tags.dedup();

    let resolved: Vec<_> = tags
        .iter()
        .map(|t| {
            let _ = refs::resolve_all(&cas, t);
            refs::resolve(&cas, t, None).ok()
        })
        .collect();
    let _ = refs::list_tags(&cas);
    let _ = check::verify_layout(&cas, &mut rumoci::rootfs::check_layer);
    for (i, path) in resolved.iter().enumerate() {
        if let Some(path) = path {
            let bundle = tmp.path().join(format!("bundle-{i}"));
            let opts = ExtractOptions {
                rootless: true,
                ..ExtractOptions::default()
            };
            let _ = rumoci::bundle::unpack::unpack_bundle(&cas, path, &bundle, opts, None);
        }
    }
    if gc::gc(&cas).is_ok() {
        for (tag, before) in tags.iter().zip(&resolved) {
            if let Some(before) = before {
                let after = refs::resolve(&cas, tag, None);
                assert!(
                    after.as_ref().ok() == Some(before),
                    "gc broke tag {tag:?}: {after:?}"
                );
            }
        }
    }
});
