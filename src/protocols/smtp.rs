//! SMTP (25, 587), answered like Postfix 3.7 on Debian with SASL and without TLS:
//! `220 <host> ESMTP Postfix (Debian/GNU)`, EHLO/HELO, MAIL, RCPT (accepted, so the client goes
//! on to DATA), DATA with the message up to the lone `.` as one turn (`250 2.0.0 Ok: queued
//! as ...`), AUTH PLAIN/LOGIN refused with `535`, RSET, NOOP, QUIT. STARTTLS is not offered,
//! VRFY is disabled, and the twentieth error ends the session (`smtpd_hard_error_limit`).

use super::line::{self, Mechanism, SaslPart};
use super::{After, Context, Framing, Responder, TurnFields};
use crate::json::JsonWriter;

/// Postfix's `line_length_limit`.
const MAX_LINE: usize = 2048;
/// Postfix's `smtpd_hard_error_limit`.
const MAX_ERRORS: u8 = 20;
/// Commands answered on one connection before we hang up (bounds what a client can draw out).
const MAX_COMMANDS: u16 = 100;

const AUTH_FAILED: &[u8] = b"535 5.7.8 Error: authentication failed: authentication failure\r\n";

pub struct Smtp {
    phase: Phase,
    errors: u8,
    commands: u16,
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before HELO/EHLO.
    Connected,
    /// Greeted, no mail transaction.
    Greeted,
    /// MAIL accepted.
    Mail,
    /// At least one RCPT accepted.
    Rcpt,
    /// After `354`: the message, up to a line holding only `.`.
    Data(DotScan),
    /// Inside AUTH: the next line is this SASL response.
    Sasl(SaslPart),
}

/// How far the end of the message (`<LF>.<CR><LF>`, a bare LF accepted as Postfix does) has
/// been seen, so each byte of the message is looked at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DotScan {
    /// At the start of a line (the message starts here too).
    LineStart,
    /// In the middle of a line.
    InLine,
    /// A line starting with `.`.
    Dot,
    /// `.` then CR.
    DotCr,
}

impl DotScan {
    /// Feeds `bytes`; the index just past the end of the message when it ends in them.
    fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        for (i, &b) in bytes.iter().enumerate() {
            *self = match (*self, b) {
                (DotScan::Dot | DotScan::DotCr, b'\n') => return Some(i + 1),
                (_, b'\n') => DotScan::LineStart,
                (DotScan::LineStart, b'.') => DotScan::Dot,
                (DotScan::Dot, b'\r') => DotScan::DotCr,
                _ => DotScan::InLine,
            };
        }
        None
    }
}

/// One client turn.
pub enum SmtpTurn<'a> {
    Command { verb: &'a [u8], arg: &'a [u8] },
    /// The message after DATA, with its closing `.` line.
    Message { text: &'a [u8] },
    /// A base64 line answering an AUTH challenge.
    Sasl { part: SaslPart, b64: &'a [u8] },
}

impl SmtpTurn<'_> {
    fn is(&self, name: &[u8]) -> bool {
        matches!(self, SmtpTurn::Command { verb, .. } if verb.eq_ignore_ascii_case(name))
    }
}

/// The address in `FROM:<a@b> SIZE=1` / `TO:<a@b>` after the `FROM:` / `TO:` keyword.
fn address<'a>(arg: &'a [u8], keyword: &[u8]) -> Option<&'a [u8]> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_ascii_start();
    match rest.strip_prefix(b"<") {
        Some(inner) => memchr::memchr(b'>', inner).map(|end| &inner[..end]),
        None => Some(rest.split(|&b| b == b' ').next().unwrap_or_default()),
    }
}

