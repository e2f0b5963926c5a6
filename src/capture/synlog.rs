//! SYN-only scans: the firewall's SYN log (NFLOG), read over netlink on its own thread.
//!
//! `spip-agent redirect apply --syn-log` puts an nftables `log group N` (iptables `NFLOG`)
//! rule before the redirect, matching the first SYN of each new connection to a local address,
//! with only the headers copied. This thread binds to group N (`syn_log_group`) and feeds every
//! logged SYN to [`Summaries::syn_only`]: never a record per packet. The summary subtracts the
//! connections that were then accepted or shed, which leaves the SYNs that never completed a
//! handshake (see `scan::summary`).
//!
//! Why NFLOG and not AF_PACKET + BPF: binding the group needs CAP_NET_ADMIN once, at start,
//! and the kernel then sends only the packets the firewall rule chose (new SYNs to local
//! addresses, after the exclusions, at most [`SYN_LOG_SNAPLEN`] bytes each); a packet socket
//! needs CAP_NET_RAW, which also allows forging packets, and sees every frame of the host.
//!
//! The parser ([`parse_datagram`]) is IO-free and zero-copy: it walks the netlink messages and
//! attributes in the received buffer, checking every length before use.

use crate::ops::redirect::SYN_LOG_SNAPLEN;
use crate::stats::Counters;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
/// nfnetlink subsystem ULOG (NFLOG): message types are `(4 << 8) | msg`.
const NFULNL_MSG_PACKET: u16 = 4 << 8;
const NFULNL_MSG_CONFIG: u16 = (4 << 8) | 1;
const NFGENMSG_LEN: usize = 4;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_TIMEOUT: u16 = 4;
const NFULA_CFG_QTHRESH: u16 = 5;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;
/// Attribute type bits that are flags, not the type.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// Logged packets the kernel batches into one message, and how long it may hold them (1/100 s).
const QUEUE_THRESHOLD: u32 = 64;
const FLUSH_TIMEOUT_CS: u32 = 10;
/// How often the thread looks at the stop flag while idle.
const POLL: Duration = Duration::from_millis(200);
const RECV_BUFFER: usize = 1 << 16;
const SOCKET_BUFFER: usize = 4 << 20;

/// What one netlink datagram held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Logged packets that were not a parsable TCP SYN (malformed or another protocol).
    pub skipped: u64,
    /// An NLMSG_ERROR with a non-zero code (an errno, positive).
    pub error: Option<i32>,
}

/// Walks one netlink datagram and calls `syn(source, destination port)` for each logged SYN.
pub fn parse_datagram(mut buf: &[u8], mut syn: impl FnMut(IpAddr, u16)) -> Parsed {
    let mut parsed = Parsed::default();
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if len < NLMSG_HDRLEN || len > buf.len() {
            parsed.skipped += 1;
            break;
        }
        let body = &buf[NLMSG_HDRLEN..len];
        match kind {
            NFULNL_MSG_PACKET => match body.get(NFGENMSG_LEN..).and_then(payload_attribute) {
                Some(packet) => match tcp_syn(packet) {
                    Some((src, dport)) => syn(src, dport),
                    None => parsed.skipped += 1,
                },
                None => parsed.skipped += 1,
            },
            NLMSG_ERROR => {
                if let Some(code) = body.get(..4) {
                    let code = i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
                    if code != 0 {
                        parsed.error = Some(code.saturating_neg());
                    }
                }
            }
            NLMSG_DONE => {}
            _ => {}
        }
        buf = &buf[align4(len).min(buf.len())..];
    }
    parsed
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The NFULA_PAYLOAD attribute (the packet from its IP header) among `attrs`.
fn payload_attribute(mut attrs: &[u8]) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == NFULA_PAYLOAD {
            return Some(&attrs[4..len]);
        }
        attrs = &attrs[align4(len).min(attrs.len())..];
    }
    None
}

