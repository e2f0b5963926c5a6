//! End-to-end: the real binary in a private network namespace with an iptables REDIRECT of
//! every port to the sensor, driven by real clients.

mod common;

use common::*;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a client reads: the sensor closes at its read timeout (5 s in tests), so the
/// wait ends there unless the sensor is slow.
const REPLY_WAIT: Duration = Duration::from_secs(20);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn plain_payload_records_original_destination_port() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let mut sensor = Sensor::start(&ns, "");
    let reply = ns.within(|| {
        exchange(
            addr("127.0.0.1:6881"),
            &[b"\x13BitTorrent protocol\x00\xff"],
            REPLY_WAIT,
        )
    });
    assert_eq!(reply, b"127.0.0.1", "the reply is the client's IP");
    let r = &sensor.record_to(6881);
    assert_eq!(r["destination"]["ip"], "127.0.0.1");
    assert_eq!(r["source"]["ip"], "127.0.0.1");
    assert_eq!(
        r["event"]["original_payload_hex"],
        "13426974546f7272656e742070726f746f636f6c00ff"
    );
    assert_eq!(
        r["event"]["summary"],
        "\u{13}BitTorrent protocol\u{0}\u{FFFD}"
    );
    assert_eq!(r["event"]["ingested_by"], "spip");
    assert_eq!(r["observer"]["hostname"], "test-sensor");
    assert_eq!(r["network"]["transport"], "tcp");
    assert!(
        r["network"]["community_id"]
            .as_str()
            .unwrap()
            .starts_with("1:")
    );
    assert!(r["spip"].get("no_original_destination").is_none());
    let (code, _) = sensor.stop();
    assert_eq!(code, 0);
}

fn curl_gets_200_with_its_ip_and_http_fields_are_recorded() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    let out = ns.run(&[
        "curl",
        "-sS",
        "-i",
        "-m",
        "20",
        "-A",
        "spip-test/1.0",
        "-H",
        "X-Dup: a",
        "-H",
        "X-Dup: b",
        "http://127.0.0.1:9200/_cat/indices?v=true",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.ends_with("\r\n\r\n127.0.0.1"), "{text}");
    let r = &sensor.record_to(9200);
    assert_eq!(r["network"]["protocol"], "http");
    assert_eq!(r["http"]["request"]["method"], "GET");
    assert_eq!(r["http"]["request"]["headers"]["x-dup"], "a, b");
    assert_eq!(r["http"]["version"], "1.1");
    assert_eq!(r["url"]["path"], "/_cat/indices");
    assert_eq!(r["url"]["query"], "v=true");
    assert_eq!(r["url"]["domain"], "127.0.0.1");
    assert_eq!(r["url"]["port"], 9200);
    assert_eq!(r["user_agent"]["original"], "spip-test/1.0");
    assert!(
        r["event"].get("summary").is_none(),
        "HTTP records carry no summary"
    );
    if cfg!(feature = "ja4plus") {
        let ja4h = r["http"]["request"]["hash"]["ja4h"].as_str().unwrap();
        assert!(ja4h.starts_with("ge11nn0"), "{ja4h}");
    }
}

fn request_split_in_two_segments_is_one_record() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let mut sensor = Sensor::start(&ns, "");
    let reply = ns.within(|| {
        exchange(
            addr("127.0.0.1:80"),
            &[
                b"POST /cgi-bin/x HTTP/1.1\r\nHost: a\r\nContent-Le",
                b"ngth: 4\r\nConnection: close\r\n\r\nab",
                b"cd",
            ],
            REPLY_WAIT,
        )
    });
    assert!(reply.starts_with(b"HTTP/1.1 200 OK"));
    sensor.record_to(80);
    // Stopping writes every record there is: a second record would be there now.
    let (code, _) = sensor.stop();
    assert_eq!(code, 0);
    let recs80 = with_dport(&sensor.records(), 80);
    assert_eq!(recs80.len(), 1, "{recs80:?}");
    assert_eq!(recs80[0]["http"]["request"]["body"]["content"], "abcd");
    assert_eq!(recs80[0]["spip"]["close_reason"], "protocol_done");
}

