//! The driver's options.

use super::*;

/// Default size of a multipart upload's parts (and the largest blob sent
/// with one PUT): the memory a writer holds.
pub(crate) const DEFAULT_PART: u64 = 8 << 20;
/// Default age below which gc keeps a blob it finds unreferenced.
pub(crate) const DEFAULT_GC_GRACE: u64 = 600;
/// Default age below which `clean` keeps temporaries and unfinished
/// multipart uploads.
pub(crate) const DEFAULT_UPLOAD_GRACE: u64 = 86_400;

/// The parsed options.
#[derive(Clone, Debug)]
pub(crate) struct Conf {
    /// `url`, without a trailing `/`.
    pub(crate) url: String,
    pub(crate) ep: Endpoint,
    /// The bucket (needed for path-style requests and server-side copies).
    pub(crate) bucket: String,
    /// Path-style (`/BUCKET/KEY`) rather than virtual-hosted (`url` is the
    /// bucket's own host, `/KEY`).
    pub(crate) path_style: bool,
    /// The layout's prefix: no leading or trailing `/`, maybe empty.
    pub(crate) prefix: String,
    pub(crate) part_size: u64,
    pub(crate) gc_grace: u64,
    pub(crate) upload_grace: u64,
    /// Index writes without conditional requests (one writer at a time).
    pub(crate) single_writer: bool,
}

thread_local! {
    static CONF: RefCell<Option<Conf>> = const { RefCell::new(None) };
}

/// `url` as an endpoint: `http[s]://HOST[:PORT]`, nothing more; requests
/// are sent as `rumoci-s3/VERSION`.
pub(crate) fn parse_url(url: &str) -> std::result::Result<Endpoint, String> {
    let hint = "the bucket is bucket=, the layout prefix= or the layout path";
    let ua = concat!("rumoci-s3/", env!("CARGO_PKG_VERSION"));
    Endpoint::parse(url, hint).map(|e| e.with_user_agent(ua))
}

/// A prefix as keys use it: `./a/b/` is `a/b`, `.` and `/` are the
/// bucket's root; `..`, empty segments and control characters are refused.
pub(crate) fn parse_prefix(p: &str) -> std::result::Result<String, String> {
    let trimmed = p.trim_matches('/');
    let parts: Vec<&str> = trimmed
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    if parts.contains(&"..") || p.chars().any(char::is_control) || p.len() > 1024 {
        return Err(format!(
            "prefix {p:?}: no `..`, control characters or more than 1024 bytes"
        ));
    }
    Ok(parts.join("/"))
}

fn number(k: &str, v: &str) -> Result<u64> {
    v.parse::<u64>()
        .map_err(|_| Error::InvalidArgument(format!("{k}={v}: expected a number")))
}

pub(crate) fn conf() -> Result<Conf> {
    if let Some(c) = CONF.with(|c| c.borrow().clone()) {
        return Ok(c);
    }
    let (mut url, mut repo, mut bucket, mut prefix) = (None, None, None, None);
    let mut path_style = true;
    let mut part_size = DEFAULT_PART;
    let (mut gc_grace, mut upload_grace) = (DEFAULT_GC_GRACE, DEFAULT_UPLOAD_GRACE);
    let mut single_writer = false;
    for (k, v) in config() {
        match k.as_str() {
            "url" => url = Some(v),
            "repo" => repo = Some(v),
            "bucket" => bucket = Some(v),
            "prefix" => prefix = Some(v),
            "region" => {}
            "path-style" => path_style = v != "false",
            "part-size" => {
                part_size = rumoci_driver_sdk::store_util::parse_size(&v)
                    .filter(|n| (5 << 20..=5 << 30).contains(n))
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "part-size={v}: expected a size from 5M to 5G"
                        ))
                    })?
            }
            "gc-grace" => gc_grace = number(&k, &v)?,
            "upload-grace" => upload_grace = number(&k, &v)?,
            "single-writer" => single_writer = v == "true",
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown option {k:?} (the s3 driver takes url=, bucket=, prefix=, region=, path-style=, and opt.part-size=, opt.gc-grace=, opt.upload-grace=, opt.single-writer=)"
                )));
            }
        }
    }
    let url = url.ok_or_else(|| {
        Error::InvalidArgument(
            "no endpoint given: use --driver s3.wasm,url=http[s]://HOST[:PORT],bucket=NAME".into(),
        )
    })?;
    let ep = parse_url(&url).map_err(Error::InvalidArgument)?;
    let bucket = bucket.ok_or_else(|| {
        Error::InvalidArgument(format!("no bucket given for {url}: use bucket=NAME"))
    })?;
    // prefix= and, beneath it, the command's layout path
    let joined = [prefix, repo]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("/");
    let prefix = parse_prefix(&joined).map_err(Error::InvalidArgument)?;
    let c = Conf {
        url: url.trim_end_matches('/').to_string(),
        ep,
        bucket,
        path_style,
        prefix,
        part_size,
        gc_grace,
        upload_grace,
        single_writer,
    };
    CONF.with(|s| *s.borrow_mut() = Some(c.clone()));
    Ok(c)
}

