//! VNC / RFB (server speaks first), like libvncserver (x11vnc 0.9) with a password set: the
//! `RFB 003.008` greeting, VNC authentication as the only security type, a 16-byte challenge,
//! the client's DES response, then a failed SecurityResult (`password check failed!`).
//! RFB 3.3 clients are told the security type (they do not choose) and get no reason string,
//! as the protocol says.

use super::{After, Context, Framing, Responder, TurnFields};
use crate::json::JsonWriter;

pub struct Vnc {
    phase: Phase,
}

enum Phase {
    /// Greeting sent: waiting for the client's 12-byte version.
    Version { challenge: [u8; 16] },
    /// Security types offered (3.7 and 3.8): waiting for the client's choice.
    SecurityType { challenge: [u8; 16], minor: Minor },
    /// Challenge sent: waiting for the 16-byte DES response.
    Response { challenge: [u8; 16], minor: Minor },
    /// The server has hung up.
    Done,
}

/// The protocol version agreed on (what changes the server's messages).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Minor {
    /// 3.3: the server picks the security type; failures carry no reason.
    V3,
    /// 3.7: the client picks; failures carry no reason.
    V7,
    /// 3.8: the client picks; failures carry a reason string.
    V8,
}

const GREETING: &[u8] = b"RFB 003.008\n";
const VNC_AUTH: u8 = 2;
const FAILED_REASON: &[u8] = b"password check failed!";

/// One client message.
pub enum VncTurn<'a> {
    /// `RFB xxx.yyy\n`.
    Version(&'a [u8]),
    SecurityType(u8),
    AuthResponse {
        response: &'a [u8],
        challenge: [u8; 16],
    },
    /// Anything else (or a message cut short).
    Malformed,
}

/// The minor version of a well-formed `RFB 003.xxx\n`, as the server will speak it.
fn minor(version: &[u8]) -> Option<Minor> {
    let [b'R', b'F', b'B', b' ', a, b, c, b'.', d, e, f, b'\n'] = *version else {
        return None;
    };
    let (major, minor) = ([a, b, c], [d, e, f]);
    if !minor.iter().all(u8::is_ascii_digit) || &major != b"003" {
        return None;
    }
    Some(match &minor {
        b"007" => Minor::V7,
        // 3.8 and the vendor versions above it (Apple's 3.889) speak 3.8.
        m if m > b"007" => Minor::V8,
        _ => Minor::V3,
    })
}

fn security_result_failed(out: &mut Vec<u8>, minor: Minor, reason: &[u8]) {
    out.extend_from_slice(&1u32.to_be_bytes());
    if minor == Minor::V8 {
        out.extend_from_slice(&(reason.len() as u32).to_be_bytes());
        out.extend_from_slice(reason);
    }
}

impl Responder for Vnc {
    const NAME: &'static str = "vnc";
    const DEFAULT_PORTS: &'static [u16] = &[
        5900, 5901, 5902, 5903, 5904, 5905, 5906, 5907, 5908, 5909, 5910,
    ];
    type Turn<'a> = VncTurn<'a>;

    fn new(ctx: &Context<'_>) -> Self {
        Vnc {
            phase: Phase::Version {
                challenge: ctx.random_bytes::<16>(0x0076_6e63),
            },
        }
    }

    fn greeting(&mut self, _ctx: &Context<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(GREETING);
    }

    fn frame(&mut self, pending: &[u8], _new_from: usize) -> Framing {
        let len = match self.phase {
            Phase::Version { .. } => GREETING.len(),
            Phase::SecurityType { .. } => 1,
            Phase::Response { .. } => 16,
            Phase::Done => return Framing::AtPause,
        };
        if pending.len() < len {
            Framing::NeedMore
        } else {
            Framing::Complete(len)
        }
    }

    fn parse<'a>(&self, turn: &'a [u8]) -> VncTurn<'a> {
        match (&self.phase, turn) {
            (Phase::Version { .. }, _) if turn.len() == GREETING.len() => VncTurn::Version(turn),
            (Phase::SecurityType { .. }, [kind]) => VncTurn::SecurityType(*kind),
            (Phase::Response { challenge, .. }, _) if turn.len() == 16 => VncTurn::AuthResponse {
                response: turn,
                challenge: *challenge,
            },
            _ => VncTurn::Malformed,
        }
    }

    fn reply(&mut self, turn: &VncTurn<'_>, _ctx: &Context<'_>, out: &mut Vec<u8>) -> After {
        match (std::mem::replace(&mut self.phase, Phase::Done), turn) {
            (Phase::Version { challenge }, VncTurn::Version(version)) => {
                match minor(version) {
                    Some(Minor::V3) => {
                        out.extend_from_slice(&u32::from(VNC_AUTH).to_be_bytes());
                        out.extend_from_slice(&challenge);
                        self.phase = Phase::Response {
                            challenge,
                            minor: Minor::V3,
                        };
                    }
                    Some(minor) => {
                        out.extend_from_slice(&[1, VNC_AUTH]);
                        self.phase = Phase::SecurityType { challenge, minor };
                    }
                    // Not an RFB version: libvncserver hangs up.
                    None => return After::Close,
                }
                After::KeepOpen
            }
            (Phase::SecurityType { challenge, minor }, VncTurn::SecurityType(VNC_AUTH)) => {
                out.extend_from_slice(&challenge);
                self.phase = Phase::Response { challenge, minor };
                After::KeepOpen
            }
            (Phase::SecurityType { minor, .. }, VncTurn::SecurityType(_)) => {
                security_result_failed(out, minor, b"Security type not supported");
                After::Close
            }
            (Phase::Response { minor, .. }, VncTurn::AuthResponse { .. }) => {
                security_result_failed(out, minor, FAILED_REASON);
                After::Close
            }
            _ => After::Close,
        }
    }
}

