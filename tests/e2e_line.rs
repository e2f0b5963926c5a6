//! End-to-end: the line-based, server-speaks-first responders (FTP, SMTP, POP3, IMAP, telnet)
//! in the real binary, behind REDIRECT in a private namespace, driven by real Debian clients
//! (curl, swaks, nmap) and a scripted Mirai-style telnet bot. Each test asserts that the
//! client's *second* message (the password, RCPT, the command after login) is recorded.

mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How long the bot waits for each prompt.
const PROMPT_WAIT: Duration = Duration::from_secs(20);

/// Waits until a record to `port` has `value` at the JSON `pointer` (e.g.
/// `/spip/ftp/password`), and returns the records to that port.
fn wait_field(sensor: &Sensor, port: u16, pointer: &str, value: &str) -> Vec<Value> {
    sensor.wait_for(port, &format!("{pointer} = {value:?}"), |r| {
        r.pointer(pointer) == Some(&Value::from(value))
    })
}

fn curl_ftp_password_is_recorded() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    let out = ns.client(&["curl", "-sS", "-m", "20", "ftp://u:SECRET@127.0.0.1:21/"]);
    assert!(out.contains("530"), "curl saw the refusal: {out}");
    let recs = wait_field(&sensor, 21, "/spip/ftp/password", "SECRET");
    assert!(recs.iter().any(|r| r["user"]["name"] == "u"), "{recs:#?}");
    assert!(recs.iter().all(|r| r["network"]["protocol"] == "ftp"));
}

fn curl_pop3_password_is_recorded() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    ns.client(&["curl", "-sS", "-m", "20", "pop3://u:SECRET@127.0.0.1:110/"]);
    let recs = wait_field(&sensor, 110, "/spip/pop3/password", "SECRET");
    assert!(recs.iter().any(|r| r["user"]["name"] == "u"), "{recs:#?}");
}

fn curl_imap_password_is_recorded() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    ns.client(&["curl", "-sS", "-m", "20", "imap://u:SECRET@127.0.0.1:143/"]);
    let recs = wait_field(&sensor, 143, "/spip/imap/password", "SECRET");
    assert!(recs.iter().any(|r| r["user"]["name"] == "u"), "{recs:#?}");
}

fn swaks_mail_and_auth_are_recorded() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    let out = ns.client(&[
        "swaks",
        "--server",
        "127.0.0.1:25",
        "--from",
        "a@x.org",
        "--to",
        "SECRET@y.org",
        "--helo",
        "client.example",
        "--timeout",
        "20",
    ]);
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    // The message is the last record of the session: wait for it, then check the envelope.
    let recs = sensor.wait_for(25, "the message", |r| {
        r["spip"]["smtp"]["message_bytes"].is_u64()
    });
    assert!(
        recs.iter()
            .any(|r| r["email"]["from"]["address"] == "a@x.org"),
        "{recs:#?}"
    );
    assert!(
        recs.iter()
            .any(|r| r["email"]["to"]["address"] == "SECRET@y.org"),
        "{recs:#?}"
    );
    ns.client(&[
        "swaks",
        "--server",
        "127.0.0.1:587",
        "--to",
        "x@y.org",
        "--auth",
        "LOGIN",
        "--auth-user",
        "u",
        "--auth-password",
        "SECRETPW",
        "--timeout",
        "20",
    ]);
    let recs = wait_field(&sensor, 587, "/spip/smtp/password", "SECRETPW");
    assert!(recs.iter().any(|r| r["user"]["name"] == "u"), "{recs:#?}");
}

