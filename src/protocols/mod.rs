//! Protocol responders: one module per protocol, one line each in the registry.
//!
//! A responder answers like the real service, just far enough that the client sends its next
//! message (credentials, commands, payload URLs), and says what each client turn means as record
//! fields. It never touches a socket, a clock or a sink: the engine ([`crate::engine`]) hands it
//! bytes and writes its answers and records. The wall-clock time a reply may carry (NTLM's
//! timestamp, SMB2's SystemTime) comes in [`Context::now`], so tests pass a fixed time.
//!
//! Each module implements [`Responder`]:
//! - `detect`: does a client that speaks first look like this protocol? (from its first bytes)
//! - `greeting`: what the server says first, when the port table chose this responder;
//! - `frame`: where the current client turn ends, incrementally (never re-scanning old bytes);
//! - `parse` + `reply`: the turn's parsed view, and the answer, bounded like the real service;
//! - the view's [`TurnFields`]: what the turn's record gets (ECS fields, then `spip.<name>.*`).
//!
//! Adding a protocol is one new file plus one line in [`registry!`].

use crate::json::JsonWriter;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub mod credssp;
pub mod der;
mod line;
pub mod ntlm;
#[cfg(test)]
pub mod testing;
pub mod udp;

/// Where the client's current turn ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Not complete: wait for more bytes.
    NeedMore,
    /// The first `len` bytes (`len >= 1`) of the pending bytes are one turn; what follows
    /// belongs to the next turn.
    Complete(usize),
    /// These bytes follow no framing the protocol knows: the turn ends when the client pauses
    /// (or the payload cap or the connection's end ends it). Never one turn per read.
    AtPause,
}

/// What the connection does after a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    KeepOpen,
    /// The conversation is over (like the real service hanging up): close after sending.
    Close,
    /// Start TLS after sending (RDP's NLA, STARTTLS): the client's next bytes are a
    /// ClientHello; the engine terminates TLS (with the configured certificate, or a
    /// self-signed one) and the same responder goes on over the decrypted bytes.
    StartTls,
}

/// What a client's first bytes say about a protocol where the client speaks first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    Match,
    NoMatch,
    /// Too few bytes to tell (e.g. `b"GE"`).
    NeedMore,
}

/// Settings responders read (from the config), shared by all connections.
#[derive(Debug, Clone)]
pub struct Settings {
    /// SSH identification line we send (without CRLF).
    pub ssh_banner: String,
    /// Host name shown in banners (SMTP `220 <host> ESMTP`, FTP, POP3, IMAP, prompts).
    pub hostname: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ssh_banner: "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3".into(),
            hostname: "ubuntu".into(),
        }
    }
}

/// Facts about the connection a responder may use when it answers.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub client: SocketAddr,
    /// The original destination (the address and port the client dialled).
    pub server: SocketAddr,
    pub settings: &'a Settings,
    /// Unpredictable per connection: use it for challenges, salts, session ids (mix it with
    /// [`Context::random_bytes`] rather than inventing a generator).
    pub random: u64,
    /// The wall-clock time of this step, as the IO layer saw it (a responder never reads the
    /// system clock): for the server times a reply carries.
    pub now: SystemTime,
}

/// Seconds from 1601-01-01 (the FILETIME epoch) to 1970-01-01.
const FILETIME_UNIX_OFFSET: u64 = 11_644_473_600;

impl Context<'_> {
    /// [`Context::now`] as a Windows FILETIME: 100 ns intervals since 1601-01-01 UTC (NTLM's
    /// MsvAvTimestamp, SMB2's SystemTime). A clock before 1970 counts as 1970.
    pub fn filetime(&self) -> u64 {
        let since_unix = self
            .now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        since_unix
            .as_secs()
            .saturating_add(FILETIME_UNIX_OFFSET)
            .saturating_mul(10_000_000)
            .saturating_add(u64::from(since_unix.subsec_nanos() / 100))
    }

    /// `N` bytes derived from [`Context::random`] and `label` (stable within a connection).
    pub fn random_bytes<const N: usize>(&self, label: u64) -> [u8; N] {
        let mut out = [0u8; N];
        let mut x = self.random ^ label.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for chunk in out.chunks_mut(8) {
            // splitmix64
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
        out
    }
}

