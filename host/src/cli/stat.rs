//! `rumoci stat --image PATH[:TAG] [--json]`

use anyhow::{Context, Result};
use rumoci::cas::{ext, refs};
use rumoci::oci::{Descriptor, Image, Manifest};
use serde::Serialize;

use super::util::{ImageArgs, print_out};

/// Arguments of `stat`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    image: ImageArgs,
    /// Print the information as JSON (stable; the text form is not).
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Blob<'a, T> {
    descriptor: &'a Descriptor,
    blob: &'a T,
}

#[derive(Serialize)]
struct HistoryStat<'a> {
    layer: Option<&'a Descriptor>,
    diff_id: String,
    created: &'a str,
    created_by: &'a str,
    author: &'a str,
    comment: &'a str,
    empty_layer: bool,
}

#[derive(Serialize)]
struct Stat<'a> {
    manifest: Blob<'a, Manifest>,
    config: Blob<'a, Image>,
    history: Vec<HistoryStat<'a>>,
}

fn history<'a>(m: &'a Manifest, c: &'a Image) -> Vec<HistoryStat<'a>> {
    let mut layer = 0;
    c.history
        .iter()
        .map(|h| {
            let (desc, diff_id) = if h.empty_layer {
                (None, String::new())
            } else {
                let i = layer;
                layer += 1;
                (
                    m.layers.get(i),
                    c.rootfs
                        .diff_ids
                        .get(i)
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                )
            };
            HistoryStat {
                layer: desc,
                diff_id,
                created: h.created.as_deref().unwrap_or(""),
                created_by: &h.created_by,
                author: &h.author,
                comment: &h.comment,
                empty_layer: h.empty_layer,
            }
        })
        .collect()
}

fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}{}", UNITS[u])
    }
}

fn render_text(s: &Stat<'_>) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let m = s.manifest.blob;
    let c = s.config.blob;
    let _ = writeln!(o, "== MANIFEST ==");
    let _ = writeln!(o, "Digest: {}", s.manifest.descriptor.digest);
    let _ = writeln!(o, "Schema Version: {}", m.schema_version);
    let _ = writeln!(o, "Media Type: {}", m.media_type);
    let _ = writeln!(
        o,
        "Config: {} ({})",
        m.config.digest,
        human_size(m.config.size)
    );
    let _ = writeln!(o, "Layers:");
    for l in &m.layers {
        let _ = writeln!(
            o,
            "\t{} {} ({})",
            l.digest,
            l.media_type,
            human_size(l.size)
        );
    }
    for (k, v) in &m.annotations {
        let _ = writeln!(o, "Annotation: {k}={v:?}");
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "== CONFIG ==");
    let _ = writeln!(o, "Created: {}", c.created.as_deref().unwrap_or(""));
    let _ = writeln!(o, "Author: {:?}", c.author);
    let mut platform = format!("{}/{}", c.os, c.architecture);
    if !c.variant.is_empty() {
        platform.push('/');
        platform.push_str(&c.variant);
    }
    let _ = writeln!(o, "Platform: {platform}");
    let ic = &c.config;
    let _ = writeln!(o, "User: {:?}", ic.user);
    let _ = writeln!(o, "Entrypoint: {:?}", ic.entrypoint);
    let _ = writeln!(o, "Cmd: {:?}", ic.cmd);
    let _ = writeln!(o, "Working Dir: {:?}", ic.working_dir);
    for e in &ic.env {
        let _ = writeln!(o, "Env: {e}");
    }
    for p in ic.exposed_ports.keys() {
        let _ = writeln!(o, "Exposed Port: {p}");
    }
    for v in ic.volumes.keys() {
        let _ = writeln!(o, "Volume: {v}");
    }
    for (k, v) in &ic.labels {
        let _ = writeln!(o, "Label: {k}={v:?}");
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "== HISTORY ==");
    let rows: Vec<[String; 5]> = s
        .history
        .iter()
        .map(|h| {
            [
                h.layer
                    .map(|l| l.digest.to_string())
                    .unwrap_or_else(|| "<none>".into()),
                h.created.to_string(),
                h.created_by.to_string(),
                h.layer
                    .map(|l| human_size(l.size))
                    .unwrap_or_else(|| "<none>".into()),
                h.comment.to_string(),
            ]
        })
        .collect();
    let header = ["LAYER", "CREATED", "CREATED BY", "SIZE", "COMMENT"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(rows.iter()) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(o, "{}", line.join("   ").trim_end());
    }
    o
}

/// Show the manifest, config and history of an image.
pub fn run(a: Args) -> Result<()> {
    let (cas, r) = a.image.open()?;
    let path = refs::resolve(cas.as_ref(), &r.tag, a.image.platform()?.as_ref())
        .with_context(|| format!("resolve {}:{}", rumoci::show::name(&r.layout), r.tag))?;
    let mdesc = path.target();
    let manifest = ext::fetch_manifest(cas.as_ref(), mdesc)?;
    let config = ext::fetch_config(cas.as_ref(), &manifest.config)?;
    let stat = Stat {
        manifest: Blob {
            descriptor: mdesc,
            blob: &manifest,
        },
        config: Blob {
            descriptor: &manifest.config,
            blob: &config,
        },
        history: history(&manifest, &config),
    };
    let text = if a.json {
        serde_json::to_string(&stat)? + "\n"
    } else {
        render_text(&stat)
    };
    print_out(&text)
}
