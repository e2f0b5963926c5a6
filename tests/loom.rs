//! Loom shipping against a real HTTP(S) server on loopback.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::http_server::{Action, Request, TestServer};
use common::{RECORD_WAIT, eventually, free_port};
use spip::config::LoomConfig;
use spip::loom::{Loom, LoomCounters, LoomTuning};

fn cfg(url: &str, batch_size: usize, flush: Duration) -> LoomConfig {
    LoomConfig {
        enabled: true,
        url: url.to_string(),
        sensor_id: "sensor-7".into(),
        token: "s3cret".into(),
        batch_size,
        flush_interval: flush,
        insecure_skip_verify: false,
        max_pending_bytes: 64 << 20,
    }
}

fn fast() -> LoomTuning {
    LoomTuning {
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        ..LoomTuning::default()
    }
}

fn record(i: usize) -> Vec<u8> {
    format!(
        "{{\"i\":{i},\"source\":{{\"ip\":\"192.0.2.1\"}},\"pad\":\"{}\"}}\n",
        "x".repeat(40)
    )
    .into_bytes()
}

/// The `i` of every record in every request body, in arrival order.
fn delivered(reqs: &[Request]) -> Vec<u64> {
    let mut out = Vec::new();
    for r in reqs {
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("body is JSON");
        for rec in v.as_array().expect("body is a JSON array") {
            out.push(rec["i"].as_u64().expect("i"));
        }
    }
    out
}

fn ok_requests(srv: &TestServer) -> usize {
    srv.request_count()
}

#[test]
fn batches_headers_and_body() {
    let srv = TestServer::start();
    let counters = Arc::new(LoomCounters::default());
    let loom = Loom::start_with(
        // Long enough that the two full batches are seen before it ends, on a loaded machine.
        &cfg(&srv.url(), 10, Duration::from_millis(1500)),
        counters.clone(),
        fast(),
    )
    .unwrap();
    let t0 = Instant::now();
    for i in 0..25 {
        loom.offer(&record(i));
    }
    assert!(eventually(RECORD_WAIT, || ok_requests(&srv) >= 2));
    // Two full batches go out at once; the partial one waits for flush_interval.
    assert_eq!(
        srv.request_count(),
        2,
        "partial batch sent before flush_interval"
    );
    assert!(eventually(RECORD_WAIT, || ok_requests(&srv) >= 3));
    assert!(t0.elapsed() >= Duration::from_millis(1400));
    let reqs = srv.requests();
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/ingest");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-spip-id"), Some("sensor-7"));
        assert_eq!(r.header("authorization"), Some("Bearer s3cret"));
    }
    let sizes: Vec<usize> = reqs
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body)
                .unwrap()
                .as_array()
                .unwrap()
                .len()
        })
        .collect();
    assert_eq!(sizes, vec![10, 10, 5]);
    // Records arrive whole and unchanged, in order.
    let first: serde_json::Value = serde_json::from_slice(&reqs[0].body).unwrap();
    let expect: serde_json::Value = serde_json::from_slice(&record(0)).unwrap();
    assert_eq!(first[0], expect);
    assert_eq!(delivered(&reqs), (0..25).collect::<Vec<u64>>());
    loom.shutdown(Duration::from_secs(2));
    assert_eq!(counters.batches.load(Ordering::Relaxed), 3);
    assert_eq!(counters.sent.load(Ordering::Relaxed), 25);
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
    assert_eq!(counters.retries.load(Ordering::Relaxed), 0);
}

