//! The connection engine: one client connection as an IO-free state machine.
//!
//! The socket layer ([`crate::capture`]) creates a [`Connection`] with the accept facts and then
//! only moves bytes and timers: it hands over client bytes ([`Connection::handle_bytes`]), the
//! expiry of [`Connection::deadline`] ([`Connection::handle_timeout`]) and the end of the stream
//! ([`Connection::handle_close`]); it sends what [`Connection::transmit`] holds and closes once
//! [`Connection::closing`] says why. Records come out through a [`RecordOut`].
//!
//! Inside, the connection's phase is one enum: plain bytes or TLS (rustls driven sans-IO, see
//! [`tls`]), and within either, the application conversation ([`App`]): detecting the protocol,
//! talking to one responder ([`crate::protocols`]), or — once the connection's record budget
//! is spent — collecting the rest of the payload for one final record.
//!
//! A turn is what the client sends before it waits for us: the responder's `frame` says where
//! it ends; bytes no framing claims end at the client's pause (`turn_pause`). Framing is fed
//! only new bytes (`new_from`), so work stays linear in the bytes received.

pub mod tls;

use crate::fingerprint::community_id::community_id_v1;
use crate::fingerprint::{TlsClient, TlsFingerprints};
use crate::proto::tls::{HelloFramer, HelloStatus};
use crate::protocols::{self, Active, Context, Detected, Framing, Responder, Settings, Visitor};
use crate::record::{CloseReason, ConnMeta, Content, TlsLayer, TurnMeta, write_record};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};
use tls::{Fed, TlsConfigs, TlsInfo, TlsSession};

/// First bytes looked at to choose a responder; past this, undecided bytes go to the fallback.
const DETECT_MAX: usize = 64;

/// What the engine needs from the configuration (built once, shared by all connections).
pub struct EngineConfig {
    pub sensor_name: String,
    pub community_id_seed: u16,
    pub settings: Settings,
    /// Client bytes kept per connection; reaching it ends the connection.
    pub max_payload_bytes: usize,
    pub read_timeout: Duration,
    pub session_timeout: Duration,
    pub handshake_timeout: Duration,
    /// Silence that ends a turn no responder frames.
    pub turn_pause: Duration,
    /// Records one connection may write; the last one holds the rest of the payload.
    pub max_records: u32,
    /// Record bytes one connection may write before the rest goes into one final record.
    pub max_record_bytes: usize,
    pub log_empty_connections: bool,
    pub ports: PortTable,
    /// TLS mode (cert + key configured).
    pub tls: Option<TlsConfigs>,
    /// For responders that start TLS themselves (RDP's NLA): the configured certificate, or
    /// a self-signed one made at start.
    pub starttls: Option<TlsConfigs>,
}

impl EngineConfig {
    /// The engine's settings from the validated config.
    pub fn new(cfg: &crate::config::Config, tls: Option<TlsConfigs>) -> Self {
        EngineConfig {
            sensor_name: cfg.name.clone(),
            community_id_seed: cfg.community_id_seed,
            settings: Settings {
                ssh_banner: cfg.ssh_banner.clone(),
                hostname: cfg.banner_hostname.clone(),
            },
            max_payload_bytes: cfg.max_payload_bytes,
            read_timeout: cfg.read_timeout,
            session_timeout: cfg.session_timeout,
            handshake_timeout: cfg.handshake_timeout,
            turn_pause: cfg.turn_pause,
            max_records: cfg.max_records_per_connection,
            max_record_bytes: cfg.max_record_bytes_per_connection,
            log_empty_connections: cfg.log_empty_connections,
            ports: PortTable::new(cfg.ports.iter().map(|(p, n)| (*p, n.as_str()))),
            starttls: tls
                .clone()
                .or_else(|| TlsConfigs::self_signed(&cfg.banner_hostname).ok()),
            tls,
        }
    }
}

/// Destination port → the responder that answers there when the client's bytes do not say.
pub struct PortTable {
    /// Index into [`protocols::NAMES`] plus one; 0 = none.
    by_port: Box<[u8; 65536]>,
}

impl PortTable {
    /// The registry's defaults, then `overrides` (`(port, name)`, name checked by the config).
    pub fn new<'a>(overrides: impl IntoIterator<Item = (u16, &'a str)>) -> Self {
        let mut table = PortTable {
            by_port: Box::new([0; 65536]),
        };
        for (port, name) in Active::default_ports() {
            table.set(port, name);
        }
        for (port, name) in overrides {
            table.set(port, name);
        }
        table
    }

    fn set(&mut self, port: u16, name: &str) {
        let index = protocols::NAMES
            .iter()
            .position(|n| *n == name)
            .map_or(0, |i| (i + 1) as u8);
        self.by_port[usize::from(port)] = index;
    }

    /// The responder name for `port`, if the table has one.
    pub fn get(&self, port: u16) -> Option<&'static str> {
        let index = usize::from(self.by_port[usize::from(port)]);
        index
            .checked_sub(1)
            .and_then(|i| protocols::NAMES.get(i).copied())
    }
}

