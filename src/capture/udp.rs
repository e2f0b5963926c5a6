//! UDP on every port: one transparent UDP socket per worker on the sensor's `ip`/`port`, fed by
//! the firewall's TPROXY rules (`spip-agent redirect apply --tproxy`).
//!
//! Each datagram's original destination comes from its IP_ORIGDSTADDR / IPV6_ORIGDSTADDR
//! control message. A reply goes out from that original address and port: a short-lived
//! transparent socket bound to it (IP_TRANSPARENT lets us bind a foreign address; SO_REUSEADDR
//! lets it share the port with our own socket), used for one send and closed. Replies are rare
//! (budgeted, and only for the few protocols that answer), so the few syscalls this costs are
//! not on the path every datagram takes; `sendmsg` with IP_PKTINFO could set the source
//! address but not the source port.
//!
//! The worker's runtime drives the socket (compio's `recv_msg` returns the control messages);
//! the datagram buffer and the control buffer are allocated once and reused.

use super::worker::Worker;
use crate::fingerprint::community_id::community_id_v1;
use crate::protocols::udp::budget::{Refused, ReplyBudget};
use crate::protocols::udp::flow::Flows;
use crate::protocols::udp::{
    Answer, Datagram, DatagramContext, DatagramTurn, ReplyOutcome, answer,
};
use crate::record::{ConnMeta, Content, Transport, TurnMeta, write_record};
use compio::net::UdpSocket;
use futures_util::future::{Either, select};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

/// Largest UDP payload (65,535 minus the IPv4 and UDP headers).
const MAX_DATAGRAM: usize = 65_507;
/// Room for one IP_ORIGDSTADDR/IPV6_ORIGDSTADDR message (a cmsghdr and a sockaddr_in6).
const CONTROL_LEN: usize = 128;
/// How often idle flows and full budgets are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// IP protocol number of UDP (Community ID).
const IPPROTO_UDP: u8 = 17;

/// Creates a worker's UDP socket: SO_REUSEPORT, dual-stack for `::`, IP_TRANSPARENT (needs
/// CAP_NET_ADMIN), original destinations as control messages.
pub fn bind_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    set_transparent(&socket, addr.is_ipv6()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("udp = true: cannot set IP_TRANSPARENT ({e}); it needs CAP_NET_ADMIN"),
        )
    })?;
    super::sys::recv_original_destination(&socket, addr.is_ipv6())?;
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn set_transparent(socket: &Socket, ipv6: bool) -> io::Result<()> {
    if ipv6 {
        socket.set_ip_transparent_v6(true)
    } else {
        socket.set_ip_transparent_v4(true)
    }
}

/// The original destination in a control message buffer (`cmsghdr`s as recvmsg(2) fills
/// them), read without pointer casts: Linux's layout is a `size_t` length, two `int`s, then
/// the data, each message aligned to `size_t`.
pub fn original_destination(control: &[u8]) -> Option<SocketAddr> {
    const WORD: usize = size_of::<usize>();
    let header = WORD + 8;
    let mut at = 0;
    while let Some(h) = control.get(at..at + header) {
        let len = usize::from_ne_bytes(h[..WORD].try_into().ok()?);
        let level = i32::from_ne_bytes(h[WORD..WORD + 4].try_into().ok()?);
        let kind = i32::from_ne_bytes(h[WORD + 4..WORD + 8].try_into().ok()?);
        let data = control.get(at + header..at.checked_add(len)?)?;
        if (level, kind) == (libc::SOL_IP, libc::IP_ORIGDSTADDR)
            || (level, kind) == (libc::SOL_IPV6, libc::IPV6_ORIGDSTADDR)
        {
            return sockaddr(data);
        }
        at += len.checked_add(WORD - 1)? / WORD * WORD;
    }
    None
}

/// A `sockaddr_in` or `sockaddr_in6` in its wire layout (family in host order, port and
/// address in network order).
fn sockaddr(d: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes(d.get(..2)?.try_into().ok()?));
    let port = u16::from_be_bytes(d.get(2..4)?.try_into().ok()?);
    let ip = if family == libc::AF_INET {
        IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(d.get(4..8)?).ok()?))
    } else if family == libc::AF_INET6 {
        IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(d.get(8..24)?).ok()?))
    } else {
        return None;
    };
    Some(SocketAddr::new(ip.to_canonical(), port))
}