#[test]
fn flush_interval_sends_partial_batch() {
    let srv = TestServer::start();
    let counters = Arc::new(LoomCounters::default());
    let loom = Loom::start_with(
        &cfg(&srv.url(), 1000, Duration::from_millis(1000)),
        counters.clone(),
        fast(),
    )
    .unwrap();
    let t0 = Instant::now();
    for i in 0..3 {
        loom.offer(&record(i));
    }
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(srv.request_count(), 0, "sent before flush_interval");
    assert!(eventually(RECORD_WAIT, || srv.request_count() == 1));
    let waited = t0.elapsed();
    // Sent at the interval (1 s), not held until more records or shutdown.
    assert!(
        waited < Duration::from_secs(3),
        "partial batch took {waited:?}"
    );
    assert_eq!(delivered(&srv.requests()), vec![0, 1, 2]);
    // A second, later record starts its own interval.
    loom.offer(&record(3));
    assert!(eventually(RECORD_WAIT, || srv.request_count() == 2));
    loom.shutdown(Duration::from_secs(2));
    assert_eq!(counters.sent.load(Ordering::Relaxed), 4);
}

#[test]
fn six_second_outage_loses_nothing() {
    let port = free_port();
    let counters = Arc::new(LoomCounters::default());
    let url = format!("http://127.0.0.1:{port}/ingest");
    let tuning = LoomTuning {
        backoff_max: Duration::from_secs(1),
        ..fast()
    };
    let loom = Loom::start_with(
        &cfg(&url, 20, Duration::from_millis(200)),
        counters.clone(),
        tuning,
    )
    .unwrap();
    // Records keep arriving during a 6 s outage.
    let t0 = Instant::now();
    let mut n = 0;
    while t0.elapsed() < Duration::from_secs(6) {
        for _ in 0..10 {
            loom.offer(&record(n));
            n += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(counters.sent.load(Ordering::Relaxed), 0);
    assert!(counters.retries.load(Ordering::Relaxed) >= 3);
    let srv = TestServer::start_on(port);
    for _ in 0..10 {
        loom.offer(&record(n));
        n += 1;
    }
    let all = n as u64;
    assert!(
        eventually(RECORD_WAIT, || counters.sent.load(Ordering::Relaxed) == all),
        "delivered {} of {all}",
        counters.sent.load(Ordering::Relaxed)
    );
    let got: BTreeSet<u64> = delivered(&srv.requests()).into_iter().collect();
    assert_eq!(got, (0..all).collect::<BTreeSet<u64>>());
    loom.shutdown(Duration::from_secs(2));
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
}

#[test]
fn first_three_500s_then_delivered() {
    // Default tuning: real backoff (0.5 s doubling, jittered).
    let srv = TestServer::start();
    srv.script([
        Action::status(500),
        Action::status(500),
        Action::status(500),
    ]);
    let counters = Arc::new(LoomCounters::default());
    let loom = Loom::start(
        &cfg(&srv.url(), 5, Duration::from_millis(100)),
        counters.clone(),
    )
    .unwrap();
    for i in 0..5 {
        loom.offer(&record(i));
    }
    assert!(eventually(RECORD_WAIT, || counters
        .sent
        .load(Ordering::Relaxed)
        == 5));
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 4);
    // Each retry carries the same batch.
    assert!(reqs.windows(2).all(|w| w[0].body == w[1].body));
    // Backoff: gaps grow and are at least half the nominal 0.5 s, 1 s, 2 s.
    let gaps: Vec<Duration> = reqs.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[0] >= Duration::from_millis(240), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(490), "{gaps:?}");
    assert!(gaps[2] >= Duration::from_millis(990), "{gaps:?}");
    assert_eq!(delivered(&reqs[3..]), vec![0, 1, 2, 3, 4]);
    loom.shutdown(Duration::from_secs(2));
    assert_eq!(counters.retries.load(Ordering::Relaxed), 3);
    assert_eq!(counters.errors.load(Ordering::Relaxed), 3);
    assert_eq!(counters.batches.load(Ordering::Relaxed), 1);
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
}

