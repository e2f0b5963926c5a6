//! RDP on 3389 ([MS-RDPBCGR]), as a Windows host whose "Security Layer" is set to RDP (no TLS,
//! so no NLA/CredSSP): the X.224 Connection Request is recorded (the `Cookie: mstshash=` user
//! name, the requested protocols); a request for TLS or CredSSP gets an RDP_NEG_FAILURE
//! (SSL_NOT_ALLOWED_BY_SERVER) and the connection ends, so clients such as FreeRDP and mstsc
//! connect again asking for standard RDP security; that request gets a Connection Confirm
//! selecting it, and the client's MCS Connect Initial is recorded (its host name, build and
//! keyboard layout) before we hang up (standard RDP security needs a server key and RC4,
//! which we do not imitate). When the engine can start TLS from a responder, TLS and CredSSP
//! can be selected to draw out the NTLM AUTHENTICATE.
//!
//! Record: `user.name` (the cookie: mstsc sends at most 9 characters of the user name),
//! `spip.rdp.{message, cookie, requested_protocols, client_name, client_build,
//! keyboard_layout}`.

use super::{After, Context, Detection, Framing, Responder, TurnFields};
use crate::json::{JsonWriter, write_json_string_content};

const TPKT_VERSION: u8 = 3;
/// X.224 TPDU codes (upper nibble).
const CONNECTION_REQUEST: u8 = 0xe0;
const DATA: u8 = 0xf0;

/// requestedProtocols bits.
const PROTOCOL_SSL: u32 = 0x1;
const PROTOCOL_HYBRID: u32 = 0x2;
const PROTOCOL_RDSTLS: u32 = 0x4;
const PROTOCOL_HYBRID_EX: u32 = 0x8;
const PROTOCOL_RDSAAD: u32 = 0x10;
const PROTOCOL_NAMES: [(u32, &str); 5] = [
    (PROTOCOL_SSL, "tls"),
    (PROTOCOL_HYBRID, "hybrid"),
    (PROTOCOL_RDSTLS, "rdstls"),
    (PROTOCOL_HYBRID_EX, "hybrid_ex"),
    (PROTOCOL_RDSAAD, "rdsaad"),
];
/// RDP_NEG_FAILURE code: the server only does standard RDP security.
const SSL_NOT_ALLOWED_BY_SERVER: u32 = 2;

/// Where the conversation is.
enum State {
    /// Before the Connection Request.
    Start,
    /// Standard RDP security selected: the MCS Connect Initial comes next.
    Confirmed,
}

pub struct Rdp {
    state: State,
}

/// The client's Connection Request.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionRequest<'a> {
    /// The cookie line's value (`mstshash=<user>` or a routing token), without CRLF.
    pub cookie: Option<&'a [u8]>,
    /// `requestedProtocols`, when the client sent an RDP_NEG_REQ.
    pub requested: Option<u32>,
}

impl<'a> ConnectionRequest<'a> {
    /// The user name in an `mstshash` cookie.
    pub fn user(&self) -> Option<&'a [u8]> {
        self.cookie?.strip_prefix(b"mstshash=")
    }
}

/// What the client core data of an MCS Connect Initial says about the client.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientCore<'a> {
    /// clientName: UTF-16LE, NUL-padded to 16 characters.
    pub name: &'a [u8],
    pub build: u32,
    pub keyboard_layout: u32,
}

pub enum Message<'a> {
    ConnectionRequest(ConnectionRequest<'a>),
    McsConnectInitial(Option<ClientCore<'a>>),
    Other,
    Unknown,
}

pub struct RdpTurn<'a> {
    message: Message<'a>,
}

