//! Local record output: one dedicated writer thread, fed batches of whole lines.
//!
//! Connection threads append records to a per-thread [`RecordSink`] and hand full (or aged)
//! batches to the writer through a bounded queue, so they never wait on the disk. A batch holds
//! only whole lines and is written with one `write_all`, so lines are never torn or interleaved.
//! When the queue is full the batch is dropped and its records counted as lost, never silently.
//! SIGHUP (via [`Output::request_reopen`]) reopens the log file for logrotate.

use crate::stats::Counters;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A batch is handed over once it holds this many bytes (or when the flush tick comes).
pub const BATCH_BYTES: usize = 32 * 1024;

/// Whole record lines, and how many.
pub struct Batch {
    pub bytes: Vec<u8>,
    pub records: usize,
}

/// Receives each record line after it was written locally (the Loom shipper).
pub trait LineConsumer: Send {
    fn consume(&mut self, line: &[u8]);
    /// Called when the writer stops; flush within `deadline`.
    fn finish(self: Box<Self>, deadline: Duration);
}

/// Handle shared by all connection threads.
#[derive(Clone)]
pub struct Output {
    tx: SyncSender<Batch>,
    queued_records: Arc<AtomicUsize>,
    max_queued_records: usize,
    reopen: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

/// The writer thread; join it after every [`Output`] clone is dropped.
pub struct WriterThread {
    handle: JoinHandle<()>,
}

impl WriterThread {
    pub fn join(self) {
        let _ = self.handle.join();
    }
}

enum Destination {
    Stdout,
    File { path: PathBuf, file: File },
}

impl Destination {
    fn open(path: Option<&Path>) -> io::Result<Destination> {
        match path {
            None => Ok(Destination::Stdout),
            Some(p) => Ok(Destination::File {
                path: p.to_path_buf(),
                file: open_log(p)?,
            }),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Destination::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Destination::File { file, .. } => file.write_all(bytes),
        }
    }

    fn reopen(&mut self) -> io::Result<()> {
        if let Destination::File { path, file } = self {
            *file = open_log(path)?;
        }
        Ok(())
    }
}

fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open log_file {}: {e}", path.display()),
            )
        })
}

impl Output {
    /// Opens the destination (so a bad `log_file` fails at start) and starts the writer.
    pub fn start(
        log_file: Option<&Path>,
        max_queued_records: usize,
        counters: Arc<Counters>,
        consumer: Option<Box<dyn LineConsumer>>,
    ) -> io::Result<(Output, WriterThread)> {
        let dest = Destination::open(log_file)?;
        // Batches are at least one record; bound the count so memory stays bounded too.
        let (tx, rx) = mpsc::sync_channel(4096);
        let queued_records = Arc::new(AtomicUsize::new(0));
        let reopen = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            rx,
            dest,
            queued_records: queued_records.clone(),
            reopen: reopen.clone(),
            counters: counters.clone(),
            consumer,
            last_error_report: None,
        };
        let handle = std::thread::Builder::new()
            .name("spip-writer".into())
            .spawn(move || writer.run())?;
        Ok((
            Output {
                tx,
                queued_records,
                max_queued_records,
                reopen,
                counters,
            },
            WriterThread { handle },
        ))
    }

    /// Hands a batch to the writer without waiting; if the writer is behind, the batch is
    /// dropped and counted.
    pub fn submit(&self, batch: Batch) {
        if batch.records == 0 {
            return;
        }
        let n = batch.records;
        let before = self.queued_records.fetch_add(n, Ordering::Relaxed);
        if before + n > self.max_queued_records {
            self.queued_records.fetch_sub(n, Ordering::Relaxed);
            self.counters.add(&self.counters.records_dropped, n as u64);
            return;
        }
        match self.tx.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) => {
                self.queued_records.fetch_sub(b.records, Ordering::Relaxed);
                self.counters
                    .add(&self.counters.records_dropped, b.records as u64);
            }
        }
    }

    pub fn request_reopen(&self) {
        self.reopen.store(true, Ordering::Release);
    }
}

struct Writer {
    rx: Receiver<Batch>,
    dest: Destination,
    queued_records: Arc<AtomicUsize>,
    reopen: Arc<AtomicBool>,
    counters: Arc<Counters>,
    consumer: Option<Box<dyn LineConsumer>>,
    last_error_report: Option<Instant>,
}

impl Writer {
    fn run(mut self) {
        loop {
            match self.rx.recv_timeout(Duration::from_millis(200)) {
                Ok(batch) => self.write(batch),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.reopen.swap(false, Ordering::AcqRel)
                && let Err(e) = self.dest.reopen()
            {
                eprintln!("spip: {e}; keeping the old file open");
            }
        }
        if let Some(consumer) = self.consumer.take() {
            // Bounded: SIGTERM must end the process even when Loom is unreachable.
            consumer.finish(Duration::from_secs(5));
        }
    }

    fn write(&mut self, batch: Batch) {
        self.queued_records
            .fetch_sub(batch.records, Ordering::Relaxed);
        match self.dest.write_all(&batch.bytes) {
            Ok(()) => self
                .counters
                .add(&self.counters.records_written, batch.records as u64),
            Err(e) => {
                self.counters
                    .add(&self.counters.records_dropped, batch.records as u64);
                // One line a minute at most: a full disk must not flood stderr too.
                if self
                    .last_error_report
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(60))
                {
                    eprintln!("spip: writing records failed: {e} (records are counted as dropped)");
                    self.last_error_report = Some(Instant::now());
                }
            }
        }
        if let Some(consumer) = self.consumer.as_mut() {
            for line in batch.bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                consumer.consume(line);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_reach_the_file_whole_and_reopen_works() {
        let dir = std::env::temp_dir().join(format!("spip-out-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("r.jsonl");
        let _ = std::fs::remove_file(&path);
        let counters = Arc::new(Counters::default());
        let (out, thread) = Output::start(Some(&path), 1000, counters.clone(), None).unwrap();
        let mut sink = RecordSink::new(out.clone());
        for i in 0..100 {
            sink.push(|b| b.extend_from_slice(format!("{{\"n\":{i}}}\n").as_bytes()));
        }
        sink.flush();
        // Rotate: move the file away, ask for a reopen, write more.
        std::thread::sleep(Duration::from_millis(300));
        let rotated = dir.join("r.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        out.request_reopen();
        std::thread::sleep(Duration::from_millis(400));
        sink.push(|b| b.extend_from_slice(b"{\"n\":100}\n"));
        sink.flush();
        drop(sink);
        drop(out);
        thread.join();
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old.lines().count(), 100);
        assert_eq!(new, "{\"n\":100}\n");
        assert_eq!(counters.get(&counters.records_written), 101);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn overflow_is_counted_not_blocking() {
        let counters = Arc::new(Counters::default());
        let path = std::env::temp_dir().join(format!("spip-ovf-{}.jsonl", std::process::id()));
        let (out, thread) = Output::start(Some(&path), 16, counters.clone(), None).unwrap();
        out.submit(Batch {
            bytes: b"x\n".repeat(20),
            records: 20,
        });
        assert_eq!(counters.get(&counters.records_dropped), 20);
        drop(out);
        thread.join();
        let _ = std::fs::remove_file(&path);
    }
}
