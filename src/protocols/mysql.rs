//! MySQL (server speaks first): a MySQL 8.0 initial handshake (protocol v10), the client's
//! login packet (HandshakeResponse41: user, auth plugin and response, database, connection
//! attributes), then `ERROR 1045 (28000) Access denied` like MySQL 8.0.36.
//!
//! The handshake offers `mysql_native_password`: every client and scanner (libmariadb,
//! libmysqlclient, Go/Python drivers, nmap, hydra) answers it with its login packet at once,
//! with no TLS or RSA exchange first (`caching_sha2_password` needs one of them for a full
//! authentication, and some scanners lack it). CLIENT_SSL is not offered, so clients log in in
//! clear; an SSL request sent anyway gets what such a server answers: `Bad handshake`.

use super::{After, Context, Framing, Responder, TurnFields};
use crate::json::JsonWriter;
use crate::record::format_ip;

pub struct Mysql {
    phase: Phase,
}

enum Phase {
    /// Handshake sent (or due): waiting for the login packet.
    AwaitingLogin { salt: [u8; 20] },
    /// The login was refused; the server hangs up.
    Refused,
}

const SERVER_VERSION: &[u8] = b"8.0.36";
const NATIVE_PASSWORD: &[u8] = b"mysql_native_password";
/// A login packet with attributes is a few hundred bytes; a declared length above this is not
/// a login packet.
const MAX_PACKET: usize = 16 * 1024;
/// MySQL user names are at most 32 characters: the error never echoes more.
const MAX_ECHOED_USER: usize = 32;

// Capability flags (include/mysql_com.h).
const CLIENT_CONNECT_WITH_DB: u32 = 0x8;
const CLIENT_COMPRESS: u32 = 0x20;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_SSL: u32 = 0x800;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_PLUGIN_AUTH: u32 = 0x8_0000;
const CLIENT_CONNECT_ATTRS: u32 = 0x10_0000;
const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 0x20_0000;
/// What MySQL 8.0 offers, less compression and TLS.
const SERVER_CAPABILITIES: u32 = 0x01ff_ffff & !CLIENT_COMPRESS & !CLIENT_SSL;

/// The connection attributes recorded, by name (the first occurrence of each).
const KNOWN_ATTRIBUTES: [&str; 8] = [
    "_client_name",
    "_client_version",
    "_os",
    "_platform",
    "_pid",
    "_thread",
    "program_name",
    "_server_host",
];

/// One client packet.
pub struct MysqlTurn<'a> {
    /// The sequence id of the client's packet (the reply takes the next one).
    seq: u8,
    packet: Packet<'a>,
    /// The salt the handshake sent (with the auth response, what a cracker needs).
    salt: Option<[u8; 20]>,
}

enum Packet<'a> {
    Login(Login<'a>),
    /// A 32-byte login packet header with CLIENT_SSL: the client asks for TLS.
    SslRequest { capabilities: u32 },
    /// Not a login packet (or cut short).
    Malformed,
}

struct Login<'a> {
    capabilities: u32,
    charset: u8,
    user: &'a [u8],
    auth_response: &'a [u8],
    database: Option<&'a [u8]>,
    plugin: Option<&'a [u8]>,
    /// The connection attributes block (length-encoded key/value pairs), read when written.
    attributes: &'a [u8],
}

/// A bounds-checked reader over one packet's payload.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A NUL-terminated string (or the rest, when the NUL is missing).
    fn cstr(&mut self) -> &'a [u8] {
        let end = memchr::memchr(0, self.rest).unwrap_or(self.rest.len());
        let s = &self.rest[..end];
        self.rest = self.rest.get(end + 1..).unwrap_or_default();
        s
    }

    /// A length-encoded integer.
    fn lenenc(&mut self) -> Option<u64> {
        let width = match self.u8()? {
            b @ 0..=0xfa => return Some(u64::from(b)),
            0xfc => 2,
            0xfd => 3,
            0xfe => 8,
            _ => return None,
        };
        let bytes = self.take(width)?;
        Some(
            bytes
                .iter()
                .rev()
                .fold(0u64, |v, &b| (v << 8) | u64::from(b)),
        )
    }

    fn lenenc_bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.lenenc()?).ok()?;
        self.take(n)
    }
}

