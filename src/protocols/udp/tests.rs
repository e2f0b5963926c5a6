//! Each responder on real client datagrams (tests/data/udp/SOURCES says where they came from).
//!
//! Test code only: its parent declares it under #[cfg(test)].

use super::*;
use std::time::SystemTime;

const DIG_A: &[u8] = include_bytes!("../../../tests/data/udp/dig_a.bin");
const DIG_TXT: &[u8] = include_bytes!("../../../tests/data/udp/dig_txt_noedns.bin");
const SNMP_V2C: &[u8] = include_bytes!("../../../tests/data/udp/snmpget_v2c.bin");
const SNMP_V1: &[u8] = include_bytes!("../../../tests/data/udp/snmpget_v1.bin");
const SIP_OPTIONS: &[u8] = include_bytes!("../../../tests/data/udp/sipsak_options.bin");
const QUIC_HEX: &str = include_str!("../../../tests/data/udp/rfc9001_a2_client_initial.hex");

/// The datagram's record fields (ECS and `spip`) as JSON.
fn fields(d: &Datagram<'_>) -> serde_json::Value {
    let mut out = Vec::new();
    let mut w = JsonWriter::new(&mut out);
    w.begin();
    d.write_ecs(&mut w);
    w.begin_object("spip");
    d.write_spip(&mut w);
    w.end_object();
    w.finish();
    serde_json::from_slice(&out).unwrap()
}

fn reply(d: &Datagram<'_>, len: usize, server: &str) -> (Answer, Vec<u8>) {
    let mut out = Vec::new();
    let a = answer(d, len, &ctx(server), &mut out);
    (a, out)
}

#[test]
fn dig_a_query_gets_an_answer_no_larger_than_it() {
    let d = Datagram::parse(53, DIG_A);
    assert_eq!(d.protocol(), Some("dns"));
    let v = fields(&d);
    assert_eq!(v["dns"]["question"]["name"], "example.com");
    assert_eq!(v["dns"]["question"]["type"], "A");
    assert_eq!(v["dns"]["question"]["class"], "IN");
    assert_eq!(v["dns"]["type"], "query");
    let (a, out) = reply(&d, DIG_A.len(), "198.51.100.2:53");
    assert_eq!(a, Answer::Reply);
    assert!(out.len() <= DIG_A.len());
    assert_eq!(out[..2], DIG_A[..2], "same id");
    assert_eq!(out[3] & 0x0f, 0, "NOERROR");
    assert_eq!(out[7], 1, "one answer");
    assert_eq!(out[out.len() - 4..], [198, 51, 100, 2]);
    // Off the DNS ports it is still recognised (a query, nothing else).
    assert_eq!(Datagram::parse(5300, DIG_A).protocol(), Some("dns"));
}

#[test]
fn a_query_without_room_for_an_answer_is_refused() {
    let d = Datagram::parse(53, DIG_TXT);
    assert_eq!(fields(&d)["dns"]["question"]["type"], "TXT");
    let (a, out) = reply(&d, DIG_TXT.len(), "198.51.100.2:53");
    assert_eq!(a, Answer::Reply);
    assert_eq!(out.len(), DIG_TXT.len(), "header and question only");
    assert_eq!(out[3] & 0x0f, 5, "REFUSED");
}

#[test]
fn snmp_v2c_community_oids_and_a_same_size_response() {
    let d = Datagram::parse(161, SNMP_V2C);
    assert_eq!(d.protocol(), Some("snmp"));
    let v = fields(&d);
    assert_eq!(v["spip"]["snmp"]["community"], "s3cretCommunity");
    assert_eq!(v["spip"]["snmp"]["version"], "2c");
    assert_eq!(v["spip"]["snmp"]["pdu_type"], "get-request");
    assert_eq!(
        v["spip"]["snmp"]["oids"],
        serde_json::json!(["1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.5.0"])
    );
    let (a, out) = reply(&d, SNMP_V2C.len(), "198.51.100.2:161");
    assert_eq!(a, Answer::Reply);
    assert_eq!(out.len(), SNMP_V2C.len());
    // The response parses back as SNMP, a get-response, with noSuchObject values.
    let back = Datagram::parse(161, &out);
    assert_eq!(fields(&back)["spip"]["snmp"]["pdu_type"], "get-response");
    assert_eq!(out.iter().filter(|&&b| b == 0x80).count(), 2);
}

