//! PostgreSQL (client speaks first), like PostgreSQL 15: `N` to SSLRequest and GSSENCRequest,
//! the startup packet (user, database, application_name), `AuthenticationCleartextPassword`,
//! the client's PasswordMessage, then `FATAL 28P01 password authentication failed`.

use super::{After, Context, Detection, Framing, Responder, TurnFields};
use crate::json::JsonWriter;

pub struct Postgres {
    phase: Phase,
}

enum Phase {
    /// Waiting for the startup packet (after any number of SSL/GSS requests).
    Startup,
    /// Cleartext password requested from `user` (kept for the error message).
    Password { user: [u8; MAX_NAME], user_len: usize },
    /// The server has hung up.
    Done,
}

/// PostgreSQL's MAX_STARTUP_PACKET_LENGTH; also the bound for a password message.
const MAX_PACKET: usize = 10_000;
/// NAMEDATALEN - 1: PostgreSQL truncates user names to this, so the error echoes no more.
const MAX_NAME: usize = 63;

const PROTOCOL_3_0: u32 = 3 << 16;
const CANCEL_REQUEST: u32 = 80_877_102;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

/// The startup parameters recorded (first occurrence of each).
const KNOWN_PARAMETERS: [&str; 5] = [
    "database",
    "application_name",
    "client_encoding",
    "options",
    "replication",
];

