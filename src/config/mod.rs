//! Configuration: the Go agent's TOML keys plus spip's own, validated up front.
//!
//! Every error names the key and says what is wrong; unknown keys are errors so a typo never
//! passes silently. Numeric Spip keys treat 0 (or absence) as "use the default", as Spip does.

use serde::Deserialize;

mod sinks;
pub use sinks::{ElasticAuth, ElasticConfig, KafkaCompression, KafkaConfig, KafkaSasl, LoomConfig};
use sinks::{RawElastic, RawKafka, RawLoom, validate_elastic, validate_kafka, validate_loom};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default SSH server banner: what a stock Debian 12 OpenSSH sends.
pub const DEFAULT_SSH_BANNER: &str = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3";

/// A configuration problem, naming the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "`{}`: {}", self.key, self.problem)
        }
    }
}

impl std::error::Error for ConfigError {}

fn err(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        problem: problem.into(),
    }
}

/// The validated, effective settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub ip: IpAddr,
    pub port: u16,
    /// Both set = TLS mode (resolved against the config file's folder).
    pub tls: Option<TlsFiles>,
    /// None = stdout.
    pub log_file: Option<PathBuf>,
    /// Rotate `log_file` before it would exceed this many bytes (0 = never by size).
    pub log_max_bytes: u64,
    /// Rotated files kept (`log_file.1` … `log_file.N`, or earlier files of the time pattern).
    pub log_max_files: usize,
    /// Rotated files older than this are deleted (None = no age limit).
    pub log_max_age: Option<Duration>,
    /// Rotated files are deleted, oldest first, while they add up to more (0 = no limit).
    pub log_max_total_bytes: u64,
    /// Time-based rotation: a new file every interval, `log_file` being a strftime pattern.
    pub log_rotate_interval: Option<Duration>,
    /// "redirect" (NAT REDIRECT; original port from conntrack) or "tproxy" (IP_TRANSPARENT
    /// listener; original destination = local address).
    pub mode: Mode,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    pub community_id_seed: u16,

    /// Worker threads, one listener each (0 in the file = one per core).
    pub threads: usize,
    /// Live connections across all threads; over it a new connection is closed at once.
    pub max_connections: usize,
    /// New connections per second allowed from one source IP (0 = unlimited).
    pub per_source_rate_per_second: u32,
    pub per_source_burst: u32,
    /// Client bytes kept per connection; reaching it ends the connection.
    pub max_payload_bytes: usize,
    /// Whole-connection deadline, not reset by activity.
    pub session_timeout: Duration,
    /// TLS handshake deadline (TLS mode).
    pub handshake_timeout: Duration,
    pub ssh_banner: String,
    /// Host name in protocol banners (SMTP, FTP, POP3, IMAP, telnet prompts).
    pub banner_hostname: String,
    /// Silence that ends a turn no responder frames.
    pub turn_pause: Duration,
    /// Records one connection may write; the last one holds the rest of its payload.
    pub max_records_per_connection: u32,
    /// Record bytes one connection may write before the rest goes into one final record.
    pub max_record_bytes_per_connection: usize,
    /// `[ports]`: destination port -> responder name, over the built-in defaults.
    pub ports: Vec<(u16, String)>,
    /// Record connections that send nothing (scan telemetry).
    pub log_empty_connections: bool,
    /// Bytes each sink may hold (queued, in flight, awaiting a retry); over it the oldest
    /// records are dropped and counted.
    pub sink_queue_bytes: usize,
    /// `/metrics` listener (None = off).
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub stats_interval: Duration,
    /// On SIGTERM, how long live connections may go on.
    pub shutdown_grace: Duration,
    /// "auto" (io_uring, else poll), "io_uring" or "poll".
    pub io_driver: String,
    /// How io_uring runs completion work: "coop" (COOP_TASKRUN + TASKRUN_FLAG), "defer"
    /// (SINGLE_ISSUER + DEFER_TASKRUN) or "off" (the kernel's default).
    pub io_uring_taskrun: String,

    pub loom: LoomConfig,
    pub elasticsearch: ElasticConfig,
    /// TCP_SAVE_SYN on the listeners: SYN facts (and JA4T) on every record. Off saves a
    /// getsockopt per connection under extreme SYN rates.
    pub save_syn: bool,
    pub kafka: KafkaConfig,
    /// Write per-source scan summary records (they are kept and reset either way).
    pub scan_summaries: bool,
    /// Per-source scan summaries: one record per active source every interval.
    pub scan_summary_interval: Duration,
    /// Sources the summary table holds; beyond it the least recently seen are evicted.
    pub scan_summary_max_sources: usize,
    /// Distinct destination ports in one interval that tag a source `scanner`.
    pub scan_summary_scanner_ports: u32,
    /// NFLOG group of the firewall's SYN log (`redirect apply --syn-log`); None = off.
    pub syn_log_group: Option<u16>,
    /// UDP on every port via TPROXY (`udp = true`).
    pub udp: UdpConfig,
}

/// UDP capture and its datagram responders.
#[derive(Debug, Clone, PartialEq)]
pub struct UdpConfig {
    /// `udp`: transparent UDP sockets on the same `ip`/`port`.
    pub enabled: bool,
    /// `udp_flow_idle_seconds`: datagrams of one flow share an `event.id` while no gap
    /// between them is longer.
    pub flow_idle: Duration,
    /// `udp_reply_bytes_per_second`: the whole sensor's reply byte rate.
    pub reply_bytes_per_second: u32,
    /// `udp_source_reply_bytes_per_second`: one source's reply byte rate (burst: 8 s of it).
    pub source_reply_bytes_per_second: u32,
}

/// How traffic reaches the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Redirect,
    Tproxy,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Redirect => "redirect",
            Mode::Tproxy => "tproxy",
        }
    }
}

/// Default `io_uring_taskrun` (see the README's flood numbers for why).
pub const DEFAULT_TASKRUN: &str = "coop";

