//! MongoDB (client speaks first), like a MongoDB 6.0 `mongod` with authentication on: OP_MSG
//! and legacy OP_QUERY commands; `hello`/`isMaster` and `buildInfo` get plausible documents so
//! the driver goes on (to SCRAM or PLAIN authentication, whose user name is captured); SASL
//! gets `AuthenticationFailed`, `ping` gets `ok`, everything else `Unauthorized`.
//!
//! BSON is read by a small borrowed reader (documents are walked, never copied) and replies
//! are built by a small writer: the `bson` crate builds owned trees with many dependencies,
//! and spip needs only to find a few keys and to write fixed documents.

use super::{After, Context, Detection, Framing, Responder, TurnFields};
use crate::json::JsonWriter;
use std::time::UNIX_EPOCH;

pub struct Mongodb {
    phase: Phase,
}

enum Phase {
    /// Answering commands; our next reply's requestID.
    Commands { next_request_id: i32 },
    /// The server has hung up.
    Closed,
}

const OP_REPLY: i32 = 1;
const OP_QUERY: i32 = 2004;
const OP_COMPRESSED: i32 = 2012;
const OP_MSG: i32 = 2013;
/// Messages above this are left to the payload cap (mongod takes up to 48 MB, drivers send
/// commands of a few hundred bytes).
const MAX_MESSAGE: usize = 1024 * 1024;
/// MongoDB database names are at most 64 bytes: errors never echo more.
const MAX_ECHO: usize = 64;
const VERSION: &str = "6.0.13";

/// One client message.
pub struct MongoTurn<'a> {
    op: i32,
    request_id: i32,
    /// The command document (OP_MSG body, or OP_QUERY query, unwrapped from `$query`).
    command: Option<Doc<'a>>,
    /// The database: OP_MSG's `$db`, or OP_QUERY's collection name before the dot.
    database: Option<&'a [u8]>,
}

impl<'a> MongoTurn<'a> {
    fn name(&self) -> Option<&'a [u8]> {
        self.command.and_then(|d| d.iter().next()).map(|(k, _)| k)
    }

    fn is(&self, names: &[&str]) -> bool {
        self.name()
            .is_some_and(|n| names.iter().any(|m| m.as_bytes() == n))
    }

    /// The user a SASL exchange or a hello names, and the PLAIN password if any.
    fn credentials(&self) -> (Option<&'a [u8]>, Option<&'a [u8]>) {
        let Some(doc) = self.command else {
            return (None, None);
        };
        if let Some(Value::Str(mechs)) = doc.get(b"saslSupportedMechs") {
            // "<db>.<user>"
            let user = memchr::memchr(b'.', mechs).map_or(mechs, |i| &mechs[i + 1..]);
            return (Some(user), None);
        }
        let sasl = match doc.get(b"speculativeAuthenticate") {
            Some(Value::Doc(inner)) => inner,
            _ => doc,
        };
        if let Some(Value::Str(user)) = sasl.get(b"user") {
            return (Some(user), None);
        }
        let (Some(Value::Str(mechanism)), Some(Value::Binary(payload))) =
            (sasl.get(b"mechanism"), sasl.get(b"payload"))
        else {
            return (None, None);
        };
        match mechanism {
            b"PLAIN" => {
                // authzid NUL authcid NUL password
                let mut parts = payload.splitn(3, |&b| b == 0).skip(1);
                (parts.next(), parts.next())
            }
            // SCRAM client-first: gs2 header ("n,,"), then "n=<user>,r=<nonce>".
            _ => (
                payload
                    .splitn(4, |&b| b == b',')
                    .nth(2)
                    .and_then(|a| a.strip_prefix(b"n=")),
                None,
            ),
        }
    }
}

// ---- BSON, borrowed --------------------------------------------------------------------

/// A BSON document's bytes (length prefix and terminator included), checked on creation.
#[derive(Clone, Copy)]
struct Doc<'a> {
    bytes: &'a [u8],
}

