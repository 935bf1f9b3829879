//! The Go formatting primitives umoci's `stat` output is made of:
//! `strconv.Quote`, go-units' `HumanSize`, `text/tabwriter`, and
//! `encoding/json`'s compaction of a `json.RawMessage`.

/// Whether Go's `strconv.IsPrint` holds for `c` (letters, marks, numbers,
/// punctuation, symbols and the ASCII space). Exact for Latin-1; above it,
/// control, white-space, format, private-use and non-characters are the
/// non-printable ones (Go's tables also exclude unassigned code points,
/// which this approximation prints as they are).
pub fn is_print(c: char) -> bool {
    let u = c as u32;
    if u <= 0xff {
        return (0x20..=0x7e).contains(&u) || (0xa1..=0xff).contains(&u) && u != 0xad;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(u,
        0x0600..=0x0605 | 0x061c | 0x06dd | 0x070f | 0x180e
        | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x206f
        | 0xd800..=0xdfff | 0xe000..=0xf8ff | 0xfeff | 0xfff9..=0xfffb
        | 0xfffe | 0xffff | 0xe0001 | 0xe0020..=0xe007f | 0xf0000..)
        && u & 0xfffe != 0xfffe
}

/// Go's `strconv.Quote`: a double-quoted string with Go escape sequences
/// for `"`, `\`, control and non-printable characters.
pub fn quote(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_print(c) => out.push(c),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// umoci's `quote(s, precise)`: quoted only when [`quote`] would change
/// the text, or — when `precise` — when it is empty or holds white space.
pub fn quote_if_needed(s: &str, precise: bool) -> String {
    let quoted = quote(s);
    if quoted.len() != s.len() + 2
        || precise && (s.is_empty() || s.chars().any(char::is_whitespace))
    {
        quoted
    } else {
        s.to_string()
    }
}

/// go-units `HumanSize`: decimal units (`B`, `kB`, `MB`, …), the number
/// with four significant digits as Go's `%.4g` writes it (`238B`,
/// `1.107kB`, `1000kB` for 999 999 bytes).
pub fn human_size(size: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut v = size as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    format!("{}{}", format_g4(v), UNITS[unit])
}

/// Go's `%.4g` for a finite, non-negative value below 10 000.
fn format_g4(v: f64) -> String {
    // four significant digits, correctly rounded (half to even on exact
    // ties, as Go's strconv does): d.ddde±x
    let sci = format!("{v:.3e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    if digits.is_empty() {
        return "0".to_string();
    }
    if !(-4..4).contains(&exp) {
        // not reached for sizes (always below 1000 after scaling, or an
        // integer below 1000); kept for completeness
        return format!("{v:e}");
    }
    // decimal point after `exp + 1` digits
    let point = exp + 1;
    if point <= 0 {
        let zeros = "0".repeat(usize::try_from(-point).unwrap_or(0));
        return format!("0.{zeros}{digits}");
    }
    let point = usize::try_from(point).unwrap_or(0);
    if digits.len() <= point {
        format!("{digits}{}", "0".repeat(point - digits.len()))
    } else {
        format!("{}.{}", &digits[..point], &digits[point..])
    }
}

/// Go's `text/tabwriter` with umoci's settings (`minwidth` 4, `padding` 1,
/// pad character space, no flags): cells are separated by `\t`; in each
/// block of consecutive lines that have a cell in a column, that column is
/// as wide as its widest cell plus the padding (at least `minwidth`). The
/// last cell of a line is not part of a column and is not padded. Widths
/// count characters (Go counts runes).
pub fn tabwrite(text: &str, minwidth: usize, padding: usize) -> String {
    // lines of cells; a text ending in '\n' leaves an empty last line, as
    // Go's buffer does
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut out = String::with_capacity(text.len() * 2);
    let mut widths = Vec::new();
    format_block(
        &lines,
        0,
        lines.len(),
        &mut widths,
        minwidth,
        padding,
        &mut out,
    );
    out
}

fn format_block(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    minwidth: usize,
    padding: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        // a line has a cell in `column` when it has more cells after it
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut width = minwidth;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(lines[this][column].chars().count() + padding);
            this += 1;
        }
        widths.push(width);
        format_block(lines, line0, this, widths, minwidth, padding, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, line0, line1, widths, out);
}

fn write_lines(
    lines: &[Vec<&str>],
    line0: usize,
    line1: usize,
    widths: &[usize],
    out: &mut String,
) {
    for (i, line) in lines.iter().enumerate().take(line1).skip(line0) {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if let Some(w) = widths.get(j)
                && j + 1 < line.len()
            {
                let n = w.saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', n));
            }
        }
        if i + 1 < lines.len() {
            out.push('\n');
        }
    }
}