impl TurnFields for VncTurn<'_> {
    fn protocol(&self) -> Option<&'static str> {
        match self {
            VncTurn::Malformed => None,
            _ => Some("vnc"),
        }
    }

    fn write_spip(&self, w: &mut JsonWriter<'_>) {
        w.begin_object("vnc");
        match self {
            VncTurn::Version(version) => {
                w.str("message", b"version");
                w.str("client_version", version.strip_suffix(b"\n").unwrap_or(version));
            }
            VncTurn::SecurityType(kind) => {
                w.str("message", b"security_type");
                w.u64("security_type", u64::from(*kind));
            }
            VncTurn::AuthResponse {
                response,
                challenge,
            } => {
                w.str("message", b"auth_response");
                w.hex("challenge", challenge);
                w.hex("auth_response", response);
            }
            VncTurn::Malformed => w.str("message", b"malformed"),
        }
        w.end_object();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::testing::{assert_splits_agree, converse};

    /// A RFB 3.8 viewer (TigerVNC, RealVNC, noVNC, nmap's vnc-info and vnc-brute): version,
    /// VNC authentication chosen, the DES response.
    const RESPONSE: [u8; 16] = [
        0x4d, 0x1f, 0x9c, 0x03, 0x51, 0xa8, 0x2e, 0x77, 0x90, 0x12, 0xfe, 0x6b, 0x08, 0xc4, 0x3a,
        0xd5,
    ];

    fn viewer_3_8() -> Vec<u8> {
        [&b"RFB 003.008\n"[..], &[VNC_AUTH], &RESPONSE].concat()
    }

    #[test]
    fn rfb_3_8_viewer_gets_challenge_and_failure() {
        let t = converse::<Vnc>(true, &[b"RFB 003.008\n", &[VNC_AUTH], &RESPONSE]);
        assert_eq!(t.greeting, b"RFB 003.008\n");
        assert_eq!(t.turns.len(), 3);
        assert_eq!(t.turns[0].spip["vnc"]["client_version"], "RFB 003.008");
        assert_eq!(t.turns[0].reply, [1, 2]);
        assert_eq!(t.turns[1].spip["vnc"]["security_type"], 2);
        let challenge = t.turns[1].reply.clone();
        assert_eq!(challenge.len(), 16);
        let auth = &t.turns[2];
        assert_eq!(auth.protocol, Some("vnc"));
        assert_eq!(
            auth.spip["vnc"]["auth_response"],
            "4d1f9c0351a82e779012fe6b08c43ad5"
        );
        let hex: String = challenge.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(auth.spip["vnc"]["challenge"], hex);
        assert_eq!(auth.reply, b"\0\0\0\x01\0\0\0\x16password check failed!");
        assert!(auth.close);
    }

    #[test]
    fn rfb_3_3_viewer_is_told_the_type_and_gets_no_reason() {
        // vncsnapshot 1.2a speaks 3.3 whatever the server offers; its answer (password
        // hunter2) to the challenge 00 01 .. 0f.
        let vncsnapshot = [
            0xae, 0x2f, 0xfb, 0x6b, 0x2f, 0xdd, 0x58, 0xfb, 0x77, 0x56, 0x79, 0x77, 0xd8, 0xd5,
            0xec, 0xe4,
        ];
        let t = converse::<Vnc>(true, &[b"RFB 003.003\n", &vncsnapshot]);
        assert_eq!(
            t.turns[1].spip["vnc"]["auth_response"],
            "ae2ffb6b2fdd58fb77567977d8d5ece4"
        );
        assert_eq!(t.turns[0].reply.len(), 20);
        assert_eq!(t.turns[0].reply[..4], [0, 0, 0, 2]);
        assert_eq!(t.turns[1].reply, [0, 0, 0, 1]);
        assert_eq!(
            t.turns[1].spip["vnc"]["challenge"].as_str().unwrap().len(),
            32
        );
        let t = converse::<Vnc>(true, &[b"RFB 003.007\n", &[VNC_AUTH], &RESPONSE]);
        assert_eq!(t.turns[2].reply, [0, 0, 0, 1]);
    }

    #[test]
    fn viewer_stream_splits_agree() {
        assert_splits_agree::<Vnc>(true, &viewer_3_8());
        assert_splits_agree::<Vnc>(true, &[&b"RFB 003.003\n"[..], &RESPONSE].concat());
    }

    #[test]
    fn not_rfb_or_other_security_types_end_the_conversation() {
        let t = converse::<Vnc>(true, &[b"GET / HTTP/1.1\r\n\r\n"]);
        assert!(t.turns[0].close && t.turns[0].reply.is_empty());
        assert_eq!(t.turns[0].spip["vnc"]["client_version"], "GET / HTTP/1");
        let t = converse::<Vnc>(true, &[b"RFB 003.008\n", &[1]]);
        assert!(t.turns[1].close);
        assert!(t.turns[1].reply.starts_with(&[0, 0, 0, 1]));
    }

    #[test]
    fn every_prefix_and_garbage_is_safe_and_bounded() {
        let stream = viewer_3_8();
        for n in 0..=stream.len() {
            let t = converse::<Vnc>(true, &[&stream[..n]]);
            assert!(t.sent().len() < 100);
        }
        let hostile: Vec<u8> = (0..65536u32).map(|i| (i * 7 + i / 251) as u8).collect();
        assert!(converse::<Vnc>(true, &[&hostile]).sent().len() < 100);
        let long = [&b"RFB 003.008\n"[..], &[VNC_AUTH], &[0x41; 65536]].concat();
        assert!(converse::<Vnc>(true, &[&long]).sent().len() < 100);
    }
}
