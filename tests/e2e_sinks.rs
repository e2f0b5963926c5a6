//! End-to-end faults of the sink layer with the real binary in a private network namespace:
//! the live log deleted under load, a full filesystem, signals during the drain, Loom down for
//! 10 s, and the Prometheus endpoint checked by `promtool`.

mod common;

use common::http_server::{Action, TestServer};
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Lines in the files of `dir` whose names start with `prefix`, counted without judging them:
/// the sensor may be writing or rotating meanwhile.
fn lines_on_disk(dir: &Path, prefix: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with(prefix))
        })
        .filter_map(|p| std::fs::read(p).ok())
        .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count())
        .sum()
}

/// Waits until [`lines_on_disk`] reaches `n`.
fn wait_lines_on_disk(dir: &Path, prefix: &str, n: usize) {
    let deadline = Instant::now() + RECORD_WAIT;
    while lines_on_disk(dir, prefix) < n {
        assert!(
            Instant::now() < deadline,
            "waited {RECORD_WAIT:?} for {n} lines, {} on disk",
            lines_on_disk(dir, prefix)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Destination ports of every record in the files of `dir` whose names start with `prefix`;
/// panics on a torn or invalid line.
fn ports_on_disk(dir: &Path, prefix: &str) -> Vec<u64> {
    let mut ports = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with(prefix) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{name} ends mid-line"
        );
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("torn line in {name}: {e}: {line:?}"));
            ports.push(v["destination"]["port"].as_u64().unwrap());
        }
    }
    ports.sort_unstable();
    ports
}

fn deleting_the_live_file_under_load_keeps_later_records_and_history() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let mut sensor = Sensor::start(&ns, "log_max_bytes = 16384\nlog_max_files = 50\n");
    assert_eq!(flood(&ns, 0, 200, 200, 16), 200);
    // Written in batches: wait until the flood's records are all on disk.
    wait_lines_on_disk(&sensor.dir, "records.jsonl", 200);
    let before = ports_on_disk(&sensor.dir, "records.jsonl");
    assert_eq!(before.len(), 200);
    let rotated = |dir: &Path| -> Vec<PathBuf> {
        (1..=50)
            .map(|i| dir.join(format!("records.jsonl.{i}")))
            .filter(|p| p.exists())
            .collect()
    };
    let history = rotated(&sensor.dir);
    assert!(history.len() >= 2, "expected rotations: {history:?}");
    // Delete the live file while connections keep coming.
    let live = sensor.log.clone();
    let deleter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        std::fs::remove_file(&live).unwrap();
    });
    assert_eq!(flood(&ns, 200, 200, 200, 16), 200);
    deleter.join().unwrap();
    // And once more when it is quiet (once the sensor wrote a new live file): the next
    // records must still reach the disk.
    let deadline = Instant::now() + RECORD_WAIT;
    while !sensor.log.exists() {
        assert!(Instant::now() < deadline, "no new live file");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::remove_file(&sensor.log).unwrap();
    assert_eq!(flood(&ns, 400, 100, 200, 16), 100);
    let (code, stderr) = sensor.stop();
    assert_eq!(code, 0, "{stderr}");
    let on_disk = ports_on_disk(&sensor.dir, "records.jsonl");
    // Every record written after the second deletion is on disk.
    for port in 10_400..10_500u64 {
        assert!(
            on_disk.binary_search(&port).is_ok(),
            "port {port} lost\n{stderr}"
        );
    }
    // The rotated history was never deleted by a failed rotation: all records of the first
    // phase that were rotated before the deletion are still there.
    for p in &history {
        assert!(
            p.exists() || rotated(&sensor.dir).len() >= history.len(),
            "{p:?} gone"
        );
    }
    let mentions = stderr.matches("was deleted or moved").count();
    assert!(
        (1..=2).contains(&mentions),
        "said {mentions} times:\n{stderr}"
    );
    assert!(!stderr.contains("rotating"), "a rotation failed:\n{stderr}");
    assert_eq!(stat(&stderr, "records_dropped"), 0, "{stderr}");
}

