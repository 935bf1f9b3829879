//! What surrounds the commands, on the real binary: man pages and
//! completions, `--json` and exit codes, progress on a terminal, logging
//! and error lines, the config file.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

/// Run rumoci with an empty config location (no user config interferes)
/// plus `env`.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(rumoci_bin())
        .args(args)
        .env("XDG_CONFIG_HOME", "/nonexistent/rumoci-test")
        .env_remove("RUMOCI_CONFIG")
        .env_remove("RUMOCI_LOG")
        .env_remove("RUMOCI_DRIVER")
        .envs(env.iter().copied())
        .output()
        .expect("spawn rumoci")
}

fn ok(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run(args, env);
    assert!(
        out.status.success(),
        "rumoci {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A new layout `l` with an empty image tagged `tag`.
fn new_layout(l: &Path, tag: &str) -> std::path::PathBuf {
    ok(&["init", "--layout", s(l)], &[]);
    ok(&["new", "--image", &format!("{}:{tag}", s(l))], &[]);
    l.to_path_buf()
}

/// `unpack --rootless --image IMG BUNDLE` after the global flags `pre`,
/// with `env`; it must succeed.
fn unpack_rootless(pre: &[&str], img: &str, bundle: &Path, env: &[(&str, &str)]) -> String {
    ok(
        &[pre, &["unpack", "--rootless", "--image", img, s(bundle)]].concat(),
        env,
    )
}

/// A layout with tag `t` holding one layer with a file of `mib` MiB.
fn image(dir: &Path, mib: usize) -> std::path::PathBuf {
    let l = new_layout(&dir.join("layout"), "t");
    let b = dir.join("bundle-setup");
    unpack_rootless(&[], &format!("{}:t", s(&l)), &b, &[]);
    // not very compressible: a counter mixed into every 8 bytes
    let mut data = Vec::with_capacity(mib << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < mib << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(b.join("rootfs/data"), &data).expect("write data");
    ok(&["repack", "--image", &format!("{}:t", s(&l)), s(&b)], &[]);
    l
}

#[test]
fn man_pages_name_every_command_and_render() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("man");
    ok(&["generate", "man", s(&dir)], &[]);
    let expected = [
        "rumoci",
        "rumoci-init",
        "rumoci-new",
        "rumoci-list",
        "rumoci-tag",
        "rumoci-remove",
        "rumoci-stat",
        "rumoci-gc",
        "rumoci-config",
        "rumoci-insert",
        "rumoci-verify",
        "rumoci-sign",
        "rumoci-generate-key",
        "rumoci-copy",
        "rumoci-referrers",
        "rumoci-referrers-list",
        "rumoci-referrers-attach",
        "rumoci-unpack",
        "rumoci-repack",
        "rumoci-umount",
        "rumoci-mount",
        "rumoci-raw",
        "rumoci-raw-add-layer",
        "rumoci-raw-unpack",
        "rumoci-raw-runtime-config",
        "rumoci-driver",
        "rumoci-driver-info",
        "rumoci-driver-test",
        "rumoci-driver-snapshots",
        "rumoci-driver-rm",
        "rumoci-driver-list",
        "rumoci-completion",
    ];
    let man = have("man");
    for name in expected {
        let page = dir.join(format!("{name}.1"));
        let text =
            std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{name}.1 missing: {e}"));
        assert!(text.contains(".TH "), "{name}.1: no .TH");
        // NAME section: `rumoci\-unpack \- …`
        let after = text.split(".SH NAME\n").nth(1).expect("NAME section");
        let first = after.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("{} \\-", name.replace('-', "\\-"))),
            "{name}.1 NAME says {first:?}"
        );
        if man {
            let out = Command::new("man")
                .args(["-l", "-P", "cat"])
                .arg(&page)
                .env("MANWIDTH", "80")
                .output()
                .expect("spawn man");
            assert!(out.status.success(), "man -l {name}.1: {}", stderr(&out));
            let shown = String::from_utf8_lossy(&out.stdout);
            assert!(shown.contains("NAME"), "{name}: {shown}");
            assert!(shown.contains(name), "{name}: {shown}");
        }
    }
    // hidden commands (generate, raw mtree-validate) have none
    assert!(!dir.join("rumoci-generate.1").exists());
}

