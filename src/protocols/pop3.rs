//! POP3, answered like Dovecot's pop3-login (2.3) with plaintext logins allowed and no TLS:
//! `+OK Dovecot ready.`, CAPA, USER (`+OK`) then PASS (`-ERR [AUTH] Authentication failed.`),
//! AUTH PLAIN/LOGIN (with or without an initial response) failing the same way, QUIT. Three
//! failed logins or ten bad commands end the connection, as Dovecot does.

use super::line::{self, Mechanism, SaslPart};
use super::{After, Context, Framing, Responder, TurnFields};
use crate::json::JsonWriter;

/// Dovecot's POP3 command line limit.
const MAX_LINE: usize = 4096;
const MAX_AUTH_FAILURES: u8 = 3;
const MAX_BAD_COMMANDS: u8 = 10;
/// Commands answered on one connection before we hang up (bounds what a client can draw out).
const MAX_COMMANDS: u16 = 100;

const AUTH_FAILED: &[u8] = b"-ERR [AUTH] Authentication failed.\r\n";

pub struct Pop3 {
    phase: Phase,
    auth_failures: u8,
    bad_commands: u8,
    commands: u16,
}

/// Where the login is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a command.
    Command,
    /// USER given: PASS is next.
    Password,
    /// Inside AUTH: the next line is this SASL response.
    Sasl(SaslPart),
}

/// One client line.
pub enum Pop3Turn<'a> {
    Command { verb: &'a [u8], arg: &'a [u8] },
    /// A base64 line answering an AUTH challenge.
    Sasl { part: SaslPart, b64: &'a [u8] },
}

impl Responder for Pop3 {
    const NAME: &'static str = "pop3";
    const DEFAULT_PORTS: &'static [u16] = &[110];
    type Turn<'a> = Pop3Turn<'a>;

    fn new(_ctx: &Context<'_>) -> Self {
        Pop3 {
            phase: Phase::Command,
            auth_failures: 0,
            bad_commands: 0,
            commands: 0,
        }
    }

    fn greeting(&mut self, _ctx: &Context<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"+OK Dovecot ready.\r\n");
    }

    fn frame(&mut self, pending: &[u8], new_from: usize) -> Framing {
        line::frame(pending, new_from, MAX_LINE)
    }

    fn parse<'a>(&self, turn: &'a [u8]) -> Pop3Turn<'a> {
        let text = line::content(turn);
        match self.phase {
            Phase::Sasl(part) => Pop3Turn::Sasl { part, b64: text },
            Phase::Command | Phase::Password => {
                let (verb, arg) = line::verb_arg(text);
                Pop3Turn::Command { verb, arg }
            }
        }
    }

    fn reply(&mut self, turn: &Pop3Turn<'_>, _ctx: &Context<'_>, out: &mut Vec<u8>) -> After {
        self.commands += 1;
        let mut after = if self.commands >= MAX_COMMANDS {
            After::Close
        } else {
            After::KeepOpen
        };
        let (verb, arg) = match *turn {
            Pop3Turn::Sasl { part, b64 } => {
                if b64 == b"*" {
                    self.phase = Phase::Command;
                    out.extend_from_slice(b"-ERR Authentication aborted by client.\r\n");
                } else if part == SaslPart::LoginUser {
                    self.phase = Phase::Sasl(SaslPart::LoginPassword);
                    out.extend_from_slice(b"+ UGFzc3dvcmQ6\r\n");
                } else {
                    return self.fail_login(out, after);
                }
                return after;
            }
            Pop3Turn::Command { verb, arg } => (verb, arg),
        };
        let is = |name: &[u8]| verb.eq_ignore_ascii_case(name);
        if is(b"USER") {
            self.phase = Phase::Password;
            out.extend_from_slice(b"+OK\r\n");
        } else if is(b"PASS") {
            if self.phase == Phase::Password {
                return self.fail_login(out, after);
            }
            out.extend_from_slice(b"-ERR No username given.\r\n");
        } else if is(b"AUTH") {
            let (mechanism, initial) = line::verb_arg(arg);
            match Mechanism::from_name(mechanism) {
                _ if mechanism.is_empty() => {
                    out.extend_from_slice(b"+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n");
                }
                Some(Mechanism::Plain) if !initial.is_empty() => {
                    return self.fail_login(out, after);
                }
                Some(Mechanism::Plain) => {
                    self.phase = Phase::Sasl(SaslPart::Plain);
                    out.extend_from_slice(b"+ \r\n");
                }
                Some(Mechanism::Login) if !initial.is_empty() => {
                    self.phase = Phase::Sasl(SaslPart::LoginPassword);
                    out.extend_from_slice(b"+ UGFzc3dvcmQ6\r\n");
                }
                Some(Mechanism::Login) => {
                    self.phase = Phase::Sasl(SaslPart::LoginUser);
                    out.extend_from_slice(b"+ VXNlcm5hbWU6\r\n");
                }
                None => out.extend_from_slice(b"-ERR Unsupported authentication mechanism.\r\n"),
            }
        } else if is(b"CAPA") {
            out.extend_from_slice(
                b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n\
                  USER\r\nSASL PLAIN LOGIN\r\n.\r\n",
            );
        } else if is(b"QUIT") {
            out.extend_from_slice(b"+OK Logging out\r\n");
            after = After::Close;
        } else if is(b"STLS") {
            out.extend_from_slice(b"-ERR TLS support isn't enabled.\r\n");
        } else if is(b"NOOP") {
            out.extend_from_slice(b"+OK\r\n");
        } else {
            self.bad_commands += 1;
            if self.bad_commands >= MAX_BAD_COMMANDS {
                out.extend_from_slice(b"-ERR Too many bad commands.\r\n");
                after = After::Close;
            } else {
                out.extend_from_slice(b"-ERR Unknown command.\r\n");
            }
        }
        after
    }
}

