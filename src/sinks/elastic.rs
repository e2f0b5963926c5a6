//! Elasticsearch / OpenSearch sink: records go to a data stream with `_bulk` `create` actions.
//!
//! - Each record becomes `{"create":{"_id":ID}}` + the record, one line each (NDJSON), POSTed to
//!   `<url>/<data_stream>/_bulk`. `ID` is `<event.id>-<spip.turn>`, read from the record's own
//!   bytes (see [`write_document_id`]), so a batch sent twice (a timeout after the cluster had
//!   already indexed it) yields 409s instead of duplicates.
//! - The response is read per item ([`judge`]): 2xx and 409 (already there) are delivered,
//!   408/429/5xx items are offered again, other 4xx are refused for good and written with the
//!   reason to the dead-letter file. A whole-request 408/429/5xx (with `Retry-After` when the
//!   cluster sent one) or a transport error retries the batch; another whole-request 4xx refuses
//!   the batch (dead-lettered: a bad API key must not loop, and the records can be replayed).
//! - Backoff, the memory budget and the shutdown drain are the runner's ([`crate::sinks`]).
//!
//! Everything except [`Elastic::deliver`]'s one HTTP call is IO-free and tested in memory.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use memchr::memmem;
use serde::Deserialize;

use super::{Batching, Delivery, RetryPolicy, Sink, SinkCounters, SinkRunner};
use crate::config::{ElasticAuth, ElasticConfig};
use crate::json::JsonWriter;

/// The index template shipped with spip (Elasticsearch: `flattened` attacker-keyed objects).
pub const INDEX_TEMPLATE: &str = include_str!("../../packaging/elasticsearch/index-template.json");
/// The same template for OpenSearch, which has `flat_object` instead of `flattened`.
pub const OPENSEARCH_INDEX_TEMPLATE: &str =
    include_str!("../../packaging/opensearch/index-template.json");

/// Only the parts of the `_bulk` answer that [`judge`] reads (smaller responses).
const FILTER_PATH: &str =
    "filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason";
/// Longest reason kept for a dead-letter line or a message (cluster reasons can quote documents).
const MAX_REASON: usize = 1024;
/// Response bytes read for a `_bulk` answer: a base plus this much per record.
const RESPONSE_BASE_BYTES: u64 = 64 << 10;
const RESPONSE_BYTES_PER_RECORD: u64 = 2 << 10;

crate::stats::counter_table! {
    /// Counters beyond the runner's (sent, retried, dropped): what only this sink knows. On the
    /// stats line as `elasticsearch_<key>`, at `/metrics` with `sink="elasticsearch"`, and said
    /// on stderr at close.
    pub struct ElasticCounters {
        /// Records the cluster already had (409 on `create`): delivered by an earlier attempt.
        already_there: Counter "sink_already_indexed",
            "Records the cluster already had (409 on create): delivered by an earlier attempt";
        /// Records refused for good and written to the dead-letter file.
        dead_lettered: Counter "sink_dead_lettered",
            "Records refused for good and written to the dead-letter file";
        /// Refused records the dead-letter file could not take (full, unwritable, or none set).
        dead_letter_lost: Counter "sink_dead_letter_lost",
            "Refused records the dead-letter file could not take (full, unwritable, or none set)";
    }
}

/// Why the sink cannot start.
#[derive(Debug)]
pub enum ElasticError {
    /// `ca_file` unreadable or without a certificate.
    CaFile { path: PathBuf, problem: String },
    /// The dead-letter file cannot be opened for appending.
    DeadLetter { path: PathBuf, source: io::Error },
}

impl std::fmt::Display for ElasticError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ElasticError::CaFile { path, problem } => {
                write!(f, "elasticsearch: ca_file {}: {problem}", path.display())
            }
            ElasticError::DeadLetter { path, source } => write!(
                f,
                "elasticsearch: cannot open dead_letter_file {}: {source}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ElasticError {}

/// The sink: one ureq agent, a reused body buffer and the dead-letter file.
pub struct Elastic {
    agent: ureq::Agent,
    /// `<url>/<data_stream>/_bulk?filter_path=...`
    bulk_url: String,
    /// The `Authorization` header value, if any.
    authorization: Option<String>,
    batching: Batching,
    body: Vec<u8>,
    dead_letter: DeadLetter,
    counters: Arc<ElasticCounters>,
    /// Statuses of refusals already said on stderr (a bad key is said once, not per batch).
    said_statuses: Vec<u16>,
}

/// Connect and whole-request timeouts (every call is bounded: the runner's thread must not
/// hang). [`Elastic::new`] uses the defaults; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct ElasticTimeouts {
    pub connect: Duration,
    pub request: Duration,
}

impl Default for ElasticTimeouts {
    fn default() -> Self {
        ElasticTimeouts {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(30),
        }
    }
}

/// Starts the sink on its own runner (the capture path feeds it with every other sink).
pub fn start(
    cfg: &ElasticConfig,
    counters: Arc<SinkCounters>,
    retry: RetryPolicy,
) -> io::Result<SinkRunner> {
    let sink = Elastic::new(cfg, Arc::new(ElasticCounters::default())).map_err(io::Error::other)?;
    if let Some(w) = cleartext_warning(cfg) {
        eprintln!("{w}");
    }
    eprintln!(
        "spip: shipping records to Elasticsearch at {} (data stream {}, batch {}, every {:?})",
        cfg.url, cfg.data_stream, cfg.batch_size, cfg.flush_interval
    );
    SinkRunner::start(Box::new(sink), cfg.max_pending_bytes, retry, counters)
}