fn parse_login(payload: &[u8]) -> Packet<'_> {
    let mut r = Reader { rest: payload };
    let Some(capabilities) = r.u32() else {
        return Packet::Malformed;
    };
    if capabilities & CLIENT_PROTOCOL_41 == 0 {
        // HandshakeResponse320: 2-byte capabilities, 3-byte max packet, then the user.
        let Some(_) = r.take(1) else {
            return Packet::Malformed;
        };
        let user = r.cstr();
        return Packet::Login(Login {
            capabilities: capabilities & 0xffff,
            charset: 0,
            user,
            auth_response: r.cstr(),
            database: None,
            plugin: None,
            attributes: &[],
        });
    }
    // max packet size, charset, 23 reserved bytes
    let (Some(_), Some(charset), Some(_)) = (r.take(4), r.u8(), r.take(23)) else {
        return Packet::Malformed;
    };
    if r.rest.is_empty() && capabilities & CLIENT_SSL != 0 {
        return Packet::SslRequest { capabilities };
    }
    let user = r.cstr();
    let auth_response = if capabilities & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
        r.lenenc_bytes()
    } else if capabilities & CLIENT_SECURE_CONNECTION != 0 {
        r.u8().and_then(|n| r.take(usize::from(n)))
    } else {
        Some(r.cstr())
    };
    let mut login = Login {
        capabilities,
        charset,
        user,
        auth_response: auth_response.unwrap_or_default(),
        database: None,
        plugin: None,
        attributes: &[],
    };
    if auth_response.is_none() {
        return Packet::Login(login);
    }
    if capabilities & CLIENT_CONNECT_WITH_DB != 0 && !r.rest.is_empty() {
        login.database = Some(r.cstr());
    }
    if capabilities & CLIENT_PLUGIN_AUTH != 0 && !r.rest.is_empty() {
        login.plugin = Some(r.cstr());
    }
    if capabilities & CLIENT_CONNECT_ATTRS != 0 {
        login.attributes = r.lenenc_bytes().unwrap_or(r.rest);
    }
    Packet::Login(login)
}

/// Appends one packet: 3-byte length, sequence id, payload (written by `body`).
fn packet(out: &mut Vec<u8>, seq: u8, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, seq]);
    body(out);
    let len = (out.len() - start - 4).to_le_bytes();
    out[start..start + 3].copy_from_slice(&len[..3]);
}

fn error(out: &mut Vec<u8>, seq: u8, code: u16, state: &[u8; 5], message: &[&[u8]]) {
    packet(out, seq, |p| {
        p.push(0xff);
        p.extend_from_slice(&code.to_le_bytes());
        p.push(b'#');
        p.extend_from_slice(state);
        for part in message {
            p.extend_from_slice(part);
        }
    });
}

impl Responder for Mysql {
    const NAME: &'static str = "mysql";
    const DEFAULT_PORTS: &'static [u16] = &[3306];
    type Turn<'a> = MysqlTurn<'a>;

    fn new(ctx: &Context<'_>) -> Self {
        // MySQL's scramble is printable ASCII without NUL or '$'.
        let salt = ctx.random_bytes::<20>(0x006d_7973_716c).map(|b| match b & 0x7f {
            0 | b'$' => b'a',
            c => c,
        });
        Mysql {
            phase: Phase::AwaitingLogin { salt },
        }
    }

    fn greeting(&mut self, ctx: &Context<'_>, out: &mut Vec<u8>) {
        let Phase::AwaitingLogin { salt } = &self.phase else {
            return;
        };
        // Connection ids count up from a small number on a real server.
        let id = 8 + u32::from_le_bytes(ctx.random_bytes::<4>(0x6964)) % 40_000;
        packet(out, 0, |p| {
            p.push(10);
            p.extend_from_slice(SERVER_VERSION);
            p.push(0);
            p.extend_from_slice(&id.to_le_bytes());
            p.extend_from_slice(&salt[..8]);
            p.push(0);
            p.extend_from_slice(&SERVER_CAPABILITIES.to_le_bytes()[..2]);
            p.push(0xff); // utf8mb4_0900_ai_ci
            p.extend_from_slice(&2u16.to_le_bytes()); // SERVER_STATUS_AUTOCOMMIT
            p.extend_from_slice(&SERVER_CAPABILITIES.to_le_bytes()[2..]);
            p.push(21);
            p.extend_from_slice(&[0; 10]);
            p.extend_from_slice(&salt[8..]);
            p.push(0);
            p.extend_from_slice(NATIVE_PASSWORD);
            p.push(0);
        });
    }

    fn frame(&mut self, pending: &[u8], _new_from: usize) -> Framing {
        // Only the 4-byte header is read: no re-scan however the packet arrives.
        let [a, b, c, _seq, ..] = *pending else {
            return Framing::NeedMore;
        };
        let len = usize::from(a) | usize::from(b) << 8 | usize::from(c) << 16;
        if len == 0 || len > MAX_PACKET {
            return Framing::AtPause;
        }
        if pending.len() < 4 + len {
            return Framing::NeedMore;
        }
        Framing::Complete(4 + len)
    }

