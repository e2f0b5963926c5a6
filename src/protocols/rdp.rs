//! RDP on 3389 ([MS-RDPBCGR]), as a Windows Server 2019 host that lets the client choose its
//! security: the X.224 Connection Request is recorded (the `Cookie: mstshash=` user name, the
//! requested protocols) and answered with a Connection Confirm selecting what the client asks
//! for, CredSSP first, as Windows does:
//! - CredSSP (PROTOCOL_HYBRID, or HYBRID_EX alone): TLS starts ([`After::StartTls`]) and
//!   Network Level Authentication runs over CredSSP ([`super::credssp`]): the client's NTLM
//!   NEGOTIATE gets our CHALLENGE (names from `banner_hostname`), its AUTHENTICATE (user,
//!   domain, host, NetNTLMv2 response) is recorded and refused with STATUS_LOGON_FAILURE, and
//!   we hang up;
//! - TLS alone (PROTOCOL_SSL): TLS starts and the MCS Connect Initial that follows is recorded
//!   (the client's host name, build and keyboard layout) before we hang up;
//! - standard RDP security (no RDP_NEG_REQ, or nothing else offered): the same, in the clear
//!   (standard security needs a server key and RC4, which we do not imitate).
//!
//! Record: `user.name` (the cookie: mstsc sends at most 9 characters of the user name; or the
//! AUTHENTICATE's user), `user.domain`, `spip.rdp.{message, cookie, requested_protocols,
//! client_name, client_build, keyboard_layout, credssp_version}` and the NTLM fields (see
//! [`super::ntlm`]).

use super::ntlm::{self, ServerNames};
use super::{After, Context, Detection, Framing, Responder, TurnFields, credssp, der};
use crate::json::{JsonWriter, write_json_string_content};

const TPKT_VERSION: u8 = 3;
/// X.224 TPDU codes (upper nibble).
const CONNECTION_REQUEST: u8 = 0xe0;
const DATA: u8 = 0xf0;

/// requestedProtocols bits (standard RDP security is 0: no bit).
const PROTOCOL_RDP: u32 = 0;
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
/// RDP_NEG_RSP flags of Windows Server 2016 and later: extended client data, the graphics
/// pipeline, the reserved bit, restricted admin and redirected authentication modes.
const NEG_RSP_FLAGS: u8 = 0x1f;
/// The NTSTATUS of a wrong user name or password.
const STATUS_LOGON_FAILURE: u32 = 0xc000_006d;
/// The longest TSRequest we frame: far above a NEGOTIATE or an AUTHENTICATE (a few KiB with
/// its target info); a longer one ends at the client's pause.
const MAX_TS_REQUEST: usize = 0x1_0000;
/// [`Context::random_bytes`] label of the NTLM server challenge.
const CHALLENGE_LABEL: u64 = 0x5244_5043;

/// Where the conversation is.
enum State {
    /// Before the Connection Request.
    Start,
    /// Standard RDP security or TLS selected: the MCS Connect Initial comes next.
    Confirmed,
    /// CredSSP selected: TSRequests come next (inside TLS); `challenge` once ours is out.
    Credssp { challenge: Option<[u8; 8]> },
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
    /// A CredSSP TSRequest and the NTLM message in its negoToken.
    TsRequest {
        version: Option<i64>,
        /// The NTLM message came wrapped in SPNEGO (an answer goes back the same way).
        spnego: bool,
        ntlm: Option<ntlm::Message<'a>>,
    },
    Other,
    Unknown,
}

pub struct RdpTurn<'a> {
    message: Message<'a>,
    /// The challenge we sent (for the hashcat line of an AUTHENTICATE).
    challenge: Option<[u8; 8]>,
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
        // Each message's header alone says where it ends: nothing to remember.
        match self.state {
            State::Credssp { .. } => frame_ts_request(pending),
            State::Start | State::Confirmed => frame_tpkt(pending),
        }
    }

    fn parse<'a>(&self, turn: &'a [u8]) -> RdpTurn<'a> {
        let (message, challenge) = match self.state {
            State::Credssp { challenge } => (parse_ts_request(turn), challenge),
            State::Start | State::Confirmed => (self.parse_tpkt(turn), None),
        };
        RdpTurn { message, challenge }
    }

    fn reply(&mut self, turn: &RdpTurn<'_>, ctx: &Context<'_>, out: &mut Vec<u8>) -> After {
        match &turn.message {
            Message::ConnectionRequest(request) => self.confirm(request, out),
            Message::TsRequest {
                version,
                spnego,
                ntlm,
            } => self.authenticate(*version, *spnego, ntlm.as_ref(), ctx, out),
            Message::McsConnectInitial(_) | Message::Other | Message::Unknown => After::Close,
        }
    }
}

