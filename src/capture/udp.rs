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
use crate::protocols::udp::quic::{HelloReassembly, Progress, QuicInitial};
use crate::protocols::udp::{
    Answer, Datagram, DatagramContext, DatagramTurn, ReplyOutcome, answer,
};
use crate::record::{ConnMeta, Content, EventIds, Transport, TurnMeta, write_record};
use crate::scan::admission::Admission;
use crate::stats::Counters;
use compio::net::UdpSocket;
use futures_util::future::{Either, select};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
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
/// QUIC ClientHellos being reassembled across datagrams, per worker at most (about 4.6 KB
/// each), and how long one may wait for its next datagram.
const MAX_PENDING_HELLOS: usize = 256;
const PENDING_HELLO_TTL: Duration = Duration::from_secs(10);

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
pub fn send_from(reply: &[u8], from: SocketAddr, client: SocketAddr) -> io::Result<()> {
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
    /// New flows pass the same admission as TCP connections (rate, per source, fair share),
    /// with a budget of their own so that a spoofed UDP flood cannot crowd TCP out.
    admission: Admission,
    /// Records one flow may write (`max_records_per_connection`); later datagrams of the
    /// flow are counted, not recorded.
    max_records: u32,
    budget: ReplyBudget,
    reply: Vec<u8>,
    next_sweep: Instant,
    /// QUIC flows whose ClientHello is not whole yet, and when they last added to it.
    hellos: HashMap<(SocketAddr, SocketAddr), (Box<HelloReassembly>, Instant), ahash::RandomState>,
}

