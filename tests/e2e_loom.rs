//! End-to-end: the real sensor shipping its records to a real HTTP server (the test's Loom),
//! both inside a private network namespace.

mod common;

use common::http_server::{Action, TestServer};
use common::*;
use std::time::{Duration, Instant};

fn shipped(server: &TestServer) -> Vec<serde_json::Value> {
    server
        .requests()
        .iter()
        .flat_map(|r| {
            serde_json::from_slice::<Vec<serde_json::Value>>(&r.body).expect("a JSON array")
        })
        .collect()
}

fn records_reach_loom_with_the_go_agent_headers() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let server = ns.within(TestServer::start);
    ns.keep_port(server.port());
    let sensor = Sensor::start(&ns, &loom_config(server.port(), 5, "500ms"));
    poke(&ns, 0, 12);
    let deadline = Instant::now() + RECORD_WAIT;
    while shipped(&server).len() < 12 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let recs = shipped(&server);
    assert_eq!(recs.len(), 12);
    let req = &server.requests()[0];
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("x-spip-id"), Some("sensor-e2e"));
    assert_eq!(req.header("authorization"), Some("Bearer tok"));
    // Loom gets exactly what the local log has (written in its own batches: wait for it).
    let local = sensor.wait_records(12);
    assert_eq!(local.len(), 12);
    let mut a: Vec<_> = local.iter().map(|r| r["event"]["id"].to_string()).collect();
    let mut b: Vec<_> = recs.iter().map(|r| r["event"]["id"].to_string()).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

fn sigterm_flushes_loom_queue() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let server = ns.within(TestServer::start);
    ns.keep_port(server.port());
    let mut sensor = Sensor::start(&ns, &loom_config(server.port(), 1000, "1h"));
    poke(&ns, 0, 3);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        server.request_count(),
        0,
        "the batch is not full and the interval is long"
    );
    let (code, stderr) = sensor.stop();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(shipped(&server).len(), 3, "{stderr}");
    assert!(stderr.contains("\"loom_records\":3"), "{stderr}");
}

fn stalled_loom_does_not_slow_capture() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let server = ns.within(TestServer::start);
    ns.keep_port(server.port());
    server.set_default(Action::Stall);
    let sensor = Sensor::start(&ns, &loom_config(server.port(), 10, "200ms"));
    let t0 = Instant::now();
    poke(&ns, 0, 200);
    let took = t0.elapsed();
    let local = sensor.wait_records(200);
    assert_eq!(
        local.len(),
        200,
        "the local log is complete while Loom fails"
    );
    assert!(took < Duration::from_secs(10), "capture took {took:?}");
    assert!(server.request_count() >= 1);
}

common::test_main! {
    needs_root: [
        records_reach_loom_with_the_go_agent_headers,
        sigterm_flushes_loom_queue,
        stalled_loom_does_not_slow_capture,
    ],
    no_root: [
    ],
}
