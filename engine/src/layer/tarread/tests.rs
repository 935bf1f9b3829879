//! The reader on archives built block by block: each of Go's readings,
//! each refusal, each sparse format.

use super::*;

/// A header block: `fields` are (offset, bytes) written over a zeroed
/// block; the checksum is computed.
fn block(fields: &[(usize, &[u8])]) -> Vec<u8> {
    let mut b = vec![0u8; 512];
    for (off, v) in fields {
        b[*off..*off + v.len()].copy_from_slice(v);
    }
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    b
}

fn oct(n: u64, width: usize) -> Vec<u8> {
    format!("{n:0w$o}\0", w = width - 1).into_bytes()
}

const USTAR: &[u8] = b"ustar\x0000";
const GNU: &[u8] = b"ustar  \0";

/// A member header of `format` (magic) with name, type and size.
fn hdr(magic: &[u8], name: &[u8], typeflag: u8, size: u64) -> Vec<u8> {
    block(&[
        (0, name),
        (100, &oct(0o644, 8)),
        (108, &oct(1000, 8)),
        (116, &oct(1000, 8)),
        (124, &oct(size, 12)),
        (136, &oct(1_600_000_000, 12)),
        (156, &[typeflag]),
        (257, magic),
    ])
}

/// `data` padded to whole blocks.
fn padded(data: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    d.resize(data.len().div_ceil(512) * 512, 0);
    d
}

fn member(magic: &[u8], name: &[u8], typeflag: u8, data: &[u8]) -> Vec<u8> {
    [hdr(magic, name, typeflag, data.len() as u64), padded(data)].concat()
}

fn pax_rec(k: &str, v: &[u8]) -> Vec<u8> {
    let body_len = 1 + k.len() + 1 + v.len() + 1;
    let mut n = body_len + 1;
    while format!("{n}").len() + body_len != n {
        n += 1;
    }
    [format!("{n} {k}=").into_bytes(), v.to_vec(), b"\n".to_vec()].concat()
}

fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
    let data: Vec<u8> = records.iter().flat_map(|(k, v)| pax_rec(k, v)).collect();
    member(USTAR, b"PaxHeaders/x", b'x', &data)
}

fn end() -> Vec<u8> {
    vec![0u8; 1024]
}

/// Every member: (header, data).
fn read(archive: &[u8]) -> Result<Vec<(Header, Vec<u8>)>, TarError> {
    let mut r = Reader::new(archive);
    let mut out = Vec::new();
    while let Some(h) = r.next_header()? {
        let mut d = Vec::new();
        r.data().read_to_end(&mut d)?;
        out.push((h, d));
    }
    Ok(out)
}

fn names(archive: &[u8]) -> Vec<String> {
    read(archive)
        .expect("read")
        .into_iter()
        .map(|(h, _)| h.path.to_string())
        .collect()
}

#[test]
fn plain_members_and_data() {
    let a = [
        member(USTAR, b"a", b'0', b"hello"),
        member(USTAR, b"d/", b'5', b""),
        end(),
    ]
    .concat();
    let m = read(&a).expect("read");
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].0.kind, Kind::Regular);
    assert_eq!(m[0].1, b"hello");
    assert_eq!(m[0].0.uid, 1000);
    assert_eq!(m[0].0.mtime, (1_600_000_000, 0));
    assert_eq!(m[1].0.kind, Kind::Dir);
}

#[test]
fn gnu_long_name_cut_at_nul() {
    let a = [
        member(GNU, b"././@LongLink", b'L', b"long/name\0garbage"),
        member(GNU, b"short", b'0', b"x"),
        end(),
    ]
    .concat();
    assert_eq!(names(&a), ["long/name"]);
}

#[test]
fn repeated_extended_headers_last_wins() {
    let a = [
        member(GNU, b"././@LongLink", b'L', b"first"),
        member(GNU, b"././@LongLink", b'L', b"second"),
        member(GNU, b"short", b'0', b"x"),
        pax(&[("path", b"p1"), ("uid", b"7")]),
        pax(&[("path", b"p2")]),
        member(USTAR, b"short", b'0', b"x"),
        end(),
    ]
    .concat();
    let m = read(&a).expect("read");
    assert_eq!(m[0].0.path, "second");
    assert_eq!(m[1].0.path, "p2");
    // the first PAX header is replaced whole, as in Go
    assert_eq!(m[1].0.uid, 1000);
}