fn u32_le(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn parse_connection_request(x224: &[u8]) -> ConnectionRequest<'_> {
    // LI, code, DST-REF, SRC-REF, class: 7 bytes, then the variable part the LI covers.
    let end = x224.first().map_or(0, |&li| usize::from(li) + 1).min(x224.len());
    let mut rest = x224.get(7..end).unwrap_or(&[]);
    let mut cookie = None;
    if let Some(line) = rest.strip_prefix(b"Cookie: ") {
        let eol = memchr::memmem::find(line, b"\r\n");
        cookie = Some(&line[..eol.unwrap_or(line.len())]);
        rest = eol.map_or(&[][..], |at| &line[at + 2..]);
    }
    // RDP_NEG_REQ: type 1, flags, length 8, requestedProtocols.
    let requested = match rest {
        [1, _, 8, 0, ..] => u32_le(rest, 4),
        _ => None,
    };
    ConnectionRequest { cookie, requested }
}

/// The client core data (CS_CORE) in the GCC conference create request of an MCS Connect
/// Initial: found after the H.221 key `Duca` and the PER length of the user data.
fn parse_client_core(mcs: &[u8]) -> Option<ClientCore<'_>> {
    let at = memchr::memmem::find(mcs, b"Duca")? + 4;
    let data = match *mcs.get(at)? {
        len if len & 0x80 != 0 => mcs.get(at + 2..)?,
        _ => mcs.get(at + 1..)?,
    };
    // The first block is CS_CORE (type 0xC001).
    if data.get(..2)? != [0x01, 0xc0] {
        return None;
    }
    let core = data.get(4..)?;
    Some(ClientCore {
        keyboard_layout: u32_le(core, 12)?,
        build: u32_le(core, 16)?,
        name: core.get(20..52)?,
    })
}

impl Responder for Rdp {
    const NAME: &'static str = "rdp";
    const DEFAULT_PORTS: &'static [u16] = &[3389];
    type Turn<'a> = RdpTurn<'a>;

    fn new(_ctx: &Context<'_>) -> Self {
        Rdp {
            state: State::Start,
        }
    }

    fn detect(first: &[u8]) -> Detection {
        match first {
            // TPKT version 3, then an X.224 Connection Request.
            [TPKT_VERSION, 0, _, _, _, code, ..] if code & 0xf0 == CONNECTION_REQUEST => {
                Detection::Match
            }
            [TPKT_VERSION] | [TPKT_VERSION, 0] | [TPKT_VERSION, 0, _] | [TPKT_VERSION, 0, _, _]
            | [TPKT_VERSION, 0, _, _, _] => Detection::NeedMore,
            _ => Detection::NoMatch,
        }
    }

    fn frame(&mut self, pending: &[u8], _new_from: usize) -> Framing {
        // The TPKT header alone says where the packet ends.
        match pending {
            [TPKT_VERSION, 0, hi, lo, ..] => {
                let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                if len < 4 {
                    Framing::AtPause
                } else if pending.len() >= len {
                    Framing::Complete(len)
                } else {
                    Framing::NeedMore
                }
            }
            [TPKT_VERSION] | [TPKT_VERSION, 0] | [TPKT_VERSION, 0, _] => Framing::NeedMore,
            _ => Framing::AtPause,
        }
    }

    fn parse<'a>(&self, turn: &'a [u8]) -> RdpTurn<'a> {
        let x224 = match turn {
            [TPKT_VERSION, 0, _, _, rest @ ..] => rest,
            _ => return RdpTurn {
                message: Message::Unknown,
            },
        };
        let message = match (&self.state, x224.get(1).map(|c| c & 0xf0)) {
            (State::Start, Some(CONNECTION_REQUEST)) => {
                Message::ConnectionRequest(parse_connection_request(x224))
            }
            (State::Confirmed, Some(DATA)) => {
                Message::McsConnectInitial(parse_client_core(x224.get(3..).unwrap_or(&[])))
            }
            _ => Message::Other,
        };
        RdpTurn { message }
    }

    fn reply(&mut self, turn: &RdpTurn<'_>, _ctx: &Context<'_>, out: &mut Vec<u8>) -> After {
        let Message::ConnectionRequest(request) = &turn.message else {
            return After::Close;
        };
        let requested = request.requested.unwrap_or(0);
        // TPKT, then the Connection Confirm (DST-REF 0, SRC-REF 0x1234, class 0).
        let with_neg = request.requested.is_some();
        let len: u8 = if with_neg { 19 } else { 11 };
        out.extend_from_slice(&[TPKT_VERSION, 0, 0, len, len - 5, 0xd0, 0, 0, 0x12, 0x34, 0]);
        if requested != 0 {
            // RDP_NEG_FAILURE.
            out.extend_from_slice(&[3, 0, 8, 0]);
            out.extend_from_slice(&SSL_NOT_ALLOWED_BY_SERVER.to_le_bytes());
            return After::Close;
        }
        if with_neg {
            // RDP_NEG_RSP: extended client data supported, PROTOCOL_RDP.
            out.extend_from_slice(&[2, 1, 8, 0, 0, 0, 0, 0]);
        }
        self.state = State::Confirmed;
        After::KeepOpen
    }
}

