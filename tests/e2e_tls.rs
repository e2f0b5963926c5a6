//! End-to-end TLS mode: the real binary in a network namespace, real TLS clients.

mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long a raw client waits for the sensor: the wait ends at its reply or close.
const REPLY_WAIT: Duration = Duration::from_secs(20);

fn start(ns: &Netns, extra: &str) -> (Sensor, TempDir) {
    let (dir, cfg) = gen_cert_config(extra);
    (Sensor::start(ns, &cfg), dir)
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn assert_one_event_id(recs: &[Value]) {
    let id = &recs[0]["event"]["id"];
    assert!(recs.iter().all(|r| &r["event"]["id"] == id), "{recs:#?}");
    assert!(
        recs.iter().all(|r| r["network"]["protocol"] == "tls"),
        "{recs:#?}"
    );
}

fn s_client(ns: &Netns, args: &[&str], stdin: &[u8]) -> String {
    let mut cmd = ns.cmd(&["openssl", "s_client", "-ign_eof"]);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// ALPN says h2 (the client listed it first), but the client then speaks HTTP/1.1: the bytes
/// decide, and the request is parsed as HTTP/1.1.
fn alpn_h2_then_http11_bytes_are_parsed_as_http11() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let (sensor, _dir) = start(&ns, "");
    let out = s_client(
        &ns,
        &["-connect", "127.0.0.1:8444", "-alpn", "h2,http/1.1"],
        b"GET /SECRET HTTP/1.1\r\nHost: x\r\nUser-Agent: s_client\r\nConnection: close\r\n\r\n",
    );
    assert!(out.contains("HTTP/1.1 200 OK"), "{out}");
    let recs = sensor.records_to(8444, 2);
    assert_eq!(recs[1]["tls"]["alpn"], "h2", "{recs:#?}");
    assert_eq!(recs[1]["url"]["path"], "/SECRET", "{recs:#?}");
    assert_eq!(recs[1]["user_agent"]["original"], "s_client");
}

fn openssl_sni_alpn_http11_is_decrypted_and_recorded() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let (sensor, _dir) = start(&ns, "");
    let out = s_client(
        &ns,
        &[
            "-connect",
            "127.0.0.1:8443",
            "-servername",
            "www.example.test",
            "-alpn",
            "http/1.1",
        ],
        b"GET /admin HTTP/1.1\r\nHost: www.example.test\r\nConnection: close\r\n\r\n",
    );
    assert!(out.contains("HTTP/1.1 200 OK"), "{out}");
    let recs = sensor.records_to(8443, 2);
    assert_eq!(recs.len(), 2, "{recs:#?}");
    assert_one_event_id(&recs);
    for r in &recs {
        let c = &r["tls"]["client"];
        assert_eq!(c["server_name"], "www.example.test");
        assert_eq!(c["supported_protocols"][0], "http/1.1");
        assert!(
            c["hash"]["ja4"].as_str().unwrap().starts_with("t13d"),
            "{r}"
        );
        assert_eq!(c["ja3"].as_str().unwrap().len(), 32);
        assert_eq!(c["version"], "TLSv1.3");
        assert!(c["cipher"].as_str().unwrap().starts_with("TLS_AES_"), "{r}");
        assert_eq!(r["tls"]["alpn"], "http/1.1");
        assert!(r["spip"].get("tls_error").is_none(), "{r}");
    }
    // Record 1: the ClientHello, raw.
    assert_eq!(recs[0]["spip"]["turn"], 1);
    assert!(
        recs[0]["event"]["original_payload_hex"]
            .as_str()
            .unwrap()
            .starts_with("16030")
    );
    // Record 2: the decrypted request.
    let r = &recs[1];
    assert_eq!(r["spip"]["turn"], 2);
    assert_eq!(r["http"]["request"]["method"], "GET");
    assert_eq!(r["url"]["path"], "/admin");
    assert_eq!(r["url"]["domain"], "www.example.test");
    #[cfg(feature = "ja4plus")]
    assert!(
        r["http"]["request"]["hash"]["ja4h"]
            .as_str()
            .unwrap()
            .starts_with("ge11"),
        "{r}"
    );
    assert!(
        r["event"]["original_payload_hex"]
            .as_str()
            .unwrap()
            .starts_with(&hex("GET /admin"))
    );
}

