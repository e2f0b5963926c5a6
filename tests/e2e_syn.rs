//! End-to-end: SYN facts (`spip.syn.*`, and JA4T with `ja4plus`) from `TCP_SAVED_SYN`, with
//! the real binary in a network namespace and real clients.

mod common;

use common::*;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

const SECS5: Duration = Duration::from_secs(5);

/// One `curl` GET to `port` (through the redirect), and its record.
fn get_and_record(ns: &Netns, sensor: &Sensor, port: u16) -> serde_json::Value {
    let url = format!("http://127.0.0.1:{port}/");
    ns.run(&["curl", "-sS", "-m", "20", "-o", "/dev/null", &url]);
    sensor.record_to(port)
}

fn curl_syns_are_recorded_over_ipv4_and_ipv6() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let mut sensor = Sensor::start(&ns, "");
    for url in ["http://127.0.0.1:9201/", "http://[::1]:9202/"] {
        ns.run(&["curl", "-sS", "-m", "20", "-o", "/dev/null", url]);
    }
    for (port, mss) in [(9201, 65495), (9202, 65476)] {
        let r = sensor.record_to(port);
        let syn = &r["spip"]["syn"];
        // Linux's own SYN over loopback: MSS from the loopback MTU, SACK, timestamps, wscale.
        assert_eq!(syn["ttl"], 64, "{r}");
        assert_eq!(syn["mss"], mss, "{r}");
        assert_eq!(syn["options"], "2-4-8-1-3", "{r}");
        assert!(syn["window"].as_u64().unwrap() > 0, "{r}");
        assert!(syn["window_scale"].as_u64().is_some(), "{r}");
        assert_eq!(syn["tcp_flags"], 2, "{r}");
        if cfg!(feature = "ja4plus") {
            let ja4t = syn["ja4t"].as_str().unwrap();
            assert!(ja4t.contains(&format!("_2-4-8-1-3_{mss}_")), "{ja4t}");
        } else {
            assert!(syn.get("ja4t").is_none(), "{r}");
        }
    }
    let (code, stderr) = sensor.stop();
    assert_eq!(code, 0);
    assert_eq!(stat(&stderr, "syn_not_saved"), 0, "{stderr}");
}

/// A client that shapes its own SYN: TTL 33, MSS 1000. Every record of the connection (one
/// per turn) carries the same facts.
fn shaped_syn_facts_are_on_every_record() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "turn_pause_ms = 100");
    ns.within(|| {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        s.set_ttl_v4(33).unwrap();
        s.set_tcp_mss(1000).unwrap();
        let addr: SocketAddr = "127.0.0.1:9203".parse().unwrap();
        s.connect_timeout(&addr.into(), SECS5).unwrap();
        let mut s = std::net::TcpStream::from(s);
        s.write_all(b"first turn\n").unwrap();
        std::thread::sleep(Duration::from_millis(400));
        s.write_all(b"second turn\n").unwrap();
        std::thread::sleep(Duration::from_millis(400));
    });
    let recs = sensor.records_to(9203, 2);
    for r in &recs {
        let syn = &r["spip"]["syn"];
        assert_eq!(syn["ttl"], 33, "{r}");
        assert_eq!(syn["mss"], 1000, "{r}");
        #[cfg(feature = "ja4plus")]
        assert!(syn["ja4t"].as_str().unwrap().contains("_1000_"), "{r}");
    }
}

