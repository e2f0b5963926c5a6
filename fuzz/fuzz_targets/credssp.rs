#![no_main]
//! RDP's NLA: the RDP responder driven like the engine drives it, past a Connection Request
//! that selects CredSSP, over the fuzz input as the decrypted TSRequests (the first byte is
//! the read size); and the input parsed on its own as a TSRequest. Replies stay small, record
//! fields are valid JSON, nothing panics.
use libfuzzer_sys::fuzz_target;
use spip::protocols::{After, Framing, Responder, Settings, credssp, rdp::Rdp};

#[path = "responder_driver.rs"]
mod responder_driver;

/// FreeRDP's Connection Request asking for TLS | HYBRID.
const CONNECTION_REQUEST: &[u8] = b"\x03\x00\x00\x2d\x28\xe0\x00\x00\x00\x00\x00Cookie: mstshash=rdpuser\r\n\x01\x00\x08\x00\x03\x00\x00\x00";
/// Our largest reply is the TSRequest with the CHALLENGE (under 300 bytes for `ubuntu`).
const MAX_REPLY: usize = 512;

fuzz_target!(|data: &[u8]| {
    let [read, input @ ..] = data else {
        return;
    };
    if let Ok(request) = credssp::parse(input) {
        assert!(request.nego_token.is_none_or(|t| t.len() < input.len()));
    }
    let settings = Settings::default();
    let ctx = responder_driver::context(&settings, 3389);
    let mut r = Rdp::new(&ctx);
    let Framing::Complete(len) = r.frame(CONNECTION_REQUEST, 0) else {
        panic!("the Connection Request is one turn");
    };
    assert_eq!(
        responder_driver::take_turn(&mut r, &ctx, &CONNECTION_REQUEST[..len], MAX_REPLY),
        After::StartTls
    );
    responder_driver::drive_turns(&mut r, &ctx, input, usize::from(*read), MAX_REPLY);
});
