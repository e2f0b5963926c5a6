//! The output tables: `[loom]`, `[elasticsearch]`, `[kafka]`: their settings, raw forms and
//! validation (each error names its key, as for the top-level keys).

use super::{ConfigError, err, number, parse_duration};
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLoom {
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
pub(super) struct RawElastic {
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

pub(super) fn validate_elastic(
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
    let flush_interval = duration_key(
        "elasticsearch.flush_interval",
        raw.flush_interval.as_deref(),
        d.flush_interval,
        Duration::from_secs(3600),
    )?;
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

pub(super) fn validate_loom(raw: RawLoom) -> Result<LoomConfig, ConfigError> {
    let d = LoomConfig::default();
    let enabled = raw.enabled.unwrap_or(false);
    let batch_size = number(
        "loom.batch_size",
        raw.batch_size,
        d.batch_size as i64,
        1,
        10_000,
    )? as usize;
    let flush_interval = duration_key(
        "loom.flush_interval",
        raw.flush_interval.as_deref(),
        d.flush_interval,
        Duration::from_secs(3600),
    )?;
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
    pub(super) fn describe(&self, line: &mut impl FnMut(&str, String)) {
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
pub(super) struct RawKafka {
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

pub(super) fn validate_kafka(
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
