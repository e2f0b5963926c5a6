//! The engine in memory: bytes, splits and timeouts in; replies, records and close reasons out.
//!
//! Test code only: its parent declares it under #[cfg(test)].

use super::*;
use crate::protocols::testing::assert_unique_keys;
use serde_json::Value;

fn config() -> EngineConfig {
    EngineConfig {
        sensor_name: "test".into(),
        community_id_seed: 0,
        settings: Settings::default(),
        max_payload_bytes: 65536,
        read_timeout: Duration::from_secs(30),
        session_timeout: Duration::from_secs(120),
        handshake_timeout: Duration::from_secs(10),
        turn_pause: Duration::from_millis(200),
        max_records: 100,
        max_record_bytes: 1 << 20,
        log_empty_connections: true,
        ports: PortTable::new([]),
        tls: None,
        starttls: None,
    }
}

/// A connection to `port` from 192.0.2.7, accepted at `t0`.
fn connect(cfg: &EngineConfig, port: u16, t0: Instant) -> Connection {
    let accepted = Accepted {
        source: "192.0.2.7:40000".parse().unwrap(),
        destination: SocketAddr::new("198.51.100.2".parse().unwrap(), port),
        original_destination: true,
        event_id: crate::record::EventIds::new().next_id(),
        random: 7,
        started: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        syn: None,
    };
    Connection::new(cfg, accepted, t0)
}

fn records(out: &[u8]) -> Vec<Value> {
    out.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            assert_unique_keys(l);
            serde_json::from_slice(l).unwrap()
        })
        .collect()
}

fn payload(r: &Value) -> Vec<u8> {
    let hex = r["event"]["original_payload_hex"].as_str().unwrap_or("");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn http_request_in_segments_is_one_record_and_one_reply() {
    let cfg = config();
    let t0 = Instant::now();
    let mut c = connect(&cfg, 8080, t0);
    let mut out = Vec::new();
    assert!(
        c.transmit().is_empty(),
        "no greeting on a port without a responder"
    );
    let req = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
    for (i, b) in req.chunks(3).enumerate() {
        c.handle_bytes(&cfg, b, t0 + Duration::from_millis(i as u64), &mut out);
    }
    let reply = std::mem::take(c.transmit());
    assert!(reply.starts_with(b"HTTP/1.1 200 OK"));
    c.handle_close(&cfg, PeerClose::Eof, t0 + Duration::from_secs(1), &mut out);
    let recs = records(&out);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["url"]["path"], "/x");
    assert_eq!(recs[0]["spip"]["turn"], 1);
    assert_eq!(c.closing(), Some(CloseReason::Eof));
}

#[test]
fn one_byte_segments_become_one_turn_at_the_pause() {
    let cfg = config();
    let t0 = Instant::now();
    let mut c = connect(&cfg, 9999, t0);
    let mut out = Vec::new();
    let data: Vec<u8> = (0..2000).map(|i| b'a' + (i % 26) as u8).collect();
    for (i, b) in data.iter().enumerate() {
        let now = t0 + Duration::from_micros(i as u64 * 50);
        c.handle_bytes(&cfg, std::slice::from_ref(b), now, &mut out);
    }
    assert!(out.is_empty(), "nothing recorded before the pause");
    let pause = c.deadline();
    c.handle_timeout(&cfg, pause, &mut out);
    let recs = records(&out);
    assert_eq!(recs.len(), 1);
    assert_eq!(payload(&recs[0]), data);
    assert_eq!(c.transmit().as_slice(), b"192.0.2.7");
    assert!(!c.budget_exhausted());
}

#[test]
fn pipelined_requests_stay_within_the_budget_and_nothing_is_lost() {
    let cfg = config();
    let t0 = Instant::now();
    let mut c = connect(&cfg, 80, t0);
    let mut out = Vec::new();
    let one = b"GET / HTTP/1.1\r\n\r\n";
    let all: Vec<u8> = one.iter().copied().cycle().take(one.len() * 2000).collect();
    for chunk in all.chunks(1000) {
        c.handle_bytes(&cfg, chunk, t0, &mut out);
    }
    c.handle_close(&cfg, PeerClose::Eof, t0, &mut out);
    let recs = records(&out);
    assert_eq!(recs.len(), cfg.max_records as usize);
    let last = recs.last().unwrap();
    assert_eq!(last["spip"]["budget_exhausted"], true);
    assert!(c.budget_exhausted(), "counted by the capture layer");
    // Every byte, in order.
    let joined: Vec<u8> = recs.iter().flat_map(payload).collect();
    assert_eq!(joined, all);
}