/// `encoding/json`'s compaction of a `json.RawMessage` when encoding with
/// HTML escaping on (as `json.Encoder` does): white space outside strings
/// removed; `<`, `>`, `&`, U+2028 and U+2029 inside strings escaped. The
/// input must be valid JSON (it is not checked here).
pub fn compact_json(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if in_string {
            if escaped {
                escaped = false;
                out.push(b);
            } else if b == b'\\' {
                escaped = true;
                out.push(b);
            } else if b == b'"' {
                in_string = false;
                out.push(b);
            } else if b == b'<' || b == b'>' || b == b'&' {
                out.extend_from_slice(format!("\\u00{b:02x}").as_bytes());
            } else if b == 0xe2
                && raw.get(i + 1) == Some(&0x80)
                && matches!(raw.get(i + 2), Some(0xa8 | 0xa9))
            {
                let last = if raw[i + 2] == 0xa8 { '8' } else { '9' };
                out.extend_from_slice(format!("\\u202{last}").as_bytes());
                i += 2;
            } else {
                out.push(b);
            }
        } else if b == b'"' {
            in_string = true;
            out.push(b);
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            out.push(b);
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_like_go() {
        assert_eq!(quote("a\tb\nc\u{b}d\re"), r#""a\tb\nc\vd\re""#);
        assert_eq!(quote("say \"hi\" \\"), r#""say \"hi\" \\""#);
        assert_eq!(quote("\u{1}\u{7f}"), r#""\x01\x7f""#);
        assert_eq!(quote("\u{a0}\u{200b}é"), "\"\\u00a0\\u200bé\"");
        assert_eq!(quote_if_needed("foobar", true), "foobar");
        assert_eq!(quote_if_needed("", true), r#""""#);
        assert_eq!(quote_if_needed("", false), "");
        assert_eq!(quote_if_needed("hello world", true), r#""hello world""#);
        assert_eq!(quote_if_needed("hello world", false), "hello world");
        assert_eq!(quote_if_needed("a\tb", false), r#""a\tb""#);
    }

    #[test]
    fn human_size_like_go_units() {
        let cases = [
            (0, "0B"),
            (2, "2B"),
            (135, "135B"),
            (999, "999B"),
            (1000, "1kB"),
            (1107, "1.107kB"),
            (1500, "1.5kB"),
            (12_125, "12.12kB"),
            (12_135, "12.13kB"),
            (999_999, "1000kB"),
            (1_234_567, "1.235MB"),
            (5_000_000_000, "5GB"),
            (u64::MAX, "18.45EB"),
        ];
        for (n, want) in cases {
            assert_eq!(human_size(n), want, "{n}");
        }
    }

    #[test]
    fn tabwriter_like_go() {
        let t = "LAYER\tCREATED\tCREATED BY\tSIZE\tCOMMENT\n";
        assert_eq!(tabwrite(t, 4, 1), "LAYER CREATED CREATED BY SIZE COMMENT\n");
        let t = "a\tbbbbbb\tc\nxxxxxxx\ty\t\n";
        assert_eq!(tabwrite(t, 4, 1), "a       bbbbbb c\nxxxxxxx y      \n");
        // a line with fewer cells ends the column block
        let t = "aaaaaaaa\tb\nc\nd\te\n";
        assert_eq!(tabwrite(t, 4, 1), "aaaaaaaa b\nc\nd   e\n");
    }

    #[test]
    fn compacts_raw_json_like_go() {
        let raw = b"{ \"a\" : [1, 2],\n \"b\": \"x y<&>\\\" \xe2\x80\xa8\" }\n";
        assert_eq!(
            String::from_utf8(compact_json(raw)).expect("utf8"),
            "{\"a\":[1,2],\"b\":\"x y\\u003c\\u0026\\u003e\\\" \\u2028\"}"
        );
    }
}
