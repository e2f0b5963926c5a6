//! Per-datagram CPU of the UDP path without its syscalls: flow lookup, protocol parse, the
//! reply (size rule, budgets), Community ID and the record, for each responder's real client
//! datagram and for unknown bytes. The reply "send" is a no-op; one iteration is one datagram.
//! The receive and (rare, budgeted) reply syscalls come on top.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spip::capture::udp::{Identity, Received, UdpState};
use spip::record::EventIds;
use spip::stats::Counters;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

fn quic_initial() -> Vec<u8> {
    let hex = include_str!("../tests/data/udp/rfc9001_a2_client_initial.hex").trim();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0))
        .collect()
}

fn datagrams(c: &mut Criterion) {
    let cfg = spip::config::Config::from_toml_str(
        "name = \"bench\"\nport = 8080\nudp = true\nthreads = 1\n\
         udp_reply_bytes_per_second = 4000000000\nudp_source_reply_bytes_per_second = 4000000000\n\
         rate_limit_per_second = 100000000\nrate_limit_burst = 100000000\n\
         per_source_rate_per_second = 0",
        std::path::Path::new("."),
    )
    .expect("bench config");
    let quic = quic_initial();
    let samples: [(&str, u16, &[u8]); 6] = [
        ("dns", 53, include_bytes!("../tests/data/udp/dig_a.bin")),
        (
            "snmp",
            161,
            include_bytes!("../tests/data/udp/snmpget_v2c.bin"),
        ),
        (
            "sip",
            5060,
            include_bytes!("../tests/data/udp/sipsak_options.bin"),
        ),
        ("ntp", 123, &[0x23; 48]),
        ("quic", 443, &quic),
        ("unknown", 4444, b"\x00\x01garbage bytes of no protocol\r\n"),
    ];
    let counters = Counters::default();
    let who = Identity {
        sensor_name: "bench",
        community_id_seed: 0,
    };
    let mut group = c.benchmark_group("udp_datagram");
    group.throughput(Throughput::Elements(1));
    for (name, port, bytes) in samples {
        let mut state = UdpState::new(&cfg, Instant::now());
        let mut ids = EventIds::new();
        let mut out = Vec::with_capacity(1 << 20);
        let mut sport = 1024u16;
        group.bench_function(name, |b| {
            b.iter(|| {
                // A new client port now and then: mostly existing flows, some new ones.
                sport = if sport == u16::MAX { 1024 } else { sport + 1 };
                let rx = Received {
                    datagram: bytes,
                    truncated: false,
                    from: SocketAddr::new([203, 0, 113, 9].into(), sport % 4096 + 1024),
                    original: Some(SocketAddr::new([198, 51, 100, 2].into(), port)),
                    local: None,
                };
                out.clear();
                black_box(state.datagram(
                    &rx,
                    &who,
                    &mut ids,
                    &counters,
                    Instant::now(),
                    SystemTime::now(),
                    |_, _, _| Ok(()),
                    &mut out,
                ));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, datagrams);
criterion_main!(benches);