/// Where records go: each call appends one JSON line to the buffer it is given.
pub trait RecordOut {
    fn record(&mut self, write: &mut dyn FnMut(&mut Vec<u8>));
}

impl RecordOut for Vec<u8> {
    fn record(&mut self, write: &mut dyn FnMut(&mut Vec<u8>)) {
        write(self);
    }
}

/// What one call into the engine carries through its steps: the configuration, the time of
/// the call and where its records go.
struct Step<'a, O> {
    cfg: &'a EngineConfig,
    now: Instant,
    out: &'a mut O,
}

/// What the socket layer knows at accept.
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    pub source: SocketAddr,
    /// The address and port the client dialled (the original destination), or the local one.
    pub destination: SocketAddr,
    /// False when no NAT original destination existed and the local address was used.
    pub original_destination: bool,
    pub event_id: crate::record::EventId,
    /// Unpredictable per connection (responders' challenges and salts).
    pub random: u64,
    /// Wall-clock time of the accept; record times are this plus the monotonic time since.
    pub started: SystemTime,
    /// The client's SYN (TTL, window, options), when the kernel saved it.
    pub syn: Option<crate::proto::syn::SynFacts>,
}

/// How the client's side of the connection ended, as the socket layer saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerClose {
    Eof,
    Reset,
    /// The sensor is stopping (the read was ended by shutdown(2)).
    Shutdown,
    WriteError,
}

/// One client connection.
pub struct Connection {
    core: Core,
    phase: Phase,
    /// The current turn's bytes so far (plaintext), or the collected rest after the budget.
    pending: Vec<u8>,
}

/// The connection's phase.
enum Phase {
    Plain(App),
    Tls(Box<TlsConn>),
    Closed,
}

/// The application conversation (over plain bytes or decrypted TLS).
enum App {
    /// No protocol chosen yet: the client's first bytes choose. `port` is the port table's
    /// responder (which may have greeted already).
    Detecting {
        port: Option<Active>,
        greeted: bool,
    },
    Talking(Active),
    /// The responder asked for TLS (`After::StartTls`): the client's next bytes are a
    /// ClientHello; after the handshake `resume` goes on over the decrypted bytes.
    AwaitingHello {
        resume: Active,
        hello: HelloFramer,
    },
    /// The record budget is spent: everything else goes into one final record.
    Overflow,
}

/// A TLS connection (TLS mode, opened by a ClientHello).
struct TlsConn {
    session: TlsSession,
    layer: TlsFacts,
    app: App,
    /// The responder that asked for TLS, to go on with once the handshake is done.
    resume: Option<Active>,
    /// Scratch: decrypted bytes of one read, and our plaintext answers before encryption.
    plain: Vec<u8>,
    plain_out: Vec<u8>,
}

/// What every record of a TLS connection carries.
struct TlsFacts {
    hello: Vec<u8>,
    /// The hello's fingerprints, computed once (`None`: not a complete, valid hello).
    fingerprints: Option<TlsFingerprints>,
    /// Set once the handshake completed or failed.
    info: Option<TlsInfo>,
}

impl TlsFacts {
    fn new(hello: Vec<u8>, info: Option<TlsInfo>) -> Self {
        let fingerprints = crate::fingerprint::tls_client(&hello).map(|c| c.detach());
        TlsFacts {
            hello,
            fingerprints,
            info,
        }
    }

    fn client(&self) -> Option<TlsClient<'_>> {
        self.fingerprints.map(|f| f.attach(&self.hello))
    }

    fn layer(&self) -> TlsLayer<'_> {
        TlsLayer {
            client: self.client(),
            session: self.info.as_ref(),
        }
    }
}

/// Everything but the phase and the pending bytes (so both can be borrowed beside it).
struct Core {
    accepted: Accepted,
    community_id: crate::fingerprint::community_id::CommunityId,
    accepted_at: Instant,
    transmit: Vec<u8>,
    /// Client bytes received (ciphertext in TLS mode).
    received: usize,
    turns: u32,
    records: u32,
    record_bytes: usize,
    /// Bytes of `pending` already passed to the responder's `frame`.
    scanned: usize,
    /// The pending bytes wait for the client's pause.
    pause_at: Option<Instant>,
    read_deadline: Instant,
    session_deadline: Instant,
    handshake_deadline: Option<Instant>,
    close: Option<CloseReason>,
    /// The record budget ran out: the last record took the rest (for the counters).
    budget_exhausted: bool,
    /// The responder that talked (for metrics); "none" until one is chosen.
    protocol: &'static str,
}

