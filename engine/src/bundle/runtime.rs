//! The runtime-spec `config.json` of a bundle, generated from the image
//! configuration as umoci does (its `Example()` template, then the image's
//! args, env, cwd, user, volumes and annotations, then id mappings and the
//! rootless changes).

use serde_json::{Value, json};

use super::BundleError;
use super::user::resolve_user;
use crate::fs::root::Root;
use crate::layer::idmap::IdMapping;
use crate::oci::Image;

/// The runtime-spec version written.
pub const OCI_VERSION: &str = "1.2.1";

const CAPS: [&str; 3] = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

fn template() -> Value {
    json!({
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": CAPS, "effective": CAPS, "inheritable": CAPS,
                "permitted": CAPS, "ambient": CAPS
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs"},
        "hostname": "umoci-default",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "annotations": {},
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
            ],
            "maskedPaths": [
                "/proc/kcore", "/proc/latency_stats", "/proc/timer_list",
                "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq",
                "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

/// How ids were mapped (for the user namespace and rootless changes).
#[derive(Debug, Clone, Default)]
pub struct RuntimeMapping {
    /// uid mappings.
    pub uid_map: Vec<IdMapping>,
    /// gid mappings.
    pub gid_map: Vec<IdMapping>,
    /// Rootless bundle.
    pub rootless: bool,
}

/// Build `config.json` for `image`. `rootfs` (when given) is where the
/// user name is resolved; `rootfs_name` is `root.path`.
pub fn runtime_config(
    image: &Image,
    rootfs: Option<&Root>,
    rootfs_name: &str,
    map: &RuntimeMapping,
) -> Result<Value, BundleError> {
    build(image, rootfs, rootfs_name, map).map_err(BundleError::Other)
}

fn build(
    image: &Image,
    rootfs: Option<&Root>,
    rootfs_name: &str,
    map: &RuntimeMapping,
) -> Result<Value, String> {
    if image.os != "linux" {
        return Err(format!(
            "unsupported OS {:?}: only linux images can be run",
            image.os
        ));
    }
    let mut spec = template();
    let ic = &image.config;
    spec["root"]["path"] = rootfs_name.into();
    if !ic.working_dir.is_empty() {
        spec["process"]["cwd"] = ic.working_dir.clone().into();
    }
    let mut env: Vec<String> = spec["process"]["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for e in &ic.env {
        let (k, _) = e
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| format!("config.Env {e:?}: expected KEY=VALUE"))?;
        let prefix = format!("{k}=");
        match env.iter_mut().find(|x| x.starts_with(&prefix)) {
            Some(x) => *x = e.clone(),
            None => env.push(e.clone()),
        }
    }
    let args: Vec<String> = ic.entrypoint.iter().chain(ic.cmd.iter()).cloned().collect();
    if !args.is_empty() {
        spec["process"]["args"] = json!(args);
    }

    let user = match rootfs {
        Some(r) => resolve_user(&ic.user, Some(r)).map_err(|e| e.to_string())?,
        None => resolve_user(&ic.user, None).unwrap_or_else(|e| {
            tracing::warn!("{e}; using root:root (no rootfs given)");
            super::user::ExecUser {
                uid: 0,
                gid: 0,
                additional_gids: Vec::new(),
                home: None,
            }
        }),
    };
    spec["process"]["user"] = json!({"uid": user.uid, "gid": user.gid});
    if !user.additional_gids.is_empty() {
        spec["process"]["user"]["additionalGids"] = json!(user.additional_gids);
    }
    if let Some(home) = user.home.filter(|h| !h.is_empty())
        && !env.iter().any(|e| e.starts_with("HOME="))
    {
        env.push(format!("HOME={home}"));
    }
    spec["process"]["env"] = json!(env);

    // annotations: image facts first, then the labels, which win
    let mut ann = serde_json::Map::new();
    let mut put = |k: &str, v: &str| {
        if !v.is_empty() {
            ann.insert(format!("org.opencontainers.image.{k}"), v.into());
        }
    };
    put("os", &image.os);
    put("architecture", &image.architecture);
    put("variant", &image.variant);
    put("author", &image.author);
    put("created", image.created.as_deref().unwrap_or(""));
    put("stopSignal", &ic.stop_signal);
    let ports: Vec<&str> = ic.exposed_ports.keys().map(String::as_str).collect();
    put("exposedPorts", &ports.join(","));
    for (k, v) in &ic.labels {
        ann.insert(k.clone(), v.clone().into());
    }
    spec["annotations"] = Value::Object(ann);

    if let Some(mounts) = spec["mounts"].as_array_mut() {
        for v in ic.volumes.keys() {
            mounts.push(json!({
                "destination": v, "type": "tmpfs", "source": "none",
                "options": ["rw", "nosuid", "nodev", "noexec", "relatime"]
            }));
        }
    }

    let mapped = !map.uid_map.is_empty() || !map.gid_map.is_empty() || map.rootless;
    if mapped {
        if let Some(ns) = spec["linux"]["namespaces"].as_array_mut()
            && !ns.iter().any(|n| n["type"] == "user")
        {
            ns.push(json!({"type": "user"}));
        }
        spec["linux"]["uidMappings"] = json!(map.uid_map);
        spec["linux"]["gidMappings"] = json!(map.gid_map);
    }
    if map.rootless {
        to_rootless(&mut spec);
    }
    Ok(spec)
}

/// umoci's `ToRootless`, without its quirk of skipping the mount rewrite
/// when the host has no `/etc/resolv.conf`.
fn to_rootless(spec: &mut Value) {
    if let Some(u) = spec["process"]["user"].as_object_mut() {
        u.remove("additionalGids");
    }
    if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
        ns.retain(|n| n["type"] != "network");
    }
    let mut mounts: Vec<Value> = spec["mounts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| {
            let d = m["destination"].as_str().unwrap_or("");
            d != "/sys" && !d.starts_with("/sys/")
        })
        .map(|mut m| {
            if let Some(opts) = m["options"].as_array_mut() {
                opts.retain(|o| {
                    let o = o.as_str().unwrap_or("");
                    !o.starts_with("uid=") && !o.starts_with("gid=")
                });
            }
            m
        })
        .collect();
    mounts.push(json!({
        "destination": "/sys", "type": "none", "source": "/sys",
        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]
    }));
    if std::path::Path::new("/etc/resolv.conf").exists() {
        mounts.push(json!({
            "destination": "/etc/resolv.conf", "type": "none", "source": "/etc/resolv.conf",
            "options": ["bind", "ro", "nosuid", "noexec", "nodev"]
        }));
    }
    spec["mounts"] = Value::Array(mounts);
    if let Some(l) = spec["linux"].as_object_mut() {
        l.remove("resources");
    }
}

/// Serialise as umoci does: tab-indented JSON and a final newline.
pub fn to_json(spec: &Value) -> Result<Vec<u8>, BundleError> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    serde::Serialize::serialize(spec, &mut ser).map_err(|e| BundleError::Other(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}
