//! The sink layer: every output (file/stdout, Loom, Elasticsearch, Kafka) is a [`Sink`] driven by
//! the shared runner on its own thread.
//!
//! The capture path hands each batch of records to every sink's queue without waiting; retry,
//! backoff, `Retry-After`, the memory budget, counters and the shutdown drain are the runner's job.

use crate::stats::{CounterSet, counter_table};
use std::sync::Arc;
use std::time::Duration;

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
    /// What only this sink counts (beside the runner's [`SinkCounters`]), for the stats line
    /// and `/metrics`.
    fn own_counters(&self) -> Option<Arc<dyn CounterSet>> {
        None
    }
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

pub mod elastic;
pub mod file;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod loom;
pub mod metrics;
pub mod runner;

pub use runner::{Lines, RetryPolicy, SinkRunner};

use crate::json::JsonWriter;

counter_table! {
    /// One sink's counters, kept by the runner (Relaxed: statistics, not synchronization).
    /// On the stats line as `<sink>_<key>`, at `/metrics` with a `sink` label.
    pub struct SinkCounters {
        /// Deliveries that got at least one record through.
        batches: Counter "sink_batches", "Deliveries that got at least one record through";
        /// Records delivered.
        sent as "records": Counter "sink_records", "Records a sink delivered";
        /// Failed deliveries that were retried.
        retries: Counter "sink_retries", "Deliveries retried";
        /// Records given up on: over the byte budget, refused for good, or left at shutdown.
        dropped: Counter "sink_dropped",
            "Records a sink gave up on (budget full, refused, left at shutdown)";
        /// Deliveries that did not deliver everything (transport errors, refusals, full disk).
        errors: Counter "sink_errors", "Deliveries that did not deliver everything";
        /// Bytes the sink holds now: queued, in flight, awaiting a retry.
        queue_bytes: Gauge "sink_queue_bytes",
            "Bytes a sink holds (queued, in flight, awaiting a retry)";
    }
}

/// A running sink's counters, as the stats line and `/metrics` read them.
#[derive(Debug, Clone)]
pub struct SinkStats {
    pub name: &'static str,
    pub counters: Arc<SinkCounters>,
    /// What only this sink counts ([`Sink::own_counters`]).
    pub own: Option<Arc<dyn CounterSet>>,
}

impl SinkStats {
    /// Writes `<name>_batches`, `_records`, `_retries`, `_dropped`, `_errors`, `_queue_bytes`
    /// and the sink's own counters.
    pub fn write_stats(&self, w: &mut JsonWriter) {
        crate::stats::write_prefixed(self.name, &*self.counters, w);
        if let Some(own) = &self.own {
            crate::stats::write_prefixed(self.name, &**own, w);
        }
    }
}

/// Starts every configured sink (the local output first) and returns the capture path's
/// handle to them. Call with the handled signals already blocked: each sink has a thread.
pub fn start_all(cfg: &crate::config::Config) -> std::io::Result<crate::output::Output> {
    let reopen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let local = file::FileSink::open(file::FileOptions::from_config(cfg), reopen.clone())?;
    if cfg.log_file.is_none() && std::env::var_os("JOURNAL_STREAM").is_some() {
        eprintln!(
            "spip: warning: records go to journald, which splits lines longer than its LineMax \
             (48K by default) and a record can be larger; set log_file, or raise LineMax"
        );
    }
    let mut runners = vec![SinkRunner::start(
        Box::new(local),
        cfg.sink_queue_bytes,
        RetryPolicy::default(),
        Arc::new(SinkCounters::default()),
    )?];
    if cfg.loom.enabled {
        if let Some(w) = loom::cleartext_warning(&cfg.loom) {
            eprintln!("{w}");
        }
        let shipper = loom::Loom::start(&cfg.loom, Arc::new(SinkCounters::default()))?;
        eprintln!(
            "spip: shipping records to Loom at {} (batch {}, every {:?})",
            cfg.loom.url, cfg.loom.batch_size, cfg.loom.flush_interval
        );
        runners.push(shipper.into_runner());
    }
    if cfg.elasticsearch.enabled {
        runners.push(elastic::start(
            &cfg.elasticsearch,
            Arc::new(SinkCounters::default()),
            RetryPolicy::default(),
        )?);
    }
    #[cfg(feature = "kafka")]
    if cfg.kafka.enabled {
        let sink = kafka::KafkaSink::new(&cfg.kafka).map_err(|e| {
            std::io::Error::other(format!("kafka: cannot create the producer: {e}"))
        })?;
        eprintln!(
            "spip: producing records to Kafka topic {} at {} (batch {}, every {:?})",
            cfg.kafka.topic,
            cfg.kafka.brokers.join(","),
            cfg.kafka.batch_size,
            cfg.kafka.flush_interval
        );
        runners.push(SinkRunner::start(
            Box::new(sink),
            cfg.kafka.max_pending_bytes,
            RetryPolicy::default(),
            Arc::new(SinkCounters::default()),
        )?);
    }
    Ok(crate::output::Output::new(runners, reopen))
}
