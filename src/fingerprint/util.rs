//! Allocation-free building blocks shared by the fingerprints: byte sinks (a `Vec`, a hasher),
//! hex/decimal formatting, and sorting of small u16 lists on the stack.

use md5::Md5;
use sha2::{Digest, Sha256};

/// Where fingerprint strings are written: a hasher (to compute a digest) or a buffer (to emit
/// the raw string). Lets one function produce both the string and its hash.
pub trait Sink {
    /// Appends bytes.
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl Sink for Md5 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

/// Collects small pieces into a stack buffer before passing them on (hashers are much faster
/// fed a few large pieces than many 1–5 byte ones). Call [`Batched::flush`] at the end.
pub struct Batched<'s, S: Sink> {
    inner: &'s mut S,
    buf: [u8; 256],
    len: usize,
}

impl<'s, S: Sink> Batched<'s, S> {
    /// Wraps `inner`.
    pub fn new(inner: &'s mut S) -> Self {
        Batched {
            inner,
            buf: [0; 256],
            len: 0,
        }
    }

    /// Passes on what is buffered.
    pub fn flush(&mut self) {
        self.inner.put(self.buf.get(..self.len).unwrap_or(&[]));
        self.len = 0;
    }
}

impl<S: Sink> Sink for Batched<'_, S> {
    fn put(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() > self.buf.len() {
            self.flush();
        }
        match self.buf.get_mut(self.len..self.len + bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            None => self.inner.put(bytes),
        }
    }
}

/// Counts bytes (to know whether a list is empty without materialising it).
pub struct CountSink(pub usize);

impl Sink for CountSink {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

pub(crate) const HEX: &[u8; 16] = b"0123456789abcdef";

/// Four lowercase hex digits of `v`.
pub fn hex4(v: u16) -> [u8; 4] {
    let n = |s: u16| HEX[usize::from((v >> s) & 0xf)];
    [n(12), n(8), n(4), n(0)]
}

/// Writes `v` in decimal.
pub fn put_dec(sink: &mut impl Sink, v: u16) {
    let mut buf = [0u8; 5];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    sink.put(buf.get(i..).unwrap_or(&[]));
}

/// Lowercase hex of `bytes` into `out` (which must be twice as long; extra is left untouched).
pub fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        if let [hi, lo] = pair {
            *hi = HEX[usize::from(b >> 4)];
            *lo = HEX[usize::from(b & 0xf)];
        }
    }
}

/// Writes `vals` as 4-digit hex joined by `,`.
pub fn put_hex_list(sink: &mut impl Sink, vals: impl IntoIterator<Item = u16>) {
    // Batch into a small stack buffer: far fewer hasher calls than one per value.
    let mut buf = [0u8; 100];
    let mut n = 0usize;
    let mut first = true;
    for v in vals {
        if n + 5 > buf.len() {
            sink.put(buf.get(..n).unwrap_or(&[]));
            n = 0;
        }
        let mut piece = [b','; 5];
        piece[1..].copy_from_slice(&hex4(v));
        let piece = if first { &piece[1..] } else { &piece[..] };
        first = false;
        if let Some(dst) = buf.get_mut(n..n + piece.len()) {
            dst.copy_from_slice(piece);
        }
        n += piece.len();
    }
    sink.put(buf.get(..n).unwrap_or(&[]));
}

/// Writes `vals` in decimal joined by `-`.
pub fn put_dec_list(sink: &mut impl Sink, vals: impl IntoIterator<Item = u16>) {
    for (i, v) in vals.into_iter().enumerate() {
        if i > 0 {
            sink.put(b"-");
        }
        put_dec(sink, v);
    }
}

/// Capacity of the stack sort buffer for large lists (a 16 KiB ClientHello holds < 8192 values).
pub const SORT_MAX: usize = 8192;

