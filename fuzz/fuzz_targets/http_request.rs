#![no_main]
//! HTTP/1.x request head + JA4H.
use libfuzzer_sys::fuzz_target;
use spip::fingerprint::ja4h;
use spip::proto::http::{self, Head};

fuzz_target!(|data: &[u8]| {
    if let Head::Complete(head) = http::parse_request_head(data) {
        assert!(head.head_len <= data.len());
        let f = ja4h::ja4h(&head);
        assert!(f.as_str().len() == 51);
        let mut out = Vec::new();
        ja4h::write_ja4h_r(&head, &mut out);
        let _ = head.body_length();
        let _ = head.path_and_query();
        if let Some(h) = head.header(b"host") {
            let _ = http::split_host_port(h);
        }
        let _ = http::chunked_body_end(data.get(head.head_len..).unwrap_or_default());
    }
});
