//! Fingerprint benches: JA4 + JA3 on a 512-byte and a ~1.8 KiB ClientHello, HASSH on an
//! OpenSSH KEXINIT, JA4H on a 10-header request (feature `ja4plus`).
//! Run: `cargo bench --bench fingerprint --features ja4plus -- --warm-up-time 1 --measurement-time 3`

use criterion::{Criterion, criterion_group, criterion_main};
use spip::fingerprint;
use spip::proto::tls::wrap_records;

#[path = "../tests/support/hellos.rs"]
mod hellos;
use std::hint::black_box;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A vector file from `tests/data/vectors/`; a missing one stops the bench.
fn vectors(file: &str) -> serde_json::Value {
    let path = format!("{}/tests/data/vectors/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("vector file {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("vector file {path}: {e}"))
}

fn firefox_512() -> Vec<u8> {
    // tls12.pcap: a single 512-byte Firefox hello.
    vectors("ja4_ja3_clienthello_vectors.json")["vectors"]
        .as_array()
        .and_then(|rows| {
            rows.iter().find_map(|r| {
                let m = unhex(r["client_hello_handshake_hex"].as_str()?);
                (m.len() == 512).then_some(m)
            })
        })
        .expect("a 512-byte ClientHello in the vectors")
}

fn openssh_kexinit() -> Vec<u8> {
    let v = vectors("hassh_vectors.json");
    let lists: Vec<&str> = v["vectors"][0]["client_kexinit_namelists"]
        .as_array()
        .expect("client_kexinit_namelists")
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let mut p = vec![20u8];
    p.extend_from_slice(&[7; 16]);
    for l in &lists {
        p.extend_from_slice(&(l.len() as u32).to_be_bytes());
        p.extend_from_slice(l.as_bytes());
    }
    p.extend_from_slice(&[0; 5]);
    let pad = 8 - (p.len() + 5) % 8 + 8;
    let mut s = b"SSH-2.0-OpenSSH_7.6p1 Ubuntu-4ubuntu0.5\r\n".to_vec();
    s.extend_from_slice(&((1 + p.len() + pad) as u32).to_be_bytes());
    s.push(pad as u8);
    s.extend_from_slice(&p);
    s.extend(std::iter::repeat_n(0u8, pad));
    s
}

fn benches(c: &mut Criterion) {
    let small = wrap_records(&firefox_512(), &[]);
    let big = wrap_records(&hellos::chrome_like_hello(), &[]);
    for (name, stream) in [("tls_512B", &small), ("tls_1.8KiB", &big)] {
        c.bench_function(&format!("{name}/ja4+ja3"), |b| {
            b.iter(|| {
                let t = fingerprint::tls_client(black_box(stream)).unwrap();
                black_box((t.ja4, t.ja3))
            })
        });
        let mut out = Vec::with_capacity(8192);
        c.bench_function(&format!("{name}/ja4+ja3+raw_strings"), |b| {
            b.iter(|| {
                let t = fingerprint::tls_client(black_box(stream)).unwrap();
                out.clear();
                t.write_ja4_r(&mut out);
                t.write_ja3_string(&mut out);
                black_box((t.ja4, t.ja3, out.len()))
            })
        });
    }
    // Breakdown on the small hello (what the set above is made of).
    let msg = &small[5..];
    c.bench_function("tls_512B/parse_only", |b| {
        b.iter(|| black_box(spip::proto::tls::ClientHello::parse(black_box(msg)).is_ok()))
    });
    let h = spip::proto::tls::ClientHello::parse(msg).unwrap();
    c.bench_function("tls_512B/ja4_only", |b| {
        b.iter(|| black_box(fingerprint::ja4::ja4(black_box(&h))))
    });
    c.bench_function("tls_512B/ja3_only", |b| {
        b.iter(|| black_box(fingerprint::ja3::ja3(black_box(&h))))
    });
    let ssh = openssh_kexinit();
    c.bench_function("ssh_openssh/hassh", |b| {
        b.iter(|| black_box(fingerprint::ssh_client(black_box(&ssh)).unwrap().hassh))
    });
    #[cfg(feature = "ja4plus")]
    {
        use spip::proto::http::{Head, parse_request_head};
        let req: &[u8] = b"GET /index.html?q=1 HTTP/1.1\r\nHost: www.example.com\r\n\
            User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
            Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
            Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n\
            Referer: https://www.example.com/\r\nConnection: keep-alive\r\n\
            Cookie: session=abc123; theme=dark; _ga=GA1.2.3\r\nUpgrade-Insecure-Requests: 1\r\n\
            Sec-Fetch-Dest: document\r\n\r\n";
        c.bench_function("http_10_headers/parse+ja4h", |b| {
            b.iter(|| {
                let Head::Complete(h) = parse_request_head(black_box(req)) else {
                    unreachable!()
                };
                black_box(fingerprint::ja4h::ja4h(&h))
            })
        });
    }
    // A saved SYN (macOS-like options with EOL padding): the per-connection parse, and JA4T.
    let syn = unhex(
        "4500004000004000400600007f0000017f000001d4311f900000000100000000b002ffff00000000\
         020405b4010303060101080a000000010000000004020000",
    );
    c.bench_function("syn_macos/parse", |b| {
        b.iter(|| black_box(spip::proto::syn::parse(black_box(&syn))))
    });
    #[cfg(feature = "ja4plus")]
    c.bench_function("syn_macos/parse+ja4t", |b| {
        b.iter(|| {
            let f = spip::proto::syn::parse(black_box(&syn)).unwrap();
            black_box(fingerprint::ja4t::ja4t(f.window, &f.options))
        })
    });
}

criterion_group!(fp, benches);
criterion_main!(fp);
