//! `stat`: what an image manifest, its config and its history hold, in
//! umoci 0.6's two output forms.
//!
//! * [`ManifestStat::to_json`] is umoci's `--json` document: `manifest`
//!   and `config` each with their `descriptor` and the `blob` as stored
//!   (compacted), and `history` entries with their `layer` descriptor and
//!   `diff_id`, the history fields following Go's `omitempty`.
//! * [`ManifestStat::format_text`] is umoci's text form, byte for byte
//!   (nested `Descriptor:` blocks, `== MANIFEST ==`, `== CONFIG ==`,
//!   `== HISTORY ==` as a tab-aligned table).
//!
//! OCI 1.1 artifacts are shown too: a manifest whose config is the empty
//! descriptor (`application/vnd.oci.empty.v1+json`) gets a config section
//! with only the descriptor and no history; one whose config has another
//! media type gets neither (umoci does not read blobs of unknown types).

pub mod gofmt;

use std::io::Write;

use serde_json::{Map, Value};

use crate::cas::{Cas, CasError, ext};
use crate::oci::{self, Blob, Descriptor, Digest, History, Image, Manifest, Platform, media};

use gofmt::{human_size, quote, quote_if_needed};

/// Why an image could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum StatError {
    /// Reading or parsing a blob failed.
    #[error(transparent)]
    Cas(#[from] CasError),
    /// The descriptor does not lead to an image manifest.
    #[error("cannot stat {digest}: media type {media_type} is not an image manifest")]
    NotAManifest {
        /// The descriptor's digest.
        digest: Digest,
        /// Its media type.
        media_type: String,
    },
    /// Serialising the JSON form failed.
    #[error("encoding stat: {0}")]
    Json(#[from] serde_json::Error),
}

/// The manifest: its descriptor, parsed content and stored bytes.
#[derive(Debug, Clone)]
pub struct ManifestInfo {
    /// The descriptor that led to the manifest (with its annotations,
    /// e.g. the tag).
    pub descriptor: Descriptor,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The blob as stored.
    pub raw: Vec<u8>,
}

/// The config: its descriptor and, when it is an image config, its
/// content.
#[derive(Debug, Clone)]
pub struct ConfigInfo {
    /// The manifest's config descriptor.
    pub descriptor: Descriptor,
    /// The parsed image config (`None` for the empty config of an
    /// artifact).
    pub image: Option<Image>,
    /// The blob as stored (or embedded in the descriptor).
    pub raw: Vec<u8>,
}

/// One history entry with the layer it made.
#[derive(Debug, Clone)]
pub struct HistoryInfo {
    /// The layer (`None` for an `empty_layer` entry, or when the manifest
    /// has fewer layers than the history claims).
    pub layer: Option<Descriptor>,
    /// The layer's diff_id (`None` likewise).
    pub diff_id: Option<Digest>,
    /// The entry itself.
    pub history: History,
}

/// Everything `stat` shows about one image manifest.
#[derive(Debug, Clone)]
pub struct ManifestStat {
    /// The manifest.
    pub manifest: ManifestInfo,
    /// The config, when it is an image config or the empty descriptor.
    pub config: Option<ConfigInfo>,
    /// The history, when the config is an image config.
    pub history: Option<Vec<HistoryInfo>>,
}

/// Gather the stat information of the manifest `desc` points to (OCI, or
/// Docker schema 2 with its Docker config).
pub fn stat(cas: &dyn Cas, desc: &Descriptor) -> Result<ManifestStat, StatError> {
    if !media::is_manifest(&desc.media_type) {
        return Err(StatError::NotAManifest {
            digest: desc.digest.clone(),
            media_type: desc.media_type.clone(),
        });
    }
    let raw = ext::read_bytes(cas, desc)?;
    let manifest = match oci::parse_blob(&desc.media_type, &raw) {
        Ok(Blob::Manifest(m)) => m,
        Ok(_) => {
            return Err(StatError::NotAManifest {
                digest: desc.digest.clone(),
                media_type: desc.media_type.clone(),
            });
        }
        Err(source) => {
            return Err(CasError::Document {
                what: format!("manifest {}", desc.digest),
                source,
            }
            .into());
        }
    };
    let cdesc = manifest.config.clone();
    let (config, history) = match media::kind(&cdesc.media_type) {
        media::Kind::Config => {
            let craw = ext::read_bytes(cas, &cdesc)?;
            let image = oci::parse_config(&craw).map_err(|source| CasError::Document {
                what: format!("config {}", cdesc.digest),
                source,
            })?;
            let history = history(&manifest, &image);
            (
                Some(ConfigInfo {
                    descriptor: cdesc,
                    image: Some(image),
                    raw: craw,
                }),
                Some(history),
            )
        }
        media::Kind::EmptyJson => {
            let craw = ext::read_bytes(cas, &cdesc)?;
            oci::parse_blob(media::EMPTY_JSON, &craw).map_err(|source| CasError::Document {
                what: format!("config {}", cdesc.digest),
                source,
            })?;
            (
                Some(ConfigInfo {
                    descriptor: cdesc,
                    image: None,
                    raw: craw,
                }),
                None,
            )
        }
        _ => {
            // umoci opens the blob (so it must exist) but does not read it;
            // embedded data is shown as the raw blob
            let mut r = ext::open_verified(cas, &cdesc)?;
            let config = match &cdesc.data {
                Some(_) => {
                    let mut checked = Vec::new();
                    std::io::Read::read_to_end(&mut r, &mut checked).map_err(|e| {
                        CasError::io(format!("embedded data of {}", cdesc.digest), e)
                    })?;
                    Some(ConfigInfo {
                        descriptor: cdesc.clone(),
                        image: None,
                        raw: checked,
                    })
                }
                None => None,
            };
            (config, None)
        }
    };
    Ok(ManifestStat {
        manifest: ManifestInfo {
            descriptor: desc.clone(),
            manifest,
            raw,
        },
        config,
        history,
    })
}

fn history(m: &Manifest, c: &Image) -> Vec<HistoryInfo> {
    let mut layer = 0;
    c.history
        .iter()
        .map(|h| {
            let (desc, diff_id) = if h.empty_layer {
                (None, None)
            } else {
                let i = layer;
                layer += 1;
                (m.layers.get(i).cloned(), c.rootfs.diff_ids.get(i).cloned())
            };
            HistoryInfo {
                layer: desc,
                diff_id,
                history: h.clone(),
            }
        })
        .collect()
}

/// A descriptor as Go's `ispec.Descriptor` marshals it (fields rumoci
/// keeps but Go does not know are dropped).
fn go_descriptor(d: &Descriptor) -> Result<Value, serde_json::Error> {
    let mut d = d.clone();
    d.extra.clear();
    if let Some(p) = d.platform.as_mut() {
        p.extra.clear();
    }
    serde_json::to_value(&d)
}

/// A time as Go re-marshals a parsed `time.Time` (kept as it is when it
/// does not parse: Go would have refused the blob).
fn go_time(s: &str) -> String {
    oci::gotime::normalize_rfc3339(s).unwrap_or_else(|_| s.to_string())
}

impl ManifestStat {
    /// umoci's `stat --json` document, as Go's `json.Encoder` writes it
    /// (compact, HTML-escaped, with a final newline). The blobs are
    /// written as stored (compacted, like a Go `json.RawMessage`), so
    /// numbers and key order stay exactly as in the blob.
    pub fn to_json(&self) -> Result<Vec<u8>, StatError> {
        fn go_json(v: &Value) -> Result<Vec<u8>, serde_json::Error> {
            let mut b = oci::to_go_json(v)?;
            b.pop(); // the encoder's newline
            Ok(b)
        }
        fn blob(out: &mut Vec<u8>, desc: &Descriptor, raw: &[u8]) -> Result<(), StatError> {
            out.extend_from_slice(b"{\"descriptor\":");
            out.extend_from_slice(&go_json(&go_descriptor(desc)?)?);
            if serde_json::from_slice::<serde::de::IgnoredAny>(raw).is_ok() {
                out.extend_from_slice(b",\"blob\":");
                out.extend_from_slice(&gofmt::compact_json(raw));
            }
            out.push(b'}');
            Ok(())
        }
        let mut out = Vec::with_capacity(2 * self.manifest.raw.len() + 1024);
        out.extend_from_slice(b"{\"manifest\":");
        blob(&mut out, &self.manifest.descriptor, &self.manifest.raw)?;
        if let Some(c) = &self.config {
            out.extend_from_slice(b",\"config\":");
            blob(&mut out, &c.descriptor, &c.raw)?;
        }
        if let Some(h) = &self.history {
            let entries = h
                .iter()
                .map(history_json)
                .collect::<Result<Vec<_>, serde_json::Error>>()?;
            out.extend_from_slice(b",\"history\":");
            out.extend_from_slice(&go_json(&Value::Array(entries))?);
        }
        out.extend_from_slice(b"}\n");
        Ok(out)
    }

    /// umoci's text form (`umoci stat` without `--json`).
    pub fn format_text(&self) -> Vec<u8> {
        let mut w = Vec::new();
        let _ = writeln!(w, "== MANIFEST ==");
        write_manifest(&mut w, "", &self.manifest.manifest);
        write_descriptor(&mut w, "", &self.manifest.descriptor);
        if let Some(c) = &self.config {
            let _ = writeln!(w, "\n== CONFIG ==");
            if let Some(image) = &c.image {
                write_image(&mut w, "", image);
            }
            write_descriptor(&mut w, "", &c.descriptor);
        }
        if let Some(h) = &self.history {
            let _ = writeln!(w, "\n== HISTORY ==");
            let _ = w.write_all(history_table(h).as_bytes());
        }
        w
    }
}

/// One history entry as umoci writes it: `layer` (null for an empty
/// layer), `diff_id` (empty likewise), then the entry's fields with Go's
/// `omitempty` (no `author`, `comment` or `empty_layer: false` when empty).
fn history_json(e: &HistoryInfo) -> Result<Value, serde_json::Error> {
    let mut o = Map::new();
    o.insert(
        "layer".into(),
        match &e.layer {
            Some(l) => go_descriptor(l)?,
            None => Value::Null,
        },
    );
    o.insert(
        "diff_id".into(),
        Value::String(
            e.diff_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        ),
    );
    let h = &e.history;
    if let Some(c) = &h.created {
        o.insert("created".into(), Value::String(go_time(c)));
    }
    for (k, v) in [
        ("created_by", &h.created_by),
        ("author", &h.author),
        ("comment", &h.comment),
    ] {
        if !v.is_empty() {
            o.insert(k.into(), Value::String(v.clone()));
        }
    }
    if h.empty_layer {
        o.insert("empty_layer".into(), Value::Bool(true));
    }
    Ok(Value::Object(o))
}

/// umoci's `pprint`: `KEY: v1, v2` (values quoted when they hold `,`,
/// white space or special characters, or are empty) or `KEY:` alone.
fn pprint(w: &mut Vec<u8>, prefix: &str, key: &str, values: &[&str]) {
    if values.is_empty() {
        let _ = writeln!(w, "{prefix}{key}:");
        return;
    }
    let quoted: Vec<String> = values
        .iter()
        .map(|v| {
            if v.contains(',') {
                quote(v)
            } else {
                quote_if_needed(v, true)
            }
        })
        .collect();
    let _ = writeln!(w, "{prefix}{key}: {}", quoted.join(", "));
}

fn pprint_slice(w: &mut Vec<u8>, prefix: &str, name: &str, data: &[String]) {
    if data.is_empty() {
        pprint(w, prefix, name, &["(empty)"]);
        return;
    }
    pprint(w, prefix, name, &[]);
    for line in data {
        let _ = writeln!(w, "{prefix}\t{}", quote_if_needed(line, true));
    }
}

fn pprint_map<'a>(
    w: &mut Vec<u8>,
    prefix: &str,
    name: &str,
    data: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
) {
    if data.len() == 0 {
        pprint(w, prefix, name, &["(empty)"]);
        return;
    }
    pprint(w, prefix, name, &[]);
    let inner = format!("{prefix}\t");
    // BTreeMap order is Go's sorted key order (both compare bytes)
    for (k, v) in data {
        pprint(w, &inner, &quote_if_needed(k, true), &[v]);
    }
}