#[test]
fn payload_cap_ends_the_connection_with_every_byte_recorded() {
    let mut cfg = config();
    cfg.max_payload_bytes = 1000;
    let t0 = Instant::now();
    let mut c = connect(&cfg, 9999, t0);
    let mut out = Vec::new();
    c.handle_bytes(&cfg, &[b'x'; 600], t0, &mut out);
    c.handle_bytes(&cfg, &[b'y'; 600], t0, &mut out);
    assert_eq!(c.closing(), Some(CloseReason::PayloadCap));
    let recs = records(&out);
    assert_eq!(recs.len(), 1);
    assert_eq!(payload(&recs[0]).len(), 1000);
    assert_eq!(recs[0]["spip"]["close_reason"], "payload_cap");
}

#[test]
fn silent_connection_times_out_with_an_empty_record() {
    let cfg = config();
    let t0 = Instant::now();
    let mut c = connect(&cfg, 9999, t0);
    let mut out = Vec::new();
    assert_eq!(c.deadline(), t0 + cfg.read_timeout);
    c.handle_timeout(&cfg, c.deadline(), &mut out);
    assert_eq!(c.closing(), Some(CloseReason::ReadTimeout));
    let recs = records(&out);
    assert_eq!(recs[0]["spip"]["empty"], true);
    assert_eq!(recs[0]["spip"]["close_reason"], "read_timeout");
}

#[test]
fn ssh_port_greets_and_http_on_it_still_gets_http() {
    let cfg = config();
    let t0 = Instant::now();
    let mut c = connect(&cfg, 22, t0);
    assert!(c.transmit().starts_with(b"SSH-2.0-"), "banner at accept");
    c.transmit().clear();
    let mut out = Vec::new();
    c.handle_bytes(&cfg, b"GET / HTTP/1.0\r\n\r\n", t0, &mut out);
    assert!(c.transmit().starts_with(b"HTTP/1.1 200 OK"));
    assert_eq!(c.closing(), Some(CloseReason::Protocol));
    assert_eq!(records(&out)[0]["network"]["protocol"], "http");
}

#[test]
fn bytes_after_a_protocol_end_are_recorded() {
    let cfg = config();
    let t0 = Instant::now();
    let mut c = connect(&cfg, 80, t0);
    let mut out = Vec::new();
    c.handle_bytes(&cfg, b"GET / HTTP/1.0\r\n\r\nEXTRA", t0, &mut out);
    assert_eq!(c.closing(), Some(CloseReason::Protocol));
    let recs = records(&out);
    assert_eq!(recs.len(), 2);
    assert_eq!(payload(&recs[1]), b"EXTRA");
}

#[test]
fn incomplete_request_at_eof_is_recorded_truncated() {
    let cfg = config();
    let t0 = Instant::now();
    let mut c = connect(&cfg, 80, t0);
    let mut out = Vec::new();
    c.handle_bytes(&cfg, b"GET / HTTP/1.1\r\nHost:", t0, &mut out);
    c.handle_close(&cfg, PeerClose::Eof, t0, &mut out);
    let recs = records(&out);
    assert_eq!(recs[0]["spip"]["truncated"], true);
    assert_eq!(recs[0]["spip"]["close_reason"], "eof");
}

#[test]
fn session_deadline_ends_a_chatty_client() {
    let cfg = config();
    let t0 = Instant::now();
    let mut c = connect(&cfg, 9999, t0);
    let mut out = Vec::new();
    let mut now = t0;
    while c.closing().is_none() {
        now += Duration::from_secs(10);
        if now >= c.deadline() {
            c.handle_timeout(&cfg, now, &mut out);
        } else {
            c.handle_bytes(&cfg, b"x\n", now, &mut out);
        }
        assert!(now <= t0 + Duration::from_secs(200), "bounded");
    }
    assert_eq!(c.closing(), Some(CloseReason::SessionTimeout));
}

#[test]
fn replies_carry_the_wall_time_of_their_step() {
    // smbclient's SMB2 NEGOTIATE, 90 s after the accept: the SystemTime in our answer is the
    // accept's wall time plus those 90 s, not the accept's time and not the host's clock.
    let session = crate::inspect::decode_hex(
        include_str!("../../tests/data/ntlm/smbclient-session.hex").trim(),
    )
    .unwrap();
    let negotiate = &session[..4 + usize::from(u16::from_be_bytes([session[2], session[3]]))];
    let cfg = config();
    let t0 = Instant::now();
    let mut c = connect(&cfg, 445, t0);
    let mut out = Vec::new();
    c.handle_bytes(&cfg, negotiate, t0 + Duration::from_secs(90), &mut out);
    let reply = std::mem::take(c.transmit());
    assert_eq!(&reply[4..8], b"\xfeSMB");
    let system_time = u64::from_le_bytes(reply[4 + 64 + 40..4 + 64 + 48].try_into().unwrap());
    assert_eq!(system_time, (1_700_000_090 + 11_644_473_600) * 10_000_000);
}