fn empty_connection_yields_a_record() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    ns.within(|| drop(std::net::TcpStream::connect(addr("127.0.0.1:3389")).unwrap()));
    let r = &sensor.record_to(3389);
    assert_eq!(r["spip"]["empty"], true);
    assert_eq!(r["spip"]["turn"], 0);
    assert!(r["event"].get("original_payload_hex").is_none());
}

fn empty_connections_can_be_turned_off() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let mut sensor = Sensor::start(&ns, "log_empty_connections = false");
    ns.within(|| drop(std::net::TcpStream::connect(addr("127.0.0.1:3389")).unwrap()));
    ns.within(|| {
        exchange(
            addr("127.0.0.1:23"),
            &[b"root\r\n"],
            Duration::from_millis(300),
        )
    });
    sensor.record_to(23);
    // Stopping writes every record there is: one of the empty connection would be there now.
    let (code, _) = sensor.stop();
    assert_eq!(code, 0);
    let recs = sensor.records();
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["destination"]["port"], 23);
}

fn ipv6_client_is_recorded_with_original_port() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    let reply = ns.within(|| exchange(addr("[::1]:4444"), &[b"hello6"], REPLY_WAIT));
    assert_eq!(reply, b"::1");
    let r = &sensor.record_to(4444);
    assert_eq!(r["source"]["ip"], "::1");
    assert_eq!(r["destination"]["ip"], "::1");
    assert_eq!(r["event"]["summary"], "hello6");
}

fn many_connections_nothing_lost() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let mut sensor = Sensor::start(&ns, "");
    const TOTAL: usize = 2000;
    let replies = flood(&ns, 0, TOTAL, 0, 64);
    assert_eq!(replies, TOTAL);
    let recs = sensor.wait_records(TOTAL);
    assert_eq!(recs.len(), TOTAL);
    let mut ports: Vec<u64> = recs
        .iter()
        .map(|r| r["destination"]["port"].as_u64().unwrap())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), TOTAL, "every connection recorded exactly once");
    let (code, stderr) = sensor.stop();
    assert_eq!(code, 0);
    assert!(stderr.contains("\"records_dropped\":0"), "{stderr}");
}

fn nmap_scans_leave_the_sensor_alive() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let mut sensor = Sensor::start(&ns, "read_timeout_seconds = 2");
    let out = ns.run(&[
        "nmap",
        "-sT",
        "-Pn",
        "-n",
        "-p",
        "1-1000",
        "-T5",
        "127.0.0.1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1000 open") || text.matches("/tcp").count() >= 900,
        "{text}"
    );
    let out = ns.run(&[
        "nmap",
        "-sV",
        "-Pn",
        "-n",
        "-p",
        "21,22,25,80,443,3306",
        "--version-intensity",
        "2",
        "-T5",
        "127.0.0.1",
    ]);
    assert!(out.status.success());
    assert!(sensor.alive(), "sensor died: {}", sensor.stderr());
    let reply = ns.within(|| exchange(addr("127.0.0.1:7777"), &[b"still there?"], REPLY_WAIT));
    assert_eq!(reply, b"127.0.0.1");
    sensor.wait_records(1000);
    let (code, _) = sensor.stop();
    assert_eq!(code, 0);
}

fn sigterm_flushes_and_exits_zero() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let mut sensor = Sensor::start(&ns, "read_timeout_seconds = 30\nshutdown_grace_seconds = 1");
    // One finished exchange, and one idle connection that is still open at SIGTERM.
    ns.within(|| {
        exchange(
            addr("127.0.0.1:21"),
            &[b"USER anonymous\r\n"],
            Duration::from_millis(200),
        )
    });
    let nsname = ns.name.clone();
    let (greeted, idle_greeted) = std::sync::mpsc::channel();
    let idle = std::thread::spawn(move || {
        let ns = Netns { name: nsname };
        ns.within(move || {
            let mut s = TcpStream::connect(addr("127.0.0.1:5900")).expect("connect");
            s.set_read_timeout(Some(RECORD_WAIT)).unwrap();
            // The VNC greeting: the sensor has accepted the connection.
            let mut buf = [0u8; 64];
            assert!(s.read(&mut buf).unwrap_or(0) > 0, "no VNC greeting");
            greeted.send(()).unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        });
        std::mem::forget(ns); // the test's own Netns deletes it
    });
    idle_greeted
        .recv_timeout(RECORD_WAIT)
        .expect("the idle connection was accepted");
    let (code, stderr) = sensor.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("final_stats"), "{stderr}");
    idle.join().expect("idle client");
    let recs = sensor.records();
    assert_eq!(with_dport(&recs, 21).len(), 1);
    let idle_rec = &with_dport(&recs, 5900)[0];
    assert_eq!(idle_rec["spip"]["close_reason"], "shutdown");
}

