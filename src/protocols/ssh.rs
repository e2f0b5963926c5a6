//! SSH: the client's identification line, then binary packets. We send our identification
//! (at accept on SSH ports, else in answer to the client's), record the KEXINIT's HASSH, and
//! hang up there: a low-interaction sensor cannot go on with the key exchange.

use super::{After, Context, Detection, Framing, Responder, TurnFields};
use crate::fingerprint::{self, SshClient};
use crate::json::JsonWriter;

/// Longest identification line (RFC 4253: 255 bytes incl. CRLF).
const BANNER_MAX: usize = 255;
/// Largest packet we wait for; bigger length fields are garbage.
const PACKET_MAX: usize = 256 * 1024;

pub enum Ssh {
    /// Waiting for the client's identification line; `greeted`: ours is already out.
    Identification { greeted: bool },
    /// Binary packets.
    Packets,
}

pub struct SshTurn<'a> {
    client: Option<SshClient<'a>>,
}

impl Responder for Ssh {
    const NAME: &'static str = "ssh";
    const DEFAULT_PORTS: &'static [u16] = &[22, 2222];
    const OVERRIDES_GREETING: bool = true;
    type Turn<'a> = SshTurn<'a>;

    fn new(_ctx: &Context<'_>) -> Self {
        Ssh::Identification { greeted: false }
    }

    fn detect(first: &[u8]) -> Detection {
        if first.starts_with(b"SSH-") {
            Detection::Match
        } else if b"SSH-".starts_with(first) {
            Detection::NeedMore
        } else {
            Detection::NoMatch
        }
    }

    fn greeting(&mut self, ctx: &Context<'_>, out: &mut Vec<u8>) {
        write_identification(ctx, out);
        *self = Ssh::Identification { greeted: true };
    }

    fn frame(&mut self, pending: &[u8], new_from: usize) -> Framing {
        match self {
            Ssh::Identification { .. } => match memchr::memchr(b'\n', &pending[new_from..]) {
                Some(i) => Framing::Complete(new_from + i + 1),
                None if pending.len() >= BANNER_MAX => Framing::AtPause,
                None => Framing::NeedMore,
            },
            Ssh::Packets => {
                let Some(len) = pending.first_chunk::<4>() else {
                    return Framing::NeedMore;
                };
                let len = u32::from_be_bytes(*len) as usize;
                if len == 0 || len > PACKET_MAX {
                    return Framing::AtPause;
                }
                if pending.len() < 4 + len {
                    Framing::NeedMore
                } else {
                    Framing::Complete(4 + len)
                }
            }
        }
    }

    fn parse<'a>(&self, turn: &'a [u8]) -> SshTurn<'a> {
        SshTurn {
            client: fingerprint::ssh_client(turn),
        }
    }

    fn reply(&mut self, turn: &SshTurn<'_>, ctx: &Context<'_>, out: &mut Vec<u8>) -> After {
        match self {
            Ssh::Identification { greeted } => {
                if turn.client.as_ref().and_then(|c| c.banner).is_none() {
                    // Not an identification line: keep waiting for one.
                    return After::KeepOpen;
                }
                if !*greeted {
                    write_identification(ctx, out);
                }
                *self = Ssh::Packets;
                After::KeepOpen
            }
            // The KEXINIT (or whatever packet) is what we came for.
            Ssh::Packets => After::Close,
        }
    }
}

fn write_identification(ctx: &Context<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(ctx.settings.ssh_banner.as_bytes());
    out.extend_from_slice(b"\r\n");
}

impl TurnFields for SshTurn<'_> {
    fn protocol(&self) -> Option<&'static str> {
        self.client.as_ref().map(|_| "ssh")
    }

    fn write_ecs(&self, w: &mut JsonWriter<'_>) {
        if let Some(c) = self.client.as_ref().filter(|c| c.hassh.is_some()) {
            w.begin_object("ssh");
            c.write_fields(w);
            w.end_object();
        }
    }

    fn write_spip(&self, w: &mut JsonWriter<'_>) {
        if let Some(c) = &self.client {
            c.write_spip_fields(w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::testing::{assert_splits_agree, converse};

    fn kexinit_packet(lists: usize) -> Vec<u8> {
        let mut payload = vec![20u8];
        payload.extend_from_slice(&[7; 16]);
        for i in 0..lists {
            let list = format!("alg{i}");
            payload.extend_from_slice(&(list.len() as u32).to_be_bytes());
            payload.extend_from_slice(list.as_bytes());
        }
        let pad = 4;
        let mut packet = ((payload.len() + 1 + pad) as u32).to_be_bytes().to_vec();
        packet.push(pad as u8);
        packet.extend_from_slice(&payload);
        packet.extend_from_slice(&[0; 4]);
        packet
    }

    #[test]
    fn banner_then_kexinit_then_close() {
        let mut input = b"SSH-2.0-OpenSSH_9.6\r\n".to_vec();
        input.extend_from_slice(&kexinit_packet(10));
        assert_splits_agree::<Ssh>(false, &input);
        let t = converse::<Ssh>(false, &[&input]);
        assert_eq!(t.turns.len(), 2);
        assert!(t.turns[0].reply.starts_with(b"SSH-2.0-OpenSSH_9.2p1"));
        assert_eq!(t.turns[0].spip["ssh"]["client_banner"], "SSH-2.0-OpenSSH_9.6");
        assert!(t.turns[1].ecs["ssh"]["client"]["hash"]["hassh"].is_string());
        assert!(t.turns[1].close);
    }

    #[test]
    fn greeted_on_port_22_then_no_second_banner() {
        let t = converse::<Ssh>(true, &[b"SSH-2.0-x\r\n"]);
        assert!(t.greeting.starts_with(b"SSH-2.0-"));
        assert!(t.turns[0].reply.is_empty());
    }

    #[test]
    fn hassh_without_the_language_lists() {
        let mut input = b"SSH-2.0-Go\r\n".to_vec();
        input.extend_from_slice(&kexinit_packet(8));
        let t = converse::<Ssh>(false, &[&input]);
        assert!(t.turns[1].ecs["ssh"]["client"]["hash"]["hassh"].is_string());
    }
}