#[test]
fn completions_are_written_and_bash_parses_them() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("c");
    ok(&["generate", "completions", s(&dir)], &[]);
    for f in ["rumoci.bash", "_rumoci", "rumoci.fish"] {
        let text = std::fs::read_to_string(dir.join(f)).expect(f);
        assert!(text.contains("unpack"), "{f} does not complete unpack");
    }
    run_ok("bash", &["-n", s(&dir.join("rumoci.bash"))]);
    // the old single-shell form stays
    assert!(ok(&["completion", "bash"], &[]).contains("_rumoci"));
}

#[test]
fn install_script_puts_binary_pages_and_completions_under_the_prefix() {
    // scripts/install.sh builds the dist profile, which takes minutes:
    // check what it installs from the same `generate` calls instead, and
    // that the script is valid shell naming those places
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install.sh");
    run_ok("bash", &["-n", s(&script)]);
    let text = std::fs::read_to_string(&script).expect("read install.sh");
    for place in [
        "share/man/man1",
        "share/bash-completion/completions/rumoci",
        "share/zsh/site-functions/_rumoci",
        "share/fish/vendor_completions.d/rumoci.fish",
        "generate man",
        "generate completions",
    ] {
        assert!(text.contains(place), "install.sh does not mention {place}");
    }
}

#[test]
fn ls_json_lists_tags_with_their_descriptors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let l = new_layout(&tmp.path().join("l"), "a");
    ok(&["tag", "--image", &format!("{}:a", s(&l)), "b"], &[]);
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["ls", "--layout", s(&l), "--json"], &[])).expect("json");
    let tags = v["tags"].as_array().expect("tags");
    assert_eq!(tags.len(), 2);
    let want = index_entry(&l, "a");
    assert_eq!(tags[0]["tag"], "a");
    assert_eq!(tags[0]["digest"], want["digest"]);
    assert_eq!(tags[0]["mediaType"], want["mediaType"]);
    assert_eq!(tags[0]["size"], want["size"]);
    assert_eq!(tags[1]["tag"], "b");
    // umoci's form: --json=true
    assert_eq!(
        ok(&["ls", "--layout", s(&l), "--json=true"], &[]),
        ok(&["ls", "--layout", s(&l), "--json"], &[])
    );
}

