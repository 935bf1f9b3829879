//! One loaded plugin: its component, store, limits and instance.

use std::path::{Path, PathBuf};
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreLimitsBuilder};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::bindings::rumoci::driver::types::Error as WitError;
use super::bindings::{CasDriver, CasDriverPre};
use super::engine::TICK;
use super::layer_bindings::{LayerDriver, LayerDriverPre};
use super::link::{Linked, link, load_err};
use super::state::HostState;
use super::{DriverError, DriverSpec};

/// The guest path of the store directory inside the sandbox.
const GUEST_STORE: &str = "/store";

/// What a driver says about itself (`meta.info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The driver's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its capabilities, e.g. `cas`, `cas.init`, `cas.open-stream`.
    pub capabilities: Vec<String>,
}

/// A plugin's error message with the paths it sees (beneath `/store`, its
/// one preopened directory) shown as the host paths they are (beneath
/// `dir`), so that users can find the files named.
fn host_paths(e: WitError, dir: &Path) -> WitError {
    let host = dir.display().to_string();
    let fix = |m: String| -> String {
        let mut out = String::with_capacity(m.len());
        let mut rest = m.as_str();
        while let Some(at) = rest.find(GUEST_STORE) {
            let after = &rest[at + GUEST_STORE.len()..];
            // `/store` at a word's start, and followed by `/` or a word's end
            let starts = rest[..at]
                .chars()
                .next_back()
                .is_none_or(|c| c.is_whitespace() || "\"'(:=".contains(c));
            let ends = after
                .chars()
                .next()
                .is_none_or(|c| c == '/' || c.is_whitespace() || "\"'),:".contains(c));
            out.push_str(&rest[..at]);
            out.push_str(if starts && ends { &host } else { GUEST_STORE });
            rest = after;
        }
        out.push_str(rest);
        out
    };
    match e {
        WitError::NotFound(m) => WitError::NotFound(fix(m)),
        WitError::AlreadyExists(m) => WitError::AlreadyExists(fix(m)),
        WitError::InvalidArgument(m) => WitError::InvalidArgument(fix(m)),
        WitError::FailedPrecondition(m) => WitError::FailedPrecondition(fix(m)),
        WitError::Unsupported(m) => WitError::Unsupported(fix(m)),
        WitError::Integrity(m) => WitError::Integrity(fix(m)),
        WitError::Io(m) => WitError::Io(fix(m)),
        WitError::Other(m) => WitError::Other(fix(m)),
    }
}

/// A world of the contract the host can instantiate a plugin as: the
/// generated bindings of `cas-driver` or `layer-driver`.
pub trait World: Sized + Send + 'static {
    /// The pre-instantiated component for this world.
    #[doc(hidden)]
    type Pre: Send + Sync;
    /// The world's name, for errors.
    #[doc(hidden)]
    const NAME: &'static str;
    /// Check that the component exports this world.
    #[doc(hidden)]
    fn pre(p: wasmtime::component::InstancePre<HostState>) -> wasmtime::Result<Self::Pre>;
    /// Instantiate.
    #[doc(hidden)]
    fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self>;
    /// The engine of a pre-instantiated component.
    #[doc(hidden)]
    fn engine(pre: &Self::Pre) -> &wasmtime::Engine;
    /// Call `meta.info`.
    #[doc(hidden)]
    fn info(&self, store: &mut Store<HostState>) -> wasmtime::Result<PluginInfo>;
}

/// `World` for a generated world type: the two differ only in names.
macro_rules! world {
    ($ty:ty, $pre:ident, $name:literal) => {
        impl World for $ty {
            type Pre = $pre<HostState>;
            const NAME: &'static str = $name;
            fn pre(p: wasmtime::component::InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
                $pre::new(p)
            }
            fn instantiate(
                pre: &Self::Pre,
                store: &mut Store<HostState>,
            ) -> wasmtime::Result<Self> {
                pre.instantiate(store)
            }
            fn engine(pre: &Self::Pre) -> &wasmtime::Engine {
                pre.engine()
            }
            fn info(&self, store: &mut Store<HostState>) -> wasmtime::Result<PluginInfo> {
                let i = self.rumoci_driver_meta().call_info(store)?;
                Ok(PluginInfo {
                    name: i.name,
                    version: i.version,
                    capabilities: i.capabilities,
                })
            }
        }
    };
}

