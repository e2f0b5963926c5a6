//! Configuration: the Go agent's TOML keys plus spip's own, validated up front.
//!
//! Every error names the key and says what is wrong; unknown keys are errors so a typo never
//! passes silently. Numeric Spip keys treat 0 (or absence) as "use the default", as Spip does.

use serde::Deserialize;
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

/// `[loom]`: validated only when enabled.
#[derive(Debug, Clone)]
pub struct LoomConfig {
    pub enabled: bool,
    pub url: String,
    pub sensor_id: String,
    pub token: String,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub insecure_skip_verify: bool,
    /// Memory budget for queued and retrying batches.
    pub max_pending_bytes: usize,
}

impl Default for LoomConfig {
    fn default() -> Self {
        LoomConfig {
            enabled: false,
            url: String::new(),
            sensor_id: String::new(),
            token: String::new(),
            batch_size: 50,
            flush_interval: Duration::from_secs(10),
            insecure_skip_verify: false,
            max_pending_bytes: 64 << 20,
        }
    }
}

/// `[elasticsearch]`: validated only when enabled.
#[derive(Debug, Clone)]
pub struct ElasticConfig {
    pub enabled: bool,
    /// Base URL of the cluster (`https://host:9200`, maybe with a path prefix).
    pub url: String,
    /// Data stream written with `create` actions.
    pub data_stream: String,
    pub auth: ElasticAuth,
    /// Records per `_bulk` request.
    pub batch_size: usize,
    pub flush_interval: Duration,
    /// Upper bound on one `_bulk` body (proxies in front of a cluster often cap bodies).
    pub max_batch_bytes: usize,
    pub insecure_skip_verify: bool,
    /// PEM CA certificates trusted instead of the built-in roots (a cluster's own CA).
    pub ca_file: Option<PathBuf>,
    /// Memory budget for queued and retrying records.
    pub max_pending_bytes: usize,
    /// NDJSON file for records the cluster refused for good (None = count them only).
    pub dead_letter_file: Option<PathBuf>,
    /// The dead-letter file stops growing at this size (further rejects are only counted).
    pub dead_letter_max_bytes: u64,
}

/// How the Elasticsearch sink authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum ElasticAuth {
    None,
    /// `Authorization: ApiKey <encoded>` (the `encoded` value Elasticsearch returns).
    ApiKey(String),
    /// HTTP Basic.
    Basic {
        username: String,
        password: String,
    },
}

impl fmt::Debug for ElasticAuth {
    // Secrets stay out of logs and panics.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElasticAuth::None => f.write_str("None"),
            ElasticAuth::ApiKey(_) => f.write_str("ApiKey(<set>)"),
            ElasticAuth::Basic { username, .. } => write!(f, "Basic({username:?}, <set>)"),
        }
    }
}

