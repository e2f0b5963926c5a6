//! One connection: read turns, record them, reply, until EOF, reset, timeout or a cap.
//!
//! The first read of each wait goes to the runtime's provided-buffer pool (`read_managed`), so
//! a silent connection holds no buffer while it waits. Bytes are copied into the connection's
//! own `pending` buffer only when a turn spans several reads.

use super::registry::ConnId;
use super::worker::Worker;
use crate::analysis::analyze;
use crate::fingerprint::community_id::community_id_v1;
use crate::record::{CloseReason, ConnMeta, TurnMeta, write_record};
use crate::session::{After, Framing, Session, TurnKind};
use compio::driver::BufferRef;
use compio::io::{AsyncReadManaged, AsyncWriteExt};
use compio::net::TcpStream;
use futures_util::future::{Either, select};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

/// Read size when the provided-buffer pool is exhausted.
const FALLBACK_READ: usize = 4096;

/// What one wait for client bytes ended with.
enum ReadOutcome {
    Pooled(BufferRef),
    Owned(Vec<u8>),
    Eof,
    Reset,
    TimedOut,
    /// The provided-buffer pool was empty: read again into our own buffer.
    NoBuffer,
}

/// Waits up to `wait` for at most `room` client bytes.
///
/// This future is what an idle connection holds, so it is kept small: the pooled read and its
/// timer side by side (no `select!` machinery), and the rare fallback read in a box.
async fn read_some(stream: &mut TcpStream, room: usize, wait: Duration) -> ReadOutcome {
    let result = {
        let read = pin!(stream.read_managed(room));
        let timer = pin!(compio::time::sleep(wait));
        match select(read, timer).await {
            Either::Left((result, _)) => result,
            Either::Right(_) => return ReadOutcome::TimedOut,
        }
    };
    match result {
        Ok(Some(buf)) if !buf.is_empty() => ReadOutcome::Pooled(buf),
        Ok(_) => ReadOutcome::Eof,
        // Every pooled buffer is in use: read into our own this once.
        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
            Box::pin(read_owned(stream, room, wait)).await
        }
        Err(_) => ReadOutcome::Reset,
    }
}

async fn read_owned(stream: &mut TcpStream, room: usize, wait: Duration) -> ReadOutcome {
    let own = Vec::with_capacity(room.min(FALLBACK_READ));
    match compio::time::timeout(wait, compio::io::AsyncRead::read(stream, own)).await {
        Err(_elapsed) => ReadOutcome::TimedOut,
        Ok(compio::BufResult(Ok(n), own)) if n > 0 => ReadOutcome::Owned(own),
        Ok(compio::BufResult(Ok(_), _)) => ReadOutcome::Eof,
        Ok(compio::BufResult(Err(_), _)) => ReadOutcome::Reset,
    }
}

/// Serves an admitted connection to the end.
///
/// Most connections wait silently (or never send anything), so the first wait holds only the
/// socket and a few words: no timer (the worker's registry ends it at its deadline) and no
/// connection state, which is built in a box once that wait is over.
pub async fn serve(worker: Rc<Worker>, mut stream: TcpStream, peer: SocketAddr, id: ConnId) {
    let started = SystemTime::now();
    let t0 = Instant::now();
    let first = match stream
        .read_managed(worker.shared.cfg.max_payload_bytes)
        .await
    {
        Ok(Some(buf)) if !buf.is_empty() => ReadOutcome::Pooled(buf),
        Ok(_) if worker.registry.borrow_mut().first_wait_timed_out(id) => ReadOutcome::TimedOut,
        Ok(_) => ReadOutcome::Eof,
        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => ReadOutcome::NoBuffer,
        Err(_) => ReadOutcome::Reset,
    };
    worker.registry.borrow_mut().first_wait_over(id);
    Box::pin(serve_rest(worker, stream, peer, id, started, t0, first)).await;
}

async fn serve_rest(
    worker: Rc<Worker>,
    mut stream: TcpStream,
    peer: SocketAddr,
    id: ConnId,
    started: SystemTime,
    t0: Instant,
    first: ReadOutcome,
) {
    let cfg = &worker.shared.cfg;
    let fd = stream.as_raw_fd();
    let deadline = t0 + cfg.session_timeout;

    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    let (destination, original) = match super::origdst::original_destination(fd, peer.is_ipv4()) {
        Some(d) => (d, true),
        None => (stream.local_addr().unwrap_or(peer), false),
    };
    let destination = SocketAddr::new(destination.ip().to_canonical(), destination.port());
    let event_id = worker.ids.borrow_mut().next_id();
    let cid = community_id_v1(
        cfg.community_id_seed,
        peer.ip(),
        peer.port(),
        destination.ip(),
        destination.port(),
        6,
    );
    let meta = ConnMeta {
        event_id: event_id.as_str(),
        sensor_name: &cfg.name,
        source: peer,
        destination,
        original_destination: original,
        community_id: cid.as_str(),
        started,
    };

    let mut conn = Conn {
        worker: &worker,
        meta: &meta,
        session: Session::new(),
        pending: Vec::new(),
        received: 0,
        consumed: 0,
        cap: cfg.max_payload_bytes,
        reply: Vec::new(),
    };

    let mut outcome = Some(first);
    let close = loop {
        let now = Instant::now();
        let session_left = deadline.saturating_duration_since(now);
        let timeout_reason = if session_left <= cfg.read_timeout {
            CloseReason::SessionTimeout
        } else {
            CloseReason::ReadTimeout
        };
        let read = match outcome.take() {
            Some(ReadOutcome::NoBuffer) => {
                let room = conn.cap - conn.received;
                read_owned(&mut stream, room, cfg.read_timeout.min(session_left)).await
            }
            Some(first) => first,
            None => {
                if session_left.is_zero() {
                    break CloseReason::SessionTimeout;
                }
                let room = conn.cap - conn.received;
                if room == 0 {
                    break CloseReason::PayloadCap;
                }
                read_some(&mut stream, room, cfg.read_timeout.min(session_left)).await
            }
        };
        let after = match read {
            ReadOutcome::Pooled(buf) => conn.on_bytes(&buf),
            ReadOutcome::Owned(buf) => conn.on_bytes(&buf),
            ReadOutcome::Eof => break conn.eof_reason(),
            ReadOutcome::Reset => break CloseReason::Reset,
            ReadOutcome::TimedOut => break timeout_reason,
            ReadOutcome::NoBuffer => continue, // handled above; not produced by read_some
        };
        if !conn.reply.is_empty() {
            let reply = std::mem::take(&mut conn.reply);
            match compio::time::timeout(cfg.write_timeout, stream.write_all(reply)).await {
                Ok(compio::BufResult(Ok(()), mut buf)) => {
                    buf.clear();
                    conn.reply = buf;
                }
                _ => break CloseReason::WriteError,
            }
        }
        if after == After::Close {
            break if conn.received >= conn.cap {
                CloseReason::PayloadCap
            } else {
                CloseReason::Protocol
            };
        }
    };
    conn.finish(close);
    drop(conn);
    worker.connection_closed(id);
    // Closed by drop; a protocol end or cap gets a plain FIN, which is what a server would do.
    drop(stream);
}

