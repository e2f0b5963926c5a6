//! Elasticsearch sink cost: building a `_bulk` body, reading a `_bulk` answer, and records/s
//! delivered to a local HTTP server answering like `_bulk` (one core, no runner).

#[path = "../tests/common/http_server.rs"]
mod http_server;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_server::{Action, TestServer};
use spip::config::{ElasticAuth, ElasticConfig};
use spip::sinks::elastic::{Elastic, ElasticCounters, judge, write_bulk_body};
use spip::sinks::{Delivery, Sink};

const BATCH: usize = 500;

/// A record of a realistic size (~600 bytes, like a short HTTP probe record), with its own id.
fn record(i: usize) -> Vec<u8> {
    let mut r = format!(
        r#"{{"@timestamp":"2025-01-01T00:00:00.000000Z","event":{{"id":"8c1f0d7e-4c6a-4d6e-9a55-{i:012x}","ingested_by":"spip","original_payload_hex":""#
    );
    r.push_str(&"47455420".repeat(40));
    r.push_str(r#""},"source":{"ip":"198.51.100.23","port":51234},"destination":{"ip":"203.0.113.9","port":8080},"network":{"transport":"tcp","protocol":"http","community_id":"1:abcdefghijklmnopqrstuvwxyz0="},"spip":{"turn":1}}"#);
    r.into_bytes()
}

/// `{"errors":false,"items":[{"create":{"status":201}}, ...]}` for `n` records.
fn created(n: usize) -> Vec<u8> {
    let mut body = br#"{"errors":false,"items":["#.to_vec();
    for i in 0..n {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(br#"{"create":{"status":201}}"#);
    }
    body.extend_from_slice(b"]}");
    body
}

fn in_memory(c: &mut Criterion) {
    let records: Vec<Vec<u8>> = (0..BATCH).map(record).collect();
    let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    let answer = created(BATCH);
    let mut body = Vec::new();
    let mut g = c.benchmark_group("elasticsearch");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("bulk_body_500x600B", |b| {
        b.iter(|| write_bulk_body(black_box(&refs), &mut body))
    });
    g.bench_function("judge_500_created", |b| {
        b.iter(|| judge(200, None, black_box(&answer), BATCH))
    });
    g.finish();
}

fn deliver_to_local_server(c: &mut Criterion) {
    let srv = TestServer::start();
    srv.keep_requests(false);
    srv.set_handler(Arc::new(|req| Action::Body {
        status: 200,
        headers: Vec::new(),
        body: created(req.body.iter().filter(|b| **b == b'\n').count() / 2),
    }));
    let cfg = ElasticConfig {
        enabled: true,
        url: format!("http://{}", srv.addr),
        auth: ElasticAuth::ApiKey("bench".into()),
        batch_size: BATCH,
        ..ElasticConfig::default()
    };
    let mut sink = Elastic::new(&cfg, Arc::new(ElasticCounters::default())).unwrap();
    let records: Vec<Vec<u8>> = (0..BATCH).map(record).collect();
    let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    let mut g = c.benchmark_group("elasticsearch");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(20);
    g.bench_function("deliver_500_local_server", |b| {
        b.iter(|| assert_eq!(sink.deliver(black_box(&refs)), Delivery::Delivered))
    });
    g.finish();
}

criterion_group!(benches, in_memory, deliver_to_local_server);
criterion_main!(benches);