fn sighup_reopens_the_log_file() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    ns.within(|| {
        exchange(
            addr("127.0.0.1:1"),
            &[b"before"],
            Duration::from_millis(200),
        )
    });
    sensor.record_to(1);
    let rotated = sensor.dir.join("records.jsonl.1");
    std::fs::rename(&sensor.log, &rotated).unwrap();
    sensor.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    ns.within(|| exchange(addr("127.0.0.1:2"), &[b"after"], Duration::from_millis(200)));
    let recs = sensor.wait_records(1);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["event"]["summary"], "after");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert_eq!(old.lines().count(), 1);
    assert!(old.contains("\"summary\":\"before\""));
}

fn fd_exhaustion_backs_off_and_keeps_serving() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let mut sensor = Sensor::start_with(
        &ns,
        "read_timeout_seconds = 2\nthreads = 1\nstats_interval_seconds = 1",
        &["prlimit", "--nofile=64:64"],
    );
    // Hold 150 idle connections: far more than 64 descriptors.
    let held = ns.within(|| {
        let mut v = Vec::new();
        for i in 0..150u16 {
            if let Ok(s) =
                std::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], 20_000 + i)))
            {
                v.push(s);
            }
        }
        v.len()
    });
    assert!(held >= 100);
    // Their read timeout frees the descriptors; the backlog then drains and service resumes.
    let deadline = Instant::now() + RECORD_WAIT;
    loop {
        let reply =
            ns.within(|| exchange(addr("127.0.0.1:4444"), &[b"after the flood"], REPLY_WAIT));
        if reply == b"127.0.0.1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "service did not resume: {reply:?}, stderr: {}",
            sensor.stderr()
        );
    }
    let (code, stderr) = sensor.stop();
    assert_eq!(code, 0);
    assert!(
        !stderr.contains("\"accept_errors\":0"),
        "EMFILE was hit and counted: {stderr}"
    );
}

fn ssh_client_gets_a_banner_and_its_kexinit_is_recorded() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "ssh_banner = \"SSH-2.0-OpenSSH_9.9\"");
    let _ = ns
        .cmd(&[
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "ConnectTimeout=20",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-p",
            "2222",
            "root@127.0.0.1",
            "true",
        ])
        .output()
        .expect("ssh client");
    let recs = sensor.wait_for(2222, "the KEXINIT record", |r| {
        r["ssh"]["client"]["hash"]["hassh"].is_string()
    });
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(recs[0]["network"]["protocol"], "ssh");
    assert!(
        recs[0]["event"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("SSH-2.0-OpenSSH")
    );
    assert_eq!(recs[1]["spip"]["turn"], 2);
    let hassh = recs[1]["ssh"]["client"]["hash"]["hassh"]
        .as_str()
        .expect("hassh in the KEXINIT record");
    assert_eq!(hassh.len(), 32);
    assert_eq!(
        recs[0]["event"]["id"], recs[1]["event"]["id"],
        "one event.id per connection"
    );
}

fn poll_driver_serves_too() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "io_driver = \"poll\"");
    assert!(
        sensor.stderr().contains("io driver: poll"),
        "{}",
        sensor.stderr()
    );
    let reply = ns.within(|| exchange(addr("127.0.0.1:7777"), &[b"EHLO x\r\n"], REPLY_WAIT));
    assert_eq!(reply, b"127.0.0.1");
    sensor.record_to(7777);
}