/// Source address and destination port of a TCP SYN (without ACK) starting at its IP header.
pub fn tcp_syn(packet: &[u8]) -> Option<(IpAddr, u16)> {
    const TCP: u8 = 6;
    let (src, tcp) = match packet.first()? >> 4 {
        4 => {
            let header_len = usize::from(packet[0] & 0x0f) * 4;
            if header_len < 20 || *packet.get(9)? != TCP {
                return None;
            }
            let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
            (IpAddr::V4(Ipv4Addr::from(src)), packet.get(header_len..)?)
        }
        6 => {
            // Extension headers before TCP are not followed: SYN scans do not send them.
            if *packet.get(6)? != TCP {
                return None;
            }
            let src: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
            (IpAddr::V6(Ipv6Addr::from(src)), packet.get(40..)?)
        }
        _ => return None,
    };
    let dport = u16::from_be_bytes([*tcp.get(2)?, *tcp.get(3)?]);
    // Flags: SYN set, ACK clear (only checked when the copy reaches them).
    match tcp.get(13) {
        Some(&flags) if flags & 0x12 != 0x02 => None,
        _ => Some((src, dport)),
    }
}

/// One NFULNL_MSG_CONFIG request for `group` with the given attributes.
fn config_message(group: u16, seq: u32, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&0u32.to_ne_bytes()); // length, set below
    m.extend_from_slice(&NFULNL_MSG_CONFIG.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: AF_UNSPEC, NFNETLINK_V0, the group (big endian).
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&group.to_be_bytes());
    for (kind, value) in attrs {
        let len = 4 + value.len();
        m.extend_from_slice(&(len as u16).to_ne_bytes()); // ok: our attributes are < 16 bytes
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(value);
        m.resize(align4(m.len()), 0);
    }
    let total = (m.len() as u32).to_ne_bytes();
    m[..4].copy_from_slice(&total);
    m
}

/// Why the SYN log could not start.
#[derive(Debug)]
pub struct SynLogError(String);

impl std::fmt::Display for SynLogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Opens a netlink socket bound to NFLOG `group` (needs CAP_NET_ADMIN).
pub fn open(group: u16) -> Result<Socket, SynLogError> {
    let fail = |what: &str, e: io::Error| {
        let hint = if e.raw_os_error() == Some(libc::EPERM) {
            " (binding an NFLOG group needs CAP_NET_ADMIN)"
        } else {
            ""
        };
        SynLogError(format!("syn_log_group = {group}: {what} failed: {e}{hint}"))
    };
    let socket = Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::RAW,
        Some(Protocol::from(libc::NETLINK_NETFILTER)),
    )
    .map_err(|e| fail("netlink socket", e))?;
    // A bigger queue rides out bursts (the kernel caps it at net.core.rmem_max); what still
    // overflows is counted (ENOBUFS below).
    if socket.set_recv_buffer_size(SOCKET_BUFFER).is_err() {
        eprintln!("spip: syn log: cannot enlarge the netlink receive buffer");
    }
    socket
        .set_read_timeout(Some(POLL))
        .map_err(|e| fail("SO_RCVTIMEO", e))?;
    let mode = {
        let mut v = [0u8; 6];
        v[..4].copy_from_slice(&SYN_LOG_SNAPLEN.to_be_bytes());
        v[4] = NFULNL_COPY_PACKET;
        v
    };
    let requests = [
        config_message(group, 1, &[(NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND])]),
        config_message(
            group,
            2,
            &[
                (NFULA_CFG_MODE, &mode),
                (NFULA_CFG_QTHRESH, &QUEUE_THRESHOLD.to_be_bytes()),
                (NFULA_CFG_TIMEOUT, &FLUSH_TIMEOUT_CS.to_be_bytes()),
            ],
        ),
    ];
    let mut buf = vec![0u8; 4096];
    for request in &requests {
        socket.send(request).map_err(|e| fail("netlink send", e))?;
        // The acknowledgement (or the error) of this request.
        let n = (&socket)
            .read(&mut buf)
            .map_err(|e| fail("netlink acknowledgement", e))?;
        if let Some(errno) = parse_datagram(&buf[..n], |_, _| {}).error {
            return Err(fail("NFLOG bind", io::Error::from_raw_os_error(errno)));
        }
    }
    Ok(socket)
}