impl Connection {
    /// A new connection; a responder chosen by the destination port may greet at once (see
    /// [`Connection::transmit`]).
    pub fn new(cfg: &EngineConfig, accepted: Accepted, now: Instant) -> Connection {
        let community_id = community_id_v1(
            cfg.community_id_seed,
            accepted.source.ip(),
            accepted.source.port(),
            accepted.destination.ip(),
            accepted.destination.port(),
            6,
        );
        let mut core = Core {
            accepted,
            community_id,
            accepted_at: now,
            transmit: Vec::new(),
            received: 0,
            turns: 0,
            records: 0,
            record_bytes: 0,
            scanned: 0,
            pause_at: None,
            read_deadline: now + cfg.read_timeout,
            session_deadline: now + cfg.session_timeout,
            handshake_deadline: None,
            close: None,
            budget_exhausted: false,
            protocol: "none",
        };
        let mut greeting = Vec::new();
        let app = start_app(
            &core.context(cfg, now),
            cfg.ports.get(accepted.destination.port()),
            &mut greeting,
        );
        core.transmit = greeting;
        Connection {
            core,
            phase: Phase::Plain(app),
            pending: Vec::new(),
        }
    }

    /// Bytes to send to the client (take them, or send and clear).
    pub fn transmit(&mut self) -> &mut Vec<u8> {
        &mut self.core.transmit
    }

    /// Why the connection is over, once it is: send what [`Connection::transmit`] holds, then
    /// close the socket.
    pub fn closing(&self) -> Option<CloseReason> {
        self.core.close
    }

    /// When [`Connection::handle_timeout`] is due.
    pub fn deadline(&self) -> Instant {
        let mut at = self.core.read_deadline.min(self.core.session_deadline);
        for d in [self.core.pause_at, self.core.handshake_deadline]
            .into_iter()
            .flatten()
        {
            at = at.min(d);
        }
        at
    }

    /// How many more client bytes the payload cap allows.
    pub fn read_room(&self, cfg: &EngineConfig) -> usize {
        cfg.max_payload_bytes.saturating_sub(self.core.received)
    }

