//! Microsoft SQL Server on 1433 (like SQL Server 2019, 15.0.2000), TDS 7.x: the PRELOGIN gets
//! a PRELOGIN answer that turns encryption off (ENCRYPT_NOT_SUP: a client that allows it then
//! sends LOGIN7 in the clear), LOGIN7 is recorded (user, de-obfuscated password, client host,
//! application, server name, client library) and answered with error 18456 "Login failed"
//! and DONE, then the server hangs up, as SQL Server does. A LOGIN7 asking for integrated
//! security with an NTLM NEGOTIATE gets our NTLM CHALLENGE in an SSPI token; the client's
//! AUTHENTICATE (an SSPI message) is recorded (see [`super::ntlm`]) and refused.
//!
//! Record: `user.name`, `spip.mssql.{message, password, hostname, app_name, server_name,
//! library, database, language, tds_version, client_pid, encryption}`.

use super::ntlm::{self, ServerNames};
use super::{After, Context, Detection, Framing, Responder, TurnFields};
use crate::json::{JsonWriter, write_json_string_content};

const PRELOGIN: u8 = 0x12;
const LOGIN7: u8 = 0x10;
const SSPI: u8 = 0x11;
const RESPONSE: u8 = 0x04;
/// Packet status: the last packet of a message.
const END_OF_MESSAGE: u8 = 0x01;
const HEADER_LEN: usize = 8;

/// PRELOGIN ENCRYPTION values.
const ENCRYPT_NOT_SUP: u8 = 2;
/// SQL Server 2019 RTM: 15.0.2000.
const SERVER_VERSION: [u8; 6] = [15, 0, 0x07, 0xd0, 0, 0];
/// `sysname` is 128 characters: the most of the client's user name the error message echoes.
const MAX_ECHOED_CHARS: usize = 128;

/// Where the conversation is.
enum State {
    /// Before login (PRELOGIN may come first).
    Start,
    /// Our NTLM CHALLENGE is out: the next SSPI message carries the AUTHENTICATE.
    Challenged { challenge: [u8; 8] },
}

pub struct Mssql {
    state: State,
    /// Where the next packet header of the current message starts (frame bookkeeping).
    next_packet: usize,
}

/// A UTF-16LE string from a LOGIN7 field; the password is also obfuscated.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ucs2<'a> {
    bytes: &'a [u8],
    obfuscated: bool,
}

impl Ucs2<'_> {
    fn units(&self) -> impl Iterator<Item = u16> + '_ {
        let obfuscated = self.obfuscated;
        let plain = move |b: u8| {
            if obfuscated {
                // [MS-TDS] 2.2.6.4: the client swapped the nibbles, then XORed 0xA5.
                (b ^ 0xa5).rotate_left(4)
            } else {
                b
            }
        };
        self.bytes
            .chunks_exact(2)
            .map(move |p| u16::from_le_bytes([plain(p[0]), plain(p[1])]))
    }

    fn write_content(&self, out: &mut Vec<u8>, max_chars: usize) {
        for c in char::decode_utf16(self.units()).take(max_chars) {
            let mut utf8 = [0u8; 4];
            let s = c.unwrap_or(char::REPLACEMENT_CHARACTER).encode_utf8(&mut utf8);
            write_json_string_content(out, s.as_bytes());
        }
    }

    fn write(&self, w: &mut JsonWriter<'_>, key: &str) {
        if self.bytes.is_empty() {
            return;
        }
        w.key_only(key);
        let out = w.buf();
        out.push(b'"');
        self.write_content(out, usize::MAX);
        out.push(b'"');
    }
}

/// A LOGIN7 message's fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct Login<'a> {
    pub tds_version: u32,
    pub client_pid: u32,
    pub integrated_security: bool,
    pub hostname: Ucs2<'a>,
    pub user: Ucs2<'a>,
    pub password: Ucs2<'a>,
    pub app_name: Ucs2<'a>,
    pub server_name: Ucs2<'a>,
    pub library: Ucs2<'a>,
    pub language: Ucs2<'a>,
    pub database: Ucs2<'a>,
    pub ntlm: Option<ntlm::Message<'a>>,
}

