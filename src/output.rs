//! The capture side of the output: connection threads batch whole record lines in a
//! per-thread [`RecordSink`] and hand each full (or aged) batch to every sink at once.
//!
//! [`Output::submit`] wraps a batch once (shared, not copied, by all sinks) and offers it to
//! each sink's runner: an O(1) push per sink, never a wait. A sink whose byte budget is full
//! drops its oldest records and counts them (see [`crate::sinks::runner`]). SIGHUP (via
//! [`Output::request_reopen`]) asks the local file sink to reopen its file.

use crate::sinks::{Lines, SinkRunner};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// A batch is handed over once it holds this many bytes (or when the flush tick comes).
pub const BATCH_BYTES: usize = 32 * 1024;

/// Whole record lines, and how many.
pub struct Batch {
    pub bytes: Vec<u8>,
    pub records: usize,
}

/// Handle shared by all connection threads: every sink's runner.
#[derive(Clone)]
pub struct Output {
    sinks: Arc<[SinkRunner]>,
    reopen: Arc<AtomicBool>,
}

impl Output {
    /// Feeds `sinks`; `reopen` is the flag the local file sink checks before each write.
    pub fn new(sinks: Vec<SinkRunner>, reopen: Arc<AtomicBool>) -> Output {
        Output {
            sinks: sinks.into(),
            reopen,
        }
    }

    /// Hands a batch to every sink without waiting.
    pub fn submit(&self, batch: Batch) {
        if batch.records == 0 {
            return;
        }
        let lines = Lines::new(batch.bytes, batch.records);
        for sink in self.sinks.iter() {
            sink.offer(lines.clone());
        }
    }

    pub fn request_reopen(&self) {
        self.reopen.store(true, Ordering::Release);
    }

    pub fn sinks(&self) -> &[SinkRunner] {
        &self.sinks
    }

    /// Drains every sink at once until `until`; a sink still busy then is abandoned and what it
    /// held is counted as dropped.
    pub fn shutdown(&self, until: Instant) {
        self.begin_shutdown(until);
        self.finish_shutdown(until);
    }

    /// Starts every sink's drain (offers from now on are dropped and counted).
    pub fn begin_shutdown(&self, until: Instant) {
        for sink in self.sinks.iter() {
            sink.begin_shutdown(until);
        }
    }

    /// Whether every sink has drained.
    pub fn drained(&self) -> bool {
        self.sinks.iter().all(SinkRunner::is_done)
    }

    /// Waits for the drains until `until`, then abandons the sinks still busy.
    pub fn finish_shutdown(&self, until: Instant) {
        for sink in self.sinks.iter() {
            sink.finish_shutdown(until);
        }
    }
}

/// A connection thread's pending batch.
pub struct RecordSink {
    output: Output,
    batch: Vec<u8>,
    records: usize,
}

impl RecordSink {
    pub fn new(output: Output) -> Self {
        RecordSink {
            output,
            batch: Vec::with_capacity(BATCH_BYTES + 4096),
            records: 0,
        }
    }

    /// Appends one record via `write` (which must append exactly one whole line).
    pub fn push(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.batch);
        self.records += 1;
        if self.batch.len() >= BATCH_BYTES {
            self.flush();
        }
    }

    /// Hands what is pending to the writer.
    pub fn flush(&mut self) {
        if self.records == 0 {
            return;
        }
        let bytes = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_BYTES + 4096));
        let records = std::mem::take(&mut self.records);
        self.output.submit(Batch { bytes, records });
    }
}