fn pprint_set<'a>(
    w: &mut Vec<u8>,
    prefix: &str,
    name: &str,
    keys: impl ExactSizeIterator<Item = &'a String>,
) {
    if keys.len() == 0 {
        pprint(w, prefix, name, &["(empty)"]);
        return;
    }
    let keys: Vec<&str> = keys.map(String::as_str).collect();
    pprint(w, prefix, name, &keys);
}

/// umoci's `xxd`: 16 bytes a line, `OFFS: hhhh hhhh …  text`.
fn xxd(w: &mut Vec<u8>, prefix: &str, data: &[u8]) {
    for (n, line) in data.chunks(16).enumerate() {
        let _ = write!(w, "{prefix}{:04x}: ", n * 16);
        for idx in 0..16 {
            if idx != 0 && idx % 2 == 0 {
                w.push(b' ');
            }
            match line.get(idx) {
                Some(b) => {
                    let _ = write!(w, "{b:02x}");
                }
                None => w.extend_from_slice(b"  "),
            }
        }
        w.extend_from_slice(b"  ");
        // Go's unicode.IsGraphic on the byte as a rune; the byte itself is
        // written, as umoci does
        for &b in line {
            let graphic = (0x20..=0x7e).contains(&b) || b >= 0xa0 && b != 0xad;
            w.push(if graphic { b } else { b'.' });
        }
        w.push(b'\n');
    }
}

