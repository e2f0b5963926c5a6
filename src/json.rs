//! A small streaming JSON writer for records.
//!
//! Records are written straight from borrowed bytes into one output buffer: no intermediate
//! tree, no per-field allocation. Strings from the network are written as lossy UTF-8 (invalid
//! sequences become U+FFFD) with every control character escaped, so any input bytes yield valid
//! JSON. Objects nest; the writer tracks only whether a comma is due at each depth.

/// Writes one JSON value (usually an object) into a borrowed `Vec<u8>`.
pub struct JsonWriter<'b> {
    buf: &'b mut Vec<u8>,
    /// Bit `d` set: the object at depth `d` already has a member, so the next one needs a comma.
    has_member: u64,
    depth: u32,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl<'b> JsonWriter<'b> {
    /// Starts writing at the end of `buf`.
    pub fn new(buf: &'b mut Vec<u8>) -> Self {
        JsonWriter {
            buf,
            has_member: 0,
            depth: 0,
        }
    }

    /// Opens the top-level object.
    pub fn begin(&mut self) {
        self.buf.push(b'{');
        self.depth = 1;
        self.has_member = 0;
    }

    /// Closes every open object.
    pub fn finish(&mut self) {
        while self.depth > 0 {
            self.end_object();
        }
    }

    fn key(&mut self, key: &str) {
        let bit = 1u64 << (self.depth & 63);
        if self.has_member & bit != 0 {
            self.buf.push(b',');
        }
        self.has_member |= bit;
        self.buf.push(b'"');
        // Keys are our own constants: plain ASCII, nothing to escape.
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    /// Opens a nested object under `key`.
    pub fn begin_object(&mut self, key: &str) {
        self.key(key);
        self.buf.push(b'{');
        self.depth += 1;
        self.has_member &= !(1u64 << (self.depth & 63));
    }

    /// Closes the innermost object.
    pub fn end_object(&mut self) {
        if self.depth > 0 {
            self.buf.push(b'}');
            self.depth -= 1;
        }
    }

    /// `key: "<bytes as lossy UTF-8>"`.
    pub fn str(&mut self, key: &str, value: &[u8]) {
        self.key(key);
        write_json_string(self.buf, value);
    }

    /// `key: "<bytes as lowercase hex>"`.
    pub fn hex(&mut self, key: &str, value: &[u8]) {
        self.key(key);
        self.buf.push(b'"');
        write_hex(self.buf, value);
        self.buf.push(b'"');
    }

    /// `key: <unsigned integer>`.
    pub fn u64(&mut self, key: &str, value: u64) {
        self.key(key);
        write_u64(self.buf, value);
    }

    /// `key: true|false`.
    pub fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.buf
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// `key: [ "a", "b", ... ]` from an iterator of byte strings.
    pub fn str_array<'v, I: IntoIterator<Item = &'v [u8]>>(&mut self, key: &str, values: I) {
        self.key(key);
        self.buf.push(b'[');
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            write_json_string(self.buf, v);
        }
        self.buf.push(b']');
    }

    /// A member whose key comes from the network (e.g. a header name): lower-cased, escaped,
    /// at most 256 bytes; the value is the `", "`-joined `parts`.
    pub fn str_parts_lower_key<'v, I: IntoIterator<Item = &'v [u8]>>(
        &mut self,
        key: &[u8],
        parts: I,
    ) {
        self.member_lower_key(key, |buf| {
            for (i, part) in parts.into_iter().enumerate() {
                if i > 0 {
                    buf.extend_from_slice(b", ");
                }
                write_json_string_content(buf, part);
            }
        });
    }

    /// A member whose key comes from the network (already cut to length): lower-cased and
    /// escaped; `write_value` writes the escaped inside of the string value.
    pub fn member_lower_key(&mut self, key: &[u8], write_value: impl FnOnce(&mut Vec<u8>)) {
        let bit = 1u64 << (self.depth & 63);
        if self.has_member & bit != 0 {
            self.buf.push(b',');
        }
        self.has_member |= bit;
        let mut lower = [0u8; 256];
        let n = key.len().min(lower.len());
        for (d, s) in lower.iter_mut().zip(&key[..n]) {
            *d = s.to_ascii_lowercase();
        }
        write_json_string(self.buf, &lower[..n]);
        self.buf.extend_from_slice(b":\"");
        write_value(self.buf);
        self.buf.push(b'"');
    }

    /// `key: <value>` where `value` is already valid JSON (our own output, never network bytes).
    pub fn raw(&mut self, key: &str, json: &[u8]) {
        self.key(key);
        self.buf.extend_from_slice(json);
    }

    /// Direct access for writers that format a value themselves (e.g. timestamps);
    /// call [`JsonWriter::key_only`] first.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        self.buf
    }

    /// Writes `key:` and leaves the value to the caller (via [`JsonWriter::buf`]).
    pub fn key_only(&mut self, key: &str) {
        self.key(key);
    }
}

/// Appends `bytes` as a quoted JSON string: lossy UTF-8, escaping `"`, `\` and all controls.
pub fn write_json_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    write_json_string_content(out, bytes);
    out.push(b'"');
}

/// Appends `bytes` escaped as the inside of a JSON string (no quotes), lossy UTF-8.
pub fn write_json_string_content(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                escape_valid(out, valid.as_bytes());
                break;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                escape_valid(out, valid);
                out.extend_from_slice("\u{FFFD}".as_bytes());
                let skip = e.error_len().unwrap_or(after.len());
                rest = &after[skip..];
                if rest.is_empty() {
                    break;
                }
            }
        }
    }
}

/// Escapes bytes already known to be valid UTF-8.
fn escape_valid(out: &mut Vec<u8>, s: &[u8]) {
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
}

/// Appends the lowercase hex of `bytes`.
pub fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 0xf) as usize]);
    }
}

/// Appends the decimal form of `v`.
pub fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        write_json_string(&mut out, bytes);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_controls_quotes_and_invalid_utf8() {
        assert_eq!(string(b"a\"b\\c\n\r\t"), r#""a\"b\\c\n\r\t""#);
        assert_eq!(string(b"\x00\x1f\x7f"), r#""\u0000\u001f\u007f""#);
        assert_eq!(string(b"\xff\xfeok"), "\"\u{FFFD}\u{FFFD}ok\"");
        assert_eq!(string("é€".as_bytes()), "\"é€\"");
        assert_eq!(string(b"\xe2\x82"), "\"\u{FFFD}\"");
    }

    #[test]
    fn nested_objects_and_commas() {
        let mut out = Vec::new();
        let mut w = JsonWriter::new(&mut out);
        w.begin();
        w.str("a", b"x");
        w.begin_object("b");
        w.u64("c", 42);
        w.begin_object("d");
        w.end_object();
        w.bool("e", true);
        w.end_object();
        w.hex("f", b"\x00\xff");
        w.str_array("g", [&b"h2"[..], b"http/1.1"]);
        w.finish();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":"x","b":{"c":42,"d":{},"e":true},"f":"00ff","g":["h2","http/1.1"]}"#
        );
    }

    #[test]
    fn every_byte_value_yields_valid_json() {
        let all: Vec<u8> = (0..=255u8).collect();
        let s = string(&all);
        let parsed: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert!(parsed.as_str().unwrap().starts_with('\u{0}'));
    }
}