struct Conn<'a> {
    worker: &'a Worker,
    meta: &'a ConnMeta<'a>,
    session: Session,
    /// Bytes of the current, incomplete turn.
    pending: Vec<u8>,
    /// Client bytes received so far.
    received: usize,
    /// Client bytes in completed turns.
    consumed: usize,
    cap: usize,
    reply: Vec<u8>,
}

impl Conn<'_> {
    /// Handles newly read bytes: completes as many turns as they finish, replying to each.
    fn on_bytes(&mut self, data: &[u8]) -> After {
        self.received += data.len();
        if self.pending.is_empty() {
            // Fast path: frame straight from the read buffer; copy only a leftover.
            let (used, after) = self.take_turns(data);
            if after == After::KeepOpen
                && let Some(rest) = data.get(used..)
            {
                self.pending.extend_from_slice(rest);
            }
            after
        } else {
            let mut pending = std::mem::take(&mut self.pending);
            pending.extend_from_slice(data);
            let (used, after) = self.take_turns(&pending);
            pending.drain(..used.min(pending.len()));
            self.pending = pending;
            after
        }
    }

    /// Frames, records and answers every complete turn at the start of `input`.
    fn take_turns(&mut self, input: &[u8]) -> (usize, After) {
        let mut used = 0;
        while let Some(rest) = input.get(used..).filter(|r| !r.is_empty()) {
            let room = self.cap.saturating_sub(self.consumed);
            let Framing::Complete { len, kind } = self.session.frame(rest, room) else {
                break;
            };
            let turn = &rest[..len.min(rest.len())];
            self.consumed += turn.len();
            used += turn.len();
            let capped = self.consumed >= self.cap;
            let mut after = self.session.reply(
                kind,
                turn,
                self.meta.source.ip(),
                &self.worker.shared.cfg.ssh_banner,
                &mut self.reply,
            );
            if capped {
                after = After::Close;
            }
            let close = match after {
                After::Close if capped => Some(CloseReason::PayloadCap),
                After::Close => Some(CloseReason::Protocol),
                After::KeepOpen => None,
            };
            self.record(turn, kind, capped && kind != TurnKind::Other, close);
            if after == After::Close {
                return (used, After::Close);
            }
        }
        (used, After::KeepOpen)
    }

    fn record(&self, turn: &[u8], kind: TurnKind, truncated: bool, close: Option<CloseReason>) {
        let analysis = analyze(turn, kind);
        let meta = TurnMeta {
            turn: self.session.turns(),
            at: SystemTime::now(),
            client_bytes: self.received as u64,
            truncated,
            close_reason: close,
        };
        self.worker
            .sink
            .borrow_mut()
            .push(|buf| write_record(buf, self.meta, &meta, Some(&analysis)));
    }

    fn eof_reason(&self) -> CloseReason {
        if self.worker.stopping() {
            CloseReason::Shutdown
        } else {
            CloseReason::Eof
        }
    }

    /// Records what is left: an incomplete turn, or the empty connection itself.
    fn finish(&mut self, close: CloseReason) {
        let counters = &self.worker.shared.counters;
        match close {
            CloseReason::ReadTimeout => counters.inc(&counters.read_timeouts),
            CloseReason::SessionTimeout => counters.inc(&counters.session_timeouts),
            CloseReason::PayloadCap => counters.inc(&counters.payload_capped),
            _ => {}
        }
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            // An incomplete turn is still recorded, whole, with why it ended.
            let kind = match self.session.frame(&pending, pending.len()) {
                Framing::Complete { kind, .. } => kind,
                Framing::NeedMore => TurnKind::Other,
            };
            self.session.count_turn();
            self.record(&pending, kind, true, Some(close));
        } else if self.received == 0 {
            counters.inc(&counters.empty_connections);
            if self.worker.shared.cfg.log_empty_connections {
                let meta = TurnMeta {
                    turn: 0,
                    at: SystemTime::now(),
                    client_bytes: 0,
                    truncated: false,
                    close_reason: Some(close),
                };
                self.worker
                    .sink
                    .borrow_mut()
                    .push(|buf| write_record(buf, self.meta, &meta, None));
            }
        }
    }
}
