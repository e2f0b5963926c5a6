//! End-to-end UDP: the real sensor with `udp = true` on a host namespace, `spip-agent redirect
//! apply --udp` (TPROXY + policy routing), and real clients (`dig`, `snmpget`, `sipsak`) and
//! captured datagrams from a peer namespace over a veth pair. Replies must come from the
//! address and port the client sent to, and never be larger than the request.

mod common;

use common::*;
use serde_json::Value;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

const HOST4: &str = "10.214.0.1";
const PEER4: &str = "10.214.0.2";
const HOST6: &str = "fd00:214::1";
const PEER6: &str = "fd00:214::2";

const DIG_A: &[u8] = include_bytes!("data/udp/dig_a.bin");
const SNMP_V2C: &[u8] = include_bytes!("data/udp/snmpget_v2c.bin");
const SIP_OPTIONS: &[u8] = include_bytes!("data/udp/sipsak_options.bin");
const QUIC_HEX: &str = include_str!("data/udp/rfc9001_a2_client_initial.hex");
/// An NTP v4 client request (mode 3) with a transmit timestamp.
const NTP_REQUEST: &[u8; 48] = &{
    let mut p = [0u8; 48];
    p[0] = 0x23;
    p[40] = 0xe9;
    p[47] = 0x01;
    p
};

fn quic_initial() -> &'static [u8] {
    spip::inspect::decode_hex(QUIC_HEX).expect("hex").leak()
}

/// Sensor host and a peer, joined by a veth pair.
fn host_and_peer() -> (Netns, Netns) {
    common::host_and_peer(
        &[&format!("{HOST4}/24"), &format!("{HOST6}/64")],
        &[&format!("{PEER4}/24"), &format!("{PEER6}/64")],
    )
}

/// How long a client waits for a datagram in reply (the sensor may be slow on a loaded
/// machine; a test that expects no reply waits this long too).
const REPLY_WAIT: Duration = Duration::from_secs(2);

