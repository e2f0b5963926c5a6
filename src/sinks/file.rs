//! The local output: records as JSON lines on stdout or in `log_file`.
//!
//! What it survives:
//! - the live file deleted or moved (an operator freeing space, an outside logrotate without
//!   SIGHUP): before each batch the path is checked against the open file; if it is gone or is
//!   another file, a fresh file is opened there (said once per event);
//! - a full disk: a batch is written whole or cut back to its last whole line (`ftruncate`), the
//!   unwritten records go back to the runner, which retries them with backoff within the sink's
//!   byte budget (drops beyond it are counted), so writing resumes when space returns;
//! - rotation failures: `F` is renamed aside first; only once that worked is the numbered
//!   history shifted, so a failed rename never deletes history. A failure is said once until a
//!   rotation works again.
//!
//! Rotation by size (`log_max_bytes`, numbered `F.1` … `F.N`) or by time (`log_rotate_interval`
//! with a strftime-style `log_file`, UTC, as tcppc does); retention by count (`log_max_files`),
//! age (`log_max_age`) and total size (`log_max_total_bytes`). SIGHUP reopens the file.

use super::{Batching, Delivery, Sink};
use chrono::format::{Item, StrftimeItems};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// The local output's sink name.
pub const NAME: &str = "file";

/// Where and how records are written locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOptions {
    /// None = stdout. With `rotate_interval`, a strftime-style pattern.
    pub path: Option<PathBuf>,
    /// Rotate before a batch would make the file larger than this; 0 = never by size.
    /// Not used with `rotate_interval` (each interval has its own file).
    pub max_bytes: u64,
    /// Rotated files kept; at least 1.
    pub max_files: usize,
    /// Rotated files older than this are deleted (None = no age limit).
    pub max_age: Option<Duration>,
    /// Rotated files are deleted, oldest first, while they add up to more (0 = no limit).
    pub max_total_bytes: u64,
    /// A new file every interval (aligned to the Unix epoch), named by `path` as a pattern.
    pub rotate_interval: Option<Duration>,
}

impl FileOptions {
    /// Records on stdout, no rotation.
    pub fn stdout() -> FileOptions {
        FileOptions {
            path: None,
            max_bytes: 0,
            max_files: 1,
            max_age: None,
            max_total_bytes: 0,
            rotate_interval: None,
        }
    }

    /// The `log_*` keys of the config.
    pub fn from_config(cfg: &crate::config::Config) -> FileOptions {
        FileOptions {
            path: cfg.log_file.clone(),
            max_bytes: cfg.log_max_bytes,
            max_files: cfg.log_max_files,
            max_age: cfg.log_max_age,
            max_total_bytes: cfg.log_max_total_bytes,
            rotate_interval: cfg.log_rotate_interval,
        }
    }

    /// One file, no built-in rotation (SIGHUP reopen only).
    pub fn file(path: &Path) -> FileOptions {
        FileOptions {
            path: Some(path.to_path_buf()),
            ..FileOptions::stdout()
        }
    }
}

/// Whether `pattern` is a valid strftime-style pattern with at least one conversion, all of
/// them in the file name (the folder must be fixed for retention to find the earlier files).
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if Path::new(pattern)
        .parent()
        .is_some_and(|d| d.to_string_lossy().contains('%'))
    {
        return Err(format!(
            "{pattern:?}: % conversions are allowed in the file name only, not in its folder"
        ));
    }
    let mut conversions = 0;
    for item in StrftimeItems::new(pattern) {
        match item {
            Item::Error => return Err(format!("{pattern:?} has an invalid % conversion")),
            Item::Numeric(..) | Item::Fixed(..) => conversions += 1,
            _ => {}
        }
    }
    if conversions == 0 {
        return Err(format!(
            "{pattern:?} has no % conversion (such as %Y%m%d-%H), so every interval would reuse one file"
        ));
    }
    Ok(())
}

/// `pattern` expanded for the interval starting at `start` (seconds since the epoch, UTC).
fn expand(pattern: &Path, start: u64) -> io::Result<PathBuf> {
    let text = pattern.to_string_lossy();
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, "bad log_file pattern");
    let when = chrono::DateTime::from_timestamp(i64::try_from(start).map_err(|_| bad())?, 0)
        .ok_or_else(bad)?;
    let mut name = String::new();
    write!(name, "{}", when.format(&text)).map_err(|_| bad())?;
    Ok(PathBuf::from(name))
}

