//! One ECS record per client turn, written straight from borrowed data.
//!
//! Field paths follow the Go agent (nested objects: `event.id` is `{"event":{"id":..}}`);
//! sensor-specific facts go under `spip`.

use crate::engine::tls::TlsInfo;
use crate::fingerprint::TlsClient;
use crate::json::JsonWriter;
use crate::proto::syn::SynFacts;
use crate::protocols::TurnFields;
use crate::protocols::tls::{write_tls, write_tls_spip};
use crate::scan::payload_tags::write_tags;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What is known about a connection, shared by all of its records.
pub struct ConnMeta<'a> {
    pub event_id: &'a str,
    pub sensor_name: &'a str,
    pub source: SocketAddr,
    /// The port the client really dialled (original destination), or the local address.
    pub destination: SocketAddr,
    /// False when no NAT original destination existed and the local address was used.
    pub original_destination: bool,
    pub community_id: &'a str,
    pub started: SystemTime,
    /// The client's SYN, when the kernel saved it.
    pub syn: Option<&'a SynFacts>,
}

/// Why a connection ended (written on its last record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Eof,
    Reset,
    ReadTimeout,
    SessionTimeout,
    PayloadCap,
    Protocol,
    Shutdown,
    WriteError,
    /// TLS mode: the handshake did not finish within `handshake_timeout`.
    HandshakeTimeout,
    /// TLS mode: the handshake or the TLS session failed (`spip.tls_error` says why).
    TlsError,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Eof => "eof",
            CloseReason::Reset => "reset",
            CloseReason::ReadTimeout => "read_timeout",
            CloseReason::SessionTimeout => "session_timeout",
            CloseReason::PayloadCap => "payload_cap",
            CloseReason::Protocol => "protocol_done",
            CloseReason::Shutdown => "shutdown",
            CloseReason::WriteError => "write_error",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::TlsError => "tls_error",
        }
    }
}

/// Per-record facts.
pub struct TurnMeta {
    /// 1-based turn number; 0 for an empty connection's record.
    pub turn: u32,
    pub at: SystemTime,
    /// Client bytes received on the connection so far.
    pub client_bytes: u64,
    /// The turn was cut at the payload cap or ended by a timeout before it was complete.
    pub truncated: bool,
    pub close_reason: Option<CloseReason>,
    /// The connection's record budget was spent: this record holds the rest of its payload.
    pub budget_exhausted: bool,
}

/// What a turn's record says about its bytes.
pub struct Content<'a> {
    pub payload: &'a [u8],
    pub fields: &'a dyn TurnFields,
    /// TLS mode: the connection's ClientHello fingerprints and handshake facts, on every record
    /// after the hello's own.
    pub tls: Option<TlsLayer<'a>>,
}

/// A TLS connection's facts shared by its records.
#[derive(Clone, Copy)]
pub struct TlsLayer<'a> {
    pub client: Option<TlsClient<'a>>,
    pub session: Option<&'a TlsInfo>,
}

/// Appends one record (and a trailing newline) to `out`.
pub fn write_record(
    out: &mut Vec<u8>,
    conn: &ConnMeta,
    turn: &TurnMeta,
    content: Option<&Content<'_>>,
) {
    let mut w = JsonWriter::new(out);
    w.begin();
    w.key_only("@timestamp");
    write_timestamp(w.buf(), turn.at);

    w.begin_object("event");
    w.str("id", conn.event_id.as_bytes());
    w.str("ingested_by", b"spip");
    if let Some(c) = content {
        if c.fields.summary() {
            w.str("summary", c.payload);
        }
        w.hex("original_payload_hex", c.payload);
    }
    w.u64("duration", duration_nanos(conn.started, turn.at));
    w.end_object();

    let name = conn.sensor_name.as_bytes();
    w.begin_object("observer");
    w.str("hostname", name);
    w.str("id", name);
    w.end_object();
    w.begin_object("host");
    w.str("name", name);
    w.end_object();

    w.begin_object("source");
    write_ip(&mut w, conn.source);
    w.u64("port", u64::from(conn.source.port()));
    w.u64("bytes", turn.client_bytes);
    w.end_object();
    w.begin_object("destination");
    write_ip(&mut w, conn.destination);
    w.u64("port", u64::from(conn.destination.port()));
    w.end_object();

    w.begin_object("network");
    w.str("transport", b"tcp");
    let protocol = content.and_then(|c| match c.tls {
        Some(_) => Some("tls"),
        None => c.fields.protocol(),
    });
    if let Some(p) = protocol {
        w.str("protocol", p.as_bytes());
    }
    w.str("community_id", conn.community_id.as_bytes());
    w.end_object();

    if let Some(c) = content {
        write_tags(&mut w, c.payload);
        if let Some(layer) = &c.tls {
            write_tls(&mut w, layer.client.as_ref(), layer.session);
        }
        c.fields.write_ecs(&mut w);
    }

    w.begin_object("spip");
    w.u64("turn", u64::from(turn.turn));
    if content.is_none() {
        w.bool("empty", true);
    }
    if turn.truncated {
        w.bool("truncated", true);
    }
    if !conn.original_destination {
        w.bool("no_original_destination", true);
    }
    if let Some(r) = turn.close_reason {
        w.str("close_reason", r.as_str().as_bytes());
    }
    if turn.budget_exhausted {
        w.bool("budget_exhausted", true);
    }
    if let Some(c) = content {
        if let Some(layer) = &c.tls {
            write_tls_spip(&mut w, layer.client.as_ref(), layer.session);
        }
        c.fields.write_spip(&mut w);
    }
    if let Some(syn) = conn.syn {
        write_syn(&mut w, syn);
    }
    w.end_object();
    w.finish();
    out.push(b'\n');
}

