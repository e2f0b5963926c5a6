//! TLS record layer and ClientHello, as borrowed views over the client's byte stream.
//!
//! # Reassembly
//! A ClientHello may be split over several TLS handshake records (content type 22). We never
//! allocate for it:
//! - [`client_hello_status`] walks the record headers only and says whether the stream holds
//!   the whole first ClientHello (and how many stream bytes its records occupy), needs more
//!   bytes, or is not a TLS ClientHello at all.
//! - [`reassemble`] returns the handshake message (`01 | len24 | body`) as one contiguous slice.
//!   When the message sits in a single record (the usual case, also for 2 KiB post-quantum
//!   hellos) that slice borrows the stream directly: zero copies. When it spans records the
//!   fragments are copied into a caller-provided fixed [`HelloBuf`] (16 KiB, on the stack or
//!   inline in a struct). Hellos larger than [`MAX_HELLO`] are rejected as invalid; no real
//!   client sends one.
//! - [`ClientHello::parse`] takes the contiguous message and returns a view whose fields borrow it.
//!
//! Nothing here panics on any input: every length field is checked against the bytes present.

use super::reader::{Reader, U16s};

/// Largest handshake message (header included) we reassemble.
pub const MAX_HELLO: usize = 16 * 1024;

/// Largest TLS record payload we accept (2^14 plaintext + 2048 slack, as RFC 5246 allows for
/// compressed/ciphertext records; a ClientHello record should be ≤ 2^14).
const MAX_RECORD: usize = 16 * 1024 + 2048;

const CONTENT_HANDSHAKE: u8 = 22;
const HS_CLIENT_HELLO: u8 = 1;

/// Extension types used by the fingerprints.
pub mod ext {
    /// server_name
    pub const SERVER_NAME: u16 = 0x0000;
    /// supported_groups (elliptic_curves)
    pub const SUPPORTED_GROUPS: u16 = 0x000a;
    /// ec_point_formats
    pub const EC_POINT_FORMATS: u16 = 0x000b;
    /// signature_algorithms
    pub const SIGNATURE_ALGORITHMS: u16 = 0x000d;
    /// application_layer_protocol_negotiation
    pub const ALPN: u16 = 0x0010;
    /// supported_versions
    pub const SUPPORTED_VERSIONS: u16 = 0x002b;
}

/// Where the stream stands with respect to its first ClientHello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelloStatus {
    /// The whole ClientHello is present. `records_len` stream bytes (record headers included)
    /// hold it; `message_len` is the handshake message size (4-byte header included).
    Complete {
        /// Bytes of the stream occupied by the records that carry the ClientHello.
        records_len: usize,
        /// Length of the handshake message, header included.
        message_len: usize,
    },
    /// So far a valid prefix of a ClientHello record stream; more bytes are needed.
    Incomplete,
    /// Not a TLS ClientHello (or one larger than [`MAX_HELLO`]).
    Invalid,
}

/// Checks one record header: `Some(Some(len))` if valid, `Some(None)` if invalid,
/// `None` if fewer than 5 bytes.
fn record_header(hdr: &[u8]) -> Option<Result<usize, ()>> {
    let mut r = Reader::new(hdr);
    let ct = r.u8()?;
    let major = r.u8()?;
    let _minor = r.u8()?;
    let len = usize::from(r.u16()?);
    if ct != CONTENT_HANDSHAKE || major != 3 || len == 0 || len > MAX_RECORD {
        return Some(Err(()));
    }
    Some(Ok(len))
}

/// Walks the records of `stream` and reports whether its first ClientHello is complete.
pub fn client_hello_status(stream: &[u8]) -> HelloStatus {
    HelloFramer::default().status(stream)
}

/// [`client_hello_status`] for a stream that grows: it remembers the records already walked, so
/// each call looks only at records it has not seen whole.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HelloFramer {
    /// Start of the first record not walked yet.
    pos: usize,
    /// Handshake header bytes seen so far (type + 24-bit length).
    hdr: [u8; 4],
    hdr_len: usize,
    /// Handshake body bytes collected from walked records.
    collected: usize,
}