impl Rdp {
    fn parse_tpkt<'a>(&self, turn: &'a [u8]) -> Message<'a> {
        let x224 = match turn {
            [TPKT_VERSION, 0, _, _, rest @ ..] => rest,
            _ => return Message::Unknown,
        };
        match (&self.state, x224.get(1).map(|c| c & 0xf0)) {
            (State::Start, Some(CONNECTION_REQUEST)) => {
                Message::ConnectionRequest(parse_connection_request(x224))
            }
            (State::Confirmed, Some(DATA)) => {
                Message::McsConnectInitial(parse_client_core(x224.get(3..).unwrap_or(&[])))
            }
            _ => Message::Other,
        }
    }

    /// The Connection Confirm: the protocol the client asked for, CredSSP first.
    fn confirm(&mut self, request: &ConnectionRequest<'_>, out: &mut Vec<u8>) -> After {
        // TPKT, then the Connection Confirm (DST-REF 0, SRC-REF 0x1234, class 0).
        let Some(requested) = request.requested else {
            // No RDP_NEG_REQ (old clients, nmap's probe): no RDP_NEG_RSP either.
            out.extend_from_slice(&[TPKT_VERSION, 0, 0, 11, 6, 0xd0, 0, 0, 0x12, 0x34, 0]);
            self.state = State::Confirmed;
            return After::KeepOpen;
        };
        let selected = [PROTOCOL_HYBRID, PROTOCOL_HYBRID_EX, PROTOCOL_SSL]
            .into_iter()
            .find(|p| requested & p != 0)
            .unwrap_or(PROTOCOL_RDP);
        out.extend_from_slice(&[TPKT_VERSION, 0, 0, 19, 14, 0xd0, 0, 0, 0x12, 0x34, 0]);
        // RDP_NEG_RSP.
        out.extend_from_slice(&[2, NEG_RSP_FLAGS, 8, 0]);
        out.extend_from_slice(&selected.to_le_bytes());
        match selected {
            PROTOCOL_RDP => {
                self.state = State::Confirmed;
                After::KeepOpen
            }
            PROTOCOL_SSL => {
                self.state = State::Confirmed;
                After::StartTls
            }
            _ => {
                self.state = State::Credssp { challenge: None };
                After::StartTls
            }
        }
    }

    /// NLA: a NEGOTIATE gets our CHALLENGE; an AUTHENTICATE is refused and ends it.
    fn authenticate(
        &mut self,
        version: Option<i64>,
        spnego: bool,
        ntlm: Option<&ntlm::Message<'_>>,
        ctx: &Context<'_>,
        out: &mut Vec<u8>,
    ) -> After {
        let version = credssp::answer_version(version);
        match ntlm {
            Some(ntlm::Message::Negotiate(negotiate)) => {
                let challenge = ctx.random_bytes::<8>(CHALLENGE_LABEL);
                let mut netbios = [0u8; 15];
                let names = ServerNames {
                    netbios: ntlm::netbios_name(&ctx.settings.hostname, &mut netbios),
                    dns: ctx.settings.hostname.as_bytes(),
                };
                let challenge_len = ntlm::challenge_len(names);
                let token_len = if spnego {
                    ntlm::spnego_challenge_len(challenge_len)
                } else {
                    challenge_len
                };
                credssp::write_nego_token_head(out, version, token_len);
                if spnego {
                    ntlm::write_spnego_challenge_head(out, challenge_len);
                }
                ntlm::write_challenge(out, negotiate.flags, &challenge, names, ctx.filetime());
                self.state = State::Credssp {
                    challenge: Some(challenge),
                };
                After::KeepOpen
            }
            Some(ntlm::Message::Authenticate(_)) => {
                if credssp::has_error_code(version) {
                    credssp::write_error(out, version, STATUS_LOGON_FAILURE);
                }
                After::Close
            }
            // No NTLM (Kerberos, which a standalone server cannot do), or nothing we know.
            Some(ntlm::Message::Challenge) | None => After::Close,
        }
    }
}

