//! The connection engine in memory: a normal request, and hostile input (a 60 KB head of
//! 12,000 distinct header names, whole and in 100-byte segments; 2,000 one-byte segments;
//! 2,000 pipelined requests). Each iteration is one whole connection: accept, bytes, close,
//! records written.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spip::engine::{Accepted, Connection, EngineConfig, PeerClose, PortTable};
use spip::protocols::Settings;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

fn config() -> EngineConfig {
    EngineConfig {
        sensor_name: "bench".into(),
        community_id_seed: 0,
        settings: Settings::default(),
        max_payload_bytes: 65536,
        read_timeout: Duration::from_secs(30),
        session_timeout: Duration::from_secs(120),
        handshake_timeout: Duration::from_secs(10),
        turn_pause: Duration::from_millis(200),
        max_records: 100,
        max_record_bytes: 1 << 20,
        log_empty_connections: true,
        ports: PortTable::new([]),
        tls: None,
        starttls: None,
    }
}

/// One connection fed `segments` (each after the previous, 10 µs apart), then EOF.
fn connection(cfg: &EngineConfig, port: u16, segments: &[&[u8]], out: &mut Vec<u8>) -> usize {
    let t0 = Instant::now();
    let accepted = Accepted {
        source: "203.0.113.9:40000".parse().unwrap(),
        destination: std::net::SocketAddr::new("198.51.100.2".parse().unwrap(), port),
        original_destination: true,
        event_id: spip::record::EventId([b'0'; 36]),
        random: 1,
        started: SystemTime::UNIX_EPOCH,
        syn: None,
    };
    let mut conn = Connection::new(cfg, accepted, t0);
    let mut now = t0;
    let mut sent = 0;
    for s in segments {
        now += Duration::from_micros(10);
        conn.handle_bytes(cfg, s, now, out);
        sent += conn.transmit().len();
        conn.transmit().clear();
    }
    conn.handle_close(cfg, PeerClose::Eof, now, out);
    sent
}

/// A 60 KB request head with 12,000 distinct 3-character header names.
fn hostile_head() -> Vec<u8> {
    let mut head = b"GET / HTTP/1.1\r\n".to_vec();
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    for i in 0..12_000usize {
        let n = [
            alphabet[i % 36],
            alphabet[(i / 36) % 36],
            alphabet[(i / 1296) % 36],
        ];
        head.extend_from_slice(&n);
        head.extend_from_slice(b":\n");
    }
    head.extend_from_slice(b"\n");
    head
}

fn engine(c: &mut Criterion) {
    let cfg = config();
    let mut out = Vec::with_capacity(1 << 20);
    let mut g = c.benchmark_group("engine");

    let get = b"GET /index.html HTTP/1.1\r\nHost: 198.51.100.2\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";
    g.throughput(Throughput::Elements(1));
    g.bench_function("http_get_connection", |b| {
        b.iter(|| {
            out.clear();
            black_box(connection(&cfg, 80, &[get], &mut out));
        })
    });
    g.bench_function("empty_connection", |b| {
        b.iter(|| {
            out.clear();
            black_box(connection(&cfg, 9999, &[], &mut out));
        })
    });

    let head = hostile_head();
    assert!(head.len() > 55_000 && head.len() < 65_000);
    g.throughput(Throughput::Bytes(head.len() as u64));
    g.bench_function("hostile_60k_head_whole", |b| {
        b.iter(|| {
            out.clear();
            black_box(connection(&cfg, 80, &[&head], &mut out));
        })
    });
    let segments: Vec<&[u8]> = head.chunks(100).collect();
    g.bench_function("hostile_60k_head_100b_segments", |b| {
        b.iter(|| {
            out.clear();
            black_box(connection(&cfg, 80, &segments, &mut out));
        })
    });

    let bytes = vec![b'x'; 2000];
    let ones: Vec<&[u8]> = bytes.chunks(1).collect();
    g.throughput(Throughput::Bytes(2000));
    g.bench_function("one_byte_segments_2000", |b| {
        b.iter(|| {
            out.clear();
            black_box(connection(&cfg, 9999, &ones, &mut out));
        })
    });

    let one = b"GET / HTTP/1.1\r\n\r\n";
    let pipelined: Vec<u8> = one.iter().copied().cycle().take(one.len() * 2000).collect();
    g.throughput(Throughput::Elements(2000));
    g.bench_function("pipelined_2000_requests", |b| {
        b.iter(|| {
            out.clear();
            black_box(connection(&cfg, 80, &[&pipelined], &mut out));
        })
    });
    g.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