/// Default `log_max_bytes`: 100 MiB.
pub const DEFAULT_LOG_MAX_BYTES: u64 = 100 << 20;
/// Default `log_max_files`.
pub const DEFAULT_LOG_MAX_FILES: usize = 10;
/// Default `sink_queue_bytes`: 64 MiB.
pub const DEFAULT_SINK_QUEUE_BYTES: usize = 64 << 20;
/// Largest `shutdown_grace_seconds`: with the sinks' drain ([`SINK_DRAIN`]) the stop takes at
/// most 25 s, inside the packaged unit's `TimeoutStopSec=30s`.
pub const MAX_SHUTDOWN_GRACE_SECONDS: i64 = 20;
/// How long the sinks may drain after the connections ended.
pub const SINK_DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// Optional second (RSA) certificate and key, served to clients that offer no signature
    /// scheme the first certificate's key can sign with (`rsa_cert_path` / `rsa_key_path`).
    pub rsa: Option<(PathBuf, PathBuf)>,
}

/// The file as written: every key optional so that we, not serde, say what is missing.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: Option<String>,
    ip: Option<String>,
    port: Option<i64>,
    cert_path: Option<String>,
    key_path: Option<String>,
    rsa_cert_path: Option<String>,
    rsa_key_path: Option<String>,
    log_file: Option<String>,
    log_max_bytes: Option<i64>,
    log_max_files: Option<i64>,
    log_max_age: Option<String>,
    log_max_total_bytes: Option<i64>,
    log_rotate_interval: Option<String>,
    mode: Option<String>,
    read_timeout_seconds: Option<i64>,
    write_timeout_seconds: Option<i64>,
    rate_limit_per_second: Option<i64>,
    rate_limit_burst: Option<i64>,
    community_id_seed: Option<i64>,
    threads: Option<i64>,
    max_connections: Option<i64>,
    per_source_rate_per_second: Option<i64>,
    per_source_burst: Option<i64>,
    max_payload_bytes: Option<i64>,
    session_timeout_seconds: Option<i64>,
    handshake_timeout_seconds: Option<i64>,
    ssh_banner: Option<String>,
    banner_hostname: Option<String>,
    turn_pause_ms: Option<i64>,
    max_records_per_connection: Option<i64>,
    max_record_bytes_per_connection: Option<i64>,
    ports: Option<std::collections::BTreeMap<String, String>>,
    log_empty_connections: Option<bool>,
    /// Replaced by `sink_queue_bytes`; still accepted (and range-checked) so old files load.
    output_queue_records: Option<i64>,
    sink_queue_bytes: Option<i64>,
    metrics_listen: Option<String>,
    stats_interval_seconds: Option<i64>,
    shutdown_grace_seconds: Option<i64>,
    io_driver: Option<String>,
    io_uring_taskrun: Option<String>,
    loom: Option<RawLoom>,
    elasticsearch: Option<RawElastic>,
    save_syn: Option<bool>,
    kafka: Option<RawKafka>,
    scan_summaries: Option<bool>,
    scan_summary_interval_seconds: Option<i64>,
    scan_summary_max_sources: Option<i64>,
    scan_summary_scanner_ports: Option<i64>,
    syn_log_group: Option<i64>,
    udp: Option<bool>,
    udp_flow_idle_seconds: Option<i64>,
    udp_reply_bytes_per_second: Option<i64>,
    udp_source_reply_bytes_per_second: Option<i64>,
}

/// `[ports]`: keys are ports (1-65535), values responder names.
fn port_table(
    raw: std::collections::BTreeMap<String, String>,
) -> Result<Vec<(u16, String)>, ConfigError> {
    raw.into_iter()
        .map(|(port, name)| {
            let key = format!("ports.{port}");
            let p = port
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| err(&key, "the key must be a port number (1-65535)"))?;
            if !crate::protocols::NAMES.contains(&name.as_str()) {
                return Err(err(
                    &key,
                    format!(
                        "{name:?} is not a responder; one of: {}",
                        crate::protocols::NAMES.join(", ")
                    ),
                ));
            }
            Ok((p, name))
        })
        .collect()
}

/// A number in `lo..=hi`, where absent or 0 means `default`.
fn number(key: &str, v: Option<i64>, default: i64, lo: i64, hi: i64) -> Result<i64, ConfigError> {
    match v {
        None | Some(0) => Ok(default),
        Some(n) if n < lo || n > hi => Err(err(key, format!("{n} is out of range ({lo}..={hi})"))),
        Some(n) => Ok(n),
    }
}

