//! Telnet (23, 2323), answered like BusyBox telnetd + login + ash on a small Linux device:
//! BusyBox's option negotiation (DO ECHO, DO NAWS, DO LFLOW, WILL ECHO, WILL SGA) and
//! `<host> login: `, `Password: `, then any password opens a shell-like prompt that swallows
//! every command (never executing anything): `-sh: X: not found` for what is not a BusyBox
//! applet, `X: applet not found` for `/bin/busybox X` (the Mirai-style probe), nothing for the
//! applets. Our side does not echo what the client types (the client sees no echo, bots do not
//! care). A turn is one line (CR LF, CR NUL, LF or a bare CR), telnet commands inside included.

use super::{After, Context, Framing, Responder, TurnFields};
use crate::json::JsonWriter;

/// BusyBox line editing buffer (`CONFIG_FEATURE_EDITING_MAX_LEN`): a longer line is cut.
const MAX_LINE: usize = 1024;
/// Commands separated by `;` answered per line (bounds the echoed names).
const MAX_SEGMENTS: usize = 16;
/// Longest command name echoed in an error (ash echoes it whole; we cut it).
const MAX_ECHO: usize = 64;
/// Lines answered on one connection before we hang up (bounds what a client can draw out).
const MAX_COMMANDS: u16 = 200;

const IAC: u8 = 255;
const SB: u8 = 250;
const SE: u8 = 240;
const WILL: u8 = 251;
const DONT: u8 = 254;

/// BusyBox telnetd's opening: IAC DO ECHO, DO NAWS, DO LFLOW, WILL ECHO, WILL SGA.
const NEGOTIATION: &[u8] = b"\xff\xfd\x01\xff\xfd\x1f\xff\xfd\x21\xff\xfb\x01\xff\xfb\x03";
const SHELL_BANNER: &[u8] = b"\r\n\r\nBusyBox v1.36.1 (Debian 1:1.36.1-9) built-in shell (ash)\r\n\
    Enter 'help' for a list of built-in commands.\r\n\r\n";
const PROMPT: &[u8] = b"~ # ";

/// Commands the shell knows (BusyBox applets and ash builtins): they print nothing here.
const APPLETS: &[&[u8]] = &[
    b"ash", b"awk", b"busybox", b"cat", b"cd", b"chmod", b"chown", b"cp", b"cut", b"dd", b"df",
    b"echo", b"export", b"false", b"free", b"ftpget", b"grep", b"head", b"id", b"kill", b"ln",
    b"ls", b"mkdir", b"mount", b"mv", b"nc", b"ping", b"ps", b"pwd", b"rm", b"sed", b"sh",
    b"sleep", b"tail", b"test", b"tftp", b"touch", b"true", b"uname", b"wget", b"which",
];

pub struct Telnet {
    phase: Phase,
    /// Where the framing of the current line is (telnet commands can hold CR/LF bytes).
    scan: Scan,
    commands: u16,
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `login:` sent.
    Login,
    /// `Password:` sent.
    Password,
    /// At the shell prompt.
    Shell,
}

/// The telnet byte-stream state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    Data,
    /// A CR: the next byte (LF or NUL) belongs to the line end.
    Cr,
    /// After IAC.
    Iac,
    /// After IAC WILL/WONT/DO/DONT: the option byte.
    Option,
    /// Inside IAC SB ... IAC SE.
    Sub,
    /// IAC inside a subnegotiation.
    SubIac,
}

impl Scan {
    /// The state after `b`, outside the line-end handling.
    fn next(self, b: u8) -> Scan {
        match (self, b) {
            (Scan::Data | Scan::Cr, IAC) => Scan::Iac,
            (Scan::Data | Scan::Cr | Scan::Option, _) => Scan::Data,
            (Scan::Iac, WILL..=DONT) => Scan::Option,
            (Scan::Iac, SB) => Scan::Sub,
            (Scan::Iac, _) => Scan::Data,
            (Scan::Sub, IAC) => Scan::SubIac,
            (Scan::Sub, _) => Scan::Sub,
            (Scan::SubIac, SE) => Scan::Data,
            (Scan::SubIac, _) => Scan::Sub,
        }
    }
}

/// One client line.
pub struct TelnetTurn<'a> {
    phase: Phase,
    /// The typed text without telnet commands and line end, trimmed; when commands sit
    /// inside the text, the text after the last of them.
    line: &'a [u8],
    /// A line end was seen (a turn of telnet commands alone has none).
    ended: bool,
}

impl Responder for Telnet {
    const NAME: &'static str = "telnet";
    const DEFAULT_PORTS: &'static [u16] = &[23, 2323];
    type Turn<'a> = TelnetTurn<'a>;

    fn new(_ctx: &Context<'_>) -> Self {
        Telnet {
            phase: Phase::Login,
            scan: Scan::Data,
            commands: 0,
        }
    }

    fn greeting(&mut self, ctx: &Context<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(NEGOTIATION);
        login_prompt(ctx, out);
    }

