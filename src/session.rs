//! The sans-IO connection core: where a client turn ends and what we answer.
//!
//! The network loop owns the socket and the buffers. It hands [`Session::frame`] the bytes of
//! the current turn received so far; the session says whether the turn is complete (and how
//! long it is) or more bytes are needed. For a complete turn, [`Session::reply`] writes the
//! answer that draws out the client's next message and says whether to go on.
//!
//! A turn is what a client sends before it waits for us: an HTTP request head plus its declared
//! body, an SSH identification line, one SSH binary packet, a TLS ClientHello (all its records),
//! or, for anything else, whatever one read delivered.

use crate::proto::http::{self, BodyLength, Head};
use crate::proto::tls::{self, HelloStatus};
use crate::record::format_ip;
use std::net::IpAddr;

/// What kind of client message a turn holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnKind {
    Http,
    SshBanner,
    SshPacket,
    TlsHandshake,
    Other,
}

/// The verdict on the bytes of the current turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Wait for more bytes (within the read timeout).
    NeedMore,
    /// The first `len` bytes are one turn; anything after belongs to the next.
    Complete { len: usize, kind: TurnKind },
}

/// What the loop does after replying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    KeepOpen,
    Close,
}

/// Per-connection protocol state.
#[derive(Debug, Default, Clone)]
pub struct Session {
    /// The client sent an SSH identification line: what follows are binary packets.
    ssh: bool,
    turns: u32,
}

/// Longest SSH identification line (RFC 4253: 255 bytes incl. CRLF).
const SSH_BANNER_MAX: usize = 255;
/// Largest SSH packet we wait for; bigger length fields are garbage.
const SSH_PACKET_MAX: usize = 256 * 1024;

impl Session {
    pub fn new() -> Self {
        Session::default()
    }

    /// Turns completed so far.
    pub fn turns(&self) -> u32 {
        self.turns
    }

    /// Counts a turn that ended without a reply (cut by a timeout or the connection's end).
    pub fn count_turn(&mut self) {
        self.turns += 1;
    }

    /// Decides whether `pending` (the current turn's bytes so far, never empty) is complete.
    /// `room` is how many more bytes the payload cap allows: a turn never waits past it.
    pub fn frame(&self, pending: &[u8], room: usize) -> Framing {
        let framing = self.frame_unbounded(pending);
        match framing {
            Framing::NeedMore if pending.len() >= room => Framing::Complete {
                len: pending.len().min(room),
                kind: self.guess_kind(pending),
            },
            Framing::Complete { len, kind } if len > room => Framing::Complete { len: room, kind },
            other => other,
        }
    }

    fn guess_kind(&self, pending: &[u8]) -> TurnKind {
        if self.ssh {
            TurnKind::SshPacket
        } else if pending.first() == Some(&0x16) {
            TurnKind::TlsHandshake
        } else if !matches!(http::parse_request_head(pending), Head::NotHttp) {
            TurnKind::Http
        } else {
            TurnKind::Other
        }
    }

    fn frame_unbounded(&self, pending: &[u8]) -> Framing {
        if self.ssh {
            return frame_ssh_packet(pending);
        }
        if pending.starts_with(b"SSH-") || b"SSH-".starts_with(pending) {
            return frame_ssh_banner(pending);
        }
        if pending.first() == Some(&0x16) {
            return frame_tls_handshake(pending);
        }
        match http::parse_request_head(pending) {
            Head::Complete(head) => frame_http_body(head, pending),
            Head::Partial => Framing::NeedMore,
            Head::NotHttp => Framing::Complete {
                len: pending.len(),
                kind: TurnKind::Other,
            },
        }
    }

    /// Writes the answer to a complete turn into `out` and says whether to go on. `http` is
    /// the turn's parsed request head (from the turn's analysis) when it is an HTTP turn.
    pub fn reply(
        &mut self,
        kind: TurnKind,
        http: Option<&http::RequestHead<'_>>,
        client_ip: IpAddr,
        ssh_banner: &str,
        out: &mut Vec<u8>,
    ) -> After {
        self.turns += 1;
        match kind {
            TurnKind::Http => {
                let (keep_alive, is_head) =
                    http.map_or((false, false), |h| (h.keep_alive(), h.method == b"HEAD"));
                write_http_ok(out, client_ip, keep_alive, is_head);
                if keep_alive {
                    After::KeepOpen
                } else {
                    After::Close
                }
            }
            TurnKind::SshBanner => {
                self.ssh = true;
                out.extend_from_slice(ssh_banner.as_bytes());
                out.extend_from_slice(b"\r\n");
                After::KeepOpen
            }
            // The KEXINIT (or whatever packet) is what we came for; a low-interaction sensor
            // cannot go on with key exchange, so end here rather than hold the socket.
            TurnKind::SshPacket => After::Close,
            TurnKind::TlsHandshake | TurnKind::Other => {
                let mut ip = [0u8; 46];
                let n = format_ip(&mut ip, client_ip);
                out.extend_from_slice(&ip[..n]);
                After::KeepOpen
            }
        }
    }
}

