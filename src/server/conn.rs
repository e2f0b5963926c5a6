//! One connection: read turns, record them, reply, until EOF, reset, timeout or a cap.
//!
//! The first read of each wait goes to the runtime's provided-buffer pool (`read_managed`), so
//! a silent connection holds no buffer while it waits. Bytes are copied into the connection's
//! own `pending` buffer only when a turn spans several reads.
//!
//! TLS mode (cert + key configured): when the first turn is a ClientHello, the connection
//! becomes a TLS connection ([`crate::tls::TlsSession`], rustls driven sans-IO): the hello is
//! kept for the fingerprints, ciphertext from each read is fed to rustls, the decrypted bytes
//! go through the same turn framing, records and replies as plain bytes, and replies are
//! encrypted before the write. The ClientHello gets its own record (turn 1) once the handshake
//! is settled, carrying the negotiated parameters or `spip.tls_error`.

use super::registry::ConnId;
use super::worker::Worker;
use crate::analysis::{Analysis, analyze};
use crate::fingerprint::community_id::community_id_v1;
use crate::record::{CloseReason, ConnMeta, TurnMeta, write_record};
use crate::session::{After, Framing, Session, TurnKind};
use crate::tls::{Fed, TlsConfigs, TlsInfo, TlsSession};
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
        tls_configs: worker.shared.tls.as_ref(),
        tls: None,
        tls_hello: false,
        hs_deadline: None,
    };

    let mut outcome = Some(first);
    let close = loop {
        let now = Instant::now();
        let session_left = deadline.saturating_duration_since(now);
        let mut timeout_reason = if session_left <= cfg.read_timeout {
            CloseReason::SessionTimeout
        } else {
            CloseReason::ReadTimeout
        };
        // TLS mode: from the first 0x16 byte until the handshake is done.
        let mut wait = cfg.read_timeout.min(session_left);
        if let Some(hs) = conn.handshake_deadline() {
            let left = hs.saturating_duration_since(now);
            if left <= wait {
                wait = left;
                timeout_reason = CloseReason::HandshakeTimeout;
            }
        }
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
                if wait.is_zero() {
                    break timeout_reason;
                }
                let room = conn.cap - conn.received;
                if room == 0 {
                    break CloseReason::PayloadCap;
                }
                read_some(&mut stream, room, wait).await
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
            break if let Some(reason) = conn.tls_close_reason() {
                reason
            } else if conn.received >= conn.cap {
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
    /// TLS mode (cert + key configured).
    tls_configs: Option<&'a TlsConfigs>,
    /// The TLS session, once a ClientHello opened the connection in TLS mode.
    tls: Option<Box<TlsConn>>,
    /// Set by `take_turns` when the first turn is a ClientHello to terminate.
    tls_hello: bool,
    /// TLS mode: when the handshake must be done by (from the first 0x16 byte).
    hs_deadline: Option<Instant>,
}

/// A TLS connection's state: the rustls session, the ClientHello (kept for the fingerprints
/// of every record), and what the handshake settled.
/// A turn's analysis; on a TLS connection (decrypted application data) the connection's
/// ClientHello fingerprints and handshake facts go on every record too.
fn analyze_turn<'a>(turn: &'a [u8], kind: TurnKind, tls: Option<&'a TlsConn>) -> Analysis<'a> {
    let mut analysis = analyze(turn, kind);
    if let Some(tls) = tls {
        analysis.tls = crate::fingerprint::tls_client(&tls.hello);
        analysis.tls_session = tls.info.as_ref();
    }
    analysis
}

struct TlsConn {
    session: TlsSession,
    hello: Vec<u8>,
    /// Set when the handshake completed or failed (the ClientHello record is then written).
    info: Option<TlsInfo>,
    /// Scratch for decrypted bytes.
    plain: Vec<u8>,
    /// The session ended in a TLS error after the handshake.
    failed: bool,
    /// The client sent close_notify.
    peer_closed: bool,
    /// HTTP/2 (ALPN h2): our SETTINGS frame went out.
    h2_settings_sent: bool,
}

impl Conn<'_> {
    /// Handles newly read bytes: completes as many turns as they finish, replying to each.
    fn on_bytes(&mut self, data: &[u8]) -> After {
        if self.received == 0 && self.tls_configs.is_some() && data.first() == Some(&0x16) {
            self.hs_deadline = Some(Instant::now() + self.worker.shared.cfg.handshake_timeout);
        }
        self.received += data.len();
        if self.tls.is_some() {
            return self.on_tls_bytes(data);
        }
        self.frame_input(data)
    }

    /// Frames (plain or decrypted) client bytes into turns.
    fn frame_input(&mut self, data: &[u8]) -> After {
        if self.pending.is_empty() {
            // Fast path: frame straight from the read buffer; copy only a leftover.
            let (used, after) = self.take_turns(data);
            let rest = data.get(used..).unwrap_or_default();
            if self.tls_hello {
                return self.start_tls(rest);
            }
            if after == After::KeepOpen {
                self.pending.extend_from_slice(rest);
            }
            after
        } else {
            let mut pending = std::mem::take(&mut self.pending);
            pending.extend_from_slice(data);
            let (used, after) = self.take_turns(&pending);
            if self.tls_hello {
                return self.start_tls(pending.get(used..).unwrap_or_default());
            }
            pending.drain(..used.min(pending.len()));
            self.pending = pending;
            after
        }
    }

    fn handshake_deadline(&self) -> Option<Instant> {
        match &self.tls {
            Some(t) if t.info.is_some() => None,
            _ => self.hs_deadline,
        }
    }

    /// Why a TLS connection is closing, when TLS is the reason.
    fn tls_close_reason(&self) -> Option<CloseReason> {
        let t = self.tls.as_ref()?;
        let failed = t.failed || t.info.as_ref().is_some_and(|i| i.error.is_some());
        if failed {
            Some(CloseReason::TlsError)
        } else if t.peer_closed {
            Some(CloseReason::Eof)
        } else {
            None
        }
    }

    /// Starts terminating TLS: `bytes` begin with the complete ClientHello (anything after it
    /// is the client's next flight).
    fn start_tls(&mut self, bytes: &[u8]) -> After {
        self.tls_hello = false;
        let Some(configs) = self.tls_configs else {
            return After::Close;
        };
        let hello_len = match crate::proto::tls::client_hello_status(bytes) {
            crate::proto::tls::HelloStatus::Complete { records_len, .. } => records_len,
            _ => bytes.len(),
        }
        .min(bytes.len());
        let config = crate::fingerprint::tls_client(bytes)
            .and_then(|t| t.with_hello(|h| configs.for_client(h.alpn())))
            .unwrap_or_else(|| configs.for_client(std::iter::empty()));
        let session = match TlsSession::new(config) {
            Ok(s) => s,
            Err(e) => {
                self.consumed += hello_len;
                self.tls = None;
                self.record_hello_alone(&bytes[..hello_len], TlsInfo::failed(e.to_string()));
                return After::Close;
            }
        };
        self.consumed += hello_len;
        self.tls = Some(Box::new(TlsConn {
            session,
            hello: bytes[..hello_len].to_vec(),
            info: None,
            plain: Vec::new(),
            failed: false,
            peer_closed: false,
            h2_settings_sent: false,
        }));
        self.on_tls_bytes(bytes)
    }

    /// Ciphertext in: drive the handshake, frame decrypted data as turns, encrypt replies.
    fn on_tls_bytes(&mut self, data: &[u8]) -> After {
        let Some(mut tls) = self.tls.take() else {
            return After::Close;
        };
        let mut plain = std::mem::take(&mut tls.plain);
        let fed = tls.session.feed(data, &mut plain);
        let mut after = After::KeepOpen;
        match fed {
            Err(e) => {
                // The alert (if any) goes out; the connection ends here.
                tls.session.outgoing(&mut self.reply);
                if tls.info.is_none() {
                    tls.info = Some(TlsInfo::failed(e.to_string()));
                    self.tls = Some(tls);
                    self.record_tls_hello(Some(CloseReason::TlsError));
                } else {
                    tls.failed = true;
                    if let Some(i) = tls.info.as_mut() {
                        i.error = Some(e.to_string());
                    }
                    self.tls = Some(tls);
                }
                return After::Close;
            }
            Ok(Fed::Closed) => {
                tls.peer_closed = true;
                after = After::Close;
            }
            Ok(Fed::Open) => {}
        }
        let handshake_done = tls.info.is_none() && !tls.session.is_handshaking();
        if handshake_done {
            tls.info = Some(tls.session.info());
        }
        let h2 = tls
            .info
            .as_ref()
            .is_some_and(|i| i.alpn.as_deref() == Some(b"h2"));
        self.tls = Some(tls);
        if handshake_done {
            self.record_tls_hello(None);
        }
        if !plain.is_empty() {
            let a = if h2 {
                self.on_h2(&plain)
            } else {
                self.frame_input(&plain)
            };
            if a == After::Close {
                after = After::Close;
            }
        }
        plain.clear();
        let Some(tls) = self.tls.as_mut() else {
            return After::Close;
        };
        tls.plain = plain;
        if !self.reply.is_empty() {
            tls.session.send(&self.reply);
            self.reply.clear();
        }
        tls.session.outgoing(&mut self.reply);
        after
    }

    /// HTTP/2 (ALPN h2): each read of decrypted bytes is one turn, recorded as it is (the
    /// connection preface and frames). We answer with an empty SETTINGS frame so the client
    /// sends its requests, and once a HEADERS frame came, with GOAWAY: there is no h2 server.
    fn on_h2(&mut self, data: &[u8]) -> After {
        let room = self.cap.saturating_sub(self.consumed);
        let turn = &data[..data.len().min(room)];
        self.consumed += turn.len();
        let capped = self.consumed >= self.cap;
        let headers = h2_has_headers(turn);
        if let Some(t) = self.tls.as_mut()
            && !t.h2_settings_sent
        {
            t.h2_settings_sent = true;
            self.reply.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        }
        if headers {
            // GOAWAY, last stream 0, NO_ERROR.
            self.reply
                .extend_from_slice(&[0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        }
        let close = headers || capped;
        self.session.count_turn();
        let reason = if capped {
            Some(CloseReason::PayloadCap)
        } else if close {
            Some(CloseReason::Protocol)
        } else {
            None
        };
        self.record(turn, TurnKind::Other, capped, reason);
        if close { After::Close } else { After::KeepOpen }
    }

    /// Records the ClientHello turn of a TLS connection (once the handshake is settled).
    fn record_tls_hello(&mut self, close: Option<CloseReason>) {
        self.session.count_turn();
        let Some(tls) = self.tls.as_ref() else {
            return;
        };
        let mut analysis = analyze(&tls.hello, TurnKind::TlsHandshake);
        analysis.tls_session = tls.info.as_ref();
        self.push_record(&analysis, false, close);
    }

    /// Records a ClientHello for which no TLS session could be started.
    fn record_hello_alone(&mut self, hello: &[u8], info: TlsInfo) {
        self.session.count_turn();
        let mut analysis = analyze(hello, TurnKind::TlsHandshake);
        analysis.tls_session = Some(&info);
        self.push_record(&analysis, false, Some(CloseReason::TlsError));
    }

    /// Frames, records and answers every complete turn at the start of `input`.
    fn take_turns(&mut self, input: &[u8]) -> (usize, After) {
        let mut used = 0;
        while let Some(rest) = input.get(used..).filter(|r| !r.is_empty()) {
            let room = self.cap.saturating_sub(self.consumed);
            let Framing::Complete { len, kind } = self.session.frame(rest, room) else {
                break;
            };
            if kind == TurnKind::TlsHandshake
                && self.tls_configs.is_some()
                && self.tls.is_none()
                && self.session.turns() == 0
            {
                // TLS mode: the ClientHello opens a TLS session (recorded once it is settled).
                self.tls_hello = true;
                return (used, After::KeepOpen);
            }
            let turn = &rest[..len.min(rest.len())];
            self.consumed += turn.len();
            used += turn.len();
            let capped = self.consumed >= self.cap;
            // Parsed once: the analysis feeds both the reply and the record.
            let analysis = analyze_turn(turn, kind, self.tls.as_deref());
            let mut after = self.session.reply(
                kind,
                analysis.http.as_ref().map(|r| &r.head),
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
            self.push_record(&analysis, capped && kind != TurnKind::Other, close);
            if after == After::Close {
                return (used, After::Close);
            }
        }
        (used, After::KeepOpen)
    }

    fn record(&self, turn: &[u8], kind: TurnKind, truncated: bool, close: Option<CloseReason>) {
        let analysis = analyze_turn(turn, kind, self.tls.as_deref());
        self.push_record(&analysis, truncated, close);
    }

    fn push_record(
        &self,
        analysis: &crate::analysis::Analysis<'_>,
        truncated: bool,
        close: Option<CloseReason>,
    ) {
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
            .push(|buf| write_record(buf, self.meta, &meta, Some(analysis)));
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
        // TLS: a handshake that never settled still yields the ClientHello record.
        if self.tls.as_ref().is_some_and(|t| t.info.is_none()) {
            let why = match close {
                CloseReason::HandshakeTimeout
                | CloseReason::ReadTimeout
                | CloseReason::SessionTimeout => "handshake timeout: the client stalled",
                CloseReason::Eof => "the client closed the connection during the handshake",
                CloseReason::Reset => "the connection was reset during the handshake",
                _ => "the connection ended during the handshake",
            };
            if let Some(t) = self.tls.as_mut() {
                t.info = Some(TlsInfo::failed(why));
            }
            self.record_tls_hello(Some(close));
            return;
        }
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            // An incomplete turn is still recorded, whole, with why it ended.
            let kind = match self.session.frame(&pending, pending.len()) {
                Framing::Complete { kind, .. } => kind,
                Framing::NeedMore => TurnKind::Other,
            };
            self.session.count_turn();
            if self.tls.is_none() && self.tls_configs.is_some() && pending.first() == Some(&0x16) {
                // TLS mode, but the ClientHello never completed.
                let info = TlsInfo::failed(match close {
                    CloseReason::HandshakeTimeout => "handshake timeout: incomplete ClientHello",
                    _ => "incomplete ClientHello",
                });
                let mut analysis = analyze(&pending, kind);
                analysis.tls_session = Some(&info);
                self.push_record(&analysis, true, Some(close));
                return;
            }
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

/// HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether `data` (client bytes of an h2 connection, preface optional) holds a HEADERS frame.
fn h2_has_headers(data: &[u8]) -> bool {
    let mut rest = data.strip_prefix(H2_PREFACE).unwrap_or(data);
    while let Some(header) = rest.first_chunk::<9>() {
        if header[3] == 0x1 {
            return true;
        }
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        rest = rest.get(9 + len..).unwrap_or_default();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2_headers_frame_is_found() {
        let settings = [0u8, 0, 0, 4, 0, 0, 0, 0, 0];
        let headers = [0u8, 0, 1, 1, 5, 0, 0, 0, 1, 0x82];
        let mut a = H2_PREFACE.to_vec();
        a.extend_from_slice(&settings);
        assert!(!h2_has_headers(&a));
        a.extend_from_slice(&headers);
        assert!(h2_has_headers(&a));
        assert!(!h2_has_headers(b"PRI"));
    }
}
