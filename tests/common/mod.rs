//! Test harness: a private network namespace that acts as a sensor host, the real
//! `spip-agent` binary running in it, and the test runner for end-to-end test files.
//!
//! Traffic only ever goes to loopback inside a namespace the test made.
//!
//! # Adding an end-to-end test
//!
//! End-to-end files run under [libtest-mimic](https://docs.rs/libtest-mimic) instead of libtest,
//! because libtest cannot mark a test ignored at run time. A test that needs root is reported
//! `ignored` when not root (or fails, naming the reason, when `SPIP_REQUIRE_ROOT_TESTS=1`), never
//! `passed`. In a file `tests/e2e_x.rs`:
//!
//! 1. Write each test as a plain `fn name() { ... }` (no `#[test]`, no root check).
//! 2. List every test once, at the end of the file:
//!    ```ignore
//!    common::test_main! {
//!        needs_root: [curl_gets_200, #[cfg(feature = "ja4plus")] ja4h_is_recorded],
//!        no_root: [bad_configs_exit_2],
//!    }
//!    ```
//! 3. Add to Cargo.toml: `[[test]]` with `name = "e2e_x"` and `harness = false`.
//!
//! Filters and flags work as with libtest (`cargo test --test e2e_x -- curl --test-threads 1`).
//! Output is never captured: a test's prints show as they happen.
//!
//! # Waiting for what a test checks
//!
//! The sensor hands records to its file writer in batches every 100 ms, so a record is not on
//! disk the moment its client is done. Wait for exactly the record an assertion needs
//! ([`Sensor::wait_for`], [`Sensor::find_record`], [`Sensor::record_to`],
//! [`Sensor::records_to`], [`Sensor::wait_until`]); records of one connection come in order, so
//! waiting for the last one checked covers those before it. Never wait for one record (or a
//! count) and assert on another, and never sleep for the writer: to assert a record is absent,
//! [`Sensor::stop`] first (it writes everything). Waits end as soon as they are satisfied and
//! allow [`RECORD_WAIT`] for slow, loaded CI machines.
// Each test file uses only part of this module (tests/loom.rs runs under libtest, no test_main).
#![allow(dead_code, unused_macros)]

pub mod bulk_server;
pub mod http_server;

use libtest_mimic::{Arguments, Completion, Trial};
use serde_json::Value;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const SENSOR_PORT: u16 = 8080;

/// Set to 1 (as `.ci/run` does) to make a root-only test fail instead of being ignored.
pub const REQUIRE_ROOT_ENV: &str = "SPIP_REQUIRE_ROOT_TESTS";

const NEEDS_ROOT: &str = "needs root for network namespaces and iptables";

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    euid == 0
}

fn root_required() -> bool {
    std::env::var_os(REQUIRE_ROOT_ENV).is_some_and(|v| v == "1")
}

/// A test that needs root: runs as root; otherwise ignored with the reason, or failed when
/// [`REQUIRE_ROOT_ENV`] is 1.
pub fn root_trial(name: &'static str, test: fn()) -> Trial {
    Trial::ignorable_test(name, move || {
        if is_root() {
            test();
            Ok(Completion::Completed)
        } else if root_required() {
            Err(format!(
                "{name} {NEEDS_ROOT}; {REQUIRE_ROOT_ENV}=1 forbids skipping it: run as root or with sudo"
            )
            .into())
        } else {
            Ok(Completion::ignored_with(NEEDS_ROOT))
        }
    })
}

/// A test that runs as any user.
pub fn trial(name: &'static str, test: fn()) -> Trial {
    Trial::test(name, move || {
        test();
        Ok(())
    })
}

/// Runs `trials` with libtest's command line; honours `RUST_TEST_THREADS` as libtest does.
pub fn run(trials: Vec<Trial>) -> ExitCode {
    let mut args = Arguments::from_args();
    if args.test_threads.is_none() {
        args.test_threads = std::env::var("RUST_TEST_THREADS")
            .ok()
            .and_then(|n| n.parse().ok());
    }
    libtest_mimic::run(&args, trials).exit_code()
}