fn pprint_bytes(w: &mut Vec<u8>, prefix: &str, name: &str, data: &[u8]) {
    if data.is_empty() {
        pprint(w, prefix, name, &["(empty)"]);
        return;
    }
    let _ = writeln!(w, "{prefix}{name}: ({} bytes)", data.len());
    let inner = format!("{prefix}\t");
    const MAX_DISPLAY: usize = 256;
    xxd(w, &inner, &data[..data.len().min(MAX_DISPLAY)]);
    if data.len() > MAX_DISPLAY {
        let _ = writeln!(
            w,
            "{inner}....  (extra {} bytes omitted)",
            data.len() - MAX_DISPLAY
        );
    }
}

fn pprint_platform(
    w: &mut Vec<u8>,
    prefix: &str,
    os: &str,
    os_version: &str,
    os_features: &[String],
    arch: &str,
    variant: &str,
) {
    pprint(w, prefix, "Platform", &[]);
    let p = format!("{prefix}\t");
    pprint(w, &p, "OS", &[os]);
    if !os_version.is_empty() {
        pprint(w, &p, "OS Version", &[os_version]);
    }
    if !os_features.is_empty() {
        let f: Vec<&str> = os_features.iter().map(String::as_str).collect();
        pprint(w, &p, "OS Features", &f);
    }
    let mut a = quote_if_needed(arch, true);
    if !variant.is_empty() {
        a.push_str(&format!(" ({})", quote_if_needed(variant, false)));
    }
    let _ = writeln!(w, "{p}Architecture: {a}");
}

