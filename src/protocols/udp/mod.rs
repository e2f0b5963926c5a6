//! Datagram responders: what a UDP datagram is, what its record says, and the answer, if any.
//!
//! Each module parses one protocol's datagram into a borrowed view ([`DatagramResponder`]):
//! `parse` decides from the destination port and the bytes, `reply` writes the answer, and the
//! view's [`TurnFields`] are what the record gets. Adding a protocol is one new file plus one
//! line in [`registry!`].
//!
//! Rules every answer follows, enforced here and not left to the modules:
//! - never to a protocol that amplifies (memcached, CharGEN, SSDP, NTP mode 6/7: [`Never`]);
//! - never larger than the datagram that caused it ([`answer`] drops a larger one, counted).
//!
//! The per-source and sensor-wide reply budgets are in [`budget`]; flows (records of one
//! source/destination pair sharing an `event.id`) in [`flow`].

pub mod budget;
pub mod flow;

use super::TurnFields;
use crate::json::JsonWriter;
use std::net::SocketAddr;
use std::time::SystemTime;

/// Facts about a datagram a responder may use when it answers.
#[derive(Debug, Clone, Copy)]
pub struct DatagramContext {
    pub client: SocketAddr,
    /// The original destination (the address and port the client sent to).
    pub server: SocketAddr,
    pub now: SystemTime,
    /// Unpredictable per datagram (tags, nonces).
    pub random: u64,
}

/// One protocol's view of a datagram, borrowed from its bytes.
pub trait DatagramResponder<'a>: TurnFields + Sized {
    /// `network.protocol`.
    const NAME: &'static str;
    /// The view, if `datagram` sent to `port` is this protocol. Never panics, never allocates.
    fn parse(port: u16, datagram: &'a [u8]) -> Option<Self>;
    /// Writes the answer into `out` (left empty: no answer). [`answer`] drops it when it is
    /// larger than the datagram.
    fn reply(&self, _ctx: &DatagramContext, _out: &mut Vec<u8>) {}
}

/// Protocols that amplify: recorded, never answered, whatever they ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Never {
    Memcached,
    Chargen,
    Ssdp,
    /// NTP control (mode 6) and private (mode 7, `monlist`) queries.
    NtpControl,
}

impl Never {
    pub fn as_str(self) -> &'static str {
        match self {
            Never::Memcached => "memcached",
            Never::Chargen => "chargen",
            Never::Ssdp => "ssdp",
            Never::NtpControl => "ntp",
        }
    }

    /// Whether a datagram to `port` is one of them.
    fn classify(port: u16, datagram: &[u8]) -> Option<Never> {
        match port {
            11211 => return Some(Never::Memcached),
            19 => return Some(Never::Chargen),
            1900 => return Some(Never::Ssdp),
            _ => {}
        }
        if datagram.starts_with(b"M-SEARCH ") {
            return Some(Never::Ssdp);
        }
        // memcached's UDP frame header (request id, sequence 0, 1 datagram, reserved 0), then
        // a text command.
        if datagram.len() > 8
            && datagram[2..8] == [0, 0, 0, 1, 0, 0]
            && [&b"stats"[..], b"get ", b"gets ", b"set "]
                .iter()
                .any(|c| datagram[8..].starts_with(c))
        {
            return Some(Never::Memcached);
        }
        if port == 123 && matches!(datagram.first().map(|b| b & 7), Some(6 | 7)) {
            return Some(Never::NtpControl);
        }
        None
    }
}

/// A datagram nobody claims, or one never answered.
pub struct Unclaimed {
    never: Option<Never>,
}

impl TurnFields for Unclaimed {
    fn protocol(&self) -> Option<&'static str> {
        self.never.map(Never::as_str)
    }
}

