#![no_main]
//! The MySQL, PostgreSQL, Redis, VNC and MongoDB responders driven like the engine drives
//! them: the first byte picks the responder (and whether it greets), the second the read
//! size; every turn's reply stays small and its record fields are valid JSON.
use libfuzzer_sys::fuzz_target;
use spip::protocols::{
    Responder, Settings, mongodb::Mongodb, mysql::Mysql, postgres::Postgres, redis::Redis, vnc::Vnc,
};

#[path = "responder_driver.rs"]
mod responder_driver;

/// No reply of these responders comes near this (Redis's INFO is the largest, under 1 KiB).
const MAX_REPLY: usize = 2048;

fn drive<R: Responder>(greet: bool, read: usize, input: &[u8]) {
    let settings = Settings::default();
    let ctx = responder_driver::context(&settings, 3306);
    let _ = R::detect(input);
    let mut r = R::new(&ctx);
    if greet {
        let mut greeting = Vec::new();
        r.greeting(&ctx, &mut greeting);
        assert!(greeting.len() <= MAX_REPLY);
    }
    responder_driver::drive_turns(&mut r, &ctx, input, read, MAX_REPLY);
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
