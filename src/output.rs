//! Local record output: one dedicated writer thread, fed batches of whole lines.
//!
//! Connection threads append records to a per-thread [`RecordSink`] and hand full (or aged)
//! batches to the writer through a bounded queue, so they never wait on the disk. A batch holds
//! only whole lines and is written with one `write_all`, so lines are never torn or interleaved.
//! When the queue is full the batch is dropped and its records counted as lost, never silently.
//! SIGHUP (via [`Output::request_reopen`]) reopens the log file for logrotate.
//!
//! Built-in rotation ([`Rotation`]): before a batch that would push the file past `max_bytes`,
//! `F` becomes `F.1` (`F.1` → `F.2` …, the oldest beyond `max_files` is dropped) and a fresh `F`
//! is opened. Rotation happens only between batches, so a line is never split across files.

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

/// Size-based rotation of the log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before a batch that would make the file larger than this; 0 = never by size.
    pub max_bytes: u64,
    /// Rotated files kept (`F.1` … `F.max_files`); at least 1.
    pub max_files: usize,
}

impl Rotation {
    /// No built-in rotation (SIGHUP reopen only).
    pub const NEVER: Rotation = Rotation {
        max_bytes: 0,
        max_files: 1,
    };
}

enum Destination {
    Stdout,
    File {
        path: PathBuf,
        file: File,
        /// Bytes in the current file (from its size at open, plus what we wrote).
        size: u64,
        rotation: Rotation,
    },
}

impl Destination {
    fn open(path: Option<&Path>, rotation: Rotation) -> io::Result<Destination> {
        match path {
            None => Ok(Destination::Stdout),
            Some(p) => {
                let (file, size) = open_log(p)?;
                Ok(Destination::File {
                    path: p.to_path_buf(),
                    file,
                    size,
                    rotation,
                })
            }
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Destination::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Destination::File {
                path,
                file,
                size,
                rotation,
            } => {
                let len = bytes.len() as u64;
                // A fresh (empty) file always takes the batch, even one larger than the cap:
                // batches are never split.
                if rotation.max_bytes > 0 && *size > 0 && *size + len > rotation.max_bytes {
                    match rotate(path, rotation.max_files) {
                        Ok(()) => {
                            let (f, s) = open_log(path)?;
                            *file = f;
                            *size = s;
                        }
                        // Keep writing to the old file rather than losing records.
                        Err(e) => eprintln!("spip: rotating {} failed: {e}", path.display()),
                    }
                }
                file.write_all(bytes)?;
                *size += len;
                Ok(())
            }
        }
    }

    fn reopen(&mut self) -> io::Result<()> {
        if let Destination::File {
            path, file, size, ..
        } = self
        {
            let (f, s) = open_log(path)?;
            *file = f;
            *size = s;
        }
        Ok(())
    }
}

/// `F.(n-1)` → `F.n` … `F` → `F.1`; what was `F.max_files` is replaced (dropped).
fn rotate(path: &Path, max_files: usize) -> io::Result<()> {
    let numbered = |i: usize| {
        let mut s = path.as_os_str().to_owned();
        s.push(format!(".{i}"));
        PathBuf::from(s)
    };
    let max_files = max_files.max(1);
    for i in (1..max_files).rev() {
        match std::fs::rename(numbered(i), numbered(i + 1)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    std::fs::rename(path, numbered(1))
}

/// Opens (appending) and returns the file with its current size.
fn open_log(path: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open log_file {}: {e}", path.display()),
            )
        })?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((file, size))
}

impl Output {
    /// Opens the destination (so a bad `log_file` fails at start) and starts the writer.
    pub fn start(
        log_file: Option<&Path>,
        rotation: Rotation,
        max_queued_records: usize,
        counters: Arc<Counters>,
        consumer: Option<Box<dyn LineConsumer>>,
    ) -> io::Result<(Output, WriterThread)> {
        let dest = Destination::open(log_file, rotation)?;
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
        let (out, thread) =
            Output::start(Some(&path), Rotation::NEVER, 1000, counters.clone(), None).unwrap();
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
        let (out, thread) =
            Output::start(Some(&path), Rotation::NEVER, 16, counters.clone(), None).unwrap();
        out.submit(Batch {
            bytes: b"x\n".repeat(20),
            records: 20,
        });
        assert_eq!(counters.get(&counters.records_dropped), 20);
        drop(out);
        thread.join();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn size_rotation_keeps_whole_lines_and_at_most_n_files() {
        let dir = std::env::temp_dir().join(format!("spip-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("spip.jsonl");
        let counters = Arc::new(Counters::default());
        let rotation = Rotation {
            max_bytes: 1000,
            max_files: 3,
        };
        let (out, thread) =
            Output::start(Some(&path), rotation, 100_000, counters.clone(), None).unwrap();
        // 200 batches of 3 lines (~60 bytes each): far more than 4 files can hold.
        let mut n = 0u32;
        for _ in 0..200 {
            let mut bytes = Vec::new();
            for _ in 0..3 {
                bytes.extend_from_slice(
                    format!(
                        "{{\"n\":{n:08},\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}\n"
                    )
                    .as_bytes(),
                );
                n += 1;
            }
            out.submit(Batch { bytes, records: 3 });
        }
        drop(out);
        thread.join();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["spip.jsonl", "spip.jsonl.1", "spip.jsonl.2", "spip.jsonl.3"]
        );
        // Newest records in spip.jsonl, older in .1, .2, .3: consecutive, whole lines, at
        // most max_bytes each, and ending with the last record.
        let mut all = Vec::new();
        for name in ["spip.jsonl.3", "spip.jsonl.2", "spip.jsonl.1", "spip.jsonl"] {
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            assert!(text.len() <= 1000, "{name} is {} bytes", text.len());
            assert!(text.ends_with('\n'));
            // Each file starts at a batch boundary.
            let first: u32 = text[5..13].parse().unwrap();
            assert_eq!(first % 3, 0, "{name} starts mid-batch");
            for line in text.lines() {
                assert!(
                    line.starts_with("{\"n\":") && line.ends_with("\"}"),
                    "{line}"
                );
                all.push(line[5..13].parse::<u32>().unwrap());
            }
        }
        assert!(
            all.windows(2).all(|w| w[1] == w[0] + 1),
            "records out of order or lost"
        );
        assert_eq!(*all.last().unwrap(), n - 1);
        assert_eq!(counters.get(&counters.records_written), 600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn zero_max_bytes_never_rotates_and_existing_size_counts() {
        let dir = std::env::temp_dir().join(format!("spip-rot0-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.jsonl");
        // An existing file already at the cap: the first batch rotates it.
        std::fs::write(&path, "{\"old\":1}\n".repeat(10)).unwrap();
        let counters = Arc::new(Counters::default());
        let rot = Rotation {
            max_bytes: 100,
            max_files: 2,
        };
        let (out, thread) = Output::start(Some(&path), rot, 1000, counters.clone(), None).unwrap();
        out.submit(Batch {
            bytes: b"{\"new\":1}\n".to_vec(),
            records: 1,
        });
        drop(out);
        thread.join();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"new\":1}\n");
        assert!(dir.join("a.jsonl.1").exists());
        // max_bytes = 0: one file, however much is written.
        let (out, thread) =
            Output::start(Some(&path), Rotation::NEVER, 1000, counters.clone(), None).unwrap();
        for _ in 0..50 {
            out.submit(Batch {
                bytes: b"{\"more\":1}\n".to_vec(),
                records: 1,
            });
        }
        drop(out);
        thread.join();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 51);
        assert!(!dir.join("a.jsonl.2").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