impl HelloFramer {
    /// Where the ClientHello stands in `stream` (the same stream as in earlier calls, longer).
    pub fn status(&mut self, stream: &[u8]) -> HelloStatus {
        loop {
            let Some(rest) = stream.get(self.pos..) else {
                return HelloStatus::Invalid;
            };
            let len = match record_header(rest) {
                None => return HelloStatus::Incomplete,
                Some(Err(())) => return HelloStatus::Invalid,
                Some(Ok(len)) => len,
            };
            // Only whole records are walked (and remembered); a first byte that is no
            // ClientHello says so at once.
            let Some(frag) = rest.get(5..5 + len) else {
                if self.hdr_len == 0 && rest.get(5).is_some_and(|&t| t != HS_CLIENT_HELLO) {
                    return HelloStatus::Invalid;
                }
                return HelloStatus::Incomplete;
            };
            let mut frag_iter = frag.iter();
            while self.hdr_len < 4 {
                let Some(&b) = frag_iter.next() else { break };
                if let Some(slot) = self.hdr.get_mut(self.hdr_len) {
                    *slot = b;
                }
                self.hdr_len += 1;
                if self.hdr_len == 1 && b != HS_CLIENT_HELLO {
                    return HelloStatus::Invalid;
                }
            }
            let body_here = frag_iter.as_slice().len();
            self.pos += 5 + len;
            if self.hdr_len == 4 {
                let body_len =
                    u32::from_be_bytes([0, self.hdr[1], self.hdr[2], self.hdr[3]]) as usize;
                let message_len = body_len + 4;
                if message_len > MAX_HELLO {
                    return HelloStatus::Invalid;
                }
                self.collected += body_here;
                if self.collected >= body_len {
                    return HelloStatus::Complete {
                        records_len: self.pos,
                        message_len,
                    };
                }
            }
        }
    }
}

/// Scratch space for a ClientHello that spans several records.
pub struct HelloBuf {
    buf: [u8; MAX_HELLO],
}

impl HelloBuf {
    /// An empty (zeroed) buffer.
    pub const fn new() -> Self {
        HelloBuf {
            buf: [0; MAX_HELLO],
        }
    }
}

impl Default for HelloBuf {
    fn default() -> Self {
        Self::new()
    }
}

/// Returns the complete first ClientHello handshake message (`01 | len24 | body`) of `stream`,
/// borrowing `stream` when it lies in one record, else copying the fragments into `scratch`.
/// `None` unless [`client_hello_status`] is `Complete`.
pub fn reassemble<'a>(stream: &'a [u8], scratch: &'a mut HelloBuf) -> Option<&'a [u8]> {
    let HelloStatus::Complete { message_len, .. } = client_hello_status(stream) else {
        return None;
    };
    let first_len = usize::from(u16::from_be_bytes([*stream.get(3)?, *stream.get(4)?]));
    if first_len >= message_len {
        return stream.get(5..5 + message_len);
    }
    let mut filled = 0usize;
    let mut pos = 0usize;
    while filled < message_len {
        let rest = stream.get(pos..)?;
        let len = record_header(rest)?.ok()?;
        let frag = rest.get(5..5 + len)?;
        let want = (message_len - filled).min(frag.len());
        scratch
            .buf
            .get_mut(filled..filled + want)?
            .copy_from_slice(frag.get(..want)?);
        filled += want;
        pos += 5 + len;
    }
    scratch.buf.get(..message_len)
}

/// Why a ClientHello could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Not a ClientHello, or a length field runs past the data.
    Invalid,
}

/// A parsed ClientHello; every slice borrows the handshake message.
#[derive(Clone, Copy, Debug)]
pub struct ClientHello<'a> {
    /// `legacy_version` of the ClientHello body (not the record version).
    pub legacy_version: u16,
    /// 32-byte client random.
    pub random: &'a [u8],
    /// legacy_session_id.
    pub session_id: &'a [u8],
    cipher_suites: &'a [u8],
    /// legacy_compression_methods.
    pub compression_methods: &'a [u8],
    extensions: &'a [u8],
    sni: Option<&'a [u8]>,
    alpn: Option<&'a [u8]>,
    supported_versions: Option<&'a [u8]>,
    signature_algorithms: Option<&'a [u8]>,
    supported_groups: Option<&'a [u8]>,
    ec_point_formats: Option<&'a [u8]>,
}

impl<'a> ClientHello<'a> {
    /// Parses a handshake message `01 | len24 | body` (trailing bytes after it are ignored).
    pub fn parse(msg: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(msg);
        if r.u8() != Some(HS_CLIENT_HELLO) {
            return Err(Error::Invalid);
        }
        let len = r.u24().ok_or(Error::Invalid)?;
        let body = r.take(len as usize).ok_or(Error::Invalid)?;
        Self::parse_body(body)
    }

