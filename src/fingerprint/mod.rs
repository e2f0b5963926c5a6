//! Fingerprints.
//!
//! Sans-IO and allocation-free: every function here takes the bytes a client sent and returns
//! fixed-size values or borrowed views; unbounded strings (JA3 string, `JA4_r`, HASSH
//! algorithms) are streamed into a caller's buffer. The two entry points used by the record
//! writer are [`tls_client`] and [`ssh_client`].
pub mod community_id;
pub mod hassh;
pub mod ja3;
pub mod ja4;
#[cfg(feature = "ja4plus")]
pub mod ja4h;
#[cfg(feature = "ja4plus")]
pub mod ja4t;
pub mod util;

use crate::json::JsonWriter;
use crate::proto::{ssh, tls};
use hassh::Hassh;
use ja3::Ja3;
use ja4::Ja4;
use util::Sink;

/// A TLS client's first ClientHello and its fingerprints.
///
/// Small (no copy of the hello): it keeps the stream and the computed fingerprints. Accessing
/// the parsed hello again ([`TlsClient::with_hello`]) re-parses it; when the hello spans several
/// records the fragments are reassembled into a 16 KiB stack buffer for the duration of that call.
#[derive(Clone, Copy, Debug)]
pub struct TlsClient<'a> {
    stream: &'a [u8],
    /// Stream bytes occupied by the records that carry the ClientHello.
    pub records_len: usize,
    /// JA4.
    pub ja4: Ja4,
    /// JA3 md5.
    pub ja3: Ja3,
}

/// Parses the first ClientHello of a client byte stream (starting with a TLS record) and
/// fingerprints it. `None` if the stream does not (yet) hold a complete, valid ClientHello.
pub fn tls_client(stream: &[u8]) -> Option<TlsClient<'_>> {
    let tls::HelloStatus::Complete {
        records_len,
        message_len,
    } = tls::client_hello_status(stream)
    else {
        return None;
    };
    let (ja4, ja3) = with_hello_at(stream, message_len, |h| (ja4::ja4(h), ja3::ja3(h)))?;
    Some(TlsClient {
        stream,
        records_len,
        ja4,
        ja3,
    })
}