/// The value of the first `name:` header of a message (headers end at the first empty line).
fn header<'a>(message: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    for line in message.split(|&b| b == b'\n') {
        let line = line::content(line);
        if line.is_empty() {
            return None;
        }
        let Some((key, value)) = line.split_at_checked(name.len()) else {
            continue;
        };
        if key.eq_ignore_ascii_case(name) {
            if let Some(value) = value.strip_prefix(b":") {
                return Some(value.trim_ascii());
            }
        }
    }
    None
}

impl Responder for Smtp {
    const NAME: &'static str = "smtp";
    const DEFAULT_PORTS: &'static [u16] = &[25, 587];
    type Turn<'a> = SmtpTurn<'a>;

    fn new(_ctx: &Context<'_>) -> Self {
        Smtp {
            phase: Phase::Connected,
            errors: 0,
            commands: 0,
        }
    }

    fn greeting(&mut self, ctx: &Context<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"220 ");
        out.extend_from_slice(ctx.settings.hostname.as_bytes());
        out.extend_from_slice(b" ESMTP Postfix (Debian/GNU)\r\n");
    }

    fn frame(&mut self, pending: &[u8], new_from: usize) -> Framing {
        match &mut self.phase {
            Phase::Data(scan) => match scan.feed(pending.get(new_from..).unwrap_or_default()) {
                Some(end) => Framing::Complete(new_from + end),
                None => Framing::NeedMore,
            },
            _ => line::frame(pending, new_from, MAX_LINE),
        }
    }

    fn parse<'a>(&self, turn: &'a [u8]) -> SmtpTurn<'a> {
        match self.phase {
            Phase::Data(_) => SmtpTurn::Message { text: turn },
            Phase::Sasl(part) => SmtpTurn::Sasl {
                part,
                b64: line::content(turn),
            },
            _ => {
                let (verb, arg) = line::verb_arg(line::content(turn));
                SmtpTurn::Command { verb, arg }
            }
        }
    }

    fn reply(&mut self, turn: &SmtpTurn<'_>, ctx: &Context<'_>, out: &mut Vec<u8>) -> After {
        self.commands += 1;
        let after = if self.commands >= MAX_COMMANDS {
            After::Close
        } else {
            After::KeepOpen
        };
        let reply = self.answer(turn);
        let error = matches!(reply, Reply::Text(text) if text[0] >= b'4');
        if error {
            self.errors += 1;
            if self.errors >= MAX_ERRORS {
                out.extend_from_slice(b"421 4.7.0 ");
                out.extend_from_slice(ctx.settings.hostname.as_bytes());
                out.extend_from_slice(b" Error: too many errors\r\n");
                return After::Close;
            }
        }
        match reply {
            Reply::Text(text) => out.extend_from_slice(text),
            Reply::Hostname(prefix, suffix) => {
                out.extend_from_slice(prefix);
                out.extend_from_slice(ctx.settings.hostname.as_bytes());
                out.extend_from_slice(suffix);
            }
            Reply::Queued => {
                out.extend_from_slice(b"250 2.0.0 Ok: queued as ");
                // Postfix short queue ids: 10 or so upper-case hex digits.
                let id = ctx.random_bytes::<5>(u64::from(self.commands));
                for b in id {
                    for nibble in [b >> 4, b & 0xf] {
                        out.push(b"0123456789ABCDEF"[usize::from(nibble)]);
                    }
                }
                out.extend_from_slice(b"\r\n");
            }
            Reply::Quit => {
                out.extend_from_slice(b"221 2.0.0 Bye\r\n");
                return After::Close;
            }
        }
        after
    }
}