    /// Parses a ClientHello body (after the 4-byte handshake header).
    pub fn parse_body(body: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let e = Error::Invalid;
        let legacy_version = r.u16().ok_or(e)?;
        let random = r.take(32).ok_or(e)?;
        let session_id = r.vec8().ok_or(e)?;
        let cipher_suites = r.vec16().ok_or(e)?;
        if cipher_suites.len() % 2 != 0 {
            return Err(e);
        }
        let compression_methods = r.vec8().ok_or(e)?;
        // Extensions are optional (SSLv3 / early TLS 1.0 hellos end here).
        let extensions = if r.is_empty() {
            &[][..]
        } else {
            r.vec16().ok_or(e)?
        };
        let mut hello = ClientHello {
            legacy_version,
            random,
            session_id,
            cipher_suites,
            compression_methods,
            extensions,
            sni: None,
            alpn: None,
            supported_versions: None,
            signature_algorithms: None,
            supported_groups: None,
            ec_point_formats: None,
        };
        let mut x = Reader::new(extensions);
        while !x.is_empty() {
            let ty = x.u16().ok_or(e)?;
            let data = x.vec16().ok_or(e)?;
            let slot = match ty {
                ext::SERVER_NAME => &mut hello.sni,
                ext::ALPN => &mut hello.alpn,
                ext::SUPPORTED_VERSIONS => &mut hello.supported_versions,
                ext::SIGNATURE_ALGORITHMS => &mut hello.signature_algorithms,
                ext::SUPPORTED_GROUPS => &mut hello.supported_groups,
                ext::EC_POINT_FORMATS => &mut hello.ec_point_formats,
                _ => continue,
            };
            // The first occurrence wins.
            if slot.is_none() {
                *slot = Some(data);
            }
        }
        Ok(hello)
    }

    /// Cipher suites in wire order (GREASE included).
    pub fn cipher_suites(&self) -> U16s<'a> {
        U16s::new(self.cipher_suites)
    }

    /// Number of cipher suites (GREASE included).
    pub fn cipher_suite_count(&self) -> usize {
        self.cipher_suites.len() / 2
    }

    /// Extensions `(type, data)` in wire order (GREASE included).
    pub fn extensions(&self) -> Extensions<'a> {
        Extensions {
            r: Reader::new(self.extensions),
        }
    }

    /// True if the extension `ty` is present.
    pub fn has_extension(&self, ty: u16) -> bool {
        match ty {
            ext::SERVER_NAME => self.sni.is_some(),
            ext::ALPN => self.alpn.is_some(),
            _ => self.extensions().any(|(t, _)| t == ty),
        }
    }

    /// Raw data of the server_name extension, if present.
    pub fn server_name_ext(&self) -> Option<&'a [u8]> {
        self.sni
    }

    /// The first host_name in the server_name extension.
    pub fn server_name(&self) -> Option<&'a [u8]> {
        let mut r = Reader::new(self.sni?);
        let mut list = Reader::new(r.vec16()?);
        while !list.is_empty() {
            let ty = list.u8()?;
            let name = list.vec16()?;
            if ty == 0 {
                return Some(name);
            }
        }
        None
    }

    /// True if the ALPN extension is present.
    pub fn has_alpn(&self) -> bool {
        self.alpn.is_some()
    }

    /// ALPN protocol names offered, in wire order (stops at a malformed entry).
    pub fn alpn(&self) -> Alpn<'a> {
        let list = self
            .alpn
            .and_then(|d| Reader::new(d).vec16())
            .unwrap_or(&[]);
        Alpn {
            r: Reader::new(list),
        }
    }

    /// supported_versions values (GREASE included); empty if absent or malformed.
    pub fn supported_versions(&self) -> U16s<'a> {
        U16s::new(
            self.supported_versions
                .and_then(|d| Reader::new(d).vec8())
                .unwrap_or(&[]),
        )
    }

    /// True if the supported_versions extension is present.
    pub fn has_supported_versions(&self) -> bool {
        self.supported_versions.is_some()
    }

    /// signature_algorithms values in wire order (GREASE included); empty if absent/malformed.
    pub fn signature_algorithms(&self) -> U16s<'a> {
        U16s::new(
            self.signature_algorithms
                .and_then(|d| Reader::new(d).vec16())
                .unwrap_or(&[]),
        )
    }

    /// supported_groups values in wire order (GREASE included); empty if absent/malformed.
    pub fn supported_groups(&self) -> U16s<'a> {
        U16s::new(
            self.supported_groups
                .and_then(|d| Reader::new(d).vec16())
                .unwrap_or(&[]),
        )
    }

    /// ec_point_formats values; empty if absent/malformed.
    pub fn ec_point_formats(&self) -> &'a [u8] {
        self.ec_point_formats
            .and_then(|d| Reader::new(d).vec8())
            .unwrap_or(&[])
    }
}

