#![no_main]
//! Saved SYN headers (IPv4/IPv6 + TCP with options) and JA4T.
use libfuzzer_sys::fuzz_target;
use spip::fingerprint::ja4t::ja4t;
use spip::proto::syn::{self, MAX_OPTION_KINDS, TcpOptions};

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = syn::parse(data) {
        assert!(f.options.kinds().len() <= MAX_OPTION_KINDS);
        assert!(matches!(f.ip_version, 4 | 6));
        let _ = ja4t(f.window, &f.options);
    }
    let o = TcpOptions::parse(data);
    assert!(o.kinds().len() <= MAX_OPTION_KINDS.min(data.len()));
    let fp = ja4t(0, &o);
    assert!(fp.as_str().is_ascii() && !fp.as_str().is_empty());
});
