#![no_main]
//! The HTTP/2 responder over a whole conversation: the input follows the client preface and is
//! delivered in reads of the size its first byte says. Every turn must be framed within the
//! pending bytes, write valid JSON, and get a bounded reply.
use libfuzzer_sys::fuzz_target;
use spip::protocols::http2::Http2;
use spip::protocols::{Responder, Settings};

#[path = "responder_driver.rs"]
mod responder_driver;

/// Our SETTINGS + WINDOW_UPDATE, 8 SETTINGS ACKs, 8 PING ACKs, one response, one GOAWAY.
const MAX_REPLY: usize = 40 + 8 * 9 + 8 * 17 + 120 + 17;

fuzz_target!(|data: &[u8]| {
    let Some((&read_size, data)) = data.split_first() else {
        return;
    };
    let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    input.extend_from_slice(data);
    let settings = Settings::default();
    let ctx = responder_driver::context(&settings, 443);
    let mut r = Http2::new(&ctx);
    responder_driver::drive_turns(&mut r, &ctx, &input, usize::from(read_size), MAX_REPLY);
});