#[test]
fn pax_records_override_the_header() {
    let a = [
        pax(&[
            ("uid", b"3000000"),
            ("gid", b"42"),
            ("mtime", b"1350244992.023960108"),
            ("atime", b"1350244993"),
            ("SCHILY.xattr.user.k", b"v\0w"),
            ("linkpath", b""),
        ]),
        member(USTAR, b"f", b'0', b"abc"),
        end(),
    ]
    .concat();
    let m = read(&a).expect("read");
    let h = &m[0].0;
    assert_eq!((h.uid, h.gid), (3_000_000, 42));
    assert_eq!(h.mtime, (1350244992, 23960108));
    assert_eq!(h.atime, Some((1350244993, 0)));
    assert_eq!(h.xattrs["user.k"], b"v\0w");
    assert_eq!(m[0].1, b"abc");
}

#[test]
fn pax_size_overrides_and_stays_in_step() {
    let data = vec![b'y'; 2000];
    let a = [
        pax(&[("size", b"2000")]),
        hdr(USTAR, b"f", b'0', 0),
        padded(&data),
        member(USTAR, b"g", b'0', b"z"),
        end(),
    ]
    .concat();
    let m = read(&a).expect("read");
    assert_eq!(m[0].1, data);
    assert_eq!(m[1].0.path, "g");
}

#[test]
fn v7_directory_by_trailing_slash_root_included() {
    let a = [
        hdr(b"", b"./", 0, 0),
        hdr(b"", b"dir/", 0, 0),
        member(b"", b"file", 0, b"x"),
        end(),
    ]
    .concat();
    let kinds: Vec<Kind> = read(&a)
        .expect("read")
        .into_iter()
        .map(|(h, _)| h.kind)
        .collect();
    assert_eq!(kinds, [Kind::Dir, Kind::Dir, Kind::Regular]);
}

#[test]
fn go17_prefix_in_gnu_header() {
    // Go 1.7's writer put a ustar prefix into a GNU header's atime/ctime
    let prefix = "a".repeat(40);
    let b = block(&[
        (0, b"foo"),
        (100, &oct(0o644, 8)),
        (124, &oct(0, 12)),
        (156, b"0"),
        (257, GNU),
        (345, prefix.as_bytes()),
    ]);
    let a = [b, end()].concat();
    assert_eq!(names(&a), [format!("{prefix}/foo")]);
    // a real GNU atime is not a prefix
    let b = block(&[
        (0, b"foo"),
        (124, &oct(0, 12)),
        (156, b"0"),
        (257, GNU),
        (345, &oct(1234, 12)),
    ]);
    let m = read(&[b, end()].concat()).expect("read");
    assert_eq!(m[0].0.path, "foo");
    assert_eq!(m[0].0.atime, Some((1234, 0)));
}

#[test]
fn ustar_prefix_joins_the_name() {
    let b = block(&[
        (0, b"name"),
        (124, &oct(0, 12)),
        (156, b"0"),
        (257, USTAR),
        (345, b"some/dir"),
    ]);
    assert_eq!(names(&[b, end()].concat()), ["some/dir/name"]);
}

#[test]
fn header_only_types_carry_no_data() {
    // a directory with a size field and no data: the next header follows
    let a = [
        hdr(USTAR, b"d/", b'5', 1000),
        member(USTAR, b"f", b'0', b"x"),
        end(),
    ]
    .concat();
    assert_eq!(names(&a), ["d/", "f"]);
}

#[test]
fn global_header_is_returned_and_applies_to_nothing() {
    let data = pax_rec("comment", b"git commit id");
    let a = [
        member(USTAR, b"pax_global_header", b'g', &data),
        member(USTAR, b"f", b'0', b"x"),
        end(),
    ]
    .concat();
    let m = read(&a).expect("read");
    assert_eq!(m[0].0.kind, Kind::Global);
    assert_eq!(m[1].0.path, "f");
}

#[test]
fn ends_the_way_go_accepts() {
    // no end-of-archive blocks
    let a = member(USTAR, b"f", b'0', b"x");
    assert_eq!(names(&a), ["f"]);
    // the last member's padding cut off
    let mut a = member(USTAR, b"f", b'0', b"x");
    a.truncate(512 + 1);
    assert_eq!(names(&a), ["f"]);
    // one zero block
    let a = [member(USTAR, b"f", b'0', b"x"), vec![0; 512]].concat();
    assert_eq!(names(&a), ["f"]);
}