/// `spip.syn`: what the client's SYN says about its stack (ECS has no TCP/IP header fields).
fn write_syn(w: &mut JsonWriter, syn: &SynFacts) {
    w.begin_object("syn");
    w.u64("ttl", u64::from(syn.ttl));
    w.u64("window", u64::from(syn.window));
    if let Some(mss) = syn.options.mss {
        w.u64("mss", u64::from(mss));
    }
    if let Some(shift) = syn.options.window_scale {
        w.u64("window_scale", u64::from(shift));
    }
    w.str("options", syn.options.kinds_text().as_bytes());
    if syn.options.malformed {
        w.bool("options_malformed", true);
    }
    w.u64("tcp_flags", u64::from(syn.tcp_flags));
    if syn.ecn_setup() {
        w.bool("ecn", true);
    }
    if syn.ip_ecn != 0 {
        w.u64("ip_ecn", u64::from(syn.ip_ecn));
    }
    #[cfg(feature = "ja4plus")]
    w.str(
        "ja4t",
        crate::fingerprint::ja4t::ja4t(syn.window, &syn.options).as_bytes(),
    );
    w.end_object();
}

fn write_ip(w: &mut JsonWriter, addr: SocketAddr) {
    let mut tmp = [0u8; 46];
    let n = format_ip(&mut tmp, addr.ip());
    w.str("ip", &tmp[..n]);
}

/// Formats the IP (IPv4-mapped IPv6 shown as IPv4) into `buf`, returning its length.
pub fn format_ip(buf: &mut [u8; 46], ip: std::net::IpAddr) -> usize {
    use std::io::Write;
    match ip.to_canonical() {
        // The common case, without the formatting machinery.
        std::net::IpAddr::V4(v4) => {
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                let width = if octet >= 100 {
                    3
                } else if octet >= 10 {
                    2
                } else {
                    1
                };
                digits(&mut buf[n..n + width], u64::from(octet));
                n += width;
            }
            n
        }
        ip => {
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cursor, "{ip}");
            cursor.position() as usize
        }
    }
}

fn duration_nanos(start: SystemTime, at: SystemTime) -> u64 {
    at.duration_since(start)
        .unwrap_or(Duration::ZERO)
        .as_nanos()
        .min(u64::MAX as u128) as u64
}

/// Writes `"YYYY-MM-DDTHH:MM:SS.ffffffZ"` (RFC 3339, UTC, microseconds).
pub fn write_timestamp(out: &mut Vec<u8>, t: SystemTime) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let mut b = *b"\"0000-00-00T00:00:00.000000Z\"";
    digits(&mut b[1..5], year.clamp(0, 9999) as u64);
    digits(&mut b[6..8], u64::from(month));
    digits(&mut b[9..11], u64::from(day));
    digits(&mut b[12..14], rem / 3600);
    digits(&mut b[15..17], rem / 60 % 60);
    digits(&mut b[18..20], rem % 60);
    digits(&mut b[21..27], u64::from(since.subsec_micros()));
    out.extend_from_slice(&b);
}

