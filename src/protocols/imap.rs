//! IMAP, answered like Dovecot's imap-login (2.3) with plaintext logins allowed and no TLS:
//! a `* OK [CAPABILITY ...] Dovecot ready.` greeting, CAPABILITY, ID, NOOP, LOGIN and
//! AUTHENTICATE PLAIN/LOGIN (SASL-IR or not) refused with `NO [AUTHENTICATIONFAILED]`, LOGOUT.
//! Three failed logins or ten bad commands end the connection. LOGIN's arguments may be
//! synchronizing literals (`{n}`, answered `+ OK`); other commands' literals are not followed
//! (a bad command), and LITERAL+ is not announced (Dovecot's `imap_capability` can drop it).

use super::line::{self, Mechanism, SaslPart};
use super::{After, Context, Framing, Responder, TurnFields};
use crate::json::JsonWriter;

/// Dovecot's `imap_max_line_length` is 64k; a login line is short, so cut earlier.
const MAX_LINE: usize = 8192;
/// Longest tag we echo (longer ones get the untagged error, like an invalid tag).
const MAX_TAG: usize = 64;
const MAX_AUTH_FAILURES: u8 = 3;
const MAX_BAD_COMMANDS: u8 = 10;
/// Commands answered on one connection before we hang up (bounds what a client can draw out).
const MAX_COMMANDS: u16 = 100;

const CAPABILITIES: &[u8] =
    b"IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE AUTH=PLAIN AUTH=LOGIN";
const BAD: &[u8] = b" BAD Error in IMAP command received by server.\r\n";
const AUTH_FAILED: &[u8] = b" NO [AUTHENTICATIONFAILED] Authentication failed.\r\n";

pub struct Imap {
    phase: Phase,
    auth_failures: u8,
    bad_commands: u8,
    commands: u16,
}

/// Where the login is.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a tagged command.
    Command,
    /// Inside AUTHENTICATE `tag`: the next line is this SASL response.
    Sasl { part: SaslPart, tag: Tag },
    /// `+ OK` sent to LOGIN `tag`'s literal: the next `size` bytes are this argument, then
    /// the rest of the command line.
    Literal { arg: LoginArg, size: usize, tag: Tag },
}

/// Which LOGIN argument a literal holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginArg {
    User,
    Password,
}

/// What follows a literal user name on the command line.
#[derive(Debug, Clone, Copy)]
pub enum AfterUser<'a> {
    Password(Astring<'a>),
    Literal(usize),
}

/// LOGIN's arguments as far as one line holds them.
#[derive(Debug, Clone, Copy)]
pub enum LoginArgs<'a> {
    Both(Astring<'a>, Astring<'a>),
    /// The line ends in a `{size}` literal: the user name's (no `user`) or the password's.
    Literal {
        user: Option<Astring<'a>>,
        size: usize,
    },
}

