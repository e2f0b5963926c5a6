//! Scan benches: the per-connection cost of the scan summaries (accepted + closed for one
//! source, for many, and for a flood of distinct sources through a full table; a shed
//! connection) and payload tagging of typical turns.
//! Run: `cargo bench --bench scan -- --warm-up-time 1 --measurement-time 3`

use criterion::{Criterion, criterion_group, criterion_main};
use spip::scan::payload_tags::Tags;
use spip::scan::summary::{Summaries, SummaryConfig};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

fn summaries() -> Summaries {
    let cfg = SummaryConfig {
        max_sources: 16_384,
        interval: Duration::from_secs(60),
        scanner_ports: 25,
    };
    Summaries::new(cfg, Instant::now())
}

fn bench_summaries(c: &mut Criterion) {
    let s = summaries();
    let now = Instant::now();
    let one = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let mut port = 0u16;
    c.bench_function("summary accepted+closed, one source", |b| {
        b.iter(|| {
            port = port.wrapping_add(1);
            s.accepted(black_box(one), port, Some("64240_2-4-8-1-3_1460_7"), now);
            s.closed(black_box(one), 0, now);
        })
    });
    let mut n = 0u32;
    c.bench_function("summary accepted+closed, 10k sources", |b| {
        b.iter(|| {
            n = (n + 1) % 10_000;
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
            s.accepted(black_box(ip), 80, None, now);
            s.closed(black_box(ip), 10, now);
        })
    });
    // A flood of distinct sources through a full table (16,384 sources): every connection
    // is a new source that evicts the least recently seen one of its set.
    let mut m = 0u32;
    c.bench_function("summary accepted+closed, 1M sources (evicting)", |b| {
        b.iter(|| {
            m = (m + 1) % 1_000_000;
            let ip = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + m));
            s.accepted(black_box(ip), 80, None, now);
            s.closed(black_box(ip), 0, now);
        })
    });
    c.bench_function("summary shed", |b| {
        b.iter(|| {
            port = port.wrapping_add(1);
            s.shed(black_box(one), port, now)
        })
    });
}

fn bench_tags(c: &mut Criterion) {
    let http = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/5.0 \
        (X11; Linux x86_64) Gecko/20100101 Firefox/128.0\r\nAccept: */*\r\n\r\n";
    let mut big = Vec::new();
    while big.len() < 8192 {
        big.extend_from_slice(http);
    }
    let binary: Vec<u8> = (0..4096u32).map(|i| (i * 131 % 251) as u8).collect();
    c.bench_function("tags http request", |b| {
        b.iter(|| Tags::of(black_box(http)))
    });
    c.bench_function("tags 8 KiB text", |b| b.iter(|| Tags::of(black_box(&big))));
    c.bench_function("tags 4 KiB binary", |b| {
        b.iter(|| Tags::of(black_box(&binary)))
    });
}

criterion_group!(benches, bench_summaries, bench_tags);
criterion_main!(benches);