#[test]
fn refusals() {
    // a zero block then a header
    let a = [
        member(USTAR, b"f", b'0', b"x"),
        vec![0; 512],
        member(USTAR, b"g", b'0', b"x"),
    ]
    .concat();
    assert!(read(&a).is_err());
    // bad checksum
    let mut a = member(USTAR, b"f", b'0', b"x");
    a[0] = b'g';
    let e = read(&a).expect_err("checksum");
    assert!(e.to_string().contains("checksum"), "{e}");
    // truncated data
    let mut a = member(USTAR, b"f", b'0', &[b'x'; 100]);
    a.truncate(512 + 50);
    assert!(read(&a).is_err());
    // a header cut short
    let a = member(USTAR, b"f", b'0', b"x");
    assert!(read(&a[..100]).is_err());
    // a PAX path with a NUL
    let a = [
        pax(&[("path", b"a\0b")]),
        member(USTAR, b"f", b'0', b""),
        end(),
    ]
    .concat();
    assert!(read(&a).is_err());
    // a malformed number
    let mut b = hdr(USTAR, b"f", b'0', 0);
    b[108..116].copy_from_slice(b"0000x09\0");
    let a = [block_fix(b), end()].concat();
    let e = read(&a).expect_err("uid");
    assert!(e.to_string().contains("uid"), "{e}");
}

/// Recompute the checksum of an edited header.
fn block_fix(b: Vec<u8>) -> Vec<u8> {
    let fields: Vec<(usize, &[u8])> = vec![(0, &b[..148]), (156, &b[156..])];
    block(&fields)
}

#[test]
fn oversized_extensions_refused_before_buffering() {
    let limit = MAX_TAR_EXTENSION;
    // the header claims more than the limit: refused from the header alone
    let a = [
        hdr(GNU, b"././@LongLink", b'L', limit + 1),
        vec![b'n'; 4096],
    ]
    .concat();
    let e = read(&a).expect_err("too long");
    assert!(e.to_string().contains("GNU long name"), "{e}");
    assert!(e.to_string().contains("exceeds the limit"), "{e}");
}

/// The real content of a sparse member: its segments at their offsets.
fn expand(h: &Header, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; h.size as usize];
    let mut at = 0;
    for s in h.sparse.as_ref().expect("sparse") {
        out[s.offset as usize..(s.offset + s.len) as usize]
            .copy_from_slice(&data[at..at + s.len as usize]);
        at += s.len as usize;
    }
    out
}

fn want_sparse() -> Vec<u8> {
    let mut v = vec![0u8; 20000];
    v[1000..1005].copy_from_slice(b"hello");
    v[15000..15005].copy_from_slice(b"world");
    v
}

#[test]
fn sparse_pax_01() {
    let a = [
        pax(&[
            ("GNU.sparse.major", b"0"),
            ("GNU.sparse.minor", b"1"),
            ("GNU.sparse.name", b"real/name"),
            ("GNU.sparse.realsize", b"20000"),
            ("GNU.sparse.numblocks", b"2"),
            ("GNU.sparse.map", b"1000,5,15000,5"),
        ]),
        member(USTAR, b"GNUSparseFile.0/name", b'0', b"helloworld"),
        end(),
    ]
    .concat();
    let m = read(&a).expect("read");
    assert_eq!(m[0].0.path, "real/name");
    assert_eq!(m[0].0.size, 20000);
    assert_eq!(expand(&m[0].0, &m[0].1), want_sparse());
}

#[test]
fn sparse_pax_00() {
    let a = [
        pax(&[
            ("GNU.sparse.size", b"20000"),
            ("GNU.sparse.numblocks", b"2"),
            ("GNU.sparse.offset", b"1000"),
            ("GNU.sparse.numbytes", b"5"),
            ("GNU.sparse.offset", b"15000"),
            ("GNU.sparse.numbytes", b"5"),
            ("path", b"name00"),
        ]),
        member(USTAR, b"GNUSparseFile.0/name", b'0', b"helloworld"),
        end(),
    ]
    .concat();
    let m = read(&a).expect("read");
    assert_eq!(m[0].0.path, "name00");
    assert_eq!(expand(&m[0].0, &m[0].1), want_sparse());
}

#[test]
fn sparse_pax_10() {
    let mut data = padded(b"2\n1000\n5\n15000\n5\n");
    data.extend_from_slice(b"helloworld");
    let a = [
        pax(&[
            ("GNU.sparse.major", b"1"),
            ("GNU.sparse.minor", b"0"),
            ("GNU.sparse.name", b"name10"),
            ("GNU.sparse.realsize", b"20000"),
        ]),
        member(USTAR, b"GNUSparseFile.0/name", b'0', &data),
        member(USTAR, b"next", b'0', b"n"),
        end(),
    ]
    .concat();
    let m = read(&a).expect("read");
    assert_eq!(m[0].0.path, "name10");
    assert_eq!(expand(&m[0].0, &m[0].1), want_sparse());
    assert_eq!(m[1].1, b"n");
}

