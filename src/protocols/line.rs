//! What the line-based responders (FTP, SMTP, POP3, IMAP) share: CRLF framing with the real
//! servers' line cap, the verb/argument split, and SASL PLAIN/LOGIN responses decoded into a
//! stack buffer when a record is written (the turn's view stays a borrowed slice).

use super::Framing;
use crate::json::{JsonWriter, write_json_string_content};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The line starting `pending` ends after its LF, or after `max` bytes: a longer line is cut
/// there and the rest is the next line, as the real servers' fixed line buffers do. Only the
/// bytes from `new_from` are scanned.
pub fn frame(pending: &[u8], new_from: usize, max: usize) -> Framing {
    let end = pending.len().min(max);
    match memchr::memchr(b'\n', pending.get(new_from..end).unwrap_or_default()) {
        Some(i) => Framing::Complete(new_from + i + 1),
        None if end == max => Framing::Complete(max),
        None => Framing::NeedMore,
    }
}

/// The line without its `\r\n` / `\n` (a cut line has none).
pub fn content(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `VERB argument` → (`VERB`, `argument`): the verb up to the first space, the argument after
/// it (empty when there is none).
pub fn verb_arg(line: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b' ', line) {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[]),
    }
}

/// Up to this many decoded bytes of one SASL response are recorded (a longer one is cut).
const SASL_MAX: usize = 510;

/// A base64 SASL response, decoded.
pub struct Decoded {
    buf: [u8; SASL_MAX],
    len: usize,
}

impl Decoded {
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// PLAIN (RFC 4616): `authzid NUL authcid NUL passwd` → (authcid, passwd).
    pub fn plain(&self) -> Option<(&[u8], &[u8])> {
        let mut parts = self.bytes().splitn(3, |&b| b == 0);
        let (_authzid, user, password) = (parts.next()?, parts.next()?, parts.next()?);
        Some((user, password))
    }
}

/// Decodes a base64 SASL response (whitespace around it ignored); `None` when it is not
/// base64. Only the first [`SASL_MAX`] decoded bytes are kept.
pub fn decode(text: &[u8]) -> Option<Decoded> {
    let text = text.trim_ascii();
    // Whole 4-character groups that fit the buffer (3 bytes each).
    let take = text.len().min(SASL_MAX / 3 * 4);
    let mut d = Decoded {
        buf: [0; SASL_MAX],
        len: 0,
    };
    d.len = STANDARD.decode_slice(&text[..take], &mut d.buf).ok()?;
    Some(d)
}

/// The SASL mechanisms the responders offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

impl Mechanism {
    pub fn from_name(name: &[u8]) -> Option<Mechanism> {
        if name.eq_ignore_ascii_case(b"PLAIN") {
            Some(Mechanism::Plain)
        } else if name.eq_ignore_ascii_case(b"LOGIN") {
            Some(Mechanism::Login)
        } else {
            None
        }
    }
}

/// `<mechanism> [initial-response]` (an AUTH/AUTHENTICATE argument) → the mechanism's name,
/// and what its initial response carries, when there is one.
pub fn initial_response(arg: &[u8]) -> (&[u8], Option<(SaslPart, &[u8])>) {
    let (name, initial) = verb_arg(arg);
    let part = match Mechanism::from_name(name) {
        _ if initial.is_empty() => None,
        Some(Mechanism::Plain) => Some((SaslPart::Plain, initial)),
        Some(Mechanism::Login) => Some((SaslPart::LoginUser, initial)),
        None => None,
    };
    (name, part)
}

/// What one base64 SASL response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslPart {
    /// A PLAIN response: user and password.
    Plain,
    /// The LOGIN user name.
    LoginUser,
    /// The LOGIN password.
    LoginPassword,
}

/// Writes `user.name` from a SASL response.
pub fn write_sasl_user(w: &mut JsonWriter<'_>, part: SaslPart, b64: &[u8]) {
    let Some(d) = decode(b64) else { return };
    let user = match part {
        SaslPart::Plain => d.plain().map(|(user, _)| user),
        SaslPart::LoginUser => Some(d.bytes()),
        SaslPart::LoginPassword => None,
    };
    if let Some(user) = user {
        w.begin_object("user");
        w.str("name", user);
        w.end_object();
    }
}

/// Writes `password` (inside the caller's `spip.<protocol>` object) from a SASL response.
pub fn write_sasl_password(w: &mut JsonWriter<'_>, part: SaslPart, b64: &[u8]) {
    let Some(d) = decode(b64) else { return };
    let password = match part {
        SaslPart::Plain => d.plain().map(|(_, password)| password),
        SaslPart::LoginPassword => Some(d.bytes()),
        SaslPart::LoginUser => None,
    };
    if let Some(password) = password {
        w.str("password", password);
    }
}

/// Writes `key: "<pieces joined>"` (a value the view holds in several borrowed pieces, such
/// as a quoted string with its escapes removed).
pub fn write_pieces<'v>(w: &mut JsonWriter<'_>, key: &str, pieces: impl Iterator<Item = &'v [u8]>) {
    w.key_only(key);
    w.buf().push(b'"');
    for piece in pieces {
        write_json_string_content(w.buf(), piece);
    }
    w.buf().push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_at_lf_or_the_cap() {
        assert_eq!(frame(b"USER a\r\nPASS", 0, 64), Framing::Complete(8));
        assert_eq!(frame(b"USER a", 0, 64), Framing::NeedMore);
        assert_eq!(frame(b"USER a\r\n", 6, 64), Framing::Complete(8));
        assert_eq!(frame(b"xxxxx", 0, 4), Framing::Complete(4));
        assert_eq!(frame(b"xxx\n", 0, 3), Framing::Complete(3));
    }

    #[test]
    fn plain_and_garbage() {
        let d = decode(b"AHVzZXIAcGFzcw==").unwrap();
        assert_eq!(d.plain(), Some((&b"user"[..], &b"pass"[..])));
        assert!(decode(b"!!!!").is_none());
        let long = vec![b'A'; 4000];
        assert_eq!(decode(&long).unwrap().bytes().len(), SASL_MAX);
    }
}
