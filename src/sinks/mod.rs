//! Outputs (placeholder with the agreed trait until the `sinks` branch is merged).

pub mod elastic;

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

pub struct Batching {
    pub max_records: usize,
    pub max_bytes: usize,
    pub flush_interval: std::time::Duration,
}

pub enum Delivery {
    /// Every record delivered (or already there, e.g. an Elasticsearch 409).
    Delivered,
    /// Nothing delivered: offer the same batch again later, no sooner than `after` when the server said so
    /// (Retry-After).
    RetryAll {
        after: Option<std::time::Duration>,
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