impl Default for ElasticConfig {
    fn default() -> Self {
        ElasticConfig {
            enabled: false,
            url: String::new(),
            data_stream: "logs-spip-default".to_string(),
            auth: ElasticAuth::None,
            batch_size: 500,
            flush_interval: Duration::from_secs(5),
            max_batch_bytes: 5 << 20,
            insecure_skip_verify: false,
            ca_file: None,
            max_pending_bytes: 64 << 20,
            dead_letter_file: None,
            dead_letter_max_bytes: 100 << 20,
        }
    }
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
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLoom {
    enabled: Option<bool>,
    url: Option<String>,
    sensor_id: Option<String>,
    token: Option<String>,
    batch_size: Option<i64>,
    flush_interval: Option<String>,
    insecure_skip_verify: Option<bool>,
    max_pending_bytes: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawElastic {
    enabled: Option<bool>,
    url: Option<String>,
    data_stream: Option<String>,
    api_key: Option<String>,
    username: Option<String>,
    password: Option<String>,
    batch_size: Option<i64>,
    flush_interval: Option<String>,
    max_batch_bytes: Option<i64>,
    insecure_skip_verify: Option<bool>,
    ca_file: Option<String>,
    max_pending_bytes: Option<i64>,
    dead_letter_file: Option<String>,
    dead_letter_max_bytes: Option<i64>,
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

fn validate_elastic(
    raw: RawElastic,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<ElasticConfig, ConfigError> {
    let d = ElasticConfig::default();
    let enabled = raw.enabled.unwrap_or(false);
    let batch_size = number(
        "elasticsearch.batch_size",
        raw.batch_size,
        d.batch_size as i64,
        1,
        10_000,
    )? as usize;
    let flush_interval = match raw.flush_interval.as_deref() {
        None | Some("") => d.flush_interval,
        Some(s) => parse_duration(s).map_err(|p| err("elasticsearch.flush_interval", p))?,
    };
    let max_batch_bytes = number(
        "elasticsearch.max_batch_bytes",
        raw.max_batch_bytes,
        d.max_batch_bytes as i64,
        64 << 10,
        100 << 20,
    )? as usize;
    let max_pending_bytes = number(
        "elasticsearch.max_pending_bytes",
        raw.max_pending_bytes,
        d.max_pending_bytes as i64,
        1 << 16,
        1 << 34,
    )? as usize;
    let dead_letter_max_bytes = number(
        "elasticsearch.dead_letter_max_bytes",
        raw.dead_letter_max_bytes,
        d.dead_letter_max_bytes as i64,
        4096,
        1 << 50,
    )? as u64;
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let auth = match (
        nonempty(raw.api_key),
        nonempty(raw.username),
        nonempty(raw.password),
    ) {
        (None, None, None) => ElasticAuth::None,
        (Some(k), None, None) => ElasticAuth::ApiKey(k),
        (Some(_), _, _) => {
            return Err(err(
                "elasticsearch.api_key",
                "set either api_key or username/password, not both",
            ));
        }
        (None, Some(username), Some(password)) => ElasticAuth::Basic { username, password },
        (None, Some(_), None) => {
            return Err(err(
                "elasticsearch.password",
                "is required when username is set",
            ));
        }
        (None, None, Some(_)) => {
            return Err(err(
                "elasticsearch.username",
                "is required when password is set",
            ));
        }
    };
    let data_stream = match nonempty(raw.data_stream) {
        None => d.data_stream,
        Some(name) => {
            data_stream_problem(&name)
                .map_or(Ok(()), |p| Err(err("elasticsearch.data_stream", p)))?;
            name
        }
    };
    let cfg = ElasticConfig {
        enabled,
        url: raw
            .url
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string(),
        data_stream,
        auth,
        batch_size,
        flush_interval,
        max_batch_bytes,
        insecure_skip_verify: raw.insecure_skip_verify.unwrap_or(false),
        ca_file: nonempty(raw.ca_file).map(|f| resolve(&f)),
        max_pending_bytes,
        dead_letter_file: nonempty(raw.dead_letter_file).map(|f| resolve(&f)),
        dead_letter_max_bytes,
    };
    if enabled {
        let lower = cfg.url.to_ascii_lowercase();
        if cfg.url.is_empty() {
            return Err(err(
                "elasticsearch.url",
                "is required when elasticsearch is enabled",
            ));
        }
        if !(lower.starts_with("http://") || lower.starts_with("https://"))
            || cfg.url.len() < 10
            || cfg.url.contains(['?', '#'])
        {
            return Err(err(
                "elasticsearch.url",
                format!(
                    "{:?} is not an http(s) base URL (like \"https://es.example:9200\")",
                    cfg.url
                ),
            ));
        }
    }
    Ok(cfg)
}

/// Why `name` cannot be a data stream (Elasticsearch's index name rules), if it cannot.
fn data_stream_problem(name: &str) -> Option<String> {
    if name.len() > 255 {
        return Some("is longer than 255 bytes".into());
    }
    if name.starts_with(['-', '_', '+', '.']) {
        return Some(format!("{name:?} must not start with '-', '_', '+' or '.'"));
    }
    if name.bytes().any(|b| {
        b.is_ascii_uppercase()
            || b.is_ascii_whitespace()
            || b.is_ascii_control()
            || br#"\/*?"<>|,#:"#.contains(&b)
    }) {
        return Some(format!(
            "{name:?} must be lowercase, without spaces or any of \\ / * ? \" < > | , # :"
        ));
    }
    None
}

fn validate_loom(raw: RawLoom) -> Result<LoomConfig, ConfigError> {
    let d = LoomConfig::default();
    let enabled = raw.enabled.unwrap_or(false);
    let batch_size = number(
        "loom.batch_size",
        raw.batch_size,
        d.batch_size as i64,
        1,
        10_000,
    )? as usize;
    let flush_interval = match raw.flush_interval.as_deref() {
        None | Some("") => d.flush_interval,
        Some(s) => parse_duration(s).map_err(|p| err("loom.flush_interval", p))?,
    };
    let max_pending_bytes = number(
        "loom.max_pending_bytes",
        raw.max_pending_bytes,
        d.max_pending_bytes as i64,
        1 << 16,
        1 << 34,
    )? as usize;
    let cfg = LoomConfig {
        enabled,
        url: raw.url.unwrap_or_default(),
        sensor_id: raw.sensor_id.unwrap_or_default(),
        token: raw.token.unwrap_or_default(),
        batch_size,
        flush_interval,
        insecure_skip_verify: raw.insecure_skip_verify.unwrap_or(false),
        max_pending_bytes,
    };
    if enabled {
        let lower = cfg.url.to_ascii_lowercase();
        if cfg.url.is_empty() {
            return Err(err("loom.url", "is required when loom is enabled"));
        }
        if !(lower.starts_with("http://") || lower.starts_with("https://")) || cfg.url.len() < 10 {
            return Err(err(
                "loom.url",
                format!("{:?} is not an http(s) URL", cfg.url),
            ));
        }
        if cfg.sensor_id.trim().is_empty() {
            return Err(err("loom.sensor_id", "is required when loom is enabled"));
        }
        if cfg.token.trim().is_empty() {
            return Err(err("loom.token", "is required when loom is enabled"));
        }
    }
    Ok(cfg)
}

/// `[kafka]`: validated only when enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    pub enabled: bool,
    /// Bootstrap brokers, each "host:port".
    pub brokers: Vec<String>,
    pub topic: String,
    /// Records per delivery (one produce-and-wait round).
    pub batch_size: usize,
    /// Record bytes per delivery.
    pub batch_bytes: usize,
    /// A partial batch is delivered after this long.
    pub flush_interval: Duration,
    /// librdkafka's `linger.ms`: how long it gathers a delivery's records into one request.
    pub linger: Duration,
    pub compression: KafkaCompression,
    /// How long librdkafka keeps retrying one record before it is offered again by the runner.
    pub message_timeout: Duration,
    /// TLS to the brokers (`security.protocol` ssl / sasl_ssl).
    pub tls: bool,
    /// CA bundle for the brokers' certificates (None = the system's).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (both or neither) for brokers that require mTLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub insecure_skip_verify: bool,
    pub sasl: Option<KafkaSasl>,
    /// The runner's memory budget for records queued or waiting for a retry.
    pub max_pending_bytes: usize,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            enabled: false,
            brokers: Vec::new(),
            topic: "spip".to_string(),
            batch_size: 1000,
            batch_bytes: 4 << 20,
            flush_interval: Duration::from_secs(1),
            linger: Duration::from_millis(5),
            compression: KafkaCompression::Lz4,
            message_timeout: Duration::from_secs(15),
            tls: false,
            ca_file: None,
            client_cert: None,
            insecure_skip_verify: false,
            sasl: None,
            max_pending_bytes: 64 << 20,
        }
    }
}

/// `kafka.compression`: the codecs librdkafka has without extra C libraries (zstd would need one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaCompression {
    None,
    Gzip,
    Snappy,
    Lz4,
}

