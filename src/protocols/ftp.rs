//! FTP, answered like vsftpd 3.0.3 before login: `220 (vsFTPd 3.0.3)`, `331` to USER, `530
//! Login incorrect.` to every PASS (closing after the third, vsftpd's `max_login_fails`), FEAT,
//! OPTS UTF8, QUIT, and `530 Please login with USER and PASS.` to everything else (SYST and AUTH
//! included: vsftpd answers them so before login, and TLS is not offered).

use super::line;
use super::{After, Context, Framing, Responder, TurnFields};
use crate::json::JsonWriter;

/// vsftpd's command line buffer (`VSFTP_MAX_COMMAND_LINE`).
const MAX_LINE: usize = 4096;
/// vsftpd's `max_login_fails` default.
const MAX_LOGIN_FAILS: u8 = 3;
/// Commands answered on one connection before we hang up (bounds what a client can draw out).
const MAX_COMMANDS: u16 = 100;

pub struct Ftp {
    phase: Phase,
    login_fails: u8,
    commands: u16,
}

/// Where the login is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for USER.
    User,
    /// USER given: waiting for PASS.
    Password,
}

/// One command line.
pub struct FtpTurn<'a> {
    verb: &'a [u8],
    arg: &'a [u8],
}

impl FtpTurn<'_> {
    fn is(&self, verb: &[u8]) -> bool {
        self.verb.eq_ignore_ascii_case(verb)
    }
}

impl Responder for Ftp {
    const NAME: &'static str = "ftp";
    const DEFAULT_PORTS: &'static [u16] = &[21];
    type Turn<'a> = FtpTurn<'a>;

    fn new(_ctx: &Context<'_>) -> Self {
        Ftp {
            phase: Phase::User,
            login_fails: 0,
            commands: 0,
        }
    }

    fn greeting(&mut self, _ctx: &Context<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"220 (vsFTPd 3.0.3)\r\n");
    }

    fn frame(&mut self, pending: &[u8], new_from: usize) -> Framing {
        line::frame(pending, new_from, MAX_LINE)
    }

    fn parse<'a>(&self, turn: &'a [u8]) -> FtpTurn<'a> {
        let (verb, arg) = line::verb_arg(line::content(turn));
        FtpTurn { verb, arg }
    }

    fn reply(&mut self, turn: &FtpTurn<'_>, _ctx: &Context<'_>, out: &mut Vec<u8>) -> After {
        self.commands += 1;
        let mut after = if self.commands >= MAX_COMMANDS {
            After::Close
        } else {
            After::KeepOpen
        };
        if turn.is(b"USER") {
            self.phase = Phase::Password;
            out.extend_from_slice(b"331 Please specify the password.\r\n");
        } else if turn.is(b"PASS") {
            match self.phase {
                Phase::User => out.extend_from_slice(b"503 Login with USER first.\r\n"),
                Phase::Password => {
                    self.phase = Phase::User;
                    self.login_fails += 1;
                    out.extend_from_slice(b"530 Login incorrect.\r\n");
                    if self.login_fails >= MAX_LOGIN_FAILS {
                        after = After::Close;
                    }
                }
            }
        } else if turn.is(b"QUIT") {
            out.extend_from_slice(b"221 Goodbye.\r\n");
            after = After::Close;
        } else if turn.is(b"FEAT") {
            out.extend_from_slice(
                b"211-Features:\r\n EPRT\r\n EPSV\r\n MDTM\r\n PASV\r\n REST STREAM\r\n SIZE\r\n \
                  TVFS\r\n UTF8\r\n211 End\r\n",
            );
        } else if turn.is(b"OPTS") && turn.arg.eq_ignore_ascii_case(b"UTF8 ON") {
            out.extend_from_slice(b"200 Always in UTF8 mode.\r\n");
        } else if turn.verb.is_empty() && turn.arg.is_empty() {
            // vsftpd ignores empty lines (keep-alives through NAT).
        } else {
            out.extend_from_slice(b"530 Please login with USER and PASS.\r\n");
        }
        after
    }
}