world!(CasDriver, CasDriverPre, "cas-driver");
world!(LayerDriver, LayerDriverPre, "layer-driver");

pub(crate) struct Instance<W> {
    pub(crate) store: Store<HostState>,
    pub(crate) bindings: W,
    /// The plugin's stderr (an in-memory file): where a Rust plugin's panic
    /// message goes, read back when a call traps.
    stderr: Option<std::fs::File>,
}

/// Most of a plugin's stderr kept between calls; beyond it, the file is
/// emptied after the call.
const MAX_STDERR: u64 = 64 << 10;

/// An in-memory, append-only file for a plugin's stderr.
fn stderr_file() -> Option<std::fs::File> {
    let fd =
        rustix::fs::memfd_create("rumoci-plugin-stderr", rustix::fs::MemfdFlags::CLOEXEC).ok()?;
    let fl = rustix::fs::fcntl_getfl(&fd).ok()?;
    rustix::fs::fcntl_setfl(&fd, fl | rustix::fs::OFlags::APPEND).ok()?;
    Some(std::fs::File::from(fd))
}

/// The panic message a Rust plugin wrote to `stderr` (`panicked at
/// FILE:LINE:COL:` and the message), on one line and shortened.
fn panic_message(stderr: &std::fs::File) -> Option<String> {
    use std::os::unix::fs::FileExt;
    let len = stderr.metadata().ok()?.len().min(MAX_STDERR * 2);
    let mut buf = vec![0u8; usize::try_from(len).ok()?];
    let n = stderr.read_at(&mut buf, 0).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    let at = text.rfind("panicked at ")?;
    let rest = &text[at..];
    let mut lines = rest.lines();
    let head = lines.next()?.trim_end_matches(':');
    let msg: Vec<&str> = lines
        .take_while(|l| !l.starts_with("note: ") && !l.starts_with("stack backtrace"))
        .collect();
    let mut out = format!("{head}: {}", msg.join(" "));
    if out.len() > 1000 {
        let mut cut = 1000;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    Some(out)
}

/// What the plugin `wasm` says about itself (`meta.info`): loaded once, as
/// the world it exports (the content store's when it exports both).
pub fn plugin_info(wasm: &Path, spec: &DriverSpec) -> Result<PluginInfo, DriverError> {
    linked_info(&*link(wasm)?, spec)
}

/// What the linked plugin says about itself, from one instance (without a
/// store directory) of the world it exports.
pub fn linked_info(linked: &Linked, spec: &DriverSpec) -> Result<PluginInfo, DriverError> {
    if linked.exports_layer_store() && !linked.exports_cas() {
        Ok(Plugin::<LayerDriver>::build(linked, spec, None, false)?
            .info()
            .clone())
    } else {
        Ok(Plugin::<CasDriver>::build(linked, spec, None, false)?
            .info()
            .clone())
    }
}

/// A loaded plugin: compiled component, limits, and a live instance that is
/// re-created after a trap. `W` is the world it is used as (the content
/// store by default).
pub struct Plugin<W: World = CasDriver> {
    label: String,
    pre: W::Pre,
    dir: Option<PathBuf>,
    timeout: Duration,
    memory: u64,
    options: Vec<(String, String)>,
    /// `url=`: the network the plugin may send requests to.
    net: Option<std::sync::Arc<super::net::Network>>,
    instance: Option<Instance<W>>,
    generation: u64,
    info: PluginInfo,
    /// What `host.wanted-refs` answers (see [`Plugin::want_refs`]).
    wanted_refs: Option<Vec<String>>,
}

impl<W: World> std::fmt::Debug for Plugin<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("label", &self.label)
            .field("dir", &self.dir)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl<W: World> Plugin<W> {
    /// Load the plugin file `wasm` with the settings of `spec`, preopening
    /// `dir` (if any) as its store directory, and read its `meta.info`.
    pub fn load(
        wasm: &Path,
        spec: &DriverSpec,
        dir: Option<&Path>,
    ) -> Result<Plugin<W>, DriverError> {
        Plugin::with(&*link(wasm)?, spec, dir)
    }

    /// The plugin `linked` as world `W`, with the settings of `spec`,
    /// preopening `dir` (if any) as its store directory; instantiated once
    /// to read its `meta.info` (that instance serves the calls that follow).
    pub fn with(
        linked: &Linked,
        spec: &DriverSpec,
        dir: Option<&Path>,
    ) -> Result<Plugin<W>, DriverError> {
        Plugin::build(linked, spec, dir, true)
    }

    /// [`Plugin::with`]; without `network`, the plugin reaches no network
    /// (an instance only asked for its `meta.info`: the network's set-up,
    /// and its warnings, are for the store).
    fn build(
        linked: &Linked,
        spec: &DriverSpec,
        dir: Option<&Path>,
        network: bool,
    ) -> Result<Plugin<W>, DriverError> {
        let label = linked.label().to_string();
        let pre = W::pre(linked.pre()).map_err(|e| {
            load_err(
                &label,
                format!("does not export the {} world: {e:#}", W::NAME),
            )
        })?;
        if let Some(d) = dir
            && !d.is_dir()
        {
            let why = if std::fs::symlink_metadata(d).is_err() {
                "does not exist (create a store with `rumoci --driver PLUGIN init --layout DIR`, or give dir= an existing one)"
            } else {
                "is not a directory"
            };
            return Err(load_err(
                &label,
                format!("store directory {} {why}", crate::show::name(&d)),
            ));
        }
        let mut p = Plugin {
            label: label.clone(),
            pre,
            dir: dir.map(Path::to_path_buf),
            timeout: spec.timeout,
            memory: spec.memory,
            options: spec.plugin_options(),
            // set up once `meta.info` says whether the plugin wants its
            // requests signed (that call needs no network)
            net: None,
            instance: None,
            generation: 0,
            wanted_refs: None,
            info: PluginInfo {
                name: label.clone(),
                version: String::new(),
                capabilities: Vec::new(),
            },
        };
        let info = p.call_raw("meta.info", |store, b: &W| b.info(store))?;
        let valid = |s: &str| !s.is_empty() && s.len() <= 128 && !s.chars().any(char::is_control);
        if !valid(&info.name) || !valid(&info.version) || info.capabilities.len() > 256 {
            return Err(DriverError::Protocol {
                plugin: label,
                op: "meta.info".into(),
                reason: "invalid name, version or capabilities".into(),
            });
        }
        p.label = format!("{} ({label})", info.name);
        if let Some(n) = spec.net.as_ref().filter(|_| network) {
            let sigv4 = info
                .capabilities
                .iter()
                .any(|c| c == super::net::SIGV4_CAPABILITY);
            p.net = Some(super::net::Network::new(&label, n, spec.timeout, sigv4)?);
        }
        // the instance that answered `meta.info` logs under the new label
        // too, and reaches the network from now on
        if let Some(inst) = p.instance.as_mut() {
            inst.store.data_mut().plugin = p.label.clone();
            inst.store.data_mut().hooks.plugin = p.label.clone();
            inst.store.data_mut().hooks.net = p.net.clone();
        }
        for c in &info.capabilities {
            if !super::CAPABILITIES.iter().any(|(known, _)| known == c) {
                tracing::warn!(
                    "driver {}: unknown capability {c:?} ignored (known: {})",
                    p.label,
                    super::CAPABILITIES
                        .iter()
                        .map(|(k, _)| *k)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        p.info = info;
        Ok(p)
    }

    /// What the plugin says about itself.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// How errors name this plugin: `NAME (FILE)`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether the plugin was granted a network (`url=`).
    pub fn networked(&self) -> bool {
        self.net.is_some()
    }

    /// Whether the plugin declares `capability`.
    pub fn has(&self, capability: &str) -> bool {
        self.info.capabilities.iter().any(|c| c == capability)
    }

    /// From now on, `host.wanted-refs` answers `refs`: the command reads
    /// only these refs of `index.json` and never writes it, so the plugin
    /// may read a partial index (and must then refuse `write-index`).
    /// Irrevocable: a later call adds its refs to those already set (the
    /// index stays partial); an instance re-created after a trap answers
    /// the same.
    pub fn want_refs(&mut self, refs: Vec<String>) {
        let refs = match self.wanted_refs.take() {
            Some(mut had) => {
                for r in refs {
                    if !had.contains(&r) {
                        had.push(r);
                    }
                }
                had
            }
            None => refs,
        };
        if let Some(inst) = self.instance.as_mut() {
            inst.store.data_mut().wanted_refs = Some(refs.clone());
        }
        self.wanted_refs = Some(refs);
    }

    /// The refs set by [`Plugin::want_refs`]: `Some` means the index this
    /// instance reads may be partial and must never be written.
    pub fn wanted_refs(&self) -> Option<&[String]> {
        self.wanted_refs.as_deref()
    }

    /// Incremented each time the instance is dropped after a trap; resources
    /// of an older generation are dead.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn instantiate(&self) -> Result<Instance<W>, DriverError> {
        tracing::debug!("driver {}: instantiated", self.label);
        let mut b = WasiCtxBuilder::new();
        b.allow_blocking_current_thread(true);
        let stderr = stderr_file();
        // no sockets: the network is wasi:http through the host's hooks
        b.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Some(d) = &self.dir {
            b.preopened_dir(d, GUEST_STORE, FsPerms::ReadWrite)
                .map_err(|e| {
                    load_err(
                        &self.label,
                        format!("preopen {}: {e:#}", crate::show::name(&d)),
                    )
                })?;
        }
        let limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(self.memory).unwrap_or(usize::MAX))
            .table_elements(1 << 20)
            .instances(64)
            .tables(64)
            .memories(16)
            .trap_on_grow_failure(true)
            .build();
        let state = HostState {
            wasi: {
                if let Some(f) = stderr.as_ref().and_then(|f| f.try_clone().ok()) {
                    b.stderr(wasmtime_wasi::cli::OutputFile::new(f));
                }
                b.build()
            },
            table: ResourceTable::new(),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            hooks: super::net::Hooks {
                plugin: self.label.clone(),
                net: self.net.clone(),
            },
            limits,
            plugin: self.label.clone(),
            options: self.options.clone(),
            create_media_type: None,
            wanted_refs: self.wanted_refs.clone(),
            store: match &self.dir {
                Some(d) => Some(
                    rustix::fs::open(
                        d,
                        rustix::fs::OFlags::PATH
                            | rustix::fs::OFlags::DIRECTORY
                            | rustix::fs::OFlags::CLOEXEC,
                        rustix::fs::Mode::empty(),
                    )
                    .map_err(|e| load_err(&self.label, format!("open {}: {e}", d.display())))?,
                ),
                None => None,
            },
        };
        let mut store = Store::new(W::engine(&self.pre), state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(self.ticks());
        let bindings = W::instantiate(&self.pre, &mut store).map_err(|e| {
            load_err(
                &self.label,
                format!("instantiation failed: {}", trap_reason(&e, self)),
            )
        })?;
        Ok(Instance {
            store,
            bindings,
            stderr,
        })
    }

    fn ticks(&self) -> u64 {
        (self.timeout.as_millis() / TICK.as_millis()).max(1) as u64 + 1
    }

    /// The live instance (instantiated if needed).
    pub(crate) fn instance(&mut self) -> Result<&mut Instance<W>, DriverError> {
        if self.instance.is_none() {
            self.instance = Some(self.instantiate()?);
        }
        self.instance
            .as_mut()
            .ok_or_else(|| load_err("(internal)", "no instance"))
    }

    /// Run one guest call with a fresh deadline; a trap drops the instance.
    pub fn call_raw<R>(
        &mut self,
        op: &str,
        f: impl FnOnce(&mut Store<HostState>, &W) -> wasmtime::Result<R>,
    ) -> Result<R, DriverError> {
        let ticks = self.ticks();
        if let Some(n) = &self.net {
            n.start_call();
        }
        let inst = self.instance()?;
        inst.store.set_epoch_deadline(ticks);
        let res = f(&mut inst.store, &inst.bindings);
        let panicked = match (&res, &inst.stderr) {
            (Err(_), Some(f)) => panic_message(f),
            (Ok(_), Some(f)) => {
                if f.metadata().is_ok_and(|m| m.len() > MAX_STDERR) {
                    let _ = f.set_len(0);
                }
                None
            }
            _ => None,
        };
        match res {
            Ok(r) => Ok(r),
            Err(e) => {
                let mut reason = trap_reason(&e, self);
                if let Some(p) = panicked {
                    reason = format!("{reason} (the plugin {p})");
                }
                self.kill();
                Err(DriverError::Trap {
                    plugin: self.label.clone(),
                    op: op.to_string(),
                    reason,
                })
            }
        }
    }

    /// [`Plugin::call_raw`] for calls returning `result<_, error>`.
    pub fn call<R>(
        &mut self,
        op: &str,
        f: impl FnOnce(&mut Store<HostState>, &W) -> wasmtime::Result<Result<R, WitError>>,
    ) -> Result<R, DriverError> {
        match self.call_raw(op, f)? {
            Ok(r) => Ok(r),
            Err(error) => Err(DriverError::Plugin {
                plugin: self.label.clone(),
                op: op.to_string(),
                error: match &self.dir {
                    Some(d) => host_paths(error, d),
                    None => error,
                },
            }),
        }
    }

    /// Drop the live instance as a killed process would lose it: no
    /// resource destructor runs in the guest, files it left stay. The next
    /// call instantiates afresh. (The conformance runner's "killed writer"
    /// checks.)
    pub fn kill(&mut self) {
        self.instance = None;
        self.generation += 1;
    }

    /// Drop a guest resource handle of the live instance.
    pub fn drop_resource(&mut self, handle: wasmtime::component::ResourceAny) {
        if let Ok(inst) = self.instance() {
            let _ = handle.resource_drop(&mut inst.store);
        }
    }

    /// A protocol-violation error for `op`.
    pub(crate) fn protocol(&self, op: &str, reason: impl Into<String>) -> DriverError {
        DriverError::Protocol {
            plugin: self.label.clone(),
            op: op.to_string(),
            reason: reason.into(),
        }
    }
}

fn trap_reason<W: World>(e: &wasmtime::Error, p: &Plugin<W>) -> String {
    if let Some(t) = e.downcast_ref::<wasmtime::Trap>() {
        if *t == wasmtime::Trap::Interrupt {
            return format!("deadline of {:?} per call exceeded", p.timeout);
        }
        return t.to_string();
    }
    let text = format!("{e:#}");
    if text.contains("forcing trap when growing memory")
        || text.contains("memory") && text.contains("limit")
    {
        return format!("memory limit of {} bytes exceeded", p.memory);
    }
    text.lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_paths_are_shown_as_host_paths() {
        let e = host_paths(
            WitError::Io(
                "open /store/blobs/sha256/ab: denied; /storeroom and /x/store kept; (/store)"
                    .into(),
            ),
            Path::new("/var/lib/cas"),
        );
        let WitError::Io(m) = e else {
            panic!("kind changed: {e:?}");
        };
        assert_eq!(
            m,
            "open /var/lib/cas/blobs/sha256/ab: denied; /storeroom and /x/store kept; (/var/lib/cas)"
        );
    }
}