impl<'a> LoginArgs<'a> {
    fn parse(args: &'a [u8]) -> Option<LoginArgs<'a>> {
        if let Some(size) = literal_size(args) {
            return Some(LoginArgs::Literal { user: None, size });
        }
        let (user, rest) = Astring::parse(args)?;
        if let Some(size) = literal_size(rest) {
            let user = Some(user);
            return Some(LoginArgs::Literal { user, size });
        }
        let (password, rest) = Astring::parse(rest)?;
        rest.trim_ascii()
            .is_empty()
            .then_some(LoginArgs::Both(user, password))
    }
}

/// `{n}` (a synchronizing literal, all that is left of the line): its size, when it is one
/// we follow (at most [`MAX_LINE`] bytes).
fn literal_size(s: &[u8]) -> Option<usize> {
    let digits = s.trim_ascii().strip_prefix(b"{")?.strip_suffix(b"}")?;
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let size = digits
        .iter()
        .fold(0, |n, d| n * 10 + usize::from(d - b'0'));
    (1..=MAX_LINE).contains(&size).then_some(size)
}

/// A command's tag, kept for the tagged answer that ends an AUTHENTICATE exchange.
#[derive(Debug, Clone, Copy)]
struct Tag {
    bytes: [u8; MAX_TAG],
    len: usize,
}

impl Tag {
    fn new(tag: &[u8]) -> Tag {
        let mut t = Tag {
            bytes: [0; MAX_TAG],
            len: tag.len().min(MAX_TAG),
        };
        t.bytes[..t.len].copy_from_slice(&tag[..t.len]);
        t
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// One client line.
pub enum ImapTurn<'a> {
    Command {
        /// Empty when the line has no valid tag.
        tag: &'a [u8],
        command: &'a [u8],
        args: &'a [u8],
        /// LOGIN's arguments.
        login: Option<LoginArgs<'a>>,
    },
    /// A LOGIN argument sent as a literal, and the rest of the command line after it.
    Literal {
        arg: LoginArg,
        value: &'a [u8],
        /// After a user name: the password, or its literal's size.
        then: Option<AfterUser<'a>>,
    },
    /// A base64 line answering an AUTHENTICATE challenge.
    Sasl { part: SaslPart, b64: &'a [u8] },
}

/// An IMAP string argument as sent: an atom, or a quoted string's inside (escapes still in).
#[derive(Debug, Clone, Copy)]
pub struct Astring<'a> {
    raw: &'a [u8],
    quoted: bool,
}

impl<'a> Astring<'a> {
    /// The first astring of `s` and what follows it; `None` for a literal or nothing.
    fn parse(s: &'a [u8]) -> Option<(Astring<'a>, &'a [u8])> {
        let s = s.trim_ascii_start();
        match s.first()? {
            b'"' => {
                let mut i = 1;
                while i < s.len() {
                    match s[i] {
                        b'\\' => i += 2,
                        b'"' => {
                            let raw = &s[1..i];
                            return Some((Astring { raw, quoted: true }, &s[i + 1..]));
                        }
                        _ => i += 1,
                    }
                }
                None
            }
            b'{' => None,
            _ => {
                let end = memchr::memchr(b' ', s).unwrap_or(s.len());
                Some((
                    Astring {
                        raw: &s[..end],
                        quoted: false,
                    },
                    &s[end..],
                ))
            }
        }
    }

    /// The value in pieces: a quoted string without its backslashes.
    fn pieces(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let quoted = self.quoted;
        let mut rest = self.raw;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            if !quoted {
                return Some(std::mem::take(&mut rest));
            }
            // A backslash escapes the byte after it, which starts the next piece.
            let start = usize::from(rest[0] == b'\\');
            if start >= rest.len() {
                rest = &[];
                return None;
            }
            let end = memchr::memchr(b'\\', &rest[start + 1..]).map_or(rest.len(), |i| start + 1 + i);
            let piece = &rest[start..end];
            rest = &rest[end..];
            Some(piece)
        })
    }
}

/// Tags are atoms without `+`; Dovecot refuses anything else.
fn valid_tag(tag: &[u8]) -> bool {
    !tag.is_empty()
        && tag.len() <= MAX_TAG
        && tag
            .iter()
            .all(|&b| b.is_ascii_graphic() && !b"(){%*\"\\+]".contains(&b))
}

impl Responder for Imap {
    const NAME: &'static str = "imap";
    const DEFAULT_PORTS: &'static [u16] = &[143];
    type Turn<'a> = ImapTurn<'a>;

    fn new(_ctx: &Context<'_>) -> Self {
        Imap {
            phase: Phase::Command,
            auth_failures: 0,
            bad_commands: 0,
            commands: 0,
        }
    }