    fn parse<'a>(&self, turn: &'a [u8]) -> MysqlTurn<'a> {
        let salt = match &self.phase {
            Phase::AwaitingLogin { salt } => Some(*salt),
            Phase::Refused => None,
        };
        let (seq, payload) = match turn {
            [_, _, _, seq, payload @ ..] => (*seq, payload),
            _ => (0, &[][..]),
        };
        MysqlTurn {
            seq,
            packet: parse_login(payload),
            salt,
        }
    }

    fn reply(&mut self, turn: &MysqlTurn<'_>, ctx: &Context<'_>, out: &mut Vec<u8>) -> After {
        if matches!(self.phase, Phase::Refused) {
            return After::Close;
        }
        self.phase = Phase::Refused;
        let seq = turn.seq.wrapping_add(1);
        match &turn.packet {
            Packet::Login(login) => {
                let mut ip = [0u8; 46];
                let n = format_ip(&mut ip, ctx.client.ip());
                let user = &login.user[..login.user.len().min(MAX_ECHOED_USER)];
                let using = if login.auth_response.is_empty() {
                    &b"NO"[..]
                } else {
                    b"YES"
                };
                error(
                    out,
                    seq,
                    1045,
                    b"28000",
                    &[
                        b"Access denied for user '",
                        user,
                        b"'@'",
                        &ip[..n],
                        b"' (using password: ",
                        using,
                        b")",
                    ],
                );
            }
            Packet::SslRequest { .. } | Packet::Malformed => {
                error(out, seq, 1043, b"08S01", &[b"Bad handshake"]);
            }
        }
        After::Close
    }
}

impl TurnFields for MysqlTurn<'_> {
    fn protocol(&self) -> Option<&'static str> {
        Some("mysql")
    }

    fn write_ecs(&self, w: &mut JsonWriter<'_>) {
        if let Packet::Login(login) = &self.packet
            && !login.user.is_empty()
        {
            w.begin_object("user");
            w.str("name", login.user);
            w.end_object();
        }
    }

    fn write_spip(&self, w: &mut JsonWriter<'_>) {
        w.begin_object("mysql");
        match &self.packet {
            Packet::Login(login) => {
                w.str("packet", b"login");
                w.u64("capabilities", u64::from(login.capabilities));
                w.u64("charset", u64::from(login.charset));
                if let Some(plugin) = login.plugin {
                    w.str("auth_plugin", plugin);
                }
                w.hex("auth_response", login.auth_response);
                if let Some(salt) = &self.salt {
                    w.hex("salt", salt);
                }
                if let Some(db) = login.database {
                    w.str("database", db);
                }
                write_attributes(w, login.attributes);
            }
            Packet::SslRequest { capabilities } => {
                w.str("packet", b"ssl_request");
                w.u64("capabilities", u64::from(*capabilities));
            }
            Packet::Malformed => w.str("packet", b"malformed"),
        }
        w.end_object();
    }
}

