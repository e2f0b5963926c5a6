#![no_main]
//! NTLM messages (bare or inside an SPNEGO blob): parse, record fields as JSON, hashcat line.
use libfuzzer_sys::fuzz_target;
use spip::json::JsonWriter;
use spip::protocols::ntlm::{self, Message};

fuzz_target!(|data: &[u8]| {
    let Some(at) = ntlm::find(data) else {
        return;
    };
    let Ok(msg) = ntlm::parse(&data[at..]) else {
        return;
    };
    let mut out = Vec::new();
    let mut w = JsonWriter::new(&mut out);
    w.begin();
    if let Message::Authenticate(a) = &msg {
        a.write_ecs(&mut w);
    }
    ntlm::write_spip(&msg, Some(&[0x11; 8]), &mut w);
    w.finish();
    let value: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
    assert!(value.is_object());
    // Linear in the message: fields may overlap, but each is written at most twice, and a
    // byte grows at most sixfold (a control character as \u00XX).
    assert!(out.len() <= 512 + 40 * data.len());
});
