//! In-memory conversations with one responder, for the protocol modules' tests: client bytes
//! in (split as the test likes), turns, replies and record fields out. It frames exactly as
//! the engine does (incremental `frame` calls with `new_from`); the end of the input counts as
//! a client pause.
//!
//! Test code only: its parent declares it under #[cfg(test)].

use super::{After, Context, Framing, Responder, Settings, TurnFields};
use crate::json::JsonWriter;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The test client's address (replies that echo the client's IP show this one).
pub const CLIENT: &str = "192.0.2.7:40000";
/// The address the test client dialled; its port is given to [`converse_on`].
pub const SERVER_IP: &str = "198.51.100.2";

/// The wall clock every test conversation sees: 2023-11-14 22:13:20.1234567 UTC.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_700)
}

/// [`now`] as a FILETIME (100 ns since 1601), as replies carry it.
pub const NOW_FILETIME: u64 = 133_444_736_001_234_567;

/// One client turn and what it produced.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnOut {
    pub bytes: Vec<u8>,
    pub reply: Vec<u8>,
    pub protocol: Option<&'static str>,
    pub summary: bool,
    /// The top-level ECS objects the turn wrote, as one JSON object.
    pub ecs: Value,
    /// The members the turn wrote inside `spip`.
    pub spip: Value,
    /// The reply said to close.
    pub close: bool,
}

/// A whole conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// What the server sent before any client byte (the greeting).
    pub greeting: Vec<u8>,
    pub turns: Vec<TurnOut>,
    /// Bytes left unframed when the conversation closed (after a `Close`).
    pub unread: Vec<u8>,
}

impl Transcript {
    /// Everything the server sent, greeting first.
    pub fn sent(&self) -> Vec<u8> {
        let mut all = self.greeting.clone();
        for t in &self.turns {
            all.extend_from_slice(&t.reply);
        }
        all
    }
}

/// The settings every test conversation uses.
pub fn settings() -> Settings {
    Settings::default()
}

/// Talks to `R` on port 0: `greet` says whether it greets first (chosen by the port table),
/// `chunks` are the client's reads.
pub fn converse<R: Responder>(greet: bool, chunks: &[&[u8]]) -> Transcript {
    converse_on::<R>(0, greet, chunks)
}

/// Like [`converse`], with the destination port the client dialled.
pub fn converse_on<R: Responder>(port: u16, greet: bool, chunks: &[&[u8]]) -> Transcript {
    let settings = settings();
    let ctx = Context {
        client: CLIENT.parse::<SocketAddr>().unwrap(),
        server: SocketAddr::new(SERVER_IP.parse().unwrap(), port),
        settings: &settings,
        random: 0x5eed_5eed_5eed_5eed,
        now: now(),
    };
    let mut r = R::new(&ctx);
    let mut greeting = Vec::new();
    if greet {
        r.greeting(&ctx, &mut greeting);
    }
    let mut t = Transcript {
        greeting,
        turns: Vec::new(),
        unread: Vec::new(),
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut closed = false;
    for chunk in chunks {
        if closed {
            t.unread.extend_from_slice(chunk);
            continue;
        }
        let mut new_from = pending.len();
        pending.extend_from_slice(chunk);
        while !pending.is_empty() {
            match r.frame(&pending, new_from) {
                Framing::NeedMore | Framing::AtPause => break,
                Framing::Complete(len) => {
                    assert!(
                        len >= 1 && len <= pending.len(),
                        "Complete({len}) out of range"
                    );
                    let turn: Vec<u8> = pending.drain(..len).collect();
                    new_from = 0;
                    if take_turn(&mut r, &ctx, turn, &mut t) {
                        closed = true;
                        t.unread.append(&mut pending);
                        break;
                    }
                }
            }
        }
    }
    // The end of the input is a pause: what is pending is one turn, answered.
    if !closed && !pending.is_empty() {
        take_turn(&mut r, &ctx, pending, &mut t);
    }
    t
}

fn take_turn<R: Responder>(
    r: &mut R,
    ctx: &Context<'_>,
    turn: Vec<u8>,
    t: &mut Transcript,
) -> bool {
    let view = r.parse(&turn);
    let mut reply = Vec::new();
    let after = r.reply(&view, ctx, &mut reply);
    let (protocol, summary) = (view.protocol(), view.summary());
    let ecs = fields(|w| view.write_ecs(w));
    let spip = fields(|w| view.write_spip(w));
    drop(view);
    let close = after == After::Close;
    t.turns.push(TurnOut {
        bytes: turn,
        reply,
        protocol,
        summary,
        ecs,
        spip,
        close,
    });
    close
}

/// Runs a writer inside a fresh object and parses the result (asserting it is valid JSON
/// with unique keys).
pub fn fields(write: impl FnOnce(&mut JsonWriter<'_>)) -> Value {
    let mut out = Vec::new();
    let mut w = JsonWriter::new(&mut out);
    w.begin();
    write(&mut w);
    w.finish();
    assert_unique_keys(&out);
    serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("invalid JSON {e}: {}", String::from_utf8_lossy(&out)))
}

/// Panics when a JSON object in `json` has a key twice (after decoding).
pub fn assert_unique_keys(json: &[u8]) {
    use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    struct Unique;
    impl<'de> Deserialize<'de> for Unique {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Unique)
        }
    }
    impl<'de> Visitor<'de> for Unique {
        type Value = Unique;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key.clone()) {
                    return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
                }
                map.next_value::<Unique>()?;
            }
            Ok(Unique)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
            while seq.next_element::<Unique>()?.is_some() {}
            Ok(Unique)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_unit<E>(self) -> Result<Unique, E> {
            Ok(Unique)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    if let Err(e) = Unique::deserialize(&mut de) {
        panic!("{e}: {}", String::from_utf8_lossy(json));
    }
}

/// Asserts that feeding `input` split at every byte boundary (two reads), and one byte per
/// read, yields the same turns and replies as feeding it whole.
pub fn assert_splits_agree<R: Responder>(greet: bool, input: &[u8]) {
    let whole = converse::<R>(greet, &[input]);
    for cut in 1..input.len() {
        let split = converse::<R>(greet, &[&input[..cut], &input[cut..]]);
        assert_eq!(split, whole, "split at byte {cut}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(converse::<R>(greet, &bytes), whole, "one byte per read");
}
