//! Crash safety and concurrent writers: kill -9 at varying moments leaves a
//! valid layout (old tag intact, no partial blob visible, temporaries
//! cleaned by the next gc); gc never sweeps what a concurrent writer needs.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// A source tree big enough that inserting it takes a noticeable time.
fn big_source(root: &Path) {
    for d in 0..20 {
        let dir = root.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..50 {
            let data: Vec<u8> = (0..20_000u32).map(|i| (i * 31 + f * 7 + d) as u8).collect();
            std::fs::write(dir.join(format!("f{f}")), data).expect("write");
        }
    }
}

fn blob_count(l: &Path) -> usize {
    std::fs::read_dir(l.join("blobs/sha256"))
        .expect("blobs")
        .count()
}

#[test]
fn kill_9_at_any_moment_leaves_a_valid_layout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    big_source(&src);
    let l = tmp.path().join("l");
    rumoci_ok(&["init", "--layout", s(&l)]);
    let img = format!("{}:t", s(&l));
    rumoci_ok(&["new", "--image", &img]);
    rumoci_ok(&["insert", "--image", &img, s(&src), "/base"]);
    let base_stat = rumoci_ok(&["stat", "--json", "--image", &img]);
    // a bundle with a big change, repacked (and killed) again and again
    let bundle = tmp.path().join("bundle");
    rumoci_ok(&["unpack", "--image", &img, s(&bundle)]);
    big_source(&bundle.join("rootfs/changed"));
    // keep the bundle's source image reachable while `t` moves on
    rumoci_ok(&["tag", "--image", &img, "bundle-source"]);
    let rootfs_tar = tmp.path().join("rootfs.tar");
    rumoci_ok(&["export", "--image", &img, "-o", s(&rootfs_tar)]);

    let commands: Vec<Vec<String>> = vec![
        vec![
            "insert".into(),
            "--image".into(),
            img.clone(),
            s(&src).into(),
            "/again".into(),
        ],
        vec![
            "config".into(),
            "--image".into(),
            img.clone(),
            "--config.env".into(),
            "K=V".into(),
        ],
        vec!["tag".into(), "--image".into(), img.clone(), "other".into()],
        vec!["gc".into(), "--layout".into(), s(&l).into()],
        vec![
            "repack".into(),
            "--image".into(),
            img.clone(),
            s(&bundle).into(),
        ],
        // a killed unpack only leaves its own partial bundle behind
        vec!["unpack".into(), "--image".into(), img.clone()],
        // image surgery: the new layer's blob before the tag, the export's
        // file only once complete
        vec![
            "squash".into(),
            "--image".into(),
            img.clone(),
            "--tag".into(),
            "squashed".into(),
        ],
        vec![
            "squash".into(),
            "--image".into(),
            img.clone(),
            "--from".into(),
            "1".into(),
        ],
        vec![
            "import".into(),
            "--image".into(),
            format!("{}:imported", s(&l)),
            s(&rootfs_tar).into(),
        ],
        vec![
            "export".into(),
            "--image".into(),
            img.clone(),
            "-o".into(),
            s(&tmp.path().join("exported.tar")).into(),
        ],
    ];
    for round in 0..40u64 {
        let mut cmd = commands[(round % commands.len() as u64) as usize].clone();
        if cmd[0] == "unpack" {
            cmd.push(s(&tmp.path().join(format!("killed-unpack-{round}"))).into());
        }
        let cmd = &cmd;
        let mut child = Command::new(rumoci_bin())
            .args(cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_micros(500 + round * 1_700));
        let _ = child.kill();
        let _ = child.wait();
        // an export's file is there complete or not at all
        let exported = tmp.path().join("exported.tar");
        if cmd[0] == "export" && exported.exists() {
            run_ok("tar", &["-tf", s(&exported)]);
            std::fs::remove_file(&exported).expect("rm");
        }
        // the layout is valid and the tag resolves to the old or the new image
        let out = rumoci(&["verify", "--layout", s(&l)]);
        assert!(
            out.status.success(),
            "round {round} ({cmd:?}): verify failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let st = rumoci_ok(&["stat", "--json", "--image", &img]);
        let v: serde_json::Value = serde_json::from_str(&st).expect("json");
        assert!(
            !v["manifest"]["blob"]["layers"]
                .as_array()
                .expect("layers")
                .is_empty()
        );
        // no temporary is visible as a blob
        for e in std::fs::read_dir(l.join("blobs/sha256")).expect("blobs") {
            let name = e.expect("entry").file_name();
            assert!(
                rumoci::oci::Digest::from_parts(
                    rumoci::oci::Algorithm::Sha256,
                    name.to_str().expect("utf8")
                )
                .is_ok(),
                "stray file in blobs: {name:?}"
            );
        }
    }
    // gc removes the temporaries of killed writers and the orphaned blobs
    rumoci_ok(&["gc", "--layout", s(&l)]);
    let leftovers: Vec<_> = std::fs::read_dir(&l)
        .expect("layout")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".rumoci-tmp-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporaries left after gc: {leftovers:?}"
    );
    rumoci_ok(&["verify", "--layout", s(&l)]);
    // the next repack succeeds, and the tag unpacks
    rumoci_ok(&["repack", "--image", &img, s(&bundle)]);
    let out = tmp.path().join("after");
    rumoci_ok(&["unpack", "--image", &img, s(&out)]);
    assert!(out.join("rootfs/changed/d19/f49").is_file());
    // the original content is still there
    let v0: serde_json::Value = serde_json::from_str(&base_stat).expect("json");
    let first_layer = &v0["manifest"]["blob"]["layers"][0]["digest"];
    assert!(blob_path(&l, first_layer.as_str().expect("digest")).exists());
}

