//! One connection's IO: moves bytes between the socket and the engine's
//! [`Connection`](crate::engine::Connection), and arms its deadline. Nothing here decides what
//! bytes mean.
//!
//! The first read of each wait goes to the runtime's provided-buffer pool (`read_managed`), so
//! a silent connection holds no buffer while it waits. On ports where no responder is
//! configured, the first wait holds only the socket and a few words (no timer — the worker's
//! registry ends it at its deadline — and no engine state, which is built once bytes came).

use super::registry::ConnId;
use super::sys;
use super::worker::Worker;
use crate::engine::{Accepted, Connection, PeerClose, RecordOut};
use crate::output::RecordSink;
use crate::proto::syn::{self, SynFacts};
use crate::record::CloseReason;
use compio::driver::BufferRef;
use compio::io::{AsyncReadManaged, AsyncWriteExt};
use compio::net::TcpStream;
use futures_util::future::{Either, select};
use std::cell::RefCell;
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

/// The worker's record sink as the engine's output.
struct Records<'a>(&'a RefCell<RecordSink>);

impl RecordOut for Records<'_> {
    fn record(&mut self, write: &mut dyn FnMut(&mut Vec<u8>)) {
        self.0.borrow_mut().push(|buf| write(buf));
    }
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
#[allow(clippy::manual_async_fn)] // ok: an async fn would keep its arguments twice, see below
pub fn serve(
    worker: Rc<Worker>,
    mut stream: TcpStream,
    peer: SocketAddr,
    syn: Option<SynFacts>,
    id: ConnId,
) -> impl Future<Output = ()> {
    // An async block rather than an async fn: an async fn keeps its arguments twice in the
    // future (once as captured, once as locals), and this future is what an idle connection
    // holds (the SYN facts alone are ~90 bytes).
    async move {
        let started = SystemTime::now();
        let accepted_at = Instant::now();
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let (destination, original) =
            match super::sys::original_destination(&stream, peer.is_ipv4()) {
                Some(d) => (d, true),
                None => (stream.local_addr().unwrap_or(peer), false),
            };
        let destination = SocketAddr::new(destination.ip().to_canonical(), destination.port());
        let engine = &worker.shared.engine;
        let first = if engine.ports.get(destination.port()).is_some() {
            // A responder is configured for this port (it may greet): the engine starts now.
            worker.registry.borrow_mut().first_wait_over(id);
            None
        } else {
            let first = match stream.read_managed(engine.max_payload_bytes).await {
                Ok(Some(buf)) if !buf.is_empty() => ReadOutcome::Pooled(buf),
                Ok(_) if worker.registry.borrow_mut().first_wait_timed_out(id) => {
                    ReadOutcome::TimedOut
                }
                Ok(_) => ReadOutcome::Eof,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => ReadOutcome::NoBuffer,
                Err(_) => ReadOutcome::Reset,
            };
            worker.registry.borrow_mut().first_wait_over(id);
            Some(first)
        };
        let (event_id, random) = {
            let mut ids = worker.ids.borrow_mut();
            (ids.next_id(), ids.next_u64())
        };
        worker.shared.summaries.accepted(
            peer.ip(),
            destination.port(),
            syn.as_ref().map(syn_key).as_ref().map(|k| k.as_str()),
            accepted_at,
        );
        let accepted = Accepted {
            source: peer,
            destination,
            original_destination: original,
            event_id,
            random,
            started,
            syn,
        };
        let stream = Box::pin(drive(worker.clone(), stream, accepted, accepted_at, first)).await;
        // Out of the registry before the fd is closed (the drain shuts down registered fds).
        worker.connection_closed(id);
        // A protocol end or cap gets a plain FIN, which is what a server would do.
        if worker.close_in_ring {
            let _ = stream.close().await;
        }
    }
}

/// The client's SYN headers, read at admission: they name the client too, which saves the
/// peer-address call (the kernel hands them out once, and keeps them until then even past a
/// reset).
pub fn syn_facts(worker: &Worker, stream: &TcpStream) -> Option<SynFacts> {
    if !worker.shared.cfg.save_syn {
        return None;
    }
    let mut buf = [0u8; sys::SAVED_SYN_MAX];
    let facts = sys::saved_syn(stream.as_raw_fd(), &mut buf)
        .and_then(|len| syn::parse(buf.get(..len)?).ok());
    if facts.is_none() {
        let counters = &worker.shared.counters;
        counters.inc(&counters.syn_not_saved);
    }
    facts
}

/// A SYN's fingerprint for the scan summaries: JA4T with `ja4plus`, else the window and the
/// option kinds (JA4T itself is FoxIO-licensed).
#[cfg(feature = "ja4plus")]
fn syn_key(syn: &SynFacts) -> crate::fingerprint::ja4t::Ja4t {
    crate::fingerprint::ja4t::ja4t(syn.window, &syn.options)
}