/// The known connection attributes as `attributes.<name>` (first occurrence of each, so keys
/// stay unique), and how many attributes the client sent.
fn write_attributes(w: &mut JsonWriter<'_>, block: &[u8]) {
    if block.is_empty() {
        return;
    }
    let mut r = Reader { rest: block };
    let mut seen = 0u16;
    let mut count = 0u64;
    w.begin_object("attributes");
    while let (Some(key), Some(value)) = (r.lenenc_bytes(), r.lenenc_bytes()) {
        count += 1;
        if let Some(i) = KNOWN_ATTRIBUTES.iter().position(|k| k.as_bytes() == key)
            && seen & (1 << i) == 0
        {
            seen |= 1 << i;
            w.str(KNOWN_ATTRIBUTES[i], value);
        }
    }
    w.end_object();
    w.u64("attribute_count", count);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::testing::{assert_splits_agree, converse};

    /// `mariadb -h 127.0.0.1 -u SECRET -phunter2 -D shop` (MariaDB 10.11 client, libmariadb
    /// 3.3.20) answering a handshake whose salt is `abcdefghijklmnopqrst`.
    const MARIADB_LOGIN: &str = "d70000018da2bf00000010002100000000000000000000000000000000000000000000005345435245540014fb30830c3ec1c2161c75ef8c45977d684a38d8d473686f70006d7973716c5f6e61746976655f70617373776f7264007f035f6f73054c696e75780c5f636c69656e745f6e616d650a6c69626d617269616462045f7069640532333639360f5f636c69656e745f76657273696f6e06332e332e3230095f706c6174666f726d067838365f36340c70726f6772616d5f6e616d65056d7973716c0c5f7365727665725f686f7374093132372e302e302e31";

    fn unhex(s: &str) -> Vec<u8> {
        crate::inspect::decode_hex(s).expect("test hex")
    }

    #[test]
    fn greeting_is_a_mysql_8_handshake_without_ssl() {
        let t = converse::<Mysql>(true, &[]);
        let g = &t.greeting;
        assert_eq!(usize::from(g[0]) + 4, g.len());
        assert_eq!(g[3], 0, "sequence 0");
        assert_eq!(&g[4..12], b"\x0a8.0.36\0");
        // nmap-service-probes: m|^.\0\0\0\x0a(8\.[-_~.+\w]+)\0...\0|s
        assert_eq!(g[1..3], [0, 0]);
        assert_eq!(g[15], 0, "connection id below 2^24");
        let caps = u32::from_le_bytes([g[25], g[26], g[30], g[31]]);
        assert_eq!(caps & CLIENT_SSL, 0);
        assert_ne!(caps & CLIENT_PLUGIN_AUTH, 0);
        assert!(g.ends_with(b"mysql_native_password\0"));
        let salt: Vec<u8> = g[16..24].iter().chain(&g[43..55]).copied().collect();
        assert!(salt.iter().all(|&b| b != 0 && b != b'$' && b < 0x80));
    }

    #[test]
    fn mariadb_login_is_captured_and_refused() {
        let login = unhex(MARIADB_LOGIN);
        let t = converse::<Mysql>(true, &[&login]);
        assert_eq!(t.turns.len(), 1);
        let turn = &t.turns[0];
        assert_eq!(turn.protocol, Some("mysql"));
        assert!(turn.close);
        assert_eq!(turn.ecs["user"]["name"], "SECRET");
        let m = &turn.spip["mysql"];
        assert_eq!(m["packet"], "login");
        assert_eq!(m["auth_plugin"], "mysql_native_password");
        assert_eq!(
            m["auth_response"],
            "fb30830c3ec1c2161c75ef8c45977d684a38d8d4"
        );
        assert_eq!(m["database"], "shop");
        assert_eq!(m["attributes"]["_client_name"], "libmariadb");
        assert_eq!(m["attributes"]["_client_version"], "3.3.20");
        assert_eq!(m["attributes"]["_os"], "Linux");
        assert_eq!(m["attributes"]["program_name"], "mysql");
        assert_eq!(m["attribute_count"], 7);
        assert_eq!(m["salt"].as_str().unwrap().len(), 40);
        let mut want = vec![0xff, 0x15, 0x04, b'#'];
        want.extend_from_slice(
            b"28000Access denied for user 'SECRET'@'192.0.2.7' (using password: YES)",
        );
        assert_eq!(&turn.reply[4..], &want[..]);
        assert_eq!(turn.reply[3], 2, "the reply follows the client's sequence 1");
        assert_eq!(usize::from(turn.reply[0]) + 4, turn.reply.len());
    }

    #[test]
    fn mariadb_login_splits_agree() {
        assert_splits_agree::<Mysql>(true, &unhex(MARIADB_LOGIN));
    }

    #[test]
    fn ssl_request_gets_bad_handshake() {
        let mut ssl = vec![32, 0, 0, 1];
        ssl.extend_from_slice(&(0x000f_a28d_u32 | CLIENT_SSL).to_le_bytes());
        ssl.extend_from_slice(&[0, 0, 0, 1, 0x21]);
        ssl.extend_from_slice(&[0; 23]);
        let t = converse::<Mysql>(true, &[&ssl]);
        assert_eq!(t.turns[0].spip["mysql"]["packet"], "ssl_request");
        assert!(t.turns[0].close);
        assert_eq!(&t.turns[0].reply[4..], b"\xff\x13\x04#08S01Bad handshake");
    }

    #[test]
    fn echoed_user_is_bounded() {
        let mut p = vec![0, 0, 0, 1];
        p.extend_from_slice(&(CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION).to_le_bytes());
        p.extend_from_slice(&[0; 28]);
        p.extend_from_slice(&[b'u'; 5000]);
        p.extend_from_slice(&[0, 0]);
        let len = (p.len() - 4).to_le_bytes();
        p[..3].copy_from_slice(&len[..3]);
        let t = converse::<Mysql>(true, &[&p]);
        assert_eq!(t.turns[0].ecs["user"]["name"].as_str().unwrap().len(), 5000);
        assert!(t.turns[0].reply.len() < 120);
    }

    #[test]
    fn every_prefix_and_garbage_is_safe_and_bounded() {
        let login = unhex(MARIADB_LOGIN);
        for n in 0..=login.len() {
            let t = converse::<Mysql>(true, &[&login[..n]]);
            assert!(t.sent().len() < 200);
        }
        let hostile: Vec<u8> = (0..65536u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let t = converse::<Mysql>(true, &[&hostile]);
        assert!(t.sent().len() < 200);
        let t = converse::<Mysql>(true, &[&[b'A'; 65536]]);
        assert!(t.sent().len() < 200);
    }
}