/// An answer before it is written.
enum Reply {
    Text(&'static [u8]),
    /// `prefix`, the host name, `suffix`.
    Hostname(&'static [u8], &'static [u8]),
    Queued,
    Quit,
}

impl Smtp {
    /// The answer to `turn`, moving to the next phase.
    fn answer(&mut self, turn: &SmtpTurn<'_>) -> Reply {
        let (verb, arg) = match *turn {
            SmtpTurn::Message { .. } => {
                self.phase = Phase::Greeted;
                return Reply::Queued;
            }
            SmtpTurn::Sasl { part, b64 } => {
                if b64 == b"*" {
                    self.phase = Phase::Greeted;
                    return Reply::Text(b"501 5.7.0 Authentication aborted\r\n");
                }
                if part == SaslPart::LoginUser {
                    self.phase = Phase::Sasl(SaslPart::LoginPassword);
                    return Reply::Text(b"334 UGFzc3dvcmQ6\r\n");
                }
                self.phase = Phase::Greeted;
                return Reply::Text(AUTH_FAILED);
            }
            SmtpTurn::Command { verb, arg } => (verb, arg),
        };
        let is = |name: &[u8]| verb.eq_ignore_ascii_case(name);
        let greeted = self.phase != Phase::Connected;
        let in_transaction = matches!(self.phase, Phase::Mail | Phase::Rcpt);
        if is(b"EHLO") || is(b"HELO") {
            if arg.trim_ascii().is_empty() {
                return Reply::Text(if is(b"EHLO") {
                    b"501 Syntax: EHLO hostname\r\n"
                } else {
                    b"501 Syntax: HELO hostname\r\n"
                });
            }
            self.phase = Phase::Greeted;
            if is(b"HELO") {
                return Reply::Hostname(b"250 ", b"\r\n");
            }
            return Reply::Hostname(
                b"250-",
                b"\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-ETRN\r\n\
                  250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n\
                  250-DSN\r\n250 SMTPUTF8\r\n",
            );
        }
        if is(b"MAIL") {
            return Reply::Text(if !greeted {
                b"503 5.5.1 Error: send HELO/EHLO first\r\n"
            } else if in_transaction {
                b"503 5.5.1 Error: nested MAIL command\r\n"
            } else if address(arg, b"FROM:").is_none() {
                b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
            } else {
                self.phase = Phase::Mail;
                b"250 2.1.0 Ok\r\n"
            });
        }
        if is(b"RCPT") {
            return Reply::Text(if !in_transaction {
                b"503 5.5.1 Error: need MAIL command\r\n"
            } else if address(arg, b"TO:").is_none() {
                b"501 5.5.4 Syntax: RCPT TO:<address>\r\n"
            } else {
                self.phase = Phase::Rcpt;
                b"250 2.1.5 Ok\r\n"
            });
        }
        if is(b"DATA") {
            return Reply::Text(match self.phase {
                Phase::Rcpt => {
                    self.phase = Phase::Data(DotScan::LineStart);
                    b"354 End data with <CR><LF>.<CR><LF>\r\n"
                }
                Phase::Mail => b"554 5.5.1 Error: no valid recipients\r\n",
                _ => b"503 5.5.1 Error: need RCPT command\r\n",
            });
        }
        if is(b"AUTH") {
            let (mechanism, initial) = line::verb_arg(arg);
            return Reply::Text(if !greeted {
                b"503 5.5.1 Error: send HELO/EHLO first\r\n"
            } else if in_transaction {
                b"503 5.5.1 Error: MAIL transaction in progress\r\n"
            } else if mechanism.is_empty() {
                b"501 5.5.4 Syntax: AUTH mechanism\r\n"
            } else {
                match (Mechanism::from_name(mechanism), initial.is_empty()) {
                    (Some(Mechanism::Plain), true) => {
                        self.phase = Phase::Sasl(SaslPart::Plain);
                        b"334 \r\n"
                    }
                    (Some(Mechanism::Plain), false) => AUTH_FAILED,
                    (Some(Mechanism::Login), true) => {
                        self.phase = Phase::Sasl(SaslPart::LoginUser);
                        b"334 VXNlcm5hbWU6\r\n"
                    }
                    (Some(Mechanism::Login), false) => {
                        self.phase = Phase::Sasl(SaslPart::LoginPassword);
                        b"334 UGFzc3dvcmQ6\r\n"
                    }
                    (None, _) => {
                        b"535 5.7.8 Error: authentication failed: Invalid authentication mechanism\r\n"
                    }
                }
            });
        }
        if is(b"RSET") {
            if in_transaction {
                self.phase = Phase::Greeted;
            }
            return Reply::Text(b"250 2.0.0 Ok\r\n");
        }
        if is(b"NOOP") {
            return Reply::Text(b"250 2.0.0 Ok\r\n");
        }
        if is(b"QUIT") {
            return Reply::Quit;
        }
        if is(b"VRFY") {
            return Reply::Text(b"502 5.5.1 VRFY command is disabled\r\n");
        }
        if verb.is_empty() {
            return Reply::Text(b"500 5.5.2 Error: bad syntax\r\n");
        }
        Reply::Text(b"502 5.5.2 Error: command not recognized\r\n")
    }
}

impl TurnFields for SmtpTurn<'_> {
    fn protocol(&self) -> Option<&'static str> {
        Some("smtp")
    }

    fn write_ecs(&self, w: &mut JsonWriter<'_>) {
        match *self {
            SmtpTurn::Command { arg, .. } if self.is(b"MAIL") => {
                if let Some(from) = address(arg, b"FROM:") {
                    w.begin_object("email");
                    w.begin_object("from");
                    w.str("address", from);
                    w.end_object();
                    w.end_object();
                }
            }
            SmtpTurn::Command { arg, .. } if self.is(b"RCPT") => {
                if let Some(to) = address(arg, b"TO:") {
                    w.begin_object("email");
                    w.begin_object("to");
                    w.str("address", to);
                    w.end_object();
                    w.end_object();
                }
            }
            SmtpTurn::Command { arg, .. } if self.is(b"AUTH") => {
                if let (_, Some((part, initial))) = line::initial_response(arg) {
                    line::write_sasl_user(w, part, initial);
                }
            }
            SmtpTurn::Command { .. } => {}
            SmtpTurn::Message { text } => {
                let subject = header(text, b"Subject");
                let message_id = header(text, b"Message-Id");
                if subject.is_some() || message_id.is_some() {
                    w.begin_object("email");
                    if let Some(subject) = subject {
                        w.str("subject", subject);
                    }
                    if let Some(id) = message_id {
                        w.str("message_id", id);
                    }
                    w.end_object();
                }
            }
            SmtpTurn::Sasl { part, b64 } => line::write_sasl_user(w, part, b64),
        }
    }

    fn write_spip(&self, w: &mut JsonWriter<'_>) {
        match *self {
            SmtpTurn::Command { verb: [], .. } => {}
            SmtpTurn::Command { verb, arg } => {
                w.begin_object("smtp");
                w.str("command", verb);
                if self.is(b"AUTH") {
                    let (mechanism, initial) = line::initial_response(arg);
                    w.str("mechanism", mechanism);
                    if let Some((part, initial)) = initial {
                        line::write_sasl_password(w, part, initial);
                    }
                } else if !arg.is_empty() {
                    w.str("argument", arg);
                }
                w.end_object();
            }
            SmtpTurn::Message { text } => {
                w.begin_object("smtp");
                w.u64("message_bytes", text.len() as u64);
                w.end_object();
            }
            SmtpTurn::Sasl { part, b64 } => {
                w.begin_object("smtp");
                line::write_sasl_password(w, part, b64);
                w.end_object();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::testing::{assert_splits_agree, converse, converse_on};
    use serde_json::json;

    /// What `swaks --to SECRET@y.org --from a@x.org --helo client.example` sends (swaks
    /// 20201014 against a listener; the Date is fixed here).
    const SWAKS: &[u8] = b"EHLO client.example\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<SECRET@y.org>\r\n\
        DATA\r\nDate: Mon, 30 Nov 2026 00:29:45 +0000\r\nTo: SECRET@y.org\r\nFrom: a@x.org\r\n\
        Subject: test Mon, 30 Nov 2026 00:29:45 +0000\r\nMessage-Id: <20261130002945.022927@vm>\r\n\
        X-Mailer: swaks v20201014.0 jetmore.org/john/code/swaks/\r\n\r\nThis is a test mailing\r\n\
        \r\n\r\n.\r\nQUIT\r\n";

    #[test]
    fn swaks_mail_is_captured() {
        let t = converse_on::<Smtp>(25, true, &[SWAKS]);
        assert_eq!(t.greeting, b"220 ubuntu ESMTP Postfix (Debian/GNU)\r\n");
        assert_eq!(t.turns.len(), 6);
        assert!(t.turns[0].reply.starts_with(b"250-ubuntu\r\n250-PIPELINING\r\n"));
        assert!(t.turns[0].reply.ends_with(b"250 SMTPUTF8\r\n"));
        assert!(!t.sent().windows(8).any(|w| w == b"STARTTLS"));
        assert_eq!(
            t.turns[0].spip,
            json!({"smtp": {"command": "EHLO", "argument": "client.example"}})
        );
        assert_eq!(t.turns[1].reply, b"250 2.1.0 Ok\r\n");
        assert_eq!(t.turns[1].ecs, json!({"email": {"from": {"address": "a@x.org"}}}));
        assert_eq!(t.turns[2].reply, b"250 2.1.5 Ok\r\n");
        assert_eq!(t.turns[2].ecs, json!({"email": {"to": {"address": "SECRET@y.org"}}}));
        assert_eq!(t.turns[3].reply, b"354 End data with <CR><LF>.<CR><LF>\r\n");
        let message = &t.turns[4];
        assert!(message.bytes.starts_with(b"Date: "));
        assert!(message.bytes.ends_with(b"mailing\r\n\r\n\r\n.\r\n"));
        assert!(message.reply.starts_with(b"250 2.0.0 Ok: queued as "));
        assert_eq!(message.reply.len(), b"250 2.0.0 Ok: queued as ".len() + 12);
        assert_eq!(
            message.ecs,
            json!({"email": {"subject": "test Mon, 30 Nov 2026 00:29:45 +0000",
                             "message_id": "<20261130002945.022927@vm>"}})
        );
        assert_eq!(
            message.spip,
            json!({"smtp": {"message_bytes": message.bytes.len()}})
        );
        assert_eq!(t.turns[5].reply, b"221 2.0.0 Bye\r\n");
        assert!(t.turns[5].close);
        assert_splits_agree::<Smtp>(true, SWAKS);
    }

    #[test]
    fn swaks_auth_plain_and_login() {
        // swaks --auth PLAIN --auth-user u --auth-password SECRETPW
        let plain: &[u8] = b"EHLO client.example\r\nAUTH PLAIN AHUAU0VDUkVUUFc=\r\nQUIT\r\n";
        let t = converse::<Smtp>(true, &[plain]);
        assert_eq!(t.turns[1].reply, AUTH_FAILED);
        assert_eq!(t.turns[1].ecs, json!({"user": {"name": "u"}}));
        assert_eq!(
            t.turns[1].spip,
            json!({"smtp": {"command": "AUTH", "mechanism": "PLAIN", "password": "SECRETPW"}})
        );
        assert_splits_agree::<Smtp>(true, plain);
        // swaks --auth LOGIN ...
        let login: &[u8] = b"EHLO client.example\r\nAUTH LOGIN\r\ndQ==\r\nU0VDUkVUUFc=\r\nQUIT\r\n";
        let t = converse::<Smtp>(true, &[login]);
        assert_eq!(t.turns[1].reply, b"334 VXNlcm5hbWU6\r\n");
        assert_eq!(t.turns[2].reply, b"334 UGFzc3dvcmQ6\r\n");
        assert_eq!(t.turns[2].ecs, json!({"user": {"name": "u"}}));
        assert_eq!(t.turns[3].reply, AUTH_FAILED);
        assert_eq!(t.turns[3].spip, json!({"smtp": {"password": "SECRETPW"}}));
        assert_splits_agree::<Smtp>(true, login);
    }

    #[test]
    fn curl_mail_with_an_empty_body_and_order_errors() {
        // curl smtp:// --mail-from a@x.org --mail-rcpt SECRET@y.org -T (an empty message).
        let t = converse::<Smtp>(
            true,
            &[b"MAIL FROM:<a>\r\nEHLO vm\r\nRCPT TO:<b>\r\nDATA\r\nMAIL FROM:<a@x.org>\r\nDATA\r\n\
                RCPT TO:<SECRET@y.org>\r\nAUTH PLAIN\r\nDATA\r\n.\r\nRSET\r\nHELO\r\nVRFY root\r\n\
                STARTTLS\r\n\r\nAUTH PLAIN\r\n*\r\n"],
        );
        let replies: Vec<String> = t
            .turns
            .iter()
            .map(|t| String::from_utf8_lossy(&t.reply).into_owned())
            .collect();
        assert_eq!(replies[0], "503 5.5.1 Error: send HELO/EHLO first\r\n");
        assert_eq!(replies[2], "503 5.5.1 Error: need MAIL command\r\n");
        assert_eq!(replies[3], "503 5.5.1 Error: need RCPT command\r\n");
        assert_eq!(replies[5], "554 5.5.1 Error: no valid recipients\r\n");
        assert_eq!(t.turns[6].ecs["email"]["to"]["address"], "SECRET@y.org");
        assert_eq!(replies[7], "503 5.5.1 Error: MAIL transaction in progress\r\n");
        assert_eq!(replies[8], "354 End data with <CR><LF>.<CR><LF>\r\n");
        assert_eq!(t.turns[9].bytes, b".\r\n");
        assert!(replies[9].starts_with("250 2.0.0 Ok: queued as "));
        assert_eq!(replies[10], "250 2.0.0 Ok\r\n");
        assert_eq!(replies[11], "501 Syntax: HELO hostname\r\n");
        assert_eq!(replies[12], "502 5.5.1 VRFY command is disabled\r\n");
        assert_eq!(replies[13], "502 5.5.2 Error: command not recognized\r\n");
        assert_eq!(replies[14], "500 5.5.2 Error: bad syntax\r\n");
        assert_eq!(replies[15], "334 \r\n");
        assert_eq!(replies[16], "501 5.7.0 Authentication aborted\r\n");
    }

    #[test]
    fn garbage_and_prefixes_never_panic() {
        let input: &[u8] = b"EHLO x\r\nMAIL FROM:<\r\nMAIL FROM:\xff\r\nRCPT TO:\r\nRCPT TO:<>\r\nDATA\r\n.x\r\n.\r\r\n\
            .\nAUTH LOGIN \xff\r\n!\r\nAUTH PLAIN =\r\nAUTH X\r\nDATA";
        for end in 0..=input.len() {
            converse::<Smtp>(true, &[&input[..end]]);
        }
        assert_splits_agree::<Smtp>(true, input);
    }

    #[test]
    fn hostile_64k_gets_a_small_reply() {
        let one_line = vec![b'A'; 64 * 1024];
        assert!(converse::<Smtp>(true, &[&one_line]).sent().len() < 2048);
        let many: Vec<u8> = b"X\n".iter().copied().cycle().take(64 * 1024).collect();
        assert!(converse::<Smtp>(true, &[&many]).sent().len() < 2048);
        // A long message is one turn with one short answer.
        let mut mail = b"HELO a\r\nMAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n".to_vec();
        mail.extend(b"..\r\n".iter().copied().cycle().take(64 * 1024));
        mail.extend_from_slice(b".\r\n");
        let t = converse::<Smtp>(true, &[&mail]);
        assert_eq!(t.turns.len(), 5);
        assert!(t.sent().len() < 512);
    }
}