/// Sends each datagram from one socket of `peer` to `dst`; returns each reply (its bytes and
/// where it came from), or `None` when none came within [`REPLY_WAIT`].
fn ask(peer: &Netns, dst: &str, datagrams: &[&'static [u8]]) -> Vec<Option<(Vec<u8>, SocketAddr)>> {
    let dst: SocketAddr = dst.parse().unwrap();
    let datagrams = datagrams.to_vec();
    peer.within(move || {
        let bind = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        let s = UdpSocket::bind(bind).unwrap();
        s.set_read_timeout(Some(REPLY_WAIT)).unwrap();
        datagrams
            .iter()
            .map(|d| {
                s.send_to(d, dst).unwrap();
                let mut buf = [0u8; 65536];
                s.recv_from(&mut buf)
                    .ok()
                    .map(|(n, from)| (buf[..n].to_vec(), from))
            })
            .collect()
    })
}

/// The nft ruleset, policy rules and routes of `ns` (what `remove` must restore).
fn firewall_and_routing(ns: &Netns) -> String {
    let mut s = String::from_utf8(ns.run(&["nft", "list", "ruleset"]).stdout).unwrap();
    for args in [
        &["ip", "-4", "rule", "show"][..],
        &["ip", "-6", "rule", "show"],
        &["ip", "-4", "route", "show", "table", "all"],
        &["ip", "-6", "route", "show", "table", "all"],
    ] {
        let out = String::from_utf8(ns.run(args).stdout).unwrap();
        for line in out
            .lines()
            .filter(|l| !l.contains("fe80:") && !l.starts_with("multicast ff00::/8"))
        {
            s.push_str(line);
            s.push('\n');
        }
    }
    s
}

fn redirect(host: &Netns, action: &str) {
    redirect_with(host, action, "nftables")
}

fn redirect_with(host: &Netns, action: &str, backend: &str) {
    host.redirect(action, &["--backend", backend, "--udp"]);
}

/// The UDP records once there are at least `n`.
fn udp_records(sensor: &Sensor, n: usize) -> Vec<Value> {
    let udp = |recs: &[Value]| -> Vec<Value> {
        recs.iter()
            .filter(|r| r["network"]["transport"] == "udp")
            .cloned()
            .collect()
    };
    udp(&sensor.wait_until(&format!("{n} UDP records"), |recs| udp(recs).len() >= n))
}

fn real_clients_and_replies_from_the_original_address_within_the_request_size() {
    let (host, peer) = host_and_peer();
    let before = firewall_and_routing(&host);
    let mut sensor = Sensor::start(&host, "udp = true\n");
    redirect(&host, "apply");
    redirect(&host, "apply"); // idempotent

    // Real clients.
    let dig = peer.run(&[
        "dig",
        &format!("@{HOST4}"),
        "+tries=1",
        "+time=10",
        "example.com",
        "A",
    ]);
    let dig = String::from_utf8_lossy(&dig.stdout).to_string();
    assert!(dig.contains("status: NOERROR"), "{dig}");
    assert!(
        dig.contains(&format!("example.com.\t\t300\tIN\tA\t{HOST4}")),
        "{dig}"
    );
    let snmp = peer
        .cmd(&[
            "snmpget",
            "-v2c",
            "-c",
            "e2eCommunity",
            "-r",
            "0",
            "-t",
            "10",
            &format!("{HOST4}:161"),
            "1.3.6.1.2.1.1.1.0",
        ])
        .output()
        .unwrap();
    let snmp = String::from_utf8_lossy(&snmp.stdout).to_string();
    assert!(snmp.contains("No Such Object"), "{snmp}");
    let sip = peer
        .cmd(&["sipsak", "-v", "-s", &format!("sip:100@{HOST4}:5060")])
        .output()
        .unwrap();
    let sip = String::from_utf8_lossy(&sip.stdout).to_string();
    assert!(sip.contains("200 OK"), "{sip}");

    // Captured datagrams: each reply comes from the address and port the request went to
    // and is never larger than the request.
    for (dst, d) in [
        (format!("{HOST4}:53"), DIG_A),
        (format!("{HOST4}:1161"), SNMP_V2C),
        (format!("{HOST4}:5060"), SIP_OPTIONS),
        (format!("[{HOST6}]:53"), DIG_A),
    ] {
        let replies = ask(&peer, &dst, &[d]);
        let (reply, from) = replies[0]
            .clone()
            .unwrap_or_else(|| panic!("no reply from {dst}"));
        assert_eq!(from, dst.parse::<SocketAddr>().unwrap(), "reply source");
        assert!(
            reply.len() <= d.len(),
            "{dst}: {} > {}",
            reply.len(),
            d.len()
        );
    }
    // NTP mode 3: 48 bytes in, 48 out, echoing the client's transmit time.
    let ntp = ask(&peer, &format!("{HOST4}:123"), &[NTP_REQUEST]);
    let (reply, from) = ntp[0].clone().expect("NTP reply");
    assert_eq!(
        (reply.len(), from),
        (48, format!("{HOST4}:123").parse().unwrap())
    );
    assert_eq!(reply[24..32], NTP_REQUEST[40..48]);
    // A QUIC Initial is fingerprinted, never answered.
    let quic = ask(&peer, &format!("{HOST4}:443"), &[quic_initial()]);
    assert!(quic[0].is_none(), "QUIC answered");
    // Amplifiers get nothing.
    let stats = b"\x00\x01\x00\x00\x00\x01\x00\x00stats\r\n";
    let never = ask(&peer, &format!("{HOST4}:11211"), &[stats]);
    assert!(never[0].is_none(), "memcached answered");
    // A flow: two datagrams from one socket share an event.id.
    ask(&peer, &format!("{HOST4}:4444"), &[b"one\n", b"two\n"]);

    // Wait for every record checked below: clients may retry, so a count is not enough.
    let recs = sensor.wait_until("the records of every client", |recs| {
        let to = |port| with_dport(recs, port);
        let dns = to(53);
        !to(443).is_empty()
            && !to(123).is_empty()
            && dns.iter().any(|r| r["source"]["ip"] == PEER4)
            && dns.iter().any(|r| r["source"]["ip"] == PEER6)
            && !to(161).is_empty()
            && to(5060)
                .iter()
                .any(|r| r["user_agent"]["original"].is_string())
            && !to(11211).is_empty()
            && to(4444).len() >= 2
    });
    let quic = with_dport(&recs, 443);
    assert_eq!(quic[0]["network"]["protocol"], "quic");
    assert_eq!(
        quic[0]["tls"]["client"]["hash"]["ja4"],
        "q13d0211an_62ed6f6ca7ad_4d634acda6c0"
    );
    assert_eq!(quic[0]["tls"]["client"]["server_name"], "example.com");
    assert_eq!(with_dport(&recs, 123)[0]["spip"]["udp"]["reply_bytes"], 48);
    let dns = with_dport(&recs, 53);
    assert!(dns.len() >= 2, "{recs:#?}");
    assert_eq!(dns[0]["network"]["protocol"], "dns");
    assert_eq!(dns[0]["dns"]["question"]["name"], "example.com");
    assert_eq!(dns[0]["destination"]["ip"], HOST4);
    assert_eq!(dns[0]["source"]["ip"], PEER4);
    assert!(
        dns.iter()
            .any(|r| r["source"]["ip"] == PEER6 && r["destination"]["ip"] == HOST6)
    );
    assert!(
        dns[0]["network"]["community_id"]
            .as_str()
            .unwrap()
            .starts_with("1:")
    );
    let snmp = with_dport(&recs, 161);
    assert_eq!(snmp[0]["spip"]["snmp"]["community"], "e2eCommunity");
    assert_eq!(snmp[0]["spip"]["udp"]["reply"], "sent");
    let sip = with_dport(&recs, 5060);
    assert!(sip.iter().any(|r| {
        r["user_agent"]["original"]
            .as_str()
            .is_some_and(|u| u.starts_with("sipsak"))
    }));
    let memcached = with_dport(&recs, 11211);
    assert_eq!(memcached[0]["spip"]["udp"]["reply"], "never");
    assert_eq!(memcached[0]["spip"]["udp"]["never_answered"], "memcached");
    let flow = with_dport(&recs, 4444);
    assert_eq!(flow.len(), 2, "{flow:#?}");
    assert_eq!(flow[0]["event"]["id"], flow[1]["event"]["id"]);
    assert_eq!(
        (
            flow[0]["spip"]["turn"].as_u64(),
            flow[1]["spip"]["turn"].as_u64()
        ),
        (Some(1), Some(2))
    );
    assert_eq!(flow[1]["event"]["summary"], "two\n");
    for r in &recs {
        if let Some(n) = r["spip"]["udp"]["reply_bytes"].as_u64() {
            let request = r["event"]["original_payload_hex"].as_str().unwrap().len() as u64 / 2;
            assert!(n <= request, "{r}");
        }
    }

    redirect(&host, "remove");
    assert_eq!(
        before,
        firewall_and_routing(&host),
        "remove must restore rules and routes"
    );
    let (code, stderr) = sensor.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("\"udp_suppressed_never\":1"), "{stderr}");
}

