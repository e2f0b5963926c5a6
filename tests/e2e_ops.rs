//! End-to-end operations: built-in log rotation under a flood, `redirect` rules in a namespace
//! (real traffic from a veth peer), TPROXY mode.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::Duration;

fn flood_past_the_size_cap_rotates_without_losing_or_tearing_lines() {
    const TOTAL: usize = 1500;
    const MAX_BYTES: u64 = 65536;
    const MAX_FILES: usize = 100;
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let mut sensor = Sensor::start(
        &ns,
        &format!("log_max_bytes = {MAX_BYTES}\nlog_max_files = {MAX_FILES}\n"),
    );
    assert_eq!(flood(&ns, 0, TOTAL, 200, 64), TOTAL);
    let (code, stderr) = sensor.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("\"records_dropped\":0"), "{stderr}");

    let mut files: Vec<_> = std::fs::read_dir(&sensor.dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("records.jsonl")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 5, "expected several rotations: {files:?}");
    assert!(files.len() <= MAX_FILES + 1, "{files:?}");
    let mut ports = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            text.len() as u64 <= MAX_BYTES,
            "{f:?} is {} bytes",
            text.len()
        );
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{f:?} ends mid-line"
        );
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("torn line in {f:?}: {e}: {line:?}"));
            ports.push(v["destination"]["port"].as_u64().unwrap());
        }
    }
    assert_eq!(ports.len(), TOTAL, "total records == connections");
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), TOTAL, "every connection recorded exactly once");
}

fn small_retention_keeps_at_most_n_plus_one_files() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let mut sensor = Sensor::start(&ns, "log_max_bytes = 8192\nlog_max_files = 2\n");
    assert_eq!(flood(&ns, 0, 300, 200, 64), 300);
    let (code, stderr) = sensor.stop();
    assert_eq!(code, 0, "{stderr}");
    let mut names: Vec<String> = std::fs::read_dir(&sensor.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("records.jsonl"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["records.jsonl", "records.jsonl.1", "records.jsonl.2"]
    );
    for n in &names {
        for line in std::fs::read_to_string(sensor.dir.join(n)).unwrap().lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("torn line in {n}: {e}"));
        }
    }
}

const HOST4: &str = "10.213.0.1";
const PEER4: &str = "10.213.0.2";
const HOST6: &str = "fd00:213::1";
const PEER6: &str = "fd00:213::2";

/// Sensor host and a peer, joined by a veth pair (addresses only inside these namespaces).
fn host_and_peer() -> (Netns, Netns) {
    common::host_and_peer(
        &[&format!("{HOST4}/24"), &format!("{HOST6}/64")],
        &[&format!("{PEER4}/24"), &format!("{PEER6}/64")],
    )
}

fn connect_reply(peer: &Netns, dst: &str, payload: &'static [u8]) -> Option<Vec<u8>> {
    let dst: SocketAddr = dst.parse().unwrap();
    peer.within(move || {
        use std::io::{Read, Write};
        // One connection only: a refused connect means "not redirected".
        let mut s = std::net::TcpStream::connect_timeout(&dst, Duration::from_secs(3)).ok()?;
        s.write_all(payload).ok()?;
        // The reply (the client's IP) is one segment: the first read returns it, at once.
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut reply = vec![0u8; 4096];
        let n = s.read(&mut reply).unwrap_or(0);
        reply.truncate(n);
        Some(reply)
    })
}

/// `iptables-save` + `ip6tables-save` (without their dated comments), and for the nftables
/// backend also `nft list ruleset`. (iptables-nft creates an empty, policy-accept PREROUTING
/// base chain the first time a rule is added there and never deletes it; iptables-save shows
/// no difference, which is the view an iptables user has.)
fn ruleset(ns: &Netns, backend: &str) -> String {
    let mut s = String::new();
    if backend == "nftables" {
        let nft = ns.run(&["nft", "list", "ruleset"]);
        s.push_str(&String::from_utf8(nft.stdout).unwrap());
    }
    for tool in ["iptables-save", "ip6tables-save"] {
        let out = ns.run(&[tool]);
        // Drop only the "# Generated/Completed ... on <date>" comments.
        for l in String::from_utf8(out.stdout).unwrap().lines() {
            if !l.starts_with('#') {
                s.push_str(l);
                s.push('\n');
            }
        }
    }
    s
}