    fn greeting(&mut self, _ctx: &Context<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"* OK [CAPABILITY ");
        out.extend_from_slice(CAPABILITIES);
        out.extend_from_slice(b"] Dovecot ready.\r\n");
    }

    fn frame(&mut self, pending: &[u8], new_from: usize) -> Framing {
        match self.phase {
            // The literal's bytes may hold anything (LF too): the line ends after them.
            Phase::Literal { size, .. } => line::frame(pending, new_from.max(size), size + MAX_LINE),
            _ => line::frame(pending, new_from, MAX_LINE),
        }
    }

    fn parse<'a>(&self, turn: &'a [u8]) -> ImapTurn<'a> {
        let text = line::content(turn);
        match self.phase {
            Phase::Sasl { part, .. } => return ImapTurn::Sasl { part, b64: text },
            Phase::Literal { arg, size, .. } => {
                let (value, rest) = turn.split_at(size.min(turn.len()));
                let rest = line::content(rest);
                let then = match arg {
                    LoginArg::User => literal_size(rest).map(AfterUser::Literal).or_else(|| {
                        let (password, _) = Astring::parse(rest)?;
                        Some(AfterUser::Password(password))
                    }),
                    LoginArg::Password => None,
                };
                return ImapTurn::Literal { arg, value, then };
            }
            Phase::Command => {}
        }
        let (tag, rest) = line::verb_arg(text);
        if !valid_tag(tag) {
            return ImapTurn::Command {
                tag: &[],
                command: &[],
                args: &[],
                login: None,
            };
        }
        let (command, args) = line::verb_arg(rest);
        let login = if command.eq_ignore_ascii_case(b"LOGIN") {
            LoginArgs::parse(args)
        } else {
            None
        };
        ImapTurn::Command {
            tag,
            command,
            args,
            login,
        }
    }

    fn reply(&mut self, turn: &ImapTurn<'_>, _ctx: &Context<'_>, out: &mut Vec<u8>) -> After {
        self.commands += 1;
        let after = if self.commands >= MAX_COMMANDS {
            After::Close
        } else {
            After::KeepOpen
        };
        let (tag, command, args, login) = match *turn {
            ImapTurn::Sasl { part, b64 } => {
                let Phase::Sasl { tag, .. } = self.phase else {
                    return after; // ok: parse gives Sasl only in the Sasl phase
                };
                if b64 == b"*" {
                    self.phase = Phase::Command;
                    out.extend_from_slice(tag.as_bytes());
                    out.extend_from_slice(b" BAD Authentication aborted by client.\r\n");
                    return after;
                }
                if part == SaslPart::LoginUser {
                    self.phase = Phase::Sasl {
                        part: SaslPart::LoginPassword,
                        tag,
                    };
                    out.extend_from_slice(b"+ UGFzc3dvcmQ6\r\n");
                    return after;
                }
                return self.fail_login(tag.as_bytes(), out, after);
            }
            ImapTurn::Literal { arg, then, .. } => {
                let Phase::Literal { tag, .. } = self.phase else {
                    return after; // ok: parse gives Literal only in the Literal phase
                };
                return match (arg, then) {
                    (LoginArg::User, Some(AfterUser::Literal(size))) => {
                        self.continue_literal(LoginArg::Password, size, tag, out);
                        after
                    }
                    (LoginArg::User, None) => {
                        self.phase = Phase::Command;
                        self.bad(tag.as_bytes(), out, after)
                    }
                    _ => self.fail_login(tag.as_bytes(), out, after),
                };
            }
            ImapTurn::Command {
                tag,
                command,
                args,
                login,
            } => (tag, command, args, login),
        };
        let is = |name: &[u8]| command.eq_ignore_ascii_case(name);
        if tag.is_empty() {
            return self.bad(b"*", out, after);
        }
        if is(b"CAPABILITY") {
            out.extend_from_slice(b"* CAPABILITY ");
            out.extend_from_slice(CAPABILITIES);
            out.extend_from_slice(b"\r\n");
            tagged(out, tag, b" OK Pre-login capabilities listed, post-login capabilities have more.\r\n");
        } else if is(b"NOOP") {
            tagged(out, tag, b" OK NOOP completed.\r\n");
        } else if is(b"ID") {
            out.extend_from_slice(b"* ID (\"name\" \"Dovecot\")\r\n");
            tagged(out, tag, b" OK ID completed.\r\n");
        } else if is(b"LOGIN") && login.is_some() {
            return match login {
                Some(LoginArgs::Literal { user, size }) => {
                    let arg = match user {
                        None => LoginArg::User,
                        Some(_) => LoginArg::Password,
                    };
                    self.continue_literal(arg, size, Tag::new(tag), out);
                    after
                }
                _ => self.fail_login(tag, out, after),
            };
        } else if is(b"AUTHENTICATE") {
            let (mechanism, initial) = line::verb_arg(args);
            // `=` is an empty initial response.
            let has_initial = !initial.is_empty();
            match Mechanism::from_name(mechanism) {
                Some(Mechanism::Plain) if has_initial => return self.fail_login(tag, out, after),
                Some(Mechanism::Plain) => {
                    self.phase = Phase::Sasl {
                        part: SaslPart::Plain,
                        tag: Tag::new(tag),
                    };
                    out.extend_from_slice(b"+ \r\n");
                }
                Some(Mechanism::Login) => {
                    let part = if has_initial {
                        out.extend_from_slice(b"+ UGFzc3dvcmQ6\r\n");
                        SaslPart::LoginPassword
                    } else {
                        out.extend_from_slice(b"+ VXNlcm5hbWU6\r\n");
                        SaslPart::LoginUser
                    };
                    self.phase = Phase::Sasl {
                        part,
                        tag: Tag::new(tag),
                    };
                }
                None => tagged(out, tag, b" NO Unsupported authentication mechanism.\r\n"),
            }
        } else if is(b"STARTTLS") {
            tagged(out, tag, b" BAD TLS support isn't enabled.\r\n");
        } else if is(b"LOGOUT") {
            out.extend_from_slice(b"* BYE Logging out\r\n");
            tagged(out, tag, b" OK Logout completed.\r\n");
            return After::Close;
        } else {
            return self.bad(tag, out, after);
        }
        after
    }
}

