//! What the responder fuzz targets share: a fixed connection context, and the engine's way of
//! driving a responder (client bytes in reads of a given size, framed incrementally, each
//! complete turn parsed, answered and written as record fields), with the checks every
//! responder must pass: frames within the pending bytes, bounded replies, valid JSON.
use spip::json::JsonWriter;
use spip::protocols::{After, Context, Framing, Responder, Settings, TurnFields};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A connection from 192.0.2.7:40000 to 198.51.100.2:`port`, at a fixed time.
pub fn context(settings: &Settings, port: u16) -> Context<'_> {
    Context {
        client: "192.0.2.7:40000".parse().expect("address"),
        server: std::net::SocketAddr::new([198, 51, 100, 2].into(), port),
        settings,
        random: 0x5eed,
        now: at(),
    }
}

fn at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// One turn: parse, answer (at most `max_reply` bytes), and write its fields as valid JSON.
pub fn take_turn<R: Responder>(
    r: &mut R,
    ctx: &Context<'_>,
    turn: &[u8],
    max_reply: usize,
) -> After {
    let view = r.parse(turn);
    let mut reply = Vec::new();
    let after = r.reply(&view, ctx, &mut reply);
    assert!(reply.len() <= max_reply, "{} reply bytes", reply.len());
    for write in [
        &(|w: &mut JsonWriter<'_>| view.write_ecs(w)) as &dyn Fn(&mut JsonWriter<'_>),
        &|w: &mut JsonWriter<'_>| view.write_spip(w),
    ] {
        let mut json = Vec::new();
        let mut w = JsonWriter::new(&mut json);
        w.begin();
        write(&mut w);
        w.finish();
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&json) {
            panic!("invalid JSON {e}: {}", String::from_utf8_lossy(&json));
        }
    }
    after
}

/// `input` delivered in reads of `read` bytes (at least 1): every complete turn is taken as it
/// is framed; what is pending at the end is one turn, as at the client's pause.
pub fn drive_turns<R: Responder>(
    r: &mut R,
    ctx: &Context<'_>,
    input: &[u8],
    read: usize,
    max_reply: usize,
) {
    let mut pending: Vec<u8> = Vec::new();
    for chunk in input.chunks(read.max(1)) {
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
            if take_turn(r, ctx, &turn, max_reply) == After::Close {
                return;
            }
        }
    }
    if !pending.is_empty() {
        r.frame(&pending, 0);
        take_turn(r, ctx, &pending, max_reply);
    }
}
