//! End-to-end operations: built-in log rotation under a flood, `redirect` rules in a namespace
//! (real traffic from a veth peer), TPROXY mode.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::Duration;

/// Connections from 64 threads in `ns`, each to its own port via the REDIRECT; returns how
/// many got the sensor's reply.
fn flood(ns: &Netns, total: usize, payload_len: usize) -> usize {
    const PARALLEL: usize = 64;
    ns.within(move || {
        let handles: Vec<_> = (0..PARALLEL)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut ok = 0;
                    for i in (t..total).step_by(PARALLEL) {
                        let port = 10_000 + i as u16;
                        let mut msg = format!("conn {i} ").into_bytes();
                        msg.resize(payload_len, b'x');
                        msg.push(b'\n');
                        let dst = SocketAddr::from(([127, 0, 0, 1], port));
                        if exchange(dst, &[&msg], Duration::from_millis(500)) == b"127.0.0.1" {
                            ok += 1;
                        }
                    }
                    ok
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

#[test]
fn flood_past_the_size_cap_rotates_without_losing_or_tearing_lines() {
    if !require_root("flood_past_the_size_cap_rotates_without_losing_or_tearing_lines") {
        return;
    }
    const TOTAL: usize = 1500;
    const MAX_BYTES: u64 = 65536;
    const MAX_FILES: usize = 100;
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let mut sensor = Sensor::start(
        &ns,
        &format!("log_max_bytes = {MAX_BYTES}\nlog_max_files = {MAX_FILES}\n"),
    );
    assert_eq!(flood(&ns, TOTAL, 200), TOTAL);
    let (code, stderr) = sensor.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("\"records_dropped\":0"), "{stderr}");

    let mut files: Vec<_> = std::fs::read_dir(&sensor.dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("records.jsonl")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 5, "expected several rotations: {files:?}");
    assert!(files.len() <= MAX_FILES + 1, "{files:?}");
    let mut ports = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            text.len() as u64 <= MAX_BYTES,
            "{f:?} is {} bytes",
            text.len()
        );
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{f:?} ends mid-line"
        );
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("torn line in {f:?}: {e}: {line:?}"));
            ports.push(v["destination"]["port"].as_u64().unwrap());
        }
    }
    assert_eq!(ports.len(), TOTAL, "total records == connections");
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), TOTAL, "every connection recorded exactly once");
}

#[test]
fn small_retention_keeps_at_most_n_plus_one_files() {
    if !require_root("small_retention_keeps_at_most_n_plus_one_files") {
        return;
    }
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let mut sensor = Sensor::start(&ns, "log_max_bytes = 8192\nlog_max_files = 2\n");
    assert_eq!(flood(&ns, 300, 200), 300);
    let (code, stderr) = sensor.stop();
    assert_eq!(code, 0, "{stderr}");
    let mut names: Vec<String> = std::fs::read_dir(&sensor.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("records.jsonl"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["records.jsonl", "records.jsonl.1", "records.jsonl.2"]
    );
    for n in &names {
        for line in std::fs::read_to_string(sensor.dir.join(n)).unwrap().lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("torn line in {n}: {e}"));
        }
    }
}