fn curl_smtp_rcpt_is_recorded() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    let dir = TempDir(temp_dir("mail"));
    let mail = dir.join("mail.txt");
    std::fs::write(&mail, "Subject: hi\r\n\r\nbody\r\n").unwrap();
    ns.client(&[
        "curl",
        "-sS",
        "-m",
        "20",
        "smtp://127.0.0.1:25",
        "--mail-from",
        "a@x.org",
        "--mail-rcpt",
        "SECRET@y.org",
        "-T",
        mail.to_str().unwrap(),
    ]);
    // The subject is in the message record, the session's last: wait for it.
    let recs = wait_field(&sensor, 25, "/email/subject", "hi");
    assert!(
        recs.iter()
            .any(|r| r["email"]["to"]["address"] == "SECRET@y.org"),
        "{recs:#?}"
    );
}

/// Reads from `s` until `needle` has arrived (or [`PROMPT_WAIT`]): what a bot does between
/// its steps.
fn read_until(s: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let deadline = Instant::now() + PROMPT_WAIT;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(needle.len()).any(|w| w == needle) {
        assert!(
            Instant::now() < deadline,
            "waiting for {needle:?}, got {got:?}"
        );
        match s.read(&mut buf) {
            Ok(0) => panic!("closed while waiting for {needle:?}, got {got:?}"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    got
}

/// A Mirai-style telnet bot: answers the negotiation (WONT to DO but NAWS, DO to WILL), logs
/// in when it sees the prompts, escapes to a shell, and probes with `/bin/busybox MIRAI`.
fn mirai_style_telnet_bot_is_recorded() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    ns.within(|| {
        let mut s = TcpStream::connect("127.0.0.1:23").expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let greeting = read_until(&mut s, b"login: ");
        assert!(greeting.starts_with(b"\xff\xfd\x01"), "{greeting:?}");
        s.write_all(
            b"\xff\xfc\x01\xff\xfb\x1f\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0\xff\xfc\x21\
              \xff\xfd\x01\xff\xfd\x03root\r\n",
        )
        .unwrap();
        read_until(&mut s, b"Password: ");
        s.write_all(b"xc3511\r\n").unwrap();
        read_until(&mut s, b"# ");
        for command in ["enable", "system", "shell", "sh"] {
            s.write_all(format!("{command}\r\n").as_bytes()).unwrap();
            read_until(&mut s, b"# ");
        }
        s.write_all(b"/bin/busybox MIRAI\r\n").unwrap();
        read_until(&mut s, b"MIRAI: applet not found");
    });
    let recs = wait_field(&sensor, 23, "/spip/telnet/password", "xc3511");
    assert!(
        recs.iter().any(|r| r["user"]["name"] == "root"),
        "{recs:#?}"
    );
    let recs = wait_field(&sensor, 23, "/spip/telnet/command", "/bin/busybox MIRAI");
    assert!(
        recs.iter()
            .any(|r| r["spip"]["telnet"]["command"] == "enable")
    );
    assert!(recs.iter().all(|r| r["network"]["protocol"] == "telnet"));
}

/// `nmap -sV` names each service (and its product) from our greetings, not `ftp?`.
fn nmap_names_the_services() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let _sensor = Sensor::start(&ns, "");
    let out = ns.client(&[
        "nmap",
        "-sV",
        "-Pn",
        "-n",
        "-p",
        "21,23,25,110,143",
        "127.0.0.1",
    ]);
    for (port, service, product) in [
        ("21/tcp", "ftp", "vsftpd"),
        ("23/tcp", "telnet", "BusyBox telnetd"),
        ("25/tcp", "smtp", "Postfix smtpd"),
        ("110/tcp", "pop3", "Dovecot pop3d"),
        ("143/tcp", "imap", "Dovecot imapd"),
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(port))
            .unwrap_or_else(|| panic!("no {port} in {out}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.get(1..3), Some(&["open", service][..]), "{line}");
        assert!(line.contains(product), "{line}");
    }
}

common::test_main! {
    needs_root: [
        curl_ftp_password_is_recorded,
        curl_pop3_password_is_recorded,
        curl_imap_password_is_recorded,
        swaks_mail_and_auth_are_recorded,
        curl_smtp_rcpt_is_recorded,
        mirai_style_telnet_bot_is_recorded,
        nmap_names_the_services,
    ],
    no_root: [],
}