/// One client message.
pub enum PostgresTurn<'a> {
    SslRequest,
    GssEncRequest,
    CancelRequest,
    /// A startup packet: protocol version and its NUL-terminated name/value pairs.
    Startup { version: u32, parameters: &'a [u8] },
    /// A PasswordMessage (`p`) in answer to the cleartext request.
    Password(&'a [u8]),
    /// Any other message, by type byte.
    Other(u8),
    /// Bytes that are no PostgreSQL message.
    Malformed,
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// The startup parameters as (name, value) pairs.
fn parameters(mut rest: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || {
        let end = memchr::memchr(0, rest)?;
        let name = &rest[..end];
        if name.is_empty() {
            return None;
        }
        let after = &rest[end + 1..];
        let vend = memchr::memchr(0, after)?;
        rest = &after[vend + 1..];
        Some((name, &after[..vend]))
    })
}

/// Appends an ErrorResponse with these fields (`S`, `V`, `C`, `M`, `F`, `L`, `R`), the
/// message made of `message` parts.
fn error(out: &mut Vec<u8>, code: &[u8], message: &[&[u8]], file: &[u8], line: &[u8], routine: &[u8]) {
    let start = out.len();
    out.extend_from_slice(b"E\0\0\0\0SFATAL\0VFATAL\0C");
    out.extend_from_slice(code);
    out.extend_from_slice(b"\0M");
    for part in message {
        out.extend_from_slice(part);
    }
    for (tag, value) in [(b'F', file), (b'L', line), (b'R', routine)] {
        out.push(0);
        out.push(tag);
        out.extend_from_slice(value);
    }
    out.extend_from_slice(b"\0\0");
    let len = u32::try_from(out.len() - start - 1).unwrap_or(u32::MAX);
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

impl Responder for Postgres {
    const NAME: &'static str = "postgres";
    const DEFAULT_PORTS: &'static [u16] = &[5432];
    type Turn<'a> = PostgresTurn<'a>;

    fn new(_ctx: &Context<'_>) -> Self {
        Postgres {
            phase: Phase::Startup,
        }
    }

    fn detect(first: &[u8]) -> Detection {
        // Length (8..=10000, so two zero bytes first), then a request code or version 3.0.
        let (Some(len), Some(code)) = (be32(first), first.get(4..).and_then(be32)) else {
            let plausible = first.iter().take(2).all(|&b| b == 0);
            return if plausible {
                Detection::NeedMore
            } else {
                Detection::NoMatch
            };
        };
        let len_ok = (8..=MAX_PACKET as u32).contains(&len);
        let code_ok = matches!(code, PROTOCOL_3_0 | SSL_REQUEST | GSSENC_REQUEST | CANCEL_REQUEST);
        if len_ok && code_ok {
            Detection::Match
        } else {
            Detection::NoMatch
        }
    }

    fn frame(&mut self, pending: &[u8], _new_from: usize) -> Framing {
        // Only the message header is read: no re-scan however the message arrives.
        // Startup-phase packets have no type byte and at least a code after the length.
        let (header, len, min_len) = match self.phase {
            Phase::Startup => (0, be32(pending), 8),
            Phase::Password { .. } => (1, pending.get(1..).and_then(be32), 4),
            Phase::Done => return Framing::AtPause,
        };
        let Some(len) = len else {
            return Framing::NeedMore;
        };
        let len = len as usize;
        if !(min_len..=MAX_PACKET).contains(&len) {
            return Framing::AtPause;
        }
        if pending.len() < header + len {
            return Framing::NeedMore;
        }
        Framing::Complete(header + len)
    }

    fn parse<'a>(&self, turn: &'a [u8]) -> PostgresTurn<'a> {
        match self.phase {
            Phase::Startup => {
                let (Some(len), Some(code)) = (be32(turn), turn.get(4..).and_then(be32)) else {
                    return PostgresTurn::Malformed;
                };
                if len as usize != turn.len() {
                    return PostgresTurn::Malformed;
                }
                match code {
                    SSL_REQUEST => PostgresTurn::SslRequest,
                    GSSENC_REQUEST => PostgresTurn::GssEncRequest,
                    CANCEL_REQUEST => PostgresTurn::CancelRequest,
                    version => PostgresTurn::Startup {
                        version,
                        parameters: &turn[8..],
                    },
                }
            }
            Phase::Password { .. } | Phase::Done => match turn {
                [b'p', _, _, _, _, body @ ..] => {
                    let end = memchr::memchr(0, body).unwrap_or(body.len());
                    PostgresTurn::Password(&body[..end])
                }
                [kind, _, _, _, _, ..] => PostgresTurn::Other(*kind),
                _ => PostgresTurn::Malformed,
            },
        }
    }

    fn reply(&mut self, turn: &PostgresTurn<'_>, _ctx: &Context<'_>, out: &mut Vec<u8>) -> After {
        let phase = std::mem::replace(&mut self.phase, Phase::Done);
        match (phase, turn) {
            (Phase::Startup, PostgresTurn::SslRequest | PostgresTurn::GssEncRequest) => {
                out.push(b'N');
                self.phase = Phase::Startup;
                After::KeepOpen
            }
            (Phase::Startup, PostgresTurn::Startup { version, parameters }) => {
                if *version != PROTOCOL_3_0 {
                    let mut text = [0u8; VERSION_TEXT];
                    let n = version_text(&mut text, *version);
                    error(
                        out,
                        b"0A000",
                        &[
                            b"unsupported frontend protocol ",
                            &text[..n],
                            b": server supports 3.0 to 3.0",
                        ],
                        b"postmaster.c",
                        b"2194",
                        b"ProcessStartupPacket",
                    );
                    return After::Close;
                }
                let user = self::parameters(parameters).find(|(k, _)| *k == b"user");
                let Some((_, name)) = user.filter(|(_, v)| !v.is_empty()) else {
                    error(
                        out,
                        b"28000",
                        &[b"no PostgreSQL user name specified in startup packet"],
                        b"postmaster.c",
                        b"2260",
                        b"ProcessStartupPacket",
                    );
                    return After::Close;
                };
                let mut user = [0u8; MAX_NAME];
                let user_len = name.len().min(MAX_NAME);
                user[..user_len].copy_from_slice(&name[..user_len]);
                self.phase = Phase::Password { user, user_len };
                // AuthenticationCleartextPassword
                out.extend_from_slice(b"R\0\0\0\x08\0\0\0\x03");
                After::KeepOpen
            }
            (Phase::Password { user, user_len }, PostgresTurn::Password(_)) => {
                error(
                    out,
                    b"28P01",
                    &[
                        b"password authentication failed for user \"",
                        &user[..user_len],
                        b"\"",
                    ],
                    b"auth.c",
                    b"323",
                    b"auth_failed",
                );
                After::Close
            }
            // A cancel request, a malformed startup packet, a Terminate or anything else:
            // PostgreSQL hangs up without a word.
            _ => After::Close,
        }
    }
}

