#![no_main]
//! The whole connection engine: random bytes at random splits, random pauses and timeouts,
//! random ends, plain or TLS mode, on ports with and without a greeting responder. Every record
//! must be one valid JSON object, and what one connection writes and sends stays bounded.
use libfuzzer_sys::fuzz_target;
use spip::engine::tls::TlsConfigs;
use spip::engine::{Accepted, Connection, EngineConfig, PeerClose, PortTable};
use spip::protocols::Settings;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

const PORTS: [u16; 16] = [
    80, 22, 9999, 443, 25, 21, 23, 110, 143, 3306, 5432, 6379, 445, 1433, 3389, 5900,
];
const MAX_RECORDS: u32 = 20;
const MAX_RECORD_BYTES: usize = 256 * 1024;
const PAYLOAD_CAP: usize = 16 * 1024;

fn config(tls: bool) -> EngineConfig {
    static TLS: OnceLock<TlsConfigs> = OnceLock::new();
    let certificate = || {
        TLS.get_or_init(|| TlsConfigs::self_signed("fuzz").expect("self-signed certificate"))
            .clone()
    };
    EngineConfig {
        sensor_name: "fuzz".into(),
        community_id_seed: 0,
        settings: Settings::default(),
        max_payload_bytes: PAYLOAD_CAP,
        read_timeout: Duration::from_secs(30),
        session_timeout: Duration::from_secs(120),
        handshake_timeout: Duration::from_secs(10),
        turn_pause: Duration::from_millis(200),
        max_records: MAX_RECORDS,
        max_record_bytes: MAX_RECORD_BYTES,
        log_empty_connections: true,
        ports: PortTable::new([]),
        tls: tls.then(certificate),
        starttls: Some(certificate()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut ops)) = data.split_first() else {
        return;
    };
    let cfg = config(flags & 1 == 1);
    let t0 = Instant::now();
    let mut now = t0;
    let accepted = Accepted {
        source: "203.0.113.9:40000".parse().unwrap(),
        destination: std::net::SocketAddr::new(
            "198.51.100.2".parse().unwrap(),
            PORTS[usize::from(flags >> 4)],
        ),
        original_destination: true,
        event_id: spip::record::EventIds::new().next_id(),
        random: u64::from(flags),
        started: SystemTime::now(),
        syn: None,
    };
    let mut conn = Connection::new(&cfg, accepted, now);
    let mut records = Vec::new();
    let mut sent = conn.transmit().len();
    conn.transmit().clear();
    while let Some((&op, rest)) = ops.split_first() {
        ops = rest;
        match op {
            0..=0xbf => {
                let n = (usize::from(op) + 1).min(ops.len());
                let (chunk, rest) = ops.split_at(n);
                ops = rest;
                conn.handle_bytes(&cfg, chunk, now, &mut records);
            }
            0xc0..=0xef => {
                now += Duration::from_millis(u64::from(op & 0x3f) * 100);
                if now >= conn.deadline() {
                    conn.handle_timeout(&cfg, now, &mut records);
                }
            }
            _ => {
                let how = [
                    PeerClose::Eof,
                    PeerClose::Reset,
                    PeerClose::Shutdown,
                    PeerClose::WriteError,
                ][usize::from(op & 3)];
                conn.handle_close(&cfg, how, now, &mut records);
            }
        }
        sent += conn.transmit().len();
        conn.transmit().clear();
        if conn.closing().is_some() {
            break;
        }
    }
    // The client goes away: everything left is recorded.
    conn.handle_close(&cfg, PeerClose::Eof, now, &mut records);
    assert!(conn.closing().is_some());
    let mut count = 0;
    let mut bytes = 0;
    for line in records.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line).expect("a record is valid JSON");
        assert!(v.is_object());
        count += 1;
        bytes += line.len();
    }
    assert!(count >= 1, "every connection yields a record");
    assert!(count <= MAX_RECORDS as usize, "{count} records");
    // The budget is checked before each record; the last one may carry up to the payload cap.
    assert!(
        bytes <= MAX_RECORD_BYTES + 16 * PAYLOAD_CAP + 64 * 1024,
        "{bytes} record bytes"
    );
    assert!(
        sent <= 64 * 1024 + MAX_RECORDS as usize * 4096,
        "{sent} bytes sent"
    );
});