#[test]
fn verify_json_and_exit_codes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let l = new_layout(&tmp.path().join("l"), "t");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["verify", "--layout", s(&l), "--json"], &[])).expect("json");
    assert_eq!(v["summary"]["ok"], true);
    assert_eq!(v["problems"].as_array().map(Vec::len), Some(0));

    // a config blob with a byte changed: a digest problem, status 1
    let manifest = index_entry(&l, "t");
    let m = read_blob_json(&l, manifest["digest"].as_str().expect("digest"));
    let config = m["config"]["digest"].as_str().expect("config").to_string();
    let p = blob_path(&l, &config);
    let mut bytes = std::fs::read(&p).expect("read config");
    bytes[0] ^= 1;
    std::fs::write(&p, bytes).expect("write");
    let out = run(&["verify", "--layout", s(&l), "--json"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let problems = v["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 1, "{v}");
    assert_eq!(problems[0]["kind"], "digest");
    assert_eq!(problems[0]["digest"], config.as_str());
    assert!(
        problems[0]["path"]
            .as_str()
            .is_some_and(|p| p.contains("tag t"))
    );
    assert!(
        problems[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("digest mismatch"))
    );
    assert_eq!(v["summary"]["problems"], 1);
    assert_eq!(v["summary"]["ok"], false);
    // text form: status 1 too
    assert_eq!(
        run(&["verify", "--layout", s(&l)], &[]).status.code(),
        Some(1)
    );

    // could not run: status 2 (missing layout, bad flag, missing flag)
    let missing = tmp.path().join("nope");
    for args in [
        vec!["verify", "--layout", s(&missing)],
        vec!["verify", "--layout", s(&l), "--bogus"],
        vec!["verify"],
        vec!["verify", "--layout", s(&l), "--log", "loud"],
    ] {
        let out = run(&args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).starts_with("rumoci: "), "{}", stderr(&out));
    }
    // other commands keep umoci's status 1 for usage errors
    let out = run(&["ls", "--bogus"], &[]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn mtree_validate_json_and_exit_codes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let l = new_layout(&tmp.path().join("l"), "t");
    let b = tmp.path().join("b");
    unpack_rootless(&[], &format!("{}:t", s(&l)), &b, &[]);
    let spec = std::fs::read_dir(&b)
        .expect("bundle")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "mtree"))
        .expect("mtree in bundle");
    let rootfs = b.join("rootfs");
    let args = |json: bool| {
        let mut a = vec![
            "raw".to_string(),
            "mtree-validate".into(),
            "-f".into(),
            s(&spec).into(),
            "-p".into(),
            s(&rootfs).into(),
        ];
        if json {
            a.push("--json".into());
        }
        a
    };
    let argv = args;
    let a = argv(true);
    let v: serde_json::Value = serde_json::from_str(&ok(&refs(&a), &[])).expect("json");
    assert_eq!(v["summary"]["ok"], true);

    std::fs::write(rootfs.join("new"), b"x").expect("write");
    std::fs::set_permissions(&rootfs, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    let out = run(&refs(&a), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let diffs = v["differences"].as_array().expect("differences");
    let new = diffs
        .iter()
        .find(|d| d["path"] == "new")
        .expect("new listed");
    assert_eq!(new["kind"], "extra");
    // the root directory's mode changed: modified, naming the keyword
    let root = diffs
        .iter()
        .find(|d| d["path"] == ".")
        .expect("root listed");
    assert_eq!(root["kind"], "modified");
    assert_eq!(root["keywords"], serde_json::json!(["mode"]), "{root}");
    assert_eq!(v["summary"]["differences"], diffs.len());
    let out = run(&refs(&argv(false)), &[]);
    assert_eq!(out.status.code(), Some(1));

    // could not run: status 2
    let mut bad = argv(true);
    bad[3] = s(&tmp.path().join("missing.mtree")).into();
    assert_eq!(run(&refs(&bad), &[]).status.code(), Some(2));
    let out = run(&["raw", "mtree-validate", "-p", s(&rootfs)], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Run `args` on a pseudo-terminal (util-linux `script`); returns what
/// the terminal showed.
fn on_terminal(args: &[&str]) -> Option<String> {
    if !have("script") {
        return None;
    }
    let mut cmd = String::from("exec");
    for a in std::iter::once(rumoci_bin()).chain(args.iter().copied()) {
        cmd.push_str(&format!(" '{}'", a.replace('\'', "'\\''")));
    }
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("XDG_CONFIG_HOME", "/nonexistent/rumoci-test")
        .env_remove("RUMOCI_LOG")
        .output()
        .expect("spawn script");
    assert!(
        out.status.success(),
        "{args:?} on a terminal: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn progress_is_drawn_on_a_terminal_only() {
    let tmp = tempfile::tempdir().expect("tmp");
    let l = image(tmp.path(), 4);
    let img = format!("{}:t", s(&l));

    // unpack: a bar for the layer, with bytes
    let b1 = tmp.path().join("b1");
    let Some(shown) = on_terminal(&["unpack", "--rootless", "--image", &img, s(&b1)]) else {
        return;
    };
    assert!(shown.contains("layer 1/1 ["), "{shown:?}");
    assert!(shown.contains("MiB"), "{shown:?}");

    // repack: the new layer's bytes
    std::fs::write(b1.join("rootfs/more"), vec![7u8; 3 << 20]).expect("write");
    let shown = on_terminal(&["repack", "--image", &img, s(&b1)]).expect("script");
    assert!(shown.contains("new layer"), "{shown:?}");
    assert!(shown.contains("MiB"), "{shown:?}");

    // verify and gc count objects
    let shown = on_terminal(&["verify", "--layout", s(&l)]).expect("script");
    assert!(shown.contains("verify: blobs checked"), "{shown:?}");
    let shown = on_terminal(&["gc", "--layout", s(&l)]).expect("script");
    assert!(shown.contains("gc: blobs examined"), "{shown:?}");

    // -q: nothing on the terminal
    let b2 = tmp.path().join("b2");
    let shown =
        on_terminal(&["-q", "unpack", "--rootless", "--image", &img, s(&b2)]).expect("script");
    assert!(!shown.contains("layer"), "{shown:?}");

    // stderr a pipe: nothing
    let b3 = tmp.path().join("b3");
    let out = run(&["unpack", "--rootless", "--image", &img, s(&b3)], &[]);
    assert!(out.status.success());
    assert_eq!(stderr(&out), "");
    std::fs::write(b3.join("rootfs/more"), b"x").expect("write");
    let out = run(&["repack", "--image", &img, s(&b3)], &[]);
    assert!(out.status.success());
    assert_eq!(stderr(&out), "");
}

#[test]
fn rumoci_log_quiet_and_flags() {
    let tmp = tempfile::tempdir().expect("tmp");
    let l = tmp.path().join("l");
    ok(&["init", "--layout", s(&l)], &[]);
    let img = format!("{}:t", s(&l));
    ok(&["new", "--image", &img], &[]);
    let tag = |env: &[(&str, &str)], extra: &[&str], t: &str| {
        let mut args = extra.to_vec();
        args.extend(["tag", "--image", &img, t]);
        stderr(&run(&args, env))
    };
    // the default is warn: no info lines
    assert_eq!(tag(&[], &[], "a"), "");
    // RUMOCI_LOG as a level, and as a filter directive
    let gc = |env: &[(&str, &str)], extra: &[&str]| {
        let mut args = extra.to_vec();
        args.extend(["gc", "--layout", s(&l)]);
        let out = run(&args, env);
        assert!(out.status.success(), "{}", stderr(&out));
        stderr(&out)
    };
    // an unreferenced blob for gc to report at info level
    let junk = rumoci::oci::Digest::sha256_of(b"junk").to_string();
    let put_junk = || std::fs::write(blob_path(&l, &junk), b"junk").expect("junk");
    put_junk();
    assert!(gc(&[("RUMOCI_LOG", "info")], &[]).contains("removing unreferenced blob"));
    put_junk();
    assert!(gc(&[("RUMOCI_LOG", "rumoci=debug")], &[]).contains("removing unreferenced blob"));
    put_junk();
    // flags override the environment
    assert_eq!(gc(&[("RUMOCI_LOG", "info")], &["--log", "error"]), "");
    put_junk();
    assert_eq!(gc(&[("RUMOCI_LOG", "info")], &["-q"]), "");
    put_junk();
    assert!(gc(&[("RUMOCI_LOG", "error")], &["--verbose"]).contains("removing unreferenced blob"));
    // -q keeps errors, once, with one prefix
    let out = run(&["-q", "ls", "--layout", s(&tmp.path().join("none"))], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    // a bad RUMOCI_LOG is an error naming it
    let out = run(&["ls", "--layout", s(&l)], &[("RUMOCI_LOG", "x=y=z")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("rumoci: RUMOCI_LOG "),
        "{}",
        stderr(&out)
    );
    // -q with --verbose is refused
    let out = run(&["-q", "--verbose", "ls", "--layout", s(&l)], &[]);
    assert!(stderr(&out).contains("mutually exclusive"));
}

#[test]
fn errors_are_one_line_with_one_prefix_and_each_path_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let x = tmp.path().join("x");
    let xs = s(&x);
    for args in [
        vec!["ls", "--layout", xs],
        vec!["stat", "--image", &format!("{xs}:t")],
        vec!["gc", "--layout", xs],
    ] {
        let out = run(&args, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert_eq!(err.matches("rumoci:").count(), 1, "{args:?}: {err}");
        assert_eq!(err.matches(xs).count(), 1, "{args:?}: {err}");
    }
    // creating over an existing layout names it once
    let l = tmp.path().join("l");
    ok(&["init", "--layout", s(&l)], &[]);
    let err = stderr(&run(&["init", "--layout", s(&l)], &[]));
    assert_eq!(err.matches(s(&l)).count(), 1, "{err}");

    // clap's usage errors: the same one-line form
    for args in [
        vec!["ls", "--bogus"],
        vec!["unpack", "--image", "x:t"],
        vec!["frobnicate"],
    ] {
        let out = run(&args, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(err.starts_with("rumoci: "), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(!err.contains("error:"), "{err}");
    }
    let err = stderr(&run(&["unpack", "--image", "x:t"], &[]));
    assert!(
        err.contains("<BUNDLE>") && err.contains("usage: rumoci unpack"),
        "{err}"
    );
    // --help and --version are clap's/umoci's as before
    let help = ok(&["ls", "--help"], &[]);
    assert!(help.starts_with("NAME:\n   rumoci list - "), "{help}");
    assert!(ok(&["--version"], &[]).starts_with("rumoci version "));
}

#[test]
fn config_file_names_drivers_and_defaults() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = tmp.path().join("config.toml");
    std::fs::write(
        &cfg,
        "[driver.plain]\npath = \"dir\"\ntimeout = 5\n\n[driver.cache]\npath = \"plugins/layer_cache.wasm\"\ndir = \"store\"\nmemory = \"1G\"\noptions = { max-size = \"10G\" }\n\n[defaults]\ndrivers = [\"plain\"]\n[defaults.command.unpack]\ndrivers = [\"cache\"]\n",
    )
    .expect("write config");
    let env = [("RUMOCI_CONFIG", s(&cfg))];
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["driver", "list", "--json"], &env)).expect("json");
    assert_eq!(v["config"], s(&cfg));
    assert_eq!(v["found"], true);
    let drivers = v["drivers"].as_array().expect("drivers");
    let cache = drivers
        .iter()
        .find(|d| d["name"] == "cache")
        .expect("cache");
    let base = s(tmp.path());
    assert_eq!(
        cache["spec"],
        format!("{base}/plugins/layer_cache.wasm,dir={base}/store,memory=1G,opt.max-size=10G")
    );
    assert_eq!(v["defaults"]["drivers"][0], "plain");
    assert_eq!(v["defaults"]["command"]["unpack"]["drivers"][0], "cache");
    let text = ok(&["driver", "list"], &env);
    assert!(text.contains(&format!("config: {}", s(&cfg))), "{text}");
    assert!(text.contains("driver plain: dir,timeout=5"), "{text}");

    // `--driver plain` works; the global default (plain) is used by ls
    let l = tmp.path().join("l");
    ok(&["--driver", "plain", "init", "--layout", s(&l)], &env);
    ok(&["ls", "--layout", s(&l)], &env);
    // the flag expands with overrides after the name, parsed by the
    // --driver grammar (a built-in takes no dir=)
    let out = run(&["--driver", "plain,dir=/x", "ls", "--layout", s(&l)], &env);
    assert!(
        stderr(&out).contains("\"dir,timeout=5,dir=/x\""),
        "{}",
        stderr(&out)
    );
    // unpack's default is the cache plugin, which does not exist here:
    // the expanded path shows in the error; a flag or RUMOCI_DRIVER
    // overrides the file
    let img = format!("{}:t", s(&l));
    ok(&["new", "--image", &img], &env);
    let out = run(&["unpack", "--image", &img, s(&tmp.path().join("b"))], &env);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("layer_cache.wasm"),
        "{}",
        stderr(&out)
    );
    unpack_rootless(&["--driver", "dir"], &img, &tmp.path().join("b1"), &env);
    unpack_rootless(
        &[],
        &img,
        &tmp.path().join("b2"),
        &[("RUMOCI_CONFIG", s(&cfg)), ("RUMOCI_DRIVER", "plain")],
    );

    // a broken file: one line naming the file and the line
    std::fs::write(&cfg, "[driver.x]\npath = \"a\"\ntimeout = \n").expect("write");
    let out = run(&["ls", "--layout", s(&l)], &env);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("rumoci: config file {} line 3", s(&cfg))),
        "{err}"
    );
    std::fs::write(&cfg, "[driver.x]\npth = \"a\"\n").expect("write");
    let err = stderr(&run(&["ls", "--layout", s(&l)], &env));
    assert!(err.contains("line 2") && err.contains("pth"), "{err}");

    // XDG_CONFIG_HOME is where the file is looked for by default
    let xdg = tmp.path().join("xdg");
    std::fs::create_dir_all(xdg.join("rumoci")).expect("mkdir");
    std::fs::write(
        xdg.join("rumoci/config.toml"),
        "[driver.mine]\npath = \"dir\"\n",
    )
    .expect("write");
    let out = Command::new(rumoci_bin())
        .args(["driver", "list"])
        .env("XDG_CONFIG_HOME", &xdg)
        .env_remove("RUMOCI_CONFIG")
        .output()
        .expect("spawn");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("driver mine: dir"), "{text}");
}

/// `driver info` and `driver snapshots` with `--json`; a config-file
/// driver naming the real layer-cache plugin; the snapshot copy's progress.
#[test]
fn driver_json_and_named_layer_cache() {
    let wasm = plugin_wasm(&["layer-cache"], "layer-cache");
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = [("XDG_CACHE_HOME", cache_home())];
    let cache_env: Vec<(&str, &str)> = cache
        .iter()
        .map(|(k, v)| (*k, v.to_str().expect("utf-8")))
        .collect();

    let v: serde_json::Value =
        serde_json::from_str(&ok(&["driver", "info", &wasm, "--json"], &cache_env)).expect("json");
    assert_eq!(v["name"], "layer-cache");
    assert!(v["version"].is_string());
    assert!(
        v["capabilities"]
            .as_array()
            .is_some_and(|c| c.iter().any(|x| x == "layer-store")),
        "{v}"
    );

    let cfg = tmp.path().join("config.toml");
    let store = tmp.path().join("store");
    std::fs::write(
        &cfg,
        format!(
            "[driver.cache]\npath = \"{wasm}\"\ndir = \"{}\"\ntimeout = 60\n",
            s(&store)
        ),
    )
    .expect("write config");
    let mut env = cache_env.clone();
    env.push(("RUMOCI_CONFIG", s(&cfg)));

    let l = image(tmp.path(), 1);
    let img = format!("{}:t", s(&l));
    unpack_rootless(&["--driver", "cache"], &img, &tmp.path().join("b1"), &env);
    let v: serde_json::Value = serde_json::from_str(&ok(
        &["--driver", "cache", "driver", "snapshots", "--json"],
        &env,
    ))
    .expect("json");
    let snaps = v["snapshots"].as_array().expect("snapshots");
    assert!(!snaps.is_empty(), "{v}");
    for sn in snaps {
        assert!(sn["name"].is_string(), "{sn}");
        assert!(
            ["active", "view", "committed"].contains(&sn["kind"].as_str().unwrap_or_default()),
            "{sn}"
        );
        if sn["kind"] == "committed" {
            assert!(sn["size"].is_u64() && sn["inodes"].is_u64(), "{sn}");
        }
    }
    let committed = snaps.iter().filter(|s| s["kind"] == "committed").count();
    let text = ok(&["--driver", "cache", "driver", "snapshots"], &env);
    assert_eq!(
        text.lines().filter(|l| l.contains("committed")).count(),
        committed
    );

    // the second unpack copies the cached chain out: progress on a terminal
    if !have("script") {
        return;
    }
    let b2 = tmp.path().join("b2");
    let cmd = format!(
        "exec '{}' --driver cache unpack --rootless --image '{img}' '{}'",
        rumoci_bin(),
        s(&b2)
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .envs(env.iter().copied())
        .output()
        .expect("spawn script");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("copy snapshot "), "{shown:?}");
}
