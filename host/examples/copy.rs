//! Copy an image between stores with rumoci's library: from a plain OCI
//! layout to a second layout, or to a store behind a content-store plugin
//! (`PATH.wasm[,dir=…]`, the `--driver` grammar), then check the copy.
//!
//! ```sh
//! cargo run -p rumoci --example copy -- SRC-LAYOUT TAG DST [DRIVER-SPEC]
//! ```
//!
//! Exits non-zero if the copy fails or differs from its source.

use rumoci::image::{Drivers, Open, Store, copy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [src, tag, dst, rest @ ..] = args.as_slice() else {
        return Err("usage: copy SRC-LAYOUT TAG DST [DRIVER-SPEC]".into());
    };
    let from = Store::open(src)?;
    let drivers = Drivers::parse(rest)?; // none: the built-in layout driver
    let to = Store::open_with(&drivers, dst, Open::OrCreate)?;
    let mut blobs = 0;
    let stats = copy(&from, tag, &to, tag, &Default::default(), &mut |_, _| {
        blobs += 1
    })?;
    let want = from.resolve(tag, None)?;
    let got = to.resolve(tag, None)?;
    if want.target().digest != got.target().digest {
        return Err(format!(
            "{dst}:{tag} names {}, not {}",
            got.target().digest,
            want.target().digest
        )
        .into());
    }
    let problems = to.verify();
    if !problems.is_empty() {
        return Err(format!("{dst}: {} problems after the copy", problems.len()).into());
    }
    // a second copy finds everything there
    let again = copy(&from, tag, &to, tag, &Default::default(), &mut |_, _| {})?;
    if again.copied != 0 {
        return Err(format!("second copy copied {} blobs again", again.copied).into());
    }
    println!(
        "copied {src}:{tag} to {dst}:{tag}: {} blobs ({} bytes), {blobs} seen",
        stats.copied, stats.bytes
    );
    Ok(())
}