#[test]
fn retry_after_is_honoured() {
    let srv = TestServer::start();
    srv.script([Action::retry_after(429, 1), Action::retry_after(503, 1)]);
    let counters = Arc::new(LoomCounters::default());
    let loom = Loom::start_with(
        &cfg(&srv.url(), 1, Duration::from_millis(100)),
        counters.clone(),
        fast(),
    )
    .unwrap();
    loom.offer(&record(0));
    assert!(eventually(RECORD_WAIT, || counters
        .sent
        .load(Ordering::Relaxed)
        == 1));
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs[1].at - reqs[0].at >= Duration::from_millis(950));
    assert!(reqs[2].at - reqs[1].at >= Duration::from_millis(950));
    loom.shutdown(Duration::from_secs(1));
    assert_eq!(counters.retries.load(Ordering::Relaxed), 2);
}

/// Runs only in the child process started by `rejected_401_not_retried_and_said_once`.
#[test]
fn child_rejected_401() {
    let Ok(url) = std::env::var("SPIP_LOOM_TEST_URL") else {
        return;
    };
    let counters = Arc::new(LoomCounters::default());
    let loom = Loom::start_with(
        &cfg(&url, 2, Duration::from_millis(50)),
        counters.clone(),
        fast(),
    )
    .unwrap();
    for i in 0..6 {
        loom.offer(&record(i));
    }
    assert!(eventually(RECORD_WAIT, || counters
        .dropped
        .load(Ordering::Relaxed)
        == 6));
    std::thread::sleep(Duration::from_millis(300)); // a retry would show up by now
    loom.shutdown(Duration::from_secs(1));
    assert_eq!(counters.retries.load(Ordering::Relaxed), 0);
    assert_eq!(counters.sent.load(Ordering::Relaxed), 0);
    assert_eq!(counters.errors.load(Ordering::Relaxed), 3);
}

#[test]
fn rejected_401_not_retried_and_said_once() {
    let srv = TestServer::start();
    srv.set_default(Action::status(401));
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_rejected_401",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SPIP_LOOM_TEST_URL", srv.url())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    // Three batches, three POSTs: no retries.
    assert_eq!(srv.request_count(), 3);
    let msg = "spip: loom: POST rejected with 401 Unauthorized; dropping batch (2 records); check [loom] token";
    assert_eq!(stderr.matches(msg).count(), 1, "stderr:\n{stderr}");
    assert!(
        !stdout.contains("spip: loom"),
        "diagnostics must not go to stdout"
    );
}

#[test]
fn stalled_loom_never_slows_offer() {
    let mut srv = TestServer::start();
    srv.set_default(Action::Stall);
    let counters = Arc::new(LoomCounters::default());
    let loom = Loom::start_with(
        &cfg(&srv.url(), 50, Duration::from_millis(100)),
        counters.clone(),
        fast(),
    )
    .unwrap();
    loom.offer(&record(0));
    assert!(
        eventually(RECORD_WAIT, || srv.request_count() == 1),
        "first POST not seen"
    );
    // The thread is now stuck in a request that will never be answered.
    let rec = record(1);
    let t0 = Instant::now();
    for _ in 0..100_000 {
        loom.offer(&rec);
    }
    let took = t0.elapsed();
    eprintln!("100k offers against a stalled Loom: {took:?}");
    // An offer that waited for the stalled request would take its timeout (5 s).
    assert!(took < Duration::from_secs(3), "100k offers took {took:?}");
    let t1 = Instant::now();
    loom.shutdown(Duration::from_millis(1500));
    let took = t1.elapsed();
    // The grace (1.5 s), not the stalled request's timeout (5 s).
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    assert_eq!(counters.sent.load(Ordering::Relaxed), 0);
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 100_001);
    srv.stop();
}

