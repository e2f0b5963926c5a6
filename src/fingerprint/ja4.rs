//! JA4 TLS client fingerprint (FoxIO JA4.md, BSD-3), see `shared/FINGERPRINTS.md` §3.
//!
//! `a_b_c`: `a` = `t` + version + `d|i` + #ciphers + #extensions + ALPN chars;
//! `b` = sha256_12 of the sorted non-GREASE cipher suites; `c` = sha256_12 of the sorted
//! non-GREASE extension types without SNI/ALPN, then `_` + the signature algorithms in wire order
//! (GREASE removed). Where the spec and FoxIO's code differ (non-alphanumeric ALPN bytes,
//! one-byte ALPN, GREASE in signature algorithms) this follows the spec.

use super::util::{Sink, ascii_str, put_hex_list, sha256_12_or_zeros, with_sorted};
use crate::proto::tls::{ClientHello, ext, is_grease};

/// A JA4 fingerprint, e.g. `t13d1516h2_8daaf6152771_e5627efa2ab1` (always 36 ASCII bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ja4 {
    buf: [u8; 36],
}

impl Ja4 {
    /// The fingerprint as text.
    pub fn as_str(&self) -> &str {
        ascii_str(&self.buf)
    }

    /// The fingerprint as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The same fingerprint of a ClientHello carried by QUIC (`q` instead of `t`).
    pub fn for_quic(mut self) -> Self {
        self.buf[0] = b'q';
        self
    }

    /// The 10-character `a` part.
    pub fn a(&self) -> &str {
        ascii_str(self.buf.get(..10).unwrap_or(&[]))
    }
}

impl std::fmt::Display for Ja4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Ja4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ja4({})", self.as_str())
    }
}

fn version_code(v: u16) -> [u8; 2] {
    match v {
        0x0304 => *b"13",
        0x0303 => *b"12",
        0x0302 => *b"11",
        0x0301 => *b"10",
        0x0300 => *b"s3",
        0x0002 => *b"s2",
        0xfeff => *b"d1",
        0xfefd => *b"d2",
        0xfefc => *b"d3",
        _ => *b"00",
    }
}

fn two_digits(n: usize) -> [u8; 2] {
    let n = n.min(99) as u8;
    [b'0' + n / 10, b'0' + n % 10]
}

/// The two ALPN characters of JA4 `a` from the first ALPN protocol name.
pub fn alpn_chars(first: Option<&[u8]>) -> [u8; 2] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let Some(name) = first else { return *b"00" };
    let (Some(&f), Some(&l)) = (name.first(), name.last()) else {
        return *b"00";
    };
    if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() {
        [f, l]
    } else {
        [HEX[usize::from(f >> 4)], HEX[usize::from(l & 0xf)]]
    }
}

fn version(h: &ClientHello<'_>) -> u16 {
    h.supported_versions()
        .filter(|v| !is_grease(*v))
        .max()
        .unwrap_or(h.legacy_version)
}

fn ciphers<'a>(h: &ClientHello<'a>) -> impl Iterator<Item = u16> + Clone + 'a {
    h.cipher_suites().filter(|v| !is_grease(*v))
}

fn hashed_exts<'a>(h: &ClientHello<'a>) -> impl Iterator<Item = u16> + Clone + 'a {
    h.extensions()
        .map(|(t, _)| t)
        .filter(|&t| !is_grease(t) && t != ext::SERVER_NAME && t != ext::ALPN)
}

fn sigalgs<'a>(h: &ClientHello<'a>) -> impl Iterator<Item = u16> + Clone + 'a {
    h.signature_algorithms().filter(|v| !is_grease(*v))
}

/// The `a` part (10 ASCII bytes).
pub fn ja4_a(h: &ClientHello<'_>) -> [u8; 10] {
    let mut a = [0u8; 10];
    a[0] = b't';
    a[1..3].copy_from_slice(&version_code(version(h)));
    a[3] = if h.has_extension(ext::SERVER_NAME) {
        b'd'
    } else {
        b'i'
    };
    a[4..6].copy_from_slice(&two_digits(ciphers(h).count()));
    let n_ext = h.extensions().filter(|(t, _)| !is_grease(*t)).count();
    a[6..8].copy_from_slice(&two_digits(n_ext));
    a[8..10].copy_from_slice(&alpn_chars(h.alpn().next()));
    a
}

/// Writes the JA4 `c` input: sorted extensions, then `_` + sigalgs if there are any.
fn put_c(sink: &mut impl Sink, sorted_exts: &[u16], h: &ClientHello<'_>) {
    put_hex_list(sink, sorted_exts.iter().copied());
    let mut sig = sigalgs(h).peekable();
    if sig.peek().is_some() {
        sink.put(b"_");
        put_hex_list(sink, sig);
    }
}

/// JA4 of a parsed ClientHello.
pub fn ja4(h: &ClientHello<'_>) -> Ja4 {
    let mut buf = [b'_'; 36];
    buf[..10].copy_from_slice(&ja4_a(h));
    let b = with_sorted(ciphers(h), |s| {
        sha256_12_or_zeros(s.is_empty(), |hs| put_hex_list(hs, s.iter().copied()))
    });
    buf[11..23].copy_from_slice(&b);
    let c = with_sorted(hashed_exts(h), |s| {
        sha256_12_or_zeros(s.is_empty(), |hs| put_c(hs, s, h))
    });
    buf[24..36].copy_from_slice(&c);
    Ja4 { buf }
}

/// Streams `JA4_r` (a + the sorted lists in clear) into `out`, e.g. into a record buffer.
pub fn write_ja4_r(h: &ClientHello<'_>, out: &mut impl Sink) {
    out.put(&ja4_a(h));
    out.put(b"_");
    with_sorted(ciphers(h), |s| put_hex_list(out, s.iter().copied()));
    out.put(b"_");
    with_sorted(hashed_exts(h), |s| put_c(out, s, h));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_rule() {
        let cases: &[(&[u8], &str)] = &[
            (b"h2", "h2"),
            (b"http/1.1", "h1"),
            (b"h", "hh"),
            (&[0xab], "ab"),
            (&[0x20], "20"),
            (&[0xab, 0xcd], "ad"),
            (&[0x20, 0x61], "21"),
            (&[0x30, 0xab], "3b"),
            (&[0x61, 0x20], "60"),
            (&[0x30, 0x31, 0xab, 0xcd], "3d"),
            (&[0x30, 0xab, 0xcd, 0x31], "01"),
            (b"h ", "60"),
            (b" h", "28"),
            (b"  ", "20"),
            (b"--", "2d"),
            (b"", "00"),
        ];
        for (name, want) in cases {
            assert_eq!(&alpn_chars(Some(name)), want.as_bytes(), "{name:?}");
        }
        assert_eq!(&alpn_chars(None), b"00");
    }

    #[test]
    fn worked_example_c() {
        let exts = [
            0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012,
            0x002b, 0xff01, 0x000b, 0x000a, 0x0015u16,
        ];
        let filtered = exts.iter().copied().filter(|&t| t != 0 && t != 0x10);
        let mut s = Vec::new();
        with_sorted(filtered, |v| put_hex_list(&mut s, v.iter().copied()));
        let sig = [
            0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601u16,
        ];
        let h = super::super::util::sha256_12(|h| {
            Sink::put(h, &s);
            Sink::put(h, b"_");
            put_hex_list(h, sig);
        });
        assert_eq!(&h, b"e5627efa2ab1");
        let h = super::super::util::sha256_12(|h| Sink::put(h, &s));
        assert_eq!(&h, b"6d807ffa2a79");
    }
}