/// `<tag><text>` (text starts with its space).
fn tagged(out: &mut Vec<u8>, tag: &[u8], text: &[u8]) {
    out.extend_from_slice(tag);
    out.extend_from_slice(text);
}

impl Imap {
    /// Asks for a LOGIN literal (Dovecot's `+ OK`).
    fn continue_literal(&mut self, arg: LoginArg, size: usize, tag: Tag, out: &mut Vec<u8>) {
        self.phase = Phase::Literal { arg, size, tag };
        out.extend_from_slice(b"+ OK\r\n");
    }

    /// Refuses a login (LOGIN or an AUTHENTICATE response); the third one hangs up.
    fn fail_login(&mut self, tag: &[u8], out: &mut Vec<u8>, after: After) -> After {
        self.phase = Phase::Command;
        self.auth_failures += 1;
        tagged(out, tag, AUTH_FAILED);
        if self.auth_failures >= MAX_AUTH_FAILURES {
            After::Close
        } else {
            after
        }
    }

    /// A command Dovecot does not take before login; the tenth ends the connection.
    fn bad(&mut self, tag: &[u8], out: &mut Vec<u8>, after: After) -> After {
        self.bad_commands += 1;
        if self.bad_commands >= MAX_BAD_COMMANDS {
            out.extend_from_slice(b"* BYE Too many invalid IMAP commands.\r\n");
            return After::Close;
        }
        tagged(out, tag, BAD);
        after
    }
}