/// Fills `dst` with the low decimal digits of `v`, zero-padded.
fn digits(dst: &mut [u8], mut v: u64) {
    for d in dst.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A fast per-thread generator for event IDs (UUID v4 layout), seeded from the OS once.
/// IDs must be unique, not secret, so a getrandom syscall per connection is not worth it.
pub struct EventIds {
    state: [u64; 4],
}

impl EventIds {
    pub fn new() -> Self {
        let mut seed = [0u8; 32];
        if getrandom::fill(&mut seed).is_err() {
            // No OS randomness: fall back to time and addresses, still unique per thread.
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            let local = &seed as *const _ as u64;
            seed[..16].copy_from_slice(&t.to_le_bytes());
            seed[16..24].copy_from_slice(&local.to_le_bytes());
            seed[24..].copy_from_slice(&u64::from(std::process::id()).to_le_bytes());
        }
        let mut state = [0u64; 4];
        for (i, s) in state.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&seed[i * 8..i * 8 + 8]);
            *s = u64::from_le_bytes(b) | 1;
        }
        EventIds { state }
    }

    /// A random 64-bit value (per-connection seeds for challenges and salts).
    pub fn next_u64(&mut self) -> u64 {
        // xoshiro256**
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A new hyphenated lowercase UUID v4.
    pub fn next_id(&mut self) -> EventId {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        let uuid = uuid::Builder::from_random_bytes(bytes).into_uuid();
        let mut buf = [0u8; 36];
        uuid.hyphenated().encode_lower(&mut buf);
        EventId(buf)
    }
}

impl Default for EventIds {
    fn default() -> Self {
        Self::new()
    }
}

/// A UUID as 36 ASCII bytes.
#[derive(Debug, Clone, Copy)]
pub struct EventId(pub [u8; 36]);

