//! Loom shipping: records POSTed in batches to a Loom collector, off the capture path.
//!
//! Wire protocol (same as the Go agent): `POST <url>` with a JSON array of records as the body
//! and the headers `Content-Type: application/json`, `X-Spip-ID: <sensor_id>` and
//! `Authorization: Bearer <token>`. A batch goes out when `batch_size` records are queued or
//! when its first record has waited `flush_interval`, whichever comes first.
//!
//! Design:
//! - [`Loom::offer`] appends the record's bytes to the open batch under a short mutex (no HTTP,
//!   no IO, no waiting on Loom ever happens under it) and returns. Batches are built at offer
//!   time: the body `[rec,rec,...]` grows in one buffer, so shipping never re-parses or copies
//!   records again.
//! - One dedicated blocking thread does all HTTP with ureq (rustls). Each request is bounded by a
//!   connect timeout and a total timeout, so a stalled Loom cannot hold the thread forever.
//! - Failures (connect errors, timeouts, 5xx, 408, 429) are retried with exponential backoff and
//!   jitter; `Retry-After` (seconds) is honoured on 429 and 503. A batch waiting for a retry stays
//!   at the head of the queue, so the memory budget (`max_pending_bytes`, covering queued,
//!   retrying and in-flight data) drops the oldest data first when Loom stays away too long.
//! - Other 4xx (and 3xx: redirects are not followed) are not retried: a bad token must not loop.
//!   The status is said once on stderr and the batch is counted as dropped.
//! - Nothing is ever written to stdout (it carries records).
//!
//! Bodies are sent uncompressed: the Go agent does not compress and Loom is not known to accept
//! `Content-Encoding: gzip`.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use crate::config::LoomConfig;
use crate::json::JsonWriter;

/// Loom counters, shared with the periodic stats line.
#[derive(Debug, Default)]
pub struct LoomCounters {
    /// Batches Loom accepted (2xx).
    pub batches_posted: AtomicU64,
    /// Records in those batches.
    pub records_posted: AtomicU64,
    /// Failed attempts that were (or would have been) retried.
    pub retries: AtomicU64,
    /// Records given up on: over the memory budget, rejected by Loom, or unsent at shutdown.
    pub records_dropped: AtomicU64,
    /// Failed POSTs of any kind (transport errors, timeouts, non-2xx).
    pub http_errors: AtomicU64,
}