fn a_source_over_its_reply_budget_gets_no_more_replies() {
    let (host, peer) = host_and_peer();
    // 100 bytes a second: an 800-byte burst, so of 20 DNS answers (45 bytes each) 17.
    let mut sensor = Sensor::start(
        &host,
        "udp = true\nudp_source_reply_bytes_per_second = 100\n",
    );
    redirect(&host, "apply");
    // Twenty queries at once from one socket, then every reply that comes.
    let dst: SocketAddr = format!("{HOST4}:53").parse().unwrap();
    let answered = peer.within(move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..20 {
            s.send_to(DIG_A, dst).unwrap();
        }
        s.set_read_timeout(Some(REPLY_WAIT)).unwrap();
        let mut buf = [0u8; 2048];
        let mut n = 0;
        while s.recv_from(&mut buf).is_ok() {
            n += 1;
        }
        n
    });
    assert!((10..20).contains(&answered), "{answered} answered");
    let recs = udp_records(&sensor, 20);
    let refused = recs
        .iter()
        .filter(|r| r["spip"]["udp"]["reply"] == "source_budget")
        .count();
    let outcomes: Vec<&Value> = recs.iter().map(|r| &r["spip"]["udp"]["reply"]).collect();
    assert_eq!(
        refused,
        20 - answered,
        "every suppressed reply is recorded: {outcomes:?}"
    );
    redirect(&host, "remove");
    let (code, stderr) = sensor.stop();
    assert_eq!(code, 0);
    assert!(
        stderr.contains(&format!("\"udp_suppressed_source_budget\":{refused}")),
        "{stderr}"
    );
}