    /// The responder that talked ("none" if the client never said enough to choose one).
    pub fn protocol(&self) -> &'static str {
        self.core.protocol
    }

    /// Client bytes received so far.
    pub fn received(&self) -> usize {
        self.core.received
    }

    /// True once the record budget ran out and a last record took the rest
    /// (`spip.budget_exhausted`).
    pub fn budget_exhausted(&self) -> bool {
        self.core.budget_exhausted
    }

    /// Client bytes arrived.
    pub fn handle_bytes(
        &mut self,
        cfg: &EngineConfig,
        data: &[u8],
        now: Instant,
        out: &mut impl RecordOut,
    ) {
        if self.core.close.is_some() || data.is_empty() {
            return;
        }
        let data = &data[..data.len().min(self.read_room(cfg))];
        self.core.received += data.len();
        self.core.read_deadline = now + cfg.read_timeout;
        let step = &mut Step { cfg, now, out };
        match &mut self.phase {
            Phase::Plain(app) => {
                let mut tx = std::mem::take(&mut self.core.transmit);
                let tls_hello = self
                    .core
                    .input(step, app, &mut self.pending, None, data, &mut tx);
                self.core.transmit = tx;
                if let Some(hello_len) = tls_hello {
                    self.start_tls(step, hello_len);
                }
            }
            Phase::Tls(tls) => self.core.tls_input(step, tls, &mut self.pending, data),
            Phase::Closed => {}
        }
        if self.core.close.is_none() && self.core.received >= cfg.max_payload_bytes {
            self.finish(step, CloseReason::PayloadCap);
        }
    }

    /// The deadline passed.
    pub fn handle_timeout(&mut self, cfg: &EngineConfig, now: Instant, out: &mut impl RecordOut) {
        if self.core.close.is_some() {
            return;
        }
        let step = &mut Step { cfg, now, out };
        if self.core.pause_at.is_some_and(|at| now >= at) {
            self.core.pause_at = None;
            let layer = match &mut self.phase {
                Phase::Plain(app) => Some((app, None)),
                Phase::Tls(tls) => Some((&mut tls.app, Some(&tls.layer))),
                Phase::Closed => None,
            };
            if let Some((app, facts)) = layer {
                let mut tx = Vec::new();
                let tls_hello = self
                    .core
                    .pause(step, app, &mut self.pending, facts, &mut tx);
                match &mut self.phase {
                    Phase::Tls(tls) => {
                        tls.session.send(&tx);
                        tls.session.outgoing(&mut self.core.transmit);
                    }
                    _ => self.core.transmit.extend_from_slice(&tx),
                }
                if let Some(hello_len) = tls_hello {
                    self.start_tls(step, hello_len);
                }
            }
        }
        let reason = if now >= self.core.session_deadline {
            CloseReason::SessionTimeout
        } else if self.core.handshake_deadline.is_some_and(|d| now >= d) {
            CloseReason::HandshakeTimeout
        } else if now >= self.core.read_deadline {
            CloseReason::ReadTimeout
        } else {
            return;
        };
        if self.core.close.is_none() {
            self.finish(step, reason);
        }
    }

    /// The client's side ended (or the socket failed).
    pub fn handle_close(
        &mut self,
        cfg: &EngineConfig,
        how: PeerClose,
        now: Instant,
        out: &mut impl RecordOut,
    ) {
        if self.core.close.is_some() {
            return;
        }
        let reason = match how {
            PeerClose::Eof => CloseReason::Eof,
            PeerClose::Reset => CloseReason::Reset,
            PeerClose::Shutdown => CloseReason::Shutdown,
            PeerClose::WriteError => CloseReason::WriteError,
        };
        self.finish(&mut Step { cfg, now, out }, reason);
    }

    /// TLS mode: the first `hello_len` pending bytes are a complete ClientHello; the rest is
    /// the client's next flight.
    fn start_tls(&mut self, step: &mut Step<'_, impl RecordOut>, hello_len: usize) {
        let cfg = step.cfg;
        let resume = match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Plain(App::AwaitingHello { resume, .. }) => Some(resume),
            other => {
                self.phase = other;
                None
            }
        };
        let configs = match &resume {
            Some(_) => cfg.starttls.as_ref(),
            None => cfg.tls.as_ref(),
        };
        let Some(configs) = configs else {
            self.core.close = Some(CloseReason::TlsError);
            self.phase = Phase::Closed;
            return;
        };
        let pending = std::mem::take(&mut self.pending);
        let (hello, rest) = pending.split_at(hello_len.min(pending.len()));
        self.core.scanned = 0;
        self.core.pause_at = None;
        let facts = TlsFacts::new(hello.to_vec(), None);
        let config = facts
            .client()
            .and_then(|t| t.with_hello(|h| configs.for_client(h.alpn())))
            .unwrap_or_else(|| configs.for_client(std::iter::empty()));
        match TlsSession::new(config) {
            Ok(session) => {
                let mut tls = Box::new(TlsConn {
                    session,
                    layer: facts,
                    app: App::Overflow, // replaced once the handshake is done
                    resume,
                    plain: Vec::new(),
                    plain_out: Vec::new(),
                });
                let mut ciphertext = tls.layer.hello.clone();
                ciphertext.extend_from_slice(rest);
                self.core
                    .tls_input(step, &mut tls, &mut self.pending, &ciphertext);
                self.phase = Phase::Tls(tls);
            }
            Err(e) => {
                let mut facts = facts;
                facts.info = Some(TlsInfo::failed(e.to_string()));
                self.core
                    .record_hello(step, &facts, Some(CloseReason::TlsError));
                self.core.close = Some(CloseReason::TlsError);
                self.phase = Phase::Closed;
            }
        }
    }

    /// Ends the connection: records what is left, then says why.
    fn finish(&mut self, step: &mut Step<'_, impl RecordOut>, reason: CloseReason) {
        let phase = std::mem::replace(&mut self.phase, Phase::Closed);
        let pending = std::mem::take(&mut self.pending);
        let core = &mut self.core;
        core.close = Some(reason);
        core.pause_at = None;
        match phase {
            Phase::Tls(mut tls) if tls.layer.info.is_none() => {
                // A handshake that never settled still yields the ClientHello record.
                let why = match reason {
                    CloseReason::HandshakeTimeout
                    | CloseReason::ReadTimeout
                    | CloseReason::SessionTimeout => "handshake timeout: the client stalled",
                    CloseReason::Eof => "the client closed the connection during the handshake",
                    CloseReason::Reset => "the connection was reset during the handshake",
                    _ => "the connection ended during the handshake",
                };
                tls.layer.info = Some(TlsInfo::failed(why));
                core.record_hello(step, &tls.layer, Some(reason));
            }
            Phase::Tls(mut tls) => {
                tls.session.outgoing(&mut core.transmit);
                core.record_rest(step, &mut tls.app, &pending, Some(&tls.layer), reason);
            }
            Phase::Plain(mut app) => {
                let tls_hello_due = match &app {
                    App::AwaitingHello { .. } => true,
                    App::Talking(Active::Tls(_)) | App::Detecting { .. } => step.cfg.tls.is_some(),
                    _ => false,
                };
                if tls_hello_due && pending.first() == Some(&0x16) {
                    // TLS mode, but the ClientHello never completed.
                    let info = TlsInfo::failed(match reason {
                        CloseReason::HandshakeTimeout => {
                            "handshake timeout: incomplete ClientHello"
                        }
                        _ => "incomplete ClientHello",
                    });
                    let facts = TlsFacts::new(pending, Some(info));
                    core.record_hello(step, &facts, Some(reason));
                    return;
                }
                core.record_rest(step, &mut app, &pending, None, reason);
            }
            Phase::Closed => {}
        }
    }
}