fn write_descriptor_platform(w: &mut Vec<u8>, prefix: &str, p: &Platform) {
    // umoci passes an empty prefix here (unindented); rumoci indents the
    // block under its descriptor like every other field
    pprint_platform(
        w,
        prefix,
        &p.os,
        &p.os_version,
        &p.os_features,
        &p.architecture,
        &p.variant,
    );
}

fn write_descriptor(w: &mut Vec<u8>, prefix: &str, d: &Descriptor) {
    pprint(w, prefix, "Descriptor", &[]);
    let p = format!("{prefix}\t");
    pprint(w, &p, "Media Type", &[&d.media_type]);
    if !d.artifact_type.is_empty() {
        pprint(w, &p, "Artifact Type", &[&d.artifact_type]);
    }
    pprint(w, &p, "Digest", &[&d.digest.to_string()]);
    pprint(w, &p, "Size", &[&human_size(d.size)]);
    if let Some(platform) = &d.platform {
        write_descriptor_platform(w, &p, platform);
    }
    if !d.urls.is_empty() {
        pprint_slice(w, &p, "URLs", &d.urls);
    }
    if !d.annotations.is_empty() {
        pprint_map(w, &p, "Annotations", d.annotations.iter());
    }
    if let Some(data) = d.data.as_deref().filter(|d| !d.is_empty()) {
        pprint_bytes(w, &p, "Data", data);
    }
}