#[test]
fn snmp_v1_gets_no_such_name() {
    let d = Datagram::parse(161, SNMP_V1);
    let v = fields(&d);
    assert_eq!(v["spip"]["snmp"]["community"], "public");
    assert_eq!(v["spip"]["snmp"]["version"], "1");
    let (a, out) = reply(&d, SNMP_V1.len(), "198.51.100.2:161");
    assert_eq!(a, Answer::Reply);
    assert_eq!(out.len(), SNMP_V1.len());
    // error-status noSuchName (2), error-index 1.
    assert!(
        out.windows(6).any(|w| w == [2, 1, 2, 2, 1, 1]),
        "{out:02x?}"
    );
}

#[test]
fn sip_options_user_agent_and_a_200() {
    let d = Datagram::parse(5060, SIP_OPTIONS);
    assert_eq!(d.protocol(), Some("sip"));
    let v = fields(&d);
    assert_eq!(v["user_agent"]["original"], "sipsak 0.9.8.1");
    assert_eq!(v["spip"]["sip"]["method"], "OPTIONS");
    assert_eq!(v["spip"]["sip"]["uri"], "sip:100@127.0.0.1:1613");
    assert!(
        v["spip"]["sip"]["from"]
            .as_str()
            .unwrap()
            .starts_with("sip:sipsak@")
    );
    let (a, out) = reply(&d, SIP_OPTIONS.len(), "198.51.100.2:5060");
    assert_eq!(a, Answer::Reply);
    assert!(out.len() <= SIP_OPTIONS.len());
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
    assert!(text.contains("\r\nCall-ID: "), "{text}");
    assert!(text.contains(";tag="), "{text}");
    assert!(text.ends_with("Content-Length: 0\r\n\r\n"), "{text}");
}

#[test]
fn sip_register_gets_a_digest_challenge() {
    let register = b"REGISTER sip:198.51.100.2 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK-1\r\n\
        From: <sip:1001@198.51.100.2>;tag=abc\r\n\
        To: <sip:1001@198.51.100.2>\r\n\
        Call-ID: 1234567890@192.0.2.7\r\n\
        CSeq: 1 REGISTER\r\n\
        Contact: <sip:1001@192.0.2.7:5060>\r\n\
        Max-Forwards: 70\r\n\
        User-Agent: friendly-scanner\r\n\
        Expires: 3600\r\n\
        Content-Length: 0\r\n\r\n";
    let d = Datagram::parse(5060, register);
    assert_eq!(fields(&d)["user_agent"]["original"], "friendly-scanner");
    let (a, out) = reply(&d, register.len(), "198.51.100.2:5060");
    assert_eq!(a, Answer::Reply);
    assert!(out.len() <= register.len());
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("SIP/2.0 401 Unauthorized\r\n"), "{text}");
    assert!(text.contains("WWW-Authenticate: Digest realm="), "{text}");
}

#[test]
fn ntp_mode_3_gets_48_bytes() {
    let mut req = [0u8; 48];
    req[0] = 0x23; // v4, mode 3
    req[40..].copy_from_slice(&[0xe9, 0x3c, 0x7f, 0, 0, 1, 0xe2, 0x40]);
    let d = Datagram::parse(123, &req);
    assert_eq!(d.protocol(), Some("ntp"));
    let (a, out) = reply(&d, req.len(), "198.51.100.2:123");
    assert_eq!(a, Answer::Reply);
    assert_eq!(out.len(), 48);
    assert_eq!(out[0], 0x24, "v4, mode 4");
    assert_eq!(
        out[24..32],
        req[40..48],
        "origin = the client's transmit time"
    );
}