/// "65535.65535" at most.
const VERSION_TEXT: usize = 11;

/// A protocol version as PostgreSQL prints it ("3.0"), into `out`; its length.
fn version_text(out: &mut [u8; VERSION_TEXT], version: u32) -> usize {
    use std::io::Write;
    let mut w = &mut out[..];
    // ok to ignore: two u16 and a dot always fit in VERSION_TEXT bytes.
    let _ = write!(w, "{}.{}", version >> 16, version & 0xffff);
    VERSION_TEXT - w.len()
}

impl TurnFields for PostgresTurn<'_> {
    fn protocol(&self) -> Option<&'static str> {
        match self {
            PostgresTurn::Malformed => None,
            _ => Some("postgresql"),
        }
    }

    fn write_ecs(&self, w: &mut JsonWriter<'_>) {
        if let PostgresTurn::Startup { parameters, .. } = self
            && let Some((_, user)) = self::parameters(parameters).find(|(k, _)| *k == b"user")
        {
            w.begin_object("user");
            w.str("name", user);
            w.end_object();
        }
    }

    fn write_spip(&self, w: &mut JsonWriter<'_>) {
        w.begin_object("postgres");
        match self {
            PostgresTurn::SslRequest => w.str("message", b"ssl_request"),
            PostgresTurn::GssEncRequest => w.str("message", b"gssenc_request"),
            PostgresTurn::CancelRequest => w.str("message", b"cancel_request"),
            PostgresTurn::Startup {
                version,
                parameters,
            } => {
                w.str("message", b"startup");
                let mut text = [0u8; VERSION_TEXT];
                let n = version_text(&mut text, *version);
                w.str("protocol_version", &text[..n]);
                let mut seen = 0u8;
                for (name, value) in self::parameters(parameters) {
                    if let Some(i) = KNOWN_PARAMETERS.iter().position(|k| k.as_bytes() == name)
                        && seen & (1 << i) == 0
                    {
                        seen |= 1 << i;
                        w.str(KNOWN_PARAMETERS[i], value);
                    }
                }
            }
            PostgresTurn::Password(password) => {
                w.str("message", b"password");
                w.str("password", password);
            }
            PostgresTurn::Other(kind) => {
                w.str("message", b"other");
                w.str("type", &[*kind]);
            }
            PostgresTurn::Malformed => w.str("message", b"malformed"),
        }
        w.end_object();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::testing::{assert_splits_agree, converse};

    fn unhex(s: &str) -> Vec<u8> {
        crate::inspect::decode_hex(s).expect("test hex")
    }

    /// `PGPASSWORD=hunter2 PGAPPNAME=myapp psql -h 127.0.0.1 -U SECRET -d shop` (psql 15.18):
    /// SSLRequest, then (after `N`) the startup packet, then (after the cleartext request)
    /// the password.
    const PSQL: [&str; 3] = [
        "0000000804d2162f",
        "0000003a0003000075736572005345435245540064617461626173650073686f70006170706c69636174696f6e5f6e616d65006d796170700000",
        "700000000c68756e7465723200",
    ];

    fn psql_stream() -> Vec<u8> {
        PSQL.iter().flat_map(|h| unhex(h)).collect()
    }

    #[test]
    fn detects_startup_ssl_and_gss_requests_only() {
        for h in PSQL.iter().take(2) {
            assert_eq!(Postgres::detect(&unhex(h)), Detection::Match);
        }
        assert_eq!(
            Postgres::detect(&unhex("0000000804d21630")),
            Detection::Match
        );
        assert_eq!(Postgres::detect(b"\0\0\0"), Detection::NeedMore);
        assert_eq!(Postgres::detect(b"GET / HTTP/1.1\r\n"), Detection::NoMatch);
        assert_eq!(Postgres::detect(b"\0\0\0\x08\0\0\0\0"), Detection::NoMatch);
    }

    #[test]
    fn psql_conversation_captures_user_database_and_password() {
        let chunks: Vec<Vec<u8>> = PSQL.iter().map(|h| unhex(h)).collect();
        let refs: Vec<&[u8]> = chunks.iter().map(|c| &c[..]).collect();
        let t = converse::<Postgres>(false, &refs);
        assert_eq!(t.turns.len(), 3);
        assert_eq!(t.turns[0].reply, b"N");
        assert_eq!(t.turns[0].spip["postgres"]["message"], "ssl_request");
        let startup = &t.turns[1];
        assert_eq!(startup.reply, b"R\0\0\0\x08\0\0\0\x03");
        assert_eq!(startup.ecs["user"]["name"], "SECRET");
        let pg = &startup.spip["postgres"];
        assert_eq!(pg["message"], "startup");
        assert_eq!(pg["protocol_version"], "3.0");
        assert_eq!(pg["database"], "shop");
        assert_eq!(pg["application_name"], "myapp");
        let password = &t.turns[2];
        assert_eq!(password.spip["postgres"]["password"], "hunter2");
        assert!(password.close);
        let want = b"E\0\0\0\x66SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user \"SECRET\"\0Fauth.c\0L323\0Rauth_failed\0\0";
        assert_eq!(password.reply, want);
        assert_eq!(password.protocol, Some("postgresql"));
    }

    #[test]
    fn psql_stream_splits_agree() {
        assert_splits_agree::<Postgres>(false, &psql_stream());
    }

    #[test]
    fn old_protocol_and_missing_user_get_postgres_15_errors() {
        // nmap's SMBProgNeg probe starts like a startup packet of version 65363.19778.
        let mut smb = vec![0, 0, 0, 0xa4, 0xff, b'S', b'M', b'B'];
        smb.resize(0xa4, 0);
        let t = converse::<Postgres>(false, &[&smb]);
        let r = &t.turns[0].reply;
        assert!(t.turns[0].close);
        assert!(r.starts_with(b"E"));
        let text = String::from_utf8_lossy(r);
        assert!(text.contains("SFATAL\0VFATAL\0C0A000\0Munsupported frontend protocol 65363.19778: server supports 3.0 to 3.0\0Fpostmaster.c\0L2194\0RProcessStartupPacket\0\0"), "{text}");
        let t = converse::<Postgres>(false, &[b"\0\0\0\x09\0\x03\0\0\0"]);
        assert!(String::from_utf8_lossy(&t.turns[0].reply).contains("C28000"));
    }

    #[test]
    fn echoed_user_is_truncated_like_postgres() {
        let mut startup = vec![0, 0, 0, 0, 0, 3, 0, 0];
        startup.extend_from_slice(b"user\0");
        startup.extend_from_slice(&[b'x'; 5000]);
        startup.extend_from_slice(b"\0\0");
        let len = (startup.len() as u32).to_be_bytes();
        startup[..4].copy_from_slice(&len);
        let t = converse::<Postgres>(false, &[&startup, b"p\0\0\0\x06a\0"]);
        assert_eq!(t.turns.len(), 2);
        assert!(t.turns[1].reply.len() < 200);
    }

    #[test]
    fn every_prefix_and_garbage_is_safe_and_bounded() {
        let stream = psql_stream();
        for n in 0..=stream.len() {
            let t = converse::<Postgres>(false, &[&stream[..n]]);
            assert!(t.sent().len() < 200);
        }
        let hostile: Vec<u8> = (0..65536u32).map(|i| (i * 7 + i / 251) as u8).collect();
        assert!(converse::<Postgres>(false, &[&hostile]).sent().len() < 200);
        let mut after_startup = unhex(PSQL[1]);
        after_startup.extend_from_slice(&[b'p'; 65536]);
        assert!(converse::<Postgres>(false, &[&after_startup]).sent().len() < 200);
    }
}