fn write_manifest(w: &mut Vec<u8>, prefix: &str, m: &Manifest) {
    pprint(
        w,
        prefix,
        "Schema Version",
        &[&m.schema_version.to_string()],
    );
    pprint(w, prefix, "Media Type", &[&m.media_type]);
    if !m.artifact_type.is_empty() {
        pprint(w, prefix, "Artifact Type", &[&m.artifact_type]);
    }
    let inner = format!("{prefix}\t");
    pprint(w, prefix, "Config", &[]);
    write_descriptor(w, &inner, &m.config);
    if !m.layers.is_empty() {
        pprint(w, prefix, "Layers", &[]);
        for l in &m.layers {
            write_descriptor(w, &inner, l);
        }
    }
    if let Some(s) = &m.subject {
        pprint(w, prefix, "Subject", &[]);
        write_descriptor(w, &inner, s);
    }
    if !m.annotations.is_empty() {
        pprint_map(w, prefix, "Annotations", m.annotations.iter());
    }
}

fn write_image(w: &mut Vec<u8>, prefix: &str, img: &Image) {
    if let Some(c) = &img.created {
        pprint(w, prefix, "Created", &[&go_time(c)]);
    }
    pprint(w, prefix, "Author", &[&img.author]);
    pprint_platform(
        w,
        prefix,
        &img.os,
        &img.os_version,
        &img.os_features,
        &img.architecture,
        &img.variant,
    );
    pprint(w, prefix, "Image Config", &[]);
    let p = format!("{prefix}\t");
    let c = &img.config;
    pprint(w, &p, "User", &[&c.user]);
    let escaped = if c.args_escaped { " (escaped)" } else { "" };
    if !c.entrypoint.is_empty() {
        pprint_slice(w, &p, &format!("Entrypoint{escaped}"), &c.entrypoint);
    }
    pprint_slice(w, &p, &format!("Command{escaped}"), &c.cmd);
    if !c.working_dir.is_empty() {
        pprint(w, &p, "Working Directory", &[&c.working_dir]);
    }
    if !c.env.is_empty() {
        pprint_slice(w, &p, "Environment", &c.env);
    }
    if !c.stop_signal.is_empty() {
        pprint(w, &p, "Stop Signal", &[&c.stop_signal]);
    }
    if !c.exposed_ports.is_empty() {
        pprint_set(w, &p, "Exposed Ports", c.exposed_ports.keys());
    }
    if !c.volumes.is_empty() {
        pprint_set(w, &p, "Volumes", c.volumes.keys());
    }
    if !c.labels.is_empty() {
        pprint_map(w, &p, "Labels", c.labels.iter());
    }
}

/// The `== HISTORY ==` table, laid out as Go's tabwriter does with umoci's
/// settings.
fn history_table(h: &[HistoryInfo]) -> String {
    let mut t = String::from("LAYER\tCREATED\tCREATED BY\tSIZE\tCOMMENT\n");
    for e in h {
        let created = e
            .history
            .created
            .as_deref()
            .map(go_time)
            .map(|c| quote_if_needed(&c, false))
            .unwrap_or_else(|| "<none>".into());
        let (layer, size) = match (&e.layer, e.history.empty_layer) {
            (Some(l), false) => (l.digest.to_string(), human_size(l.size)),
            _ => ("<none>".to_string(), "<none>".to_string()),
        };
        t.push_str(&format!(
            "{layer}\t{created}\t{}\t{size}\t{}\n",
            quote_if_needed(&e.history.created_by, false),
            quote_if_needed(&e.history.comment, false),
        ));
    }
    gofmt::tabwrite(&t, 4, 1)
}

impl crate::stat::StatError {
    /// What kind of failure this is.
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::stat::StatError as E;
        match self {
            E::Cas(c) => c.kind(),
            E::NotAManifest { .. } => crate::error::ErrorKind::Unsupported,
            E::Json(_) => crate::error::ErrorKind::InvalidInput,
        }
    }
}

rumoci_core::wraps!(crate::stat::StatError);