/// A protocol responder: the per-connection state of one protocol's conversation.
pub trait Responder: Sized {
    /// The name in the port table and in `network.protocol` ("ftp", "http", ...).
    const NAME: &'static str;
    /// Ports where this responder answers by default (the port table's defaults). A server
    /// that speaks first greets at accept on these ports.
    const DEFAULT_PORTS: &'static [u16] = &[];
    /// Whether a `detect` match takes a connection from the port table's responder (which may
    /// have greeted). Only for signatures no client of another protocol sends (a TLS record,
    /// `SSH-`, an HTTP request line): an SMTP client answering our `220` stays with SMTP, and
    /// an RDP probe on port 445 is SMB's to answer.
    const OVERRIDES_GREETING: bool = false;
    /// One turn's parsed view, borrowed from the turn's bytes.
    type Turn<'a>: TurnFields;

    /// The responder for a new connection (before any byte, chosen by port or detection).
    fn new(ctx: &Context<'_>) -> Self;

    /// For protocols where the client speaks first: do these first bytes look like ours?
    /// Only a few cheap byte checks; `first` is the start of the connection's first turn.
    fn detect(_first: &[u8]) -> Detection {
        Detection::NoMatch
    }

    /// What the server sends at accept when the port table chose this responder (FTP `220`,
    /// SSH banner, MySQL handshake). Nothing by default (the client speaks first).
    fn greeting(&mut self, _ctx: &Context<'_>, _out: &mut Vec<u8>) {}

    /// Where the current turn ends. `pending` is the current turn's bytes so far (never
    /// empty); the bytes before `new_from` were already passed to an earlier call for this
    /// same turn: keep what you learned from them in `self` and do not scan them again, so the
    /// work stays linear in the bytes received. After `Complete`, the next call starts a new
    /// turn with `new_from == 0`.
    fn frame(&mut self, pending: &[u8], new_from: usize) -> Framing;

    /// The parsed view of a turn: a complete one, or one cut short (at a pause, the payload
    /// cap, or the connection's end). Never panics, never allocates per field.
    fn parse<'a>(&self, turn: &'a [u8]) -> Self::Turn<'a>;

    /// Writes the answer to `turn` into `out` (bounded like the real service, never more than
    /// it would echo of the client's bytes) and moves to the next state.
    fn reply(&mut self, turn: &Self::Turn<'_>, ctx: &Context<'_>, out: &mut Vec<u8>) -> After;
}

/// What one turn adds to its record.
pub trait TurnFields {
    /// Whether `event.summary` (the payload as lossy UTF-8) is written; false where the
    /// fields already carry the payload in structured form (HTTP).
    fn summary(&self) -> bool {
        true
    }
    /// `network.protocol`; `None` when the bytes showed no protocol.
    fn protocol(&self) -> Option<&'static str>;
    /// Top-level ECS objects (`user`, `url`, `http`, `user_agent`, `ssh`, ...). Never the
    /// engine's own objects (`event`, `source`, `destination`, `network`, `tls`, `spip`).
    fn write_ecs(&self, _w: &mut JsonWriter<'_>) {}
    /// Members inside `spip` (a protocol writes its own `spip.<name>` object here).
    fn write_spip(&self, _w: &mut JsonWriter<'_>) {}
}

/// Calls a generic function on whichever responder is active (the engine's turn handling is
/// written once, generic over [`Responder`]).
pub trait Visitor {
    type Out;
    fn visit<R: Responder>(self, responder: &mut R) -> Self::Out;
}

/// What detection over all client-first responders found.
pub enum Detected {
    Found(Active),
    /// Some responder needs more bytes to tell, and none matched yet.
    Undecided,
    /// No client-first responder claims these bytes.
    Nothing,
}

/// Declares every responder, in detection order: the first whose `detect` says `Match` wins.
macro_rules! registry {
    ($($variant:ident => $module:ident :: $ty:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// The responder a connection talks to.
        pub enum Active {
            $($variant($module::$ty),)*
        }

        /// Every responder's name (what the port table accepts).
        pub const NAMES: &[&str] = &[$(<$module::$ty as Responder>::NAME,)*];

        impl Active {
            /// The responder named `name` (from the port table).
            pub fn by_name(name: &str, ctx: &Context<'_>) -> Option<Active> {
                $(if name == <$module::$ty as Responder>::NAME {
                    return Some(Active::$variant(<$module::$ty as Responder>::new(ctx)));
                })*
                None
            }

            /// The first responder whose `detect` matches `first`; with `only_unmistakable`
            /// (the port has its own responder), only those that may take a connection from it.
            pub fn detect(first: &[u8], ctx: &Context<'_>, only_unmistakable: bool) -> Detected {
                let mut undecided = false;
                $(match <$module::$ty as Responder>::detect(first) {
                    _ if only_unmistakable && !<$module::$ty as Responder>::OVERRIDES_GREETING => {}
                    Detection::Match => {
                        return Detected::Found(Active::$variant(<$module::$ty as Responder>::new(ctx)))
                    }
                    Detection::NeedMore => undecided = true,
                    Detection::NoMatch => {}
                })*
                if undecided { Detected::Undecided } else { Detected::Nothing }
            }

            /// The default port table: `(port, responder name)`.
            pub fn default_ports() -> impl Iterator<Item = (u16, &'static str)> {
                [$((
                    <$module::$ty as Responder>::DEFAULT_PORTS,
                    <$module::$ty as Responder>::NAME,
                ),)*]
                .into_iter()
                .flat_map(|(ports, name)| ports.iter().map(move |&p| (p, name)))
            }

            /// Runs `visitor` on the active responder.
            pub fn visit<V: Visitor>(&mut self, visitor: V) -> V::Out {
                match self {
                    $(Active::$variant(r) => visitor.visit(r),)*
                }
            }

            /// The active responder's name.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Active::$variant(_) => <$module::$ty as Responder>::NAME,)*
                }
            }
        }
    };
}

// One line per protocol, in detection order. `raw` (never detected) answers what nothing else
// claims: the client's IP, as Spip does.
registry! {
    Tls => tls::Tls,
    Ssh => ssh::Ssh,
    Http2 => http2::Http2,
    Http1 => http1::Http1,
    Smb => smb::Smb,
    Mssql => mssql::Mssql,
    Rdp => rdp::Rdp,
    Postgres => postgres::Postgres,
    Mongodb => mongodb::Mongodb,
    Redis => redis::Redis,
    Ftp => ftp::Ftp,
    Pop3 => pop3::Pop3,
    Imap => imap::Imap,
    Smtp => smtp::Smtp,
    Telnet => telnet::Telnet,
    // Server speaks first: chosen by port, never detected.
    Mysql => mysql::Mysql,
    Vnc => vnc::Vnc,
    Raw => raw::Raw,
}

impl Active {
    /// The responder for bytes nothing else claims.
    pub fn raw() -> Active {
        Active::Raw(raw::Raw)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{NOW_FILETIME, now, settings};
    use super::*;

    fn at(time: SystemTime) -> u64 {
        let settings = settings();
        let ctx = Context {
            client: SocketAddr::from(([192, 0, 2, 7], 40000)),
            server: SocketAddr::from(([198, 51, 100, 2], 445)),
            settings: &settings,
            random: 0,
            now: time,
        };
        ctx.filetime()
    }

    #[test]
    fn filetime_counts_100_ns_since_1601() {
        assert_eq!(at(UNIX_EPOCH), 116_444_736_000_000_000);
        assert_eq!(at(now()), NOW_FILETIME);
        // A clock before 1970 reads as 1970, never a panic.
        assert_eq!(
            at(UNIX_EPOCH - Duration::from_secs(5)),
            116_444_736_000_000_000
        );
    }
}
