//! The sink layer: every output (file/stdout, Loom, Elasticsearch, Kafka) is a [`Sink`] driven by
//! the shared runner on its own thread.
//!
//! The capture path hands each batch of records to every sink's queue without waiting; retry,
//! backoff, `Retry-After`, the memory budget, counters and the shutdown drain are the runner's job.

use std::time::Duration;

#[cfg(feature = "kafka")]
pub mod kafka;

/// One output. Each sink runs on its own thread, fed by a queue bounded in bytes; the capture path never
/// waits for it. Retry with backoff, Retry-After, the memory budget, counters and the shutdown drain are
/// the shared runner's job (written once in src/sinks/), not the sink's.
pub trait Sink: Send + 'static {
    /// "file", "loom", "elasticsearch", "kafka": used in counters, metrics and messages.
    fn name(&self) -> &'static str;
    /// How the runner batches for this sink (from its config: batch_size, flush_interval, a byte cap).
    fn batching(&self) -> Batching;
    /// Delivers records, oldest first; each is one complete JSON object without its newline.
    /// Blocking is fine (own thread); bound every network call with a timeout.
    fn deliver(&mut self, records: &[&[u8]]) -> Delivery;
    /// Called once at shutdown after the last delivery (flush producers, close files).
    fn close(&mut self) {}
}

/// How the runner groups records before a [`Sink::deliver`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// At most this many records per delivery.
    pub max_records: usize,
    /// At most this many bytes (records without newlines) per delivery; a single larger record
    /// still goes alone.
    pub max_bytes: usize,
    /// A partial batch is delivered once its oldest record waited this long.
    pub flush_interval: Duration,
}

/// The outcome of one [`Sink::deliver`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Every record delivered (or already there, e.g. an Elasticsearch 409).
    Delivered,
    /// Nothing delivered: offer the same batch again later, no sooner than `after` when the server said so
    /// (Retry-After).
    RetryAll {
        after: Option<Duration>,
        error: String,
    },
    /// Per-record outcome: the records at `retry` (indices into `records`) are offered again; `rejected`
    /// more were refused for good (the sink wrote them to its dead-letter file, if it has one) and are
    /// counted as dropped.
    Partial {
        retry: Vec<usize>,
        rejected: usize,
        error: String,
    },
}
