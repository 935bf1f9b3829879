//! The process-wide engine, its epoch ticker and the compiled-component
//! cache.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use super::DriverError;

/// One epoch tick.
pub(crate) const TICK: Duration = Duration::from_millis(10);

static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();

/// The process-wide engine (created on first use, with its ticker thread).
pub(crate) fn engine() -> Result<&'static Engine, DriverError> {
    let res = ENGINE.get_or_init(|| {
        let mut cfg = Config::new();
        cfg.wasm_component_model(true)
            .epoch_interruption(true)
            .parallel_compilation(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&cfg).map_err(|e| format!("{e:#}"))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("rumoci-wasm-epoch".into())
            .spawn(move || {
                while let Some(e) = weak.upgrade() {
                    e.increment_epoch();
                    drop(e);
                    std::thread::sleep(TICK);
                }
            })
            .map_err(|e| format!("epoch ticker: {e}"))?;
        Ok(engine)
    });
    res.as_ref().map_err(|reason| DriverError::Load {
        plugin: "(engine)".into(),
        reason: reason.clone(),
    })
}

/// Where compiled components are cached: `$XDG_CACHE_HOME/rumoci/wasm`,
/// else `~/.cache/rumoci/wasm`; `None` if neither variable is set.
pub fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("rumoci").join("wasm"))
}

fn engine_key(engine: &Engine) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    env!("CARGO_PKG_VERSION").hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Load (from the cache if possible) the component in `wasm` (its bytes).
pub(crate) fn load_component(
    engine: &Engine,
    plugin: &str,
    wasm: &[u8],
) -> Result<Component, DriverError> {
    let key = format!(
        "{}-{}",
        hex::encode(Sha256::digest(wasm)),
        engine_key(engine)
    );
    let cached = cache_dir().map(|d| d.join(format!("{key}.cwasm")));
    if let Some(path) = &cached
        && path.is_file()
    {
        match deserialize_cached(engine, path) {
            Ok(c) => {
                tracing::debug!("driver {plugin}: loaded from the compiled cache");
                return Ok(c);
            }
            Err(e) => {
                tracing::debug!(
                    "driver {plugin}: ignoring cached {}: {e:#}",
                    crate::show::name(&path)
                );
                let _ = std::fs::remove_file(path);
            }
        }
    }
    tracing::debug!("driver {plugin}: compiling");
    let component = Component::from_binary(engine, wasm).map_err(|e| DriverError::Load {
        plugin: plugin.to_string(),
        reason: not_a_component(wasm, &e),
    })?;
    if let Some(path) = &cached
        && let Err(e) = store_cached(&component, path)
    {
        tracing::debug!(
            "driver {plugin}: cannot cache {}: {e}",
            crate::show::name(&path)
        );
    }
    Ok(component)
}

/// Why `wasm` did not compile, in one line: not WebAssembly at all, a
/// core module where a component is needed, or the first line of the
/// parser's message (never the bytes it expected).
fn not_a_component(wasm: &[u8], e: &wasmtime::Error) -> String {
    const MAGIC: &[u8] = b"\0asm";
    match wasm.get(..8) {
        Some(h) if !h.starts_with(MAGIC) => "not a WebAssembly file (no \\0asm header)".to_string(),
        None if !wasm.starts_with(MAGIC) => "not a WebAssembly file (too short)".to_string(),
        Some([_, _, _, _, 1, 0, 0, 0]) => {
            "a core WebAssembly module, not a component (build the plugin for wasm32-wasip2)"
                .to_string()
        }
        _ => {
            let text = format!("{e:#}");
            let first = text.lines().next().unwrap_or_default();
            format!(
                "not a valid component: {}",
                first.trim_end_matches(['-', ' ', '=', '['])
            )
        }
    }
}

/// Deserialize a cached compiled component.
#[allow(unsafe_code)]
fn deserialize_cached(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `deserialize_file` trusts the file to be a component compiled
    // by a compatible wasmtime. Files in the cache directory are written only
    // by `store_cached` (atomically, via rename) from `Component::serialize`,
    // and are named by the engine's precompile-compatibility hash, so an
    // incompatible engine never picks them up; wasmtime also checks the
    // header/version and rejects mismatches with an error.
    unsafe { Component::deserialize_file(engine, path) }
}

fn store_cached(component: &Component, path: &Path) -> std::io::Result<()> {
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("cache path has no parent"))?;
    std::fs::create_dir_all(dir)?;
    crate::fs::atomic::write(path, &bytes)
}