impl Pop3 {
    /// Refuses a login attempt (PASS or an AUTH response); the third one hangs up.
    fn fail_login(&mut self, out: &mut Vec<u8>, after: After) -> After {
        self.phase = Phase::Command;
        self.auth_failures += 1;
        out.extend_from_slice(AUTH_FAILED);
        if self.auth_failures >= MAX_AUTH_FAILURES {
            After::Close
        } else {
            after
        }
    }
}

impl TurnFields for Pop3Turn<'_> {
    fn protocol(&self) -> Option<&'static str> {
        Some("pop3")
    }

    fn write_ecs(&self, w: &mut JsonWriter<'_>) {
        match *self {
            Pop3Turn::Command { verb, arg } if verb.eq_ignore_ascii_case(b"USER") => {
                w.begin_object("user");
                w.str("name", arg);
                w.end_object();
            }
            Pop3Turn::Command { verb, arg } if verb.eq_ignore_ascii_case(b"AUTH") => {
                if let (_, Some((part, initial))) = line::initial_response(arg) {
                    line::write_sasl_user(w, part, initial);
                }
            }
            Pop3Turn::Command { .. } => {}
            Pop3Turn::Sasl { part, b64 } => line::write_sasl_user(w, part, b64),
        }
    }

    fn write_spip(&self, w: &mut JsonWriter<'_>) {
        match *self {
            Pop3Turn::Command { verb: [], .. } => {}
            Pop3Turn::Command { verb, arg } => {
                w.begin_object("pop3");
                w.str("command", verb);
                if verb.eq_ignore_ascii_case(b"PASS") {
                    w.str("password", arg);
                } else if verb.eq_ignore_ascii_case(b"AUTH") {
                    let (mechanism, initial) = line::initial_response(arg);
                    w.str("mechanism", mechanism);
                    if let Some((part, initial)) = initial {
                        line::write_sasl_password(w, part, initial);
                    }
                } else if !verb.eq_ignore_ascii_case(b"USER") && !arg.is_empty() {
                    w.str("argument", arg);
                }
                w.end_object();
            }
            Pop3Turn::Sasl { part, b64 } => {
                w.begin_object("pop3");
                line::write_sasl_password(w, part, b64);
                w.end_object();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::testing::{assert_splits_agree, converse};
    use serde_json::json;

    /// What `curl pop3://u:SECRET@host/` sends to a server offering SASL PLAIN (captured from
    /// curl 7.88.1 against a listener): CAPA, AUTH PLAIN, then the response after `+ `.
    const CURL: &[u8] = b"CAPA\r\nAUTH PLAIN\r\nAHUAU0VDUkVU\r\n";

    #[test]
    fn curl_sasl_plain_is_captured_and_refused() {
        let t = converse::<Pop3>(true, &[b"CAPA\r\n", b"AUTH PLAIN\r\n", b"AHUAU0VDUkVU\r\n"]);
        assert_eq!(t.greeting, b"+OK Dovecot ready.\r\n");
        assert_eq!(t.turns.len(), 3);
        assert!(t.turns[0].reply.starts_with(b"+OK\r\nCAPA\r\n"));
        assert!(t.turns[0].reply.ends_with(b"SASL PLAIN LOGIN\r\n.\r\n"));
        assert_eq!(t.turns[1].reply, b"+ \r\n");
        assert_eq!(
            t.turns[1].spip,
            json!({"pop3": {"command": "AUTH", "mechanism": "PLAIN"}})
        );
        assert_eq!(t.turns[2].reply, AUTH_FAILED);
        assert_eq!(t.turns[2].ecs, json!({"user": {"name": "u"}}));
        assert_eq!(t.turns[2].spip, json!({"pop3": {"password": "SECRET"}}));
        assert_eq!(t.turns[2].protocol, Some("pop3"));
        assert_splits_agree::<Pop3>(true, CURL);
    }

    #[test]
    fn user_pass_and_auth_login() {
        let t = converse::<Pop3>(
            true,
            &[b"USER bob\r\nPASS hunter2\r\nAUTH LOGIN\r\nYm9i\r\ncHc=\r\nAUTH PLAIN AGEAYg==\r\n"],
        );
        assert_eq!(t.turns.len(), 6);
        assert_eq!(t.turns[0].reply, b"+OK\r\n");
        assert_eq!(t.turns[0].ecs, json!({"user": {"name": "bob"}}));
        assert_eq!(t.turns[1].reply, AUTH_FAILED);
        assert_eq!(
            t.turns[1].spip,
            json!({"pop3": {"command": "PASS", "password": "hunter2"}})
        );
        assert_eq!(t.turns[2].reply, b"+ VXNlcm5hbWU6\r\n");
        assert_eq!(t.turns[3].reply, b"+ UGFzc3dvcmQ6\r\n");
        assert_eq!(t.turns[3].ecs, json!({"user": {"name": "bob"}}));
        assert_eq!(t.turns[4].spip, json!({"pop3": {"password": "pw"}}));
        assert_eq!(t.turns[4].reply, AUTH_FAILED);
        // The third failure hangs up.
        assert_eq!(t.turns[5].ecs, json!({"user": {"name": "a"}}));
        assert_eq!(
            t.turns[5].spip,
            json!({"pop3": {"command": "AUTH", "mechanism": "PLAIN", "password": "b"}})
        );
        assert!(t.turns[5].close);
    }

    #[test]
    fn quit_stls_abort_and_unknown() {
        let t = converse::<Pop3>(
            true,
            &[b"PASS x\r\nSTLS\r\nAUTH PLAIN\r\n*\r\nAUTH CRAM-MD5\r\nGET / HTTP/1.0\r\n\r\nQUIT\r\n"],
        );
        let replies: Vec<&[u8]> = t.turns.iter().map(|t| &t.reply[..]).collect();
        assert_eq!(
            replies,
            [
                &b"-ERR No username given.\r\n"[..],
                b"-ERR TLS support isn't enabled.\r\n",
                b"+ \r\n",
                b"-ERR Authentication aborted by client.\r\n",
                b"-ERR Unsupported authentication mechanism.\r\n",
                b"-ERR Unknown command.\r\n",
                b"-ERR Unknown command.\r\n",
                b"+OK Logging out\r\n",
            ]
        );
        assert!(t.turns[7].close);
    }

    #[test]
    fn garbage_and_prefixes_never_panic() {
        let input = b"AUTH PLAIN\r\n\xff\xfe==\r\nAUTH LOGIN \x00\r\n!!\r\nUSER\r\nPASS\r\n\n\nAUTH";
        for end in 0..=input.len() {
            converse::<Pop3>(true, &[&input[..end]]);
        }
        assert_splits_agree::<Pop3>(true, input);
    }

    #[test]
    fn hostile_64k_gets_a_small_reply() {
        let one_line = vec![b'A'; 64 * 1024];
        assert!(converse::<Pop3>(true, &[&one_line]).sent().len() < 1024);
        let many: Vec<u8> = b"X\n".iter().copied().cycle().take(64 * 1024).collect();
        assert!(converse::<Pop3>(true, &[&many]).sent().len() < 1024);
    }
}