#[test]
fn budget_drops_oldest_and_keeps_counts() {
    let port = free_port();
    let counters = Arc::new(LoomCounters::default());
    let url = format!("http://127.0.0.1:{port}/ingest");
    let mut c = cfg(&url, 10, Duration::from_millis(50));
    c.max_pending_bytes = 8 * 1024; // ~8 batches of 10 records
    let tuning = LoomTuning {
        backoff_max: Duration::from_millis(200),
        ..fast()
    };
    let loom = Loom::start_with(&c, counters.clone(), tuning).unwrap();
    let n = 1000u64;
    for i in 0..n as usize {
        loom.offer(&record(i));
    }
    assert!(loom.pending_bytes() <= 8 * 1024);
    let dropped = counters.dropped.load(Ordering::Relaxed);
    assert!(dropped >= 900, "dropped {dropped}");
    let srv = TestServer::start_on(port);
    assert!(eventually(RECORD_WAIT, || {
        counters.sent.load(Ordering::Relaxed) + counters.dropped.load(Ordering::Relaxed) == n
    }));
    loom.shutdown(Duration::from_secs(2));
    let got = delivered(&srv.requests());
    // The newest records survive, in one unbroken run to the last; the oldest were dropped.
    // Only one batch (10 records) may be older: the batch the runner was cutting or sending
    // when the budget filled is not dropped (it goes back to the head of the queue if its
    // delivery fails, and is dropped from there only by a later offer).
    assert_eq!(got.last(), Some(&(n - 1)));
    let newest = got
        .iter()
        .rev()
        .zip((0..n).rev())
        .take_while(|(got, want)| **got == *want)
        .count();
    assert!(got.len() - newest <= 10, "{got:?}");
    assert!(newest < 100, "no more than the budget holds: {got:?}");
    assert_eq!(
        got.len() as u64 + counters.dropped.load(Ordering::Relaxed),
        n
    );
}

#[test]
fn https_self_signed_needs_insecure_skip_verify() {
    let srv = TestServer::start_tls();
    // insecure_skip_verify = true: delivered.
    let counters = Arc::new(LoomCounters::default());
    let mut c = cfg(&srv.url(), 3, Duration::from_millis(100));
    c.insecure_skip_verify = true;
    let loom = Loom::start_with(&c, counters.clone(), fast()).unwrap();
    for i in 0..3 {
        loom.offer(&record(i));
    }
    assert!(eventually(RECORD_WAIT, || counters
        .sent
        .load(Ordering::Relaxed)
        == 3));
    loom.shutdown(Duration::from_secs(1));
    assert_eq!(delivered(&srv.requests()), vec![0, 1, 2]);
    assert_eq!(
        srv.requests()[0].header("authorization"),
        Some("Bearer s3cret")
    );

    // insecure_skip_verify = false: the certificate is refused, nothing reaches the server.
    let counters = Arc::new(LoomCounters::default());
    c.insecure_skip_verify = false;
    let loom = Loom::start_with(&c, counters.clone(), fast()).unwrap();
    for i in 10..13 {
        loom.offer(&record(i));
    }
    assert!(eventually(RECORD_WAIT, || counters
        .errors
        .load(Ordering::Relaxed)
        >= 2));
    loom.shutdown(Duration::from_millis(300));
    assert_eq!(counters.sent.load(Ordering::Relaxed), 0);
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 3);
    assert_eq!(
        srv.request_count(),
        1,
        "no request may pass an unverified certificate"
    );
}

#[test]
fn shutdown_flushes_queued_records() {
    let srv = TestServer::start();
    let counters = Arc::new(LoomCounters::default());
    // flush_interval of an hour: only shutdown can send these.
    let loom = Loom::start_with(
        &cfg(&srv.url(), 1000, Duration::from_secs(3600)),
        counters.clone(),
        fast(),
    )
    .unwrap();
    for i in 0..10 {
        loom.offer(&record(i));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(srv.request_count(), 0);
    let t0 = Instant::now();
    loom.shutdown(Duration::from_secs(5));
    // At once, not at the end of the grace.
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(delivered(&srv.requests()), (0..10).collect::<Vec<u64>>());
    assert_eq!(counters.sent.load(Ordering::Relaxed), 10);
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
}