#[test]
fn gc_never_sweeps_what_a_concurrent_writer_needs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    big_source(&src);
    let l = tmp.path().join("l");
    rumoci_ok(&["init", "--layout", s(&l)]);
    rumoci_ok(&["new", "--image", &format!("{}:t0", s(&l))]);
    let gc_loop = format!(
        "for i in $(seq 1 40); do {} gc --layout {} || exit 1; done",
        rumoci_bin(),
        s(&l)
    );
    let mut gc = Command::new("sh")
        .args(["-c", &gc_loop])
        .spawn()
        .expect("spawn gc");
    for i in 0..6 {
        rumoci_ok(&[
            "insert",
            "--image",
            &format!("{}:t0", s(&l)),
            "--tag",
            &format!("t{}", i + 1),
            s(&src),
            &format!("/x{i}"),
        ]);
        rumoci_ok(&[
            "config",
            "--image",
            &format!("{}:t{}", s(&l), i + 1),
            "--config.env",
            "A=1",
        ]);
    }
    assert!(gc.wait().expect("wait").success());
    rumoci_ok(&["verify", "--layout", s(&l)]);
    assert!(blob_count(&l) > 6);
}

/// Many writers changing one tag at once (config, insert, raw add-layer),
/// with tag, rm and gc running beside them: every change survives, in one
/// image, and the layout stays valid. (The Go umoci overwrites the tag
/// with whatever it computed, losing the other writers' changes.)
#[test]
fn concurrent_writers_never_lose_an_update() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path().join("l");
    rumoci_ok(&["init", "--layout", s(&l)]);
    let img = format!("{}:t", s(&l));
    rumoci_ok(&["new", "--image", &img]);
    let src = tmp.path().join("file");
    std::fs::write(&src, b"inserted\n").expect("write");
    let mut children = Vec::new();
    let spawn = |args: Vec<String>| {
        Command::new(rumoci_bin())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    for i in 0..6 {
        children.push(spawn(vec![
            "config".into(),
            "--image".into(),
            img.clone(),
            "--config.env".into(),
            format!("K{i}=v{i}"),
        ]));
        children.push(spawn(vec![
            "insert".into(),
            "--image".into(),
            img.clone(),
            s(&src).into(),
            format!("/f{i}"),
        ]));
        children.push(spawn(vec![
            "tag".into(),
            "--image".into(),
            img.clone(),
            format!("copy{i}"),
        ]));
        children.push(spawn(vec!["gc".into(), "--layout".into(), s(&l).into()]));
        if i % 2 == 1 {
            children.push(spawn(vec![
                "rm".into(),
                "--image".into(),
                format!("{}:copy{}", s(&l), i - 1),
            ]));
        }
    }
    for c in children {
        let out = c.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    rumoci_ok(&["verify", "--layout", s(&l)]);
    let st: serde_json::Value =
        serde_json::from_str(&rumoci_ok(&["stat", "--json", "--image", &img])).expect("json");
    let env = st["config"]["blob"]["config"]["Env"].to_string();
    for i in 0..6 {
        assert!(env.contains(&format!("K{i}=v{i}")), "K{i} lost: {env}");
    }
    let layers = st["manifest"]["blob"]["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 6, "an inserted layer was lost");
    let b = tmp.path().join("b");
    rumoci_ok(&["raw", "unpack", "--image", &img, s(&b)]);
    for i in 0..6 {
        assert!(b.join(format!("f{i}")).is_file(), "f{i} lost");
    }
}

/// `tag` reads the source tag and writes the new one as a writer: while gc
/// holds the layout (here: the test holds gc's exclusive lock), it waits,
/// so gc can never sweep the manifest it is about to tag. (CI once caught
/// the race: a tag copied from a moving tag dangled after a concurrent gc.)
#[test]
fn tag_waits_for_a_running_gc() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path().join("l");
    rumoci_ok(&["init", "--layout", s(&l)]);
    let img = format!("{}:t", s(&l));
    rumoci_ok(&["new", "--image", &img]);
    waits_for_gc_lock(
        &l,
        Command::new(rumoci_bin()).args(["tag", "--image", &img, "copy"]),
        "layout",
        || assert!(!rumoci_ok(&["ls", "--layout", s(&l)]).contains("copy")),
    );
    assert!(rumoci_ok(&["ls", "--layout", s(&l)]).contains("copy"));
}
