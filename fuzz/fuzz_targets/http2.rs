#![no_main]
//! The HTTP/2 responder over a whole conversation: the input follows the client preface and is
//! delivered in reads of the size its first byte says. Every turn must be framed within the
//! pending bytes, write valid JSON, and get a bounded reply.
use libfuzzer_sys::fuzz_target;
use spip::json::JsonWriter;
use spip::protocols::http2::Http2;
use spip::protocols::{After, Context, Framing, Responder, Settings, TurnFields};

/// Our SETTINGS + WINDOW_UPDATE, 8 SETTINGS ACKs, 8 PING ACKs, one response, one GOAWAY.
const MAX_REPLY: usize = 40 + 8 * 9 + 8 * 17 + 120 + 17;

fuzz_target!(|data: &[u8]| {
    let Some((&read_size, data)) = data.split_first() else {
        return;
    };
    let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    input.extend_from_slice(data);
    let settings = Settings::default();
    let ctx = Context {
        client: "192.0.2.7:40000".parse().unwrap(),
        server: "198.51.100.2:443".parse().unwrap(),
        settings: &settings,
        random: 7,
        now: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
    };
    let mut r = Http2::new(&ctx);
    let mut pending: Vec<u8> = Vec::new();
    for chunk in input.chunks(usize::from(read_size).max(1)) {
        let mut new_from = pending.len();
        pending.extend_from_slice(chunk);
        while !pending.is_empty() {
            let Framing::Complete(len) = r.frame(&pending, new_from) else {
                break;
            };
            assert!(len >= 1 && len <= pending.len(), "Complete({len})");
            let turn: Vec<u8> = pending.drain(..len).collect();
            new_from = 0;
            if answer(&mut r, &ctx, &turn) == After::Close {
                return;
            }
        }
    }
    // The end of the input is a pause: what is pending is one turn.
    if !pending.is_empty() {
        r.frame(&pending, 0);
        answer(&mut r, &ctx, &pending);
    }
});

fn answer(r: &mut Http2, ctx: &Context<'_>, turn: &[u8]) -> After {
    let view = r.parse(turn);
    let mut out = Vec::new();
    let mut w = JsonWriter::new(&mut out);
    w.begin();
    view.write_ecs(&mut w);
    w.begin_object("spip");
    view.write_spip(&mut w);
    w.finish();
    let v: serde_json::Value = serde_json::from_slice(&out).expect("invalid JSON");
    assert!(v.is_object());
    let mut reply = Vec::new();
    let after = r.reply(&view, ctx, &mut reply);
    assert!(reply.len() <= MAX_REPLY, "reply of {} bytes", reply.len());
    after
}