    fn frame(&mut self, pending: &[u8], new_from: usize) -> Framing {
        for (i, &b) in pending.iter().enumerate().skip(new_from) {
            match (self.scan, b) {
                (Scan::Cr, b'\n' | 0) | (Scan::Data, b'\n') => {
                    self.scan = Scan::Data;
                    return Framing::Complete(i + 1);
                }
                // A bare CR ended the line; this byte starts the next one.
                (Scan::Cr, _) => {
                    self.scan = Scan::Data;
                    return Framing::Complete(i);
                }
                (Scan::Data, b'\r') => self.scan = Scan::Cr,
                _ => self.scan = self.scan.next(b),
            }
            if i + 1 >= MAX_LINE && self.scan != Scan::Cr {
                self.scan = Scan::Data;
                return Framing::Complete(i + 1);
            }
        }
        Framing::NeedMore
    }

    fn parse<'a>(&self, turn: &'a [u8]) -> TelnetTurn<'a> {
        let mut scan = Scan::Data;
        let (mut start, mut end) = (0, 0);
        let mut ended = false;
        for (i, &b) in turn.iter().enumerate() {
            if scan == Scan::Data {
                if b == b'\r' || b == b'\n' {
                    ended = true;
                    break;
                }
                if b != IAC && b != 0 {
                    if end != i {
                        start = i;
                    }
                    end = i + 1;
                    continue;
                }
            }
            scan = scan.next(b);
        }
        TelnetTurn {
            phase: self.phase,
            line: turn[start..end].trim_ascii(),
            ended,
        }
    }

    fn reply(&mut self, turn: &TelnetTurn<'_>, ctx: &Context<'_>, out: &mut Vec<u8>) -> After {
        if turn.line.is_empty() && !turn.ended {
            return After::KeepOpen; // telnet commands alone: nothing to answer
        }
        self.commands += 1;
        let after = if self.commands >= MAX_COMMANDS {
            After::Close
        } else {
            After::KeepOpen
        };
        match self.phase {
            Phase::Login if turn.line.is_empty() => {
                out.extend_from_slice(b"\r\n");
                login_prompt(ctx, out);
            }
            Phase::Login => {
                self.phase = Phase::Password;
                out.extend_from_slice(b"\r\nPassword: ");
            }
            Phase::Password => {
                self.phase = Phase::Shell;
                out.extend_from_slice(SHELL_BANNER);
                out.extend_from_slice(PROMPT);
            }
            Phase::Shell => {
                out.extend_from_slice(b"\r\n");
                for command in turn.line.split(|&b| b == b';').take(MAX_SEGMENTS) {
                    if run(command.trim_ascii(), out) == After::Close {
                        return After::Close;
                    }
                }
                out.extend_from_slice(PROMPT);
            }
        }
        after
    }
}

fn login_prompt(ctx: &Context<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(ctx.settings.hostname.as_bytes());
    out.extend_from_slice(b" login: ");
}

/// What ash would print for one command (nothing is executed).
fn run(command: &[u8], out: &mut Vec<u8>) -> After {
    let mut words = command
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    let Some(name) = words.next() else {
        return After::KeepOpen;
    };
    let program = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
    if name == b"exit" || name == b"logout" {
        return After::Close;
    }
    if program == b"busybox" {
        match words.next() {
            None => out.extend_from_slice(
                b"BusyBox v1.36.1 (Debian 1:1.36.1-9) multi-call binary.\r\n\
                  Usage: busybox [function [arguments]...]\r\n",
            ),
            Some(applet) if APPLETS.contains(&applet) => {}
            Some(applet) => {
                out.extend_from_slice(&applet[..applet.len().min(MAX_ECHO)]);
                out.extend_from_slice(b": applet not found\r\n");
            }
        }
    } else if !APPLETS.contains(&program) {
        out.extend_from_slice(b"-sh: ");
        out.extend_from_slice(&name[..name.len().min(MAX_ECHO)]);
        out.extend_from_slice(b": not found\r\n");
    }
    After::KeepOpen
}