#[cfg(not(feature = "ja4plus"))]
fn syn_key(syn: &SynFacts) -> SynKey {
    let mut key = SynKey {
        buf: [0; 200],
        len: 0,
    };
    let mut put = |bytes: &[u8]| {
        let end = (key.len + bytes.len()).min(key.buf.len());
        key.buf[key.len..end].copy_from_slice(&bytes[..end - key.len]);
        key.len = end;
    };
    let (mut digits, mut at, mut window) = ([0u8; 5], 5, syn.window);
    loop {
        at -= 1;
        digits[at] = b'0' + (window % 10) as u8;
        window /= 10;
        if window == 0 {
            break;
        }
    }
    put(&digits[at..]);
    put(b"_");
    put(syn.options.kinds_text().as_bytes());
    key
}

/// `window_kinds` on the stack (ASCII digits, `_` and `-`).
#[cfg(not(feature = "ja4plus"))]
struct SynKey {
    buf: [u8; 200],
    len: usize,
}

#[cfg(not(feature = "ja4plus"))]
impl SynKey {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

/// Runs the engine over the socket until it says the connection is over; returns the socket
/// to close.
async fn drive(
    worker: Rc<Worker>,
    mut stream: TcpStream,
    accepted: Accepted,
    accepted_at: Instant,
    mut first: Option<ReadOutcome>,
) -> TcpStream {
    let engine = &worker.shared.engine;
    let mut records = Records(&worker.sink);
    // Deadlines count from the accept (a first wait that timed out is already past its own).
    let source_ip = accepted.source.ip();
    let mut conn = Connection::new(engine, accepted, accepted_at);
    let mut out = Vec::new();
    loop {
        if !conn.transmit().is_empty() {
            std::mem::swap(conn.transmit(), &mut out);
            let wait = worker.shared.cfg.write_timeout;
            match compio::time::timeout(wait, stream.write_all(out)).await {
                Ok(compio::BufResult(Ok(()), mut buf)) => {
                    buf.clear();
                    out = buf;
                }
                _ => {
                    conn.handle_close(engine, PeerClose::WriteError, Instant::now(), &mut records);
                    break;
                }
            }
        }
        if conn.closing().is_some() {
            break;
        }
        let now = Instant::now();
        let read = match first.take() {
            Some(ReadOutcome::NoBuffer) => {
                let wait = conn.deadline().saturating_duration_since(now);
                read_owned(&mut stream, conn.read_room(engine), wait).await
            }
            Some(outcome) => outcome,
            None => {
                let wait = conn.deadline().saturating_duration_since(now);
                if wait.is_zero() {
                    conn.handle_timeout(engine, now, &mut records);
                    continue;
                }
                read_some(&mut stream, conn.read_room(engine), wait).await
            }
        };
        let now = Instant::now();
        match read {
            ReadOutcome::Pooled(buf) => conn.handle_bytes(engine, &buf, now, &mut records),
            ReadOutcome::Owned(buf) => conn.handle_bytes(engine, &buf, now, &mut records),
            ReadOutcome::Eof => {
                let how = if worker.stopping() {
                    PeerClose::Shutdown
                } else {
                    PeerClose::Eof
                };
                conn.handle_close(engine, how, now, &mut records);
            }
            ReadOutcome::Reset => conn.handle_close(engine, PeerClose::Reset, now, &mut records),
            ReadOutcome::TimedOut => conn.handle_timeout(engine, now, &mut records),
            ReadOutcome::NoBuffer => first = Some(ReadOutcome::NoBuffer),
        }
    }
    count_close(&worker, &conn);
    let summaries = &worker.shared.summaries;
    summaries.closed(source_ip, conn.received(), Instant::now());
    stream
}

fn count_close(worker: &Worker, conn: &Connection) {
    let counters = &worker.shared.counters;
    match conn.closing() {
        Some(CloseReason::ReadTimeout) => counters.inc(&counters.read_timeouts),
        Some(CloseReason::SessionTimeout) => counters.inc(&counters.session_timeouts),
        Some(CloseReason::PayloadCap) => counters.inc(&counters.payload_capped),
        _ => {}
    }
    if conn.received() == 0 {
        counters.inc(&counters.empty_connections);
    }
    if conn.budget_exhausted() {
        counters.inc(&counters.record_budget_exhausted);
    }
    if let (Some(metrics), Some(reason)) = (&worker.shared.metrics, conn.closing()) {
        metrics.connection_closed(conn.protocol(), reason.as_str());
    }
}
