//! Proves the parse + fingerprint paths do not touch the heap: a counting global allocator
//! (process-global, hence this file holds a single test).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.load(Ordering::SeqCst);
    f();
    ALLOCS.load(Ordering::SeqCst) - before
}

fn records(msg: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = msg;
    let mut i = 0;
    while !rest.is_empty() {
        let n = cuts.get(i).copied().unwrap_or(rest.len()).min(rest.len());
        let (a, b) = rest.split_at(n);
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(a.len() as u16).to_be_bytes());
        out.extend_from_slice(a);
        rest = b;
        i += 1;
    }
    out
}

/// A Chrome-like hello with GREASE, 16 extensions and a big key share.
fn chrome_like_hello() -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x5a; 32]);
    body.push(32);
    body.extend_from_slice(&[0x33; 32]);
    let ciphers: [u16; 16] = [
        0x4a4a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
        0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
    ];
    body.extend_from_slice(&((ciphers.len() * 2) as u16).to_be_bytes());
    for c in ciphers {
        body.extend_from_slice(&c.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]);
    let mut exts = Vec::new();
    let mut ext = |t: u16, d: &[u8]| {
        exts.extend_from_slice(&t.to_be_bytes());
        exts.extend_from_slice(&(d.len() as u16).to_be_bytes());
        exts.extend_from_slice(d);
    };
    ext(0x2a2a, &[]);
    ext(0x0000, b"\x00\x0e\x00\x00\x0bexample.com");
    ext(0x0017, &[]);
    ext(0xff01, &[0]);
    ext(0x000a, &[0, 8, 0x2a, 0x2a, 0x11, 0xec, 0, 0x1d, 0, 0x17]);
    ext(0x000b, &[1, 0]);
    ext(0x0023, &[]);
    ext(0x0010, b"\x00\x0c\x02h2\x08http/1.1");
    ext(0x0005, &[1, 0, 0, 0, 0]);
    ext(
        0x000d,
        &[0, 16, 4, 3, 8, 4, 4, 1, 5, 3, 8, 5, 5, 1, 8, 6, 6, 1],
    );
    ext(0x0012, &[]);
    let mut ks = vec![0x04, 0xde, 0x2a, 0x2a, 0, 1, 0, 0x11, 0xec, 0x04, 0xc0];
    ks.extend(std::iter::repeat_n(0x77, 1216));
    ks.extend_from_slice(&[0, 0x1d, 0, 32]);
    ks.extend(std::iter::repeat_n(0x66, 32));
    ext(0x0033, &ks);
    ext(0x002d, &[1, 1]);
    ext(0x002b, &[6, 0x2a, 0x2a, 3, 4, 3, 3]);
    ext(0x001b, &[2, 0, 2]);
    ext(0x44cd, &[0, 3, 2, b'h', b'2']);
    ext(0xfe0d, &[0; 186]);
    ext(0x3a3a, &[0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut msg = vec![1, 0];
    msg.extend_from_slice(&(body.len() as u16).to_be_bytes());
    msg.extend_from_slice(&body);
    msg
}

#[test]
fn parse_and_fingerprint_paths_do_not_allocate() {
    use spip::fingerprint;

    let msg = chrome_like_hello();
    assert!(msg.len() > 1700, "{}", msg.len());
    let whole = records(&msg, &[]);
    let split = records(&msg, &[300, 900]);
    let mut lists: Vec<&[u8]> = vec![
        b"curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ext-info-c",
        b"ssh-ed25519,rsa-sha2-512",
        b"chacha20-poly1305@openssh.com,aes128-ctr",
        b"chacha20-poly1305@openssh.com,aes128-ctr",
        b"umac-64-etm@openssh.com,hmac-sha2-256",
        b"umac-64-etm@openssh.com,hmac-sha2-256",
        b"none,zlib@openssh.com",
        b"none,zlib@openssh.com",
        b"",
        b"",
    ];
    let mut payload = vec![20u8];
    payload.extend_from_slice(&[9; 16]);
    for l in lists.drain(..) {
        payload.extend_from_slice(&(l.len() as u32).to_be_bytes());
        payload.extend_from_slice(l);
    }
    payload.extend_from_slice(&[0, 0, 0, 0, 0]);
    let pad = 8 - (payload.len() + 5) % 8 + 8;
    let mut ssh = b"SSH-2.0-OpenSSH_9.6\r\n".to_vec();
    ssh.extend_from_slice(&((1 + payload.len() + pad) as u32).to_be_bytes());
    ssh.push(pad as u8);
    ssh.extend_from_slice(&payload);
    ssh.extend(std::iter::repeat_n(0u8, pad));

    let http = b"GET /index.html?a=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/5.0\r\n\
        Accept: text/html\r\nAccept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, br\r\n\
        Referer: https://example.com/\r\nCookie: b=2; a=1; c=3\r\nConnection: keep-alive\r\n\
        Upgrade-Insecure-Requests: 1\r\nSec-Fetch-Mode: navigate\r\n\r\n";

    // Sinks with room reserved up front, so writing the raw strings does not grow them.
    let mut sink: Vec<u8> = Vec::with_capacity(64 * 1024);

    // Warm-up (lazy statics, if any, are not per-call costs).
    let _ = fingerprint::tls_client(&whole);

    for stream in [&whole, &split] {
        let n = allocations(|| {
            let c = fingerprint::tls_client(stream).expect("hello");
            std::hint::black_box(c.ja4);
            std::hint::black_box(c.ja3);
            c.with_hello(|h| {
                std::hint::black_box(h.server_name());
                std::hint::black_box(h.alpn().count());
            });
            sink.clear();
            c.write_ja4_r(&mut sink);
            c.write_ja3_string(&mut sink);
        });
        assert_eq!(n, 0, "TLS path allocated {n} times");
    }

    let n = allocations(|| {
        let c = fingerprint::ssh_client(&ssh).expect("ssh");
        std::hint::black_box(c.hassh.expect("hassh"));
        sink.clear();
        c.write_hassh_algorithms(&mut sink);
    });
    assert_eq!(n, 0, "SSH path allocated {n} times");

    let (a, b): (std::net::IpAddr, std::net::IpAddr) = (
        "2001:db8::1".parse().unwrap(),
        "2001:db8::2".parse().unwrap(),
    );
    let n = allocations(|| {
        let id = fingerprint::community_id::community_id_v1(0, a, 1, b, 2, 6);
        std::hint::black_box(id);
    });
    assert_eq!(n, 0, "Community ID allocated {n} times");

    let n = allocations(|| {
        let spip::proto::http::Head::Complete(head) = spip::proto::http::parse_request_head(http)
        else {
            panic!("http head")
        };
        std::hint::black_box(head.headers().count());
        #[cfg(feature = "ja4plus")]
        {
            std::hint::black_box(fingerprint::ja4h::ja4h(&head));
            sink.clear();
            fingerprint::ja4h::write_ja4h_r(&head, &mut sink);
        }
    });
    assert_eq!(n, 0, "HTTP path allocated {n} times");
}