impl TurnFields for FtpTurn<'_> {
    fn protocol(&self) -> Option<&'static str> {
        Some("ftp")
    }

    fn write_ecs(&self, w: &mut JsonWriter<'_>) {
        if self.is(b"USER") {
            w.begin_object("user");
            w.str("name", self.arg);
            w.end_object();
        }
    }

    fn write_spip(&self, w: &mut JsonWriter<'_>) {
        if self.verb.is_empty() {
            return;
        }
        w.begin_object("ftp");
        w.str("command", self.verb);
        if self.is(b"PASS") {
            w.str("password", self.arg);
        } else if !self.is(b"USER") && !self.arg.is_empty() {
            w.str("argument", self.arg);
        }
        w.end_object();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::testing::{assert_splits_agree, converse};
    use serde_json::json;

    /// What `curl ftp://u:SECRET@host/` sends (captured from curl 7.88.1 against a listener).
    const CURL: &[u8] = b"USER u\r\nPASS SECRET\r\n";

    #[test]
    fn curl_login_is_captured_and_refused() {
        let t = converse::<Ftp>(true, &[b"USER u\r\n", b"PASS SECRET\r\n"]);
        assert_eq!(t.greeting, b"220 (vsFTPd 3.0.3)\r\n");
        assert_eq!(t.turns.len(), 2);
        assert_eq!(t.turns[0].reply, b"331 Please specify the password.\r\n");
        assert_eq!(t.turns[0].ecs, json!({"user": {"name": "u"}}));
        assert_eq!(t.turns[0].spip, json!({"ftp": {"command": "USER"}}));
        assert_eq!(t.turns[1].reply, b"530 Login incorrect.\r\n");
        assert_eq!(
            t.turns[1].spip,
            json!({"ftp": {"command": "PASS", "password": "SECRET"}})
        );
        assert_eq!(t.turns[1].protocol, Some("ftp"));
        assert!(!t.turns[1].close);
        assert_splits_agree::<Ftp>(true, CURL);
    }

    #[test]
    fn syst_feat_auth_quit() {
        let t = converse::<Ftp>(
            true,
            &[b"AUTH TLS\r\nSYST\r\nFEAT\r\nOPTS UTF8 ON\r\nQUIT\r\nUSER late\r\n"],
        );
        assert_eq!(t.turns.len(), 5);
        assert_eq!(t.turns[0].reply, b"530 Please login with USER and PASS.\r\n");
        assert_eq!(
            t.turns[0].spip,
            json!({"ftp": {"command": "AUTH", "argument": "TLS"}})
        );
        assert_eq!(t.turns[1].reply, b"530 Please login with USER and PASS.\r\n");
        assert!(t.turns[2].reply.starts_with(b"211-Features:\r\n"));
        assert!(t.turns[2].reply.ends_with(b"211 End\r\n"));
        assert_eq!(t.turns[3].reply, b"200 Always in UTF8 mode.\r\n");
        assert_eq!(t.turns[4].reply, b"221 Goodbye.\r\n");
        assert!(t.turns[4].close);
        assert_eq!(t.unread, b"USER late\r\n");
    }

    #[test]
    fn pass_first_and_the_third_failure_hangs_up() {
        let t = converse::<Ftp>(
            true,
            &[b"PASS x\r\nUSER a\r\nPASS 1\r\nUSER a\r\nPASS 2\r\nUSER a\r\nPASS 3\r\nNOOP\r\n"],
        );
        assert_eq!(t.turns[0].reply, b"503 Login with USER first.\r\n");
        assert_eq!(t.turns.len(), 7);
        assert!(t.turns[6].close);
        assert_eq!(t.unread, b"NOOP\r\n");
    }

    #[test]
    fn garbage_and_prefixes_never_panic() {
        let input = b"USER \xff\xfe\r\n\x00\x01PASS\r\n\r\n\n \nSITE EXEC x\r\nPASS";
        for end in 0..=input.len() {
            converse::<Ftp>(true, &[&input[..end]]);
        }
        assert_splits_agree::<Ftp>(true, input);
    }

    #[test]
    fn hostile_64k_gets_a_small_reply() {
        let one_line = vec![b'A'; 64 * 1024];
        let t = converse::<Ftp>(true, &[&one_line]);
        assert!(t.sent().len() < 1024, "{}", t.sent().len());
        let many: Vec<u8> = b"X\n".iter().copied().cycle().take(64 * 1024).collect();
        let t = converse::<Ftp>(true, &[&many]);
        assert!(t.sent().len() < 8 * 1024, "{}", t.sent().len());
    }
}