/// Sends `reply` to `client` from `from` (the datagram's original destination).
fn send_from(from: SocketAddr, client: SocketAddr, reply: &[u8]) -> io::Result<()> {
    let socket = Socket::new(Domain::for_address(from), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    set_transparent(&socket, from.is_ipv6())?;
    socket.set_nonblocking(true)?;
    socket.bind(&from.into())?;
    let sent = socket.send_to(reply, &client.into())?;
    if sent == reply.len() {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::WriteZero, "short send"))
    }
}

/// One worker's UDP state: flows, reply budgets, and a reused reply buffer.
pub struct UdpState {
    flows: Flows,
    budget: ReplyBudget,
    reply: Vec<u8>,
    next_sweep: Instant,
}

impl UdpState {
    pub fn new(cfg: &crate::config::Config, now: Instant) -> Self {
        let share = f64::from(cfg.udp.reply_bytes_per_second) / cfg.threads.max(1) as f64;
        UdpState {
            flows: Flows::new(cfg.udp.flow_idle),
            budget: ReplyBudget::new(cfg.udp.source_reply_bytes_per_second, share, now),
            reply: Vec::with_capacity(1500),
            next_sweep: now + SWEEP_EVERY,
        }
    }
}

/// Receives datagrams until the worker stops.
pub async fn serve(worker: Rc<Worker>, socket: std::net::UdpSocket) {
    let local = socket.local_addr().ok();
    let socket = match UdpSocket::from_std(socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("spip: udp socket: {e}");
            return;
        }
    };
    let mut state = UdpState::new(&worker.shared.cfg, Instant::now());
    let mut buf = Vec::with_capacity(MAX_DATAGRAM);
    let mut control = Vec::with_capacity(CONTROL_LEN);
    let mut stop = std::pin::pin!(worker.stopped());
    loop {
        buf.clear();
        control.clear();
        let recv = std::pin::pin!(socket.recv_msg(buf, control));
        let compio::BufResult(result, (b, c)) = match select(recv, stop.as_mut()).await {
            Either::Left((r, _)) => r,
            Either::Right(_) => return,
        };
        (buf, control) = (b, c);
        match result {
            Ok((len, control_len, from, flags)) => {
                let truncated = flags.bits() & libc::MSG_TRUNC as u32 != 0;
                let original = original_destination(control.get(..control_len).unwrap_or(&[]));
                let datagram = buf.get(..len).unwrap_or(&[]);
                handle(
                    &worker, &mut state, datagram, truncated, from, original, local,
                );
            }
            Err(e) => {
                // ICMP errors of earlier replies and the like: keep receiving.
                if worker.stopping() {
                    return;
                }
                if e.kind() != io::ErrorKind::ConnectionRefused {
                    compio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

/// Records one datagram and answers it if its protocol, the size rule and the budgets allow.
fn handle(
    worker: &Worker,
    state: &mut UdpState,
    datagram: &[u8],
    truncated: bool,
    from: SocketAddr,
    original: Option<SocketAddr>,
    local: Option<SocketAddr>,
) {
    let counters = &worker.shared.counters;
    counters.inc(&counters.udp_datagrams);
    let now = Instant::now();
    let wall = SystemTime::now();
    if now >= state.next_sweep {
        state.flows.sweep(now);
        state.budget.sweep(now);
        state.next_sweep = now + SWEEP_EVERY;
    }
    let client = SocketAddr::new(from.ip().to_canonical(), from.port());
    let (server, has_original) = match original {
        Some(o) => (o, true),
        None => {
            counters.inc(&counters.udp_no_original_destination);
            (local.unwrap_or(client), false)
        }
    };
    let (flow, random) = {
        let mut ids = worker.ids.borrow_mut();
        let flow = state
            .flows
            .datagram(client, server, datagram.len(), now, wall, &mut ids);
        (flow, ids.next_u64())
    };
    if flow.untracked {
        counters.inc(&counters.udp_flows_untracked);
    }
    let parsed = Datagram::parse(server.port(), datagram);
    let ctx = DatagramContext {
        client,
        server,
        now: wall,
        random,
    };
    let outcome = match answer(&parsed, datagram.len(), &ctx, &mut state.reply) {
        Answer::Nothing => ReplyOutcome::None,
        Answer::Never => {
            counters.inc(&counters.udp_suppressed_never);
            ReplyOutcome::Never
        }
        Answer::Oversize => {
            counters.inc(&counters.udp_suppressed_oversize);
            ReplyOutcome::Oversize
        }
        Answer::Reply => match state.budget.take(client.ip(), state.reply.len(), now) {
            Err(Refused::Source) => {
                counters.inc(&counters.udp_suppressed_source_budget);
                ReplyOutcome::SourceBudget
            }
            Err(Refused::Global) => {
                counters.inc(&counters.udp_suppressed_global_budget);
                ReplyOutcome::GlobalBudget
            }
            Ok(()) => match send_from(server, client, &state.reply) {
                Ok(()) => {
                    counters.inc(&counters.udp_replies);
                    counters.add(&counters.udp_reply_bytes, state.reply.len() as u64);
                    ReplyOutcome::Sent
                }
                Err(_) => {
                    counters.inc(&counters.udp_send_errors);
                    ReplyOutcome::SendError
                }
            },
        },
    };
    let community = community_id_v1(
        worker.shared.engine.community_id_seed,
        client.ip(),
        client.port(),
        server.ip(),
        server.port(),
        IPPROTO_UDP,
    );
    let meta = ConnMeta {
        event_id: flow.id.as_str(),
        sensor_name: &worker.shared.cfg.name,
        source: client,
        destination: server,
        original_destination: has_original,
        community_id: community.as_str(),
        started: flow.started,
        transport: Transport::Udp,
    };
    let turn = TurnMeta {
        turn: flow.turn,
        at: wall,
        client_bytes: flow.client_bytes,
        truncated,
        close_reason: None,
        budget_exhausted: false,
    };
    let fields = DatagramTurn {
        datagram: &parsed,
        reply: outcome,
        reply_bytes: if outcome == ReplyOutcome::Sent {
            state.reply.len()
        } else {
            0
        },
    };
    let content = Content {
        payload: datagram,
        fields: &fields,
        tls: None,
    };
    let content = (!datagram.is_empty()).then_some(&content);
    worker
        .sink
        .borrow_mut()
        .push(|out| write_record(out, &meta, &turn, content));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A control buffer as the kernel writes it.
    fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(size_of::<usize>() + 8 + data.len()).to_ne_bytes());
        v.extend_from_slice(&level.to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(data);
        while v.len() % size_of::<usize>() != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn original_destination_from_control_messages() {
        let mut v4 = Vec::new();
        v4.extend_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4.extend_from_slice(&53u16.to_be_bytes());
        v4.extend_from_slice(&[198, 51, 100, 2]);
        v4.extend_from_slice(&[0; 8]);
        // Another message first (a TOS byte), then the address.
        let mut control = cmsg(libc::SOL_IP, libc::IP_TOS, &[0]);
        control.extend(cmsg(libc::SOL_IP, libc::IP_ORIGDSTADDR, &v4));
        assert_eq!(
            original_destination(&control),
            Some("198.51.100.2:53".parse().unwrap())
        );

        let mut v6 = Vec::new();
        v6.extend_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6.extend_from_slice(&161u16.to_be_bytes());
        v6.extend_from_slice(&[0; 4]);
        v6.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&[0; 4]);
        let control = cmsg(libc::SOL_IPV6, libc::IPV6_ORIGDSTADDR, &v6);
        assert_eq!(
            original_destination(&control),
            Some("[2001:db8::2]:161".parse().unwrap())
        );

        // Truncated or absent: none, never a panic.
        assert_eq!(original_destination(&control[..20]), None);
        assert_eq!(original_destination(&[]), None);
        let mut huge = cmsg(libc::SOL_IP, libc::IP_ORIGDSTADDR, &v4);
        huge[..size_of::<usize>()].copy_from_slice(&usize::MAX.to_ne_bytes());
        assert_eq!(original_destination(&huge), None);
    }
}