/// A warning when credentials would travel in clear.
pub fn cleartext_warning(cfg: &ElasticConfig) -> Option<String> {
    let clear = cfg.url.to_ascii_lowercase().starts_with("http://");
    (clear && cfg.auth != ElasticAuth::None).then(|| {
        format!(
            "spip: elasticsearch: warning: {} is plain http: the credentials and the records \
             travel in clear; use https://",
            cfg.url
        )
    })
}

impl Elastic {
    /// Builds the sink from its config: reads `ca_file`, opens the dead-letter file.
    pub fn new(
        cfg: &ElasticConfig,
        counters: Arc<ElasticCounters>,
    ) -> Result<Elastic, ElasticError> {
        Self::with_timeouts(cfg, counters, ElasticTimeouts::default())
    }

    /// [`Elastic::new`] with explicit timeouts.
    pub fn with_timeouts(
        cfg: &ElasticConfig,
        counters: Arc<ElasticCounters>,
        timeouts: ElasticTimeouts,
    ) -> Result<Elastic, ElasticError> {
        let root_certs = match &cfg.ca_file {
            Some(path) => Some(load_ca_file(path)?),
            None => None,
        };
        let dead_letter = match &cfg.dead_letter_file {
            Some(path) => DeadLetter::open(path, cfg.dead_letter_max_bytes)?,
            None => DeadLetter::none(),
        };
        Ok(Elastic {
            agent: build_agent(cfg.insecure_skip_verify, root_certs, timeouts),
            bulk_url: bulk_url(&cfg.url, &cfg.data_stream),
            authorization: authorization(&cfg.auth),
            batching: Batching {
                max_records: cfg.batch_size,
                max_bytes: cfg.max_batch_bytes,
                flush_interval: cfg.flush_interval,
            },
            body: Vec::new(),
            dead_letter,
            counters,
            said_statuses: Vec::new(),
        })
    }

    /// POSTs the body; `Err` is a transport failure (connect, TLS, timeout, unreadable reply).
    fn post(&mut self, records: usize) -> Result<Reply, String> {
        let mut req = self
            .agent
            .post(&self.bulk_url)
            .header("Content-Type", "application/x-ndjson");
        if let Some(a) = &self.authorization {
            req = req.header("Authorization", a);
        }
        let mut resp = req.send(&self.body[..]).map_err(|e| {
            let e = e.to_string();
            if e.to_ascii_lowercase().contains("certificate") {
                format!(
                    "{e} (a private CA needs [elasticsearch] ca_file; a self-signed certificate \
                     insecure_skip_verify = true)"
                )
            } else {
                e
            }
        })?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let limit = RESPONSE_BASE_BYTES + RESPONSE_BYTES_PER_RECORD * records as u64;
        let body = resp
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| format!("reading the _bulk response: {e}"))?;
        Ok(Reply {
            status,
            retry_after,
            body,
        })
    }
}

impl Sink for Elastic {
    fn name(&self) -> &'static str {
        "elasticsearch"
    }

    fn batching(&self) -> Batching {
        self.batching
    }

    fn own_counters(&self) -> Option<Arc<dyn crate::stats::CounterSet>> {
        Some(self.counters.clone())
    }

    fn deliver(&mut self, records: &[&[u8]]) -> Delivery {
        if records.is_empty() {
            return Delivery::Delivered;
        }
        write_bulk_body(records, &mut self.body);
        let reply = match self.post(records.len()) {
            Ok(r) => r,
            Err(error) => return Delivery::RetryAll { after: None, error },
        };
        match judge(
            reply.status,
            reply.retry_after.as_deref(),
            &reply.body,
            records.len(),
        ) {
            Verdict::Delivered { already_there } => {
                self.count_already_there(already_there);
                Delivery::Delivered
            }
            Verdict::RetryAll { after, error } => Delivery::RetryAll { after, error },
            Verdict::Partial {
                retry,
                rejected,
                already_there,
                error,
            } => {
                self.count_already_there(already_there);
                self.say_refusals(&rejected);
                let (written, lost) = self.dead_letter.write(records, &rejected);
                self.counters
                    .dead_lettered
                    .fetch_add(written as u64, Ordering::Relaxed);
                self.counters
                    .dead_letter_lost
                    .fetch_add(lost as u64, Ordering::Relaxed);
                Delivery::Partial {
                    retry,
                    rejected: rejected.len(),
                    error,
                }
            }
        }
    }

    /// Says what only this sink counted (the runner's stats line has the rest).
    fn close(&mut self) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let c = &self.counters;
        let (there, dead, lost) = (
            get(&c.already_there),
            get(&c.dead_lettered),
            get(&c.dead_letter_lost),
        );
        if there + dead + lost > 0 {
            eprintln!(
                "spip: elasticsearch: {there} records were already indexed (409), {dead} refused \
                 records written to the dead-letter file, {lost} refused records not kept"
            );
        }
    }
}

