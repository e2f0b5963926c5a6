//! The Elasticsearch sink's HTTP path against a fake `_bulk` server on loopback (no root):
//! delivery, 409 on a resend, per-item outcomes, refusals to the dead-letter file, a stalled
//! cluster bounded by the request timeout.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::bulk_server::{BulkServer, Faults};
use common::http_server::{Action, TestServer};
use spip::config::{ElasticAuth, ElasticConfig};
use spip::sinks::elastic::{Elastic, ElasticCounters, ElasticTimeouts};
use spip::sinks::{Delivery, Sink};

fn record(i: usize, summary: &str) -> Vec<u8> {
    format!(
        r#"{{"@timestamp":"2026-11-30T00:00:00.000000Z","event":{{"id":"00000000-0000-4000-8000-{i:012}","summary":"{summary}"}},"spip":{{"turn":1}}}}"#
    )
    .into_bytes()
}

fn config(server: &TestServer, dead_letter: Option<std::path::PathBuf>) -> ElasticConfig {
    ElasticConfig {
        enabled: true,
        url: format!("http://{}", server.addr),
        auth: ElasticAuth::ApiKey("k".into()),
        dead_letter_file: dead_letter,
        ..ElasticConfig::default()
    }
}

fn temp_file(tag: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("spip-es-{tag}-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

#[test]
fn resend_meets_409s_and_counts_them_as_delivered() {
    let bulk = BulkServer::new("logs-spip-default", Some("ApiKey k"));
    let server = TestServer::start();
    server.set_handler(bulk.handler());
    let counters = Arc::new(ElasticCounters::default());
    let mut sink = Elastic::new(&config(&server, None), counters.clone()).unwrap();
    let recs: Vec<Vec<u8>> = (0..3).map(|i| record(i, "x")).collect();
    let refs: Vec<&[u8]> = recs.iter().map(Vec::as_slice).collect();
    assert_eq!(sink.deliver(&refs), Delivery::Delivered);
    assert_eq!(sink.deliver(&refs), Delivery::Delivered);
    bulk.with(|c| {
        assert!(c.protocol_errors.is_empty(), "{:?}", c.protocol_errors);
        assert_eq!(c.docs.len(), 3);
        assert_eq!(c.conflicts, 3);
    });
    assert_eq!(counters.already_there.load(Ordering::Relaxed), 3);
}

#[test]
fn per_item_outcomes_and_dead_letters() {
    let bulk = BulkServer::new("logs-spip-default", Some("ApiKey k"));
    bulk.with(|c| {
        c.faults = Faults {
            reject_marker: Some("bad".into()),
            busy_marker: Some("busy".into()),
            ..Faults::default()
        }
    });
    let server = TestServer::start();
    server.set_handler(bulk.handler());
    let dlq = temp_file("items");
    let counters = Arc::new(ElasticCounters::default());
    let mut sink = Elastic::new(&config(&server, Some(dlq.clone())), counters.clone()).unwrap();
    let recs = [record(0, "ok"), record(1, "bad"), record(2, "busy")];
    let refs: Vec<&[u8]> = recs.iter().map(Vec::as_slice).collect();
    let Delivery::Partial {
        retry, rejected, ..
    } = sink.deliver(&refs)
    else {
        panic!("not partial");
    };
    assert_eq!((retry, rejected), (vec![2], 1));
    // The runner offers the busy one again: now it goes in.
    assert_eq!(sink.deliver(&refs[2..]), Delivery::Delivered);
    assert_eq!(bulk.with(|c| c.docs.len()), 2);
    let dead = std::fs::read_to_string(&dlq).unwrap();
    std::fs::remove_file(&dlq).unwrap();
    let lines: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["record"]["event"]["summary"], "bad");
    assert_eq!(counters.dead_lettered.load(Ordering::Relaxed), 1);
}

#[test]
fn bad_credentials_refuse_the_batch_into_the_dead_letter_file() {
    let bulk = BulkServer::new("logs-spip-default", Some("ApiKey right"));
    let server = TestServer::start();
    server.set_handler(bulk.handler());
    let dlq = temp_file("auth");
    let mut sink = Elastic::new(
        &config(&server, Some(dlq.clone())),
        Arc::new(ElasticCounters::default()),
    )
    .unwrap();
    let recs = [record(0, "a"), record(1, "b")];
    let refs: Vec<&[u8]> = recs.iter().map(Vec::as_slice).collect();
    let Delivery::Partial {
        retry,
        rejected,
        error,
    } = sink.deliver(&refs)
    else {
        panic!("not partial");
    };
    assert!(retry.is_empty());
    assert_eq!(rejected, 2);
    assert!(
        error.contains("401") && error.contains("api_key"),
        "{error}"
    );
    let dead = std::fs::read_to_string(&dlq).unwrap();
    std::fs::remove_file(&dlq).unwrap();
    assert_eq!(dead.lines().count(), 2);
}

#[test]
fn a_stalled_cluster_is_bounded_by_the_request_timeout() {
    let server = TestServer::start();
    server.set_default(Action::Stall);
    let timeouts = ElasticTimeouts {
        connect: Duration::from_secs(1),
        request: Duration::from_millis(500),
    };
    let mut sink = Elastic::with_timeouts(
        &config(&server, None),
        Arc::new(ElasticCounters::default()),
        timeouts,
    )
    .unwrap();
    let rec = record(0, "a");
    let t0 = Instant::now();
    let outcome = sink.deliver(&[&rec]);
    assert!(
        matches!(outcome, Delivery::RetryAll { after: None, .. }),
        "{outcome:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

#[test]
fn whole_request_429_passes_retry_after_on() {
    let server = TestServer::start();
    server.script([Action::retry_after(429, 2)]);
    let mut sink =
        Elastic::new(&config(&server, None), Arc::new(ElasticCounters::default())).unwrap();
    let rec = record(0, "a");
    let Delivery::RetryAll { after, .. } = sink.deliver(&[&rec]) else {
        panic!("not a retry");
    };
    assert_eq!(after, Some(Duration::from_secs(2)));
}