fn redirect_roundtrip(backend: &str) {
    let (host, peer) = host_and_peer();
    // Somebody else's firewall, which must survive untouched.
    host.run(&[
        "nft",
        "add table inet other; add chain inet other input { type filter hook input priority 0; policy accept; }; add rule inet other input tcp dport 9999 counter accept",
    ]);
    for tool in ["iptables", "ip6tables"] {
        host.run(&[
            tool,
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            "vhost",
            "-p",
            "udp",
            "-j",
            "MASQUERADE",
        ]);
    }
    let before = ruleset(&host, backend);
    let mut sensor = Sensor::start(&host, "");
    let spip = |action: &str| host.redirect(action, &["--backend", backend]);
    // Without the rules an arbitrary port is closed.
    assert_eq!(connect_reply(&peer, &format!("{HOST4}:4444"), b"x"), None);

    spip("apply");
    spip("apply"); // idempotent: re-applying replaces, never duplicates
    let shown = spip("show");
    assert!(shown.contains("8080"), "{shown}");
    assert_eq!(
        connect_reply(&peer, &format!("{HOST4}:4444"), b"hello v4\n").as_deref(),
        Some(PEER4.as_bytes())
    );
    assert_eq!(
        connect_reply(&peer, &format!("[{HOST6}]:4445"), b"hello v6\n").as_deref(),
        Some(PEER6.as_bytes())
    );
    // The excluded port is not redirected (nothing listens there).
    assert_eq!(connect_reply(&peer, &format!("{HOST4}:22"), b"x"), None);
    let v4 = sensor.records_to(4444, 1);
    let v6 = sensor.records_to(4445, 1);
    assert_eq!(v4.len(), 1, "{v4:?}");
    assert_eq!(v6.len(), 1, "{v6:?}");
    assert_eq!(v4[0]["source"]["ip"], PEER4);
    assert_eq!(v6[0]["source"]["ip"], PEER6);

    spip("remove");
    spip("remove"); // removing twice is fine
    assert_eq!(connect_reply(&peer, &format!("{HOST4}:4446"), b"x"), None);
    let after = ruleset(&host, backend);
    assert_eq!(
        before, after,
        "remove must restore the ruleset byte for byte"
    );
    let (code, _) = sensor.stop();
    assert_eq!(code, 0);
}

fn redirect_nftables_reaches_the_sensor_and_remove_is_exact() {
    redirect_roundtrip("nftables");
}

fn redirect_iptables_reaches_the_sensor_and_remove_is_exact() {
    redirect_roundtrip("iptables");
}

fn tproxy_mode_reaches_the_transparent_listener_and_remove_is_exact() {
    let (host, peer) = host_and_peer();
    let routing = |ns: &Netns| {
        let mut s = ruleset(ns, "nftables");
        let cmds: [&[&str]; 4] = [
            &["ip", "-4", "rule", "show"],
            &["ip", "-6", "rule", "show"],
            &["ip", "-4", "route", "show", "table", "all"],
            &["ip", "-6", "route", "show", "table", "all"],
        ];
        for args in cmds {
            let out = String::from_utf8(ns.run(args).stdout).unwrap();
            // Link-local IPv6 routes come and go with DAD on their own schedule: not ours.
            for line in out
                .lines()
                .filter(|l| !l.contains("fe80:") && !l.starts_with("multicast ff00::/8"))
            {
                s.push_str(line);
                s.push('\n');
            }
        }
        s
    };
    let before = routing(&host);
    let mut sensor = Sensor::start(&host, "mode = \"tproxy\"\n");
    let spip = |action: &str| host.redirect(action, &["--tproxy"]);
    assert_eq!(connect_reply(&peer, &format!("{HOST4}:5555"), b"x"), None);
    spip("apply");
    spip("apply");
    assert_eq!(
        connect_reply(&peer, &format!("{HOST4}:5555"), b"tproxy v4\n").as_deref(),
        Some(PEER4.as_bytes())
    );
    assert_eq!(
        connect_reply(&peer, &format!("[{HOST6}]:5556"), b"tproxy v6\n").as_deref(),
        Some(PEER6.as_bytes())
    );
    assert_eq!(connect_reply(&peer, &format!("{HOST4}:22"), b"x"), None);
    let v4 = sensor.records_to(5555, 1);
    let v6 = sensor.records_to(5556, 1);
    assert_eq!((v4.len(), v6.len()), (1, 1), "{v4:?} {v6:?}");
    assert_eq!(v4[0]["destination"]["ip"], HOST4);
    assert_eq!(v6[0]["destination"]["ip"], HOST6);
    assert_eq!(v4[0]["source"]["ip"], PEER4);
    spip("remove");
    assert_eq!(connect_reply(&peer, &format!("{HOST4}:5557"), b"x"), None);
    assert_eq!(
        before,
        routing(&host),
        "remove must restore rules and routes"
    );
    let (code, _) = sensor.stop();
    assert_eq!(code, 0);
}