impl Core {
    /// The responders' view of the connection at `now`.
    fn context<'a>(&self, cfg: &'a EngineConfig, now: Instant) -> Context<'a> {
        Context {
            client: self.accepted.source,
            server: self.accepted.destination,
            settings: &cfg.settings,
            random: self.accepted.random,
            now: self.wall_time(now),
        }
    }

    /// The wall-clock time at `now`: the accept's wall time plus the monotonic time since
    /// (what the record's `@timestamp` says too), so the core never reads the system clock.
    fn wall_time(&self, now: Instant) -> SystemTime {
        self.accepted.started + now.saturating_duration_since(self.accepted_at)
    }

    /// Ciphertext in (TLS phase): drive the handshake, run the conversation over the
    /// plaintext, encrypt the answers.
    fn tls_input(
        &mut self,
        step: &mut Step<'_, impl RecordOut>,
        tls: &mut TlsConn,
        pending: &mut Vec<u8>,
        data: &[u8],
    ) {
        let cfg = step.cfg;
        let mut plain = std::mem::take(&mut tls.plain);
        plain.clear();
        let fed = tls.session.feed(data, &mut plain);
        match fed {
            Err(e) => {
                // The alert (if any) goes out; the connection ends here.
                tls.session.outgoing(&mut self.transmit);
                if tls.layer.info.is_none() {
                    tls.layer.info = Some(TlsInfo::failed(e.to_string()));
                    self.record_hello(step, &tls.layer, Some(CloseReason::TlsError));
                } else if let Some(info) = tls.layer.info.as_mut() {
                    info.error = Some(e.to_string());
                    self.record_rest(
                        step,
                        &mut tls.app,
                        pending,
                        Some(&tls.layer),
                        CloseReason::TlsError,
                    );
                    pending.clear();
                }
                self.close = Some(CloseReason::TlsError);
                tls.plain = plain;
                return;
            }
            Ok(Fed::Closed) => {
                // close_notify: what came before it is still processed below.
            }
            Ok(Fed::Open) => {}
        }
        if tls.layer.info.is_none() && !tls.session.is_handshaking() {
            let info = tls.session.info();
            let alpn_responder = match info.alpn.as_deref() {
                Some(b"h2") => Some("http2"),
                Some(b"http/1.1" | b"http/1.0") => Some("http"),
                _ => None,
            };
            tls.layer.info = Some(info);
            self.handshake_deadline = None;
            self.record_hello(step, &tls.layer, None);
            // The inner protocol: by the bytes first, else by ALPN, else by the port.
            let fallback = alpn_responder
                .filter(|name| protocols::NAMES.contains(name))
                .or_else(|| cfg.ports.get(self.accepted.destination.port()));
            tls.app = match tls.resume.take() {
                Some(r) => App::Talking(r),
                None => start_app(&self.context(cfg, step.now), fallback, &mut tls.plain_out),
            };
        }
        if tls.layer.info.is_some() && !plain.is_empty() {
            self.input(
                step,
                &mut tls.app,
                pending,
                Some(&tls.layer),
                &plain,
                &mut tls.plain_out,
            );
        }
        if !tls.plain_out.is_empty() {
            tls.session.send(&tls.plain_out);
            tls.plain_out.clear();
        }
        tls.session.outgoing(&mut self.transmit);
        tls.plain = plain;
        if matches!(fed, Ok(Fed::Closed)) && self.close.is_none() {
            self.record_rest(
                step,
                &mut tls.app,
                pending,
                Some(&tls.layer),
                CloseReason::Eof,
            );
            pending.clear();
            self.close = Some(CloseReason::Eof);
        }
    }

    /// Application bytes in: choose a responder if none yet, frame and answer every complete
    /// turn, keep the rest. Returns the length of a ClientHello that opens TLS (TLS mode).
    fn input(
        &mut self,
        step: &mut Step<'_, impl RecordOut>,
        app: &mut App,
        pending: &mut Vec<u8>,
        tls: Option<&TlsFacts>,
        data: &[u8],
        tx: &mut Vec<u8>,
    ) -> Option<usize> {
        let (cfg, now) = (step.cfg, step.now);
        if let App::Overflow = app {
            pending.extend_from_slice(data);
            return None;
        }
        if let App::AwaitingHello { hello, .. } = app {
            pending.extend_from_slice(data);
            return hello_end(hello, pending);
        }
        let new_from = self.scanned;
        pending.extend_from_slice(data);
        self.pause_at = None;
        if let App::Detecting { .. } = app
            && !self.detect(cfg, app, pending, false, now)
        {
            self.pause_at = Some(now + cfg.turn_pause);
            return None;
        }
        if cfg.tls.is_some() && tls.is_none() && self.turns == 0 {
            if let App::Talking(Active::Tls(_)) = app {
                self.handshake_deadline
                    .get_or_insert(now + cfg.handshake_timeout);
            }
        }
        self.take_turns(step, app, pending, tls, new_from, tx)
    }

    /// Chooses the responder for the first bytes; false while undecided (wait for more or
    /// for the pause). `at_pause`: decide now.
    fn detect(
        &mut self,
        cfg: &EngineConfig,
        app: &mut App,
        first: &[u8],
        at_pause: bool,
        now: Instant,
    ) -> bool {
        let App::Detecting { port, greeted } = app else {
            return true;
        };
        let ctx = self.context(cfg, now);
        // The port's own responder keeps the connection unless the bytes are unmistakably
        // another protocol's (nmap's RDP probe on 445 is SMB's to answer, as Windows would).
        let only_unmistakable = *greeted || port.is_some();
        let chosen = match Active::detect(first, &ctx, only_unmistakable) {
            Detected::Found(r) => r,
            Detected::Undecided if !at_pause && first.len() < DETECT_MAX => return false,
            Detected::Undecided | Detected::Nothing => match port.take() {
                Some(r) => r,
                None => Active::raw(),
            },
        };
        self.protocol = chosen.name();
        *app = App::Talking(chosen);
        self.scanned = 0;
        true
    }

    /// Frames, answers and records every complete turn at the start of `pending`; keeps the
    /// rest there. `new_from`: bytes of `pending` the responder has already seen.
    fn take_turns(
        &mut self,
        step: &mut Step<'_, impl RecordOut>,
        app: &mut App,
        pending: &mut Vec<u8>,
        tls: Option<&TlsFacts>,
        mut new_from: usize,
        tx: &mut Vec<u8>,
    ) -> Option<usize> {
        let (cfg, now) = (step.cfg, step.now);
        let mut used = 0;
        let mut tls_hello = None;
        while used < pending.len() && self.close.is_none() {
            let App::Talking(responder) = app else {
                break;
            };
            let rest = &pending[used..];
            match responder.visit(FrameTurn {
                pending: rest,
                new_from,
            }) {
                Framing::NeedMore => {
                    self.scanned = rest.len();
                    break;
                }
                Framing::AtPause
                    if cfg.tls.is_some()
                        && tls.is_none()
                        && self.turns == 0
                        && matches!(responder, Active::Tls(_)) =>
                {
                    // TLS mode: a broken hello goes to rustls as it is (its alert and error
                    // end the connection at once).
                    tls_hello = Some(rest.len());
                    break;
                }
                Framing::AtPause => {
                    self.scanned = rest.len();
                    self.pause_at = Some(now + cfg.turn_pause);
                    break;
                }
                Framing::Complete(len) => {
                    let len = len.clamp(1, rest.len());
                    new_from = 0;
                    self.scanned = 0;
                    if cfg.tls.is_some() && tls.is_none() && self.turns == 0 {
                        if let Active::Tls(_) = responder {
                            // TLS mode: the hello opens a TLS session (recorded once settled).
                            tls_hello = Some(len);
                            break;
                        }
                    }
                    if self.budget_spent(cfg) {
                        *app = App::Overflow;
                        break;
                    }
                    let turn = &rest[..len];
                    self.take_turn(step, app, turn, tls, false, tx);
                    used += len;
                }
            }
        }
        pending.drain(..used);
        if let App::AwaitingHello { hello, .. } = app
            && !pending.is_empty()
        {
            // The ClientHello came right behind the turn that asked for TLS.
            tls_hello = hello_end(hello, pending);
        }
        if self.close.is_some() && !pending.is_empty() {
            // The responder hung up with bytes still unread: they were accepted, so record
            // them too.
            let reason = self.close.unwrap_or(CloseReason::Protocol);
            let rest = std::mem::take(pending);
            self.record_rest(step, app, &rest, tls, reason);
        }
        tls_hello
    }

    /// One complete (or cut) turn: parse, answer, record.
    fn take_turn(
        &mut self,
        step: &mut Step<'_, impl RecordOut>,
        app: &mut App,
        turn: &[u8],
        tls: Option<&TlsFacts>,
        truncated: bool,
        tx: &mut Vec<u8>,
    ) {
        let (cfg, now) = (step.cfg, step.now);
        let App::Talking(responder) = app else {
            return;
        };
        self.turns += 1;
        let ctx = self.context(cfg, now);
        let layer = tls.map(TlsFacts::layer);
        let record = RecordTurn {
            core: self,
            step,
            turn,
            layer,
            truncated,
            answer: Some((&ctx, tx)),
            ending: None,
        };
        match responder.visit(record) {
            protocols::After::KeepOpen => {}
            protocols::After::Close => self.close = Some(CloseReason::Protocol),
            protocols::After::StartTls => {
                if let App::Talking(resume) = std::mem::replace(app, App::Overflow) {
                    *app = App::AwaitingHello {
                        resume,
                        hello: HelloFramer::default(),
                    };
                    self.handshake_deadline = Some(now + cfg.handshake_timeout);
                }
            }
        }
    }

    /// The client paused: what is pending is one turn (or decides the protocol).
    fn pause(
        &mut self,
        step: &mut Step<'_, impl RecordOut>,
        app: &mut App,
        pending: &mut Vec<u8>,
        tls: Option<&TlsFacts>,
        tx: &mut Vec<u8>,
    ) -> Option<usize> {
        let cfg = step.cfg;
        if pending.is_empty() {
            return None;
        }
        if let App::Detecting { .. } = app {
            self.detect(cfg, app, pending, true, step.now);
            let hello = self.take_turns(step, app, pending, tls, 0, tx);
            if hello.is_some() || pending.is_empty() || self.pause_at.is_none() {
                return hello;
            }
            self.pause_at = None;
        }
        if let App::Overflow = app {
            return None;
        }
        if self.budget_spent(cfg) {
            *app = App::Overflow;
            return None;
        }
        let turn = std::mem::take(pending);
        self.scanned = 0;
        self.take_turn(step, app, &turn, tls, false, tx);
        None
    }

    /// True when the next record would be past the connection's budget (it must be the last).
    fn budget_spent(&self, cfg: &EngineConfig) -> bool {
        self.records + 1 >= cfg.max_records || self.record_bytes >= cfg.max_record_bytes
    }

    /// The last record(s) of a closing connection: an unfinished turn, the collected rest
    /// after the budget, or the empty connection itself.
    fn record_rest(
        &mut self,
        step: &mut Step<'_, impl RecordOut>,
        app: &mut App,
        pending: &[u8],
        tls: Option<&TlsFacts>,
        reason: CloseReason,
    ) {
        let cfg = step.cfg;
        self.close = Some(reason);
        if pending.is_empty() {
            if self.received == 0 && cfg.log_empty_connections {
                self.write(step, None, 0, false, false, Some(reason));
            }
            return;
        }
        self.turns += 1;
        let turn = self.turns;
        match app {
            App::Overflow => {
                let content = Content {
                    payload: pending,
                    fields: &protocols::raw::RawTurn,
                    tls: tls.map(TlsFacts::layer),
                };
                self.write(step, Some(&content), turn, false, true, Some(reason));
            }
            App::AwaitingHello { .. } => {
                let content = Content {
                    payload: pending,
                    fields: &protocols::raw::RawTurn,
                    tls: tls.map(TlsFacts::layer),
                };
                self.write(step, Some(&content), turn, true, false, Some(reason));
            }
            App::Detecting { .. } | App::Talking(_) => {
                if let App::Detecting { .. } = app {
                    self.detect(cfg, app, pending, true, step.now);
                }
                let App::Talking(responder) = app else {
                    return;
                };
                // Cut short if the responder was still waiting for more of it.
                let framing = responder.visit(FrameTurn {
                    pending,
                    new_from: self.scanned.min(pending.len()),
                });
                let truncated = framing == Framing::NeedMore
                    || (reason == CloseReason::PayloadCap && framing != Framing::AtPause);
                let layer = tls.map(TlsFacts::layer);
                responder.visit(RecordTurn {
                    core: self,
                    step,
                    turn: pending,
                    layer,
                    truncated,
                    answer: None,
                    ending: Some(reason),
                });
            }
        }
    }

    /// The ClientHello record of a TLS connection (turn 1), once the handshake is settled.
    fn record_hello(
        &mut self,
        step: &mut Step<'_, impl RecordOut>,
        facts: &TlsFacts,
        close: Option<CloseReason>,
    ) {
        self.turns += 1;
        let hello = protocols::tls::Hello {
            client: facts.client(),
            session: facts.info.as_ref(),
        };
        let content = Content {
            payload: &facts.hello,
            fields: &hello,
            tls: None,
        };
        let truncated = close.is_some() && hello.client.is_none();
        self.write(step, Some(&content), self.turns, truncated, false, close);
    }

    /// Writes one record and counts it against the budget.
    fn write(
        &mut self,
        step: &mut Step<'_, impl RecordOut>,
        content: Option<&Content<'_>>,
        turn: u32,
        truncated: bool,
        budget_exhausted: bool,
        close: Option<CloseReason>,
    ) {
        let cfg = step.cfg;
        let at = self.wall_time(step.now);
        let meta = ConnMeta {
            event_id: self.accepted.event_id.as_str(),
            sensor_name: &cfg.sensor_name,
            source: self.accepted.source,
            destination: self.accepted.destination,
            original_destination: self.accepted.original_destination,
            community_id: self.community_id.as_str(),
            started: self.accepted.started,
            syn: self.accepted.syn.as_ref(),
            transport: crate::record::Transport::Tcp,
        };
        let turn = TurnMeta {
            turn,
            at,
            client_bytes: self.received as u64,
            truncated,
            close_reason: close,
            budget_exhausted,
        };
        let mut size = 0;
        step.out.record(&mut |buf| {
            let before = buf.len();
            write_record(buf, &meta, &turn, content);
            size = buf.len() - before;
        });
        self.records += 1;
        self.record_bytes += size;
        self.budget_exhausted |= budget_exhausted;
    }
}