fn write_http_ok(out: &mut Vec<u8>, client_ip: IpAddr, keep_alive: bool, is_head: bool) {
    let mut ip = [0u8; 46];
    let ip_len = format_ip(&mut ip, client_ip);
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ");
    crate::json::write_u64(out, ip_len as u64);
    out.extend_from_slice(if keep_alive {
        b"\r\nConnection: keep-alive\r\n\r\n"
    } else {
        b"\r\nConnection: close\r\n\r\n"
    });
    if !is_head {
        out.extend_from_slice(&ip[..ip_len]);
    }
}

fn frame_http_body(head: http::RequestHead<'_>, pending: &[u8]) -> Framing {
    let body = &pending[head.head_len..];
    let len = match head.body_length() {
        BodyLength::None => head.head_len,
        BodyLength::ContentLength(n) => {
            if (body.len() as u64) < n {
                return Framing::NeedMore;
            }
            head.head_len + n as usize
        }
        BodyLength::Chunked => match http::chunked_body_end(body) {
            Some(end) => head.head_len + end,
            None => return Framing::NeedMore,
        },
    };
    Framing::Complete {
        len,
        kind: TurnKind::Http,
    }
}

fn frame_ssh_banner(pending: &[u8]) -> Framing {
    match pending.iter().position(|&b| b == b'\n') {
        Some(i) => Framing::Complete {
            len: i + 1,
            kind: TurnKind::SshBanner,
        },
        None if pending.len() >= SSH_BANNER_MAX => Framing::Complete {
            len: pending.len(),
            kind: TurnKind::Other,
        },
        None => Framing::NeedMore,
    }
}

/// One SSH binary packet: `uint32 packet_length` then that many bytes.
fn frame_ssh_packet(pending: &[u8]) -> Framing {
    let Some(len_bytes) = pending.first_chunk::<4>() else {
        return Framing::NeedMore;
    };
    let packet_len = u32::from_be_bytes(*len_bytes) as usize;
    if packet_len == 0 || packet_len > SSH_PACKET_MAX {
        // Not a packet we could parse: take what came as it is.
        return Framing::Complete {
            len: pending.len(),
            kind: TurnKind::SshPacket,
        };
    }
    let total = 4 + packet_len;
    if pending.len() < total {
        Framing::NeedMore
    } else {
        Framing::Complete {
            len: total,
            kind: TurnKind::SshPacket,
        }
    }
}

