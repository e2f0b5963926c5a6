//! Loom shipping: records POSTed in batches to a Loom collector, as a [`Sink`] on the shared
//! runner (which owns the queue, retry, backoff, `Retry-After`, the byte budget and the drain).
//!
//! Wire protocol (same as the Go agent): `POST <url>` with a JSON array of records as the body
//! and the headers `Content-Type: application/json`, `X-Spip-ID: <sensor_id>` and
//! `Authorization: Bearer <token>`. A batch goes out when `batch_size` records (or
//! [`BATCH_MAX_BYTES`]) are queued or when its first record has waited `flush_interval`.
//!
//! - HTTP is blocking ureq (rustls) on the sink's own thread, each request bounded by a connect
//!   timeout and a total timeout, so a stalled Loom cannot hold the thread forever.
//! - Connect errors, timeouts, 5xx, 408 and 429 are retried by the runner; `Retry-After`
//!   (seconds) is passed on for 429 and 503.
//! - Other 4xx (and 3xx: redirects are not followed) are not retried: a bad token must not loop.
//!   The status is said once on stderr and the batch is counted as dropped.
//! - Nothing is ever written to stdout (it carries records).
//!
//! Bodies are sent uncompressed: the Go agent does not compress and Loom is not known to accept
//! `Content-Encoding: gzip`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::{Batching, Delivery, Lines, RetryPolicy, Sink, SinkCounters, SinkRunner};
pub use crate::config::LoomConfig;

/// Loom's counters are a sink's counters (`loom_*` in the stats line).
pub type LoomCounters = SinkCounters;

/// Largest request body: a batch is cut before it would pass this (a single larger record still
/// goes alone).
pub const BATCH_MAX_BYTES: usize = 4 << 20;

/// Transport tuning. [`Loom::start`] uses [`LoomTuning::default`]; tests shorten it.
#[derive(Debug, Clone)]
pub struct LoomTuning {
    /// First retry delay (jittered to 50..100 % of it); doubles per failure.
    pub backoff_min: Duration,
    /// Largest retry delay.
    pub backoff_max: Duration,
    /// TCP (+ resolve) connect timeout.
    pub connect_timeout: Duration,
    /// Total time for one request: connect, TLS, send, response.
    pub request_timeout: Duration,
    /// Upper bound on a server's `Retry-After`.
    pub retry_after_max: Duration,
}

impl Default for LoomTuning {
    fn default() -> Self {
        let retry = RetryPolicy::default();
        LoomTuning {
            backoff_min: retry.backoff_min,
            backoff_max: retry.backoff_max,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry_after_max: retry.retry_after_max,
        }
    }
}

impl LoomTuning {
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            backoff_min: self.backoff_min,
            backoff_max: self.backoff_max,
            retry_after_max: self.retry_after_max,
        }
    }
}

/// The message said (once per status) when Loom rejects a batch for good.
pub fn reject_message(status: u16, reason: &str, records: usize) -> String {
    let hint = match status {
        401 | 403 => "; check [loom] token and sensor_id",
        404 | 405 => "; check [loom] url",
        413 => "; lower [loom] batch_size",
        300..=399 => "; redirects are not followed: set [loom] url to the final address",
        _ => "",
    };
    let sep = if reason.is_empty() { "" } else { " " };
    format!(
        "spip: loom: POST rejected with {status}{sep}{reason}; dropping batch ({records} records){hint}"
    )
}

/// The warning said at start when the token would travel in clear.
pub fn cleartext_warning(cfg: &LoomConfig) -> Option<String> {
    cfg.url.to_ascii_lowercase().starts_with("http://").then(|| {
        format!(
            "spip: loom: warning: {} is plain http: the token and the records travel in clear; use https://",
            cfg.url
        )
    })
}

/// The Loom shipper on its own runner: [`Loom::offer`] never waits on Loom.
pub struct Loom {
    runner: SinkRunner,
}

impl Loom {
    /// Starts the shipping thread with the default [`LoomTuning`].
    pub fn start(cfg: &LoomConfig, counters: Arc<LoomCounters>) -> io::Result<Loom> {
        Self::start_with(cfg, counters, LoomTuning::default())
    }

    /// Starts the shipping thread with explicit transport tuning.
    pub fn start_with(
        cfg: &LoomConfig,
        counters: Arc<LoomCounters>,
        tuning: LoomTuning,
    ) -> io::Result<Loom> {
        let runner = SinkRunner::start(
            Box::new(LoomSink::new(cfg, &tuning)),
            cfg.max_pending_bytes,
            tuning.retry_policy(),
            counters,
        )?;
        Ok(Loom { runner })
    }

    /// The runner, to be fed by the capture path with every other sink.
    pub fn into_runner(self) -> SinkRunner {
        self.runner
    }

    /// Queues one record (a JSON object; trailing whitespace is ignored). Never blocks on Loom.
    /// Over the memory budget the oldest queued records are dropped and counted.
    pub fn offer(&self, record_json_line: &[u8]) {
        let rec = record_json_line.trim_ascii_end();
        if rec.is_empty() {
            return;
        }
        let mut line = Vec::with_capacity(rec.len() + 1);
        line.extend_from_slice(rec);
        line.push(b'\n');
        self.runner.offer(Lines::new(line, 1));
    }

    /// Bytes currently held (queued, in flight, awaiting a retry).
    pub fn pending_bytes(&self) -> usize {
        self.runner.held_bytes()
    }