fn tproxy_dry_run_prints_rules_and_policy_routing() {
    let out = std::process::Command::new(bin())
        .args([
            "redirect",
            "apply",
            "--tproxy",
            "--dry-run",
            "--port",
            "8080",
            "--exclude-port",
            "22",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "nft -f - <<'EOF'",
        "type filter hook prerouting priority mangle; policy accept;",
        "tcp dport { 22, 8080 } return",
        "tproxy ip to :8080 accept",
        "tproxy ip6 to :8080 accept",
        "ip -4 rule add fwmark 1 lookup 100",
        "ip -4 route add local 0.0.0.0/0 dev lo table 100",
        "ip -6 rule add fwmark 1 lookup 100",
        "ip -6 route add local ::/0 dev lo table 100",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    // iptables has no TPROXY generator: a clear usage error.
    let out = std::process::Command::new(bin())
        .args([
            "redirect",
            "apply",
            "--tproxy",
            "--backend",
            "iptables",
            "--dry-run",
            "--port",
            "8080",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

fn setup_writes_a_config_that_passes_check() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = temp_dir("setup");
    let cfg = dir.join("etc/config.toml");
    let cfg_s = cfg.to_str().unwrap();
    let log = dir.join("spip.jsonl");
    let out = Command::new(bin())
        .args([
            "setup",
            "--non-interactive",
            "--output",
            cfg_s,
            "--name",
            "edge-7",
            "--port",
            "2323",
            "--log-file",
            log.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let check = Command::new(bin())
        .args(["--check", "--config", cfg_s])
        .output()
        .unwrap();
    assert!(check.status.success());
    let text = String::from_utf8(check.stdout).unwrap();
    assert!(
        text.contains("name = \"edge-7\"\n") && text.contains("port = 2323\n"),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    // An existing file is not replaced without --force.
    let again = Command::new(bin())
        .args(["setup", "--non-interactive", "--output", cfg_s])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    // Interactive, answers on stdin.
    let mut child = Command::new(bin())
        .args(["setup", "--output", cfg_s, "--force"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"edge-8\n::\n8443\n-\nn\nn\nn\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "prompts go to stderr");
    let check = Command::new(bin())
        .args(["--check", "--config", cfg_s])
        .output()
        .unwrap();
    let text = String::from_utf8(check.stdout).unwrap();
    assert!(text.contains("name = \"edge-8\"\n"), "{text}");
    assert!(
        text.contains("ip = \"::\"\n") && text.contains("log_file = \"\"\n"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn packaged_config_is_valid_and_documents_every_key() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/config.toml");
    let cfg = spip::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.port, 8080);
    assert_eq!(cfg.ip.to_string(), "0.0.0.0");
    assert_eq!(
        cfg.log_file.as_deref(),
        Some(std::path::Path::new("/var/log/spip/spip.jsonl"))
    );
    // Every effective setting `--check` prints appears as a key in the packaged file.
    let text = std::fs::read_to_string(&path).unwrap();
    for line in cfg.describe().lines() {
        let key = line.split(" = ").next().unwrap();
        // Table keys (`loom.url`) appear as `url = ` in their table.
        let key = key.split_once('.').map_or(key, |(_, k)| k);
        if key == "tls" {
            continue;
        }
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{key} = "))),
            "packaging/config.toml lacks {key}"
        );
    }
}

common::test_main! {
    needs_root: [
        flood_past_the_size_cap_rotates_without_losing_or_tearing_lines,
        small_retention_keeps_at_most_n_plus_one_files,
        redirect_nftables_reaches_the_sensor_and_remove_is_exact,
        redirect_iptables_reaches_the_sensor_and_remove_is_exact,
        tproxy_mode_reaches_the_transparent_listener_and_remove_is_exact,
    ],
    no_root: [
        tproxy_dry_run_prints_rules_and_policy_routing,
        setup_writes_a_config_that_passes_check,
        packaged_config_is_valid_and_documents_every_key,
    ],
}