fn curl_http11_and_http2() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let (sensor, _dir) = start(&ns, "");
    let out = ns.run(&[
        "curl",
        "-sk",
        "-m",
        "20",
        "--http1.1",
        "-A",
        "tls-test/1",
        "https://127.0.0.1:4443/x",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "127.0.0.1");
    let recs = sensor.records_to(4443, 2);
    assert_one_event_id(&recs);
    assert_eq!(recs[1]["user_agent"]["original"], "tls-test/1");
    assert_eq!(recs[1]["tls"]["alpn"], "http/1.1");
    assert_eq!(
        recs[1]["tls"]["client"]["supported_protocols"][0],
        "http/1.1"
    );

    // h2: no HTTP/2 server, curl fails, but the preface and frames are recorded.
    let _ = ns
        .cmd(&[
            "curl",
            "-sk",
            "-m",
            "20",
            "--http2",
            "https://127.0.0.1:4444/h2",
        ])
        .output();
    let recs = sensor.records_to(4444, 2);
    assert!(recs.len() >= 2, "{recs:#?}");
    assert_one_event_id(&recs);
    assert_eq!(recs[1]["tls"]["alpn"], "h2");
    assert_eq!(recs[1]["tls"]["client"]["supported_protocols"][0], "h2");
    let payload = recs[1]["event"]["original_payload_hex"].as_str().unwrap();
    assert!(
        payload.starts_with(&hex("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")),
        "{payload}"
    );
}

fn python_client_certificate_is_recorded() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let (sensor, dir) = start(&ns, "");
    let ccert = dir.join("client.pem");
    let ckey = dir.join("client.key");
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-subj", "/CN=scanner-client/O=Evil Corp", "-days", "30"])
        .args([
            "-keyout",
            ckey.to_str().unwrap(),
            "-out",
            ccert.to_str().unwrap(),
        ])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let script = format!(
        r#"
import socket, ssl
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.load_cert_chain("{}", "{}")
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", 9443)), server_hostname="py.test")
s.sendall(b"hello over tls")
print(s.recv(100).decode())
s.close()
"#,
        ccert.display(),
        ckey.display()
    );
    let out = ns.run(&["python3", "-c", &script]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "127.0.0.1");
    let recs = sensor.records_to(9443, 2);
    assert_one_event_id(&recs);
    let r = &recs[1];
    assert_eq!(r["event"]["summary"], "hello over tls");
    let cc = &r["tls"]["client"]["client_certificate"];
    assert!(
        cc["subject"]
            .as_str()
            .unwrap()
            .contains("CN=scanner-client"),
        "{r}"
    );
    assert!(
        cc["issuer"].as_str().unwrap().contains("O=Evil Corp"),
        "{r}"
    );
    assert!(cc["not_before"].as_str().unwrap().ends_with('Z'));
    assert!(cc["not_after"].as_str().unwrap().ends_with('Z'));
    assert_eq!(r["tls"]["client"]["server_name"], "py.test");
}

fn tls10_client_fails_but_is_fingerprinted() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let (sensor, _dir) = start(&ns, "");
    let _ = s_client(
        &ns,
        &[
            "-connect",
            "127.0.0.1:10443",
            "-tls1",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
            "-servername",
            "old.test",
        ],
        b"",
    );
    let recs = sensor.records_to(10443, 1);
    assert_eq!(recs.len(), 1, "{recs:#?}");
    let r = &recs[0];
    assert!(
        r["tls"]["client"]["hash"]["ja4"]
            .as_str()
            .unwrap()
            .starts_with("t10"),
        "{r}"
    );
    assert_eq!(r["tls"]["client"]["server_name"], "old.test");
    assert!(!r["spip"]["tls_error"].as_str().unwrap().is_empty(), "{r}");
    assert_eq!(r["spip"]["close_reason"], "tls_error");
    assert!(
        r["event"]["original_payload_hex"]
            .as_str()
            .unwrap()
            .starts_with("1603")
    );
    assert_eq!(r["network"]["protocol"], "tls");
}