/// A tmpfs mounted on a temporary directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = temp_dir("tmpfs");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs on {dir:?}");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn a_full_disk_never_tears_a_line_and_writing_resumes_when_space_returns() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    // Room for all 300 records (about 3.5 KB each) once the ballast is gone.
    let fs = Tmpfs::mount("4m");
    // Ballast leaves about 64 KiB free.
    let ballast = fs.0.join("ballast");
    std::fs::write(&ballast, vec![0u8; 4 * 1024 * 1024 - 64 * 1024]).unwrap();
    let log = fs.0.join("records.jsonl");
    let mut sensor = Sensor::start_logging_to(&ns, &log, "");
    // ~3.5 KB records: far more than 64 KiB.
    assert_eq!(flood(&ns, 0, 300, 1000, 16), 300);
    let stderr = sensor.wait_stderr("file: delivery failed");
    let partial = ports_on_disk(&fs.0, "records.jsonl");
    assert!(
        partial.len() < 300,
        "the disk was not full: {}",
        partial.len()
    );
    assert_eq!(
        stderr.matches("file: delivery failed").count(),
        1,
        "said once per outage:\n{stderr}"
    );
    // Space returns: the held records are written on the next retry.
    std::fs::remove_file(&ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    while lines_on_disk(&fs.0, "records.jsonl") < 300 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, stderr) = sensor.stop();
    assert_eq!(code, 0, "{stderr}");
    let ports = ports_on_disk(&fs.0, "records.jsonl");
    let dropped = stat(&stderr, "records_dropped");
    assert_eq!(ports.len() as u64 + dropped, 300, "{stderr}");
    assert_eq!(
        ports.len(),
        300,
        "nothing should be lost within the budget:\n{stderr}"
    );
    assert!(stderr.contains("delivering again"), "{stderr}");
}

fn signals_during_the_drain_do_not_kill_and_final_stats_count_everything() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let server = ns.within(TestServer::start);
    ns.keep_port(server.port());
    server.set_default(Action::Stall);
    let mut sensor = Sensor::start(&ns, &loom_config(server.port(), 5, "100ms"));
    poke(&ns, 0, 20);
    assert_eq!(sensor.wait_records(20).len(), 20);
    sensor.signal(libc::SIGTERM);
    // The drain waits on the stalled Loom (up to 5 s): signal it meanwhile.
    std::thread::sleep(Duration::from_millis(800));
    sensor.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(200));
    sensor.signal(libc::SIGTERM);
    sensor.signal(libc::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Ok(Some(s)) = sensor.child.try_wait() {
            break s;
        }
        assert!(Instant::now() < deadline, "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = sensor.stderr();
    assert_eq!(
        status.code(),
        Some(0),
        "killed by a signal? {status:?}\n{stderr}"
    );
    assert!(stderr.contains("\"type\":\"final_stats\""), "{stderr}");
    assert_eq!(stderr.matches("already stopping").count(), 1, "{stderr}");
    assert_eq!(stat(&stderr, "recorded"), 20);
    assert_eq!(
        stat(&stderr, "loom_records") + stat(&stderr, "loom_dropped"),
        20,
        "{stderr}"
    );
}

fn loom_down_for_ten_seconds_loses_nothing() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    // A port with nothing on it for now.
    let port = ns.within(|| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    });
    ns.keep_port(port);
    let mut sensor = Sensor::start(&ns, &loom_config(port, 5, "200ms"));
    let t0 = Instant::now();
    let mut sent = 0;
    while t0.elapsed() < Duration::from_secs(10) {
        poke(&ns, sent, 5);
        sent += 5;
        std::thread::sleep(Duration::from_millis(500));
    }
    let server = ns.within(move || TestServer::start_on(port));
    let deadline = Instant::now() + Duration::from_secs(40);
    let shipped = || -> usize {
        server
            .requests()
            .iter()
            .map(|r| {
                serde_json::from_slice::<Vec<serde_json::Value>>(&r.body)
                    .unwrap()
                    .len()
            })
            .sum()
    };
    while shipped() < sent as usize && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, stderr) = sensor.stop();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(shipped(), sent as usize, "{stderr}");
    assert_eq!(stat(&stderr, "loom_dropped"), 0, "{stderr}");
    assert!(stderr.contains("loom: delivering again"), "{stderr}");
    assert!(
        stderr.contains("travel in clear"),
        "http:// is warned:\n{stderr}"
    );
}

