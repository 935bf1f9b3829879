//! A build step on rumoci's library (a short host/examples/build.rs):
//! unpack an image (through a layer-store plugin when one is given and the
//! `wasm` feature is on), write a file, repack, check the result.
//!
//! ```sh
//! rumoci-builder-check LAYOUT SRC-TAG DST-TAG WORK-DIR [PLUGIN.wasm[,dir=STORE]]
//! ```

use rumoci::image::{ExtractOptions, HistoryEntry, RepackOptions, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [layout, from, to, work, plugin @ ..] = args.as_slice() else {
        return Err("usage: LAYOUT SRC-TAG DST-TAG WORK-DIR [PLUGIN.wasm[,dir=STORE]]".into());
    };
    let bundle = std::path::Path::new(work).join("bundle");
    let store = Store::open(layout)?;
    #[cfg(feature = "wasm")]
    let layers = rumoci::image::Drivers::parse(plugin)?.layer_store()?;
    #[cfg(not(feature = "wasm"))]
    let layers: Option<Box<dyn rumoci::layer_store::LayerStore>> = match plugin {
        [] => None,
        _ => return Err("plugins need the `wasm` feature".into()),
    };
    let opts = ExtractOptions::rootless();
    store.unpack(from, None, &bundle, opts, layers.as_deref())?;
    std::fs::write(bundle.join("rootfs/hello"), "built\n")?;
    let lock = store.lock()?;
    let repack = RepackOptions {
        history: Some(HistoryEntry::new("write /hello")),
        ..RepackOptions::default()
    };
    store.repack(&lock, &bundle, to, &repack)?;
    drop(lock);
    let problems = store.verify();
    if !problems.is_empty() {
        return Err(format!("{layout}: {} problems after the build", problems.len()).into());
    }
    println!(
        "built {layout}:{to} ({})",
        store.resolve(to, None)?.target().digest
    );
    Ok(())
}