impl Conf {
    /// The key of `name` (`index.json`, `blobs/sha256/…`) in the layout.
    pub(crate) fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// The key of a blob.
    pub(crate) fn blob_key(&self, d: &Digest) -> String {
        self.key(&format!("blobs/{}/{}", d.algorithm(), d.encoded()))
    }

    /// The request path of the bucket (with `query`, e.g. `list-type=2&…`).
    pub(crate) fn bucket_path(&self, query: &str) -> String {
        let base = if self.path_style {
            format!("/{}", self.bucket)
        } else {
            "/".to_string()
        };
        if query.is_empty() {
            base
        } else {
            format!("{base}?{query}")
        }
    }

    /// The request path of object `key` (with `query`).
    pub(crate) fn object_path(&self, key: &str, query: &str) -> String {
        let mut p = if self.path_style {
            format!("/{}/", self.bucket)
        } else {
            "/".to_string()
        };
        p.push_str(&encode(key, true));
        if !query.is_empty() {
            p.push('?');
            p.push_str(query);
        }
        p
    }

    /// `x-amz-copy-source` of `key`.
    pub(crate) fn copy_source(&self, key: &str) -> String {
        format!("/{}/{}", self.bucket, encode(key, true))
    }

    /// How messages name `key`: `s3://BUCKET/KEY`.
    pub(crate) fn show(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// How messages name the layout: `s3://BUCKET/PREFIX on URL`.
    pub(crate) fn layout(&self) -> String {
        format!("s3://{}/{} on {}", self.bucket, self.prefix, self.url)
    }
}

/// Percent-encoding of everything but RFC 3986's unreserved characters
/// (and `/` when `keep_slash`).
pub(crate) fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn conf(path_style: bool, prefix: &str) -> Conf {
        Conf {
            url: "http://127.0.0.1:8333".into(),
            ep: parse_url("http://127.0.0.1:8333").unwrap(),
            bucket: "bk".into(),
            path_style,
            prefix: prefix.into(),
            part_size: DEFAULT_PART,
            gc_grace: 0,
            upload_grace: 0,
            single_writer: false,
        }
    }

    #[test]
    fn prefixes_and_paths() {
        assert_eq!(parse_prefix("./a//b/").unwrap(), "a/b");
        assert_eq!(parse_prefix(".").unwrap(), "");
        assert_eq!(parse_prefix("/").unwrap(), "");
        assert!(parse_prefix("a/../b").is_err());
        assert!(parse_prefix("a\nb").is_err());
        let c = conf(true, "x y");
        assert_eq!(
            c.object_path(&c.key("index.json"), ""),
            "/bk/x%20y/index.json"
        );
        assert_eq!(c.bucket_path("list-type=2"), "/bk?list-type=2");
        assert_eq!(c.copy_source("a+b"), "/bk/a%2Bb");
        let c = conf(false, "");
        assert_eq!(
            c.object_path("index.json", "uploads="),
            "/index.json?uploads="
        );
        assert_eq!(c.bucket_path(""), "/");
        assert!(parse_url("http://h:1/bucket").is_err());
        assert!(parse_url("ftp://h").is_err());
        assert_eq!(parse_url("https://h:1/").unwrap().authority, "h:1");
    }
}