/// Calls `f` with the values of `vals` sorted ascending, sorted on the stack (no heap).
/// Lists longer than [`SORT_MAX`] are cut to their first `SORT_MAX` values.
pub fn with_sorted<R>(vals: impl Iterator<Item = u16> + Clone, f: impl FnOnce(&[u16]) -> R) -> R {
    let mut small = [0u16; 128];
    let mut n = 0usize;
    for v in vals.clone() {
        match small.get_mut(n) {
            Some(slot) => *slot = v,
            None => return with_sorted_large(vals, f),
        }
        n += 1;
    }
    let s = small.get_mut(..n).unwrap_or(&mut []);
    s.sort_unstable();
    f(s)
}

#[inline(never)]
fn with_sorted_large<R>(vals: impl Iterator<Item = u16>, f: impl FnOnce(&[u16]) -> R) -> R {
    let mut big = [0u16; SORT_MAX];
    let mut n = 0usize;
    for (slot, v) in big.iter_mut().zip(vals) {
        *slot = v;
        n += 1;
    }
    let s = big.get_mut(..n).unwrap_or(&mut []);
    s.sort_unstable();
    f(s)
}

/// First 12 lowercase hex chars of the SHA-256 of what `write` produces, or `000000000000`
/// when it produces nothing.
pub fn sha256_12(write: impl FnOnce(&mut Sha256)) -> [u8; 12] {
    let mut h = Sha256::new();
    write(&mut h);
    let mut out = [b'0'; 12];
    let digest = h.finalize();
    hex_into(digest.get(..6).unwrap_or(&[]), &mut out);
    out
}

/// `sha256_12` with the empty-input rule applied by the caller's `is_empty`.
pub fn sha256_12_or_zeros(is_empty: bool, write: impl FnOnce(&mut Sha256)) -> [u8; 12] {
    if is_empty {
        [b'0'; 12]
    } else {
        sha256_12(write)
    }
}

/// 32 lowercase hex chars of the MD5 of what `write` produces.
pub fn md5_hex(write: impl FnOnce(&mut Md5)) -> [u8; 32] {
    let mut h = Md5::new();
    write(&mut h);
    let mut out = [b'0'; 32];
    hex_into(h.finalize().as_slice(), &mut out);
    out
}

/// Bytes known to be ASCII as `&str`.
pub(crate) fn ascii_str(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("") // ok: callers only pass ASCII they produced
}

/// Writes a JSON string whose content is produced piecewise, escaping each piece.
pub fn write_escaped_pieces(out: &mut Vec<u8>, produce: impl FnOnce(&mut EscapingSink<'_>)) {
    out.push(b'"');
    produce(&mut EscapingSink { out });
    out.push(b'"');
}

/// A sink that escapes what it gets as JSON string content (lossy UTF-8 per piece).
pub struct EscapingSink<'o> {
    out: &'o mut Vec<u8>,
}

impl Sink for EscapingSink<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if bytes
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\' || b == b' ')
        {
            self.out.extend_from_slice(bytes);
            return;
        }
        let start = self.out.len();
        crate::json::write_json_string(self.out, bytes);
        // Drop the quotes write_json_string put around the piece.
        if self.out.len() >= start + 2 {
            self.out.remove(start);
            self.out.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        let mut v = Vec::new();
        put_dec_list(&mut v, [0, 9, 10, 65535, 771]);
        assert_eq!(v, b"0-9-10-65535-771");
        let mut v = Vec::new();
        put_hex_list(&mut v, (0..40u16).map(|x| x * 0x101));
        let expect: Vec<String> = (0..40u16).map(|x| format!("{:04x}", x * 0x101)).collect();
        assert_eq!(String::from_utf8(v).unwrap(), expect.join(","));
        let big: Vec<u16> = (0..1000u16).rev().collect();
        with_sorted(big.iter().copied(), |s| {
            assert_eq!(s.len(), 1000);
            assert!(s.windows(2).all(|w| w[0] <= w[1]));
        });
    }
}
