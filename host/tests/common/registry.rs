//! A private `docker-registry` (Debian's CNCF distribution 2.8) on a free
//! loopback port for the registry plugin's tests: plain HTTP, or with TLS,
//! htpasswd Basic authentication or token authentication.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The registry binary (package `docker-registry`, scripts/deps.sh).
pub const REGISTRY: &str = "/usr/bin/docker-registry";

fn sp(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A free TCP port on 127.0.0.1 (nothing listens on it afterwards).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// How a registry authenticates its clients.
#[derive(Clone, Debug, Default)]
pub enum Auth {
    /// Anyone may do anything.
    #[default]
    None,
    /// HTTP Basic against this bcrypt htpasswd file.
    Htpasswd(PathBuf),
    /// Bearer tokens from `realm` (a token server URL), signed by the key
    /// whose certificate is `rootcertbundle`.
    Token {
        realm: String,
        service: String,
        issuer: String,
        rootcertbundle: PathBuf,
    },
}

/// An S3 bucket a registry keeps its storage in (distribution's `s3`
/// storage driver, which answers blob reads with redirects to presigned
/// URLs of the object store).
#[derive(Clone, Debug)]
pub struct S3Storage {
    /// `http://HOST:PORT` of the object store.
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

/// What a registry serves.
#[derive(Clone, Debug, Default)]
pub struct RegistryConfig {
    /// Serve HTTPS with this certificate and key (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
    pub auth: Auth,
    /// Keep the storage in an object store instead of a directory.
    pub s3: Option<S3Storage>,
}

/// A private `docker-registry` on 127.0.0.1, killed on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    tls: bool,
    /// Config, storage and log; removed with the guard.
    dir: tempfile::TempDir,
}

impl Registry {
    /// A plain-HTTP registry without authentication.
    pub fn start() -> Registry {
        Registry::start_with(&RegistryConfig::default())
    }

    pub fn start_with(cfg: &RegistryConfig) -> Registry {
        assert!(
            Path::new(REGISTRY).is_file(),
            "{REGISTRY} is missing: install Debian's docker-registry package (scripts/deps.sh) \
             to run the registry plugin tests"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("config.yml");
            std::fs::write(&config, config_yaml(cfg, port, &dir.path().join("root")))
                .expect("write config.yml");
            let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
            let mut child = Command::new(REGISTRY)
                .args(["serve", sp(&config)])
                // distribution 2.8's S3 driver crashes when it is set
                .env_remove("AWS_CA_BUNDLE")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start docker-registry");
            if wait_ready(&mut child, port, cfg.tls.is_some()) {
                return Registry {
                    child,
                    port,
                    tls: cfg.tls.is_some(),
                    dir,
                };
            }
            // lost the port to someone else, or the registry died: retry
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not come up: {}",
            std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`.
    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `docker://127.0.0.1:PORT/NAME:TAG` for skopeo.
    pub fn docker(&self, name_tag: &str) -> String {
        format!("docker://127.0.0.1:{}/{name_tag}", self.port)
    }

    /// What the registry logged so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_yaml(cfg: &RegistryConfig, port: u16, root: &Path) -> String {
    let storage = match &cfg.s3 {
        None => format!("  filesystem:\n    rootdirectory: {}\n", sp(root)),
        Some(b) => format!(
            "  s3:\n    accesskey: {}\n    secretkey: {}\n    region: us-east-1\n    regionendpoint: {}\n    bucket: {}\n    secure: false\n    v4auth: true\n    rootdirectory: /registry\n  redirect:\n    disable: false\n",
            b.access_key, b.secret_key, b.endpoint, b.bucket
        ),
    };
    let mut y = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n{storage}  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n"
    );
    if let Some((cert, key)) = &cfg.tls {
        y += &format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            sp(cert),
            sp(key)
        );
    }
    match &cfg.auth {
        Auth::None => {}
        Auth::Htpasswd(file) => {
            y += &format!(
                "auth:\n  htpasswd:\n    realm: rumoci-test\n    path: {}\n",
                sp(file)
            );
        }
        Auth::Token {
            realm,
            service,
            issuer,
            rootcertbundle,
        } => {
            y += &format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                sp(rootcertbundle)
            );
        }
    }
    y
}

/// Wait until the registry answers `GET /v2/` (200, or 401 where it wants
/// credentials; over TLS, the 400 Go's server gives a plain-HTTP request);
/// `false` if it exits or does not answer within 20 s.
fn wait_ready(child: &mut Child, port: u16, tls: bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        match (tls, http_status(port, "GET", "/v2/")) {
            (false, Some(200 | 401)) | (true, Some(400)) => return true,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The status code of a plain HTTP/1.0 request, `None` on any failure.
pub fn http_status(port: u16, method: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