/// Declares every datagram responder, in the order `parse` is tried.
macro_rules! registry {
    ($($variant:ident => $module:ident :: $ty:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// What a datagram is.
        pub enum Datagram<'a> {
            $($variant($module::$ty<'a>),)*
            /// No responder claims it, or it is one we never answer.
            Unclaimed(Unclaimed),
        }

        impl<'a> Datagram<'a> {
            /// Classifies a datagram sent to `port`.
            pub fn parse(port: u16, datagram: &'a [u8]) -> Datagram<'a> {
                if let Some(never) = Never::classify(port, datagram) {
                    return Datagram::Unclaimed(Unclaimed { never: Some(never) });
                }
                $(if let Some(v) = <$module::$ty<'a> as DatagramResponder<'a>>::parse(port, datagram) {
                    return Datagram::$variant(v);
                })*
                Datagram::Unclaimed(Unclaimed { never: None })
            }

            fn fields(&self) -> &dyn TurnFields {
                match self {
                    $(Datagram::$variant(v) => v,)*
                    Datagram::Unclaimed(u) => u,
                }
            }

            fn write_reply(&self, ctx: &DatagramContext, out: &mut Vec<u8>) {
                match self {
                    $(Datagram::$variant(v) => v.reply(ctx, out),)*
                    Datagram::Unclaimed(_) => {}
                }
            }
        }
    };
}

registry! {
    Ntp => ntp::NtpRequest,
    Snmp => snmp::SnmpMessage,
    Sip => sip::SipRequest,
    Quic => quic::QuicInitial,
    Dns => dns::DnsQuery,
}

impl<'a> Datagram<'a> {
    /// [`Datagram::parse`] for a datagram that [looks like a QUIC
    /// Initial](quic::QuicInitial::looks_like): its CRYPTO frames join `reassembly`, which
    /// may hold the flow's earlier ones.
    pub fn parse_quic(
        port: u16,
        datagram: &'a [u8],
        reassembly: &mut quic::HelloReassembly,
    ) -> (Datagram<'a>, quic::Progress) {
        if let Some(never) = Never::classify(port, datagram) {
            let d = Datagram::Unclaimed(Unclaimed { never: Some(never) });
            return (d, quic::Progress::Undecrypted);
        }
        match quic::QuicInitial::parse_with(datagram, reassembly) {
            Some((q, progress)) => (Datagram::Quic(q), progress),
            None => (Datagram::parse(port, datagram), quic::Progress::Undecrypted),
        }
    }

    /// Whether this is a protocol we never answer.
    pub fn never_answered(&self) -> bool {
        matches!(self, Datagram::Unclaimed(Unclaimed { never: Some(_) }))
    }
}

/// What became of a datagram's reply (`spip.udp.reply`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyOutcome {
    Sent,
    /// The protocol has no answer for it (or no responder claims it).
    None,
    /// A protocol that amplifies.
    Never,
    /// The answer was larger than the datagram.
    Oversize,
    /// The source's reply budget was spent.
    SourceBudget,
    /// The sensor-wide reply byte rate was spent.
    GlobalBudget,
    /// The kernel refused to send it.
    SendError,
}

impl ReplyOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyOutcome::Sent => "sent",
            ReplyOutcome::None => "none",
            ReplyOutcome::Never => "never",
            ReplyOutcome::Oversize => "oversize",
            ReplyOutcome::SourceBudget => "source_budget",
            ReplyOutcome::GlobalBudget => "global_budget",
            ReplyOutcome::SendError => "send_error",
        }
    }
}

/// A datagram's record fields: the protocol's, plus `spip.udp.*` (what became of the reply).
pub struct DatagramTurn<'a, 'd> {
    pub datagram: &'a Datagram<'d>,
    pub reply: ReplyOutcome,
    /// Bytes of the reply sent (0 when none was).
    pub reply_bytes: usize,
}

impl TurnFields for DatagramTurn<'_, '_> {
    fn summary(&self) -> bool {
        self.datagram.summary()
    }
    fn protocol(&self) -> Option<&'static str> {
        self.datagram.protocol()
    }
    fn write_ecs(&self, w: &mut JsonWriter<'_>) {
        self.datagram.write_ecs(w)
    }
    fn write_spip(&self, w: &mut JsonWriter<'_>) {
        self.datagram.write_spip(w);
        w.begin_object("udp");
        w.str("reply", self.reply.as_str().as_bytes());
        if self.reply_bytes > 0 {
            w.u64("reply_bytes", self.reply_bytes as u64);
        }
        if let Datagram::Unclaimed(Unclaimed { never: Some(n) }) = self.datagram {
            w.str("never_answered", n.as_str().as_bytes());
        }
        w.end_object();
    }
}

impl TurnFields for Datagram<'_> {
    fn summary(&self) -> bool {
        self.fields().summary()
    }
    fn protocol(&self) -> Option<&'static str> {
        self.fields().protocol()
    }
    fn write_ecs(&self, w: &mut JsonWriter<'_>) {
        self.fields().write_ecs(w)
    }
    fn write_spip(&self, w: &mut JsonWriter<'_>) {
        self.fields().write_spip(w)
    }
}

/// What [`answer`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `out` holds the reply (never longer than the datagram).
    Reply,
    /// The protocol has no answer for this datagram.
    Nothing,
    /// A protocol that amplifies: never answered.
    Never,
    /// The responder's answer was larger than the datagram: dropped.
    Oversize,
}

/// Writes the answer to `datagram` (`len` bytes) into `out` (cleared first), applying the
/// rules every answer follows.
pub fn answer(
    parsed: &Datagram<'_>,
    len: usize,
    ctx: &DatagramContext,
    out: &mut Vec<u8>,
) -> Answer {
    out.clear();
    if parsed.never_answered() {
        return Answer::Never;
    }
    parsed.write_reply(ctx, out);
    if out.is_empty() {
        Answer::Nothing
    } else if out.len() > len {
        out.clear();
        Answer::Oversize
    } else {
        Answer::Reply
    }
}

/// Big-endian u16 at `at`, if present.
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

#[cfg(test)]
mod tests;