/// One client message (the payload of its first packet; later packets of a message that
/// spans several are recorded, not parsed).
// A turn's view lives on the stack for one call: boxing the large variant would only allocate.
#[allow(clippy::large_enum_variant)]
pub enum Message<'a> {
    PreLogin {
        /// The client's ENCRYPTION option, when present.
        encryption: Option<u8>,
        /// The client library's version (major, minor, build).
        version: Option<(u8, u8, u16)>,
        /// The client sent a MARS option (the answer carries one only then).
        mars: bool,
    },
    Login(Login<'a>),
    Sspi(Option<ntlm::Message<'a>>),
    /// Another TDS packet type (a query before login, attention ...).
    Other(u8),
    Unknown,
}

pub struct MssqlTurn<'a> {
    message: Message<'a>,
    challenge: Option<[u8; 8]>,
}

fn u16_le(b: &[u8], at: usize) -> Option<usize> {
    let s = b.get(at..at + 2)?;
    Some(usize::from(u16::from_le_bytes([s[0], s[1]])))
}

fn u32_le(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// PRELOGIN options: `(token, data)` until the 0xFF terminator.
fn prelogin_options(p: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    p.chunks(5)
        .take_while(|o| o.first() != Some(&0xff) && o.len() == 5)
        .map(move |o| {
            let offset = usize::from(u16::from_be_bytes([o[1], o[2]]));
            let len = usize::from(u16::from_be_bytes([o[3], o[4]]));
            (o[0], p.get(offset..offset + len).unwrap_or(&[]))
        })
}

fn parse_login(p: &[u8]) -> Login<'_> {
    // A field: offset and length in characters, from the start of LOGIN7.
    let field = |at: usize, obfuscated: bool| {
        let bytes = u16_le(p, at)
            .zip(u16_le(p, at + 2))
            .and_then(|(offset, chars)| p.get(offset..offset + chars * 2))
            .unwrap_or(&[]);
        Ucs2 { bytes, obfuscated }
    };
    let sspi = u16_le(p, 78)
        .zip(u16_le(p, 80))
        .and_then(|(offset, len)| p.get(offset..offset + len))
        .unwrap_or(&[]);
    Login {
        tds_version: u32_le(p, 4).unwrap_or(0),
        client_pid: u32_le(p, 16).unwrap_or(0),
        integrated_security: p.get(25).is_some_and(|f| f & 0x80 != 0),
        hostname: field(36, false),
        user: field(40, false),
        password: field(44, true),
        app_name: field(48, false),
        server_name: field(52, false),
        library: field(60, false),
        language: field(64, false),
        database: field(68, false),
        ntlm: ntlm::find(sspi).and_then(|at| ntlm::parse(&sspi[at..]).ok()),
    }
}

impl Responder for Mssql {
    const NAME: &'static str = "mssql";
    const DEFAULT_PORTS: &'static [u16] = &[1433];
    type Turn<'a> = MssqlTurn<'a>;

    fn new(_ctx: &Context<'_>) -> Self {
        Mssql {
            state: State::Start,
            next_packet: 0,
        }
    }

    fn detect(first: &[u8]) -> Detection {
        match first {
            // Type, status (end of message), a length that holds the header, SPID, id, window 0.
            [PRELOGIN | LOGIN7, 0x01, hi, lo, _, _, _, 0, ..]
                if usize::from(u16::from_be_bytes([*hi, *lo])) > HEADER_LEN =>
            {
                Detection::Match
            }
            [PRELOGIN | LOGIN7] | [PRELOGIN | LOGIN7, 0x01, ..] if first.len() < HEADER_LEN => {
                Detection::NeedMore
            }
            _ => Detection::NoMatch,
        }
    }

    fn frame(&mut self, pending: &[u8], new_from: usize) -> Framing {
        if new_from == 0 {
            self.next_packet = 0;
        }
        // Packets until the one marked end-of-message; each header is read once.
        while let Some(h) = pending.get(self.next_packet..self.next_packet + HEADER_LEN) {
            let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
            if len < HEADER_LEN {
                return Framing::AtPause;
            }
            let end = self.next_packet + len;
            if pending.len() < end {
                return Framing::NeedMore;
            }
            if h[1] & END_OF_MESSAGE != 0 {
                self.next_packet = 0;
                return Framing::Complete(end);
            }
            self.next_packet = end;
        }
        Framing::NeedMore
    }