/// `nmap -sT` (full connects from the kernel) gets SYN facts; `hping3 -S` never completes the
/// handshake, so it reaches no accept() and leaves no record (SYN-only scans are seen from the
/// firewall, not here), and the sensor keeps serving.
fn nmap_connect_scan_gets_syn_facts_and_hping3_syn_leaves_none() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let mut sensor = Sensor::start(&ns, "");
    let out = ns.run(&["nmap", "-sT", "-n", "-Pn", "-p", "9204,9205", "127.0.0.1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("9204/tcp open"), "{text}");
    let hping = ns
        .cmd(&["hping3", "-S", "-p", "9206", "-c", "1", "127.0.0.1"])
        .output()
        .expect("run hping3");
    assert!(
        String::from_utf8_lossy(&hping.stdout).contains("flags=SA"),
        "hping3 got no SYN-ACK: {}",
        String::from_utf8_lossy(&hping.stdout)
    );
    for port in [9204, 9205] {
        let r = sensor.record_to(port);
        assert_eq!(r["spip"]["empty"], true, "{r}");
        assert_eq!(r["spip"]["syn"]["options"], "2-4-8-1-3", "{r}");
        assert!(r["spip"]["syn"]["ttl"].as_u64().is_some(), "{r}");
    }
    // A last connection proves the sensor is still serving, then nothing on 9206.
    get_and_record(&ns, &sensor, 9207);
    assert!(with_dport(&sensor.records(), 9206).is_empty());
    let (code, _) = sensor.stop();
    assert_eq!(code, 0);
}

/// `save_syn = false`: no SYN facts and nothing counted as missing.
fn save_syn_off_records_no_syn_facts() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let mut sensor = Sensor::start(&ns, "save_syn = false");
    let r = get_and_record(&ns, &sensor, 9208);
    assert!(r["spip"].get("syn").is_none(), "{r}");
    let (code, stderr) = sensor.stop();
    assert_eq!(code, 0);
    assert_eq!(stat(&stderr, "syn_not_saved"), 0, "{stderr}");
}

/// With SYN cookies always on, the kernel keeps no SYN: the record has no facts and the
/// connection is counted in `syn_not_saved`.
fn syn_cookies_are_counted_as_not_saved() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    ns.run(&["sysctl", "-qw", "net.ipv4.tcp_syncookies=2"]);
    let mut sensor = Sensor::start(&ns, "");
    let r = get_and_record(&ns, &sensor, 9209);
    assert!(r["spip"].get("syn").is_none(), "{r}");
    let (code, stderr) = sensor.stop();
    assert_eq!(code, 0);
    assert_eq!(stat(&stderr, "syn_not_saved"), 1, "{stderr}");
}

/// Spip's global budget (20/s, small burst) with one busy source: a quiet source's
/// connections all get through (fair share), while the busy one is held back and counted.
fn one_busy_source_leaves_room_for_another() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let mut sensor = Sensor::start(
        &ns,
        "threads = 1\nrate_limit_per_second = 20\nrate_limit_burst = 40\n\
         per_source_rate_per_second = 100\nper_source_burst = 1000",
    );
    let quiet_sent = ns.within(|| {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let busy = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let addr: SocketAddr = "127.0.0.1:9301".parse().unwrap();
                let deadline = std::time::Instant::now() + Duration::from_secs(6);
                while !stop.load(std::sync::atomic::Ordering::Relaxed)
                    && std::time::Instant::now() < deadline
                {
                    drop(std::net::TcpStream::connect_timeout(&addr, SECS5));
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(500));
        let target: SocketAddr = "127.0.0.1:9302".parse().unwrap();
        let mut sent = 0;
        for _ in 0..8 {
            let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
            let from: SocketAddr = "127.0.0.2:0".parse().unwrap();
            s.bind(&from.into()).unwrap();
            s.connect_timeout(&target.into(), SECS5).unwrap();
            drop(s);
            sent += 1;
            std::thread::sleep(Duration::from_millis(300));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        busy.join().unwrap();
        sent
    });
    std::thread::sleep(Duration::from_millis(500));
    let (code, stderr) = sensor.stop();
    assert_eq!(code, 0);
    let records = sensor.records();
    let quiet = with_dport(&records, 9302);
    let busy = with_dport(&records, 9301);
    assert_eq!(quiet.len(), quiet_sent, "quiet source starved: {stderr}");
    assert!(quiet.iter().all(|r| r["source"]["ip"] == "127.0.0.2"));
    let held_back = stat(&stderr, "fair_share_limited") + stat(&stderr, "rate_limited");
    assert!(held_back > 0, "the busy source was never limited: {stderr}");
    assert!(
        busy.len() < 200,
        "busy source admitted {}: {stderr}",
        busy.len()
    );
}

common::test_main! {
    needs_root: [
        curl_syns_are_recorded_over_ipv4_and_ipv6,
        shaped_syn_facts_are_on_every_record,
        nmap_connect_scan_gets_syn_facts_and_hping3_syn_leaves_none,
        save_syn_off_records_no_syn_facts,
        syn_cookies_are_counted_as_not_saved,
        one_busy_source_leaves_room_for_another,
    ],
    no_root: [],
}
