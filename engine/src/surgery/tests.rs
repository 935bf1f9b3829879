//! The replay and the plan on hand-made headers, and sparse expansion.

use std::io::Read;

use super::plan::{Emit, Marker, Replay};
use super::*;
use std::collections::BTreeSet;

fn hdr(kind: Kind, path: &str, link: &str) -> Header {
    let mut h = marker_header();
    h.kind = kind;
    h.path = BString::from(path);
    h.link = BString::from(link);
    h
}

fn file(p: &str) -> Header {
    hdr(Kind::Regular, p, "")
}

fn dir(p: &str) -> Header {
    hdr(Kind::Dir, p, "")
}

/// Replay `layers` (the range starting at `start`) and plan.
fn plan_of(layers: &[Vec<Header>], start: usize) -> plan::Plan {
    let mut r = Replay::new();
    for (i, l) in layers.iter().enumerate() {
        if i == start {
            r.start_range(start);
        }
        r.start_layer();
        for (j, h) in l.iter().enumerate() {
            r.apply((i, j as u64), h).expect("apply");
        }
    }
    r.plan()
}

#[test]
fn whiteouts_are_kept_only_when_the_base_has_their_target() {
    let p = plan_of(
        &[
            vec![dir("a"), file("a/x"), dir("e")],
            vec![
                file("b"),
                file("a/.wh.x"),
                file(".wh.b"),
                file(".wh.none"),
                file("e/.wh..wh..opq"),
            ],
        ],
        1,
    );
    let want: BTreeSet<Marker> = [Marker::Whiteout("a/x".into())].into_iter().collect();
    assert_eq!(p.markers, want);
    assert_eq!(p.dropped_markers, 3);
    // a whiteout after an entry of its own layer leaves it (the extractor's
    // rule): `b` stays
    assert_eq!(p.emits.len(), 1, "{:?}", p.emits);
    assert_eq!(p.emits[&(1, 0)].primary, "b");
}

#[test]
fn a_link_whose_target_is_overridden_carries_the_content() {
    let p = plan_of(
        &[vec![file("a"), hdr(Kind::Link, "b", "a")], vec![file("a")]],
        0,
    );
    let first = p.emits.get(&(0, 0)).expect("old a");
    assert_eq!(first.primary, "b");
    assert!(first.links.is_empty());
    let second = p.emits.get(&(1, 0)).expect("new a");
    assert_eq!(second.primary, "a");
    assert!(p.markers.is_empty());
}

#[test]
fn links_follow_their_content_and_base_links_use_a_path_in_place() {
    let p = plan_of(
        &[
            vec![file("base"), hdr(Kind::Link, "base2", "base")],
            vec![
                hdr(Kind::Link, "l", "base"),
                file("z"),
                hdr(Kind::Link, "y", "z"),
            ],
        ],
        1,
    );
    assert_eq!(p.base_links, vec![("l".into(), "base".into())]);
    let Emit { primary, links } = p.emits.get(&(1, 1)).expect("z");
    assert_eq!(primary, "y");
    assert_eq!(links, &vec![BString::from("z")]);
}

#[test]
fn a_replaced_base_directory_gets_a_whiteout_and_parents_are_listed_first() {
    let p = plan_of(
        &[
            vec![dir("d"), file("d/old")],
            vec![file("d")],
            vec![dir("d"), dir("d/sub"), file("d/sub/f")],
        ],
        1,
    );
    assert!(p.markers.contains(&Marker::Whiteout("d".into())));
    let dirs: Vec<&BString> = p.dirs.iter().map(|(p, _)| p).collect();
    assert_eq!(dirs, ["d", "d/sub"]);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let mut r = Replay::new();
    r.start_range(0);
    r.start_layer();
    assert!(r.apply((0, 0), &hdr(Kind::Link, "l", "missing")).is_err());
    assert!(r.apply((0, 1), &file("./")).is_err());
    assert!(r.apply((0, 2), &hdr(Kind::Other(b'D'), "x", "")).is_err());
    r.apply((0, 3), &dir("d")).expect("dir");
    assert!(r.apply((0, 4), &hdr(Kind::Link, "l", "d")).is_err());
    r.apply((0, 5), &hdr(Kind::Symlink, "s", "d"))
        .expect("symlink");
    assert!(r.apply((0, 6), &file("s/x")).is_err());
    assert!(r.apply((0, 7), &file("d/.wh.")).is_err());
}

#[test]
fn sparse_data_is_expanded_with_zeros() {
    let segments = [
        Segment { offset: 2, len: 3 },
        Segment { offset: 5, len: 0 },
        Segment { offset: 8, len: 2 },
    ];
    let mut r = SparseExpand {
        inner: &b"abcde"[..],
        segments: &segments,
        next: 0,
        pos: 0,
        size: 12,
    };
    let mut out = Vec::new();
    r.read_to_end(&mut out).expect("read");
    assert_eq!(out, b"\0\0abc\0\0\0de\0\0");
}

#[test]
fn a_whiteout_after_writes_beneath_base_content_is_refused() {
    let mut r = Replay::new();
    r.start_layer();
    for (j, h) in [dir("d"), dir("d/c"), file("d/c/old"), file("d/x")]
        .iter()
        .enumerate()
    {
        r.apply((0, j as u64), h).expect("base");
    }
    r.start_range(1);
    r.start_layer();
    r.apply((1, 0), &file("d/c/new")).expect("write beneath");
    let e = r
        .apply((1, 1), &file("d/.wh..wh..opq"))
        .expect_err("refused");
    assert!(e.to_string().contains("cannot be merged"), "{e}");
    // the usual order (the marker first) is fine
    let p = plan_of(
        &[
            vec![dir("d"), dir("d/c"), file("d/c/old")],
            vec![file("d/.wh..wh..opq"), file("d/c/new")],
        ],
        1,
    );
    assert!(p.markers.contains(&Marker::Opaque("d".into())));
}