    /// Flushes what is queued, waiting at most `deadline`; what could not be sent by then is
    /// counted as dropped.
    pub fn shutdown(self, deadline: Duration) {
        self.runner.shutdown(deadline);
    }
}

/// Loom as a [`Sink`]: one POST per batch.
pub struct LoomSink {
    agent: ureq::Agent,
    url: String,
    sensor_id: String,
    auth: String,
    batching: Batching,
    /// The request body (reused).
    body: Vec<u8>,
    /// Statuses already said on stderr (a bad token is said once, not per batch).
    said_status: Vec<u16>,
}

impl LoomSink {
    pub fn new(cfg: &LoomConfig, tuning: &LoomTuning) -> LoomSink {
        LoomSink {
            agent: build_agent(cfg, tuning),
            url: cfg.url.clone(),
            sensor_id: cfg.sensor_id.clone(),
            auth: format!("Bearer {}", cfg.token),
            batching: Batching {
                max_records: cfg.batch_size.max(1),
                max_bytes: BATCH_MAX_BYTES.min(cfg.max_pending_bytes.max(1)),
                flush_interval: cfg.flush_interval,
            },
            body: Vec::new(),
            said_status: Vec::new(),
        }
    }
}

impl Sink for LoomSink {
    fn name(&self) -> &'static str {
        "loom"
    }

    fn batching(&self) -> Batching {
        self.batching
    }

    fn deliver(&mut self, records: &[&[u8]]) -> Delivery {
        let mut body = std::mem::take(&mut self.body);
        body.clear();
        body.push(b'[');
        for (i, r) in records.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(r);
        }
        body.push(b']');
        let outcome = self.post(&body);
        self.body = body;
        match outcome {
            Outcome::Delivered => Delivery::Delivered,
            Outcome::Retry { after, what } => {
                let hint = if what.contains("certificate") {
                    " (a self-signed Loom certificate needs [loom] insecure_skip_verify = true)"
                } else {
                    ""
                };
                Delivery::RetryAll {
                    after,
                    error: format!("POST failed: {what}{hint}"),
                }
            }
            Outcome::Rejected { status, reason } => {
                if !self.said_status.contains(&status) {
                    self.said_status.push(status);
                    eprintln!("{}", reject_message(status, &reason, records.len()));
                }
                Delivery::Partial {
                    retry: Vec::new(),
                    rejected: records.len(),
                    error: format!("POST rejected with {status}"),
                }
            }
        }
    }
}

fn build_agent(cfg: &LoomConfig, tuning: &LoomTuning) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .disable_verification(cfg.insecure_skip_verify)
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(tuning.connect_timeout))
        .timeout_global(Some(tuning.request_timeout))
        .user_agent(concat!("spip/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .max_idle_connections(2)
        .max_idle_connections_per_host(2)
        .build()
        .new_agent()
}

enum Outcome {
    Delivered,
    /// Retry after at least this long (`Retry-After`) or the backoff, whichever is longer.
    Retry {
        after: Option<Duration>,
        what: String,
    },
    Rejected {
        status: u16,
        reason: String,
    },
}

impl LoomSink {
    fn post(&mut self, body: &[u8]) -> Outcome {
        let result = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("X-Spip-ID", &self.sensor_id)
            .header("Authorization", &self.auth)
            .send(body);
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    after: None,
                    what: e.to_string(),
                };
            }
        };
        let status = resp.status();
        // Drain (bounded) so the connection can be reused.
        let _ = resp.body_mut().with_config().limit(64 * 1024).read_to_vec();
        let code = status.as_u16();
        if status.is_success() {
            return Outcome::Delivered;
        }
        let reason = status.canonical_reason().unwrap_or("").to_string();
        match code {
            408 | 429 | 500..=599 => {
                let after = if code == 429 || code == 503 {
                    resp.headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs)
                } else {
                    None
                };
                Outcome::Retry {
                    after,
                    what: format!("status {code} {reason}"),
                }
            }
            _ => Outcome::Rejected {
                status: code,
                reason,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::JsonWriter;
    use std::sync::atomic::Ordering;

    #[test]
    fn stats_members() {
        let c = LoomCounters::default();
        c.batches.store(2, Ordering::Relaxed);
        c.sent.store(100, Ordering::Relaxed);
        c.retries.store(3, Ordering::Relaxed);
        c.dropped.store(4, Ordering::Relaxed);
        let mut buf = Vec::new();
        let mut w = JsonWriter::new(&mut buf);
        w.begin();
        crate::stats::write_prefixed("loom", &c, &mut w);
        w.finish();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            r#"{"loom_batches":2,"loom_records":100,"loom_retries":3,"loom_dropped":4,"loom_errors":0,"loom_queue_bytes":0}"#
        );
    }

    #[test]
    fn cleartext_url_is_warned() {
        let mut cfg = LoomConfig {
            url: "http://loom.example/ingest".into(),
            ..LoomConfig::default()
        };
        assert!(cleartext_warning(&cfg).is_some_and(|w| w.contains("in clear")));
        cfg.url = "https://loom.example/ingest".into();
        assert!(cleartext_warning(&cfg).is_none());
    }

    #[test]
    fn reject_text() {
        let m = reject_message(401, "Unauthorized", 50);
        assert_eq!(
            m,
            "spip: loom: POST rejected with 401 Unauthorized; dropping batch (50 records); check [loom] token and sensor_id"
        );
    }
}
