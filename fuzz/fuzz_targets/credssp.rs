#![no_main]
//! RDP's NLA: the RDP responder driven like the engine drives it, past a Connection Request
//! that selects CredSSP, over the fuzz input as the decrypted TSRequests (the first byte is
//! the read size); and the input parsed on its own as a TSRequest. Replies stay small, record
//! fields are valid JSON, nothing panics.
use libfuzzer_sys::fuzz_target;
use spip::json::JsonWriter;
use spip::protocols::{
    After, Context, Framing, Responder, Settings, TurnFields, credssp, rdp::Rdp,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// FreeRDP's Connection Request asking for TLS | HYBRID.
const CONNECTION_REQUEST: &[u8] = b"\x03\x00\x00\x2d\x28\xe0\x00\x00\x00\x00\x00Cookie: mstshash=rdpuser\r\n\x01\x00\x08\x00\x03\x00\x00\x00";
/// Our largest reply is the TSRequest with the CHALLENGE (under 300 bytes for `ubuntu`).
const MAX_REPLY: usize = 512;

fn take_turn(r: &mut Rdp, ctx: &Context<'_>, turn: &[u8]) -> After {
    let view = r.parse(turn);
    let mut reply = Vec::new();
    let after = r.reply(&view, ctx, &mut reply);
    assert!(reply.len() <= MAX_REPLY, "{} reply bytes", reply.len());
    let mut json = Vec::new();
    let mut w = JsonWriter::new(&mut json);
    w.begin();
    view.write_ecs(&mut w);
    view.write_spip(&mut w);
    w.finish();
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&json) {
        panic!("invalid JSON {e}: {}", String::from_utf8_lossy(&json));
    }
    after
}

fuzz_target!(|data: &[u8]| {
    let [read, input @ ..] = data else {
        return;
    };
    if let Ok(request) = credssp::parse(input) {
        assert!(request.nego_token.is_none_or(|t| t.len() < input.len()));
    }
    let settings = Settings::default();
    let ctx = Context {
        client: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), 40000),
        server: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)), 3389),
        settings: &settings,
        random: 0x5eed,
        now: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
    };
    let mut r = Rdp::new(&ctx);
    let Framing::Complete(len) = r.frame(CONNECTION_REQUEST, 0) else {
        panic!("the Connection Request is one turn");
    };
    assert_eq!(
        take_turn(&mut r, &ctx, &CONNECTION_REQUEST[..len]),
        After::StartTls
    );
    let mut pending: Vec<u8> = Vec::new();
    for chunk in input.chunks(usize::from(*read).max(1)) {
        let mut new_from = pending.len();
        pending.extend_from_slice(chunk);
        while !pending.is_empty() {
            let Framing::Complete(len) = r.frame(&pending, new_from) else {
                break;
            };
            assert!(
                len >= 1 && len <= pending.len(),
                "Complete({len}) out of range"
            );
            let turn: Vec<u8> = pending.drain(..len).collect();
            new_from = 0;
            if take_turn(&mut r, &ctx, &turn) == After::Close {
                return;
            }
        }
    }
    if !pending.is_empty() {
        take_turn(&mut r, &ctx, &pending);
    }
});
