//! The TLS benchmark's baseline: the least a TLS sensor can do per connection.
//!
//! THREADS blocking threads share one listener: accept -> rustls handshake (same provider,
//! versions and ticket setting as spip) -> read one request head -> reply the client IP ->
//! close. No records, no parsing, no timeouts, no client-certificate request.
//!
//! Usage: flood_tls_baseline PORT THREADS CERT_PEM KEY_PEM

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener};
use std::sync::Arc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, port, threads, cert, key] = &args[..] else {
        eprintln!("usage: flood_tls_baseline PORT THREADS CERT_PEM KEY_PEM");
        std::process::exit(2);
    };
    let port: u16 = port.parse().expect("PORT");
    let threads: usize = threads.parse().expect("THREADS");
    let certs = CertificateDer::pem_file_iter(cert)
        .expect("cert")
        .collect::<Result<Vec<_>, _>>()
        .expect("cert");
    let key = PrivateKeyDer::from_pem_file(key).expect("key");
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("cert/key");
    cfg.send_tls13_tickets = 0;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let cfg = Arc::new(cfg);
    let listener =
        TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))).expect("bind");
    let listener = Arc::new(listener);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (l, cfg) = (listener.clone(), cfg.clone());
            std::thread::spawn(move || {
                while let Ok((mut sock, peer)) = l.accept() {
                    let Ok(mut conn) = rustls::ServerConnection::new(cfg.clone()) else {
                        continue;
                    };
                    let _ = sock.set_nodelay(true);
                    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
                    let mut buf = [0u8; 4096];
                    let mut got = 0;
                    while got < buf.len() {
                        match tls.read(&mut buf[got..]) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got += n,
                        }
                        if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                            let ip = peer.ip().to_canonical().to_string();
                            let reply = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ip}",
                                ip.len()
                            );
                            let _ = tls.write_all(reply.as_bytes());
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    eprintln!("flood_tls_baseline: listening on {port} with {threads} threads");
    for w in workers {
        let _ = w.join();
    }
}