/// TLS records until the first handshake message (the ClientHello) is complete; anything
/// that is not a ClientHello is taken as it came.
fn frame_tls_handshake(pending: &[u8]) -> Framing {
    let len = match tls::client_hello_status(pending) {
        HelloStatus::Complete { records_len, .. } => records_len,
        HelloStatus::Incomplete => return Framing::NeedMore,
        HelloStatus::Invalid => pending.len(),
    };
    Framing::Complete {
        len,
        kind: TurnKind::TlsHandshake,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    fn head(req: &[u8]) -> Option<http::RequestHead<'_>> {
        match http::parse_request_head(req) {
            Head::Complete(h) => Some(h),
            _ => None,
        }
    }

    fn frame(s: &Session, b: &[u8]) -> Framing {
        s.frame(b, 65536)
    }

    #[test]
    fn http_split_in_segments_is_one_turn() {
        let s = Session::new();
        let req = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody";
        for cut in 1..req.len() {
            assert_eq!(frame(&s, &req[..cut]), Framing::NeedMore, "cut at {cut}");
        }
        assert_eq!(
            frame(&s, req),
            Framing::Complete {
                len: req.len(),
                kind: TurnKind::Http
            }
        );
    }

    #[test]
    fn pipelined_requests_are_separate_turns() {
        let s = Session::new();
        let two = b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n";
        assert_eq!(
            frame(&s, two),
            Framing::Complete {
                len: 19,
                kind: TurnKind::Http
            }
        );
    }

    #[test]
    fn chunked_body() {
        let s = Session::new();
        let req = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(frame(&s, &req[..req.len() - 2]), Framing::NeedMore);
        assert_eq!(
            frame(&s, req),
            Framing::Complete {
                len: req.len(),
                kind: TurnKind::Http
            }
        );
    }

    #[test]
    fn payload_cap_bounds_a_turn() {
        let s = Session::new();
        let req = b"POST / HTTP/1.1\r\nContent-Length: 1000000\r\n\r\nabc";
        assert_eq!(
            s.frame(req, 40),
            Framing::Complete {
                len: 40,
                kind: TurnKind::Http
            }
        );
        assert_eq!(
            s.frame(b"GET / HTTP/1.1\r\n", 10),
            Framing::Complete {
                len: 10,
                kind: TurnKind::Http
            }
        );
    }

    #[test]
    fn other_bytes_are_taken_as_they_come() {
        let s = Session::new();
        assert_eq!(
            frame(&s, b"hello\n"),
            Framing::Complete {
                len: 6,
                kind: TurnKind::Other
            }
        );
        assert_eq!(
            frame(&s, b"\x00\x01"),
            Framing::Complete {
                len: 2,
                kind: TurnKind::Other
            }
        );
    }

    #[test]
    fn ssh_banner_then_packet() {
        let mut s = Session::new();
        assert_eq!(frame(&s, b"SS"), Framing::NeedMore);
        assert_eq!(frame(&s, b"SSH-2.0-x"), Framing::NeedMore);
        let banner = b"SSH-2.0-OpenSSH_9.6\r\n";
        assert_eq!(
            frame(&s, banner),
            Framing::Complete {
                len: banner.len(),
                kind: TurnKind::SshBanner
            }
        );
        let mut out = Vec::new();
        assert_eq!(
            s.reply(TurnKind::SshBanner, None, IP, "SSH-2.0-Test", &mut out),
            After::KeepOpen
        );
        assert_eq!(out, b"SSH-2.0-Test\r\n");
        let packet = [0, 0, 0, 6, 4, 20, 1, 2, 3, 4];
        assert_eq!(frame(&s, &packet[..7]), Framing::NeedMore);
        assert_eq!(
            frame(&s, &packet),
            Framing::Complete {
                len: 10,
                kind: TurnKind::SshPacket
            }
        );
    }

    #[test]
    fn tls_hello_across_records() {
        let s = Session::new();
        // Handshake header says 6 bytes of body; split over two records (4+2 / 4 bytes).
        let mut stream = vec![0x16, 3, 1, 0, 6, 1, 0, 0, 6, 0xaa, 0xbb];
        stream.extend_from_slice(&[0x16, 3, 1, 0, 4, 0xcc, 0xdd, 0xee, 0xff]);
        assert_eq!(frame(&s, &stream[..11]), Framing::NeedMore);
        assert_eq!(frame(&s, &stream[..15]), Framing::NeedMore);
        assert_eq!(
            frame(&s, &stream),
            Framing::Complete {
                len: 20,
                kind: TurnKind::TlsHandshake
            }
        );
        // Garbage after a record header: what we have.
        assert_eq!(
            frame(&s, &[0x16, 0x99, 0x99, 0, 1, 0]),
            Framing::Complete {
                len: 6,
                kind: TurnKind::TlsHandshake
            }
        );
    }

    #[test]
    fn http_reply_echoes_client_ip() {
        let mut s = Session::new();
        let mut out = Vec::new();
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            s.reply(TurnKind::Http, head(req).as_ref(), IP, "", &mut out),
            After::KeepOpen
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.ends_with("\r\n\r\n192.0.2.7"));
        assert!(text.contains("Content-Length: 9\r\n"));
        let mut out = Vec::new();
        let req = b"HEAD / HTTP/1.0\r\n\r\n";
        assert_eq!(
            s.reply(TurnKind::Http, head(req).as_ref(), IP, "", &mut out),
            After::Close
        );
        assert!(out.ends_with(b"\r\n\r\n"));
    }

    #[test]
    fn never_panics_on_prefixes_of_anything() {
        let inputs: [&[u8]; 4] = [
            b"SSH-2.0-x\r\n\x00\x00\x00\x05\x01\x14abc",
            b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            b"\xff\x00\x16",
        ];
        for input in inputs {
            for cut in 1..=input.len() {
                let _ = Session::new().frame(&input[..cut], 8);
                let _ = Session {
                    ssh: true,
                    turns: 1,
                }
                .frame(&input[..cut], 65536);
            }
        }
    }
}