    fn parse<'a>(&self, turn: &'a [u8]) -> MssqlTurn<'a> {
        let challenge = match self.state {
            State::Challenged { challenge } => Some(challenge),
            State::Start => None,
        };
        let packet_len = turn
            .get(2..4)
            .map_or(0, |l| usize::from(u16::from_be_bytes([l[0], l[1]])));
        let payload = turn.get(HEADER_LEN..packet_len.max(HEADER_LEN)).unwrap_or(&[]);
        let message = match turn.first() {
            _ if packet_len < HEADER_LEN => Message::Unknown,
            Some(&PRELOGIN) => {
                let mut encryption = None;
                let mut version = None;
                let mut mars = false;
                for (token, data) in prelogin_options(payload) {
                    match (token, data) {
                        (0, [major, minor, b0, b1, ..]) => {
                            version = Some((*major, *minor, u16::from_be_bytes([*b0, *b1])));
                        }
                        (1, [e, ..]) => encryption = Some(*e),
                        (4, _) => mars = true,
                        _ => {}
                    }
                }
                Message::PreLogin {
                    encryption,
                    version,
                    mars,
                }
            }
            Some(&LOGIN7) => Message::Login(parse_login(payload)),
            Some(&SSPI) => Message::Sspi(
                ntlm::find(payload).and_then(|at| ntlm::parse(&payload[at..]).ok()),
            ),
            Some(&other) => Message::Other(other),
            None => Message::Unknown,
        };
        MssqlTurn { message, challenge }
    }

    fn reply(&mut self, turn: &MssqlTurn<'_>, ctx: &Context<'_>, out: &mut Vec<u8>) -> After {
        let mut netbios = [0u8; 15];
        let server = ntlm::netbios_name(&ctx.settings.hostname, &mut netbios);
        match &turn.message {
            Message::PreLogin { mars, .. } => {
                prelogin_response(out, *mars);
                After::KeepOpen
            }
            Message::Login(Login {
                ntlm: Some(ntlm::Message::Negotiate(n)),
                ..
            }) => {
                let challenge = ctx.random_bytes::<8>(0x5444_5343);
                let names = ServerNames {
                    netbios: server,
                    dns: ctx.settings.hostname.as_bytes(),
                };
                let at = begin_packet(out);
                out.push(0xed); // SSPI token
                out.extend_from_slice(&(ntlm::challenge_len(names) as u16).to_le_bytes());
                ntlm::write_challenge(out, n.flags, &challenge, names, ctx.filetime());
                end_packet(out, at);
                self.state = State::Challenged { challenge };
                After::KeepOpen
            }
            Message::Login(login) => {
                login_failed(out, server, 18456, Some(&login.user));
                After::Close
            }
            Message::Sspi(_) => {
                // "The login is from an untrusted domain and cannot be used with Integrated
                // authentication."
                login_failed(out, server, 18452, None);
                After::Close
            }
            Message::Other(_) | Message::Unknown => After::Close,
        }
    }
}

/// Starts a response packet; returns where it starts.
fn begin_packet(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[RESPONSE, END_OF_MESSAGE, 0, 0, 0, 0, 1, 0]);
    at
}