fn seconds(key: &str, v: Option<i64>, default: u64, max: i64) -> Result<Duration, ConfigError> {
    number(key, v, default as i64, 1, max).map(|n| Duration::from_secs(n as u64))
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(
                "",
                format!("cannot read config file {}: {e}", path.display()),
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_toml_str(&text, base)
    }

    /// Parses and validates TOML text; relative paths resolve against `base_dir`.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(toml_error)?;
        Config::validate(raw, base_dir)
    }

    fn validate(raw: RawConfig, base_dir: &Path) -> Result<Config, ConfigError> {
        let name = match raw.name {
            Some(n) if !n.trim().is_empty() => n,
            Some(_) => return Err(err("name", "must not be empty")),
            None => return Err(err("name", "is required (it becomes observer.hostname)")),
        };
        let ip = match raw.ip.as_deref() {
            None | Some("") => IpAddr::from([0, 0, 0, 0]),
            Some(s) => s
                .parse()
                .map_err(|_| err("ip", format!("{s:?} is not an IP address")))?,
        };
        let port = match raw.port {
            None => return Err(err("port", "is required")),
            Some(p) if (1..=65535).contains(&p) => p as u16,
            Some(p) => return Err(err("port", format!("{p} is not a TCP port (1..=65535)"))),
        };
        let resolve = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base_dir.join(p)
            }
        };
        let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
        let rsa = match (nonempty(raw.rsa_cert_path), nonempty(raw.rsa_key_path)) {
            (Some(c), Some(k)) => Some((resolve(&c), resolve(&k))),
            (None, None) => None,
            (Some(_), None) => {
                return Err(err("rsa_key_path", "is required when rsa_cert_path is set"));
            }
            (None, Some(_)) => {
                return Err(err("rsa_cert_path", "is required when rsa_key_path is set"));
            }
        };
        let tls = match (nonempty(raw.cert_path), nonempty(raw.key_path)) {
            (Some(c), Some(k)) => Some(TlsFiles {
                cert_path: resolve(&c),
                key_path: resolve(&k),
                rsa,
            }),
            (None, None) if rsa.is_some() => {
                return Err(err("cert_path", "is required when rsa_cert_path is set"));
            }
            (None, None) => None,
            (Some(_), None) => return Err(err("key_path", "is required when cert_path is set")),
            (None, Some(_)) => return Err(err("cert_path", "is required when key_path is set")),
        };
        let log_file = nonempty(raw.log_file).map(|f| resolve(&f));
        let log_rotate_interval = match raw.log_rotate_interval.as_deref() {
            None | Some("") => None,
            Some(s) => Some(parse_duration(s).map_err(|p| err("log_rotate_interval", p))?),
        };
        if let Some(interval) = log_rotate_interval {
            let Some(pattern) = &log_file else {
                return Err(err(
                    "log_rotate_interval",
                    "needs log_file (a strftime-style pattern such as \"spip-%Y%m%d-%H.jsonl\")",
                ));
            };
            crate::sinks::file::check_pattern(&pattern.to_string_lossy())
                .map_err(|p| err("log_file", p))?;
            if interval < Duration::from_secs(1) {
                return Err(err("log_rotate_interval", "must be at least 1s"));
            }
        }
        number(
            "output_queue_records",
            raw.output_queue_records,
            65_536,
            16,
            16 << 20,
        )?;
        let day = 86_400;
        let cfg = Config {
            name,
            ip,
            port,
            tls,
            log_file,
            log_max_bytes: match raw.log_max_bytes {
                None => DEFAULT_LOG_MAX_BYTES,
                Some(0) => 0,
                Some(n) if (4096..=1 << 50).contains(&n) => n as u64,
                Some(n) => {
                    return Err(err(
                        "log_max_bytes",
                        format!("{n} is out of range (0 = never rotate by size, or 4096..=2^50)"),
                    ));
                }
            },
            log_max_files: number(
                "log_max_files",
                raw.log_max_files,
                DEFAULT_LOG_MAX_FILES as i64,
                1,
                1000,
            )? as usize,
            log_max_age: match raw.log_max_age.as_deref() {
                None | Some("") => None,
                Some(s) => Some(parse_duration(s).map_err(|p| err("log_max_age", p))?),
            },
            log_max_total_bytes: match raw.log_max_total_bytes {
                None | Some(0) => 0,
                Some(n) if (4096..=1 << 50).contains(&n) => n as u64,
                Some(n) => {
                    return Err(err(
                        "log_max_total_bytes",
                        format!("{n} is out of range (0 = no limit, or 4096..=2^50)"),
                    ));
                }
            },
            log_rotate_interval,
            mode: match raw.mode.as_deref() {
                None | Some("") | Some("redirect") => Mode::Redirect,
                Some("tproxy") => Mode::Tproxy,
                Some(m) => {
                    return Err(err(
                        "mode",
                        format!("{m:?} is not one of \"redirect\", \"tproxy\""),
                    ));
                }
            },
            read_timeout: seconds("read_timeout_seconds", raw.read_timeout_seconds, 30, day)?,
            write_timeout: seconds("write_timeout_seconds", raw.write_timeout_seconds, 10, day)?,
            rate_limit_per_second: number(
                "rate_limit_per_second",
                raw.rate_limit_per_second,
                20,
                1,
                u32::MAX as i64,
            )? as u32,
            rate_limit_burst: number(
                "rate_limit_burst",
                raw.rate_limit_burst,
                50_000,
                1,
                u32::MAX as i64,
            )? as u32,
            community_id_seed: number("community_id_seed", raw.community_id_seed, 0, 0, 65535)?
                as u16,
            threads: match number("threads", raw.threads, 0, 1, 256)? {
                0 => std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1),
                n => n as usize,
            },
            max_connections: number(
                "max_connections",
                raw.max_connections,
                20_000,
                1,
                10_000_000,
            )? as usize,
            per_source_rate_per_second: match raw.per_source_rate_per_second {
                Some(n) if n < 0 => {
                    return Err(err(
                        "per_source_rate_per_second",
                        "must be >= 0 (0 = unlimited)",
                    ));
                }
                Some(n) => u32::try_from(n)
                    .map_err(|_| err("per_source_rate_per_second", "is too large"))?,
                None => 100,
            },
            per_source_burst: number(
                "per_source_burst",
                raw.per_source_burst,
                1_000,
                1,
                u32::MAX as i64,
            )? as u32,
            max_payload_bytes: number(
                "max_payload_bytes",
                raw.max_payload_bytes,
                65_536,
                64,
                64 << 20,
            )? as usize,
            session_timeout: seconds(
                "session_timeout_seconds",
                raw.session_timeout_seconds,
                120,
                day,
            )?,
            handshake_timeout: seconds(
                "handshake_timeout_seconds",
                raw.handshake_timeout_seconds,
                10,
                3600,
            )?,
            ssh_banner: match raw.ssh_banner {
                None => DEFAULT_SSH_BANNER.to_string(),
                Some(b) if b.starts_with("SSH-") && b.len() <= 253 && !b.contains(['\r', '\n']) => {
                    b
                }
                Some(_) => {
                    return Err(err(
                        "ssh_banner",
                        "must start with \"SSH-\", be one line and at most 253 characters",
                    ));
                }
            },
            banner_hostname: match raw.banner_hostname {
                None => "ubuntu".to_string(),
                Some(h)
                    if !h.is_empty()
                        && h.len() <= 253
                        && h.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b)) =>
                {
                    h
                }
                Some(_) => {
                    return Err(err(
                        "banner_hostname",
                        "must be a host name: letters, digits, '-' and '.', at most 253",
                    ));
                }
            },
            turn_pause: Duration::from_millis(number(
                "turn_pause_ms",
                raw.turn_pause_ms,
                200,
                1,
                60_000,
            )? as u64),
            max_records_per_connection: number(
                "max_records_per_connection",
                raw.max_records_per_connection,
                100,
                2,
                1_000_000,
            )? as u32,
            max_record_bytes_per_connection: number(
                "max_record_bytes_per_connection",
                raw.max_record_bytes_per_connection,
                1 << 20,
                4096,
                1 << 30,
            )? as usize,
            ports: port_table(raw.ports.unwrap_or_default())?,
            log_empty_connections: raw.log_empty_connections.unwrap_or(true),
            sink_queue_bytes: number(
                "sink_queue_bytes",
                raw.sink_queue_bytes,
                DEFAULT_SINK_QUEUE_BYTES as i64,
                1 << 16,
                1 << 34,
            )? as usize,
            metrics_listen: match raw.metrics_listen.as_deref() {
                None | Some("") => None,
                Some(a) => Some(a.parse().map_err(|_| {
                    err(
                        "metrics_listen",
                        format!("{a:?} is not an address:port such as \"127.0.0.1:9464\""),
                    )
                })?),
            },
            stats_interval: seconds(
                "stats_interval_seconds",
                raw.stats_interval_seconds,
                60,
                day,
            )?,
            shutdown_grace: seconds(
                "shutdown_grace_seconds",
                raw.shutdown_grace_seconds,
                5,
                MAX_SHUTDOWN_GRACE_SECONDS,
            )?,
            io_driver: match raw.io_driver.as_deref() {
                None | Some("") | Some("auto") => "auto".to_string(),
                Some(d @ ("io_uring" | "poll")) => d.to_string(),
                Some(d) => {
                    return Err(err(
                        "io_driver",
                        format!("{d:?} is not one of \"auto\", \"io_uring\", \"poll\""),
                    ));
                }
            },
            io_uring_taskrun: match raw.io_uring_taskrun.as_deref() {
                None | Some("") => DEFAULT_TASKRUN.to_string(),
                Some(t @ ("coop" | "defer" | "off")) => t.to_string(),
                Some(t) => {
                    return Err(err(
                        "io_uring_taskrun",
                        format!("{t:?} is not one of \"coop\", \"defer\", \"off\""),
                    ));
                }
            },
            loom: validate_loom(raw.loom.unwrap_or_default())?,
            elasticsearch: validate_elastic(raw.elasticsearch.unwrap_or_default(), &resolve)?,
            save_syn: raw.save_syn.unwrap_or(true),
            kafka: validate_kafka(raw.kafka.unwrap_or_default(), &resolve)?,
            udp: UdpConfig {
                enabled: raw.udp.unwrap_or(false),
                flow_idle: seconds("udp_flow_idle_seconds", raw.udp_flow_idle_seconds, 30, 3600)?,
                reply_bytes_per_second: number(
                    "udp_reply_bytes_per_second",
                    raw.udp_reply_bytes_per_second,
                    65_536,
                    1,
                    u32::MAX as i64,
                )? as u32,
                source_reply_bytes_per_second: number(
                    "udp_source_reply_bytes_per_second",
                    raw.udp_source_reply_bytes_per_second,
                    512,
                    1,
                    u32::MAX as i64,
                )? as u32,
            },
            scan_summaries: raw.scan_summaries.unwrap_or(true),
            scan_summary_interval: seconds(
                "scan_summary_interval_seconds",
                raw.scan_summary_interval_seconds,
                60,
                day,
            )?,
            scan_summary_max_sources: number(
                "scan_summary_max_sources",
                raw.scan_summary_max_sources,
                16_384,
                8,
                1 << 24,
            )? as usize,
            scan_summary_scanner_ports: number(
                "scan_summary_scanner_ports",
                raw.scan_summary_scanner_ports,
                25,
                1,
                65_536,
            )? as u32,
            syn_log_group: match number("syn_log_group", raw.syn_log_group, 0, 1, 65_535)? {
                0 => None,
                g => Some(g as u16),
            },
        };
        if cfg.read_timeout > cfg.session_timeout {
            return Err(err(
                "read_timeout_seconds",
                "must not exceed session_timeout_seconds (the whole-connection deadline)",
            ));
        }
        Ok(cfg)
    }

    pub fn tls_mode(&self) -> bool {
        self.tls.is_some()
    }

    /// The effective settings, one `key = value` a line (for `--check`).
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let mut line = |k: &str, v: String| {
            s.push_str(k);
            s.push_str(" = ");
            s.push_str(&v);
            s.push('\n');
        };
        let q = |v: &str| format!("{v:?}");
        line("name", q(&self.name));
        line("ip", q(&self.ip.to_string()));
        line("port", self.port.to_string());
        match &self.tls {
            Some(t) => {
                line("cert_path", q(&t.cert_path.display().to_string()));
                line("key_path", q(&t.key_path.display().to_string()));
                if let Some((c, k)) = &t.rsa {
                    line("rsa_cert_path", q(&c.display().to_string()));
                    line("rsa_key_path", q(&k.display().to_string()));
                }
            }
            None => line("tls", q("off")),
        }
        let log = self.log_file.as_ref().map(|p| p.display().to_string());
        line("log_file", q(log.as_deref().unwrap_or("")));
        line("log_max_bytes", self.log_max_bytes.to_string());
        line("log_max_files", self.log_max_files.to_string());
        let age = self.log_max_age.map(|d| format!("{d:?}"));
        line("log_max_age", q(age.as_deref().unwrap_or("")));
        line("log_max_total_bytes", self.log_max_total_bytes.to_string());
        let every = self.log_rotate_interval.map(|d| format!("{d:?}"));
        line("log_rotate_interval", q(every.as_deref().unwrap_or("")));
        line("mode", q(self.mode.as_str()));
        line(
            "read_timeout_seconds",
            self.read_timeout.as_secs().to_string(),
        );
        line(
            "write_timeout_seconds",
            self.write_timeout.as_secs().to_string(),
        );
        line(
            "rate_limit_per_second",
            self.rate_limit_per_second.to_string(),
        );
        line("rate_limit_burst", self.rate_limit_burst.to_string());
        line("community_id_seed", self.community_id_seed.to_string());
        line("threads", self.threads.to_string());
        line("max_connections", self.max_connections.to_string());
        line(
            "per_source_rate_per_second",
            self.per_source_rate_per_second.to_string(),
        );
        line("per_source_burst", self.per_source_burst.to_string());
        line("max_payload_bytes", self.max_payload_bytes.to_string());
        line(
            "session_timeout_seconds",
            self.session_timeout.as_secs().to_string(),
        );
        line(
            "handshake_timeout_seconds",
            self.handshake_timeout.as_secs().to_string(),
        );
        line("ssh_banner", q(&self.ssh_banner));
        line("banner_hostname", q(&self.banner_hostname));
        line("turn_pause_ms", self.turn_pause.as_millis().to_string());
        line(
            "max_records_per_connection",
            self.max_records_per_connection.to_string(),
        );
        line(
            "max_record_bytes_per_connection",
            self.max_record_bytes_per_connection.to_string(),
        );
        for (port, name) in &self.ports {
            line(&format!("ports.{port}"), q(name));
        }
        line(
            "log_empty_connections",
            self.log_empty_connections.to_string(),
        );
        line("sink_queue_bytes", self.sink_queue_bytes.to_string());
        let metrics = self.metrics_listen.map(|a| a.to_string());
        line("metrics_listen", q(metrics.as_deref().unwrap_or("")));
        line(
            "stats_interval_seconds",
            self.stats_interval.as_secs().to_string(),
        );
        line(
            "shutdown_grace_seconds",
            self.shutdown_grace.as_secs().to_string(),
        );
        line("io_driver", q(&self.io_driver));
        line("io_uring_taskrun", q(&self.io_uring_taskrun));
        line("save_syn", self.save_syn.to_string());
        line("scan_summaries", self.scan_summaries.to_string());
        line(
            "scan_summary_interval_seconds",
            self.scan_summary_interval.as_secs().to_string(),
        );
        line(
            "scan_summary_max_sources",
            self.scan_summary_max_sources.to_string(),
        );
        line(
            "scan_summary_scanner_ports",
            self.scan_summary_scanner_ports.to_string(),
        );
        line("syn_log_group", self.syn_log_group.unwrap_or(0).to_string());
        line("udp", self.udp.enabled.to_string());
        line(
            "udp_flow_idle_seconds",
            self.udp.flow_idle.as_secs().to_string(),
        );
        line(
            "udp_reply_bytes_per_second",
            self.udp.reply_bytes_per_second.to_string(),
        );
        line(
            "udp_source_reply_bytes_per_second",
            self.udp.source_reply_bytes_per_second.to_string(),
        );
        line("loom.enabled", self.loom.enabled.to_string());
        if self.loom.enabled {
            line("loom.url", q(&self.loom.url));
            line("loom.sensor_id", q(&self.loom.sensor_id));
            line("loom.token", q("<set>"));
            line("loom.batch_size", self.loom.batch_size.to_string());
            line(
                "loom.flush_interval",
                q(&format!("{:?}", self.loom.flush_interval)),
            );
            line(
                "loom.insecure_skip_verify",
                self.loom.insecure_skip_verify.to_string(),
            );
            line(
                "loom.max_pending_bytes",
                self.loom.max_pending_bytes.to_string(),
            );
        }
        line(
            "elasticsearch.enabled",
            self.elasticsearch.enabled.to_string(),
        );
        let es = &self.elasticsearch;
        if es.enabled {
            line("elasticsearch.url", q(&es.url));
            line("elasticsearch.data_stream", q(&es.data_stream));
            match &es.auth {
                ElasticAuth::None => {}
                ElasticAuth::ApiKey(_) => line("elasticsearch.api_key", q("<set>")),
                ElasticAuth::Basic { username, .. } => {
                    line("elasticsearch.username", q(username));
                    line("elasticsearch.password", q("<set>"));
                }
            }
            line("elasticsearch.batch_size", es.batch_size.to_string());
            line(
                "elasticsearch.flush_interval",
                q(&format!("{:?}", es.flush_interval)),
            );
            line(
                "elasticsearch.max_batch_bytes",
                es.max_batch_bytes.to_string(),
            );
            line(
                "elasticsearch.insecure_skip_verify",
                es.insecure_skip_verify.to_string(),
            );
            let ca = es.ca_file.as_ref().map(|p| p.display().to_string());
            line("elasticsearch.ca_file", q(ca.as_deref().unwrap_or("")));
            line(
                "elasticsearch.max_pending_bytes",
                es.max_pending_bytes.to_string(),
            );
            let dlq = es
                .dead_letter_file
                .as_ref()
                .map(|p| p.display().to_string());
            line(
                "elasticsearch.dead_letter_file",
                q(dlq.as_deref().unwrap_or("")),
            );
            line(
                "elasticsearch.dead_letter_max_bytes",
                es.dead_letter_max_bytes.to_string(),
            );
        }
        self.kafka.describe(&mut line);
        s
    }
}

