//! JA3 TLS client fingerprint (salesforce/ja3, BSD-3), see `shared/FINGERPRINTS.md` §9.
//!
//! `SSLVersion,Ciphers,Extensions,EllipticCurves,EcPointFormats` in decimal, `-` within a field,
//! wire order, GREASE removed from ciphers, extensions and groups; `ja3` = md5 of that string.

use super::util::{Batched, Sink, ascii_str, md5_hex, put_dec, put_dec_list};
use crate::proto::tls::{ClientHello, is_grease};

/// The JA3 md5 as 32 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ja3 {
    buf: [u8; 32],
}

impl Ja3 {
    /// The md5 as text.
    pub fn as_str(&self) -> &str {
        ascii_str(&self.buf)
    }

    /// The md5 as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

impl std::fmt::Debug for Ja3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ja3({})", self.as_str())
    }
}

/// Streams the JA3 string into `out`.
pub fn write_ja3_string(h: &ClientHello<'_>, out: &mut impl Sink) {
    put_dec(out, h.legacy_version);
    out.put(b",");
    put_dec_list(out, h.cipher_suites().filter(|v| !is_grease(*v)));
    out.put(b",");
    put_dec_list(
        out,
        h.extensions().map(|(t, _)| t).filter(|t| !is_grease(*t)),
    );
    out.put(b",");
    put_dec_list(out, h.supported_groups().filter(|v| !is_grease(*v)));
    out.put(b",");
    put_dec_list(out, h.ec_point_formats().iter().map(|&b| u16::from(b)));
}

/// JA3 md5 of a parsed ClientHello.
pub fn ja3(h: &ClientHello<'_>) -> Ja3 {
    Ja3 {
        buf: md5_hex(|m| {
            let mut b = Batched::new(m);
            write_ja3_string(h, &mut b);
            b.flush();
        }),
    }
}