impl TurnFields for RdpTurn<'_> {
    fn summary(&self) -> bool {
        // The cookie is text; the rest is binary.
        matches!(self.message, Message::ConnectionRequest(_))
    }

    fn protocol(&self) -> Option<&'static str> {
        match self.message {
            Message::Unknown => None,
            _ => Some("rdp"),
        }
    }

    fn write_ecs(&self, w: &mut JsonWriter<'_>) {
        if let Message::ConnectionRequest(request) = &self.message
            && let Some(user) = request.user()
        {
            w.begin_object("user");
            w.str("name", user);
            w.end_object();
        }
    }

    fn write_spip(&self, w: &mut JsonWriter<'_>) {
        w.begin_object("rdp");
        match &self.message {
            Message::ConnectionRequest(request) => {
                w.str("message", b"connection_request");
                if let Some(cookie) = request.cookie {
                    w.str("cookie", cookie);
                }
                if let Some(requested) = request.requested {
                    w.str_array(
                        "requested_protocols",
                        PROTOCOL_NAMES
                            .iter()
                            .filter(|(bit, _)| requested & bit != 0)
                            .map(|(_, name)| name.as_bytes()),
                    );
                }
            }
            Message::McsConnectInitial(core) => {
                w.str("message", b"mcs_connect_initial");
                if let Some(core) = core {
                    w.key_only("client_name");
                    let out = w.buf();
                    out.push(b'"');
                    let units = core
                        .name
                        .chunks_exact(2)
                        .map(|p| u16::from_le_bytes([p[0], p[1]]))
                        .take_while(|&u| u != 0);
                    for c in char::decode_utf16(units) {
                        let mut utf8 = [0u8; 4];
                        let s = c.unwrap_or(char::REPLACEMENT_CHARACTER).encode_utf8(&mut utf8);
                        write_json_string_content(out, s.as_bytes());
                    }
                    out.push(b'"');
                    w.u64("client_build", u64::from(core.build));
                    w.u64("keyboard_layout", u64::from(core.keyboard_layout));
                }
            }
            Message::Other => w.str("message", b"other"),
            Message::Unknown => w.str("message", b"unknown"),
        }
        w.end_object();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::testing::{assert_splits_agree, converse};

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// FreeRDP 2.10's first Connection Request: `mstshash=rdpuser`, TLS | HYBRID.
    const XFREERDP_NLA: &[u8] = b"\x03\x00\x00\x2d\x28\xe0\x00\x00\x00\x00\x00Cookie: mstshash=rdpuser\r\n\x01\x00\x08\x00\x03\x00\x00\x00";

    /// FreeRDP's third connection: standard RDP security, then the MCS Connect Initial.
    fn xfreerdp_standard() -> Vec<u8> {
        hex(include_str!("../../tests/data/rdp/xfreerdp-standard-security.hex").trim())
    }

    #[test]
    fn nla_request_records_the_user_and_is_refused() {
        let t = converse::<Rdp>(false, &[XFREERDP_NLA]);
        let turn = &t.turns[0];
        assert_eq!(turn.ecs["user"]["name"], "rdpuser");
        assert_eq!(turn.spip["rdp"]["cookie"], "mstshash=rdpuser");
        assert_eq!(
            turn.spip["rdp"]["requested_protocols"],
            serde_json::json!(["tls", "hybrid"])
        );
        assert_eq!(
            turn.reply,
            b"\x03\x00\x00\x13\x0e\xd0\x00\x00\x12\x34\x00\x03\x00\x08\x00\x02\x00\x00\x00"
        );
        assert!(turn.close);
        assert_eq!(turn.protocol, Some("rdp"));
    }

    #[test]
    fn standard_security_is_confirmed_and_the_client_core_data_recorded() {
        let t = converse::<Rdp>(false, &[&xfreerdp_standard()]);
        assert_eq!(t.turns.len(), 2);
        assert_eq!(t.turns[0].ecs["user"]["name"], "rdpuser");
        assert_eq!(
            t.turns[0].reply,
            b"\x03\x00\x00\x13\x0e\xd0\x00\x00\x12\x34\x00\x02\x01\x08\x00\x00\x00\x00\x00"
        );
        assert!(!t.turns[0].close);
        let rdp = &t.turns[1].spip["rdp"];
        assert_eq!(rdp["message"], "mcs_connect_initial");
        assert_eq!(rdp["client_name"], "vm");
        assert_eq!(rdp["client_build"], 18363);
        assert_eq!(rdp["keyboard_layout"], 0x409);
        assert!(t.turns[1].reply.is_empty() && t.turns[1].close);
    }

    #[test]
    fn nmap_terminal_server_probe_gets_what_nmap_knows() {
        // nmap-service-probes `TerminalServer`; its match `^\x03\0\0\x0b\x06\xd0\0\0\x12.\0$`.
        let t = converse::<Rdp>(false, &[b"\x03\0\0\x0b\x06\xe0\0\0\0\0\0"]);
        assert_eq!(t.turns[0].reply, b"\x03\0\0\x0b\x06\xd0\0\0\x12\x34\0");
    }

    #[test]
    fn splits_agree() {
        assert_splits_agree::<Rdp>(false, XFREERDP_NLA);
        assert_splits_agree::<Rdp>(false, &xfreerdp_standard());
    }

    #[test]
    fn detection() {
        assert_eq!(Rdp::detect(XFREERDP_NLA), Detection::Match);
        assert_eq!(Rdp::detect(b"\x03\0"), Detection::NeedMore);
        assert_eq!(Rdp::detect(b"\x03\0\0\x2d\x28\xf0"), Detection::NoMatch);
        assert_eq!(Rdp::detect(b"\x16\x03\x01\x02\0"), Detection::NoMatch);
        assert_eq!(Rdp::detect(b"GET /"), Detection::NoMatch);
    }

    #[test]
    fn every_prefix_and_garbage_never_panic() {
        let input = xfreerdp_standard();
        for n in 0..=input.len() {
            let _ = converse::<Rdp>(false, &[&input[..n]]);
        }
        for seed in 1..64u8 {
            let mut bad = input.clone();
            for (i, b) in bad.iter_mut().enumerate().skip(4) {
                *b = b.wrapping_mul(seed) ^ (i as u8);
            }
            bad[0x2d..0x31].copy_from_slice(&input[0x2d..0x31]);
            let _ = converse::<Rdp>(false, &[&bad]);
        }
    }

    #[test]
    fn hostile_input_gets_a_small_reply() {
        let mut big = XFREERDP_NLA[..11].to_vec();
        big.extend_from_slice(b"Cookie: mstshash=");
        big.resize(65_000, b'A');
        big[2..4].copy_from_slice(&65_000u16.to_be_bytes());
        big[4] = 0xff;
        let t = converse::<Rdp>(false, &[&big]);
        assert_eq!(t.turns.len(), 1);
        assert!(t.sent().len() <= 19);
    }
}