impl TurnFields for ImapTurn<'_> {
    fn protocol(&self) -> Option<&'static str> {
        Some("imap")
    }

    fn write_ecs(&self, w: &mut JsonWriter<'_>) {
        match self {
            ImapTurn::Command {
                login:
                    Some(
                        LoginArgs::Both(user, _)
                        | LoginArgs::Literal {
                            user: Some(user), ..
                        },
                    ),
                ..
            } => {
                w.begin_object("user");
                line::write_pieces(w, "name", user.pieces());
                w.end_object();
            }
            ImapTurn::Command { command, args, .. }
                if command.eq_ignore_ascii_case(b"AUTHENTICATE") =>
            {
                if let (_, Some((part, initial))) = line::initial_response(args) {
                    line::write_sasl_user(w, part, initial);
                }
            }
            ImapTurn::Command { .. } => {}
            ImapTurn::Sasl { part, b64 } => line::write_sasl_user(w, *part, b64),
            ImapTurn::Literal {
                arg: LoginArg::User,
                value,
                ..
            } => {
                w.begin_object("user");
                w.str("name", value);
                w.end_object();
            }
            ImapTurn::Literal { .. } => {}
        }
    }

    fn write_spip(&self, w: &mut JsonWriter<'_>) {
        match self {
            ImapTurn::Command { command: [], .. } => {}
            ImapTurn::Command {
                tag,
                command,
                args,
                login,
            } => {
                w.begin_object("imap");
                w.str("tag", tag);
                w.str("command", command);
                if let Some(LoginArgs::Both(_, password)) = login {
                    line::write_pieces(w, "password", password.pieces());
                } else if command.eq_ignore_ascii_case(b"AUTHENTICATE") {
                    let (mechanism, initial) = line::initial_response(args);
                    w.str("mechanism", mechanism);
                    if let Some((part, initial)) = initial {
                        line::write_sasl_password(w, part, initial);
                    }
                } else if !args.is_empty() && login.is_none() {
                    w.str("argument", args);
                }
                w.end_object();
            }
            ImapTurn::Sasl { part, b64 } => {
                w.begin_object("imap");
                line::write_sasl_password(w, *part, b64);
                w.end_object();
            }
            ImapTurn::Literal {
                arg: LoginArg::User,
                then: Some(AfterUser::Password(password)),
                ..
            } => {
                w.begin_object("imap");
                line::write_pieces(w, "password", password.pieces());
                w.end_object();
            }
            ImapTurn::Literal {
                arg: LoginArg::Password,
                value,
                ..
            } => {
                w.begin_object("imap");
                w.str("password", value);
                w.end_object();
            }
            ImapTurn::Literal { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::testing::{assert_splits_agree, converse};
    use serde_json::json;

    /// What `curl imap://u:SECRET@host/` sends (captured from curl 7.88.1 against a listener that
    /// offers SASL-IR and AUTH=PLAIN).
    const CURL: &[u8] = b"A001 CAPABILITY\r\nA002 AUTHENTICATE PLAIN AHUAU0VDUkVU\r\n";

    #[test]
    fn curl_authenticate_plain_is_captured_and_refused() {
        let t = converse::<Imap>(true, &[CURL]);
        assert!(t.greeting.starts_with(b"* OK [CAPABILITY IMAP4rev1 "));
        assert!(t.greeting.ends_with(b"] Dovecot ready.\r\n"));
        assert_eq!(t.turns.len(), 2);
        assert!(t.turns[0].reply.starts_with(b"* CAPABILITY IMAP4rev1 "));
        assert!(t.turns[0].reply.ends_with(b"\r\nA001 OK Pre-login capabilities listed, post-login capabilities have more.\r\n"));
        assert_eq!(
            t.turns[1].reply,
            b"A002 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
        );
        assert_eq!(t.turns[1].ecs, json!({"user": {"name": "u"}}));
        assert_eq!(
            t.turns[1].spip,
            json!({"imap": {"tag": "A002", "command": "AUTHENTICATE", "mechanism": "PLAIN", "password": "SECRET"}})
        );
        assert_eq!(t.turns[1].protocol, Some("imap"));
        assert_splits_agree::<Imap>(true, CURL);
    }

    #[test]
    fn login_quoted_is_unescaped() {
        // What curl sends for imap://us%20er:SE%22CRET@host/ to a server without AUTH=.
        let t = converse::<Imap>(true, &[b"A002 LOGIN \"us er\" \"SE\\\"CRET\"\r\na3 login bob pw\r\n"]);
        assert_eq!(t.turns[0].ecs, json!({"user": {"name": "us er"}}));
        assert_eq!(
            t.turns[0].spip,
            json!({"imap": {"tag": "A002", "command": "LOGIN", "password": "SE\"CRET"}})
        );
        assert_eq!(
            t.turns[0].reply,
            b"A002 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
        );
        assert_eq!(t.turns[1].ecs, json!({"user": {"name": "bob"}}));
        assert_eq!(t.turns[1].spip["imap"]["password"], "pw");
    }

    #[test]
    fn login_literals_are_followed() {
        // The user name and the password as synchronizing literals (the password holds an LF).
        let input: &[u8] = b"a LOGIN {4}\r\nuser {4}\r\np\nw!\r\nb LOGIN \"bob\" {2}\r\npw\r\n\
            c LOGIN {3}\r\neve \"x y\"\r\nd LOGIN {99999}\r\ne LOGIN {1}\r\nz\r\n";
        let t = converse::<Imap>(true, &[input]);
        let replies: Vec<String> = t
            .turns
            .iter()
            .map(|t| String::from_utf8_lossy(&t.reply).into_owned())
            .collect();
        assert_eq!(
            replies,
            [
                "+ OK\r\n",
                "+ OK\r\n",
                "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
                "+ OK\r\n",
                "b NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
                "+ OK\r\n",
                "c NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
            ]
        );
        assert_eq!(
            t.turns[0].spip,
            json!({"imap": {"tag": "a", "command": "LOGIN"}})
        );
        assert_eq!(t.turns[1].ecs, json!({"user": {"name": "user"}}));
        assert_eq!(t.turns[1].spip, json!({}));
        assert_eq!(t.turns[2].bytes, b"p\nw!\r\n");
        assert_eq!(t.turns[2].spip, json!({"imap": {"password": "p\nw!"}}));
        assert_eq!(t.turns[3].ecs, json!({"user": {"name": "bob"}}));
        assert_eq!(t.turns[4].spip, json!({"imap": {"password": "pw"}}));
        assert_eq!(t.turns[5].ecs, json!({}));
        assert_eq!(t.turns[6].ecs, json!({"user": {"name": "eve"}}));
        assert_eq!(t.turns[6].spip, json!({"imap": {"password": "x y"}}));
        // The third failure hangs up.
        assert!(t.turns[6].close);
        assert_splits_agree::<Imap>(true, input);
        let t = converse::<Imap>(true, &[b"d LOGIN {99999}\r\ne LOGIN {1}\r\nz\r\n"]);
        assert_eq!(
            t.turns[0].reply,
            b"d BAD Error in IMAP command received by server.\r\n"
        );
        assert_eq!(t.turns[1].reply, b"+ OK\r\n");
        assert_eq!(t.turns[2].reply, b"e BAD Error in IMAP command received by server.\r\n");
    }

    #[test]
    fn authenticate_login_abort_logout() {
        let t = converse::<Imap>(
            true,
            &[b"a AUTHENTICATE LOGIN\r\nYm9i\r\ncHc=\r\nb AUTHENTICATE PLAIN\r\n*\r\nc STARTTLS\r\nd ID (\"name\" \"x\")\r\ne SELECT INBOX\r\n\r\nf LOGOUT\r\ng NOOP\r\n"],
        );
        let replies: Vec<String> = t
            .turns
            .iter()
            .map(|t| String::from_utf8_lossy(&t.reply).into_owned())
            .collect();
        assert_eq!(
            replies,
            [
                "+ VXNlcm5hbWU6\r\n",
                "+ UGFzc3dvcmQ6\r\n",
                "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
                "+ \r\n",
                "b BAD Authentication aborted by client.\r\n",
                "c BAD TLS support isn't enabled.\r\n",
                "* ID (\"name\" \"Dovecot\")\r\nd OK ID completed.\r\n",
                "e BAD Error in IMAP command received by server.\r\n",
                "* BAD Error in IMAP command received by server.\r\n",
                "* BYE Logging out\r\nf OK Logout completed.\r\n",
            ]
        );
        assert_eq!(t.turns[1].ecs, json!({"user": {"name": "bob"}}));
        assert_eq!(t.turns[2].spip, json!({"imap": {"password": "pw"}}));
        assert!(t.turns[9].close);
        assert_eq!(t.unread, b"g NOOP\r\n");
    }

    #[test]
    fn garbage_and_prefixes_never_panic() {
        let input: &[u8] = b"a LOGIN \"x\\\r\nb LOGIN \"\\\\\" {5}\r\nc AUTHENTICATE PLAIN\r\n\xff=\r\n\\ \"\r\nd LOGIN a \"b\\\"\r\n{\r\n";
        for end in 0..=input.len() {
            converse::<Imap>(true, &[&input[..end]]);
        }
        assert_splits_agree::<Imap>(true, input);
    }

    #[test]
    fn pieces_unescape() {
        let (s, rest) = Astring::parse(b"\"a\\\\b\\\"c\\\"\" x").unwrap();
        assert_eq!(s.pieces().collect::<Vec<_>>().concat(), b"a\\b\"c\"");
        assert_eq!(rest, b" x");
        assert!(Astring::parse(b"\"\\\"").is_none());
    }

    #[test]
    fn hostile_64k_gets_a_small_reply() {
        let one_line = vec![b'A'; 64 * 1024];
        assert!(converse::<Imap>(true, &[&one_line]).sent().len() < 1024);
        let many: Vec<u8> = b"X Y\n".iter().copied().cycle().take(64 * 1024).collect();
        assert!(converse::<Imap>(true, &[&many]).sent().len() < 1024);
    }
}