impl EventId {
    pub fn as_str(&self) -> &str {
        // ok: encode_lower writes only ASCII hex digits and hyphens.
        std::str::from_utf8(&self.0).unwrap_or("00000000-0000-0000-0000-000000000000")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::raw::RawTurn;

    fn meta<'a>(id: &'a str) -> ConnMeta<'a> {
        ConnMeta {
            event_id: id,
            sensor_name: "sensor-1",
            source: "[::ffff:192.0.2.1]:40000".parse().unwrap(),
            destination: "198.51.100.2:6881".parse().unwrap(),
            original_destination: true,
            community_id: "1:abc=",
            started: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            syn: None,
        }
    }

    #[test]
    fn ip_formatting() {
        let mut b = [0u8; 46];
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.9",
            "::1",
            "2001:db8::7",
        ] {
            let n = format_ip(&mut b, ip.parse().unwrap());
            assert_eq!(&b[..n], ip.as_bytes());
        }
        let n = format_ip(&mut b, "::ffff:192.0.2.1".parse().unwrap());
        assert_eq!(&b[..n], b"192.0.2.1");
    }

    #[test]
    fn timestamps() {
        let mut out = Vec::new();
        write_timestamp(
            &mut out,
            UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
        );
        assert_eq!(out, b"\"2023-11-14T22:13:20.123456Z\"");
        let mut out = Vec::new();
        write_timestamp(&mut out, UNIX_EPOCH + Duration::from_secs(951_782_400)); // leap day 2000
        assert_eq!(out, b"\"2000-02-29T00:00:00.000000Z\"");
    }

    #[test]
    fn record_has_go_agent_paths() {
        let ids = &mut EventIds::new();
        let id = ids.next_id();
        let conn = meta(id.as_str());
        let turn = TurnMeta {
            turn: 1,
            at: conn.started + Duration::from_millis(5),
            client_bytes: 6,
            truncated: false,
            close_reason: Some(CloseReason::Eof),
            budget_exhausted: false,
        };
        let content = Content {
            payload: b"hello\n",
            fields: &RawTurn,
            tls: None,
        };
        let mut out = Vec::new();
        write_record(&mut out, &conn, &turn, Some(&content));
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["event"]["id"], id.as_str());
        assert_eq!(v["event"]["ingested_by"], "spip");
        assert_eq!(v["event"]["summary"], "hello\n");
        assert_eq!(v["event"]["original_payload_hex"], "68656c6c6f0a");
        assert_eq!(v["event"]["duration"], 5_000_000);
        assert_eq!(v["observer"]["hostname"], "sensor-1");
        assert_eq!(v["observer"]["id"], "sensor-1");
        assert_eq!(v["host"]["name"], "sensor-1");
        assert_eq!(v["source"]["ip"], "192.0.2.1");
        assert_eq!(v["source"]["port"], 40000);
        assert_eq!(v["destination"]["ip"], "198.51.100.2");
        assert_eq!(v["destination"]["port"], 6881);
        assert_eq!(v["network"]["transport"], "tcp");
        assert_eq!(v["network"]["community_id"], "1:abc=");
        assert_eq!(v["spip"]["close_reason"], "eof");
        assert!(v["@timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(v.get("tags").is_none());
    }

    #[test]
    fn payload_tags_are_ecs_tags() {
        let conn = meta("00000000-0000-4000-8000-000000000000");
        let turn = TurnMeta {
            turn: 1,
            at: conn.started,
            client_bytes: 30,
            truncated: false,
            close_reason: None,
            budget_exhausted: false,
        };
        let content = Content {
            payload: b"GET /${jndi:ldap://x} HTTP/1.0\r\n\r\n",
            fields: &RawTurn,
            tls: None,
        };
        let mut out = Vec::new();
        write_record(&mut out, &conn, &turn, Some(&content));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["tags"], serde_json::json!(["log4shell"]));
    }

    #[test]
    fn empty_connection_record() {
        let conn = meta("00000000-0000-4000-8000-000000000000");
        let turn = TurnMeta {
            turn: 0,
            at: conn.started,
            client_bytes: 0,
            truncated: false,
            close_reason: Some(CloseReason::ReadTimeout),
            budget_exhausted: false,
        };
        let mut out = Vec::new();
        write_record(&mut out, &conn, &turn, None);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v["event"].get("original_payload_hex").is_none());
        assert_eq!(v["spip"]["empty"], true);
    }

    #[test]
    fn syn_facts_on_the_record() {
        // An ECN-setup SYN (ECE+CWR) from macOS: MSS, wscale 6, timestamps, SACK, EOL padding.
        let mut syn_bytes = vec![
            0x45, 0x02, 0, 64, 0, 0, 0x40, 0, 64, 6, 0, 0, 192, 0, 2, 1, 198, 51, 100, 2,
        ];
        syn_bytes.extend_from_slice(&[0xd4, 0x31, 0x1a, 0xe1, 0, 0, 0, 1, 0, 0, 0, 0, 0xb0, 0xc2]);
        syn_bytes.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        syn_bytes.extend_from_slice(&[2, 4, 5, 0xb4, 1, 3, 3, 6, 1, 1, 8, 10]);
        syn_bytes.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 4, 2, 0, 0]);
        let facts = crate::proto::syn::parse(&syn_bytes).unwrap();
        let mut conn = meta("00000000-0000-4000-8000-000000000000");
        conn.syn = Some(&facts);
        let turn = TurnMeta {
            turn: 0,
            at: conn.started,
            client_bytes: 0,
            truncated: false,
            close_reason: Some(CloseReason::Eof),
            budget_exhausted: false,
        };
        let mut out = Vec::new();
        write_record(&mut out, &conn, &turn, None);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let syn = &v["spip"]["syn"];
        assert_eq!(syn["ttl"], 64);
        assert_eq!(syn["window"], 65535);
        assert_eq!(syn["mss"], 1460);
        assert_eq!(syn["window_scale"], 6);
        assert_eq!(syn["options"], "2-1-3-1-1-8-4-0-0");
        assert_eq!(syn["tcp_flags"], 0xc2);
        assert_eq!(syn["ecn"], true);
        assert_eq!(syn["ip_ecn"], 2);
        assert!(syn.get("options_malformed").is_none());
        #[cfg(feature = "ja4plus")]
        assert_eq!(syn["ja4t"], "65535_2-1-3-1-1-8-4-0-0_1460_6");
        #[cfg(not(feature = "ja4plus"))]
        assert!(syn.get("ja4t").is_none());
    }

    #[test]
    fn event_ids_are_v4_and_distinct() {
        let mut ids = EventIds::new();
        let a = ids.next_id();
        let b = ids.next_id();
        assert_ne!(a.as_str(), b.as_str());
        let u = uuid::Uuid::parse_str(a.as_str()).unwrap();
        assert_eq!(u.get_version_num(), 4);
    }
}