fn iptables_backend_tproxies_udp_and_remove_is_exact() {
    let (host, peer) = host_and_peer();
    // Rules and user chains (iptables-nft shows empty built-in tables once anything touched
    // them, as e2e_ops notes), then policy rules and routes.
    let saved = |ns: &Netns| {
        let mut s = String::new();
        for tool in ["iptables-save", "ip6tables-save"] {
            let out = String::from_utf8(ns.run(&[tool]).stdout).unwrap();
            for l in out.lines().filter(|l| {
                l.starts_with('-') || (l.starts_with(':') && !l.ends_with("ACCEPT [0:0]"))
            }) {
                s.push_str(l);
                s.push('\n');
            }
        }
        let routing = firewall_and_routing(ns);
        s + routing.split_once("0:\tfrom all").map_or("", |(_, r)| r)
    };
    let before = saved(&host);
    let mut sensor = Sensor::start(&host, "udp = true\n");
    redirect_with(&host, "apply", "iptables");
    for dst in [format!("{HOST4}:53"), format!("[{HOST6}]:5353")] {
        let replies = ask(&peer, &dst, &[DIG_A]);
        let (reply, from) = replies[0]
            .clone()
            .unwrap_or_else(|| panic!("no reply from {dst}"));
        assert_eq!(from, dst.parse::<SocketAddr>().unwrap());
        assert!(reply.len() <= DIG_A.len());
    }
    let recs = udp_records(&sensor, 2);
    assert_eq!(
        with_dport(&recs, 53)[0]["dns"]["question"]["name"],
        "example.com"
    );
    assert_eq!(with_dport(&recs, 5353)[0]["destination"]["ip"], HOST6);
    redirect_with(&host, "remove", "iptables");
    assert_eq!(before, saved(&host), "remove must restore rules and routes");
    let (code, _) = sensor.stop();
    assert_eq!(code, 0);
}

fn udp_datagrams_count_in_the_source_scan_summary() {
    let (host, peer) = host_and_peer();
    let mut sensor = Sensor::start(
        &host,
        "udp = true\nscan_summaries = true\nscan_summary_interval_seconds = 1\n",
    );
    redirect(&host, "apply");
    // Five ports at once (nothing answers unknown bytes).
    peer.within(|| {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for port in 7001..7006u16 {
            let dst: SocketAddr = format!("{HOST4}:{port}").parse().unwrap();
            s.send_to(b"probe\n", dst).unwrap();
        }
    });
    // Summed over the summaries written so far (an interval may end between datagrams).
    let deadline = std::time::Instant::now() + RECORD_WAIT;
    loop {
        let summaries: Vec<Value> = sensor
            .records()
            .into_iter()
            .filter(|r| r["event"]["kind"] == "metric" && r["source"]["ip"] == PEER4)
            .collect();
        let udp: u64 = summaries
            .iter()
            .map(|r| r["spip"]["scan"]["udp"].as_u64().unwrap_or(0))
            .sum();
        if udp == 5 {
            assert!(
                summaries.iter().all(|r| r["tags"][0] == "spoofable"),
                "{summaries:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{udp} of 5 datagrams in summaries: {summaries:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    redirect(&host, "remove");
    let (code, _) = sensor.stop();
    assert_eq!(code, 0);
}

fn redirect_udp_dry_run_prints_tproxy_rules() {
    let out = std::process::Command::new(bin())
        .args([
            "redirect",
            "apply",
            "--udp",
            "--port",
            "8080",
            "--exclude-port",
            "22",
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("chain udp_prerouting"), "{text}");
    assert!(
        text.contains("meta l4proto udp meta mark set 1 tproxy ip to :8080 accept"),
        "{text}"
    );
    assert!(
        text.contains("ip -4 rule add fwmark 1 lookup 100"),
        "{text}"
    );
}

common::test_main! {
    needs_root: [
        real_clients_and_replies_from_the_original_address_within_the_request_size,
        a_source_over_its_reply_budget_gets_no_more_replies,
        iptables_backend_tproxies_udp_and_remove_is_exact,
        udp_datagrams_count_in_the_source_scan_summary,
    ],
    no_root: [
        redirect_udp_dry_run_prints_tproxy_rules,
    ],
}
