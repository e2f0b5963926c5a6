//! HTTP/2 responder benches: curl's h2c GET (frame, HPACK, parse, reply), and a hostile 60 KB
//! header block of 10,000 distinct names, whole and in 100-byte reads (work must stay linear).
//! Run: `cargo bench --bench http2 -- --warm-up-time 1 --measurement-time 3`

use criterion::{Criterion, criterion_group, criterion_main};
use spip::protocols::http2::Http2;
use spip::protocols::{Context, Framing, Responder, Settings};
use std::hint::black_box;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `curl --http2-prior-knowledge http://127.0.0.1:8461/SECRET?q=1 -A agent/1.0`.
fn curl_get() -> Vec<u8> {
    unhex(concat!(
        "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a0000120400000000000003",
        "0000006400040200000000020000000000000408000000000001ff000100002801050000000182048a63760b",
        "db706fff3b401f86418a089d5c0b8170dc79a7037a871cc5a92c05707f53032a2f2a"
    ))
}

/// The preface, then one request whose header block (HEADERS + CONTINUATION frames of 16 KiB)
/// holds `names` literal fields with distinct 3-byte names.
fn many_names(names: usize) -> Vec<u8> {
    let mut block = vec![0x82, 0x84, 0x86];
    for i in 0..names {
        let n = [
            b'a' + (i / 676 % 26) as u8,
            b'a' + (i / 26 % 26) as u8,
            b'a' + (i % 26) as u8,
        ];
        block.extend_from_slice(&[0x00, 3]);
        block.extend_from_slice(&n);
        block.push(0);
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let chunks: Vec<&[u8]> = block.chunks(16384).collect();
    for (i, c) in chunks.iter().enumerate() {
        let kind = if i == 0 { 1 } else { 9 };
        let mut flags = if i == 0 { 1 } else { 0 }; // END_STREAM on HEADERS
        if i == chunks.len() - 1 {
            flags |= 4; // END_HEADERS
        }
        out.extend_from_slice(&(c.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&[kind, flags, 0, 0, 0, 1]);
        out.extend_from_slice(c);
    }
    out
}

/// One conversation: `input` in reads of `read` bytes, every turn parsed and answered.
fn converse(input: &[u8], read: usize, settings: &Settings) -> usize {
    let ctx = Context {
        client: "192.0.2.7:40000".parse().unwrap(),
        server: "198.51.100.2:80".parse().unwrap(),
        settings,
        random: 1,
        now: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
    };
    let mut r = Http2::new(&ctx);
    let mut pending = Vec::new();
    let mut sent = Vec::new();
    for chunk in input.chunks(read) {
        let mut new_from = pending.len();
        pending.extend_from_slice(chunk);
        while let Framing::Complete(len) = r.frame(&pending, new_from) {
            let turn: Vec<u8> = pending.drain(..len).collect();
            let view = r.parse(&turn);
            r.reply(&view, &ctx, &mut sent);
            new_from = 0;
            if pending.is_empty() {
                break;
            }
        }
    }
    sent.len()
}

fn benches(c: &mut Criterion) {
    let settings = Settings::default();
    let get = curl_get();
    c.bench_function("http2/curl_get", |b| {
        b.iter(|| converse(black_box(&get), get.len(), &settings))
    });
    let hostile = many_names(10_000);
    assert!(hostile.len() > 60_000);
    c.bench_function("http2/60k_block_10000_names_whole", |b| {
        b.iter(|| converse(black_box(&hostile), hostile.len(), &settings))
    });
    c.bench_function("http2/60k_block_10000_names_100_byte_reads", |b| {
        b.iter(|| converse(black_box(&hostile), 100, &settings))
    });
}

criterion_group!(http2, benches);
criterion_main!(http2);
