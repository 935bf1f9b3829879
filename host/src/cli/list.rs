//! `rumoci ls --layout PATH [--json]`

use anyhow::Result;

use super::driver::Session;
use super::output::{print_json, print_out};
use super::util::LayoutReportArgs;

/// Arguments of `list`.
pub type Args = LayoutReportArgs;

/// One tag of `ls --json`.
#[derive(serde::Serialize)]
struct TagJson<'a> {
    tag: &'a str,
    digest: String,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    size: u64,
}

/// Print the tags in `index.json` order, one per line (or as JSON: an
/// object with `tags`, each with its descriptor's `digest`, `mediaType`
/// and `size`).
pub fn run(a: Args, s: &Session) -> Result<()> {
    let tags = s.open_layout(a.layout.path()?)?.tags()?;
    let tagged = tags.iter().map(|(t, d)| (t.as_str(), d));
    if a.json.json {
        let tags: Vec<TagJson<'_>> = tagged
            .map(|(tag, d)| TagJson {
                tag,
                digest: d.digest.to_string(),
                media_type: &d.media_type,
                size: d.size,
            })
            .collect();
        return print_json(&serde_json::json!({ "tags": tags }));
    }
    let mut text = String::new();
    for (tag, _) in tagged {
        text.push_str(tag);
        text.push('\n');
    }
    print_out(&text)
}