impl TurnFields for TelnetTurn<'_> {
    fn protocol(&self) -> Option<&'static str> {
        Some("telnet")
    }

    fn write_ecs(&self, w: &mut JsonWriter<'_>) {
        if self.phase == Phase::Login && !self.line.is_empty() {
            w.begin_object("user");
            w.str("name", self.line);
            w.end_object();
        }
    }

    fn write_spip(&self, w: &mut JsonWriter<'_>) {
        match self.phase {
            Phase::Login => {}
            Phase::Password if !self.ended && self.line.is_empty() => {}
            Phase::Password => {
                w.begin_object("telnet");
                w.str("password", self.line);
                w.end_object();
            }
            Phase::Shell if self.line.is_empty() => {}
            Phase::Shell => {
                w.begin_object("telnet");
                w.str("command", self.line);
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

    /// Mirai's answer to BusyBox's negotiation (WONT to each DO but NAWS, which it accepts
    /// with an 80x24 window; DO to each WILL), as its telnet scanner builds it.
    const MIRAI_IACS: &[u8] = b"\xff\xfc\x01\xff\xfb\x1f\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0\
        \xff\xfc\x21\xff\xfd\x01\xff\xfd\x03";

    fn mirai_session() -> Vec<u8> {
        let mut s = MIRAI_IACS.to_vec();
        s.extend_from_slice(
            b"root\r\nxc3511\r\nenable\r\nsystem\r\nshell\r\nsh\r\n/bin/busybox MIRAI\r\n\
              /bin/busybox cat /proc/mounts; /bin/busybox ECCHI\r\n",
        );
        s
    }

    #[test]
    fn mirai_style_bot_is_captured() {
        let mut first = MIRAI_IACS.to_vec();
        first.extend_from_slice(b"root\r\n");
        let t = converse::<Telnet>(
            true,
            &[
                &first,
                b"xc3511\r\n",
                b"enable\r\n",
                b"system\r\n",
                b"shell\r\n",
                b"sh\r\n",
                b"/bin/busybox MIRAI\r\n",
                b"/bin/busybox cat /proc/mounts; /bin/busybox ECCHI\r\n",
            ],
        );
        assert_eq!(t.greeting, b"\xff\xfd\x01\xff\xfd\x1f\xff\xfd!\xff\xfb\x01\xff\xfb\x03ubuntu login: ");
        assert_eq!(t.turns.len(), 8);
        assert_eq!(t.turns[0].reply, b"\r\nPassword: ");
        assert_eq!(t.turns[0].ecs, json!({"user": {"name": "root"}}));
        assert_eq!(t.turns[0].spip, json!({}));
        assert!(t.turns[1].reply.ends_with(b"built-in commands.\r\n\r\n~ # "));
        assert_eq!(t.turns[1].spip, json!({"telnet": {"password": "xc3511"}}));
        assert_eq!(t.turns[2].reply, b"\r\n-sh: enable: not found\r\n~ # ");
        assert_eq!(t.turns[2].spip, json!({"telnet": {"command": "enable"}}));
        assert_eq!(t.turns[3].reply, b"\r\n-sh: system: not found\r\n~ # ");
        assert_eq!(t.turns[4].reply, b"\r\n-sh: shell: not found\r\n~ # ");
        assert_eq!(t.turns[5].reply, b"\r\n~ # ");
        assert_eq!(t.turns[6].reply, b"\r\nMIRAI: applet not found\r\n~ # ");
        assert_eq!(
            t.turns[6].spip,
            json!({"telnet": {"command": "/bin/busybox MIRAI"}})
        );
        assert_eq!(t.turns[7].reply, b"\r\nECCHI: applet not found\r\n~ # ");
        assert_eq!(t.turns[7].protocol, Some("telnet"));
        assert_splits_agree::<Telnet>(true, &mirai_session());
    }

    #[test]
    fn line_ends_commands_inside_and_exit() {
        // CR NUL (a telnet client's Enter), a NAWS with a 10x13 window holding LF and CR
        // bytes, a bare CR, then exit.
        let t = converse::<Telnet>(
            true,
            &[b"admin\r\0\xff\xfa\x1f\x00\x0a\x00\x0d\xff\xf0pw\r\nls -la\rexit\r\nmore\r\n"],
        );
        assert_eq!(t.turns.len(), 4);
        assert_eq!(t.turns[0].ecs, json!({"user": {"name": "admin"}}));
        assert_eq!(t.turns[1].spip, json!({"telnet": {"password": "pw"}}));
        assert_eq!(t.turns[2].reply, b"\r\n~ # ");
        assert_eq!(t.turns[2].spip, json!({"telnet": {"command": "ls -la"}}));
        assert!(t.turns[3].close);
        assert_eq!(t.unread, b"more\r\n");
    }

    #[test]
    fn negotiation_alone_and_empty_login() {
        let t = converse::<Telnet>(true, &[b"\r\n", MIRAI_IACS]);
        assert_eq!(t.turns.len(), 2);
        assert_eq!(t.turns[0].reply, b"\r\nubuntu login: ");
        assert_eq!(t.turns[1].reply, b"");
        assert_eq!(t.turns[1].ecs, json!({}));
    }

    #[test]
    fn garbage_and_prefixes_never_panic() {
        let input: &[u8] = b"\xff\xff\xff\xfa\xff\r\n\xff\xf0a\xff\xfd\r\rb\r\n;;;\r\n\xff\xfb\n/bin/busybox\r\n\x00\xff";
        for end in 0..=input.len() {
            converse::<Telnet>(true, &[&input[..end]]);
        }
        assert_splits_agree::<Telnet>(true, input);
    }

    #[test]
    fn hostile_64k_gets_a_small_reply() {
        let one_line = vec![b'A'; 64 * 1024];
        assert!(converse::<Telnet>(true, &[&one_line]).sent().len() < 8 * 1024);
        let mut shell = b"root\r\npw\r\n".to_vec();
        shell.extend(b"x;".iter().copied().cycle().take(64 * 1024));
        let sent = converse::<Telnet>(true, &[&shell]).sent().len();
        assert!(sent < 32 * 1024, "{sent}");
    }
}
