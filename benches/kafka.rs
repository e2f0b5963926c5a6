//! Kafka sink costs on one core: extracting the key (`source.ip`) from a record, and, when
//! `SPIP_BENCH_KAFKA_BROKER` names a broker (e.g. a tansu started as in the README, with a
//! topic `spip-bench`), records per second through `deliver` with the default settings.
//! Run by the lead: `cargo bench --bench kafka`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spip::config::KafkaConfig;
use spip::sinks::kafka::{KafkaSink, source_ip};
use spip::sinks::{Delivery, Sink};

/// A record of a realistic size (~600 bytes), `source` after a hex payload as our writer puts it.
fn record(source: u8) -> Vec<u8> {
    let mut r = String::from(
        r#"{"@timestamp":"2025-01-01T00:00:00.000000Z","event":{"id":"8c1f0d7e-4c6a-4d6e-9a55-2f1f3a1b2c3d","ingested_by":"spip","original_payload_hex":""#,
    );
    r.push_str(&"47455420".repeat(40));
    r.push_str(&format!(
        r#""}},"source":{{"ip":"198.51.100.{source}","port":51234}},"destination":{{"ip":"203.0.113.9","port":8080}},"network":{{"transport":"tcp"}}}}"#
    ));
    r.into_bytes()
}

fn key(c: &mut Criterion) {
    let rec = record(23);
    let mut g = c.benchmark_group("kafka");
    g.throughput(Throughput::Bytes(rec.len() as u64));
    g.bench_function("source_ip_600B_record", |b| {
        b.iter(|| source_ip(black_box(&rec)))
    });
    g.finish();
}

fn deliver(c: &mut Criterion) {
    let Ok(broker) = std::env::var("SPIP_BENCH_KAFKA_BROKER") else {
        eprintln!("kafka deliver bench skipped: set SPIP_BENCH_KAFKA_BROKER=host:port");
        return;
    };
    let cfg = KafkaConfig {
        enabled: true,
        brokers: vec![broker],
        topic: "spip-bench".to_string(),
        ..KafkaConfig::default()
    };
    let mut sink = KafkaSink::new(&cfg).expect("kafka sink");
    let records: Vec<Vec<u8>> = (0..cfg.batch_size).map(|i| record(i as u8)).collect();
    let views: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    let mut g = c.benchmark_group("kafka");
    g.sample_size(20);
    g.throughput(Throughput::Elements(views.len() as u64));
    g.bench_function("deliver_1000_records", |b| {
        b.iter(|| assert_eq!(sink.deliver(&views), Delivery::Delivered))
    });
    g.finish();
    sink.close();
}

criterion_group!(benches, key, deliver);
criterion_main!(benches);