/// A real ClientHello, captured from openssl.
fn client_hello(ns: &Netns) -> Vec<u8> {
    // Grab one with a throwaway sensor-independent listener: openssl writes it to a port the
    // test reads directly (kept out of the REDIRECT rule).
    let l = ns.within(|| std::net::TcpListener::bind("127.0.0.1:7999").unwrap());
    let mut child = ns
        .cmd(&[
            "openssl",
            "s_client",
            "-connect",
            "127.0.0.1:7999",
            "-servername",
            "cut.test",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (mut s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(REPLY_WAIT)).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    buf.truncate(n);
    buf
}

fn send_raw(ns: &Netns, port: u16, data: Vec<u8>, then_wait: Duration) -> Vec<u8> {
    ns.within(move || {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&data).unwrap();
        s.set_read_timeout(Some(then_wait)).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    })
}

fn truncated_garbage_stalled_and_plain() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[7999]);
    let hello = client_hello(&ns);
    assert_eq!(hello[0], 0x16);
    let (sensor, _dir) = start(
        &ns,
        "handshake_timeout_seconds = 2\nread_timeout_seconds = 30\n",
    );

    // Garbage after a record header: rustls rejects it, the connection ends (with an alert
    // when rustls queues one), no waiting for a timeout.
    let reply = send_raw(&ns, 2001, b"\x16\x03\x01\x00\x05hello".to_vec(), REPLY_WAIT);
    assert!(reply.is_empty() || reply[0] == 0x15, "{reply:?}");
    let r = &sensor.records_to(2001, 1)[0];
    assert_eq!(r["event"]["original_payload_hex"], "160301000568656c6c6f");
    assert!(!r["spip"]["tls_error"].as_str().unwrap().is_empty(), "{r}");
    assert_eq!(r["network"]["protocol"], "tls");

    // Truncated ClientHello, then the client closes (shutdown write side).
    let half = hello[..hello.len() / 2].to_vec();
    let h = half.clone();
    ns.within(move || {
        let mut s = TcpStream::connect("127.0.0.1:2002").unwrap();
        s.write_all(&h).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
    });
    let r = &sensor.records_to(2002, 1)[0];
    assert_eq!(
        r["event"]["original_payload_hex"].as_str().unwrap().len(),
        half.len() * 2
    );
    assert_eq!(r["spip"]["tls_error"], "incomplete ClientHello", "{r}");
    assert_eq!(r["spip"]["close_reason"], "eof");

    // Stalled mid-ClientHello: closed at handshake_timeout (2 s), well before read_timeout.
    let t0 = std::time::Instant::now();
    send_raw(&ns, 2003, half.clone(), REPLY_WAIT);
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(15), "{took:?}");
    let r = &sensor.records_to(2003, 1)[0];
    assert_eq!(r["spip"]["close_reason"], "handshake_timeout", "{r}");
    assert!(
        r["spip"]["tls_error"].as_str().unwrap().contains("timeout"),
        "{r}"
    );

    // Whole ClientHello, then silence: the handshake stalls, the hello is fingerprinted.
    send_raw(&ns, 2004, hello.clone(), REPLY_WAIT);
    let r = &sensor.records_to(2004, 1)[0];
    assert_eq!(r["spip"]["close_reason"], "handshake_timeout", "{r}");
    assert_eq!(r["tls"]["client"]["server_name"], "cut.test");
    assert!(
        r["tls"]["client"]["hash"]["ja4"]
            .as_str()
            .unwrap()
            .starts_with("t13")
    );

    // A ClientHello in two segments: framed across reads, then answered with a ServerHello.
    let (a, b) = hello.split_at(hello.len() / 3);
    let (a, b) = (a.to_vec(), b.to_vec());
    let reply = ns.within(move || {
        let mut s = TcpStream::connect("127.0.0.1:2006").unwrap();
        s.write_all(&a).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        s.write_all(&b).unwrap();
        s.set_read_timeout(Some(REPLY_WAIT)).unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap_or(0);
        buf[..n].to_vec()
    });
    assert_eq!(&reply[..3], b"\x16\x03\x03", "ServerHello: {reply:?}");
    let r = &sensor.records_to(2006, 1)[0];
    assert_eq!(r["spip"]["close_reason"], "eof", "{r}");
    assert_eq!(r["tls"]["client"]["server_name"], "cut.test");
    assert_eq!(
        r["event"]["original_payload_hex"].as_str().unwrap().len(),
        hello.len() * 2
    );

    // Plain bytes to a TLS-mode sensor: one record, whole payload.
    let reply = send_raw(&ns, 2005, b"\x00\x01plain stuff here".to_vec(), REPLY_WAIT);
    assert_eq!(reply, b"127.0.0.1");
    let recs = sensor.records_to(2005, 1);
    assert_eq!(
        recs[0]["event"]["original_payload_hex"],
        "0001".to_string() + &hex("plain stuff here")
    );
    assert!(recs[0].get("tls").is_none());
}