impl KafkaCompression {
    /// librdkafka's `compression.type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            KafkaCompression::None => "none",
            KafkaCompression::Gzip => "gzip",
            KafkaCompression::Snappy => "snappy",
            KafkaCompression::Lz4 => "lz4",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSasl {
    /// librdkafka's `sasl.mechanism`: "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512".
    pub mechanism: &'static str,
    pub username: String,
    pub password: String,
}

impl KafkaConfig {
    fn describe(&self, line: &mut impl FnMut(&str, String)) {
        let q = |v: &str| format!("{v:?}");
        line("kafka.enabled", self.enabled.to_string());
        if !self.enabled {
            return;
        }
        line("kafka.brokers", format!("{:?}", self.brokers));
        line("kafka.topic", q(&self.topic));
        line("kafka.batch_size", self.batch_size.to_string());
        line("kafka.batch_bytes", self.batch_bytes.to_string());
        line(
            "kafka.flush_interval",
            q(&format!("{:?}", self.flush_interval)),
        );
        line("kafka.linger", q(&format!("{:?}", self.linger)));
        line("kafka.compression", q(self.compression.as_str()));
        line(
            "kafka.message_timeout",
            q(&format!("{:?}", self.message_timeout)),
        );
        line("kafka.tls", self.tls.to_string());
        if let Some(ca) = &self.ca_file {
            line("kafka.ca_file", q(&ca.display().to_string()));
        }
        if let Some((cert, key)) = &self.client_cert {
            line("kafka.cert_file", q(&cert.display().to_string()));
            line("kafka.key_file", q(&key.display().to_string()));
        }
        line(
            "kafka.insecure_skip_verify",
            self.insecure_skip_verify.to_string(),
        );
        if let Some(sasl) = &self.sasl {
            line("kafka.sasl_mechanism", q(sasl.mechanism));
            line("kafka.username", q(&sasl.username));
            line("kafka.password", q("<set>"));
        }
        line(
            "kafka.max_pending_bytes",
            self.max_pending_bytes.to_string(),
        );
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawKafka {
    enabled: Option<bool>,
    brokers: Option<Vec<String>>,
    topic: Option<String>,
    batch_size: Option<i64>,
    batch_bytes: Option<i64>,
    flush_interval: Option<String>,
    linger: Option<String>,
    compression: Option<String>,
    message_timeout: Option<String>,
    tls: Option<bool>,
    ca_file: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    insecure_skip_verify: Option<bool>,
    sasl_mechanism: Option<String>,
    username: Option<String>,
    password: Option<String>,
    max_pending_bytes: Option<i64>,
}

/// A duration key: absent or empty = `default`, else positive and at most `max`.
fn duration_key(
    key: &str,
    v: Option<&str>,
    default: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let d = match v {
        None | Some("") => return Ok(default),
        Some(s) => parse_duration(s).map_err(|p| err(key, p))?,
    };
    if d > max {
        return Err(err(key, format!("{d:?} is longer than {max:?}")));
    }
    Ok(d)
}

/// "host:port" with a non-empty host and a port in 1..=65535 (IPv6 hosts in brackets).
fn valid_broker(b: &str) -> bool {
    let Some((host, port)) = b.rsplit_once(':') else {
        return false;
    };
    let host_ok = !host.is_empty()
        && !host.contains([',', ' ', '\t', '/'])
        && (host.starts_with('[') == host.ends_with(']'));
    host_ok && port.parse::<u16>().is_ok_and(|p| p != 0)
}

/// Kafka's topic name rule: 1..=249 of `[a-zA-Z0-9._-]`, not "." or "..".
fn valid_topic(t: &str) -> bool {
    (1..=249).contains(&t.len())
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn validate_kafka(
    raw: RawKafka,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<KafkaConfig, ConfigError> {
    let d = KafkaConfig::default();
    let enabled = raw.enabled.unwrap_or(false);
    if enabled && !cfg!(feature = "kafka") {
        return Err(err(
            "kafka.enabled",
            "this spip-agent was built without Kafka support (cargo feature `kafka`)",
        ));
    }
    let brokers = raw.brokers.unwrap_or_default();
    if let Some(b) = brokers.iter().find(|b| !valid_broker(b)) {
        return Err(err(
            "kafka.brokers",
            format!("{b:?} is not \"host:port\" (for example \"kafka1.example:9092\")"),
        ));
    }
    if enabled && brokers.is_empty() {
        return Err(err(
            "kafka.brokers",
            "is required when kafka is enabled (a list of \"host:port\")",
        ));
    }
    let topic = match raw.topic {
        None => d.topic,
        Some(t) if valid_topic(&t) => t,
        Some(t) => {
            return Err(err(
                "kafka.topic",
                format!("{t:?} is not a Kafka topic name (1..=249 of a-z A-Z 0-9 . _ -)"),
            ));
        }
    };
    let compression = match raw.compression.as_deref() {
        None | Some("") => d.compression,
        Some("none") => KafkaCompression::None,
        Some("gzip") => KafkaCompression::Gzip,
        Some("snappy") => KafkaCompression::Snappy,
        Some("lz4") => KafkaCompression::Lz4,
        Some(c) => {
            return Err(err(
                "kafka.compression",
                format!("{c:?} is not one of \"none\", \"gzip\", \"snappy\", \"lz4\""),
            ));
        }
    };
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let client_cert = match (nonempty(raw.cert_file), nonempty(raw.key_file)) {
        (Some(c), Some(k)) => Some((resolve(&c), resolve(&k))),
        (None, None) => None,
        (Some(_), None) => return Err(err("kafka.key_file", "is required with kafka.cert_file")),
        (None, Some(_)) => return Err(err("kafka.cert_file", "is required with kafka.key_file")),
    };
    let ca_file = nonempty(raw.ca_file).map(|p| resolve(&p));
    let tls = raw.tls.unwrap_or(false);
    if !tls && (ca_file.is_some() || client_cert.is_some()) {
        return Err(err(
            "kafka.tls",
            "must be true when kafka.ca_file, kafka.cert_file or kafka.key_file is set",
        ));
    }
    let sasl = match (
        nonempty(raw.sasl_mechanism),
        nonempty(raw.username),
        raw.password,
    ) {
        (None, None, None) => None,
        (Some(m), Some(username), Some(password)) => Some(KafkaSasl {
            mechanism: match m.to_ascii_uppercase().as_str() {
                "PLAIN" => "PLAIN",
                "SCRAM-SHA-256" => "SCRAM-SHA-256",
                "SCRAM-SHA-512" => "SCRAM-SHA-512",
                _ => {
                    return Err(err(
                        "kafka.sasl_mechanism",
                        format!(
                            "{m:?} is not one of \"PLAIN\", \"SCRAM-SHA-256\", \"SCRAM-SHA-512\""
                        ),
                    ));
                }
            },
            username,
            password,
        }),
        (None, _, _) => {
            return Err(err(
                "kafka.sasl_mechanism",
                "is required with kafka.username/password (\"PLAIN\", \"SCRAM-SHA-256\", \
                 \"SCRAM-SHA-512\")",
            ));
        }
        (_, None, _) => return Err(err("kafka.username", "is required for SASL")),
        (_, _, None) => return Err(err("kafka.password", "is required for SASL")),
    };
    Ok(KafkaConfig {
        enabled,
        brokers,
        topic,
        batch_size: number(
            "kafka.batch_size",
            raw.batch_size,
            d.batch_size as i64,
            1,
            100_000,
        )? as usize,
        batch_bytes: number(
            "kafka.batch_bytes",
            raw.batch_bytes,
            d.batch_bytes as i64,
            1 << 16,
            256 << 20,
        )? as usize,
        flush_interval: duration_key(
            "kafka.flush_interval",
            raw.flush_interval.as_deref(),
            d.flush_interval,
            Duration::from_secs(3600),
        )?,
        linger: duration_key(
            "kafka.linger",
            raw.linger.as_deref(),
            d.linger,
            Duration::from_secs(5),
        )?,
        compression,
        message_timeout: duration_key(
            "kafka.message_timeout",
            raw.message_timeout.as_deref(),
            d.message_timeout,
            Duration::from_secs(600),
        )?,
        tls,
        ca_file,
        client_cert,
        insecure_skip_verify: raw.insecure_skip_verify.unwrap_or(false),
        sasl,
        max_pending_bytes: number(
            "kafka.max_pending_bytes",
            raw.max_pending_bytes,
            d.max_pending_bytes as i64,
            1 << 16,
            1 << 34,
        )? as usize,
    })
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
