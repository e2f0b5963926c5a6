//! Loom shipping cost: `offer()` per record with a live local Loom, and records/s shipped
//! end to end to a local HTTP server.

#[path = "../tests/common/http_server.rs"]
mod http_server;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_server::TestServer;
use spip::config::LoomConfig;
use spip::loom::{Loom, LoomCounters};

/// A record of a realistic size (~600 bytes, like a short HTTP probe record).
fn record() -> Vec<u8> {
    let mut r = String::from(
        r#"{"@timestamp":"2025-01-01T00:00:00.000000Z","event":{"id":"8c1f0d7e-4c6a-4d6e-9a55-2f1f3a1b2c3d","kind":"event","category":["network"],"dataset":"spip.connection","original_payload_hex":""#,
    );
    r.push_str(&"47455420".repeat(40));
    r.push_str(r#""},"source":{"ip":"198.51.100.23","port":51234},"destination":{"ip":"203.0.113.9","port":8080},"network":{"transport":"tcp","protocol":"http","community_id":"1:abcdefghijklmnopqrstuvwxyz0="},"observer":{"hostname":"sensor-7","id":"sensor-7"}}"#);
    r.into_bytes()
}

fn cfg(url: String, batch_size: usize) -> LoomConfig {
    LoomConfig {
        enabled: true,
        url,
        sensor_id: "bench".into(),
        token: "t".into(),
        batch_size,
        flush_interval: Duration::from_millis(100),
        ..LoomConfig::default()
    }
}

fn offer_cost(c: &mut Criterion) {
    let srv = TestServer::start();
    srv.keep_requests(false);
    let counters = Arc::new(LoomCounters::default());
    let loom = Loom::start(&cfg(srv.url(), 50), counters.clone()).unwrap();
    let rec = record();
    let mut g = c.benchmark_group("loom");
    g.throughput(Throughput::Elements(1));
    g.bench_function("offer_600B_record_live_server", |b| {
        b.iter(|| loom.offer(black_box(&rec)))
    });
    g.finish();
    loom.shutdown(Duration::from_secs(10));
    eprintln!(
        "offer bench: posted {} records in {} batches, dropped {} (over budget while the shipper caught up)",
        counters.sent.load(Ordering::Relaxed),
        counters.batches.load(Ordering::Relaxed),
        counters.dropped.load(Ordering::Relaxed),
    );
}

fn end_to_end(c: &mut Criterion) {
    const N: u64 = 50_000;
    let srv = TestServer::start();
    srv.keep_requests(false);
    let rec = record();
    let mut g = c.benchmark_group("loom");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N));
    for batch in [50usize, 500] {
        g.bench_function(format!("ship_{N}_records_batch_{batch}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let counters = Arc::new(LoomCounters::default());
                    let loom = Loom::start(&cfg(srv.url(), batch), counters.clone()).unwrap();
                    let t0 = Instant::now();
                    for _ in 0..N {
                        loom.offer(&rec);
                    }
                    loom.shutdown(Duration::from_secs(60));
                    total += t0.elapsed();
                    assert_eq!(counters.sent.load(Ordering::Relaxed), N);
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, offer_cost, end_to_end);
criterion_main!(benches);
