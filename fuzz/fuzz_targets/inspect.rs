#![no_main]
//! The whole `inspect` path: analysis + record fields; the output must be one valid JSON line.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    spip::inspect::inspect(data, &mut out);
    assert_eq!(out.last(), Some(&b'\n'));
    let v: serde_json::Value = serde_json::from_slice(&out).expect("inspect wrote invalid JSON");
    assert!(v.is_object());
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = spip::inspect::decode_hex(s);
    }
});
