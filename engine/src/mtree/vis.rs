//! The `vis(3)` encoding go-mtree uses for names and link targets: every
//! byte outside a conservative safe set becomes a three-digit octal escape
//! (`\040` for a space, `\133` for `[`), which go-mtree's `unvis` decodes.

/// Encode bytes for an mtree file.
pub fn vis(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        let safe = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'.' | b'_'
                    | b'-'
                    | b'+'
                    | b','
                    | b':'
                    | b'@'
                    | b'%'
                    | b'/'
                    | b'='
                    | b'~'
                    | b'^'
                    | b'('
                    | b')'
                    | b'{'
                    | b'}'
                    | b'!'
                    | b'\''
                    | b'&'
                    | b';'
                    | b'<'
                    | b'>'
                    | b'|'
                    | b'$'
                    | b'"'
            );
        if safe {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\{b:03o}"));
        }
    }
    out
}

/// Decode `vis` output (octal escapes, `\\`, and the C escapes go-mtree
/// may write). Returns `None` on a malformed escape.
pub fn unvis(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = *b.get(i + 1)?;
        match c {
            b'0'..=b'7' => {
                let digits = b.get(i + 1..i + 4)?;
                let mut v: u32 = 0;
                for &d in digits {
                    if !(b'0'..=b'7').contains(&d) {
                        return None;
                    }
                    v = v * 8 + u32::from(d - b'0');
                }
                out.push(u8::try_from(v).ok()?);
                i += 4;
            }
            c @ (b'\\' | b'n' | b't' | b's') => {
                out.push(match c {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b's' => b' ',
                    _ => b'\\',
                });
                i += 2;
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for s in [
            &b"plain.txt"[..],
            b"with space",
            b"[glob]*?#",
            b"new\nline",
            b"\xff\x00bin",
            b"back\\slash",
        ] {
            let v = vis(s);
            assert!(!v.contains(' ') && !v.contains('\n'), "{v}");
            assert_eq!(unvis(&v).as_deref(), Some(s));
        }
        assert_eq!(vis(b"["), "\\133");
        assert_eq!(unvis("\\9"), None);
    }
}