impl Elastic {
    /// Says the first refusal of each status once (the runner does not print refusals).
    fn say_refusals(&mut self, rejected: &[Rejection]) {
        for r in rejected {
            if self.said_statuses.contains(&r.status) {
                continue;
            }
            self.said_statuses.push(r.status);
            let kept = match self.dead_letter.path() {
                Some(path) => format!("written to {}", path.display()),
                None => "dropped (set [elasticsearch] dead_letter_file to keep them)".to_string(),
            };
            eprintln!(
                "spip: elasticsearch: the cluster refused a record ({}); {kept}; further \
                 refusals with status {} are only counted",
                r.reason, r.status
            );
        }
    }

    fn count_already_there(&self, n: usize) {
        if n > 0 {
            self.counters
                .already_there
                .fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

/// One HTTP answer, as [`judge`] needs it.
struct Reply {
    status: u16,
    retry_after: Option<String>,
    body: Vec<u8>,
}

fn bulk_url(base: &str, data_stream: &str) -> String {
    format!(
        "{}/{data_stream}/_bulk?{FILTER_PATH}",
        base.trim_end_matches('/')
    )
}

fn authorization(auth: &ElasticAuth) -> Option<String> {
    use base64::Engine as _;
    match auth {
        ElasticAuth::None => None,
        ElasticAuth::ApiKey(key) => Some(format!("ApiKey {key}")),
        ElasticAuth::Basic { username, password } => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
        )),
    }
}

fn load_ca_file(path: &Path) -> Result<ureq::tls::RootCerts, ElasticError> {
    let problem = |p: String| ElasticError::CaFile {
        path: path.to_path_buf(),
        problem: p,
    };
    let pem = std::fs::read(path).map_err(|e| problem(e.to_string()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(problem(e.to_string())),
        }
    }
    if certs.is_empty() {
        return Err(problem("no PEM certificate in it".into()));
    }
    Ok(ureq::tls::RootCerts::new_with_certs(&certs))
}

/// Same agent shape as Loom's: rustls (ring), no redirects, statuses as values, bounded time.
fn build_agent(
    insecure_skip_verify: bool,
    root_certs: Option<ureq::tls::RootCerts>,
    timeouts: ElasticTimeouts,
) -> ureq::Agent {
    let mut tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .disable_verification(insecure_skip_verify);
    if let Some(roots) = root_certs {
        tls = tls.root_certs(roots);
    }
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(timeouts.connect))
        .timeout_global(Some(timeouts.request))
        .user_agent(concat!("spip/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls.build())
        .max_idle_connections(2)
        .max_idle_connections_per_host(2)
        .build()
        .new_agent()
}

/// Writes the `_bulk` body for `records` into `out` (cleared first): one `create` action line
/// and one source line per record.
pub fn write_bulk_body(records: &[&[u8]], out: &mut Vec<u8>) {
    out.clear();
    for record in records {
        let record = trim_line(record);
        out.extend_from_slice(br#"{"create":{"_id":""#);
        write_document_id(record, out);
        out.extend_from_slice(b"\"}}\n");
        out.extend_from_slice(record);
        out.push(b'\n');
    }
}

/// A record without trailing whitespace (a newline would split an NDJSON line).
fn trim_line(mut record: &[u8]) -> &[u8] {
    while let [head @ .., b'\n' | b'\r' | b' ' | b'\t'] = record {
        record = head;
    }
    record
}

/// Where the record writer puts the event id: right after `@timestamp`.
const EVENT_ID_KEY: &[u8] = br#""event":{"id":""#;
/// Where it puts the turn: first member of the last top-level object.
const TURN_KEY: &[u8] = br#""spip":{"turn":"#;

/// Appends the record's document id: `<event.id>-<spip.turn>`, or, for a record without them,
/// 32 hex digits of the SHA-256 of its bytes (still the same on every retry).
///
/// The keys are found by their exact bytes without a parse: `spip::record` writes both in
/// a fixed place, and neither pattern can occur inside a JSON string (each contains a `"`
/// not preceded by a backslash), so attacker text cannot forge them. The id is taken only if
/// it is short and made of UUID characters; the turn only if it is a plain integer.
pub fn write_document_id(record: &[u8], out: &mut Vec<u8>) {
    if let (Some(id), Some(turn)) = (event_id(record), turn(record)) {
        out.extend_from_slice(id);
        out.push(b'-');
        out.extend_from_slice(turn);
        return;
    }
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(record);
    crate::json::write_hex(out, &digest[..16]);
}

fn event_id(record: &[u8]) -> Option<&[u8]> {
    let start = memmem::find(record, EVENT_ID_KEY)? + EVENT_ID_KEY.len();
    let rest = &record[start..];
    let len = memchr::memchr(b'"', rest)?;
    let id = &rest[..len];
    let ok =
        (1..=64).contains(&id.len()) && id.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-');
    ok.then_some(id)
}

fn turn(record: &[u8]) -> Option<&[u8]> {
    let start = memmem::rfind(record, TURN_KEY)? + TURN_KEY.len();
    let rest = &record[start..];
    let len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    (1..=10).contains(&len).then_some(&rest[..len])
}

/// What a `_bulk` answer means for the batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every record is in the cluster; `already_there` of them were before (409).
    Delivered { already_there: usize },
    /// Nothing known to be delivered: send the whole batch again (the `_id`s make it safe).
    RetryAll {
        after: Option<Duration>,
        error: String,
    },
    /// Per record: `retry` go again, `rejected` are refused for good, the rest are delivered.
    Partial {
        retry: Vec<usize>,
        rejected: Vec<Rejection>,
        already_there: usize,
        error: String,
    },
}

/// One record refused for good.
#[derive(Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Index into the batch.
    pub index: usize,
    /// The item's (or the request's) HTTP status.
    pub status: u16,
    /// `type: reason` from the cluster, at most [`MAX_REASON`] bytes.
    pub reason: String,
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    items: Vec<BulkItem>,
}

#[derive(Deserialize)]
struct BulkItem {
    // We send only `create`; the others are accepted so an odd proxy cannot wedge us.
    #[serde(alias = "index", alias = "update", alias = "delete")]
    create: ItemResult,
}

#[derive(Deserialize)]
struct ItemResult {
    status: u16,
    #[serde(default)]
    error: Option<ItemError>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ItemError {
    Object {
        #[serde(rename = "type", default)]
        kind: Option<String>,
        #[serde(default)]
        reason: Option<String>,
    },
    Text(String),
    Other(serde::de::IgnoredAny),
}

impl ItemError {
    fn describe(&self) -> String {
        match self {
            ItemError::Object { kind, reason } => match (kind, reason) {
                (Some(k), Some(r)) => format!("{k}: {r}"),
                (Some(s), None) | (None, Some(s)) => s.clone(),
                (None, None) => String::new(),
            },
            ItemError::Text(s) => s.clone(),
            ItemError::Other(_) => String::new(),
        }
    }
}

/// Reads one `_bulk` answer for a batch of `records` records.
pub fn judge(status: u16, retry_after: Option<&str>, body: &[u8], records: usize) -> Verdict {
    match status {
        200..=299 => judge_items(body, records),
        408 | 429 | 500..=599 => Verdict::RetryAll {
            after: if status == 429 || status == 503 {
                retry_after.and_then(parse_retry_after)
            } else {
                None
            },
            error: format!("_bulk answered {status}{}", excerpt(body)),
        },
        _ => {
            let hint = match status {
                401 | 403 => " (check [elasticsearch] api_key or username/password)",
                404 | 405 => " (check [elasticsearch] url)",
                413 => " (lower [elasticsearch] max_batch_bytes or batch_size)",
                300..=399 => {
                    " (redirects are not followed: set [elasticsearch] url to the final address)"
                }
                _ => "",
            };
            let reason = bounded(format!("_bulk answered {status}{}{hint}", excerpt(body)));
            Verdict::Partial {
                retry: Vec::new(),
                rejected: (0..records)
                    .map(|index| Rejection {
                        index,
                        status,
                        reason: reason.clone(),
                    })
                    .collect(),
                already_there: 0,
                error: format!("{reason}; {records} records refused"),
            }
        }
    }
}

fn judge_items(body: &[u8], records: usize) -> Verdict {
    let response: BulkResponse = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return Verdict::RetryAll {
                after: None,
                error: format!("unreadable _bulk response: {e}"),
            };
        }
    };
    if response.items.len() != records {
        return Verdict::RetryAll {
            after: None,
            error: format!(
                "_bulk response has {} items for {records} records",
                response.items.len()
            ),
        };
    }
    let mut retry = Vec::new();
    let mut rejected = Vec::new();
    let mut already_there = 0;
    // The first problem of each kind, for the message.
    let mut first_retry = None;
    let mut first_reject = None;
    for (index, item) in response.items.iter().enumerate() {
        let result = &item.create;
        match result.status {
            200..=299 => {}
            409 => already_there += 1,
            status @ (408 | 429 | 500..=599) => {
                retry.push(index);
                first_retry.get_or_insert_with(|| describe_item(status, result));
            }
            status => {
                let reason = describe_item(status, result);
                first_reject.get_or_insert_with(|| reason.clone());
                rejected.push(Rejection {
                    index,
                    status,
                    reason,
                });
            }
        }
    }
    if retry.is_empty() && rejected.is_empty() {
        return Verdict::Delivered { already_there };
    }
    let mut error = String::new();
    if let Some(first) = first_retry {
        error = format!("{} items to retry (first: {first})", retry.len());
    }
    if let Some(first) = first_reject {
        if !error.is_empty() {
            error.push_str("; ");
        }
        error.push_str(&format!(
            "{} items refused (first: {first})",
            rejected.len()
        ));
    }
    Verdict::Partial {
        retry,
        rejected,
        already_there,
        error,
    }
}

