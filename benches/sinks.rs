//! Sink layer throughput on one core: records per second through the shared runner into a null
//! sink (the runner's own overhead: queue, line split, batching, settling) and into the file
//! sink (plus the write to a temporary file), and the capture path's cost to hand a batch to
//! 1 and 4 sinks. Run by the lead: `cargo bench --bench sinks`.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spip::output::{Batch, Output};
use spip::sinks::file::{FileOptions, FileSink};
use spip::sinks::{Batching, Delivery, Lines, RetryPolicy, Sink, SinkCounters, SinkRunner};

/// A record of a realistic size (~600 bytes, like a short HTTP probe record).
fn record() -> Vec<u8> {
    let mut r = String::from(
        r#"{"@timestamp":"2025-01-01T00:00:00.000000Z","event":{"id":"8c1f0d7e-4c6a-4d6e-9a55-2f1f3a1b2c3d","kind":"event","category":["network"],"dataset":"spip.connection","original_payload_hex":""#,
    );
    r.push_str(&"47455420".repeat(40));
    r.push_str(r#""},"source":{"ip":"198.51.100.23","port":51234},"destination":{"ip":"203.0.113.9","port":8080},"network":{"transport":"tcp","protocol":"http"}}"#);
    r.into_bytes()
}

/// A capture batch as `RecordSink` hands it over: ~32 KiB of whole lines.
fn chunk() -> (Vec<u8>, usize) {
    let rec = record();
    let mut bytes = Vec::new();
    let mut n = 0;
    while bytes.len() < 32 * 1024 {
        bytes.extend_from_slice(&rec);
        bytes.push(b'\n');
        n += 1;
    }
    (bytes, n)
}

/// Takes everything, does nothing.
struct Null;

impl Sink for Null {
    fn name(&self) -> &'static str {
        "null"
    }
    fn batching(&self) -> Batching {
        Batching {
            max_records: 1 << 16,
            max_bytes: 1 << 20,
            flush_interval: Duration::ZERO,
        }
    }
    fn deliver(&mut self, records: &[&[u8]]) -> Delivery {
        black_box(records);
        Delivery::Delivered
    }
}

/// Pushes `chunks` chunks through a runner on `sink` and waits until all are delivered.
fn pump(sink: Box<dyn Sink>, chunks: u64) -> Duration {
    let counters = Arc::new(SinkCounters::default());
    let runner =
        SinkRunner::start(sink, 1 << 30, RetryPolicy::default(), counters.clone()).unwrap();
    let (bytes, n) = chunk();
    let total = chunks * n as u64;
    let t0 = Instant::now();
    for _ in 0..chunks {
        runner.offer(Lines::new(bytes.clone(), n));
    }
    while counters.sent.load(Ordering::Relaxed) < total {
        std::thread::yield_now();
    }
    let took = t0.elapsed();
    runner.shutdown(Duration::from_secs(5));
    took
}

fn records_per_second(c: &mut Criterion) {
    let (_, n) = chunk();
    let mut g = c.benchmark_group("sinks");
    g.throughput(Throughput::Elements(n as u64 * 64));
    g.sample_size(20);
    g.bench_function("null_sink_64_chunks", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| pump(Box::new(Null), 64)).sum())
    });
    let dir = std::env::temp_dir().join(format!("spip-bench-sinks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bench.jsonl");
    g.bench_function("file_sink_64_chunks", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let _ = std::fs::remove_file(&path);
                    let sink =
                        FileSink::open(FileOptions::file(&path), Arc::new(AtomicBool::new(false)))
                            .unwrap();
                    pump(Box::new(sink), 64)
                })
                .sum()
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a worker pays per capture batch with 1 and with 4 sinks (the ≤ 1.1× target of issue 13
/// concerns this path). Sinks are null, so the queues never fill.
fn capture_cost(c: &mut Criterion) {
    let (bytes, n) = chunk();
    let mut g = c.benchmark_group("capture_submit");
    g.throughput(Throughput::Elements(n as u64));
    for sinks in [1usize, 4] {
        let runners = (0..sinks)
            .map(|_| {
                SinkRunner::start(
                    Box::new(Null),
                    1 << 30,
                    RetryPolicy::default(),
                    Arc::default(),
                )
                .unwrap()
            })
            .collect();
        let output = Output::new(runners, Arc::new(AtomicBool::new(false)));
        g.bench_function(format!("{sinks}_sinks_32KiB_batch"), |b| {
            b.iter(|| {
                output.submit(Batch {
                    bytes: bytes.clone(),
                    records: n,
                })
            })
        });
        output.shutdown(Instant::now() + Duration::from_secs(5));
    }
    g.finish();
}

criterion_group!(benches, records_per_second, capture_cost);
criterion_main!(benches);