/// The values spip looks into; every other type is skipped.
enum Value<'a> {
    Str(&'a [u8]),
    Doc(Doc<'a>),
    Binary(&'a [u8]),
    Other,
}

fn le32(b: &[u8]) -> Option<i32> {
    Some(i32::from_le_bytes(b.get(..4)?.try_into().ok()?))
}

impl<'a> Doc<'a> {
    /// The document at the start of `bytes`, if its length prefix fits.
    fn read(bytes: &'a [u8]) -> Option<Doc<'a>> {
        let len = usize::try_from(le32(bytes)?).ok()?;
        let bytes = bytes.get(..len).filter(|b| len >= 5 && b[len - 1] == 0)?;
        Some(Doc { bytes })
    }

    /// Elements in order; a malformed element ends the walk.
    fn iter(self) -> impl Iterator<Item = (&'a [u8], Value<'a>)> {
        let mut rest = &self.bytes[4..self.bytes.len() - 1];
        std::iter::from_fn(move || {
            let (&kind, after) = rest.split_first()?;
            let nul = memchr::memchr(0, after)?;
            let key = &after[..nul];
            let data = &after[nul + 1..];
            let (value, size) = element(kind, data)?;
            rest = data.get(size..)?;
            Some((key, value))
        })
    }

    fn get(self, key: &[u8]) -> Option<Value<'a>> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

/// An element's value and its size in bytes, by BSON type.
fn element(kind: u8, data: &[u8]) -> Option<(Value<'_>, usize)> {
    let fixed = |n: usize| (n <= data.len()).then_some((Value::Other, n));
    let prefixed = || usize::try_from(le32(data)?).ok();
    match kind {
        0x01 | 0x09 | 0x11 | 0x12 => fixed(8),
        0x07 => fixed(12),
        0x08 => fixed(1),
        0x10 => fixed(4),
        0x13 => fixed(16),
        0x06 | 0x0a | 0x7f | 0xff => fixed(0),
        0x02 | 0x0d | 0x0e => {
            let len = prefixed()?;
            let s = data.get(4..4 + len).filter(|_| len >= 1)?;
            Some((Value::Str(&s[..len - 1]), 4 + len))
        }
        0x03 | 0x04 => {
            let doc = Doc::read(data)?;
            Some((Value::Doc(doc), doc.bytes.len()))
        }
        0x05 => {
            let len = prefixed()?;
            let b = data.get(5..5 + len)?;
            Some((Value::Binary(b), 5 + len))
        }
        0x0f => fixed(prefixed()?),
        0x0b => {
            let a = memchr::memchr(0, data)?;
            let b = memchr::memchr(0, &data[a + 1..])?;
            Some((Value::Other, a + b + 2))
        }
        0x0c => {
            let len = prefixed()?;
            fixed(4 + len + 12)
        }
        _ => None,
    }
}

// ---- BSON, written -----------------------------------------------------------------------

/// Writes a document whose elements `body` appends.
fn document(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    body(out);
    out.push(0);
    let len = i32::try_from(out.len() - start).unwrap_or(i32::MAX);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

fn key(out: &mut Vec<u8>, kind: u8, key: &str) {
    out.push(kind);
    out.extend_from_slice(key.as_bytes());
    out.push(0);
}

fn double(out: &mut Vec<u8>, k: &str, v: f64) {
    key(out, 0x01, k);
    out.extend_from_slice(&v.to_le_bytes());
}

fn int32(out: &mut Vec<u8>, k: &str, v: i32) {
    key(out, 0x10, k);
    out.extend_from_slice(&v.to_le_bytes());
}

fn boolean(out: &mut Vec<u8>, k: &str, v: bool) {
    key(out, 0x08, k);
    out.push(u8::from(v));
}

/// A string made of `parts` (each cut to MAX_ECHO bytes where it comes from the client).
fn string(out: &mut Vec<u8>, k: &str, parts: &[&[u8]]) {
    key(out, 0x02, k);
    let len = parts.iter().map(|p| p.len()).sum::<usize>() + 1;
    out.extend_from_slice(&i32::try_from(len).unwrap_or(i32::MAX).to_le_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    out.push(0);
}

fn string_array(out: &mut Vec<u8>, k: &str, values: &[&str]) {
    key(out, 0x04, k);
    document(out, |a| {
        for (i, v) in INDEX.iter().zip(values) {
            string(a, i, &[v.as_bytes()]);
        }
    });
}

fn int_array(out: &mut Vec<u8>, k: &str, values: &[i32]) {
    key(out, 0x04, k);
    document(out, |a| {
        for (i, v) in INDEX.iter().zip(values) {
            int32(a, i, *v);
        }
    });
}

/// Array keys for the short arrays spip writes (longer ones would be cut).
const INDEX: [&str; 4] = ["0", "1", "2", "3"];

// ---- Replies ------------------------------------------------------------------------------

/// `localTime` is the server's clock (a BSON date: milliseconds since 1970), as mongod sends.
fn hello(out: &mut Vec<u8>, turn: &MongoTurn<'_>, connection_id: i32, local_time: i64) {
    let modern = turn.is(&["hello"]);
    let sasl = turn
        .command
        .is_some_and(|d| d.get(b"saslSupportedMechs").is_some());
    document(out, |d| {
        boolean(d, if modern { "isWritablePrimary" } else { "ismaster" }, true);
        int32(d, "maxBsonObjectSize", 16 * 1024 * 1024);
        int32(d, "maxMessageSizeBytes", 48_000_000);
        int32(d, "maxWriteBatchSize", 100_000);
        key(d, 0x09, "localTime");
        d.extend_from_slice(&local_time.to_le_bytes());
        int32(d, "logicalSessionTimeoutMinutes", 30);
        int32(d, "connectionId", connection_id);
        int32(d, "minWireVersion", 0);
        int32(d, "maxWireVersion", 17);
        boolean(d, "readOnly", false);
        if sasl {
            string_array(d, "saslSupportedMechs", &["SCRAM-SHA-1", "SCRAM-SHA-256"]);
        }
        double(d, "ok", 1.0);
    });
}

fn build_info(out: &mut Vec<u8>) {
    document(out, |d| {
        string(d, "version", &[VERSION.as_bytes()]);
        string(
            d,
            "gitVersion",
            &[b"970fdeb17a3ee9eb26c5a3fe8cd1df3aa3a0e4d9"],
        );
        string_array(d, "modules", &[]);
        string(d, "allocator", &[b"tcmalloc"]);
        string(d, "javascriptEngine", &[b"mozjs"]);
        string(d, "sysInfo", &[b"deprecated"]);
        int_array(d, "versionArray", &[6, 0, 13, 0]);
        int32(d, "bits", 64);
        boolean(d, "debug", false);
        int32(d, "maxBsonObjectSize", 16 * 1024 * 1024);
        string_array(
            d,
            "storageEngines",
            &["devnull", "ephemeralForTest", "wiredTiger"],
        );
        double(d, "ok", 1.0);
    });
}

fn failure(out: &mut Vec<u8>, message: &[&[u8]], code: i32, code_name: &str) {
    document(out, |d| {
        double(d, "ok", 0.0);
        string(d, "errmsg", message);
        int32(d, "code", code);
        string(d, "codeName", &[code_name.as_bytes()]);
    });
}

fn bounded(b: &[u8]) -> &[u8] {
    &b[..b.len().min(MAX_ECHO)]
}

/// The reply document to `turn`.
fn answer(out: &mut Vec<u8>, turn: &MongoTurn<'_>, ctx: &Context<'_>) {
    let name = turn.name().unwrap_or_default();
    if turn.is(&["hello", "isMaster", "ismaster"]) {
        let connection_id = 10 + i32::from(ctx.random_bytes::<1>(0x6964)[0]);
        let since_1970 = ctx.now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let local_time = i64::try_from(since_1970.as_millis()).unwrap_or(i64::MAX);
        hello(out, turn, connection_id, local_time);
    } else if turn.is(&["buildInfo", "buildinfo"]) {
        build_info(out);
    } else if turn.is(&["ping", "endSessions"]) {
        document(out, |d| double(d, "ok", 1.0));
    } else if turn.is(&["saslStart", "saslContinue", "authenticate"]) {
        failure(out, &[b"Authentication failed."], 18, "AuthenticationFailed");
    } else if turn.op == OP_QUERY {
        // The 3.x wording, which legacy-opcode clients (and nmap) expect.
        let db = bounded(turn.database.unwrap_or(b"admin"));
        let message: [&[u8]; 5] = [
            b"not authorized on ",
            db,
            b" to execute command { ",
            bounded(name),
            b": 1.0 }",
        ];
        failure(out, &message, 13, "Unauthorized");
    } else {
        let message: [&[u8]; 3] = [b"command ", bounded(name), b" requires authentication"];
        failure(out, &message, 13, "Unauthorized");
    }
}

impl Responder for Mongodb {
    const NAME: &'static str = "mongodb";
    const DEFAULT_PORTS: &'static [u16] = &[27017];
    type Turn<'a> = MongoTurn<'a>;

    fn new(ctx: &Context<'_>) -> Self {
        let [a, b, _, _] = ctx.random_bytes::<4>(0x006d_6f6e);
        Mongodb {
            phase: Phase::Commands {
                next_request_id: 100 + i32::from(u16::from_le_bytes([a, b])),
            },
        }
    }

    fn detect(first: &[u8]) -> Detection {
        // messageLength (16 ..= 48 MB), requestID, responseTo, opCode.
        if let Some(len) = le32(first)
            && !(16..=48_000_000).contains(&len)
        {
            return Detection::NoMatch;
        }
        match first.get(12..).and_then(le32) {
            None => Detection::NeedMore,
            Some(OP_QUERY | OP_MSG | OP_COMPRESSED) => Detection::Match,
            Some(_) => Detection::NoMatch,
        }
    }

    fn frame(&mut self, pending: &[u8], _new_from: usize) -> Framing {
        if matches!(self.phase, Phase::Closed) {
            return Framing::AtPause;
        }
        // Only the length prefix is read: no re-scan however the message arrives.
        let Some(len) = le32(pending) else {
            return Framing::NeedMore;
        };
        match usize::try_from(len) {
            Ok(len) if (16..=MAX_MESSAGE).contains(&len) => {
                if pending.len() < len {
                    Framing::NeedMore
                } else {
                    Framing::Complete(len)
                }
            }
            _ => Framing::AtPause,
        }
    }

    fn parse<'a>(&self, turn: &'a [u8]) -> MongoTurn<'a> {
        let op = turn.get(12..).and_then(le32).unwrap_or(0);
        let mut view = MongoTurn {
            op,
            request_id: turn.get(4..).and_then(le32).unwrap_or(0),
            command: None,
            database: None,
        };
        let body = turn.get(16..).unwrap_or_default();
        match op {
            OP_MSG => {
                // flagBits, then sections: kind 0 is the command body.
                let mut rest = body.get(4..).unwrap_or_default();
                while let Some((&kind, after)) = rest.split_first() {
                    let Some(size) = le32(after).and_then(|n| usize::try_from(n).ok()) else {
                        break;
                    };
                    if kind == 0 {
                        view.command = Doc::read(after);
                        break;
                    }
                    let Some(next) = after.get(size..) else {
                        break;
                    };
                    rest = next;
                }
                view.database = match view.command.and_then(|d| d.get(b"$db")) {
                    Some(Value::Str(db)) => Some(db),
                    _ => None,
                };
            }
            OP_QUERY => {
                // flags, fullCollectionName, numberToSkip, numberToReturn, query.
                let rest = body.get(4..).unwrap_or_default();
                if let Some(nul) = memchr::memchr(0, rest) {
                    let collection = &rest[..nul];
                    view.database = Some(
                        memchr::memchr(b'.', collection).map_or(collection, |i| &collection[..i]),
                    );
                    let query = rest.get(nul + 9..).and_then(Doc::read);
                    view.command = match query.and_then(|q| q.iter().next()) {
                        Some((b"$query" | b"query", Value::Doc(inner))) => Some(inner),
                        _ => query,
                    };
                }
            }
            _ => {}
        }
        view
    }

    fn reply(&mut self, turn: &MongoTurn<'_>, ctx: &Context<'_>, out: &mut Vec<u8>) -> After {
        let Phase::Commands { next_request_id } = &mut self.phase else {
            return After::Close;
        };
        if !matches!(turn.op, OP_MSG | OP_QUERY) || turn.command.is_none() {
            // Compression was never offered; anything else is no command: mongod hangs up.
            self.phase = Phase::Closed;
            return After::Close;
        }
        let request_id = *next_request_id;
        *next_request_id = next_request_id.wrapping_add(1);
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&request_id.to_le_bytes());
        out.extend_from_slice(&turn.request_id.to_le_bytes());
        if turn.op == OP_MSG {
            out.extend_from_slice(&OP_MSG.to_le_bytes());
            out.extend_from_slice(&[0; 4]); // flagBits
            out.push(0); // section kind 0: body
        } else {
            out.extend_from_slice(&OP_REPLY.to_le_bytes());
            out.extend_from_slice(&8i32.to_le_bytes()); // AwaitCapable
            out.extend_from_slice(&[0; 8]); // cursorID
            out.extend_from_slice(&[0; 4]); // startingFrom
            out.extend_from_slice(&1i32.to_le_bytes()); // numberReturned
        }
        answer(out, turn, ctx);
        let len = i32::try_from(out.len() - start).unwrap_or(i32::MAX);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        After::KeepOpen
    }
}

impl TurnFields for MongoTurn<'_> {
    fn protocol(&self) -> Option<&'static str> {
        Some("mongodb")
    }

    fn write_ecs(&self, w: &mut JsonWriter<'_>) {
        if let (Some(user), _) = self.credentials() {
            w.begin_object("user");
            w.str("name", user);
            w.end_object();
        }
    }

    fn write_spip(&self, w: &mut JsonWriter<'_>) {
        w.begin_object("mongodb");
        let op: &[u8] = match self.op {
            OP_MSG => b"msg",
            OP_QUERY => b"query",
            OP_COMPRESSED => b"compressed",
            _ => b"other",
        };
        w.str("opcode", op);
        if let Some(name) = self.name() {
            w.str("command", name);
        }
        if let Some(db) = self.database {
            w.str("database", db);
        }
        if let (_, Some(password)) = self.credentials() {
            w.str("password", password);
        }
        if let Some(doc) = self.command {
            let sasl = match doc.get(b"speculativeAuthenticate") {
                Some(Value::Doc(inner)) => inner,
                _ => doc,
            };
            if let Some(Value::Str(mechanism)) = sasl.get(b"mechanism") {
                w.str("mechanism", mechanism);
            }
            if let Some(Value::Doc(client)) = doc.get(b"client") {
                write_client(w, client);
            }
        }
        w.end_object();
    }
}

/// The driver's handshake metadata: application, driver, OS.
fn write_client(w: &mut JsonWriter<'_>, client: Doc<'_>) {
    let fields = [
        ("application_name", nested_str(client, b"application", b"name")),
        ("driver_name", nested_str(client, b"driver", b"name")),
        ("driver_version", nested_str(client, b"driver", b"version")),
        ("os_type", nested_str(client, b"os", b"type")),
    ];
    for (key, value) in fields {
        if let Some(v) = value {
            w.str(key, v);
        }
    }
    if let Some(Value::Str(platform)) = client.get(b"platform") {
        w.str("platform", platform);
    }
}

/// `doc.outer.inner` when it is a string.
fn nested_str<'a>(doc: Doc<'a>, outer: &[u8], inner: &[u8]) -> Option<&'a [u8]> {
    match doc.get(outer)? {
        Value::Doc(d) => match d.get(inner)? {
            Value::Str(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::testing::{assert_splits_agree, converse};

    fn unhex(s: &str) -> Vec<u8> {
        crate::inspect::decode_hex(s).expect("test hex")
    }

    /// pymongo 3.11 (`MongoClient("mongodb://SECRET:hunter2@host/shop?authSource=admin&appname=myapp")`):
    /// the monitor's OP_QUERY isMaster and OP_MSG heartbeat, then the application
    /// connection's isMaster (saslSupportedMechs, speculative SCRAM) and its saslStart.
    const MONITOR: [&str; 2] = [
        "2001000067458b6b00000000d40700000000000061646d696e2e24636d640000000000fffffffff90000001069736d6173746572000100000003636c69656e7400de00000003647269766572002b000000026e616d65000800000050794d6f6e676f000276657273696f6e0007000000332e31312e300000036f73005b000000027479706500060000004c696e757800026e616d6500060000004c696e7578000261726368697465637475726500070000007838365f3634000276657273696f6e0010000000362e31382e34342d66632d76383537000002706c6174666f726d001700000043507974686f6e20332e31312e322e66696e616c2e3000036170706c69636174696f6e0015000000026e616d6500060000006d7961707000000000",
        "5f00000069983c6400000000dd07000000000000004a0000001069736d6173746572000100000002246462000600000061646d696e00032472656164507265666572656e63650017000000026d6f646500080000007072696d617279000000",
    ];
    const LOGIN: [&str; 2] = [
        "2c020000c6237b3200000000d40700000000000061646d696e2e24636d640000000000ffffffff050200001069736d6173746572000100000003636c69656e7400de00000003647269766572002b000000026e616d65000800000050794d6f6e676f000276657273696f6e0007000000332e31312e300000036f73005b000000027479706500060000004c696e757800026e616d6500060000004c696e7578000261726368697465637475726500070000007838365f3634000276657273696f6e0010000000362e31382e34342d66632d76383537000002706c6174666f726d001700000043507974686f6e20332e31312e322e66696e616c2e3000036170706c69636174696f6e0015000000026e616d6500060000006d7961707000000004636f6d7072657373696f6e000500000000027361736c537570706f727465644d65636873000d00000061646d696e2e534543524554000373706563756c617469766541757468656e74696361746500bc000000107361736c53746172740001000000026d656368616e69736d000e000000534352414d2d5348412d32353600057061796c6f6164003a000000006e2c2c6e3d5345435245542c723d38705357376237466569717a596c614b714e554f7457574e63506b66737275753757587149434b376b666f3d106175746f417574686f72697a650001000000036f7074696f6e73001900000008736b6970456d70747945786368616e6765000100026462000600000061646d696e000000",
        "fa00000051dcb07400000000dd0700000000000000e5000000107361736c53746172740001000000026d656368616e69736d000e000000534352414d2d5348412d32353600057061796c6f6164003a000000006e2c2c6e3d5345435245542c723d676268564b6f454856467633695837317659306a4c31424d562f46483646636261554378394949507973673d106175746f417574686f72697a650001000000036f7074696f6e73001900000008736b6970456d70747945786368616e676500010002246462000600000061646d696e00032472656164507265666572656e63650017000000026d6f646500080000007072696d617279000000",
    ];

    /// nmap's mongodb probe (nmap-service-probes): OP_QUERY serverStatus on test.$cmd.
    const NMAP_PROBE: &[u8] = b"\x41\0\0\0\x3a\x30\0\0\xff\xff\xff\xff\xd4\x07\0\0\0\0\0\0test.$cmd\0\0\0\0\0\xff\xff\xff\xff\x1b\0\0\0\x01serverStatus\0\0\0\0\0\0\0\xf0\x3f\0";

    fn reply_doc(reply: &[u8]) -> Doc<'_> {
        let op = le32(&reply[12..]).unwrap();
        let at = if op == OP_MSG { 21 } else { 36 };
        let doc = Doc::read(&reply[at..]).unwrap();
        assert_eq!(at + doc.bytes.len(), reply.len());
        assert_eq!(le32(reply).unwrap() as usize, reply.len());
        doc
    }

    fn has(doc: Doc<'_>, key: &str) -> bool {
        doc.get(key.as_bytes()).is_some()
    }

    fn str_of<'a>(doc: Doc<'a>, key: &str) -> &'a [u8] {
        match doc.get(key.as_bytes()) {
            Some(Value::Str(s)) => s,
            _ => panic!("no string {key}"),
        }
    }

    #[test]
    fn detects_op_query_and_op_msg() {
        for m in MONITOR.iter().chain(&LOGIN) {
            assert_eq!(Mongodb::detect(&unhex(m)), Detection::Match);
        }
        assert_eq!(Mongodb::detect(NMAP_PROBE), Detection::Match);
        assert_eq!(Mongodb::detect(&unhex(MONITOR[0])[..10]), Detection::NeedMore);
        assert_eq!(Mongodb::detect(b"GET / HTTP/1.1\r\n"), Detection::NoMatch);
        assert_eq!(Mongodb::detect(b"\x20\0\0\0\0\0\0\0\0\0\0\0\x01\0\0\0"), Detection::NoMatch);
    }

    #[test]
    fn pymongo_monitor_gets_hello_documents() {
        let m: Vec<Vec<u8>> = MONITOR.iter().map(|h| unhex(h)).collect();
        let t = converse::<Mongodb>(false, &[&m[0], &m[1]]);
        assert_eq!(t.turns.len(), 2);
        let first = &t.turns[0];
        assert_eq!(le32(&first.reply[12..]), Some(OP_REPLY));
        assert_eq!(first.reply[8..12], m[0][4..8], "responseTo is the requestID");
        let doc = reply_doc(&first.reply);
        assert!(has(doc, "ismaster") && has(doc, "maxWireVersion") && !has(doc, "saslSupportedMechs"));
        // localTime: the clock, in milliseconds since 1970 (a BSON date).
        let at = first.reply.windows(11).position(|w| w == b"\x09localTime\0").unwrap() + 11;
        let local_time = i64::from_le_bytes(first.reply[at..at + 8].try_into().unwrap());
        assert_eq!(local_time, 1_700_000_000_123);
        let s = &first.spip["mongodb"];
        assert_eq!(s["opcode"], "query");
        assert_eq!(s["command"], "ismaster");
        assert_eq!(s["database"], "admin");
        assert_eq!(s["application_name"], "myapp");
        assert_eq!(s["driver_name"], "PyMongo");
        assert_eq!(s["driver_version"], "3.11.0");
        assert_eq!(s["os_type"], "Linux");
        let second = &t.turns[1];
        assert_eq!(le32(&second.reply[12..]), Some(OP_MSG));
        assert!(has(reply_doc(&second.reply), "ismaster"));
        assert_eq!(second.spip["mongodb"]["opcode"], "msg");
        assert_eq!(second.spip["mongodb"]["database"], "admin");
    }

    #[test]
    fn pymongo_login_user_is_captured_and_sasl_fails() {
        let m: Vec<Vec<u8>> = LOGIN.iter().map(|h| unhex(h)).collect();
        let t = converse::<Mongodb>(false, &[&m[0], &m[1]]);
        assert_eq!(t.turns.len(), 2);
        let hello = &t.turns[0];
        assert_eq!(hello.ecs["user"]["name"], "SECRET");
        assert_eq!(hello.spip["mongodb"]["mechanism"], "SCRAM-SHA-256");
        let doc = reply_doc(&hello.reply);
        assert!(has(doc, "saslSupportedMechs"));
        let sasl = &t.turns[1];
        assert_eq!(sasl.protocol, Some("mongodb"));
        assert_eq!(sasl.spip["mongodb"]["command"], "saslStart");
        assert_eq!(sasl.ecs["user"]["name"], "SECRET");
        assert_eq!(str_of(reply_doc(&sasl.reply), "codeName"), b"AuthenticationFailed");
        assert!(!sasl.close);
    }

    #[test]
    fn pymongo_streams_split_agree() {
        for pair in [MONITOR, LOGIN] {
            let stream: Vec<u8> = pair.iter().flat_map(|h| unhex(h)).collect();
            assert_splits_agree::<Mongodb>(false, &stream);
        }
    }

    #[test]
    fn nmap_probe_gets_the_reply_nmap_matches() {
        let t = converse::<Mongodb>(false, &[NMAP_PROBE]);
        let r = &t.turns[0].reply;
        // m|^.\0\0\0....:0\0\0\x01\0\0\0\x08\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\0\0\0.\0\0\0
        //   \x01ok\0\0\0\0\0\0\0\0\0\x02errmsg\0.\0\0\0not authorized on (\S+) to execute
        //   command \{ serverStatus: 1\.0 \}\0\x10code\0\r\0\0\0|s
        assert_eq!(r[1..4], [0, 0, 0]);
        assert_eq!(&r[8..36], b":0\0\0\x01\0\0\0\x08\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\0\0\0");
        assert_eq!(r[37..40], [0, 0, 0]);
        assert_eq!(&r[40..60], b"\x01ok\0\0\0\0\0\0\0\0\0\x02errmsg\0");
        assert_eq!(r[61..64], [0, 0, 0]);
        let rest = &r[64..];
        let want = b"not authorized on test to execute command { serverStatus: 1.0 }\0\x10code\0\r\0\0\0";
        assert_eq!(&rest[..want.len()], want);
        assert_eq!(t.turns[0].spip["mongodb"]["command"], "serverStatus");
    }

    #[test]
    fn build_info_and_other_commands() {
        let mut msg = Vec::new();
        let body = |out: &mut Vec<u8>, name: &str| {
            document(out, |d| {
                int32(d, name, 1);
                string(d, "$db", &[b"admin"]);
            })
        };
        for (name, want) in [
            ("buildInfo", None),
            ("listDatabases", Some(&b"command listDatabases requires authentication"[..])),
            ("ping", None),
        ] {
            msg.clear();
            msg.extend_from_slice(&[0; 4]);
            msg.extend_from_slice(&7i32.to_le_bytes());
            msg.extend_from_slice(&0i32.to_le_bytes());
            msg.extend_from_slice(&OP_MSG.to_le_bytes());
            msg.extend_from_slice(&[0; 5]);
            body(&mut msg, name);
            let len = (msg.len() as i32).to_le_bytes();
            msg[..4].copy_from_slice(&len);
            let t = converse::<Mongodb>(false, &[&msg]);
            let doc = reply_doc(&t.turns[0].reply);
            match want {
                Some(errmsg) => assert_eq!(str_of(doc, "errmsg"), errmsg),
                None if name == "buildInfo" => assert_eq!(str_of(doc, "version"), b"6.0.13"),
                None => assert!(has(doc, "ok")),
            }
        }
    }

    #[test]
    fn a_plain_login_gives_user_and_password() {
        let mut msg = vec![0; 16];
        msg[12..16].copy_from_slice(&OP_MSG.to_le_bytes());
        msg.extend_from_slice(&[0; 5]);
        document(&mut msg, |d| {
            int32(d, "saslStart", 1);
            string(d, "mechanism", &[b"PLAIN"]);
            key(d, 0x05, "payload");
            d.extend_from_slice(&13i32.to_le_bytes());
            d.push(0);
            d.extend_from_slice(b"\0alice\0s3cret");
            string(d, "$db", &[b"$external"]);
        });
        let len = (msg.len() as i32).to_le_bytes();
        msg[..4].copy_from_slice(&len);
        let t = converse::<Mongodb>(false, &[&msg]);
        assert_eq!(t.turns[0].ecs["user"]["name"], "alice");
        assert_eq!(t.turns[0].spip["mongodb"]["password"], "s3cret");
        assert_eq!(t.turns[0].spip["mongodb"]["database"], "$external");
    }

    #[test]
    fn every_prefix_and_garbage_is_safe_and_bounded() {
        let stream: Vec<u8> = LOGIN.iter().flat_map(|h| unhex(h)).collect();
        for n in 0..=stream.len() {
            let t = converse::<Mongodb>(false, &[&stream[..n]]);
            assert!(t.sent().len() < 1024);
        }
        let hostile: Vec<u8> = (0..65536u32).map(|i| (i * 7 + i / 251) as u8).collect();
        assert!(converse::<Mongodb>(false, &[&hostile]).sent().len() < 1024);
        // A valid header with a 64 KB command name: the echo stays bounded.
        let mut msg = vec![0; 16];
        msg[12..16].copy_from_slice(&OP_MSG.to_le_bytes());
        msg.extend_from_slice(&[0; 5]);
        let name = "x".repeat(65536);
        document(&mut msg, |d| int32(d, &name, 1));
        let len = (msg.len() as i32).to_le_bytes();
        msg[..4].copy_from_slice(&len);
        let t = converse::<Mongodb>(false, &[&msg]);
        assert!(t.sent().len() < 300, "{}", t.sent().len());
        // Deeply nested documents are not walked.
        let mut nested = vec![0; 16];
        nested[12..16].copy_from_slice(&OP_QUERY.to_le_bytes());
        nested.extend_from_slice(b"\0\0\0\0a.$cmd\0\0\0\0\0\0\0\0\0");
        for _ in 0..5000 {
            nested.extend_from_slice(b"\x03q\0");
        }
        let len = (nested.len() as i32).to_le_bytes();
        nested[..4].copy_from_slice(&len);
        assert!(converse::<Mongodb>(false, &[&nested]).sent().len() < 300);
    }
}
