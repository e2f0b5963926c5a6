//! A TLS ClientHello. In TLS mode the engine terminates TLS (see [`crate::engine`]) and this
//! module only frames the hello and writes its fields; otherwise the hello is a turn of its own,
//! fingerprinted (JA4, JA3) and answered like unknown bytes (the client's IP), as Spip does.

use super::{After, Context, Detection, Framing, Responder, TurnFields};
use crate::engine::tls::TlsInfo;
use crate::fingerprint::{self, TlsClient};
use crate::json::JsonWriter;
use crate::proto::tls::{HelloFramer, HelloStatus};
use crate::record::format_ip;

pub struct Tls {
    hello: HelloFramer,
}

/// A ClientHello turn: the hello's fingerprints (when it parsed), and in TLS mode what the
/// handshake settled.
pub struct Hello<'a> {
    pub client: Option<TlsClient<'a>>,
    pub session: Option<&'a TlsInfo>,
}

impl Responder for Tls {
    const NAME: &'static str = "tls";
    const OVERRIDES_GREETING: bool = true;
    type Turn<'a> = Hello<'a>;

    fn new(_ctx: &Context<'_>) -> Self {
        Tls {
            hello: HelloFramer::default(),
        }
    }

    fn detect(first: &[u8]) -> Detection {
        match first {
            [0x16] => Detection::NeedMore,
            [0x16, 3, ..] => Detection::Match,
            _ => Detection::NoMatch,
        }
    }

    fn frame(&mut self, pending: &[u8], new_from: usize) -> Framing {
        if new_from == 0 {
            self.hello = HelloFramer::default();
        }
        match self.hello.status(pending) {
            HelloStatus::Complete { records_len, .. } => Framing::Complete(records_len),
            HelloStatus::Incomplete => Framing::NeedMore,
            HelloStatus::Invalid => Framing::AtPause,
        }
    }

    fn parse<'a>(&self, turn: &'a [u8]) -> Hello<'a> {
        Hello {
            client: fingerprint::tls_client(turn),
            session: None,
        }
    }

    fn reply(&mut self, _turn: &Hello<'_>, ctx: &Context<'_>, out: &mut Vec<u8>) -> After {
        let mut ip = [0u8; 46];
        let n = format_ip(&mut ip, ctx.client.ip());
        out.extend_from_slice(&ip[..n]);
        After::KeepOpen
    }
}

impl TurnFields for Hello<'_> {
    // The hello is binary: the hex says it exactly, a lossy text would only add noise.
    fn summary(&self) -> bool {
        false
    }

    fn protocol(&self) -> Option<&'static str> {
        (self.client.is_some() || self.session.is_some()).then_some("tls")
    }

    fn write_ecs(&self, w: &mut JsonWriter<'_>) {
        write_tls(w, self.client.as_ref(), self.session);
    }

    fn write_spip(&self, w: &mut JsonWriter<'_>) {
        write_tls_spip(w, self.client.as_ref(), self.session);
    }
}

/// The `tls` object: the hello's fingerprints and, in TLS mode, the negotiated parameters.
pub fn write_tls(w: &mut JsonWriter<'_>, client: Option<&TlsClient<'_>>, session: Option<&TlsInfo>) {
    if client.is_none() && session.is_none() {
        return;
    }
    w.begin_object("tls");
    if let Some(alpn) = session.and_then(|s| s.alpn.as_deref()) {
        w.str("alpn", alpn);
    }
    w.begin_object("client");
    if let Some(c) = client {
        c.write_client_members(w);
    }
    if let Some(s) = session {
        s.write_client_members(w);
    }
    w.end_object();
    w.end_object();
}

/// Members inside `spip`: the raw fingerprint strings and the handshake error.
pub fn write_tls_spip(
    w: &mut JsonWriter<'_>,
    client: Option<&TlsClient<'_>>,
    session: Option<&TlsInfo>,
) {
    if let Some(c) = client {
        c.write_spip_fields(w);
    }
    if let Some(e) = session.and_then(|s| s.error.as_deref()) {
        w.str("tls_error", e.as_bytes());
    }
}

#[cfg(test)]
#[path = "../../tests/support/hellos.rs"]
mod hellos;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::testing::{assert_splits_agree, converse};
    use super::hellos;

    #[test]
    fn hello_across_records_is_one_turn_without_summary() {
        let hello = hellos::chrome_like_hello();
        let stream = crate::proto::tls::wrap_records(&hello, &[100, 50]);
        assert_splits_agree::<Tls>(false, &stream);
        let t = converse::<Tls>(false, &[&stream]);
        assert_eq!(t.turns.len(), 1);
        assert!(!t.turns[0].summary);
        assert_eq!(t.turns[0].protocol, Some("tls"));
        assert!(t.turns[0].ecs["tls"]["client"]["hash"]["ja4"].is_string());
    }
}