/// `fn main` of an end-to-end test file: every test of the file, once (see the module docs).
macro_rules! test_main {
    (
        needs_root: [$($(#[$root_attr:meta])* $root_test:ident),* $(,)?],
        no_root: [$($(#[$any_attr:meta])* $any_test:ident),* $(,)?] $(,)?
    ) => {
        fn main() -> std::process::ExitCode {
            $crate::common::run(Vec::from([
                $(
                    $(#[$root_attr])*
                    $crate::common::root_trial(stringify!($root_test), $root_test),
                )*
                $(
                    $(#[$any_attr])*
                    $crate::common::trial(stringify!($any_test), $any_test),
                )*
            ]))
        }
    };
}
#[allow(unused_imports)]
pub(crate) use test_main;

/// Old-style guard for a `#[test]` under libtest, kept so files written before [`test_main`]
/// still build: as root it returns true; otherwise the test fails (libtest cannot report it
/// ignored). Convert such a file to [`test_main`] (see the module docs).
pub fn require_root(test: &str) -> bool {
    assert!(
        is_root(),
        "{test} {NEEDS_ROOT}: list it under needs_root in common::test_main! so a non-root run \
         reports it ignored"
    );
    true
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_spip-agent")
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace with loopback up and the sensor host's REDIRECT rules.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A bare namespace: loopback up, no rules.
    pub fn new() -> Netns {
        let name = format!(
            "spip-t{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Redirects every TCP port on 127.0.0.0/8 and ::1 to `port`, except `keep_ports`
    /// (helpers of the test itself, such as a Loom server).
    pub fn sensor_host(port: u16, keep_ports: &[u16]) -> Netns {
        let ns = Netns::new();
        for (tool, dst) in [("iptables", "127.0.0.0/8"), ("ip6tables", "::1")] {
            let port = port.to_string();
            ns.run(&[
                tool,
                "-t",
                "nat",
                "-A",
                "OUTPUT",
                "-p",
                "tcp",
                "-d",
                dst,
                "!",
                "--dport",
                &port,
                "-j",
                "REDIRECT",
                "--to-ports",
                &port,
            ]);
        }
        for keep in keep_ports {
            ns.keep_port(*keep);
        }
        ns
    }

    /// Exempts `port` from the REDIRECT (for a helper server of the test, such as Loom).
    pub fn keep_port(&self, port: u16) {
        for (tool, dst) in [("iptables", "127.0.0.0/8"), ("ip6tables", "::1")] {
            self.run(&[
                tool,
                "-t",
                "nat",
                "-I",
                "OUTPUT",
                "1",
                "-p",
                "tcp",
                "-d",
                dst,
                "--dport",
                &port.to_string(),
                "-j",
                "RETURN",
            ]);
        }
    }

    /// `ip netns exec NAME args...`, asserting success.
    pub fn run(&self, args: &[&str]) -> Output {
        run_ok(&mut self.cmd(args))
    }

    /// Runs a client that may fail (a refused login): its exit status is not checked. Returns
    /// its stdout followed by its stderr.
    pub fn client(&self, args: &[&str]) -> String {
        let out = self
            .cmd(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// `spip-agent redirect <action> <args> --exclude-port 22 --port 8080` in the namespace
    /// (the sensor host's firewall rules), asserting success; returns what it printed.
    pub fn redirect(&self, action: &str, args: &[&str]) -> String {
        let port = SENSOR_PORT.to_string();
        let mut cmd = vec![bin(), "redirect", action];
        cmd.extend_from_slice(args);
        cmd.extend(["--exclude-port", "22", "--port", &port]);
        String::from_utf8_lossy(&self.run(&cmd).stdout).into_owned()
    }

    /// A command that runs inside the namespace.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    /// Runs `f` on a thread that lives in this namespace (for in-process clients).
    pub fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = File::open(&path).expect("open netns");
            // SAFETY: ns is an open namespace fd; setns affects only this thread.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread panicked")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A sensor host and a peer namespace joined by a veth pair (`vhost` in the host, `vpeer` in
/// the peer), each side with its addresses (`10.214.0.1/24`, `fd00:214::1/64`).
pub fn host_and_peer(host_addrs: &[&str], peer_addrs: &[&str]) -> (Netns, Netns) {
    let host = Netns::new();
    let peer = Netns::new();
    host.run(&[
        "ip", "link", "add", "vhost", "type", "veth", "peer", "name", "vpeer", "netns", &peer.name,
    ]);
    for (ns, dev, addrs) in [(&host, "vhost", host_addrs), (&peer, "vpeer", peer_addrs)] {
        for addr in addrs {
            if addr.contains(':') {
                // No duplicate address detection: the address is usable at once.
                ns.run(&["ip", "-6", "addr", "add", addr, "dev", dev, "nodad"]);
            } else {
                ns.run(&["ip", "addr", "add", addr, "dev", dev]);
            }
        }
        ns.run(&["ip", "link", "set", dev, "up"]);
    }
    (host, peer)
}

/// Makes a certificate with `spip-agent gen-cert` (CN `spip.test`); returns its directory and
/// the config lines that use it, followed by `extra`.
pub fn gen_cert_config(extra: &str) -> (TempDir, String) {
    let dir = TempDir(temp_dir("cert"));
    let out = run_ok(Command::new(bin()).args([
        "gen-cert",
        "--out",
        &dir.display().to_string(),
        "--cn",
        "spip.test",
    ]));
    let lines = String::from_utf8_lossy(&out.stdout);
    let cfg = format!("{lines}{extra}");
    (dir, cfg)
}

/// How long a test waits for what the sensor writes. Generous, for a slow or loaded CI machine:
/// a wait ends as soon as what it waits for is there.
pub const RECORD_WAIT: Duration = Duration::from_secs(30);

/// The real sensor binary running in a namespace, logging to a file.
pub struct Sensor {
    pub child: Child,
    pub dir: PathBuf,
    pub log: PathBuf,
    pub stderr_path: PathBuf,
}

/// A config for tests: high limits unless the test sets its own.
pub fn test_config(log: &Path, extra: &str) -> String {
    let mut cfg = format!(
        "name = \"test-sensor\"\nip = \"::\"\nport = {SENSOR_PORT}\nlog_file = \"{}\"\n",
        log.display()
    );
    let defaults = [
        ("rate_limit_per_second", "100000"),
        ("per_source_rate_per_second", "0"),
        ("read_timeout_seconds", "5"),
        ("stats_interval_seconds", "3600"),
        ("shutdown_grace_seconds", "2"),
        // Summary records at shutdown would change the record counts tests expect.
        ("scan_summaries", "false"),
    ];
    for (k, v) in defaults {
        if !extra.lines().any(|l| l.trim_start().starts_with(k)) {
            cfg.push_str(&format!("{k} = {v}\n"));
        }
    }
    // Top-level keys must come before any [table].
    let (top, tables): (Vec<&str>, Vec<&str>) = {
        let idx = extra
            .find("\n[")
            .map(|i| i + 1)
            .or(if extra.starts_with('[') {
                Some(0)
            } else {
                None
            });
        match idx {
            Some(i) => (vec![&extra[..i]], vec![&extra[i..]]),
            None => (vec![extra], vec![]),
        }
    };
    for t in top {
        cfg.push_str(t);
        cfg.push('\n');
    }
    for t in tables {
        cfg.push_str(t);
        cfg.push('\n');
    }
    cfg
}

/// A temporary directory removed on drop (kept when the test panicked, for a look).
pub struct TempDir(pub PathBuf);

impl std::ops::Deref for TempDir {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "spip-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Sensor {
    /// Starts the sensor in `ns` with `extra` config lines and waits until it listens.
    pub fn start(ns: &Netns, extra: &str) -> Sensor {
        Sensor::start_with(ns, extra, &[])
    }

    /// Like [`Sensor::start`], with a command prefix (e.g. `prlimit --nofile=64`).
    pub fn start_with(ns: &Netns, extra: &str, prefix: &[&str]) -> Sensor {
        Sensor::launch(ns, extra, prefix, None)
    }

    /// Like [`Sensor::start`], logging to `log` (e.g. on a small tmpfs) instead of its own
    /// directory.
    pub fn start_logging_to(ns: &Netns, log: &Path, extra: &str) -> Sensor {
        Sensor::launch(ns, extra, &[], Some(log))
    }

    fn launch(ns: &Netns, extra: &str, prefix: &[&str], log: Option<&Path>) -> Sensor {
        let dir = temp_dir("sensor");
        let log = log.map_or_else(|| dir.join("records.jsonl"), Path::to_path_buf);
        let cfg_path = dir.join("config.toml");
        std::fs::write(&cfg_path, test_config(&log, extra)).unwrap();
        let stderr_path = dir.join("stderr.txt");
        let mut args: Vec<&str> = prefix.to_vec();
        let cfg_str = cfg_path.to_str().unwrap().to_string();
        args.extend([bin(), "--config", &cfg_str]);
        let child = ns
            .cmd(&args)
            .stdout(Stdio::null())
            .stderr(File::create(&stderr_path).unwrap())
            .spawn()
            .expect("start spip-agent");
        let sensor = Sensor {
            child,
            dir,
            log,
            stderr_path,
        };
        sensor.wait_listening(ns);
        sensor
    }

    fn wait_listening(&self, ns: &Netns) {
        let deadline = Instant::now() + RECORD_WAIT;
        while Instant::now() < deadline {
            if self.stderr().contains("spip: listening on") {
                // Probe with a direct connection to the sensor port is avoided: it would be
                // recorded. `ss` tells us the socket is listening.
                let out = ns.cmd(&["ss", "-ltnH"]).output().unwrap();
                if String::from_utf8_lossy(&out.stdout).contains(&format!(":{SENSOR_PORT}")) {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("sensor did not start: {}", self.stderr());
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// All records written so far (each whole line must be valid JSON). A last line without its
    /// newline is still being written and is left for the next read.
    pub fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let whole = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
        whole
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("invalid record line {l:?}: {e}"))
            })
            .collect()
    }

    /// Waits up to [`RECORD_WAIT`] for a record to `port` that satisfies `found`, and returns
    /// it, or the records to that port (pretty-printed) when none came. Records of one
    /// connection are written in order but in batches, so a test waits for the last record it
    /// checks.
    pub fn find_record(&self, port: u16, found: impl Fn(&Value) -> bool) -> Result<Value, String> {
        self.poll(|recs| with_dport(recs, port).into_iter().find(|r| found(r)))
            .map_err(|recs| format!("{:#?}\n{}", with_dport(&recs, port), self.stderr()))
    }

    /// Like [`Sensor::find_record`], but returns all records to `port` once one satisfies
    /// `found`, and panics (naming `what`) when none came.
    pub fn wait_for(&self, port: u16, what: &str, found: impl Fn(&Value) -> bool) -> Vec<Value> {
        if let Err(seen) = self.find_record(port, found) {
            panic!("no record to port {port} with {what}: {seen}");
        }
        with_dport(&self.records(), port)
    }

    /// The first record to `port` that satisfies `found`, waiting for it (panics with the
    /// records seen when none comes).
    pub fn record_where(&self, port: u16, found: impl Fn(&Value) -> bool) -> Value {
        self.find_record(port, found)
            .unwrap_or_else(|seen| panic!("no such record to port {port}: {seen}"))
    }

    /// The first record to `port` (of a test's only connection to it), waiting for it.
    pub fn record_to(&self, port: u16) -> Value {
        self.record_where(port, |_| true)
    }

    /// The records to `port` once there are at least `n` (panics when they do not come).
    pub fn records_to(&self, port: u16, n: usize) -> Vec<Value> {
        let recs = self.wait_until(&format!("{n} records to port {port}"), |recs| {
            with_dport(recs, port).len() >= n
        });
        with_dport(&recs, port)
    }

    /// All records once there are at least `n` (panics when they do not come).
    pub fn wait_records(&self, n: usize) -> Vec<Value> {
        self.wait_until(&format!("{n} records"), |recs| recs.len() >= n)
    }

    /// All records once `done` holds for them (panics, naming `what`, when it never does).
    pub fn wait_until(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        self.poll(|recs| done(recs).then(|| recs.to_vec()))
            .unwrap_or_else(|recs| {
                panic!(
                    "waited {RECORD_WAIT:?} for {what}; records: {recs:#?}\n{}",
                    self.stderr()
                )
            })
    }

    /// Polls the records until `seen` finds what it looks for (`Ok`), or [`RECORD_WAIT`]
    /// passed (`Err` with the records seen last).
    fn poll<T>(&self, seen: impl Fn(&[Value]) -> Option<T>) -> Result<T, Vec<Value>> {
        let deadline = Instant::now() + RECORD_WAIT;
        loop {
            let recs = self.records();
            if let Some(found) = seen(&recs) {
                return Ok(found);
            }
            if Instant::now() > deadline {
                return Err(recs);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the sensor's stderr contains `text` (a diagnostic it prints once).
    pub fn wait_stderr(&self, text: &str) -> String {
        let deadline = Instant::now() + RECORD_WAIT;
        loop {
            let stderr = self.stderr();
            if stderr.contains(text) {
                return stderr;
            }
            assert!(
                Instant::now() < deadline,
                "waited {RECORD_WAIT:?} for {text:?} on stderr: {stderr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until a stats line on stderr (`stats_interval_seconds`) says `key` reached
    /// `at_least`.
    pub fn wait_stat(&self, key: &str, at_least: u64) {
        let deadline = Instant::now() + RECORD_WAIT;
        loop {
            let stderr = self.stderr();
            let now = last_stats(&stderr).and_then(|v| v[key].as_u64());
            if now.is_some_and(|n| n >= at_least) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited {RECORD_WAIT:?} for {key} >= {at_least} in the stats: {stderr}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn signal(&self, sig: libc::c_int) {
        // The child is `ip netns exec`, which execs the sensor: same pid.
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn stop(&mut self) -> (i32, String) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + RECORD_WAIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status.code().unwrap_or(-1), self.stderr());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("sensor did not exit after SIGTERM: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Connects, sends `data` (in pieces with a pause between them), reads the reply until EOF
/// or `read_for`, and returns it.
pub fn exchange(addr: SocketAddr, pieces: &[&[u8]], read_for: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    for (i, p) in pieces.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(150));
        }
        s.write_all(p).expect("send");
    }
    s.set_read_timeout(Some(read_for)).unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + read_for;
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
        }
    }
    reply
}

/// Connects, sends `payload`, and returns the first bytes of the reply (empty when none came
/// within [`RECORD_WAIT`]).
pub fn probe(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.write_all(payload).expect("send");
    read_reply(&mut s)
}

/// The first bytes that come on `s` (empty when none came within [`RECORD_WAIT`]).
fn read_reply(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(RECORD_WAIT)).unwrap();
    let mut buf = [0u8; 4096];
    match s.read(&mut buf) {
        Ok(n) => buf[..n].to_vec(),
        Err(_) => Vec::new(),
    }
}

/// Records whose `destination.port` is `port`.
pub fn with_dport(records: &[Value], port: u16) -> Vec<Value> {
    records
        .iter()
        .filter(|r| r["destination"]["port"] == port)
        .cloned()
        .collect()
}

/// Polls `done` until it holds (true) or `timeout` passed (false).
pub fn eventually(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// Today's date (UTC) in `format` (chrono's strftime), e.g. `%Y-%m-%d` as nmap prints times.
pub fn utc_today(format: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    chrono::DateTime::from_timestamp(now.as_secs() as i64, 0)
        .expect("a date")
        .format(format)
        .to_string()
}

/// Whether `text` shows `label` followed by `before` or `after` (today's date read before and
/// after a client ran, in case midnight passed meanwhile).
pub fn shows_date(text: &str, label: &str, before: &str, after: &str) -> bool {
    text.contains(&format!("{label}{before}")) || text.contains(&format!("{label}{after}"))
}

/// A loopback port with nothing listening on it (for now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The last counters line (`stats` or `final_stats`) the sensor printed on `stderr`.
fn last_stats(stderr: &str) -> Option<Value> {
    stderr
        .lines()
        .rev()
        .find(|l| l.contains("\"type\":\"final_stats\"") || l.contains("\"type\":\"stats\""))
        .and_then(|l| serde_json::from_str(l).ok())
}

/// The value of counter `key` in the last stats line of `stderr` (after `stop`, the final one).
pub fn stat(stderr: &str, key: &str) -> u64 {
    let stats = last_stats(stderr).unwrap_or_else(|| panic!("no stats line in {stderr}"));
    stats[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {stats}"))
}

/// Probes ports `1000 + first ..` of `ns` one after another, `n` of them, each sending
/// `probe <i>` and asserting the sensor's reply (one record each).
pub fn poke(ns: &Netns, first: u16, n: u16) {
    ns.within(move || {
        for i in first..first + n {
            let dst = SocketAddr::from(([127, 0, 0, 1], 1000 + i));
            assert_eq!(probe(dst, format!("probe {i}\n").as_bytes()), b"127.0.0.1");
        }
    });
}

/// A `[loom]` table shipping to `http://127.0.0.1:<port>/ingest` as sensor `sensor-e2e`.
pub fn loom_config(port: u16, batch: usize, flush: &str) -> String {
    format!(
        "[loom]\nenabled = true\nurl = \"http://127.0.0.1:{port}/ingest\"\nsensor_id = \"sensor-e2e\"\n\
         token = \"tok\"\nbatch_size = {batch}\nflush_interval = \"{flush}\"\n"
    )
}

/// `n` connections from `parallel` threads in `ns`, connection `i` to port `10000 + first + i`
/// (through the REDIRECT), each sending `conn <i>` padded with `x` to `payload_len` bytes and
/// a newline, reading the reply and holding the connection 500 ms more (so that up to
/// `parallel` are open at once); returns how many got the sensor's reply (the client's IP).
pub fn flood(ns: &Netns, first: usize, n: usize, payload_len: usize, parallel: usize) -> usize {
    ns.within(move || {
        let handles: Vec<_> = (0..parallel)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut ok = 0;
                    for i in (first + t..first + n).step_by(parallel) {
                        let mut msg = format!("conn {i} ").into_bytes();
                        if msg.len() < payload_len {
                            msg.resize(payload_len, b'x');
                        }
                        msg.push(b'\n');
                        let dst = SocketAddr::from(([127, 0, 0, 1], 10_000 + i as u16));
                        let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(5))
                            .expect("connect");
                        s.write_all(&msg).expect("send");
                        if read_reply(&mut s) == b"127.0.0.1" {
                            ok += 1;
                        }
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    ok
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("flood thread panicked"))
            .sum()
    })
}