/// Where a ClientHello that a responder's `StartTls` awaits ends in `pending`, once known
/// (a broken one goes to rustls as it is, which fails it with an alert).
fn hello_end(hello: &mut HelloFramer, pending: &[u8]) -> Option<usize> {
    match hello.status(pending) {
        HelloStatus::Complete { records_len, .. } => Some(records_len),
        HelloStatus::Incomplete => None,
        HelloStatus::Invalid => Some(pending.len()),
    }
}

/// The conversation's start: the port's responder, greeting (into `out`) if it speaks first.
fn start_app(ctx: &Context<'_>, port: Option<&str>, out: &mut Vec<u8>) -> App {
    let mut port = port.and_then(|name| Active::by_name(name, ctx));
    let before = out.len();
    if let Some(r) = port.as_mut() {
        r.visit(Greet { ctx, out });
    }
    App::Detecting {
        port,
        greeted: out.len() > before,
    }
}

/// `greeting` on the active responder.
struct Greet<'a, 'b> {
    ctx: &'a Context<'b>,
    out: &'a mut Vec<u8>,
}

impl Visitor for Greet<'_, '_> {
    type Out = ();
    fn visit<R: Responder>(self, r: &mut R) {
        r.greeting(self.ctx, self.out);
    }
}

/// `frame` on the active responder.
struct FrameTurn<'a> {
    pending: &'a [u8],
    new_from: usize,
}