/// Parses "500ms", "10s", "1m", "2h", "7d" (also "1m30s"); the result must be positive.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (examples: \"500ms\", \"10s\", \"1m\")");
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(unit);
        rest = &rest[unit_len..];
    }
    if total.is_zero() {
        return Err(format!("{s:?} must be a positive duration"));
    }
    Ok(total)
}

/// Turns a toml/serde error into one that leads with the offending key.
fn toml_error(e: toml::de::Error) -> ConfigError {
    let msg = e.message().to_string();
    // serde reports unknown keys as "unknown field `x`, expected one of ...".
    let key = msg
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next())
        .map(str::to_string)
        .unwrap_or_default();
    let mut problem = msg.clone();
    if !key.is_empty() {
        problem = format!("unknown key ({msg})");
    }
    let located = match e.span() {
        Some(_) => format!("{problem}\n{e}"),
        None => problem,
    };
    ConfigError {
        key,
        problem: located.trim_end().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, Path::new("/etc/spip"))
    }

    #[test]
    fn minimal_config_gets_spip_defaults() {
        let c = parse("name = \"s1\"\nport = 8080\n").unwrap();
        assert_eq!(c.ip, IpAddr::from([0, 0, 0, 0]));
        assert_eq!(c.read_timeout, Duration::from_secs(30));
        assert_eq!(c.write_timeout, Duration::from_secs(10));
        assert_eq!(c.rate_limit_per_second, 20);
        assert_eq!(c.rate_limit_burst, 50_000);
        assert_eq!(c.community_id_seed, 0);
        assert!(c.log_file.is_none() && c.tls.is_none() && !c.loom.enabled);
        assert_eq!(c.loom.batch_size, 50);
        assert_eq!(c.loom.flush_interval, Duration::from_secs(10));
        assert_eq!(c.ssh_banner, DEFAULT_SSH_BANNER);
    }

    #[test]
    fn save_syn_defaults_on_and_can_be_turned_off() {
        assert!(parse("name = \"s1\"\nport = 8080\n").unwrap().save_syn);
        let c = parse("name = \"s1\"\nport = 8080\nsave_syn = false\n").unwrap();
        assert!(!c.save_syn);
        assert!(c.describe().contains("save_syn = false\n"));
        assert!(parse("name = \"s1\"\nport = 8080\nsave_syn = 1\n").is_err());
    }

    #[test]
    fn zero_means_default_like_spip() {
        let c = parse("name=\"a\"\nport=1\nread_timeout_seconds=0\nrate_limit_burst=0").unwrap();
        assert_eq!(c.read_timeout, Duration::from_secs(30));
        assert_eq!(c.rate_limit_burst, 50_000);
    }

    #[test]
    fn relative_paths_resolve_against_config_folder() {
        let c = parse(
            "name=\"a\"\nport=443\ncert_path=\"c.pem\"\nkey_path=\"/k.pem\"\nlog_file=\"x.jsonl\"",
        )
        .unwrap();
        let t = c.tls.unwrap();
        assert_eq!(t.cert_path, Path::new("/etc/spip/c.pem"));
        assert_eq!(t.key_path, Path::new("/k.pem"));
        assert_eq!(c.log_file.unwrap(), Path::new("/etc/spip/x.jsonl"));
    }

    #[test]
    fn errors_name_the_key() {
        let cases: &[(&str, &str)] = &[
            ("port = 1", "name"),
            ("name = \"\"\nport=1", "name"),
            ("name = \"a\"", "port"),
            ("name = \"a\"\nport = 70000", "port"),
            ("name = \"a\"\nport = 1\nip = \"1.2.3\"", "ip"),
            ("name = \"a\"\nport = 1\ncert_path = \"c\"", "key_path"),
            ("name = \"a\"\nport = 1\nkey_path = \"k\"", "cert_path"),
            (
                "name = \"a\"\nport = 1\nrsa_cert_path = \"c\"",
                "rsa_key_path",
            ),
            (
                "name = \"a\"\nport = 1\nrsa_cert_path = \"c\"\nrsa_key_path = \"k\"",
                "cert_path",
            ),
            ("name = \"a\"\nport = 1\nprot = 2", "prot"),
            (
                "name = \"a\"\nport = 1\nread_timeout_seconds = -5",
                "read_timeout_seconds",
            ),
            (
                "name = \"a\"\nport = 1\ncommunity_id_seed = 70000",
                "community_id_seed",
            ),
            (
                "name = \"a\"\nport = 1\nssh_banner = \"hello\"",
                "ssh_banner",
            ),
            ("name = \"a\"\nport = 1\n[loom]\nenabled = true", "loom.url"),
            (
                "name = \"a\"\nport = 1\n[loom]\nenabled = true\nurl = \"ftp://x/y\"",
                "loom.url",
            ),
            (
                "name = \"a\"\nport = 1\n[loom]\nenabled = true\nurl = \"https://loom/x\"\ntoken = \"t\"",
                "loom.sensor_id",
            ),
            (
                "name = \"a\"\nport = 1\n[loom]\nenabled = true\nurl = \"https://loom/x\"\nsensor_id = \"s\"",
                "loom.token",
            ),
            (
                "name = \"a\"\nport = 1\n[loom]\nbatch_size = 20000",
                "loom.batch_size",
            ),
            (
                "name = \"a\"\nport = 1\n[loom]\nflush_interval = \"soon\"",
                "loom.flush_interval",
            ),
            (
                "name = \"a\"\nport = 1\n[loom]\nflush_interval = \"0s\"",
                "loom.flush_interval",
            ),
            ("name = \"a\"\nport = 1\n[loom]\nbatchsize = 2", "batchsize"),
            ("name = \"a\"\nport = 1\nio_driver = \"epoll\"", "io_driver"),
            (
                "name = \"a\"\nport = 1\nlog_max_bytes = 100",
                "log_max_bytes",
            ),
            (
                "name = \"a\"\nport = 1\nlog_max_bytes = -1",
                "log_max_bytes",
            ),
            (
                "name = \"a\"\nport = 1\nlog_max_files = 5000",
                "log_max_files",
            ),
            (
                "name = \"a\"\nport = 1\nlog_max_files = -2",
                "log_max_files",
            ),
            ("name = \"a\"\nport = 1\nmode = \"nat\"", "mode"),
            (
                "name = \"a\"\nport = 1\n[elasticsearch]\nenabled = true",
                "elasticsearch.url",
            ),
            (
                "name = \"a\"\nport = 1\n[elasticsearch]\nenabled = true\nurl = \"es:9200\"",
                "elasticsearch.url",
            ),
            (
                "name = \"a\"\nport = 1\n[elasticsearch]\napi_key = \"k\"\nusername = \"u\"",
                "elasticsearch.api_key",
            ),
            (
                "name = \"a\"\nport = 1\n[elasticsearch]\nusername = \"u\"",
                "elasticsearch.password",
            ),
            (
                "name = \"a\"\nport = 1\n[elasticsearch]\ndata_stream = \"Logs-X\"",
                "elasticsearch.data_stream",
            ),
            (
                "name = \"a\"\nport = 1\n[elasticsearch]\nmax_batch_bytes = 10",
                "elasticsearch.max_batch_bytes",
            ),
            (
                "name = \"a\"\nport = 1\n[elasticsearch]\nflush_interval = \"x\"",
                "elasticsearch.flush_interval",
            ),
            (
                "name = \"a\"\nport = 1\n[elasticsearch]\nindex = \"x\"",
                "index",
            ),
        ];
        for (text, key) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!(&e.key, key, "{text}: {e}");
        }
    }

    #[test]
    fn type_errors_show_the_line() {
        let e = parse("name = \"a\"\nport = \"eighty\"").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("port"), "{s}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("0ms").is_err());
    }

    #[test]
    fn loom_enabled_config() {
        let c = parse(
            "name=\"a\"\nport=1\n[loom]\nenabled=true\nurl=\"https://loom.example/ingest\"\n\
             sensor_id=\"s\"\ntoken=\"t\"\nbatch_size=100\nflush_interval=\"500ms\"",
        )
        .unwrap();
        assert!(c.loom.enabled);
        assert_eq!(c.loom.batch_size, 100);
        assert_eq!(c.loom.flush_interval, Duration::from_millis(500));
        assert!(c.describe().contains("loom.token = \"<set>\""));
    }

    #[test]
    fn elasticsearch_config() {
        let c = parse("name=\"a\"\nport=1").unwrap();
        let es = &c.elasticsearch;
        assert!(!es.enabled);
        assert_eq!(es.data_stream, "logs-spip-default");
        assert_eq!(es.batch_size, 500);
        assert_eq!(es.flush_interval, Duration::from_secs(5));
        assert_eq!(es.auth, ElasticAuth::None);
        assert!(!es.insecure_skip_verify && es.dead_letter_file.is_none() && es.ca_file.is_none());
        let c = parse(
            "name=\"a\"\nport=1\n[elasticsearch]\nenabled=true\nurl=\"https://es.example:9200/\"\n\
             username=\"spip\"\npassword=\"secret\"\nbatch_size=50\nflush_interval=\"1s\"\n\
             data_stream=\"logs-spip-dmz\"\ndead_letter_file=\"dlq.jsonl\"\nca_file=\"/etc/ca.pem\"",
        )
        .unwrap();
        let es = &c.elasticsearch;
        assert_eq!(es.url, "https://es.example:9200");
        assert_eq!(es.data_stream, "logs-spip-dmz");
        assert_eq!(es.batch_size, 50);
        assert_eq!(
            es.dead_letter_file.as_deref(),
            Some(Path::new("/etc/spip/dlq.jsonl"))
        );
        assert_eq!(es.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
        let d = c.describe();
        assert!(d.contains("elasticsearch.password = \"<set>\""), "{d}");
        assert!(!d.contains("secret"), "{d}");
        assert!(!format!("{es:?}").contains("secret"));
        let c = parse("name=\"a\"\nport=1\n[elasticsearch]\napi_key=\"Zm9vOmJhcg==\"").unwrap();
        assert_eq!(
            c.elasticsearch.auth,
            ElasticAuth::ApiKey("Zm9vOmJhcg==".into())
        );
    }

    #[test]
    fn udp_keys() {
        let c = parse("name=\"a\"\nport=1").unwrap();
        assert!(!c.udp.enabled);
        assert_eq!(c.udp.flow_idle, Duration::from_secs(30));
        assert_eq!(c.udp.reply_bytes_per_second, 65_536);
        assert_eq!(c.udp.source_reply_bytes_per_second, 512);
        let c = parse("name=\"a\"\nport=1\nudp=true\nudp_flow_idle_seconds=5\nudp_reply_bytes_per_second=1000\nudp_source_reply_bytes_per_second=100").unwrap();
        assert!(c.udp.enabled);
        assert_eq!(c.udp.flow_idle, Duration::from_secs(5));
        assert_eq!(c.udp.reply_bytes_per_second, 1000);
        assert_eq!(c.udp.source_reply_bytes_per_second, 100);
        assert!(c.describe().contains("udp = true\n"));
        let e = parse("name=\"a\"\nport=1\nudp_flow_idle_seconds=-1").unwrap_err();
        assert_eq!(e.key, "udp_flow_idle_seconds");
    }

    #[test]
    fn kafka_defaults_and_keys() {
        let c = parse("name=\"a\"\nport=1").unwrap();
        assert_eq!(c.kafka, KafkaConfig::default());
        assert!(!c.describe().contains("kafka.topic"));
        let c = parse(
            "name=\"a\"\nport=1\n[kafka]\nenabled=true\nbrokers=[\"k1:9092\",\"[::1]:9093\"]\n\
             topic=\"honey.pot\"\nbatch_size=10\nbatch_bytes=65536\nflush_interval=\"200ms\"\n\
             linger=\"1ms\"\ncompression=\"gzip\"\nmessage_timeout=\"30s\"\ntls=true\n\
             ca_file=\"ca.pem\"\ncert_file=\"c.pem\"\nkey_file=\"/k.pem\"\n\
             sasl_mechanism=\"scram-sha-512\"\nusername=\"u\"\npassword=\"p\"",
        );
        let k = match c {
            Ok(c) if cfg!(feature = "kafka") => c.kafka,
            Err(e) if !cfg!(feature = "kafka") => return assert_eq!(e.key, "kafka.enabled"),
            other => panic!("{other:?}"),
        };
        assert!(k.enabled);
        assert_eq!(k.brokers, ["k1:9092", "[::1]:9093"]);
        assert_eq!(k.topic, "honey.pot");
        assert_eq!((k.batch_size, k.batch_bytes), (10, 65536));
        assert_eq!(k.flush_interval, Duration::from_millis(200));
        assert_eq!(k.linger, Duration::from_millis(1));
        assert_eq!(k.compression, KafkaCompression::Gzip);
        assert_eq!(k.message_timeout, Duration::from_secs(30));
        assert!(k.tls && !k.insecure_skip_verify);
        assert_eq!(k.ca_file.as_deref(), Some(Path::new("/etc/spip/ca.pem")));
        assert_eq!(
            k.client_cert,
            Some((PathBuf::from("/etc/spip/c.pem"), PathBuf::from("/k.pem")))
        );
        let sasl = k.sasl.as_ref().unwrap();
        assert_eq!(
            (sasl.mechanism, sasl.username.as_str()),
            ("SCRAM-SHA-512", "u")
        );
    }

    #[test]
    fn kafka_errors_name_the_key() {
        let on = "name = \"a\"\nport = 1\n[kafka]\nenabled = true\nbrokers = [\"k:9092\"]\n";
        let off = "name = \"a\"\nport = 1\n[kafka]\n";
        let cases: &[(&str, &str, &str)] = &[
            (off, "brokers = [\"k\"]", "kafka.brokers"),
            (off, "brokers = [\"k:0\"]", "kafka.brokers"),
            (off, "brokers = [\"a:1,b:2\"]", "kafka.brokers"),
            (off, "brokers = [\":9092\"]", "kafka.brokers"),
            (off, "topic = \"a b\"", "kafka.topic"),
            (off, "topic = \"..\"", "kafka.topic"),
            (off, "compression = \"zstd\"", "kafka.compression"),
            (off, "batch_size = 0x7fffffff", "kafka.batch_size"),
            (off, "batch_bytes = 10", "kafka.batch_bytes"),
            (off, "flush_interval = \"0s\"", "kafka.flush_interval"),
            (off, "linger = \"1m\"", "kafka.linger"),
            (off, "message_timeout = \"soon\"", "kafka.message_timeout"),
            (off, "cert_file = \"c.pem\"", "kafka.key_file"),
            (off, "key_file = \"k.pem\"", "kafka.cert_file"),
            (off, "ca_file = \"ca.pem\"", "kafka.tls"),
            (
                off,
                "username = \"u\"\npassword = \"p\"",
                "kafka.sasl_mechanism",
            ),
            (
                off,
                "sasl_mechanism = \"PLAIN\"\npassword = \"p\"",
                "kafka.username",
            ),
            (
                off,
                "sasl_mechanism = \"PLAIN\"\nusername = \"u\"",
                "kafka.password",
            ),
            (
                off,
                "sasl_mechanism = \"GSSAPI\"\nusername = \"u\"\npassword = \"p\"",
                "kafka.sasl_mechanism",
            ),
            (off, "broker = [\"k:1\"]", "broker"),
            (off, "max_pending_bytes = 5", "kafka.max_pending_bytes"),
        ];
        for (head, tail, key) in cases {
            let text = format!("{head}{tail}");
            let e = parse(&text).expect_err(&text);
            assert_eq!(&e.key, key, "{text}: {e}");
        }
        let no_brokers = parse(&format!("{off}enabled = true")).unwrap_err();
        if cfg!(feature = "kafka") {
            assert_eq!(no_brokers.key, "kafka.brokers");
            let c = parse(on).unwrap();
            let d = c.describe();
            assert!(d.contains("kafka.brokers = [\"k:9092\"]\n"), "{d}");
            assert!(d.contains("kafka.compression = \"lz4\"\n"), "{d}");
        } else {
            assert_eq!(no_brokers.key, "kafka.enabled");
            assert_eq!(parse(on).unwrap_err().key, "kafka.enabled");
        }
    }

    #[test]
    fn rotation_and_mode_keys() {
        let c = parse("name=\"a\"\nport=1").unwrap();
        assert_eq!(c.log_max_bytes, 100 << 20);
        assert_eq!(c.log_max_files, 10);
        assert_eq!(c.mode, Mode::Redirect);
        let c =
            parse("name=\"a\"\nport=1\nlog_max_bytes=0\nlog_max_files=3\nmode=\"tproxy\"").unwrap();
        assert_eq!(c.log_max_bytes, 0);
        assert_eq!(c.log_max_files, 3);
        assert_eq!(c.mode, Mode::Tproxy);
        let d = c.describe();
        assert!(d.contains("log_max_bytes = 0\n"), "{d}");
        assert!(d.contains("log_max_files = 3\n"), "{d}");
        assert!(d.contains("mode = \"tproxy\"\n"), "{d}");
        let c = parse("name=\"a\"\nport=1\nlog_max_bytes=65536\nlog_max_files=0").unwrap();
        assert_eq!(c.log_max_bytes, 65536);
        assert_eq!(c.log_max_files, 10);
    }

    #[test]
    fn sink_layer_keys() {
        let c = parse("name=\"a\"\nport=1").unwrap();
        assert_eq!(c.sink_queue_bytes, DEFAULT_SINK_QUEUE_BYTES);
        assert!(c.metrics_listen.is_none() && c.log_rotate_interval.is_none());
        assert!(c.log_max_age.is_none() && c.log_max_total_bytes == 0);
        let c = parse(
            "name=\"a\"\nport=1\nlog_file=\"/l/s-%Y%m%d-%H.jsonl\"\nlog_rotate_interval=\"1h\"\n\
             log_max_age=\"30d\"\nlog_max_total_bytes=1000000\nsink_queue_bytes=1048576\n\
             metrics_listen=\"127.0.0.1:9464\"\noutput_queue_records=100",
        )
        .unwrap();
        assert_eq!(c.log_rotate_interval, Some(Duration::from_secs(3600)));
        assert_eq!(c.log_max_age, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(c.log_max_total_bytes, 1_000_000);
        assert_eq!(c.sink_queue_bytes, 1 << 20);
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        for (text, key) in [
            ("log_rotate_interval=\"1h\"", "log_rotate_interval"),
            (
                "log_file=\"/l/plain.jsonl\"\nlog_rotate_interval=\"1h\"",
                "log_file",
            ),
            ("log_max_age=\"soon\"", "log_max_age"),
            ("log_max_total_bytes=10", "log_max_total_bytes"),
            ("sink_queue_bytes=10", "sink_queue_bytes"),
            ("metrics_listen=\"localhost\"", "metrics_listen"),
            ("shutdown_grace_seconds=21", "shutdown_grace_seconds"),
        ] {
            let e = parse(&format!("name=\"a\"\nport=1\n{text}")).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
        }
    }
}