fn metrics_endpoint_passes_promtool() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[9464]);
    let mut sensor = Sensor::start(&ns, "metrics_listen = \"127.0.0.1:9464\"\n");
    poke(&ns, 0, 3);
    assert_eq!(sensor.wait_records(3).len(), 3);
    let scrape = |accept: &'static str| {
        ns.within(move || {
            let mut s = TcpStream::connect("127.0.0.1:9464").unwrap();
            let req = format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{accept}\r\n");
            s.write_all(req.as_bytes()).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
    };
    // What Prometheus asks for: OpenMetrics.
    let om = scrape("Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n");
    let (head, body) = om.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains("spip_accepted_total 3"), "{body}");
    assert!(
        body.contains("spip_sink_records_total{sink=\"file\"} 3"),
        "{body}"
    );
    // Every counter of the table is there, zero or not (one of the shed reasons, and a sink's).
    assert!(
        body.contains("spip_connections_shed_total{reason=\"per_source\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("spip_record_budget_exhausted_total 0"),
        "{body}"
    );
    assert!(
        body.contains("spip_sink_dropped_total{sink=\"file\"} 0"),
        "{body}"
    );
    assert!(
        !body.contains("{source") && !body.contains(",source"),
        "no per-source labels: {body}"
    );
    // Anything else, promtool included: the Prometheus text format.
    let text = scrape("");
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, stderr) = sensor.stop();
    assert_eq!(code, 0, "{stderr}");
}

/// The value of the unlabelled counter `name` at the sensor's `/metrics` (Prometheus text).
fn scraped(ns: &Netns, name: &'static str) -> Option<u64> {
    let body = ns.within(|| {
        let mut s = TcpStream::connect("127.0.0.1:9464").unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    });
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn record_budget_exhaustion_is_counted_on_metrics_and_the_stats_line() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[9464]);
    let mut sensor = Sensor::start(
        &ns,
        "metrics_listen = \"127.0.0.1:9464\"\nmax_records_per_connection = 2\n",
    );
    // Three pipelined requests: the first is a record, the budget is then spent and the
    // rest goes into one last record (`spip.budget_exhausted`).
    ns.within(|| {
        let mut s = TcpStream::connect("127.0.0.1:80").unwrap();
        s.write_all(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(3))
            .unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = s.read_to_end(&mut Vec::new());
    });
    sensor.wait_for(80, "the last record", |r| {
        r["spip"]["budget_exhausted"] == true
    });
    // Counted when the connection ends, which can be just after its records are written.
    let metric = "spip_record_budget_exhausted_total";
    assert!(
        eventually(RECORD_WAIT, || scraped(&ns, metric) == Some(1)),
        "{metric} is {:?}",
        scraped(&ns, metric)
    );
    let (code, stderr) = sensor.stop();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stat(&stderr, "record_budget_exhausted"), 1, "{stderr}");
}

common::test_main! {
    needs_root: [
        deleting_the_live_file_under_load_keeps_later_records_and_history,
        a_full_disk_never_tears_a_line_and_writing_resumes_when_space_returns,
        signals_during_the_drain_do_not_kill_and_final_stats_count_everything,
        loom_down_for_ten_seconds_loses_nothing,
        metrics_endpoint_passes_promtool,
        record_budget_exhaustion_is_counted_on_metrics_and_the_stats_line,
    ],
    no_root: [],
}