impl UdpState {
    pub fn new(cfg: &crate::config::Config, now: Instant) -> Self {
        let share = f64::from(cfg.udp.reply_bytes_per_second) / cfg.threads.max(1) as f64;
        UdpState {
            flows: Flows::new(cfg.udp.flow_idle),
            admission: Admission::new(
                cfg.rate_limit_per_second,
                cfg.rate_limit_burst,
                cfg.per_source_rate_per_second,
                cfg.per_source_burst,
                1.0 / cfg.threads.max(1) as f64,
                now,
            ),
            max_records: cfg.max_records_per_connection,
            budget: ReplyBudget::new(cfg.udp.source_reply_bytes_per_second, share, now),
            reply: Vec::with_capacity(1500),
            next_sweep: now + SWEEP_EVERY,
            hellos: HashMap::default(),
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
    // One record, then handed to the sink (a datagram past its flow's cap writes none).
    let mut record = Vec::with_capacity(4096);
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
                let rx = Received {
                    datagram: buf.get(..len).unwrap_or(&[]),
                    truncated,
                    from,
                    original: original_destination(control.get(..control_len).unwrap_or(&[])),
                    local,
                };
                let who = Identity {
                    sensor_name: &worker.shared.cfg.name,
                    community_id_seed: worker.shared.cfg.community_id_seed,
                };
                record.clear();
                let now = Instant::now();
                // Every datagram counts in its source's scan summary, recorded or not.
                let dport = rx.original.or(rx.local).map_or(0, |a| a.port());
                let source = rx.from.ip().to_canonical();
                worker.shared.summaries.udp(source, dport, now);
                state.datagram(
                    &rx,
                    &who,
                    &mut worker.ids.borrow_mut(),
                    &worker.shared.counters,
                    now,
                    SystemTime::now(),
                    send_from,
                    &mut record,
                );
                if !record.is_empty() {
                    worker
                        .sink
                        .borrow_mut()
                        .push(|out| out.extend_from_slice(&record));
                }
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

/// One received datagram.
pub struct Received<'a> {
    pub datagram: &'a [u8],
    /// The kernel cut it (MSG_TRUNC).
    pub truncated: bool,
    pub from: SocketAddr,
    /// From the IP_ORIGDSTADDR control message.
    pub original: Option<SocketAddr>,
    /// The socket's own address (the destination when there is no original).
    pub local: Option<SocketAddr>,
}

/// Settings of the datagram path that come from the config.
pub struct Identity<'a> {
    pub sensor_name: &'a str,
    pub community_id_seed: u16,
}

impl UdpState {
    /// A QUIC Initial, continuing the flow's ClientHello if an earlier datagram began it.
    fn quic_initial<'d>(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        datagram: &'d [u8],
        now: Instant,
    ) -> Datagram<'d> {
        let key = (client, server);
        let (parsed, progress) = match self.hellos.get_mut(&key) {
            Some((reassembly, at)) => {
                *at = now;
                Datagram::parse_quic(server.port(), datagram, reassembly)
            }
            None => {
                // On the stack; boxed only when the hello continues in a later datagram.
                let mut fresh = HelloReassembly::new();
                let (parsed, progress) = Datagram::parse_quic(server.port(), datagram, &mut fresh);
                if progress == Progress::Partial && self.hellos.len() < MAX_PENDING_HELLOS {
                    self.hellos.insert(key, (Box::new(fresh), now));
                }
                return parsed;
            }
        };
        if progress != Progress::Partial {
            self.hellos.remove(&key);
        }
        parsed
    }

    /// Records one datagram (appended to `out`; nothing past the flow's record cap) and
    /// answers it through `send(reply, from,
    /// to)` if its protocol, the size rule and the budgets allow. No IO of its own, so the
    /// whole per-datagram path runs in benches and tests.
    #[allow(clippy::too_many_arguments)] // ok: the datagram path's inputs, each distinct
    pub fn datagram(
        &mut self,
        rx: &Received<'_>,
        who: &Identity<'_>,
        ids: &mut EventIds,
        counters: &Counters,
        now: Instant,
        wall: SystemTime,
        send: impl FnOnce(&[u8], SocketAddr, SocketAddr) -> io::Result<()>,
        out: &mut Vec<u8>,
    ) -> ReplyOutcome {
        let datagram = rx.datagram;
        counters.inc(&counters.udp_datagrams);
        if now >= self.next_sweep {
            self.flows.sweep(now);
            self.admission.maybe_sweep(now);
            counters.add(&counters.admission_evictions, self.admission.take_evicted());
            self.budget.sweep(now);
            self.hellos
                .retain(|_, (_, at)| now.saturating_duration_since(*at) <= PENDING_HELLO_TTL);
            self.next_sweep = now + SWEEP_EVERY;
        }
        let client = SocketAddr::new(rx.from.ip().to_canonical(), rx.from.port());
        let (server, has_original) = match rx.original {
            Some(o) => (o, true),
            None => {
                counters.inc(&counters.udp_no_original_destination);
                (rx.local.unwrap_or(client), false)
            }
        };
        let admission = &mut self.admission;
        let admit = || admission.admit(client.ip(), now).is_ok();
        let Some(flow) =
            self.flows
                .datagram((client, server), datagram.len(), now, wall, ids, admit)
        else {
            counters.inc(&counters.udp_flows_shed);
            return ReplyOutcome::None;
        };
        if flow.untracked {
            counters.inc(&counters.udp_flows_untracked);
        }
        if flow.turn > self.max_records {
            counters.inc(&counters.udp_records_capped);
            return ReplyOutcome::None;
        }
        let parsed = if QuicInitial::looks_like(datagram) {
            self.quic_initial(client, server, datagram, now)
        } else {
            Datagram::parse(server.port(), datagram)
        };
        let ctx = DatagramContext {
            client,
            server,
            now: wall,
            random: ids.next_u64(),
        };
        let outcome = match answer(&parsed, datagram.len(), &ctx, &mut self.reply) {
            Answer::Nothing => ReplyOutcome::None,
            Answer::Never => {
                counters.inc(&counters.udp_suppressed_never);
                ReplyOutcome::Never
            }
            Answer::Oversize => {
                counters.inc(&counters.udp_suppressed_oversize);
                ReplyOutcome::Oversize
            }
            Answer::Reply => match self.budget.take(client.ip(), self.reply.len(), now) {
                Err(Refused::Source) => {
                    counters.inc(&counters.udp_suppressed_source_budget);
                    ReplyOutcome::SourceBudget
                }
                Err(Refused::Global) => {
                    counters.inc(&counters.udp_suppressed_global_budget);
                    ReplyOutcome::GlobalBudget
                }
                Ok(()) => match send(&self.reply, server, client) {
                    Ok(()) => {
                        counters.inc(&counters.udp_replies);
                        counters.add(&counters.udp_reply_bytes, self.reply.len() as u64);
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
            who.community_id_seed,
            client.ip(),
            client.port(),
            server.ip(),
            server.port(),
            IPPROTO_UDP,
        );
        let meta = ConnMeta {
            event_id: flow.id.as_str(),
            sensor_name: who.sensor_name,
            source: client,
            destination: server,
            original_destination: has_original,
            community_id: community.as_str(),
            started: flow.started,
            transport: Transport::Udp,
            syn: None,
        };
        let turn = TurnMeta {
            turn: flow.turn,
            at: wall,
            client_bytes: flow.client_bytes,
            truncated: rx.truncated,
            close_reason: None,
            budget_exhausted: false,
        };
        let fields = DatagramTurn {
            datagram: &parsed,
            reply: outcome,
            reply_bytes: if outcome == ReplyOutcome::Sent {
                self.reply.len()
            } else {
                0
            },
        };
        let content = Content {
            payload: datagram,
            fields: &fields,
            tls: None,
        };
        write_record(
            out,
            &meta,
            &turn,
            (!datagram.is_empty()).then_some(&content),
        );
        outcome
    }
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

    #[test]
    fn the_datagram_path_records_replies_and_suppresses() {
        let cfg = crate::config::Config::from_toml_str(
            "name = \"t\"\nport = 8080\nudp = true\nthreads = 1\nudp_source_reply_bytes_per_second = 10\nmax_records_per_connection = 3",
            std::path::Path::new("."),
        )
        .unwrap();
        let t0 = Instant::now();
        let mut state = UdpState::new(&cfg, t0);
        let mut ids = EventIds::new();
        let counters = Counters::default();
        let who = Identity {
            sensor_name: "t",
            community_id_seed: 0,
        };
        let dns = include_bytes!("../../tests/data/udp/dig_a.bin");
        let rx = |datagram: &'static [u8], port: u16| Received {
            datagram,
            truncated: false,
            from: "[::ffff:192.0.2.7]:40000".parse().unwrap(),
            original: Some(SocketAddr::new("198.51.100.2".parse().unwrap(), port)),
            local: None,
        };
        let sent = std::cell::RefCell::new(Vec::new());
        let mut out = Vec::new();
        let mut run = |state: &mut UdpState, rx: &Received<'_>, out: &mut Vec<u8>| {
            state.datagram(
                rx,
                &who,
                &mut ids,
                &counters,
                t0,
                SystemTime::UNIX_EPOCH,
                |reply: &[u8], from, to| {
                    sent.borrow_mut().push((reply.len(), from, to));
                    Ok(())
                },
                out,
            )
        };
        // The source's burst is 80 bytes: one 45-byte answer, then its budget is spent.
        assert_eq!(run(&mut state, &rx(dns, 53), &mut out), ReplyOutcome::Sent);
        assert_eq!(
            run(&mut state, &rx(dns, 53), &mut out),
            ReplyOutcome::SourceBudget
        );
        assert_eq!(
            run(&mut state, &rx(b"stats\r\n", 11211), &mut out),
            ReplyOutcome::Never
        );
        assert_eq!(sent.borrow().len(), 1);
        let (len, from, to) = sent.borrow()[0];
        assert!(len <= dns.len());
        assert_eq!(from, "198.51.100.2:53".parse().unwrap());
        assert_eq!(to, "192.0.2.7:40000".parse().unwrap());
        let recs: Vec<serde_json::Value> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0]["network"]["transport"], "udp");
        assert_eq!(recs[0]["source"]["ip"], "192.0.2.7");
        assert_eq!(recs[0]["event"]["id"], recs[1]["event"]["id"], "one flow");
        assert_eq!(recs[1]["spip"]["turn"], 2);
        assert_eq!(recs[1]["source"]["bytes"], 2 * dns.len());
        assert_eq!(recs[1]["spip"]["udp"]["reply"], "source_budget");
        assert_ne!(recs[2]["event"]["id"], recs[0]["event"]["id"]);
        // Community ID over protocol 17.
        let cid = community_id_v1(
            0,
            "192.0.2.7".parse().unwrap(),
            40000,
            "198.51.100.2".parse().unwrap(),
            53,
            17,
        );
        assert_eq!(recs[0]["network"]["community_id"], cid.as_str());
        assert_eq!(counters.get(&counters.udp_datagrams), 3);
        assert_eq!(counters.get(&counters.udp_suppressed_source_budget), 1);
        assert_eq!(counters.get(&counters.udp_suppressed_never), 1);
        assert_eq!(counters.get(&counters.udp_replies), 1);
        // The DNS flow's third datagram is its last record (max_records_per_connection = 3);
        // the fourth is counted, not recorded.
        let lines = |out: &[u8]| out.iter().filter(|&&b| b == b'\n').count();
        run(&mut state, &rx(dns, 53), &mut out);
        assert_eq!(lines(&out), 4);
        run(&mut state, &rx(dns, 53), &mut out);
        assert_eq!(lines(&out), 4);
        assert_eq!(counters.get(&counters.udp_records_capped), 1);
    }

    #[test]
    fn new_flows_over_the_per_source_rate_are_shed_and_counted() {
        let cfg = crate::config::Config::from_toml_str(
            "name = \"t\"\nport = 8080\nudp = true\nthreads = 1\n\
             per_source_rate_per_second = 1\nper_source_burst = 2",
            std::path::Path::new("."),
        )
        .unwrap();
        let t0 = Instant::now();
        let mut state = UdpState::new(&cfg, t0);
        let counters = Counters::default();
        let mut ids = EventIds::new();
        let who = Identity {
            sensor_name: "t",
            community_id_seed: 0,
        };
        let mut out = Vec::new();
        let mut send = |sport: u16| {
            let rx = Received {
                datagram: b"\x00\x01probe",
                truncated: false,
                from: SocketAddr::new([192, 0, 2, 7].into(), sport),
                original: Some("198.51.100.2:4444".parse().unwrap()),
                local: None,
            };
            state.datagram(
                &rx,
                &who,
                &mut ids,
                &counters,
                t0,
                SystemTime::now(),
                |_, _, _| Ok(()),
                &mut out,
            );
        };
        // One source opening 10 flows at once: its burst of 2 is recorded, the rest shed.
        for sport in 40000..40010 {
            send(sport);
        }
        // An admitted flow goes on without asking again.
        send(40000);
        let lines = out.iter().filter(|&&b| b == b'\n').count();
        assert_eq!(lines, 3);
        assert_eq!(counters.get(&counters.udp_flows_shed), 8);
        assert_eq!(counters.get(&counters.udp_datagrams), 11);
    }

    #[test]
    fn a_quic_hello_over_two_datagrams_of_a_flow_gets_its_ja4() {
        use crate::protocols::udp::quic::tests::{client_initial, crypto_frame, rfc_hello};
        let cfg = crate::config::Config::from_toml_str(
            "name = \"t\"\nport = 8080\nudp = true",
            std::path::Path::new("."),
        )
        .unwrap();
        let t0 = Instant::now();
        let mut state = UdpState::new(&cfg, t0);
        let (hello, ja4) = rfc_hello();
        let dcid = [7u8; 8];
        let first = client_initial(&dcid, 0, &crypto_frame(200, &hello[200..]));
        let second = client_initial(&dcid, 1, &crypto_frame(0, &hello[..200]));
        let mut out = Vec::new();
        for d in [&first, &second] {
            let rx = Received {
                datagram: d,
                truncated: false,
                from: "192.0.2.7:40000".parse().unwrap(),
                original: Some("198.51.100.2:443".parse().unwrap()),
                local: None,
            };
            let who = Identity {
                sensor_name: "t",
                community_id_seed: 0,
            };
            let outcome = state.datagram(
                &rx,
                &who,
                &mut EventIds::new(),
                &Counters::default(),
                t0,
                SystemTime::UNIX_EPOCH,
                |_, _, _| panic!("QUIC is never answered"),
                &mut out,
            );
            assert_eq!(outcome, ReplyOutcome::None);
        }
        let recs: Vec<serde_json::Value> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(recs[0]["spip"]["quic"]["partial"], true);
        assert_eq!(recs[1]["tls"]["client"]["hash"]["ja4"], ja4.as_str());
        assert!(state.hellos.is_empty(), "a whole hello is forgotten");
    }
}