fn with_hello_in<R>(stream: &[u8], f: impl FnOnce(&tls::ClientHello<'_>) -> R) -> Option<R> {
    // Fast path: the whole message in the first record, parsed in place.
    let tls::HelloStatus::Complete { message_len, .. } = tls::client_hello_status(stream) else {
        return None;
    };
    with_hello_at(stream, message_len, f)
}

fn with_hello_at<R>(
    stream: &[u8],
    message_len: usize,
    f: impl FnOnce(&tls::ClientHello<'_>) -> R,
) -> Option<R> {
    let first_len = usize::from(u16::from_be_bytes([*stream.get(3)?, *stream.get(4)?]));
    if first_len >= message_len {
        let h = tls::ClientHello::parse(stream.get(5..5 + message_len)?).ok()?;
        return Some(f(&h));
    }
    with_hello_split(stream, f)
}

#[inline(never)]
fn with_hello_split<R>(stream: &[u8], f: impl FnOnce(&tls::ClientHello<'_>) -> R) -> Option<R> {
    let mut scratch = tls::HelloBuf::new();
    let msg = tls::reassemble(stream, &mut scratch)?;
    let h = tls::ClientHello::parse(msg).ok()?;
    Some(f(&h))
}

/// A [`TlsClient`]'s fingerprints without the borrowed stream, to keep beside the bytes they
/// came from (a TLS connection writes them into every record and computes them once).
#[derive(Clone, Copy, Debug)]
pub struct TlsFingerprints {
    records_len: usize,
    ja4: Ja4,
    ja3: Ja3,
}

impl TlsFingerprints {
    /// The [`TlsClient`] again, over the `stream` these fingerprints were computed from.
    pub fn attach<'a>(&self, stream: &'a [u8]) -> TlsClient<'a> {
        TlsClient {
            stream,
            records_len: self.records_len,
            ja4: self.ja4,
            ja3: self.ja3,
        }
    }
}

impl TlsClient<'_> {
    /// The fingerprints, to [`TlsFingerprints::attach`] to the same stream later.
    pub fn detach(&self) -> TlsFingerprints {
        TlsFingerprints {
            records_len: self.records_len,
            ja4: self.ja4,
            ja3: self.ja3,
        }
    }

    /// Runs `f` on the parsed ClientHello.
    pub fn with_hello<R>(&self, f: impl FnOnce(&tls::ClientHello<'_>) -> R) -> Option<R> {
        with_hello_in(self.stream, f)
    }

    /// Streams `JA4_r` into `out`.
    pub fn write_ja4_r(&self, out: &mut impl Sink) {
        self.with_hello(|h| ja4::write_ja4_r(h, out));
    }

    /// Streams the JA3 string into `out`.
    pub fn write_ja3_string(&self, out: &mut impl Sink) {
        self.with_hello(|h| ja3::write_ja3_string(h, out));
    }

    /// Writes `client: { server_name, supported_protocols, hash: { ja4 }, ja3 }` inside an
    /// already open `tls` object.
    pub fn write_fields(&self, w: &mut JsonWriter<'_>) {
        w.begin_object("client");
        self.write_client_members(w);
        w.end_object();
    }

    /// Writes the members of `tls.client` (for a caller that has `tls.client` open already).
    pub fn write_client_members(&self, w: &mut JsonWriter<'_>) {
        self.with_hello(|h| {
            if let Some(sni) = h.server_name() {
                w.str("server_name", sni);
            }
            if h.has_alpn() {
                w.str_array("supported_protocols", h.alpn());
            }
        });
        w.begin_object("hash");
        w.str("ja4", self.ja4.as_bytes());
        w.end_object();
        w.str("ja3", self.ja3.as_bytes());
    }

    /// Writes `tls: { ja4_r, ja3_string }` inside an already open `spip` object.
    pub fn write_spip_fields(&self, w: &mut JsonWriter<'_>) {
        w.begin_object("tls");
        // Both strings are ASCII we produce ourselves (hex, digits, separators): no escaping.
        w.key_only("ja4_r");
        w.buf().push(b'"');
        self.write_ja4_r(w.buf());
        w.buf().push(b'"');
        w.key_only("ja3_string");
        w.buf().push(b'"');
        self.write_ja3_string(w.buf());
        w.buf().push(b'"');
        w.end_object();
    }
}

/// An SSH client's identification line and first KEXINIT with its HASSH.
#[derive(Clone, Copy, Debug)]
pub struct SshClient<'a> {
    /// Identification line (absent when the stream starts at the binary packets).
    pub banner: Option<ssh::Banner<'a>>,
    /// The first KEXINIT (absent for SSH-1 clients or a banner-only stream).
    pub kexinit: Option<ssh::KexInit<'a>>,
    /// HASSH of the KEXINIT.
    pub hassh: Option<Hassh>,
    /// Stream bytes parsed.
    pub len: usize,
}

/// Parses an SSH client stream (banner and/or KEXINIT) and computes HASSH.
/// `None` if neither a banner nor a KEXINIT is present. A banner whose KEXINIT has not
/// arrived (yet) yields a client without `kexinit`/`hassh`.
pub fn ssh_client(stream: &[u8]) -> Option<SshClient<'_>> {
    match ssh::parse_client(stream) {
        Ok(c) => Some(SshClient {
            banner: c.banner,
            kexinit: c.kexinit,
            hassh: c.kexinit.as_ref().map(hassh::hassh),
            len: c.len,
        }),
        Err(_) => {
            let (banner, len) = ssh::parse_banner(stream).ok()?;
            Some(SshClient {
                banner: Some(banner),
                kexinit: None,
                hassh: None,
                len,
            })
        }
    }
}

impl SshClient<'_> {
    /// Streams `hasshAlgorithms` into `out` (nothing without a KEXINIT).
    pub fn write_hassh_algorithms(&self, out: &mut impl Sink) {
        if let Some(k) = &self.kexinit {
            hassh::write_hassh_algorithms(k, out);
        }
    }

    /// Writes `client: { hash: { hassh } }` inside an already open `ssh` object (nothing
    /// without a KEXINIT).
    pub fn write_fields(&self, w: &mut JsonWriter<'_>) {
        if let Some(h) = &self.hassh {
            w.begin_object("client");
            w.begin_object("hash");
            w.str("hassh", h.as_bytes());
            w.end_object();
            w.end_object();
        }
    }

    /// Writes `ssh: { client_banner, hassh_algorithms }` inside an already open `spip` object.
    pub fn write_spip_fields(&self, w: &mut JsonWriter<'_>) {
        w.begin_object("ssh");
        if let Some(b) = &self.banner {
            w.str("client_banner", b.line);
        }
        if let Some(k) = &self.kexinit {
            // Name-lists come from the network: escape them.
            w.key_only("hassh_algorithms");
            util::write_escaped_pieces(w.buf(), |s| hassh::write_hassh_algorithms(k, s));
        }
        w.end_object();
    }
}