#[test]
fn sparse_old_gnu_with_extension_block() {
    // 5 segments: 4 in the header, 1 in an extension block
    let segs: Vec<(u64, u64)> = (0..5).map(|i| (i * 4000, 2)).collect();
    let mut fields: Vec<(usize, Vec<u8>)> = vec![
        (0, b"oldsparse".to_vec()),
        (100, oct(0o644, 8)),
        (124, oct(10, 12)),
        (156, b"S".to_vec()),
        (257, GNU.to_vec()),
        (482, vec![1]),
        (483, oct(20000, 12)),
    ];
    for (i, (o, l)) in segs[..4].iter().enumerate() {
        fields.push((386 + i * 24, oct(*o, 12)));
        fields.push((386 + i * 24 + 12, oct(*l, 12)));
    }
    let refs: Vec<(usize, &[u8])> = fields.iter().map(|(o, v)| (*o, v.as_slice())).collect();
    let mut ext = vec![0u8; 512];
    ext[..12].copy_from_slice(&oct(segs[4].0, 12));
    ext[12..24].copy_from_slice(&oct(segs[4].1, 12));
    let a = [block(&refs), ext, padded(b"aabbccddee"), end()].concat();
    let m = read(&a).expect("read");
    let h = &m[0].0;
    assert_eq!((h.kind, h.size), (Kind::Regular, 20000));
    let real = expand(h, &m[0].1);
    assert_eq!(&real[16000..16002], b"ee");
    assert_eq!(&real[4000..4002], b"bb");
}

#[test]
fn bad_sparse_maps_refused() {
    for (map, n, size) in [
        (&b"1000,5,1002,5"[..], &b"2"[..], &b"20000"[..]), // overlap
        (b"15000,5,1000,5", b"2", b"20000"),               // out of order
        (b"1000,5,19999,5", b"2", b"20000"),               // past the end
        (b"1000,5,15000,5", b"3", b"20000"),               // count
        (b"1000,5,15000,4", b"2", b"20000"),               // 9 bytes mapped, 10 stored
        (b"1000,-5", b"1", b"20000"),
    ] {
        let a = [
            pax(&[
                ("GNU.sparse.major", b"0"),
                ("GNU.sparse.minor", b"1"),
                ("GNU.sparse.realsize", size),
                ("GNU.sparse.numblocks", n),
                ("GNU.sparse.map", map),
            ]),
            member(USTAR, b"f", b'0', b"helloworld"),
            end(),
        ]
        .concat();
        let e = read(&a).expect_err(&String::from_utf8_lossy(map));
        assert!(e.to_string().contains("tar header at offset 1024"), "{e}");
    }
}

#[test]
fn sparse_size_bounded() {
    // a few bytes of map claiming 2 TiB: refused before anything is hashed
    let a = [
        pax(&[
            ("GNU.sparse.major", b"0"),
            ("GNU.sparse.minor", b"1"),
            ("GNU.sparse.realsize", b"2199023255552"),
            ("GNU.sparse.numblocks", b"1"),
            ("GNU.sparse.map", b"0,1"),
        ]),
        member(USTAR, b"f", b'0', b"x"),
        end(),
    ]
    .concat();
    let e = read(&a).expect_err("too big");
    assert!(e.to_string().contains("MAX_SPARSE_SIZE"), "{e}");
}

#[test]
fn each_slice_hands_the_data_across_buffer_refills_and_refuses_a_short_stream() {
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let a = [
        member(USTAR, b"a", b'0', &data),
        member(USTAR, b"b", b'0', b"next"),
        end(),
    ]
    .concat();
    // a 700-byte buffer: the data arrives in slices that straddle refills
    let mut r = Reader::new(io::BufReader::with_capacity(700, &a[..]));
    r.next_header().expect("header").expect("a");
    let mut got = Vec::new();
    let n = r
        .data()
        .each_slice(
            |e| e,
            |s| {
                got.extend_from_slice(s);
                Ok(())
            },
        )
        .expect("data");
    assert_eq!(n, data.len() as u64);
    assert_eq!(got, data);
    // the stream is left at the next member
    let h = r.next_header().expect("header").expect("b");
    assert_eq!(h.path, "b");

    // cut inside the data: an UnexpectedEof read error, not a short file
    let mut r = Reader::new(io::BufReader::with_capacity(700, &a[..512 + 3000]));
    r.next_header().expect("header").expect("a");
    let err = r
        .data()
        .each_slice(|e| e, |_| Ok(()))
        .expect_err("truncated");
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);

    // an error of the consumer stops the copy and comes back as it is
    let mut r = Reader::new(io::BufReader::with_capacity(700, &a[..]));
    r.next_header().expect("header").expect("a");
    let err = r
        .data()
        .each_slice(|e| e, |_| Err(io::Error::other("disk full")))
        .expect_err("consumer error");
    assert_eq!(err.to_string(), "disk full");
}