impl Visitor for FrameTurn<'_> {
    type Out = Framing;
    fn visit<R: Responder>(self, r: &mut R) -> Framing {
        r.frame(self.pending, self.new_from)
    }
}

/// Parse one turn with the active responder, answer it, and record it (parsed once for
/// both); or, as the connection ends, only record what is left.
struct RecordTurn<'a, 'b, 's, O> {
    core: &'a mut Core,
    step: &'a mut Step<'s, O>,
    turn: &'a [u8],
    layer: Option<TlsLayer<'a>>,
    truncated: bool,
    /// Where the reply goes; `None` when the connection is ending.
    answer: Option<(&'a Context<'b>, &'a mut Vec<u8>)>,
    /// The close reason of a connection that is ending.
    ending: Option<CloseReason>,
}

impl<O: RecordOut> Visitor for RecordTurn<'_, '_, '_, O> {
    type Out = protocols::After;
    fn visit<R: Responder>(self, r: &mut R) -> protocols::After {
        let view = r.parse(self.turn);
        let after = match self.answer {
            Some((ctx, tx)) => r.reply(&view, ctx, tx),
            None => protocols::After::KeepOpen,
        };
        let close = self
            .ending
            .or((after == protocols::After::Close).then_some(CloseReason::Protocol));
        let content = Content {
            payload: self.turn,
            fields: &view,
            tls: self.layer,
        };
        let turn = self.core.turns;
        self.core.write(
            self.step,
            Some(&content),
            turn,
            self.truncated,
            false,
            close,
        );
        after
    }
}

#[cfg(test)]
mod tests;
