//! Flood load generator for the sensor benchmark (see benches/flood/run.sh).
//!
//! Connects from many 127/8 source addresses to random ports on 127.0.0.1 (the namespace's
//! REDIRECT sends them all to the sensor) in one of three modes:
//! - `empty`: connect, then close with RST (what most scanners do);
//! - `payload`: connect, send an HTTP GET, wait for the reply, close;
//! - `hold`: open `--count` idle connections and hold them for `--hold-secs`.
//! - `tls`: connect, full rustls handshake (TLS 1.3, ALPN http/1.1, no certificate checks),
//!   one HTTP GET, read the reply to its end, close.
//!
//! Prints one JSON line: mode, attempted, completed, failed, elapsed seconds, connections/s.
//! Loopback only: refuses any destination outside 127.0.0.0/8.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

struct Args {
    mode: String,
    count: usize,
    concurrency: usize,
    hold_secs: u64,
    dest: Ipv4Addr,
    /// Distinct source addresses (127.1.0.1 ...).
    sources: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        mode: "empty".into(),
        count: 20_000,
        concurrency: 32,
        hold_secs: 10,
        dest: Ipv4Addr::LOCALHOST,
        sources: 65_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--mode" => a.mode = v(),
            "--count" => a.count = v().parse().expect("--count"),
            "--concurrency" => a.concurrency = v().parse().expect("--concurrency"),
            "--hold-secs" => a.hold_secs = v().parse().expect("--hold-secs"),
            "--dest" => a.dest = v().parse().expect("--dest"),
            "--sources" => a.sources = v().parse::<usize>().expect("--sources").clamp(1, 65_000),
            "--bench" => {} // passed by `cargo bench`
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(a.dest.is_loopback(), "loopback destinations only");
    SOURCES.store(a.sources, Ordering::Relaxed);
    a
}

/// Distinct source addresses in use (`--sources`).
static SOURCES: AtomicUsize = AtomicUsize::new(65_000);

/// Source address number `i`: spread over 127.1.0.0/16 (`--sources` of them) so that no source
/// runs out of ports unless asked to.
fn source(i: usize) -> Ipv4Addr {
    let n = (i % SOURCES.load(Ordering::Relaxed)) as u32 + 1;
    Ipv4Addr::from(0x7f01_0000 | n)
}

fn connect(i: usize, dest: Ipv4Addr) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.bind(&SockAddr::from(SocketAddrV4::new(source(i), 0)))?;
    // Any port but the sensor's own (REDIRECT sends the rest to it).
    let port = 1 + (i % 60_000) as u16;
    let port = if port == 8080 { 8081 } else { port };
    s.connect_timeout(
        &SockAddr::from(SocketAddr::V4(SocketAddrV4::new(dest, port))),
        Duration::from_secs(5),
    )?;
    Ok(s)
}

fn one(i: usize, mode: &str, dest: Ipv4Addr) -> bool {
    let Ok(s) = connect(i, dest) else {
        return false;
    };
    match mode {
        "empty" => {
            let _ = s.set_linger(Some(Duration::ZERO));
            true
        }
        "payload" => {
            let mut stream: std::net::TcpStream = s.into();
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let req = b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: flood/1\r\nConnection: close\r\n\r\n";
            if stream.write_all(req).is_err() {
                return false;
            }
            let mut buf = [0u8; 512];
            let mut got = 0;
            // The reply ends with the client's IP; wait for EOF or a complete response.
            loop {
                match stream.read(&mut buf[got..]) {
                    Ok(0) => break got > 0,
                    Ok(n) => {
                        got += n;
                        let text = &buf[..got];
                        // On ports where a server speaks first a greeting comes before it.
                        if text.windows(12).any(|w| w == b"HTTP/1.1 200")
                            && text.windows(4).any(|w| w == b"\r\n\r\n")
                            && text.ends_with(source(i).to_string().as_bytes())
                        {
                            let _ =
                                socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                            break true;
                        }
                        if got == buf.len() {
                            break false;
                        }
                    }
                    Err(_) => break false,
                }
            }
        }
        "tls" => tls_get(s),
        _ => unreachable!(),
    }
}

fn tls_client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify))
            .with_no_client_auth();
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            // Every connection is a full handshake, as a scanner's would be.
            cfg.resumption = rustls::client::Resumption::disabled();
            Arc::new(cfg)
        })
        .clone()
}

/// Full handshake, one GET, read the response until the server closes.
fn tls_get(s: Socket) -> bool {
    let mut stream: std::net::TcpStream = s.into();
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    // As curl and browsers do: the Finished and the request must not wait for a delayed ACK.
    let _ = stream.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from("bench.test").expect("name");
    let Ok(mut conn) = rustls::ClientConnection::new(tls_client_config(), name) else {
        return false;
    };
    let mut tls = rustls::Stream::new(&mut conn, &mut stream);
    let req = b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: flood/1\r\nConnection: close\r\n\r\n";
    if tls.write_all(req).is_err() {
        return false;
    }
    let mut got = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // A server that closes without close_notify still answered.
            Err(_) => break,
        }
    }
    got.starts_with(b"HTTP/1.")
}

#[derive(Debug)]
struct NoVerify;

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn main() {
    let args = parse_args();
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    if args.mode == "hold" {
        let mut held = Vec::with_capacity(args.count);
        for i in 0..args.count {
            match connect(i, args.dest) {
                Ok(s) => held.push(s),
                Err(_) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        done.store(held.len() as u64, Ordering::Relaxed);
        // Tell the script the connections are up, then hold them.
        eprintln!("HOLDING {}", held.len());
        std::thread::sleep(Duration::from_secs(args.hold_secs));
        for s in &held {
            let _ = s.set_linger(Some(Duration::ZERO));
        }
        drop(held);
    } else {
        let threads: Vec<_> = (0..args.concurrency)
            .map(|_| {
                let (next, done, failed, mode) = (
                    next.clone(),
                    done.clone(),
                    failed.clone(),
                    args.mode.clone(),
                );
                let (count, dest) = (args.count, args.dest);
                std::thread::spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            break;
                        }
                        let c = if one(i, &mode, dest) { &done } else { &failed };
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for t in threads {
            let _ = t.join();
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let completed = done.load(Ordering::Relaxed);
    println!(
        "{{\"mode\":\"{}\",\"attempted\":{},\"completed\":{},\"failed\":{},\"elapsed_s\":{:.3},\"conns_per_s\":{:.0}}}",
        args.mode,
        args.count,
        completed,
        failed.load(Ordering::Relaxed),
        elapsed,
        completed as f64 / elapsed
    );
}