fn describe_item(status: u16, result: &ItemResult) -> String {
    let what = result
        .error
        .as_ref()
        .map(ItemError::describe)
        .unwrap_or_default();
    if what.is_empty() {
        format!("{status}")
    } else {
        bounded(format!("{status} {what}"))
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by Elasticsearch); the runner
/// caps it.
fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// `": <start of the body>"` for messages, or nothing for an empty body.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

fn bounded(mut s: String) -> String {
    if s.len() > MAX_REASON {
        let mut cut = MAX_REASON;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// The dead-letter file: one NDJSON line per refused record, `{"@timestamp", "status",
/// "reason", "record"}`, where `record` is the record itself (so `jq -c .record` replays it).
/// Lines are whole: a failed write is cut back to the last whole line.
struct DeadLetter {
    file: Option<(File, PathBuf)>,
    /// Bytes in the file.
    len: u64,
    max_len: u64,
    line: Vec<u8>,
    said_full: bool,
    said_error: bool,
}

impl DeadLetter {
    fn none() -> DeadLetter {
        DeadLetter {
            file: None,
            len: 0,
            max_len: 0,
            line: Vec::new(),
            said_full: false,
            said_error: false,
        }
    }

    fn open(path: &Path, max_len: u64) -> Result<DeadLetter, ElasticError> {
        let fail = |source| ElasticError::DeadLetter {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(fail)?;
        let len = file.metadata().map_err(fail)?.len();
        Ok(DeadLetter {
            file: Some((file, path.to_path_buf())),
            len,
            max_len,
            ..DeadLetter::none()
        })
    }

    fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(_, path)| path.as_path())
    }

    /// Writes the rejected records; returns (written, lost).
    fn write(&mut self, records: &[&[u8]], rejected: &[Rejection]) -> (usize, usize) {
        let Some((file, path)) = &mut self.file else {
            return (0, rejected.len());
        };
        let mut written = 0;
        for r in rejected {
            let Some(record) = records.get(r.index) else {
                continue;
            };
            self.line.clear();
            dead_letter_line(&mut self.line, trim_line(record), r, SystemTime::now());
            if self.len + self.line.len() as u64 > self.max_len {
                if !self.said_full {
                    self.said_full = true;
                    eprintln!(
                        "spip: elasticsearch: dead_letter_file {} reached dead_letter_max_bytes ({}); \
                         further refused records are only counted",
                        path.display(),
                        self.max_len
                    );
                }
                break;
            }
            if let Err(e) = file.write_all(&self.line) {
                // Never leave a torn line: cut back to the last whole one.
                let _ = file.set_len(self.len);
                if !self.said_error {
                    self.said_error = true;
                    eprintln!(
                        "spip: elasticsearch: cannot write dead_letter_file {}: {e}",
                        path.display()
                    );
                }
                break;
            }
            self.len += self.line.len() as u64;
            self.said_error = false;
            written += 1;
        }
        (written, rejected.len() - written)
    }
}

/// One dead-letter line (with its newline).
fn dead_letter_line(out: &mut Vec<u8>, record: &[u8], rejection: &Rejection, now: SystemTime) {
    let mut w = JsonWriter::new(out);
    w.begin();
    w.key_only("@timestamp");
    crate::record::write_timestamp(w.buf(), now);
    w.u64("status", u64::from(rejection.status));
    w.str("reason", rejection.reason.as_bytes());
    w.raw("record", record);
    w.finish();
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const ID: &str = "0b6f3c1e-8d2a-4c1b-9e7f-2a3b4c5d6e7f";

    /// A record laid out as `crate::record::write_record` lays it out (`event.id` first in
    /// `event`, `spip` last with `turn` first), with `summary` escaped by the same writer.
    fn record(summary: Option<&[u8]>, turn: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = JsonWriter::new(&mut out);
        w.begin();
        w.key_only("@timestamp");
        crate::record::write_timestamp(w.buf(), SystemTime::UNIX_EPOCH);
        w.begin_object("event");
        w.str("id", ID.as_bytes());
        w.str("ingested_by", b"spip");
        if let Some(s) = summary {
            w.str("summary", s);
            w.hex("original_payload_hex", s);
        }
        w.u64("duration", 3_000_000);
        w.end_object();
        w.begin_object("observer");
        w.str("hostname", b"sensor-1");
        w.str("id", b"sensor-1");
        w.end_object();
        w.begin_object("host");
        w.str("name", b"sensor-1");
        w.end_object();
        w.begin_object("source");
        w.str("ip", b"192.0.2.1");
        w.u64("port", 40000);
        w.u64("bytes", 10);
        w.end_object();
        w.begin_object("destination");
        w.str("ip", b"198.51.100.2");
        w.u64("port", 8080);
        w.end_object();
        w.begin_object("network");
        w.str("transport", b"tcp");
        w.str("community_id", b"1:abc=");
        w.end_object();
        w.begin_object("spip");
        w.u64("turn", u64::from(turn));
        if summary.is_none() {
            w.bool("empty", true);
        }
        w.bool("truncated", true);
        w.bool("no_original_destination", true);
        w.str("close_reason", b"eof");
        w.bool("budget_exhausted", true);
        w.end_object();
        w.finish();
        out
    }

    fn lines(body: &[u8]) -> Vec<Value> {
        body.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    #[test]
    fn bulk_body_is_create_action_then_record() {
        let a = record(Some(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 1);
        let b = record(Some(b"hello"), 2);
        let mut body = b"stale".to_vec();
        write_bulk_body(&[&a, &b], &mut body);
        assert_eq!(body.last(), Some(&b'\n'));
        let l = lines(&body);
        assert_eq!(l.len(), 4);
        assert_eq!(
            l[0],
            serde_json::json!({"create": {"_id": format!("{ID}-1")}})
        );
        assert_eq!(l[1]["event"]["id"], ID);
        assert_eq!(
            l[2],
            serde_json::json!({"create": {"_id": format!("{ID}-2")}})
        );
        assert_eq!(l[3]["event"]["summary"], "hello");
        // The records go out byte for byte.
        let text = body.split(|b| *b == b'\n').nth(1).unwrap();
        assert_eq!(text, &a[..]);
    }

    #[test]
    fn trailing_newline_is_not_an_extra_line() {
        let mut a = record(None, 0);
        a.extend_from_slice(b"\r\n");
        let mut body = Vec::new();
        write_bulk_body(&[&a], &mut body);
        assert_eq!(body.iter().filter(|b| **b == b'\n').count(), 2);
        assert_eq!(lines(&body)[0]["create"]["_id"], format!("{ID}-0"));
    }

    #[test]
    fn attacker_text_cannot_forge_the_id() {
        let evil = br#"x","event":{"id":"evil-id"},"spip":{"turn":999}}"spip":{"turn":7"#;
        let rec = record(Some(evil), 3);
        let mut body = Vec::new();
        write_bulk_body(&[&rec], &mut body);
        assert_eq!(lines(&body)[0]["create"]["_id"], format!("{ID}-3"));
    }

    #[test]
    fn records_without_id_or_turn_get_a_stable_hash_id() {
        let rec = br#"{"@timestamp":"2026-01-01T00:00:00Z","spip":{"scan":{"ports":3}}}"#;
        let mut one = Vec::new();
        let mut two = Vec::new();
        write_document_id(rec, &mut one);
        write_document_id(rec, &mut two);
        assert_eq!(one, two);
        assert_eq!(one.len(), 32);
        assert!(one.iter().all(u8::is_ascii_hexdigit));
        let mut other = Vec::new();
        write_document_id(br#"{"x":1}"#, &mut other);
        assert_ne!(one, other);
        // An id with characters that would need escaping is not trusted either.
        let mut odd = Vec::new();
        write_document_id(br#"{"event":{"id":"a\"b"},"spip":{"turn":1}}"#, &mut odd);
        assert_eq!(odd.len(), 32);
    }

    fn items(statuses: &[(u16, &str)]) -> Vec<u8> {
        let items: Vec<Value> = statuses
            .iter()
            .map(|(s, err)| {
                if err.is_empty() {
                    serde_json::json!({"create": {"status": s}})
                } else {
                    serde_json::json!({"create": {"status": s, "error": {"type": err, "reason": "why"}}})
                }
            })
            .collect();
        let errors = statuses.iter().any(|(s, _)| !(200..300).contains(s));
        serde_json::to_vec(&serde_json::json!({"errors": errors, "items": items})).unwrap()
    }

    #[test]
    fn all_created_is_delivered() {
        let body = items(&[(201, ""), (201, "")]);
        assert_eq!(
            judge(200, None, &body, 2),
            Verdict::Delivered { already_there: 0 }
        );
    }

    #[test]
    fn conflicts_count_as_already_there() {
        let body = items(&[(409, "version_conflict_engine_exception"), (201, "")]);
        assert_eq!(
            judge(200, None, &body, 2),
            Verdict::Delivered { already_there: 1 }
        );
    }

    #[test]
    fn partial_failure_retries_429_and_5xx_and_refuses_other_4xx() {
        let body = items(&[
            (201, ""),
            (429, "es_rejected_execution_exception"),
            (400, "document_parsing_exception"),
            (503, "unavailable_shards_exception"),
            (409, "version_conflict_engine_exception"),
        ]);
        let Verdict::Partial {
            retry,
            rejected,
            already_there,
            error,
        } = judge(200, None, &body, 5)
        else {
            panic!("not partial");
        };
        assert_eq!(retry, [1, 3]);
        assert_eq!(already_there, 1);
        assert_eq!(
            rejected,
            [Rejection {
                index: 2,
                status: 400,
                reason: "400 document_parsing_exception: why".into()
            }]
        );
        assert!(error.contains("2 items to retry"), "{error}");
        assert!(error.contains("1 items refused"), "{error}");
    }

    #[test]
    fn unreadable_or_mismatched_answers_retry_everything() {
        for (body, n) in [
            (&b"<html>proxy</html>"[..], 1),
            (&b""[..], 1),
            (&items(&[(201, "")])[..], 2),
        ] {
            assert!(
                matches!(
                    judge(200, None, body, n),
                    Verdict::RetryAll { after: None, .. }
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn item_error_as_plain_text_is_read() {
        let body = br#"{"errors":true,"items":[{"create":{"status":400,"error":"bad doc"}}]}"#;
        let Verdict::Partial { rejected, .. } = judge(200, None, body, 1) else {
            panic!("not partial");
        };
        assert_eq!(rejected[0].reason, "400 bad doc");
    }

    #[test]
    fn whole_request_throttling_honours_retry_after() {
        assert_eq!(
            judge(429, Some("7"), b"", 3),
            Verdict::RetryAll {
                after: Some(Duration::from_secs(7)),
                error: "_bulk answered 429".into()
            }
        );
        let Verdict::RetryAll { after, .. } = judge(503, Some(" 60 "), b"", 3) else {
            panic!("not a retry");
        };
        assert_eq!(after, Some(Duration::from_secs(60)));
        let Verdict::RetryAll { after, error } = judge(502, Some("5"), b"bad gateway", 3) else {
            panic!("not a retry");
        };
        assert_eq!(after, None);
        assert_eq!(error, "_bulk answered 502: bad gateway");
        assert!(matches!(
            judge(429, Some("soon"), b"", 1),
            Verdict::RetryAll { after: None, .. }
        ));
    }

    #[test]
    fn whole_request_4xx_refuses_the_batch_with_a_hint() {
        let Verdict::Partial {
            retry,
            rejected,
            error,
            ..
        } = judge(401, None, b"{\"error\":\"auth\"}", 2)
        else {
            panic!("not partial");
        };
        assert!(retry.is_empty());
        assert_eq!(rejected.len(), 2);
        assert_eq!(rejected[1].index, 1);
        assert!(
            rejected[0].reason.contains("api_key"),
            "{}",
            rejected[0].reason
        );
        assert!(error.ends_with("2 records refused"), "{error}");
    }

    #[test]
    fn reasons_are_bounded() {
        let long = "é".repeat(4000);
        let body = format!(
            r#"{{"items":[{{"create":{{"status":400,"error":{{"type":"t","reason":"{long}"}}}}}}]}}"#
        );
        let Verdict::Partial { rejected, .. } = judge(200, None, body.as_bytes(), 1) else {
            panic!("not partial");
        };
        assert!(rejected[0].reason.len() <= MAX_REASON + '…'.len_utf8());
    }

    #[test]
    fn auth_headers() {
        assert_eq!(authorization(&ElasticAuth::None), None);
        assert_eq!(
            authorization(&ElasticAuth::ApiKey("abc==".into())).as_deref(),
            Some("ApiKey abc==")
        );
        let basic = ElasticAuth::Basic {
            username: "elastic".into(),
            password: "changeme".into(),
        };
        assert_eq!(
            authorization(&basic).as_deref(),
            Some("Basic ZWxhc3RpYzpjaGFuZ2VtZQ==")
        );
        assert_eq!(
            bulk_url("https://es:9200/", "logs-spip-default"),
            format!("https://es:9200/logs-spip-default/_bulk?{FILTER_PATH}")
        );
    }

    fn temp_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("spip-elastic-{tag}-{}", std::process::id()))
    }

    #[test]
    fn ca_file_needs_a_pem_certificate() {
        let path = temp_path("ca");
        let ca = rcgen::generate_simple_self_signed(vec!["es.example".into()]).unwrap();
        let (cert, key) = (ca.cert.pem(), ca.signing_key.serialize_pem());
        std::fs::write(&path, format!("{key}{cert}")).unwrap();
        assert!(load_ca_file(&path).is_ok());
        std::fs::write(&path, key).unwrap();
        let e = load_ca_file(&path).err().unwrap().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        std::fs::remove_file(&path).unwrap();
        let e = load_ca_file(&path).err().unwrap().to_string();
        assert!(e.contains("ca_file"), "{e}");
    }

    #[test]
    fn cleartext_credentials_are_warned_about() {
        let mut cfg = ElasticConfig {
            url: "http://es:9200".into(),
            ..ElasticConfig::default()
        };
        assert!(
            cleartext_warning(&cfg).is_none(),
            "no credentials, nothing to leak"
        );
        cfg.auth = ElasticAuth::ApiKey("k".into());
        assert!(cleartext_warning(&cfg).is_some_and(|w| w.contains("in clear")));
        cfg.url = "https://es:9200".into();
        assert!(cleartext_warning(&cfg).is_none());
    }

    #[test]
    fn dead_letter_lines_hold_the_record_and_the_reason() {
        let path = temp_path("dlq");
        let _ = std::fs::remove_file(&path);
        let mut dl = DeadLetter::open(&path, 1 << 20).unwrap();
        let a = record(Some(b"one"), 1);
        let b = record(Some(b"two"), 2);
        let rejected = [Rejection {
            index: 1,
            status: 400,
            reason: "400 mapper_parsing_exception: \"x\"".into(),
        }];
        assert_eq!(dl.write(&[&a, &b], &rejected), (1, 0));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let l = lines(text.as_bytes());
        assert_eq!(l.len(), 1);
        assert_eq!(l[0]["status"], 400);
        assert_eq!(l[0]["reason"], "400 mapper_parsing_exception: \"x\"");
        assert_eq!(l[0]["record"]["event"]["summary"], "two");
        assert!(l[0]["@timestamp"].is_string());
    }

    #[test]
    fn dead_letter_stops_at_its_cap_with_whole_lines() {
        let path = temp_path("dlq-cap");
        let _ = std::fs::remove_file(&path);
        let a = record(Some(b"payload"), 1);
        let one_line = {
            let mut l = Vec::new();
            let r = Rejection {
                index: 0,
                status: 400,
                reason: "r".into(),
            };
            dead_letter_line(&mut l, &a, &r, SystemTime::now());
            l.len() as u64
        };
        let mut dl = DeadLetter::open(&path, one_line * 2 + 10).unwrap();
        let rejected: Vec<Rejection> = (0..3)
            .map(|index| Rejection {
                index,
                status: 400,
                reason: "r".into(),
            })
            .collect();
        assert_eq!(dl.write(&[&a, &a, &a], &rejected), (2, 1));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(lines(text.as_bytes()).len(), 2);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn no_dead_letter_file_counts_refused_as_lost() {
        let mut dl = DeadLetter::none();
        let a = record(None, 0);
        let r = Rejection {
            index: 0,
            status: 400,
            reason: "r".into(),
        };
        assert_eq!(dl.write(&[&a], &[r]), (0, 1));
    }

    /// Every leaf path of `v` (arrays collapse into their field).
    fn leaf_paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaf_paths(child, &p, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }

    /// The mapping type of `path` in a template: the field's, or that of a flattened object
    /// above it.
    fn mapped_type(template: &Value, path: &str) -> Option<String> {
        let mut node = &template["template"]["mappings"];
        for part in path.split('.') {
            node = node["properties"].get(part)?;
            if let Some(t) = node["type"].as_str() {
                return Some(t.to_string());
            }
        }
        None
    }

    fn tls_hello() -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
        let mut exts = vec![0, 0, 0, 8, 0, 6, 0, 0, 3, b'a', b'.', b'b'];
        exts.extend_from_slice(&[0, 0x10, 0, 5, 0, 3, 2, b'h', b'2']);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut msg = vec![1, 0];
        msg.extend_from_slice(&(body.len() as u16).to_be_bytes());
        msg.extend_from_slice(&body);
        let mut rec = vec![22, 3, 1];
        rec.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        rec.extend_from_slice(&msg);
        rec
    }

    #[test]
    fn templates_map_every_field_spip_writes() {
        let ssh = crate::proto::ssh::openssh_client_stream(b"curve25519-sha256");
        let http = b"POST /a?b=c HTTP/1.1\r\nHost: h:81\r\nUser-Agent: u\r\nX-Random-1: v\r\n\
                     Content-Length: 2\r\n\r\nhi";
        // The connection's fields, then what each payload adds (`inspect` writes a turn's
        // fields at their record paths, through the same code as a live record).
        let mut paths = Vec::new();
        for r in [record(Some(b"x"), 1), record(None, 0)] {
            leaf_paths(&serde_json::from_slice(&r).unwrap(), "", &mut paths);
        }
        for payload in [&http[..], &tls_hello(), &ssh, b"\x00\xffbinary"] {
            let mut fields = Vec::new();
            crate::inspect::inspect(payload, &mut fields);
            leaf_paths(&serde_json::from_slice(&fields).unwrap(), "", &mut paths);
        }
        // A scan summary with every optional field (IPv6 /64, a fingerprint, both tags).
        use std::time::Instant;
        let summaries = crate::scan::summary::Summaries::new(
            crate::scan::summary::SummaryConfig {
                max_sources: 8,
                interval: Duration::from_secs(60),
                scanner_ports: 1,
            },
            Instant::now(),
        );
        let v6 = "2001:db8::1".parse().unwrap();
        summaries.udp(v6, 53, Instant::now());
        summaries.accepted("192.0.2.1".parse().unwrap(), 80, Some("fp"), Instant::now());
        summaries.write_interval("sensor-1", Instant::now(), |line| {
            leaf_paths(&serde_json::from_slice(line).unwrap(), "", &mut paths);
        });
        for expected in [
            "tls.client.hash.ja4",
            "ssh.client.hash.hassh",
            "spip.ssh.hassh_algorithms",
            "url.port",
        ] {
            assert!(
                paths.iter().any(|p| p == expected),
                "sample lacks {expected}"
            );
        }
        for (text, flat) in [
            (INDEX_TEMPLATE, "flattened"),
            (OPENSEARCH_INDEX_TEMPLATE, "flat_object"),
        ] {
            let t: Value = serde_json::from_str(text).unwrap();
            assert_eq!(t["index_patterns"][0], "logs-spip-*");
            assert!(t["data_stream"].is_object());
            for p in &paths {
                assert!(mapped_type(&t, p).is_some(), "{p} is not mapped ({flat})");
            }
            assert_eq!(
                mapped_type(&t, "http.request.headers.x-random-1").as_deref(),
                Some(flat)
            );
            for (p, ty) in [
                ("spip.syn.ttl", "long"),
                ("spip.syn.options", "keyword"),
                ("spip.syn.ja4t", "keyword"),
            ] {
                assert_eq!(mapped_type(&t, p).as_deref(), Some(ty), "{p} ({flat})");
            }
            assert_eq!(mapped_type(&t, "source.ip").as_deref(), Some("ip"));
            assert_eq!(mapped_type(&t, "destination.ip").as_deref(), Some("ip"));
            assert_eq!(mapped_type(&t, "@timestamp").as_deref(), Some("date"));
            assert_eq!(mapped_type(&t, "source.port").as_deref(), Some("long"));
            assert_eq!(mapped_type(&t, "event.id").as_deref(), Some("keyword"));
            assert_eq!(
                mapped_type(&t, "tls.client.client_certificate.not_after").as_deref(),
                Some("date")
            );
        }
    }
}