#[test]
fn quic_initial_rfc9001_is_decrypted_and_fingerprinted() {
    let d: Vec<u8> = (0..QUIC_HEX.trim().len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&QUIC_HEX.trim()[i..i + 2], 16).unwrap())
        .collect();
    let parsed = Datagram::parse(443, &d);
    assert_eq!(parsed.protocol(), Some("quic"));
    let v = fields(&parsed);
    assert_eq!(v["tls"]["client"]["server_name"], "example.com");
    let ja4 = v["tls"]["client"]["hash"]["ja4"].as_str().unwrap();
    // TLS 1.3, SNI, 2 ciphers (1301, 1302), 11 extensions, ALPN "alpn".
    assert_eq!(ja4, "q13d0211an_62ed6f6ca7ad_4d634acda6c0");
    assert_eq!(v["spip"]["quic"]["dcid"], "8394c8f03e515708");
    assert!(v["spip"]["quic"].get("partial").is_none());
    let (a, _) = reply(&parsed, d.len(), "198.51.100.2:443");
    assert_eq!(a, Answer::Nothing, "QUIC is never answered");
    // A corrupted packet is still QUIC, without a fingerprint.
    let mut bad = d.clone();
    bad[100] ^= 1;
    let v = fields(&Datagram::parse(443, &bad));
    assert_eq!(v["spip"]["quic"]["partial"], true);
    assert!(v.get("tls").is_none());
}

#[test]
fn no_reply_is_larger_than_its_datagram() {
    // Every truncation of every captured datagram: whatever parses, the answer stays within it.
    let quic: Vec<u8> = vec![0xc0; 1300];
    for sample in [DIG_A, DIG_TXT, SNMP_V2C, SNMP_V1, SIP_OPTIONS, &quic] {
        for end in 0..=sample.len() {
            for port in [53, 161, 5060, 123, 443, 9999] {
                let d = Datagram::parse(port, &sample[..end]);
                let (_, out) = reply(&d, end, "198.51.100.2:53");
                assert!(out.len() <= end, "port {port}, {end} bytes");
            }
        }
    }
}

fn ctx(server: &str) -> DatagramContext {
    DatagramContext {
        client: "192.0.2.7:40000".parse().unwrap(),
        server: server.parse().unwrap(),
        now: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
        random: 42,
    }
}

#[test]
fn amplifiers_are_never_answered() {
    let c = ctx("198.51.100.2:11211");
    let mut out = Vec::new();
    for (port, bytes) in [
        (11211, &b"\x00\x01\x00\x00\x00\x01\x00\x00stats\r\n"[..]),
        (5000, b"\x00\x01\x00\x00\x00\x01\x00\x00stats\r\n"),
        (19, b"x"),
        (1900, b"M-SEARCH * HTTP/1.1\r\n\r\n"),
        (80, b"M-SEARCH * HTTP/1.1\r\n\r\n"),
        (123, &[0x17, 0x00, 0x03, 0x2a, 0, 0, 0, 0][..]), // monlist, mode 7
        (123, &[0x16, 0x02, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0][..]), // mode 6
    ] {
        let d = Datagram::parse(port, bytes);
        assert!(d.never_answered(), "port {port}");
        assert_eq!(answer(&d, bytes.len(), &c, &mut out), Answer::Never);
        assert!(out.is_empty());
    }
}

#[test]
fn unknown_bytes_get_nothing() {
    let c = ctx("198.51.100.2:4444");
    let mut out = Vec::new();
    let d = Datagram::parse(4444, b"hello");
    assert_eq!(d.protocol(), None);
    assert_eq!(answer(&d, 5, &c, &mut out), Answer::Nothing);
}
