//! A build step on rumoci's library, as a builder (stacker, a
//! Dockerfile-lite) runs it: unpack an image (through a layer-cache plugin
//! when one is given), write a file, repack with a history entry, set an
//! environment variable and a label, tag the result.
//!
//! ```sh
//! cargo run -p rumoci --example build -- LAYOUT SRC-TAG DST-TAG [LAYER-CACHE.wasm[,dir=STORE]]
//! ```
//!
//! Exits non-zero if any step fails or the result is not what was built.

use rumoci::image::{ConfigChange, Drivers, ExtractOptions, HistoryEntry, RepackOptions, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [layout, from, to, rest @ ..] = args.as_slice() else {
        return Err("usage: build LAYOUT SRC-TAG DST-TAG [LAYER-CACHE.wasm[,dir=STORE]]".into());
    };
    let work = tempfile::tempdir()?;
    let bundle = work.path().join("bundle");

    // --- the build step ---
    let store = Store::open(layout)?;
    let cache = Drivers::parse(rest)?.layer_store()?; // None: extract in place
    let opts = ExtractOptions::rootless();
    store.unpack(from, None, &bundle, opts, cache.as_deref())?;
    std::fs::write(bundle.join("rootfs/hello"), "built by rumoci\n")?;
    let lock = store.lock()?; // gc waits while we write
    let repack = RepackOptions {
        history: Some(HistoryEntry::new("write /hello")),
        ..RepackOptions::default()
    };
    store.repack(&lock, &bundle, to, &repack)?;
    let change = ConfigChange {
        env: vec![("GREETING".into(), "hello".into())],
        labels: vec![("org.example.step".into(), "build".into())],
        history: Some(HistoryEntry::new("set GREETING and a label")),
        ..ConfigChange::default()
    };
    store.configure(&lock, to, None, to, &change)?;
    drop(lock);
    // --- end of the build step ---

    // check what was built
    let config = store.config(to, None)?;
    if config.history.len() != store.config(from, None)?.history.len() + 2 {
        return Err(format!("{to}: expected two more history entries than {from}").into());
    }
    if !config.config.env.iter().any(|e| e == "GREETING=hello")
        || config
            .config
            .labels
            .get("org.example.step")
            .map(String::as_str)
            != Some("build")
    {
        return Err(format!("{to}: env or label missing: {:?}", config.config).into());
    }
    let problems = store.verify();
    if !problems.is_empty() {
        return Err(format!("{layout}: {} problems after the build", problems.len()).into());
    }
    let check = work.path().join("check");
    store.unpack(to, None, &check, ExtractOptions::rootless(), None)?;
    if std::fs::read_to_string(check.join("rootfs/hello"))? != "built by rumoci\n" {
        return Err("the written file is not in the new image".into());
    }
    println!(
        "built {layout}:{to} from {layout}:{from}{} ({})",
        if cache.is_some() {
            " through the layer cache"
        } else {
            ""
        },
        store.resolve(to, None)?.target().digest
    );
    Ok(())
}