/// Iterator over `(type, data)` extensions.
#[derive(Clone, Debug)]
pub struct Extensions<'a> {
    r: Reader<'a>,
}

impl<'a> Iterator for Extensions<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let ty = self.r.u16()?;
        let data = self.r.vec16()?;
        Some((ty, data))
    }
}

/// Iterator over ALPN protocol names.
#[derive(Clone, Debug)]
pub struct Alpn<'a> {
    r: Reader<'a>,
}

impl<'a> Iterator for Alpn<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        self.r.vec8()
    }
}

/// RFC 8701 GREASE value (`0x?a?a` with equal bytes).
pub fn is_grease(v: u16) -> bool {
    (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// Encodes a handshake message as TLS handshake records, cutting it after each size in
/// `chunks` (the rest goes in one record). Used by tests, benches and corpus seeding to build
/// ClientHellos split across records.
pub fn wrap_records(msg: &[u8], chunks: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = msg;
    let mut i = 0;
    while !rest.is_empty() {
        let n = chunks.get(i).copied().unwrap_or(rest.len()).min(rest.len());
        let (a, b) = rest.split_at(n);
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(a.len() as u16).to_be_bytes());
        out.extend_from_slice(a);
        rest = b;
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal_hello() -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 4, 0x13, 0x01, 0x0a, 0x0a]);
        body.extend_from_slice(&[1, 0]);
        let mut exts = Vec::new();
        // SNI "a.b"
        exts.extend_from_slice(&[0, 0, 0, 8, 0, 6, 0, 0, 3, b'a', b'.', b'b']);
        // ALPN h2, http/1.1
        exts.extend_from_slice(&[0, 0x10, 0, 14, 0, 12, 2, b'h', b'2', 8]);
        exts.extend_from_slice(b"http/1.1");
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut msg = vec![1, 0];
        msg.extend_from_slice(&(body.len() as u16).to_be_bytes());
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn parse_minimal() {
        let msg = minimal_hello();
        let h = ClientHello::parse(&msg).unwrap();
        assert_eq!(h.legacy_version, 0x0303);
        assert_eq!(h.cipher_suites().collect::<Vec<_>>(), vec![0x1301, 0x0a0a]);
        assert_eq!(h.server_name(), Some(&b"a.b"[..]));
        assert_eq!(
            h.alpn().collect::<Vec<_>>(),
            vec![&b"h2"[..], &b"http/1.1"[..]]
        );
        assert_eq!(h.extensions().count(), 2);
    }

    #[test]
    fn status_and_reassembly() {
        let msg = minimal_hello();
        for chunks in [&[][..], &[10][..], &[1, 2][..], &[3, 1, 40][..]] {
            let stream = wrap_records(&msg, chunks);
            let st = client_hello_status(&stream);
            assert_eq!(
                st,
                HelloStatus::Complete {
                    records_len: stream.len(),
                    message_len: msg.len()
                }
            );
            let mut scratch = HelloBuf::new();
            assert_eq!(reassemble(&stream, &mut scratch).unwrap(), &msg[..]);
            for cut in 0..stream.len() {
                assert_eq!(client_hello_status(&stream[..cut]), HelloStatus::Incomplete);
            }
        }
        assert_eq!(
            client_hello_status(b"GET / HTTP/1.1\r\n"),
            HelloStatus::Invalid
        );
        assert_eq!(
            client_hello_status(&[22, 3, 1, 0, 4, 2]),
            HelloStatus::Invalid
        );
    }

    #[test]
    fn grease() {
        assert!(is_grease(0x0a0a));
        assert!(is_grease(0xfafa));
        assert!(!is_grease(0x0a1a));
        assert!(!is_grease(0x1301));
    }
}
