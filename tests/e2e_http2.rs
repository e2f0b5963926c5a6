//! End-to-end HTTP/2: the real binary in a network namespace, real curl as the client, in
//! cleartext (h2c with prior knowledge) and in TLS mode (ALPN h2).

mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn the_request<'a>(recs: &'a [Value], path: &str) -> &'a Value {
    recs.iter()
        .find(|r| r["url"]["path"] == path)
        .unwrap_or_else(|| panic!("no record of {path}: {recs:#?}"))
}

fn curl(ns: &Netns, args: &[&str]) -> String {
    let mut all = vec!["curl", "-sS", "-m", "20"];
    all.extend_from_slice(args);
    String::from_utf8_lossy(&ns.run(&all).stdout).into_owned()
}

fn curl_h2c_get_and_post_are_answered_and_recorded() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    let body = curl(
        &ns,
        &[
            "--http2-prior-knowledge",
            "-A",
            "h2-test/1.0",
            "-H",
            "Accept-Language: en-US,en;q=0.9",
            "http://127.0.0.1:8081/SECRET?q=1",
        ],
    );
    assert_eq!(body, "127.0.0.1", "the answer is the client's IP");
    let recs = sensor.wait_for(8081, "/SECRET", |r| r["url"]["path"] == "/SECRET");
    let r = the_request(&recs, "/SECRET");
    assert_eq!(r["network"]["protocol"], "http");
    assert_eq!(r["http"]["version"], "2");
    assert_eq!(r["http"]["request"]["method"], "GET");
    assert_eq!(r["url"]["query"], "q=1");
    assert_eq!(r["url"]["port"], 8081);
    assert_eq!(r["user_agent"]["original"], "h2-test/1.0");
    assert_eq!(
        r["http"]["request"]["headers"]["accept-language"],
        "en-US,en;q=0.9"
    );
    assert_eq!(r["spip"]["http2"]["stream_id"], 1);
    assert!(r["event"].get("summary").is_none(), "{r:#?}");
    let hex = r["event"]["original_payload_hex"].as_str().unwrap();
    assert!(hex.starts_with("505249202a20485454502f322e30"), "{hex}");
    #[cfg(feature = "ja4plus")]
    {
        let ja4h = r["http"]["request"]["hash"]["ja4h"].as_str().unwrap();
        assert!(ja4h.starts_with("ge20nn03enus_"), "{ja4h}");
    }

    // A POST: the body (the client's credentials) is in the record.
    let body = curl(
        &ns,
        &[
            "--http2-prior-knowledge",
            "-d",
            "user=admin&pass=SECRET",
            "http://127.0.0.1:8082/login",
        ],
    );
    assert_eq!(body, "127.0.0.1");
    let recs = sensor.wait_for(8082, "/login", |r| r["url"]["path"] == "/login");
    let r = the_request(&recs, "/login");
    assert_eq!(r["http"]["request"]["method"], "POST");
    assert_eq!(
        r["http"]["request"]["body"]["content"],
        "user=admin&pass=SECRET"
    );
    assert_eq!(r["http"]["request"]["body"]["bytes"], 22);
}

fn unhex(s: &str) -> Vec<u8> {
    spip::inspect::decode_hex(s).expect("hex")
}

/// Reads until `n` bytes came or 20 s passed (a loaded machine may be slow to answer).
fn read_at_least(s: &mut TcpStream, n: usize) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < n && Instant::now() < deadline {
        if let Ok(k) = s.read(&mut buf) {
            if k == 0 {
                break;
            }
            got.extend_from_slice(&buf[..k]);
        }
    }
    got
}

/// A client that sends its preface and SETTINGS, waits for the server's SETTINGS, and only
/// then sends its request (curl's HEADERS frame for `/SECRET?q=1`): the request, its second
/// message, is answered and recorded.
fn client_waiting_for_our_settings_then_requesting() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    let (first, second) = ns.within(|| {
        let mut s = TcpStream::connect("127.0.0.1:8083").unwrap();
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend_from_slice(&unhex("000000040000000000"));
        s.write_all(&hello).unwrap();
        // SETTINGS (27 bytes), WINDOW_UPDATE (13), SETTINGS ACK (9).
        let first = read_at_least(&mut s, 49);
        let mut request = unhex("000000040100000000");
        request.extend_from_slice(&unhex(concat!(
            "00002801050000000182048a63760bdb706fff3b401f86418a089d5c0b8170dc79a7037a87",
            "1cc5a92c05707f53032a2f2a"
        )));
        s.write_all(&request).unwrap();
        // HEADERS (9 + 50: status, date, type, length) and DATA (9 + 9).
        (first, read_at_least(&mut s, 77))
    });
    assert_eq!(first.len(), 49, "{first:02x?}");
    assert_eq!(&first[3..5], &[4, 0], "SETTINGS first: {first:02x?}");
    assert!(second.ends_with(b"127.0.0.1"), "{second:02x?}");
    let recs = sensor.wait_for(8083, "/SECRET", |r| r["url"]["path"] == "/SECRET");
    let r = the_request(&recs, "/SECRET");
    assert_eq!(r["url"]["query"], "q=1");
    assert_eq!(r["user_agent"]["original"], "agent/1.0");
    assert_eq!(r["spip"]["turn"], 2, "{recs:#?}");
}

fn curl_tls_h2_request_is_recorded() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let (_cert, cfg) = gen_cert_config("");
    let sensor = Sensor::start(&ns, &cfg);
    let body = curl(
        &ns,
        &[
            "-k",
            "--http2",
            "-A",
            "h2-tls/1.0",
            "https://127.0.0.1:4444/SECRET/admin.php",
        ],
    );
    assert_eq!(body, "127.0.0.1");
    let recs = sensor.wait_for(4444, "/SECRET/admin.php", |r| {
        r["url"]["path"] == "/SECRET/admin.php"
    });
    let r = the_request(&recs, "/SECRET/admin.php");
    assert_eq!(r["tls"]["alpn"], "h2");
    assert_eq!(r["http"]["version"], "2");
    assert_eq!(r["url"]["scheme"], "https");
    assert_eq!(r["user_agent"]["original"], "h2-tls/1.0");
    let id = &recs[0]["event"]["id"];
    assert!(recs.iter().all(|x| &x["event"]["id"] == id), "{recs:#?}");
}

/// The answer's `date` is the sensor's clock, as nginx sends it.
fn curl_h2c_answer_carries_todays_date() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    let before = utc_today("%a, %d %b %Y");
    let head = curl(
        &ns,
        &[
            "--http2-prior-knowledge",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "http://127.0.0.1:8084/",
        ],
    );
    let after = utc_today("%a, %d %b %Y");
    assert!(head.starts_with("HTTP/2 200"), "{head}");
    assert!(shows_date(&head, "date: ", &before, &after), "{head}");
    assert!(head.contains(" GMT\r\n"), "{head}");
    sensor.wait_for(8084, "the request", |r| r["url"]["path"] == "/");
}

common::test_main! {
    needs_root: [
        curl_h2c_answer_carries_todays_date,
        curl_h2c_get_and_post_are_answered_and_recorded,
        curl_tls_h2_request_is_recorded,
        client_waiting_for_our_settings_then_requesting,
    ],
    no_root: [],
}