fn gen_cert_files_and_bad_cert_exit_2() {
    let dir = temp_dir("gencert");
    let out = Command::new(bin())
        .args(["gen-cert", "--out", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("cert_path = ") && text.contains("key_path = "),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(dir.join("cert.pem").exists());
    let cfg = dir.join("config.toml");
    let check = |cfg: &Path| {
        Command::new(bin())
            .args(["--config", cfg.to_str().unwrap(), "--check"])
            .output()
            .unwrap()
    };
    std::fs::write(&cfg, format!("name = \"t\"\nport = 8080\n{text}")).unwrap();
    let out = check(&cfg);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dir.join("cert.pem"), "not a certificate").unwrap();
    let out = check(&cfg);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cert.pem"), "{err}");
    // The sensor itself refuses to start the same way.
    let out = Command::new(bin())
        .args(["--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

fn rsa_second_certificate_for_rsa_only_clients() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let (dir, mut cfg) = gen_cert_config("");
    let (rc, rk) = (dir.join("rsa.pem"), dir.join("rsa.key"));
    let st = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .args(["-subj", "/CN=rsa.test", "-keyout", rk.to_str().unwrap()])
        .args(["-out", rc.to_str().unwrap()])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    cfg.push_str(&format!(
        "rsa_cert_path = \"{}\"\nrsa_key_path = \"{}\"\n",
        rc.display(),
        rk.display()
    ));
    let sensor = Sensor::start(&ns, &cfg);
    let default = s_client(&ns, &["-connect", "127.0.0.1:5443", "-brief"], b"x");
    assert!(
        default.contains("Peer certificate: CN = spip.test"),
        "{default}"
    );
    let rsa_only = s_client(
        &ns,
        &[
            "-connect",
            "127.0.0.1:5444",
            "-brief",
            "-sigalgs",
            "RSA-PSS+SHA256:RSA+SHA256",
        ],
        b"x",
    );
    assert!(
        rsa_only.contains("Peer certificate: CN = rsa.test"),
        "{rsa_only}"
    );
    assert!(rsa_only.contains("Signature type: RSA-PSS"), "{rsa_only}");
    // Both handshakes completed and were recorded.
    for port in [5443, 5444] {
        let recs = sensor.records_to(port, 1);
        assert_eq!(recs[0]["tls"]["client"]["version"], "TLSv1.3", "{recs:#?}");
    }
}

common::test_main! {
    needs_root: [
        openssl_sni_alpn_http11_is_decrypted_and_recorded,
        alpn_h2_then_http11_bytes_are_parsed_as_http11,
        curl_http11_and_http2,
        python_client_certificate_is_recorded,
        tls10_client_fails_but_is_fingerprinted,
        truncated_garbage_stalled_and_plain,
        rsa_second_certificate_for_rsa_only_clients,
    ],
    no_root: [
        gen_cert_files_and_bad_cert_exit_2,
    ],
}