/// Reads the SYN log until `stop` says so, feeding the summaries.
pub fn run(
    socket: Socket,
    summaries: &crate::scan::summary::Summaries,
    counters: &Arc<Counters>,
    stop: &std::sync::atomic::AtomicBool,
) {
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut last_overflow_report: Option<Instant> = None;
    while !stop.load(Ordering::Acquire) {
        match (&socket).read(&mut buf) {
            Ok(n) => {
                let now = Instant::now();
                let mut syns = 0;
                parse_datagram(&buf[..n], |src, dport| {
                    syns += 1;
                    summaries.syn_only(src, dport, now);
                });
                counters.add(&counters.syn_logged, syns);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                // The kernel dropped log messages: we fell behind. Counted, said once a minute.
                counters.inc(&counters.syn_log_overflows);
                if last_overflow_report.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    eprintln!("spip: syn log: the kernel dropped SYN log messages (counted)");
                    last_overflow_report = Some(Instant::now());
                }
            }
            Err(e) => {
                eprintln!("spip: syn log: read failed: {e}; SYN-only counts stop");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_syn(src: [u8; 4], dport: u16, flags: u8) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&[10, 0, 0, 1]);
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&dport.to_be_bytes());
        tcp[12] = 0x50;
        tcp[13] = flags;
        p.extend_from_slice(&tcp);
        p
    }

    fn ipv6_syn(src: Ipv6Addr, dport: u16) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 20, 6, 64];
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        let mut tcp = [0u8; 20];
        tcp[2..4].copy_from_slice(&dport.to_be_bytes());
        tcp[13] = 0x02;
        p.extend_from_slice(&tcp);
        p
    }

    /// A kernel-shaped NFULNL_MSG_PACKET: a packet header attribute, then the payload.
    fn packet_message(packet: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&NFULNL_MSG_PACKET.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&[2, 0, 0, 7]);
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&1u16.to_ne_bytes()); // NFULA_PACKET_HDR
        m.extend_from_slice(&[0x08, 0x00, 1, 0]);
        m.extend_from_slice(&((4 + packet.len()) as u16).to_ne_bytes());
        m.extend_from_slice(&NFULA_PAYLOAD.to_ne_bytes());
        m.extend_from_slice(packet);
        m.resize(align4(m.len()), 0);
        let len = (m.len() as u32).to_ne_bytes();
        m[..4].copy_from_slice(&len);
        m
    }

    #[test]
    fn batched_messages_yield_each_syn() {
        let mut dgram = packet_message(&ipv4_syn([192, 0, 2, 9], 445, 0x02));
        dgram.extend(packet_message(&ipv6_syn(
            "2001:db8::5".parse().unwrap(),
            22,
        )));
        dgram.extend(packet_message(&ipv4_syn([192, 0, 2, 9], 80, 0x12))); // SYN-ACK
        let mut seen = Vec::new();
        let parsed = parse_datagram(&dgram, |ip, port| seen.push((ip, port)));
        assert_eq!(
            seen,
            [
                ("192.0.2.9".parse().unwrap(), 445),
                ("2001:db8::5".parse().unwrap(), 22)
            ]
        );
        assert_eq!(parsed.skipped, 1);
        assert_eq!(parsed.error, None);
    }

    #[test]
    fn truncated_and_lying_lengths_are_skipped_without_panic() {
        let good = packet_message(&ipv4_syn([192, 0, 2, 9], 445, 0x02));
        for cut in 0..good.len() {
            let _ = parse_datagram(&good[..cut], |_, _| {});
        }
        let mut lying = good.clone();
        lying[..4].copy_from_slice(&10_000u32.to_ne_bytes());
        assert_eq!(parse_datagram(&lying, |_, _| panic!("no SYN")).skipped, 1);
        // An attribute claiming more than its message holds.
        let mut bad_attr = good;
        bad_attr[28..30].copy_from_slice(&500u16.to_ne_bytes());
        assert_eq!(
            parse_datagram(&bad_attr, |_, _| panic!("no SYN")).skipped,
            1
        );
        // Headers only up to the ports (a short snaplen) still count.
        assert!(tcp_syn(&ipv4_syn([1, 2, 3, 4], 8080, 0x02)[..24]).is_some());
        assert_eq!(tcp_syn(&[0x45, 0, 0]), None);
    }

    #[test]
    fn errors_are_reported() {
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&(-libc::EPERM).to_ne_bytes());
        m.extend_from_slice(&[0; 16]);
        assert_eq!(parse_datagram(&m, |_, _| {}).error, Some(libc::EPERM));
    }

    #[test]
    fn config_messages_are_aligned() {
        let m = config_message(7, 1, &[(NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND])]);
        assert_eq!(m.len(), 16 + 4 + 8);
        assert_eq!(
            u32::from_ne_bytes([m[0], m[1], m[2], m[3]]) as usize,
            m.len()
        );
        assert_eq!(&m[18..20], &7u16.to_be_bytes());
    }
}