fn end_packet(out: &mut [u8], at: usize) {
    let len = (out.len() - at) as u16;
    out[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// VERSION, ENCRYPTION, INSTOPT, THREADID (empty) and, when the client sent one, MARS.
fn prelogin_response(out: &mut Vec<u8>, mars: bool) {
    let at = begin_packet(out);
    let options: &[(u8, u16)] = if mars {
        &[(0, 6), (1, 1), (2, 1), (3, 0), (4, 1)]
    } else {
        &[(0, 6), (1, 1), (2, 1), (3, 0)]
    };
    let mut offset = (options.len() * 5 + 1) as u16;
    for &(token, len) in options {
        out.push(token);
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        offset += len;
    }
    out.push(0xff);
    out.extend_from_slice(&SERVER_VERSION);
    out.push(ENCRYPT_NOT_SUP);
    out.push(0); // INSTOPT: the default instance
    if mars {
        out.push(0); // off
    }
    end_packet(out, at);
}

fn put_ucs2(out: &mut Vec<u8>, ascii: &[u8]) {
    for &b in ascii {
        out.extend_from_slice(&[b, 0]);
    }
}

/// ERROR token (login failed, class 14) and DONE with the error bit.
fn login_failed(out: &mut Vec<u8>, server: &[u8], number: u32, user: Option<&Ucs2<'_>>) {
    let at = begin_packet(out);
    out.push(0xaa);
    let len_at = out.len();
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&number.to_le_bytes());
    out.push(1); // state
    out.push(14); // class
    let text_at = out.len();
    out.extend_from_slice(&[0, 0]);
    match user {
        Some(user) => {
            put_ucs2(out, b"Login failed for user '");
            for unit in user.units().take(MAX_ECHOED_CHARS) {
                out.extend_from_slice(&unit.to_le_bytes());
            }
            put_ucs2(out, b"'.");
        }
        None => put_ucs2(
            out,
            b"Login failed. The login is from an untrusted domain and cannot be used with \
              Integrated authentication.",
        ),
    }
    let chars = ((out.len() - text_at - 2) / 2) as u16;
    out[text_at..text_at + 2].copy_from_slice(&chars.to_le_bytes());
    out.push(server.len() as u8);
    put_ucs2(out, server);
    out.push(0); // procedure name
    out.extend_from_slice(&1u32.to_le_bytes()); // line number
    let token_len = (out.len() - len_at - 2) as u16;
    out[len_at..len_at + 2].copy_from_slice(&token_len.to_le_bytes());
    // DONE: DONE_ERROR, no command, no rows.
    out.extend_from_slice(&[0xfd, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    end_packet(out, at);
}

impl TurnFields for MssqlTurn<'_> {
    fn summary(&self) -> bool {
        false
    }

    fn protocol(&self) -> Option<&'static str> {
        match self.message {
            Message::Unknown => None,
            _ => Some("mssql"),
        }
    }

    fn write_ecs(&self, w: &mut JsonWriter<'_>) {
        match &self.message {
            Message::Login(login) if !login.user.bytes.is_empty() => {
                w.begin_object("user");
                login.user.write(w, "name");
                w.end_object();
            }
            Message::Login(Login {
                ntlm: Some(ntlm::Message::Authenticate(a)),
                ..
            })
            | Message::Sspi(Some(ntlm::Message::Authenticate(a))) => a.write_ecs(w),
            _ => {}
        }
    }

    fn write_spip(&self, w: &mut JsonWriter<'_>) {
        let ntlm = match &self.message {
            Message::Login(login) => login.ntlm.as_ref(),
            Message::Sspi(ntlm) => ntlm.as_ref(),
            _ => None,
        };
        w.begin_object("mssql");
        match &self.message {
            Message::PreLogin {
                encryption,
                version,
                ..
            } => {
                w.str("message", b"prelogin");
                if let Some(e) = encryption {
                    let name: &[u8] = match e {
                        0 => b"off",
                        1 => b"on",
                        2 => b"not_supported",
                        3 => b"required",
                        _ => b"other",
                    };
                    w.str("encryption", name);
                }
                if let Some((major, minor, build)) = version {
                    w.key_only("client_version");
                    let out = w.buf();
                    out.push(b'"');
                    for (i, n) in [u64::from(*major), u64::from(*minor), u64::from(*build)]
                        .into_iter()
                        .enumerate()
                    {
                        if i > 0 {
                            out.push(b'.');
                        }
                        crate::json::write_u64(out, n);
                    }
                    out.push(b'"');
                }
            }
            Message::Login(login) => {
                w.str("message", b"login7");
                login.password.write(w, "password");
                login.hostname.write(w, "hostname");
                login.app_name.write(w, "app_name");
                login.server_name.write(w, "server_name");
                login.library.write(w, "library");
                login.database.write(w, "database");
                login.language.write(w, "language");
                w.hex("tds_version", &login.tds_version.to_be_bytes());
                w.u64("client_pid", u64::from(login.client_pid));
                w.bool("integrated_security", login.integrated_security);
            }
            Message::Sspi(_) => w.str("message", b"sspi"),
            Message::Other(t) => {
                w.str("message", b"other");
                w.u64("packet_type", u64::from(*t));
            }
            Message::Unknown => w.str("message", b"unknown"),
        }
        w.end_object();
        if let Some(m) = ntlm {
            ntlm::write_spip(m, self.challenge.as_ref(), w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::testing::{assert_splits_agree, converse};

    fn hex(s: &str) -> Vec<u8> {
        crate::inspect::decode_hex(s).expect("test hex")
    }

    /// `tsql -H 127.0.0.1 -p 14331 -U sa -P pw` (FreeTDS 1.3.17): PRELOGIN, LOGIN7.
    fn tsql() -> Vec<u8> {
        hex(include_str!("../../tests/data/ntlm/tsql-session.hex").trim())
    }

    /// `tsql ... -U 'CORP\bob' -P pw`: PRELOGIN, LOGIN7 with NTLM NEGOTIATE, SSPI AUTHENTICATE.
    fn tsql_ntlm() -> Vec<u8> {
        hex(include_str!("../../tests/data/ntlm/tsql-ntlm-session.hex").trim())
    }

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    #[test]
    fn tsql_login_is_captured_with_the_password_and_refused() {
        let t = converse::<Mssql>(false, &[&tsql()]);
        assert_eq!(t.turns.len(), 2);
        let pre = &t.turns[0];
        assert_eq!(pre.spip["mssql"]["message"], "prelogin");
        assert_eq!(pre.spip["mssql"]["encryption"], "off");
        // Our PRELOGIN answer: ENCRYPTION = NOT_SUP, so LOGIN7 comes in the clear.
        let options: Vec<(u8, &[u8])> = prelogin_options(&pre.reply[8..]).collect();
        assert_eq!(options[0], (0, &SERVER_VERSION[..]));
        assert_eq!(options[1], (1, &[ENCRYPT_NOT_SUP][..]));
        assert!(!pre.close);
        let login = &t.turns[1];
        assert_eq!(login.ecs["user"]["name"], "sa");
        let m = &login.spip["mssql"];
        assert_eq!(m["message"], "login7");
        assert_eq!(m["password"], "pw");
        assert_eq!(m["hostname"], "vm");
        assert_eq!(m["app_name"], "TSQL");
        assert_eq!(m["server_name"], "127.0.0.1");
        assert_eq!(m["library"], "TDS-Library");
        assert_eq!(m["tds_version"], "74000004");
        assert_eq!(m["integrated_security"], false);
        assert_eq!(login.protocol, Some("mssql"));
        // ERROR 18456 naming the user, DONE with the error bit, then hang up.
        let reply = &login.reply;
        assert_eq!(&reply[..2], &[RESPONSE, END_OF_MESSAGE]);
        assert_eq!(usize::from(u16::from_be_bytes([reply[2], reply[3]])), reply.len());
        assert_eq!(reply[8], 0xaa);
        assert_eq!(&reply[11..15], &18456u32.to_le_bytes());
        let text = utf16("Login failed for user 'sa'.");
        assert!(reply.windows(text.len()).any(|w| w == text));
        assert_eq!(reply[reply.len() - 13], 0xfd);
        assert!(login.close);
    }

    #[test]
    fn tsql_ntlm_login_gets_a_challenge_and_its_response_is_recorded() {
        let t = converse::<Mssql>(false, &[&tsql_ntlm()]);
        assert_eq!(t.turns.len(), 3);
        let login = &t.turns[1];
        assert_eq!(login.spip["mssql"]["integrated_security"], true);
        assert_eq!(login.spip["ntlm"]["message"], "negotiate");
        assert_eq!(login.reply[8], 0xed);
        let challenge = &login.reply[11 + 24..11 + 32];
        assert_eq!(ntlm::parse(&login.reply[11..]), Ok(ntlm::Message::Challenge));
        assert_eq!(
            ntlm::challenge_timestamp(&login.reply[11..]),
            Some(crate::protocols::testing::NOW_FILETIME)
        );
        let auth = &t.turns[2];
        assert_eq!(auth.ecs["user"]["name"], "bob");
        assert_eq!(auth.ecs["user"]["domain"], "CORP");
        assert_eq!(auth.spip["ntlm"]["workstation"], "vm");
        assert_eq!(auth.spip["ntlm"]["response"], "v2");
        let challenge_hex: String = challenge.iter().map(|b| format!("{b:02x}")).collect();
        let line = auth.spip["ntlm"]["hashcat"].as_str().unwrap();
        assert!(line.starts_with(&format!("bob::CORP:{challenge_hex}:")), "{line}");
        assert_eq!(&auth.reply[11..15], &18452u32.to_le_bytes());
        assert!(auth.close);
    }

    #[test]
    fn splits_agree() {
        assert_splits_agree::<Mssql>(false, &tsql());
        assert_splits_agree::<Mssql>(false, &tsql_ntlm());
    }

    #[test]
    fn a_message_over_several_packets_is_one_turn() {
        let login = &tsql()[0x3a..];
        let mut first = login[..100].to_vec();
        first[1] = 0; // not the last packet
        first[2..4].copy_from_slice(&100u16.to_be_bytes());
        let mut second = login[..8].to_vec();
        second.extend_from_slice(&login[100..]);
        let len = second.len() as u16;
        second[2..4].copy_from_slice(&len.to_be_bytes());
        let stream = [first, second].concat();
        let t = converse::<Mssql>(false, &[&stream]);
        assert_eq!(t.turns.len(), 1);
        assert_eq!(t.turns[0].bytes, stream);
        assert_eq!(t.turns[0].spip["mssql"]["message"], "login7");
        assert_splits_agree::<Mssql>(false, &stream);
    }

    #[test]
    fn nmap_prelogin_gets_what_nmap_knows_as_sql_server_2019() {
        // nmap-service-probes `Probe TCP ms-sql-s` and its SQL Server 2019 match.
        let probe = b"\x12\x01\x00\x34\x00\x00\x00\x00\x00\x00\x15\x00\x06\x01\x00\x1b\x00\x01\x02\x00\x1c\x00\x0c\x03\x00\x28\x00\x04\xff\x08\x00\x01\x55\x00\x00\x00\x4d\x53\x53\x51\x4c\x53\x65\x72\x76\x65\x72\x00\x48\x0f\x00\x00";
        let t = converse::<Mssql>(false, &[probe]);
        let expected = b"\x04\x01\x00\x25\x00\x00\x01\x00\x00\x00\x15\x00\x06\x01\x00\x1b\x00\x01\x02\x00\x1c\x00\x01\x03\x00\x1d\x00\x00\xff\x0f\x00";
        assert!(t.turns[0].reply.starts_with(expected), "{:02x?}", t.turns[0].reply);
        assert_eq!(t.turns[0].reply.len(), 0x25);
    }

    #[test]
    fn detection() {
        assert_eq!(Mssql::detect(&tsql()), Detection::Match);
        assert_eq!(Mssql::detect(&tsql()[0x3a..]), Detection::Match);
        assert_eq!(Mssql::detect(b"\x12\x01"), Detection::NeedMore);
        assert_eq!(Mssql::detect(b"\x12\x01\0\x04\0\0\0\0"), Detection::NoMatch);
        assert_eq!(Mssql::detect(b"GET / HTTP/1.1\r\n"), Detection::NoMatch);
        assert_eq!(Mssql::detect(b"\x03\0\0\x2b"), Detection::NoMatch);
    }

    #[test]
    fn every_prefix_and_garbage_never_panic() {
        for input in [tsql(), tsql_ntlm()] {
            for n in 0..=input.len() {
                let _ = converse::<Mssql>(false, &[&input[..n]]);
            }
            for seed in 1..64u8 {
                let mut bad = input.clone();
                // Keep the packet headers, scramble the payloads.
                for (i, b) in bad.iter_mut().enumerate().skip(8) {
                    *b = b.wrapping_mul(seed) ^ (i as u8);
                }
                bad[0x3a..0x3a + 8].copy_from_slice(&input[0x3a..0x3a + 8]);
                let _ = converse::<Mssql>(false, &[&bad]);
            }
        }
    }

    #[test]
    fn hostile_input_gets_a_small_reply() {
        // A 64 KB LOGIN7 whose user name claims the whole packet: the echo stays at 128 chars.
        let mut login = tsql()[0x3a..].to_vec();
        login.resize(65_000, b'A');
        let len = login.len() as u16;
        login[2..4].copy_from_slice(&len.to_be_bytes());
        login[8 + 40..8 + 44].copy_from_slice(&[0xb2, 0, 0x30, 0x75]);
        let t = converse::<Mssql>(false, &[&login]);
        assert!(t.turns[0].reply.len() < 512, "{}", t.turns[0].reply.len());
        let t = converse::<Mssql>(false, &[&vec![0x12; 65_536]]);
        assert!(t.sent().len() < 64);
    }
}