impl LoomCounters {
    /// Writes `loom_batches`, `loom_records`, `loom_retries`, `loom_dropped` into the open object.
    pub fn write_stats(&self, w: &mut JsonWriter) {
        w.u64("loom_batches", self.batches_posted.load(Ordering::Relaxed));
        w.u64("loom_records", self.records_posted.load(Ordering::Relaxed));
        w.u64("loom_retries", self.retries.load(Ordering::Relaxed));
        w.u64("loom_dropped", self.records_dropped.load(Ordering::Relaxed));
    }
}

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
        LoomTuning {
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry_after_max: Duration::from_secs(300),
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

/// One batch: a JSON array under construction (`[` + records joined by `,`; `]` added on seal).
struct Batch {
    body: Vec<u8>,
    records: usize,
    /// When the first record arrived (for `flush_interval`).
    first_at: Instant,
}

struct State {
    /// Sealed batches, oldest first. A batch awaiting a retry is at the front.
    queue: VecDeque<Batch>,
    open: Option<Batch>,
    /// Bytes in `queue` + `open` + the batch in flight.
    pending_bytes: usize,
    /// Records in the batch in flight (0 when none).
    inflight_records: usize,
    /// Set by `shutdown`: drain until this instant, then stop.
    shutdown_deadline: Option<Instant>,
    /// Set when `shutdown` gave up waiting: the worker must not count anything any more.
    abandoned: bool,
    /// Worker has exited.
    done: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the worker (batch sealed, first record of a batch, shutdown).
    wake: Condvar,
    /// Signals `done`.
    done_cv: Condvar,
    counters: Arc<LoomCounters>,
    batch_size: usize,
    flush_interval: Duration,
    max_pending_bytes: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take shipping (or capture) down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn drop_records(&self, n: usize) {
        if n > 0 {
            self.counters
                .records_dropped
                .fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// Drops the oldest queued batches until `extra` more bytes fit the budget.
    /// Returns false if they still do not fit (everything left is in flight or open).
    fn make_room(&self, st: &mut State, extra: usize) -> bool {
        while st.pending_bytes + extra > self.max_pending_bytes {
            match st.queue.pop_front() {
                Some(b) => {
                    st.pending_bytes -= b.body.len();
                    self.drop_records(b.records);
                }
                None => return false,
            }
        }
        true
    }

    fn seal_open(&self, st: &mut State) {
        if let Some(mut b) = st.open.take() {
            b.body.push(b']');
            st.pending_bytes += 1;
            st.queue.push_back(b);
        }
    }
}

/// The Loom shipper: a bounded queue feeding one HTTP thread.
pub struct Loom {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
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
        let agent = build_agent(cfg, &tuning);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                open: None,
                pending_bytes: 0,
                inflight_records: 0,
                shutdown_deadline: None,
                abandoned: false,
                done: false,
            }),
            wake: Condvar::new(),
            done_cv: Condvar::new(),
            counters,
            batch_size: cfg.batch_size.max(1),
            flush_interval: cfg.flush_interval.max(Duration::from_millis(1)),
            max_pending_bytes: cfg.max_pending_bytes.max(1),
        });
        let worker = Worker {
            shared: shared.clone(),
            agent,
            url: cfg.url.clone(),
            sensor_id: cfg.sensor_id.clone(),
            auth: format!("Bearer {}", cfg.token),
            tuning,
            rng: seed(),
            said_status: Vec::new(),
            failing_since: None,
            dropped_mark: 0,
            said_over_budget: false,
        };
        let thread = std::thread::Builder::new()
            .name("spip-loom".into())
            .spawn(move || worker.run())?;
        Ok(Loom {
            shared,
            thread: Some(thread),
        })
    }

    /// Queues one record (a JSON object; a trailing newline is ignored). Never blocks on Loom:
    /// it only appends to an in-memory batch under a short lock. When the memory budget is
    /// full, the oldest queued batches are dropped and counted.
    pub fn offer(&self, record_json_line: &[u8]) {
        let mut rec = record_json_line;
        while let [head @ .., b'\n' | b'\r' | b' ' | b'\t'] = rec {
            rec = head;
        }
        if rec.is_empty() {
            return;
        }
        let sh = &*self.shared;
        let mut st = sh.lock();
        if st.shutdown_deadline.is_some() {
            drop(st);
            sh.drop_records(1);
            return;
        }
        // Bytes this record adds: separator or opening bracket, the record, and the closing
        // bracket counted ahead so a sealed batch never exceeds what was admitted.
        let extra = rec.len() + if st.open.is_some() { 1 } else { 2 };
        if !sh.make_room(&mut st, extra) {
            // Only the open batch (and the one in flight) is left: the open batch is the oldest
            // data that can still go.
            if let Some(open) = st.open.take() {
                st.pending_bytes -= open.body.len();
                sh.drop_records(open.records);
            }
            if st.pending_bytes + rec.len() + 2 > sh.max_pending_bytes {
                drop(st);
                sh.drop_records(1);
                return;
            }
        }
        let mut notify = false;
        let open = st.open.get_or_insert_with(|| {
            notify = true; // the worker must learn when this batch is due
            let mut body = Vec::with_capacity((rec.len() + 1) * sh.batch_size.min(64) + 2);
            body.push(b'[');
            Batch {
                body,
                records: 0,
                first_at: Instant::now(),
            }
        });
        let before = open.body.len();
        if open.records > 0 {
            open.body.push(b',');
        }
        open.body.extend_from_slice(rec);
        open.records += 1;
        // `notify` here means the batch is new: its `[` is counted too.
        let added = open.body.len() - before + usize::from(notify);
        let full = open.records >= sh.batch_size;
        st.pending_bytes += added;
        if full {
            sh.seal_open(&mut st);
            notify = true;
        }
        drop(st);
        if notify {
            sh.wake.notify_one();
        }
    }

    /// Bytes currently held (queued, open, in flight).
    pub fn pending_bytes(&self) -> usize {
        self.shared.lock().pending_bytes
    }

    /// Flushes what is queued, waiting at most `deadline`; what could not be sent by then is
    /// counted as dropped. Returns within `deadline` (plus scheduling slack) whatever Loom does.
    pub fn shutdown(mut self, deadline: Duration) {
        let sh = self.shared.clone();
        let until = Instant::now() + deadline;
        let mut st = sh.lock();
        st.shutdown_deadline = Some(until);
        sh.seal_open(&mut st);
        sh.wake.notify_one();
        while !st.done {
            let now = Instant::now();
            if now >= until {
                break;
            }
            st = sh
                .done_cv
                .wait_timeout(st, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if st.done {
            drop(st);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
            return;
        }
        // The worker is stuck in a request: give up on it. It will exit without counting.
        st.abandoned = true;
        let mut lost = st.inflight_records;
        for b in st.queue.drain(..) {
            lost += b.records;
        }
        st.pending_bytes = 0;
        drop(st);
        sh.drop_records(lost);
        eprintln!(
            "spip: loom: shutdown deadline reached; {lost} records not delivered (counted as dropped)"
        );
        // The thread is detached; it ends after its current request times out.
        self.thread.take();
    }
}

impl Drop for Loom {
    fn drop(&mut self) {
        if self.thread.is_some() {
            // Dropped without `shutdown`: stop the worker at once without flushing.
            let mut st = self.shared.lock();
            st.shutdown_deadline = Some(Instant::now());
            self.shared.seal_open(&mut st);
            drop(st);
            self.shared.wake.notify_one();
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

/// Seed for the jitter generator; no need for a crypto RNG.
fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (t ^ (std::process::id() as u64).rotate_left(32)) | 1
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

struct Worker {
    shared: Arc<Shared>,
    agent: ureq::Agent,
    url: String,
    sensor_id: String,
    auth: String,
    tuning: LoomTuning,
    rng: u64,
    /// Statuses already said on stderr (a bad token is said once, not per batch).
    said_status: Vec<u16>,
    /// Start of the current run of failures (for one "failing"/"recovered" message per outage).
    failing_since: Option<(Instant, u64)>,
    /// `records_dropped` after the last answer from Loom (drops beyond it are over-budget drops).
    dropped_mark: u64,
    /// Over-budget drops already said for the current outage.
    said_over_budget: bool,
}

impl Worker {
    fn run(mut self) {
        let sh = self.shared.clone();
        let mut backoff = self.tuning.backoff_min;
        let mut retry_at: Option<Instant> = None;
        let mut st = sh.lock();
        loop {
            if st.abandoned {
                break;
            }
            let now = Instant::now();
            if let Some(deadline) = st.shutdown_deadline {
                sh.seal_open(&mut st);
                if st.queue.is_empty() || now >= deadline {
                    let lost: usize = st.queue.drain(..).map(|b| b.records).sum();
                    st.pending_bytes = 0;
                    sh.drop_records(lost);
                    if lost > 0 {
                        eprintln!(
                            "spip: loom: shutdown: {lost} records not delivered (counted as dropped)"
                        );
                    }
                    break;
                }
            }
            // Seal the open batch once its first record has waited flush_interval.
            let mut wait_until: Option<Instant> = None;
            if let Some(open) = &st.open {
                let due = open.first_at + sh.flush_interval;
                if now >= due {
                    sh.seal_open(&mut st);
                } else {
                    wait_until = Some(due);
                }
            }
            if let Some(t) = retry_at {
                if now < t && !st.queue.is_empty() {
                    let t = match st.shutdown_deadline {
                        Some(d) => t.min(d),
                        None => t,
                    };
                    wait_until = Some(wait_until.map_or(t, |w| w.min(t)));
                    st = wait(&sh, st, wait_until);
                    continue;
                }
            }
            let Some(batch) = st.queue.pop_front() else {
                if let Some(d) = st.shutdown_deadline {
                    wait_until = Some(wait_until.map_or(d, |w| w.min(d)));
                }
                st = wait(&sh, st, wait_until);
                continue;
            };
            st.inflight_records = batch.records;
            let timeout = match st.shutdown_deadline {
                Some(d) => d
                    .saturating_duration_since(now)
                    .min(self.tuning.request_timeout),
                None => self.tuning.request_timeout,
            };
            drop(st);

            let outcome = self.post(&batch.body, timeout);

            st = sh.lock();
            st.inflight_records = 0;
            if st.abandoned {
                break; // shutdown already counted this batch
            }
            match outcome {
                Outcome::Delivered => {
                    st.pending_bytes -= batch.body.len();
                    let c = &sh.counters;
                    c.batches_posted.fetch_add(1, Ordering::Relaxed);
                    c.records_posted
                        .fetch_add(batch.records as u64, Ordering::Relaxed);
                    backoff = self.tuning.backoff_min;
                    retry_at = None;
                    self.dropped_mark = c.records_dropped.load(Ordering::Relaxed);
                    self.said_over_budget = false;
                    if let Some((since, failures)) = self.failing_since.take() {
                        eprintln!(
                            "spip: loom: delivering again after {failures} failed attempts over {:.1}s",
                            since.elapsed().as_secs_f64()
                        );
                    }
                }
                Outcome::Rejected { status, reason } => {
                    st.pending_bytes -= batch.body.len();
                    sh.counters.http_errors.fetch_add(1, Ordering::Relaxed);
                    sh.drop_records(batch.records);
                    self.dropped_mark = sh.counters.records_dropped.load(Ordering::Relaxed);
                    if !self.said_status.contains(&status) {
                        self.said_status.push(status);
                        eprintln!("{}", reject_message(status, &reason, batch.records));
                    }
                    // A rejection is an answer: Loom is up, no backoff needed.
                    backoff = self.tuning.backoff_min;
                    retry_at = None;
                }
                Outcome::Retry { after, what } => {
                    let c = &sh.counters;
                    c.http_errors.fetch_add(1, Ordering::Relaxed);
                    c.retries.fetch_add(1, Ordering::Relaxed);
                    match &mut self.failing_since {
                        Some((_, n)) => *n += 1,
                        None => {
                            self.failing_since = Some((Instant::now(), 1));
                            let hint = if what.contains("certificate") {
                                " (a self-signed Loom certificate needs [loom] insecure_skip_verify = true)"
                            } else {
                                ""
                            };
                            eprintln!(
                                "spip: loom: POST failed ({what}){hint}; retrying with backoff, keeping up to {} bytes",
                                sh.max_pending_bytes
                            );
                        }
                    }
                    if !self.said_over_budget
                        && c.records_dropped.load(Ordering::Relaxed) > self.dropped_mark
                    {
                        self.said_over_budget = true;
                        eprintln!(
                            "spip: loom: max_pending_bytes ({} bytes) full while Loom is unreachable; dropping the oldest records (counted in loom_dropped)",
                            sh.max_pending_bytes
                        );
                    }
                    // Back at the head: the budget drops it first if Loom stays away.
                    st.queue.push_front(batch);
                    let mut delay = self.jitter(backoff);
                    if let Some(a) = after {
                        delay = delay.max(a.min(self.tuning.retry_after_max));
                    }
                    retry_at = Some(Instant::now() + delay);
                    backoff = (backoff * 2).min(self.tuning.backoff_max);
                }
            }
        }
        st.done = true;
        drop(st);
        sh.done_cv.notify_all();
    }

    /// A delay in [d/2, d].
    fn jitter(&mut self, d: Duration) -> Duration {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11; // 53 bits
        let frac = r as f64 / (1u64 << 53) as f64;
        d.mul_f64(0.5 + 0.5 * frac)
    }

    fn post(&mut self, body: &[u8], timeout: Duration) -> Outcome {
        let result = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("X-Spip-ID", &self.sensor_id)
            .header("Authorization", &self.auth)
            .config()
            .timeout_global(Some(timeout.max(Duration::from_millis(1))))
            .build()
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

fn wait<'a>(
    sh: &'a Shared,
    st: MutexGuard<'a, State>,
    until: Option<Instant>,
) -> MutexGuard<'a, State> {
    match until {
        None => sh.wake.wait(st).unwrap_or_else(|e| e.into_inner()),
        Some(t) => {
            let d = t.saturating_duration_since(Instant::now());
            if d.is_zero() {
                return st;
            }
            sh.wake
                .wait_timeout(st, d)
                .unwrap_or_else(|e| e.into_inner())
                .0
        }
    }
}

/// The record writer hands every line it wrote locally to Loom.
impl crate::output::LineConsumer for Loom {
    fn consume(&mut self, line: &[u8]) {
        self.offer(line);
    }

    fn finish(self: Box<Self>, deadline: Duration) {
        (*self).shutdown(deadline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_members() {
        let c = LoomCounters::default();
        c.batches_posted.store(2, Ordering::Relaxed);
        c.records_posted.store(100, Ordering::Relaxed);
        c.retries.store(3, Ordering::Relaxed);
        c.records_dropped.store(4, Ordering::Relaxed);
        let mut buf = Vec::new();
        let mut w = JsonWriter::new(&mut buf);
        w.begin();
        c.write_stats(&mut w);
        w.finish();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            r#"{"loom_batches":2,"loom_records":100,"loom_retries":3,"loom_dropped":4}"#
        );
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
