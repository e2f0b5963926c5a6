#![no_main]
//! The MySQL, PostgreSQL, Redis, VNC and MongoDB responders driven like the engine drives
//! them: the first byte picks the responder (and whether it greets), the second the read
//! size; every turn's reply stays small and its record fields are valid JSON.
use libfuzzer_sys::fuzz_target;
use spip::json::JsonWriter;
use spip::protocols::{
    After, Context, Framing, Responder, Settings, TurnFields, mongodb::Mongodb, mysql::Mysql,
    postgres::Postgres, redis::Redis, vnc::Vnc,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// No reply of these responders comes near this (Redis's INFO is the largest, under 1 KiB).
const MAX_REPLY: usize = 2048;

fn drive<R: Responder>(greet: bool, read: usize, input: &[u8]) {
    let settings = Settings::default();
    let ctx = Context {
        client: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), 40000),
        server: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)), 3306),
        settings: &settings,
        random: 0x5eed,
        now: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
    };
    let _ = R::detect(input);
    let mut r = R::new(&ctx);
    let mut greeting = Vec::new();
    if greet {
        r.greeting(&ctx, &mut greeting);
        assert!(greeting.len() <= MAX_REPLY);
    }
    let mut pending: Vec<u8> = Vec::new();
    for chunk in input.chunks(read) {
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
}

fn take_turn<R: Responder>(r: &mut R, ctx: &Context<'_>, turn: &[u8]) -> After {
    let view = r.parse(turn);
    let mut reply = Vec::new();
    let after = r.reply(&view, ctx, &mut reply);
    assert!(reply.len() <= MAX_REPLY, "{} reply bytes", reply.len());
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

fuzz_target!(|data: &[u8]| {
    let [pick, read, input @ ..] = data else {
        return;
    };
    let greet = pick & 0x80 != 0;
    let read = usize::from(*read).max(1);
    match pick % 5 {
        0 => drive::<Mysql>(greet, read, input),
        1 => drive::<Postgres>(greet, read, input),
        2 => drive::<Redis>(greet, read, input),
        3 => drive::<Vnc>(greet, read, input),
        _ => drive::<Mongodb>(greet, read, input),
    }
});