/// A TPKT packet ends where its header's length says.
fn frame_tpkt(pending: &[u8]) -> Framing {
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

/// A TSRequest (a DER SEQUENCE) ends where its outer length says.
fn frame_ts_request(pending: &[u8]) -> Framing {
    if pending.first() != Some(&der::SEQUENCE) {
        return Framing::AtPause;
    }
    match der::Header::read(pending) {
        Ok(header) => match header.total_len() {
            Some(len) if len <= MAX_TS_REQUEST && pending.len() >= len => Framing::Complete(len),
            Some(len) if len <= MAX_TS_REQUEST => Framing::NeedMore,
            _ => Framing::AtPause,
        },
        Err(der::Error::Truncated) => Framing::NeedMore,
        Err(der::Error::Unsupported) => Framing::AtPause,
    }
}

fn parse_ts_request(turn: &[u8]) -> Message<'_> {
    let Ok(request) = credssp::parse(turn) else {
        return Message::Other;
    };
    let token = request.nego_token.unwrap_or(&[]);
    let at = ntlm::find(token);
    Message::TsRequest {
        version: request.version,
        spnego: at.is_some_and(|at| at > 0),
        ntlm: at.and_then(|at| ntlm::parse(&token[at..]).ok()),
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
        match &self.message {
            Message::ConnectionRequest(request) => {
                if let Some(user) = request.user() {
                    w.begin_object("user");
                    w.str("name", user);
                    w.end_object();
                }
            }
            Message::TsRequest {
                ntlm: Some(ntlm::Message::Authenticate(a)),
                ..
            } => a.write_ecs(w),
            _ => {}
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
            Message::TsRequest { version, .. } => {
                w.str("message", b"credssp");
                if let Some(v) = version.and_then(|v| u64::try_from(v).ok()) {
                    w.u64("credssp_version", v);
                }
            }
            Message::Other => w.str("message", b"other"),
            Message::Unknown => w.str("message", b"unknown"),
        }
        w.end_object();
        if let Message::TsRequest { ntlm: Some(m), .. } = &self.message {
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

    /// FreeRDP's third connection: standard RDP security, then the MCS Connect Initial.
    fn xfreerdp_standard() -> Vec<u8> {
        hex(include_str!("../../tests/data/rdp/xfreerdp-standard-security.hex").trim())
    }

    /// FreeRDP 2.10 with NLA: this Connection Request, then inside TLS its TSRequests with
    /// the NTLM NEGOTIATE and the AUTHENTICATE (`CORP\rdpuser`, NetNTLMv2).
    fn xfreerdp_nla() -> Vec<u8> {
        hex(include_str!("../../tests/data/rdp/xfreerdp-nla.hex").trim())
    }

    /// nmap's rdp-ntlm-info: a Connection Request for TLS | HYBRID | HYBRID_EX (cookie
    /// `mstshash=nmap`), then a TSRequest (version 0x60) with a bare NTLM NEGOTIATE.
    const NMAP_NTLM_INFO: &[u8] = b"\x03\x00\x00\x2a\x25\xe0\x00\x00\x00\x00\x00Cookie: mstshash=nmap\r\n\x01\x00\x08\x00\x0b\x00\x00\x00\
\x30\x37\xa0\x03\x02\x01\x60\xa1\x30\x30\x2e\x30\x2c\xa0\x2a\x04\x28\
NTLMSSP\0\x01\0\0\0\xb7\x82\x08\xe2\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x0a\0\x63\x45\0\0\0\x0f";

    /// The Connection Confirm selecting `protocol`.
    fn confirm(protocol: u8) -> Vec<u8> {
        let mut cc = b"\x03\x00\x00\x13\x0e\xd0\x00\x00\x12\x34\x00\x02\x1f\x08\x00".to_vec();
        cc.extend_from_slice(&[protocol, 0, 0, 0]);
        cc
    }

    /// What the responder says after its answer to the first turn of `input`.
    fn after_first_turn(input: &[u8]) -> After {
        let settings = crate::protocols::testing::settings();
        let ctx = Context {
            client: crate::protocols::testing::CLIENT.parse().unwrap(),
            server: "198.51.100.2:3389".parse().unwrap(),
            settings: &settings,
            random: 1,
            now: crate::protocols::testing::now(),
        };
        let mut rdp = Rdp::new(&ctx);
        let Framing::Complete(len) = rdp.frame(input, 0) else {
            panic!("not one turn")
        };
        let turn = rdp.parse(&input[..len]);
        rdp.reply(&turn, &ctx, &mut Vec::new())
    }

    /// The NTLM CHALLENGE inside a TSRequest we sent, and the TSRequest's version.
    fn challenge_in(reply: &[u8]) -> (Option<i64>, &[u8]) {
        let request = credssp::parse(reply).unwrap();
        let token = request.nego_token.unwrap();
        let at = ntlm::find(token).unwrap();
        assert_eq!(ntlm::parse(&token[at..]), Ok(ntlm::Message::Challenge));
        (request.version, &token[at..])
    }

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    #[test]
    fn credssp_is_selected_and_tls_started() {
        let t = converse::<Rdp>(false, &[&xfreerdp_nla()[..0x2d]]);
        let turn = &t.turns[0];
        assert_eq!(turn.ecs["user"]["name"], "rdpuser");
        assert_eq!(turn.spip["rdp"]["cookie"], "mstshash=rdpuser");
        assert_eq!(
            turn.spip["rdp"]["requested_protocols"],
            serde_json::json!(["tls", "hybrid"])
        );
        assert_eq!(turn.reply, confirm(2));
        assert!(!turn.close);
        assert_eq!(turn.protocol, Some("rdp"));
        assert_eq!(after_first_turn(&xfreerdp_nla()), After::StartTls);
        // HYBRID_EX alone is selected as it is; TLS alone too.
        let mut cr = xfreerdp_nla()[..0x2d].to_vec();
        cr[0x29] = 8;
        assert_eq!(converse::<Rdp>(false, &[&cr]).turns[0].reply, confirm(8));
        assert_eq!(after_first_turn(&cr), After::StartTls);
        cr[0x29] = 1;
        assert_eq!(converse::<Rdp>(false, &[&cr]).turns[0].reply, confirm(1));
        assert_eq!(after_first_turn(&cr), After::StartTls);
    }

    #[test]
    fn xfreerdp_nla_is_challenged_recorded_and_refused() {
        let t = converse::<Rdp>(false, &[&xfreerdp_nla()]);
        let [_, negotiate, authenticate] = &t.turns[..] else {
            panic!("{} turns", t.turns.len())
        };
        // NEGOTIATE: our CHALLENGE in a version 6 TSRequest, named after banner_hostname.
        assert_eq!(negotiate.spip["rdp"]["message"], "credssp");
        assert_eq!(negotiate.spip["rdp"]["credssp_version"], 6);
        assert_eq!(negotiate.spip["ntlm"]["message"], "negotiate");
        assert!(!negotiate.summary && !negotiate.close);
        let (version, challenge) = challenge_in(&negotiate.reply);
        assert_eq!(version, Some(6));
        assert!(negotiate.reply.len() < 300, "{}", negotiate.reply.len());
        let names = utf16("UBUNTU");
        assert!(challenge.windows(names.len()).any(|w| w == names));
        assert_eq!(
            ntlm::challenge_timestamp(challenge),
            Some(crate::protocols::testing::NOW_FILETIME)
        );
        let server_challenge: String = challenge[24..32].iter().map(|b| format!("{b:02x}")).collect();
        // AUTHENTICATE: who, from where, the hash; refused with STATUS_LOGON_FAILURE.
        assert_eq!(authenticate.ecs["user"]["name"], "rdpuser");
        assert_eq!(authenticate.ecs["user"]["domain"], "CORP");
        let ntlm = &authenticate.spip["ntlm"];
        assert_eq!(ntlm["message"], "authenticate");
        assert_eq!(ntlm["workstation"], "vm");
        assert_eq!(ntlm["response"], "v2");
        assert_eq!(ntlm["version"], "6.1.7601");
        let line = ntlm["hashcat"].as_str().unwrap();
        assert!(
            line.starts_with(&format!(
                "rdpuser::CORP:{server_challenge}:66bbe4ff29179e1351446a85bd76107b:0101"
            )),
            "{line}"
        );
        assert_eq!(
            authenticate.reply,
            b"\x30\x0d\xa0\x03\x02\x01\x06\xa4\x06\x02\x04\xc0\x00\x00\x6d"
        );
        assert!(authenticate.close);
        assert_eq!(authenticate.protocol, Some("rdp"));
    }

    #[test]
    fn nmap_rdp_ntlm_info_reads_our_target_info() {
        let t = converse::<Rdp>(false, &[NMAP_NTLM_INFO]);
        let [cr, negotiate] = &t.turns[..] else {
            panic!("{} turns", t.turns.len())
        };
        assert_eq!(cr.reply, confirm(2));
        assert_eq!(cr.ecs["user"]["name"], "nmap");
        assert_eq!(negotiate.spip["rdp"]["credssp_version"], 0x60);
        // We answer with our version, not nmap's.
        let (version, challenge) = challenge_in(&negotiate.reply);
        assert_eq!(version, Some(6));
        // The version nmap prints as Product_Version: 10.0.17763.
        assert_eq!(&challenge[48..52], &[10, 0, 0x63, 0x45]);
    }

    /// `token` in a TSRequest of `version`.
    fn ts_request(version: u8, token: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        credssp::write_nego_token_head(&mut out, version, token.len());
        out.extend_from_slice(token);
        out
    }

    /// The xfreerdp capture's NTLM messages, bare.
    fn xfreerdp_ntlm() -> (Vec<u8>, Vec<u8>) {
        let stream = xfreerdp_nla();
        let tokens: Vec<Vec<u8>> = [0x2d, 0x2d + 0x5d]
            .iter()
            .map(|&at| {
                let token = credssp::parse(&stream[at..]).unwrap().nego_token.unwrap();
                token.to_vec()
            })
            .collect();
        (tokens[0].clone(), tokens[1].clone())
    }

    #[test]
    fn spnego_wrapped_ntlm_is_answered_wrapped() {
        let (negotiate, authenticate) = xfreerdp_ntlm();
        // NegTokenInit: [APPLICATION 0] { SPNEGO OID, [0] { mechTypes [0] { NTLMSSP },
        // mechToken [2] { OCTET STRING } } }.
        let mut init_fields = b"\xa0\x0e\x30\x0c\x06\x0a\x2b\x06\x01\x04\x01\x82\x37\x02\x02\x0a".to_vec();
        der::write_header(&mut init_fields, der::context(2), der::size(negotiate.len()));
        der::write_header(&mut init_fields, der::OCTET_STRING, negotiate.len());
        init_fields.extend_from_slice(&negotiate);
        let mut init = Vec::new();
        der::write_header(&mut init, der::SEQUENCE, init_fields.len());
        init.extend_from_slice(&init_fields);
        let mut spnego = b"\x06\x06\x2b\x06\x01\x05\x05\x02".to_vec();
        der::write_header(&mut spnego, der::context(0), init.len());
        spnego.extend_from_slice(&init);
        let mut wrapped = Vec::new();
        der::write_header(&mut wrapped, 0x60, spnego.len());
        wrapped.extend_from_slice(&spnego);
        // NegTokenResp: [1] { SEQUENCE { responseToken [2] { OCTET STRING } } }.
        let mut resp = Vec::new();
        let octets = der::size(authenticate.len());
        der::write_header(&mut resp, der::context(1), der::size(der::size(octets)));
        der::write_header(&mut resp, der::SEQUENCE, der::size(octets));
        der::write_header(&mut resp, der::context(2), octets);
        der::write_header(&mut resp, der::OCTET_STRING, authenticate.len());
        resp.extend_from_slice(&authenticate);

        let mut stream = xfreerdp_nla()[..0x2d].to_vec();
        stream.extend_from_slice(&ts_request(6, &wrapped));
        stream.extend_from_slice(&ts_request(6, &resp));
        let t = converse::<Rdp>(false, &[&stream]);
        assert_eq!(t.turns.len(), 3);
        let reply = credssp::parse(&t.turns[1].reply).unwrap();
        let token = reply.nego_token.unwrap();
        // A NegTokenResp, accept-incomplete, NTLMSSP, around the CHALLENGE.
        let (resp, rest) = der::Element::read(token).unwrap();
        assert!(rest.is_empty());
        assert_eq!(resp.tag, der::context(1));
        assert_eq!(&token[ntlm::find(token).unwrap()..][..12], b"NTLMSSP\0\x02\0\0\0");
        assert_eq!(t.turns[2].ecs["user"]["name"], "rdpuser");
        assert!(t.turns[2].spip["ntlm"]["hashcat"].is_string());
        assert!(t.turns[2].close);
        assert_splits_agree::<Rdp>(false, &stream);
    }

    #[test]
    fn credssp_2_gets_no_error_code_only_a_hang_up() {
        let (negotiate, authenticate) = xfreerdp_ntlm();
        let mut stream = xfreerdp_nla()[..0x2d].to_vec();
        stream.extend_from_slice(&ts_request(2, &negotiate));
        stream.extend_from_slice(&ts_request(2, &authenticate));
        let t = converse::<Rdp>(false, &[&stream]);
        assert_eq!(challenge_in(&t.turns[1].reply).0, Some(2));
        assert!(t.turns[2].reply.is_empty() && t.turns[2].close);
        assert_eq!(t.turns[2].ecs["user"]["name"], "rdpuser");
    }

    #[test]
    fn no_ntlm_or_no_tsrequest_ends_it() {
        let mut stream = xfreerdp_nla()[..0x2d].to_vec();
        // Kerberos in place of NTLM: a standalone server cannot; a bare SEQUENCE; garbage.
        for after in [&ts_request(6, b"\x60\x03\x06\x01\x00")[..], b"\x30\x00", b"\x16\x03\x01"] {
            stream.truncate(0x2d);
            stream.extend_from_slice(after);
            let t = converse::<Rdp>(false, &[&stream]);
            assert_eq!(t.turns.len(), 2);
            assert!(t.turns[1].reply.is_empty() && t.turns[1].close);
            assert_eq!(t.turns[1].protocol, Some("rdp"));
        }
    }

    #[test]
    fn hostile_tsrequest_lengths_wait_for_the_pause() {
        let mut stream = xfreerdp_nla()[..0x2d].to_vec();
        // A TSRequest declaring 4 GiB, and one just over our limit: both end at the pause.
        for header in [&b"\x30\x84\xff\xff\xff\xff"[..], b"\x30\x83\x01\x00\x00"] {
            stream.truncate(0x2d);
            stream.extend_from_slice(header);
            stream.resize(stream.len() + 5000, 0xa0);
            let t = converse::<Rdp>(false, &[&stream[..0x2d + 100], &stream[0x2d + 100..]]);
            assert_eq!(t.turns.len(), 2);
            assert_eq!(t.turns[1].bytes.len(), stream.len() - 0x2d);
            assert!(t.turns[1].reply.is_empty() && t.turns[1].close);
        }
    }

        #[test]
    fn standard_security_is_confirmed_and_the_client_core_data_recorded() {
        let t = converse::<Rdp>(false, &[&xfreerdp_standard()]);
        assert_eq!(t.turns.len(), 2);
        assert_eq!(t.turns[0].ecs["user"]["name"], "rdpuser");
        assert_eq!(
            t.turns[0].reply,
            confirm(0)
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
        assert_splits_agree::<Rdp>(false, &xfreerdp_nla());
        assert_splits_agree::<Rdp>(false, NMAP_NTLM_INFO);
        assert_splits_agree::<Rdp>(false, &xfreerdp_standard());
    }

    #[test]
    fn detection() {
        assert_eq!(Rdp::detect(&xfreerdp_nla()), Detection::Match);
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
        // The NLA stream: every prefix, and the TSRequests garbled behind intact headers.
        let input = xfreerdp_nla();
        for n in 0..=input.len() {
            let _ = converse::<Rdp>(false, &[&input[..n]]);
        }
        for seed in 1..64u8 {
            let mut bad = input.clone();
            for (i, b) in bad.iter_mut().enumerate().skip(0x2d) {
                *b = b.wrapping_mul(seed) ^ (i as u8);
            }
            for at in [0x2d, 0x2d + 0x5d] {
                bad[at..at + 2].copy_from_slice(&input[at..at + 2]);
            }
            bad[0x8a..0x8e].copy_from_slice(&input[0x8a..0x8e]);
            let _ = converse::<Rdp>(false, &[&bad]);
        }
    }

    #[test]
    fn hostile_input_gets_a_small_reply() {
        let mut big = xfreerdp_nla()[..11].to_vec();
        big.extend_from_slice(b"Cookie: mstshash=");
        big.resize(65_000, b'A');
        big[2..4].copy_from_slice(&65_000u16.to_be_bytes());
        big[4] = 0xff;
        let t = converse::<Rdp>(false, &[&big]);
        assert_eq!(t.turns.len(), 1);
        assert!(t.sent().len() <= 19);
    }
}
