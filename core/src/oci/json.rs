//! JSON encoding that matches Go's `encoding/json` byte for byte.
//!
//! umoci writes every blob with `json.Encoder.Encode`: compact, map keys
//! sorted, `<`, `>`, `&`, U+2028 and U+2029 escaped, and a trailing newline.
//! Reproducing that exactly keeps digests identical to the Go tool's.

use serde::Serialize;

/// Serialize `value` as Go's `json.Encoder` would, including the final `\n`.
pub fn to_go_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let plain = serde_json::to_string(value)?;
    let mut out = String::with_capacity(plain.len() + 16);
    for c in plain.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('\n');
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn escapes_like_go() {
        let mut m = BTreeMap::new();
        m.insert("b", "<a&b>\u{2028}");
        m.insert("a", "x");
        let out = to_go_json(&m).expect("serialize");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "{\"a\":\"x\",\"b\":\"\\u003ca\\u0026b\\u003e\\u2028\"}\n"
        );
    }
}
