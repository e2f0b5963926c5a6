#![no_main]
//! TLS record layer + ClientHello + JA4/JA3.
use libfuzzer_sys::fuzz_target;
use spip::fingerprint::{self, ja3, ja4};
use spip::proto::tls;

fuzz_target!(|data: &[u8]| {
    let status = tls::client_hello_status(data);
    let mut scratch = tls::HelloBuf::new();
    let msg = tls::reassemble(data, &mut scratch);
    assert_eq!(
        msg.is_some(),
        matches!(status, tls::HelloStatus::Complete { .. })
    );
    if let Some(c) = fingerprint::tls_client(data) {
        assert!(c.records_len <= data.len());
        let mut out = Vec::new();
        c.write_ja4_r(&mut out);
        c.write_ja3_string(&mut out);
        assert!(c.ja4.as_str().len() == 36);
    }
    // The bare handshake-message parser on arbitrary bytes too.
    if let Ok(h) = tls::ClientHello::parse(data) {
        let _ = ja4::ja4(&h);
        let _ = ja3::ja3(&h);
        let _ = h.server_name();
        let _ = h.alpn().count();
    }
});