enum Out {
    Stdout,
    File {
        file: File,
        /// The path the file was opened at (the pattern's expansion in time mode).
        live: PathBuf,
        /// Bytes in the file (its size at open plus what was written).
        size: u64,
        /// (device, inode) to notice the path now names another file or none.
        id: (u64, u64),
        /// Time mode: the interval this file belongs to.
        period: u64,
    },
}

/// The local output as a [`Sink`].
pub struct FileSink {
    opts: FileOptions,
    out: Out,
    /// Set by SIGHUP (through [`crate::output::Output::request_reopen`]).
    reopen: Arc<AtomicBool>,
    /// The batch as written: records joined by newlines (reused).
    buf: Vec<u8>,
    /// A rotation failure was said (cleared when one works again).
    said_rotation: bool,
}

impl FileSink {
    /// Opens the destination now, so a bad `log_file` fails at start.
    pub fn open(opts: FileOptions, reopen: Arc<AtomicBool>) -> io::Result<FileSink> {
        let out = match &opts.path {
            None => Out::Stdout,
            Some(p) => open_for(&opts, p, now_secs())?,
        };
        Ok(FileSink {
            opts,
            out,
            reopen,
            buf: Vec::with_capacity(1 << 20),
            said_rotation: false,
        })
    }

    /// Makes sure `out` is the file records must go to now.
    fn prepare(&mut self, batch_len: u64) -> io::Result<()> {
        let Some(pattern) = self.opts.path.clone() else {
            return Ok(());
        };
        let now = now_secs();
        if self.reopen.swap(false, Ordering::AcqRel) {
            self.out = open_for(&self.opts, &pattern, now)?;
            return Ok(());
        }
        let Out::File {
            live,
            size,
            id,
            period,
            ..
        } = &self.out
        else {
            return Ok(());
        };
        if let Some(interval) = self.opts.rotate_interval
            && now / interval.as_secs().max(1) != *period
        {
            let old = live.clone();
            self.out = open_for(&self.opts, &pattern, now)?;
            if let Out::File { live, .. } = &self.out
                && *live != old
            {
                self.retain_timed(&pattern, live.clone());
            }
            return Ok(());
        }
        match std::fs::metadata(live) {
            Ok(m) if (m.dev(), m.ino()) == *id => {}
            Ok(_) | Err(_) => {
                eprintln!(
                    "spip: log_file {} was deleted or moved; writing to a fresh file there",
                    live.display()
                );
                self.out = open_for(&self.opts, &pattern, now)?;
                return Ok(());
            }
        }
        if self.opts.rotate_interval.is_none()
            && self.opts.max_bytes > 0
            && *size > 0
            && *size + batch_len > self.opts.max_bytes
        {
            match rotate_numbered(&pattern, self.opts.max_files) {
                Ok(()) => {
                    self.said_rotation = false;
                    self.out = open_for(&self.opts, &pattern, now)?;
                    self.retain_numbered(&pattern);
                }
                Err(e) => {
                    // Keep writing to the current file rather than lose records.
                    if !self.said_rotation {
                        self.said_rotation = true;
                        eprintln!(
                            "spip: rotating {} failed: {e}; writing on to the current file (said once until a rotation works)",
                            pattern.display()
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Age and total-size retention over `F.1` … `F.max_files` (count is kept by the shift).
    fn retain_numbered(&self, path: &Path) {
        let files: Vec<PathBuf> = (1..=self.opts.max_files)
            .map(|i| numbered(path, i))
            .collect();
        self.retain(files);
    }

    /// Count, age and total-size retention over earlier files of the time pattern: files in the
    /// same folder whose whole path matches the pattern.
    fn retain_timed(&self, pattern: &Path, live: PathBuf) {
        let dir = match pattern.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let pattern = pattern.to_string_lossy();
        let matches = |p: &Path| {
            let mut parsed = chrono::format::Parsed::new();
            chrono::format::parse(
                &mut parsed,
                &p.to_string_lossy(),
                StrftimeItems::new(&pattern),
            )
            .is_ok()
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut files: Vec<(SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| matches(p))
            .filter(|p| *p != live)
            .filter_map(|p| {
                let m = std::fs::metadata(&p).ok()?;
                m.is_file().then_some(m.modified().ok().map(|t| (t, p))?)
            })
            .collect();
        // Newest first, as numbered files are.
        files.sort_by_key(|f| std::cmp::Reverse(f.0));
        let mut keep: Vec<PathBuf> = files.into_iter().map(|(_, p)| p).collect();
        for extra in keep.split_off(keep.len().min(self.opts.max_files)) {
            remove(&extra);
        }
        self.retain(keep);
    }

    /// Deletes, from `files` (newest first), those older than `max_age` and the oldest ones
    /// while all add up to more than `max_total_bytes`.
    fn retain(&self, files: Vec<PathBuf>) {
        let now = SystemTime::now();
        let mut total = 0u64;
        for f in files {
            let Ok(m) = std::fs::metadata(&f) else {
                continue;
            };
            let too_old = self.opts.max_age.is_some_and(|age| {
                m.modified()
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|d| d > age)
            });
            total += m.len();
            let too_much = self.opts.max_total_bytes > 0 && total > self.opts.max_total_bytes;
            if too_old || too_much {
                remove(&f);
            }
        }
    }

    /// Writes `buf` whole or cuts the file back to its last whole line; returns the bytes
    /// that are in the file and the error, if any.
    fn write_whole_lines(&mut self) -> (usize, Option<io::Error>) {
        match &mut self.out {
            Out::Stdout => {
                let mut out = io::stdout().lock();
                match out.write_all(&self.buf).and_then(|()| out.flush()) {
                    Ok(()) => (self.buf.len(), None),
                    // A pipe cannot be cut back; what reached it is unknown, so retry all.
                    Err(e) => (0, Some(e)),
                }
            }
            Out::File { file, size, .. } => {
                let mut done = 0;
                while done < self.buf.len() {
                    match file.write(&self.buf[done..]) {
                        Ok(0) => {
                            return cut_back(
                                file,
                                size,
                                &self.buf,
                                done,
                                io::ErrorKind::WriteZero.into(),
                            );
                        }
                        Ok(n) => done += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return cut_back(file, size, &self.buf, done, e),
                    }
                }
                *size += done as u64;
                (done, None)
            }
        }
    }
}

/// After a short write: truncate to the last whole line so no torn line stays in the file.
fn cut_back(
    file: &mut File,
    size: &mut u64,
    buf: &[u8],
    done: usize,
    error: io::Error,
) -> (usize, Option<io::Error>) {
    let keep = memchr::memrchr(b'\n', &buf[..done]).map_or(0, |i| i + 1);
    if keep < done
        && let Err(e) = file.set_len(*size + keep as u64)
    {
        eprintln!("spip: cutting a torn line from the log file failed: {e}");
    }
    *size += keep as u64;
    (keep, Some(error))
}

impl Sink for FileSink {
    fn name(&self) -> &'static str {
        NAME
    }

    fn batching(&self) -> Batching {
        // Write as soon as anything is there; large writes when the disk is behind, but never
        // more than a rotated file may hold (a batch is never split across files).
        let cap = match self.opts.max_bytes {
            0 => 1 << 20,
            n => n.min(1 << 20) as usize,
        };
        Batching {
            max_records: 1 << 16,
            max_bytes: cap,
            flush_interval: Duration::ZERO,
        }
    }

    fn deliver(&mut self, records: &[&[u8]]) -> Delivery {
        self.buf.clear();
        for r in records {
            self.buf.extend_from_slice(r);
            self.buf.push(b'\n');
        }
        if let Err(e) = self.prepare(self.buf.len() as u64) {
            return Delivery::RetryAll {
                after: None,
                error: e.to_string(),
            };
        }
        let (written, error) = self.write_whole_lines();
        match error {
            None => Delivery::Delivered,
            Some(e) => {
                let whole = memchr::memchr_iter(b'\n', &self.buf[..written]).count();
                Delivery::Partial {
                    retry: (whole..records.len()).collect(),
                    rejected: 0,
                    error: format!("writing records failed: {e}"),
                }
            }
        }
    }

    fn close(&mut self) {
        if let Out::File { file, .. } = &mut self.out {
            // The last records should survive a power cut right after the stop.
            let _ = file.sync_data();
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Opens (appending) the file records go to now.
fn open_for(opts: &FileOptions, pattern: &Path, now: u64) -> io::Result<Out> {
    let (live, period) = match opts.rotate_interval {
        Some(interval) => {
            let secs = interval.as_secs().max(1);
            let period = now / secs;
            (expand(pattern, period * secs)?, period)
        }
        None => (pattern.to_path_buf(), 0),
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&live)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open log_file {}: {e}", live.display()),
            )
        })?;
    let m = file.metadata()?;
    Ok(Out::File {
        file,
        size: m.len(),
        id: (m.dev(), m.ino()),
        live,
        period,
    })
}

fn numbered(path: &Path, i: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// `F` → `F.1` (via `F.rotating`, so a failed rename touches nothing), after shifting
/// `F.(n-1)` → `F.n`; what was `F.max_files` is replaced.
fn rotate_numbered(path: &Path, max_files: usize) -> io::Result<()> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".rotating");
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside)?;
    for i in (1..max_files.max(1)).rev() {
        match std::fs::rename(numbered(path, i), numbered(path, i + 1)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                // Put the live file back: nothing is lost, the rotation is said and retried.
                let _ = std::fs::rename(&aside, path);
                return Err(e);
            }
        }
    }
    std::fs::rename(&aside, numbered(path, 1))
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        eprintln!("spip: removing old log file {} failed: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn dir(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("spip-file-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn recs(range: std::ops::Range<u32>) -> Vec<Vec<u8>> {
        range
            .map(|i| {
                format!("{{\"n\":{i:08},\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}").into_bytes()
            })
            .collect()
    }

    fn deliver(sink: &mut FileSink, records: &[Vec<u8>]) -> Delivery {
        let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        sink.deliver(&slices)
    }

    fn numbers(path: &Path) -> Vec<u32> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| l[5..13].parse().unwrap())
            .collect()
    }

    fn open(opts: FileOptions) -> (FileSink, Arc<AtomicBool>) {
        let reopen = Arc::new(AtomicBool::new(false));
        (FileSink::open(opts, reopen.clone()).unwrap(), reopen)
    }

    #[test]
    fn whole_lines_and_sighup_reopen() {
        let d = dir("reopen");
        let path = d.0.join("r.jsonl");
        let (mut sink, reopen) = open(FileOptions::file(&path));
        assert_eq!(deliver(&mut sink, &recs(0..100)), Delivery::Delivered);
        let moved = d.0.join("r.jsonl.1");
        std::fs::rename(&path, &moved).unwrap();
        reopen.store(true, Ordering::Release);
        assert_eq!(deliver(&mut sink, &recs(100..101)), Delivery::Delivered);
        assert_eq!(numbers(&moved), (0..100).collect::<Vec<_>>());
        assert_eq!(numbers(&path), vec![100]);
    }

    #[test]
    fn a_deleted_live_file_is_replaced_and_history_stays() {
        let d = dir("deleted");
        let path = d.0.join("s.jsonl");
        let opts = FileOptions {
            max_bytes: 1000,
            max_files: 3,
            ..FileOptions::file(&path)
        };
        let (mut sink, _) = open(opts);
        for i in 0..20 {
            assert_eq!(
                deliver(&mut sink, &recs(i * 3..i * 3 + 3)),
                Delivery::Delivered
            );
        }
        let history: Vec<Vec<u32>> = (1..=3).map(|i| numbers(&numbered(&path, i))).collect();
        std::fs::remove_file(&path).unwrap();
        for i in 20..23 {
            assert_eq!(
                deliver(&mut sink, &recs(i * 3..i * 3 + 3)),
                Delivery::Delivered
            );
        }
        // The later records are on disk in a fresh live file; no rotation ran, history intact.
        assert_eq!(numbers(&path), (60..69).collect::<Vec<_>>());
        let after: Vec<Vec<u32>> = (1..=3).map(|i| numbers(&numbered(&path, i))).collect();
        assert_eq!(history, after);
    }

    #[test]
    fn size_rotation_keeps_whole_lines_in_order_and_at_most_n_files() {
        let d = dir("size");
        let path = d.0.join("spip.jsonl");
        let opts = FileOptions {
            max_bytes: 1000,
            max_files: 3,
            ..FileOptions::file(&path)
        };
        let (mut sink, _) = open(opts);
        for i in 0..200 {
            assert_eq!(
                deliver(&mut sink, &recs(i * 3..i * 3 + 3)),
                Delivery::Delivered
            );
        }
        let mut names: Vec<String> = std::fs::read_dir(&d.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["spip.jsonl", "spip.jsonl.1", "spip.jsonl.2", "spip.jsonl.3"]
        );
        let mut all = Vec::new();
        for name in ["spip.jsonl.3", "spip.jsonl.2", "spip.jsonl.1", "spip.jsonl"] {
            let p = d.0.join(name);
            assert!(std::fs::metadata(&p).unwrap().len() <= 1000);
            all.extend(numbers(&p));
        }
        assert!(
            all.windows(2).all(|w| w[1] == w[0] + 1),
            "lost or out of order"
        );
        assert_eq!(all.last(), Some(&599));
    }

    #[test]
    fn a_failed_rotation_deletes_no_history_and_writing_goes_on() {
        let d = dir("rotfail");
        let path = d.0.join("s.jsonl");
        let opts = FileOptions {
            max_bytes: 1000,
            max_files: 2,
            ..FileOptions::file(&path)
        };
        let (mut sink, _) = open(opts);
        for i in 0..30 {
            deliver(&mut sink, &recs(i * 3..i * 3 + 3));
        }
        let history: Vec<Vec<u32>> = (1..=2).map(|i| numbers(&numbered(&path, i))).collect();
        // Make every rename of the live file fail: its aside name is a non-empty folder.
        let aside = d.0.join("s.jsonl.rotating");
        std::fs::create_dir_all(aside.join("x")).unwrap();
        for i in 30..60 {
            assert_eq!(
                deliver(&mut sink, &recs(i * 3..i * 3 + 3)),
                Delivery::Delivered
            );
        }
        assert!(sink.said_rotation, "the failure is said (once)");
        let after: Vec<Vec<u32>> = (1..=2).map(|i| numbers(&numbered(&path, i))).collect();
        assert_eq!(
            history, after,
            "history shifted or deleted by a failed rotation"
        );
        // Nothing lost: the live file took the records the rotation could not.
        let live = numbers(&path);
        assert_eq!(live.last(), Some(&179));
        assert!(live.windows(2).all(|w| w[1] == w[0] + 1));
        // Once renames work again, rotation resumes and the flag is cleared.
        std::fs::remove_dir_all(&aside).unwrap();
        deliver(&mut sink, &recs(180..183));
        assert!(!sink.said_rotation);
        assert_eq!(numbers(&numbered(&path, 1)).last(), Some(&179));
    }

    #[test]
    fn total_size_retention_deletes_the_oldest() {
        let d = dir("total");
        let path = d.0.join("t.jsonl");
        let opts = FileOptions {
            max_bytes: 1000,
            max_files: 10,
            max_total_bytes: 2000,
            ..FileOptions::file(&path)
        };
        let (mut sink, _) = open(opts);
        for i in 0..100 {
            deliver(&mut sink, &recs(i * 3..i * 3 + 3));
        }
        let rotated: u64 = (1..=10)
            .filter_map(|i| std::fs::metadata(numbered(&path, i)).ok())
            .map(|m| m.len())
            .sum();
        assert!(rotated <= 2000, "{rotated}");
        assert!(numbered(&path, 1).exists() && !numbered(&path, 4).exists());
    }

    #[test]
    fn time_rotation_names_files_by_pattern_and_keeps_the_count() {
        let d = dir("time");
        let pattern = d.0.join("spip-%Y%m%d-%H%M%S.jsonl");
        let opts = FileOptions {
            max_files: 2,
            rotate_interval: Some(Duration::from_secs(1)),
            ..FileOptions::file(&pattern)
        };
        let (mut sink, _) = open(opts);
        // Not one of ours, though it shares the text before the first `%`.
        std::fs::write(d.0.join("spip-notes.txt"), "keep me").unwrap();
        for i in 0..4 {
            deliver(&mut sink, &recs(i..i + 1));
            std::thread::sleep(Duration::from_millis(1050));
        }
        deliver(&mut sink, &recs(4..5));
        let mut names: Vec<String> = std::fs::read_dir(&d.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names.pop().as_deref(), Some("spip-notes.txt"));
        // The live file and two earlier ones; each named by its interval's start.
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("spip-") && n.len() == "spip-20260101-000000.jsonl".len())
        );
        assert_eq!(numbers(&d.0.join(&names[2])), vec![4]);
    }

    #[test]
    fn patterns_are_checked() {
        assert!(check_pattern("/var/log/spip/%Y%m%d.jsonl").is_ok());
        assert!(check_pattern("/var/log/spip/plain.jsonl").is_err());
        assert!(check_pattern("/var/log/spip/%Q.jsonl").is_err());
        assert!(check_pattern("/var/log/%Y/spip.jsonl").is_err());
    }

    #[test]
    fn a_short_write_is_cut_back_to_the_last_whole_line() {
        let d = dir("torn");
        let path = d.0.join("f.jsonl");
        std::fs::write(&path, "old\n").unwrap();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        let buf = b"a\nbb\nccc\n";
        // As if the disk filled after 7 of 9 bytes: "a\nbb\ncc" reached the file.
        file.write_all(&buf[..7]).unwrap();
        let mut size = 4;
        let (kept, err) = cut_back(
            &mut file,
            &mut size,
            buf,
            7,
            io::ErrorKind::StorageFull.into(),
        );
        assert_eq!(kept, 5);
        assert!(err.is_some());
        assert_eq!(size, 9);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\na\nbb\n");
    }
}