fn bad_configs_exit_2_naming_the_key() {
    let dir = temp_dir("badcfg");
    let cases = [
        ("port = 80\n", "name"),
        ("name = \"x\"\nport = 99999\n", "port"),
        (
            "name = \"x\"\nport = 80\nrate_limit_burts = 5\n",
            "rate_limit_burts",
        ),
        (
            "name = \"x\"\nport = 80\ncert_path = \"c.pem\"\n",
            "key_path",
        ),
        (
            "name = \"x\"\nport = 80\n[loom]\nenabled = true\n",
            "loom.url",
        ),
        ("name = \"x\"\nport = \"http\"\n", "port"),
    ];
    for (text, key) in cases {
        let path = dir.join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(bin())
            .args(["--check", "--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{text}: {err}");
        assert!(out.stdout.is_empty(), "diagnostics go to stderr only");
    }
    // The Go agent's `-config` and a good config.
    let good = dir.join("good.toml");
    std::fs::write(&good, "name = \"x\"\nport = 80\n").unwrap();
    let out = Command::new(bin())
        .args(["--check", "-config", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("rate_limit_burst = 50000"));
    let out = Command::new(bin())
        .args(["--config", "/nonexistent/spip.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

fn repo_config_is_valid() {
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml");
    let out = Command::new(bin())
        .args(["--check", "--config", cfg])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ip = \"127.0.0.1\"") && text.contains("log_file = \"\""),
        "{text}"
    );
}

fn tls_client_hello_is_fingerprinted_in_plain_mode() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    let _ = ns
        .cmd(&[
            "openssl",
            "s_client",
            "-connect",
            "127.0.0.1:443",
            "-servername",
            "bank.example",
            "-alpn",
            "h2,http/1.1",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    let r = &sensor.record_to(443);
    assert_eq!(r["network"]["protocol"], "tls");
    assert_eq!(r["tls"]["client"]["server_name"], "bank.example");
    assert_eq!(
        r["tls"]["client"]["supported_protocols"],
        serde_json::json!(["h2", "http/1.1"])
    );
    let ja4 = r["tls"]["client"]["hash"]["ja4"].as_str().unwrap();
    assert!(ja4.starts_with("t13d") && ja4.contains("h2_"), "{ja4}");
    assert_eq!(r["tls"]["client"]["ja3"].as_str().unwrap().len(), 32);
    assert!(
        r["event"]["original_payload_hex"]
            .as_str()
            .unwrap()
            .starts_with("16030")
    );
}

fn silent_and_stalled_clients_time_out_and_are_recorded() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "read_timeout_seconds = 1");
    let (silent, stalled) = ns.within(|| {
        let t0 = std::time::Instant::now();
        // Sends nothing: the sensor ends the first wait after ~1 s.
        let silent_reply = exchange(addr("127.0.0.1:5432"), &[], Duration::from_secs(20));
        let silent_took = t0.elapsed();
        assert!(silent_reply.is_empty(), "a silent client gets nothing");
        // Half an HTTP request, then nothing.
        let stalled = exchange(
            addr("127.0.0.1:8000"),
            &[b"GET /admin HTTP/1.1\r\nHost: x\r\n"],
            Duration::from_secs(20),
        );
        (silent_took, stalled)
    });
    // Closed by the sensor (1 s), long before the client would give up (20 s).
    assert!(
        silent < Duration::from_secs(10),
        "closed after the read timeout, took {silent:?}"
    );
    assert!(stalled.is_empty(), "an incomplete request gets no reply");
    let s = &sensor.record_to(5432);
    assert_eq!(s["spip"]["close_reason"], "read_timeout");
    assert_eq!(s["spip"]["empty"], true);
    let h = &sensor.record_to(8000);
    assert_eq!(h["spip"]["close_reason"], "read_timeout");
    assert_eq!(h["spip"]["truncated"], true);
    assert_eq!(h["event"]["summary"], "GET /admin HTTP/1.1\r\nHost: x\r\n");
}

common::test_main! {
    needs_root: [
        plain_payload_records_original_destination_port,
        curl_gets_200_with_its_ip_and_http_fields_are_recorded,
        request_split_in_two_segments_is_one_record,
        empty_connection_yields_a_record,
        empty_connections_can_be_turned_off,
        ipv6_client_is_recorded_with_original_port,
        many_connections_nothing_lost,
        nmap_scans_leave_the_sensor_alive,
        sigterm_flushes_and_exits_zero,
        sighup_reopens_the_log_file,
        fd_exhaustion_backs_off_and_keeps_serving,
        ssh_client_gets_a_banner_and_its_kexinit_is_recorded,
        poll_driver_serves_too,
        tls_client_hello_is_fingerprinted_in_plain_mode,
        silent_and_stalled_clients_time_out_and_are_recorded,
    ],
    no_root: [
        bad_configs_exit_2_naming_the_key,
        repo_config_is_valid,
    ],
}
