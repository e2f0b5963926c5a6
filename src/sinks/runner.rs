//! The shared runner: one thread per [`Sink`], fed by a queue bounded in bytes.
//!
//! The capture path calls [`SinkRunner::offer`] with a chunk of whole record lines: an O(1)
//! push under a short mutex, never a wait on the sink. Everything the sink holds (queued chunks,
//! the batch in flight, a batch waiting to be retried) counts against one byte budget,
//! `max_bytes`; when a new chunk would not fit, the oldest queued chunks are dropped (and
//! counted) first, so an outage keeps the newest records.
//!
//! The runner thread cuts batches per the sink's [`Batching`] (lines are split once, as they
//! are taken), delivers them, and on failure puts the records back at the head of the queue and
//! waits an exponential, jittered backoff (at least the server's `Retry-After`). Shutdown drains
//! within a deadline; what is left then is counted as dropped.

use super::{Batching, Delivery, Sink, SinkCounters, SinkStats};
use crate::stats::CounterSet;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Whole record lines (each ending in `\n`), shared by every sink's queue.
#[derive(Debug)]
pub struct Lines {
    pub bytes: Vec<u8>,
    pub records: usize,
    /// When the capture path handed them over (for `flush_interval`).
    pub at: Instant,
}

impl Lines {
    pub fn new(bytes: Vec<u8>, records: usize) -> Arc<Lines> {
        Arc::new(Lines {
            bytes,
            records,
            at: Instant::now(),
        })
    }
}

/// Retry timing. [`RetryPolicy::default`] is what the sensor uses; tests shorten it.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// First retry delay (jittered to 50..100 % of it); doubles per failure.
    pub backoff_min: Duration,
    /// Largest retry delay.
    pub backoff_max: Duration,
    /// Upper bound on a server's `Retry-After`.
    pub retry_after_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            retry_after_max: Duration::from_secs(300),
        }
    }
}

struct State {
    queue: VecDeque<Arc<Lines>>,
    /// Records and bytes in `queue`.
    queue_records: usize,
    queue_bytes: usize,
    /// Bytes held in all: `queue` plus what the runner took (staged, in flight).
    held_bytes: usize,
    /// Records the runner took out of `queue` and has not settled yet.
    taken_records: usize,
    /// The runner sleeps on `wake` (so offers know to notify it).
    runner_waiting: bool,
    /// Set by shutdown: drain until this instant, then stop.
    closing: Option<Instant>,
    /// Shutdown gave up waiting: the runner must not count anything any more.
    abandoned: bool,
    done: bool,
}

struct Shared {
    name: &'static str,
    state: Mutex<State>,
    wake: Condvar,
    done_cv: Condvar,
    counters: Arc<SinkCounters>,
    /// The sink's own counters ([`Sink::own_counters`]).
    own_counters: Option<Arc<dyn CounterSet>>,
    max_bytes: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in one sink must not take capture down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dropped(&self, n: usize) {
        if n > 0 {
            self.counters.dropped.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    fn publish_held(&self, st: &State) {
        self.counters
            .queue_bytes
            .store(st.held_bytes as u64, Ordering::Relaxed);
    }

    fn pop_chunk(&self, st: &mut State) -> Option<Arc<Lines>> {
        let c = st.queue.pop_front()?;
        st.queue_records -= c.records;
        st.queue_bytes -= c.bytes.len();
        Some(c)
    }
}

/// Feeds one sink's thread; clone-free: share it behind an `Arc`.
pub struct SinkRunner {
    shared: Arc<Shared>,
    /// Taken by the shutdown (joined, or left to end on its own when abandoned).
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl SinkRunner {
    /// Starts `sink` on its own thread; it holds at most `max_bytes` of records.
    pub fn start(
        sink: Box<dyn Sink>,
        max_bytes: usize,
        retry: RetryPolicy,
        counters: Arc<SinkCounters>,
    ) -> std::io::Result<SinkRunner> {
        let name = sink.name();
        let own_counters = sink.own_counters();
        let shared = Arc::new(Shared {
            name,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queue_records: 0,
                queue_bytes: 0,
                held_bytes: 0,
                taken_records: 0,
                runner_waiting: false,
                closing: None,
                abandoned: false,
                done: false,
            }),
            wake: Condvar::new(),
            done_cv: Condvar::new(),
            counters,
            own_counters,
            max_bytes: max_bytes.max(1),
        });
        let batching = sink.batching();
        let runner = Runner {
            shared: shared.clone(),
            sink,
            batching: Batching {
                max_records: batching.max_records.max(1),
                max_bytes: batching.max_bytes.max(1),
                flush_interval: batching.flush_interval,
            },
            backoff: retry.backoff_min,
            retry,
            rng: seed(),
            staged: None,
            failing_since: None,
            dropped_mark: 0,
            said_over_budget: false,
        };
        let thread = std::thread::Builder::new()
            .name(format!("spip-{name}"))
            .spawn(move || runner.run())?;
        Ok(SinkRunner {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn name(&self) -> &'static str {
        self.shared.name
    }

    pub fn counters(&self) -> &Arc<SinkCounters> {
        &self.shared.counters
    }

    /// Every counter of the sink (the runner's and its own), for the stats line and `/metrics`.
    pub fn stats(&self) -> SinkStats {
        SinkStats {
            name: self.shared.name,
            counters: self.shared.counters.clone(),
            own: self.shared.own_counters.clone(),
        }
    }

    /// Queues whole lines without waiting. Over the byte budget the oldest queued lines are
    /// dropped first; lines larger than the whole budget are dropped. Drops are counted.
    pub fn offer(&self, lines: Arc<Lines>) {
        if lines.records == 0 {
            return;
        }
        let sh = &*self.shared;
        let len = lines.bytes.len();
        let mut st = sh.lock();
        if st.closing.is_some() {
            drop(st);
            sh.dropped(lines.records);
            return;
        }
        while st.held_bytes + len > sh.max_bytes {
            match sh.pop_chunk(&mut st) {
                Some(old) => {
                    st.held_bytes -= old.bytes.len();
                    sh.dropped(old.records);
                }
                None => break,
            }
        }
        if st.held_bytes + len > sh.max_bytes {
            sh.publish_held(&st);
            drop(st);
            sh.dropped(lines.records);
            return;
        }
        st.queue_records += lines.records;
        st.queue_bytes += len;
        st.held_bytes += len;
        st.queue.push_back(lines);
        sh.publish_held(&st);
        let notify = st.runner_waiting;
        drop(st);
        if notify {
            sh.wake.notify_one();
        }
    }

    /// Bytes held now (queued, staged, in flight, awaiting a retry).
    pub fn held_bytes(&self) -> usize {
        self.shared.lock().held_bytes
    }

    /// Starts the drain: from now on offers are dropped, what is held goes out until `until`.
    pub fn begin_shutdown(&self, until: Instant) {
        let mut st = self.shared.lock();
        if st.closing.is_none() {
            st.closing = Some(until);
        }
        drop(st);
        self.shared.wake.notify_one();
    }

    /// Whether the runner has drained and stopped.
    pub fn is_done(&self) -> bool {
        self.shared.lock().done
    }

    /// Waits for the drain started by [`SinkRunner::begin_shutdown`] until `until`; a sink
    /// still busy then is abandoned and what it held is counted as dropped.
    pub fn finish_shutdown(&self, until: Instant) {
        let sh = self.shared.clone();
        let mut st = sh.lock();
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
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if st.done {
            drop(st);
            if let Some(t) = thread {
                let _ = t.join();
            }
            return;
        }
        if thread.is_none() {
            return; // an earlier shutdown already settled everything
        }
        // Stuck in a delivery: give up on it; the thread ends when its call times out.
        st.abandoned = true;
        let lost = st.queue_records + st.taken_records;
        st.queue.clear();
        st.queue_records = 0;
        st.queue_bytes = 0;
        st.held_bytes = 0;
        sh.publish_held(&st);
        drop(st);
        sh.dropped(lost);
        eprintln!(
            "spip: {}: shutdown deadline reached; {lost} records not delivered (counted as dropped)",
            sh.name
        );
    }

    /// Drains for at most `deadline`, then stops (both steps of the shutdown).
    pub fn shutdown(self, deadline: Duration) {
        let until = Instant::now() + deadline;
        self.begin_shutdown(until);
        self.finish_shutdown(until);
    }
}

impl Drop for SinkRunner {
    fn drop(&mut self) {
        let running = self.thread.get_mut().map_or(true, |t| t.is_some());
        if running {
            // Dropped without a shutdown: stop at once.
            self.begin_shutdown(Instant::now());
        }
    }
}

/// The lines the runner took but has not delivered yet: a chunk and how far into it.
struct Staged {
    lines: Arc<Lines>,
    offset: usize,
    records_left: usize,
}

struct Runner {
    shared: Arc<Shared>,
    sink: Box<dyn Sink>,
    batching: Batching,
    retry: RetryPolicy,
    backoff: Duration,
    rng: u64,
    staged: Option<Staged>,
    /// Start of the current run of failures and their count (one message per outage).
    failing_since: Option<(Instant, u64)>,
    /// `dropped` when the sink last answered well (drops beyond it happened during an outage).
    dropped_mark: u64,
    said_over_budget: bool,
}

/// One batch: record ranges into the chunks it holds.
struct Cut {
    chunks: Vec<Arc<Lines>>,
    /// (chunk index, start, end) of each record, without its newline.
    records: Vec<(usize, usize, usize)>,
    /// Bytes with newlines (what `held_bytes` counts).
    bytes: usize,
}

impl Runner {
    fn run(mut self) {
        let sh = self.shared.clone();
        let mut retry_at: Option<Instant> = None;
        let mut drain_retried = false;
        loop {
            let mut st = sh.lock();
            if st.abandoned {
                break;
            }
            let now = Instant::now();
            if let Some(deadline) = st.closing
                && now >= deadline
            {
                let lost = st.queue_records + st.taken_records;
                st.queue.clear();
                st.queue_records = 0;
                st.queue_bytes = 0;
                st.held_bytes = 0;
                st.taken_records = 0;
                sh.publish_held(&st);
                drop(st);
                self.staged = None;
                sh.dropped(lost);
                if lost > 0 {
                    eprintln!(
                        "spip: {}: shutdown: {lost} records not delivered (counted as dropped)",
                        sh.name
                    );
                }
                break;
            }
            if st.closing.is_some() && !drain_retried {
                // The drain starts with one attempt at once, whatever the backoff said: the
                // outage may be over (space freed, server back), and this is the last chance.
                drain_retried = true;
                retry_at = None;
            }
            if let Some(t) = retry_at
                && now < t
            {
                let until = st.closing.map_or(t, |d| d.min(t));
                // New records cannot make a retry come sooner: offers need not wake us.
                self.wait(st, Some(until), false);
                continue;
            }
            let staged_records = self.staged.as_ref().map_or(0, |s| s.records_left);
            let available = st.queue_records + staged_records;
            if available == 0 {
                if st.closing.is_some() {
                    break;
                }
                self.wait(st, None, true);
                continue;
            }
            let staged_bytes = self
                .staged
                .as_ref()
                .map_or(0, |s| s.lines.bytes.len() - s.offset);
            let oldest = match (&self.staged, st.queue.front()) {
                (Some(s), _) => s.lines.at,
                (None, Some(c)) => c.at,
                (None, None) => now, // ok: available > 0 means one of them is there
            };
            let due_at = oldest + self.batching.flush_interval;
            let due = st.closing.is_some()
                || available >= self.batching.max_records
                || st.queue_bytes + staged_bytes >= self.batching.max_bytes
                || now >= due_at;
            if !due {
                self.wait(st, Some(due_at), true);
                continue;
            }
            drop(st);
            let cut = self.cut();
            if cut.records.is_empty() {
                continue;
            }
            retry_at = self.deliver(cut);
        }
        self.sink.close();
        let mut st = sh.lock();
        st.done = true;
        drop(st);
        sh.done_cv.notify_all();
    }

    /// Sleeps until `until` (or a shutdown); with `wake_on_offer`, also until new records come.
    fn wait(&self, mut st: MutexGuard<'_, State>, until: Option<Instant>, wake_on_offer: bool) {
        let sh = &*self.shared;
        st.runner_waiting = wake_on_offer;
        let mut st = match until {
            None => sh.wake.wait(st).unwrap_or_else(|e| e.into_inner()),
            Some(t) => {
                let d = t.saturating_duration_since(Instant::now());
                if d.is_zero() {
                    st.runner_waiting = false;
                    return;
                }
                sh.wake
                    .wait_timeout(st, d)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
        st.runner_waiting = false;
    }

    /// Takes the next batch: staged lines first, then chunks from the queue (each popped
    /// under a short lock; lines are split here, outside it).
    fn cut(&mut self) -> Cut {
        let max_records = self.batching.max_records;
        let max_bytes = self.batching.max_bytes;
        let mut cut = Cut {
            chunks: Vec::new(),
            records: Vec::new(),
            bytes: 0,
        };
        'fill: while cut.records.len() < max_records {
            let staged = match self.staged.as_mut() {
                Some(s) => s,
                None => {
                    let mut st = self.shared.lock();
                    let Some(lines) = self.shared.pop_chunk(&mut st) else {
                        break;
                    };
                    st.taken_records += lines.records;
                    drop(st);
                    self.staged.insert(Staged {
                        records_left: lines.records,
                        lines,
                        offset: 0,
                    })
                }
            };
            let index = cut.chunks.len();
            let mut used = false;
            let mut full = false;
            while staged.records_left > 0 && staged.offset < staged.lines.bytes.len() {
                let bytes = &staged.lines.bytes[staged.offset..];
                let end = memchr::memchr(b'\n', bytes).unwrap_or(bytes.len());
                let with_newline = (end + 1).min(bytes.len());
                if cut.records.len() >= max_records
                    || (!cut.records.is_empty() && cut.bytes + with_newline > max_bytes)
                {
                    full = true;
                    break;
                }
                cut.records
                    .push((index, staged.offset, staged.offset + end));
                cut.bytes += with_newline;
                staged.offset += with_newline;
                staged.records_left -= 1;
                used = true;
            }
            if used {
                cut.chunks.push(staged.lines.clone());
            }
            if full {
                break 'fill;
            }
            // The chunk is used up. Its count only disagrees with its lines if a producer
            // broke the one-line-per-record rule; settle the difference so counts stay whole.
            let phantom = std::mem::take(&mut staged.records_left);
            let stray_bytes = staged.lines.bytes.len() - staged.offset;
            self.staged = None;
            if phantom > 0 || stray_bytes > 0 {
                let mut st = self.shared.lock();
                st.taken_records -= phantom;
                st.held_bytes -= stray_bytes;
                drop(st);
                self.shared.dropped(phantom);
            }
        }
        cut
    }

    /// Delivers one batch and settles it; returns when to try again after a failure.
    fn deliver(&mut self, cut: Cut) -> Option<Instant> {
        let slices: Vec<&[u8]> = cut
            .records
            .iter()
            .map(|&(c, s, e)| &cut.chunks[c].bytes[s..e])
            .collect();
        let outcome = self.sink.deliver(&slices);
        let sh = self.shared.clone();
        let c = &sh.counters;
        let n = slices.len();
        let (retry, rejected, after, error) = match outcome {
            Delivery::Delivered => (Vec::new(), 0, None, None),
            Delivery::RetryAll { after, error } => ((0..n).collect(), 0, after, Some(error)),
            Delivery::Partial {
                mut retry,
                rejected,
                error,
            } => {
                retry.retain(|&i| i < n);
                retry.sort_unstable();
                retry.dedup();
                let rejected = rejected.min(n - retry.len());
                (retry, rejected, None, Some(error))
            }
        };
        let delivered = n - retry.len() - rejected;
        let mut st = sh.lock();
        if st.abandoned {
            return None; // shutdown already counted this batch
        }
        // Settle: everything in the cut leaves `taken`; retried records go back to the head.
        st.taken_records -= n;
        let retry_bytes: usize = retry.iter().map(|&i| slices[i].len() + 1).sum::<usize>();
        st.held_bytes -= cut.bytes - retry_bytes;
        if !retry.is_empty() {
            let mut bytes = Vec::with_capacity(retry_bytes);
            for &i in &retry {
                bytes.extend_from_slice(slices[i]);
                bytes.push(b'\n');
            }
            let records = retry.len();
            let at = cut.chunks.first().map_or_else(Instant::now, |c| c.at);
            st.queue_records += records;
            st.queue_bytes += bytes.len();
            st.queue.push_front(Arc::new(Lines { bytes, records, at }));
            // Staged lines must stay behind the retried ones: put them back too.
            if let Some(s) = self.staged.take() {
                st.taken_records -= s.records_left;
                let rest = s.lines.bytes[s.offset..].to_vec();
                st.queue_records += s.records_left;
                st.queue_bytes += rest.len();
                let back = Arc::new(Lines {
                    bytes: rest,
                    records: s.records_left,
                    at: s.lines.at,
                });
                st.queue.insert(1, back);
            }
        }
        sh.publish_held(&st);
        drop(st);
        if delivered > 0 {
            c.sent.fetch_add(delivered as u64, Ordering::Relaxed);
            c.batches.fetch_add(1, Ordering::Relaxed);
        }
        sh.dropped(rejected);
        // Records the server refused for good are not budget drops: the "budget is full"
        // notice below must not count them.
        self.dropped_mark += rejected as u64;
        let Some(error) = error else {
            self.recovered();
            return None;
        };
        c.errors.fetch_add(1, Ordering::Relaxed);
        if retry.is_empty() {
            // An answer, even a refusal, means the sink is up: no backoff.
            self.recovered();
            return None;
        }
        c.retries.fetch_add(1, Ordering::Relaxed);
        match &mut self.failing_since {
            Some((_, failures)) => *failures += 1,
            None => {
                self.failing_since = Some((Instant::now(), 1));
                eprintln!(
                    "spip: {}: delivery failed ({error}); retrying with backoff, keeping up to {} bytes",
                    sh.name, sh.max_bytes
                );
            }
        }
        if !self.said_over_budget && c.dropped.load(Ordering::Relaxed) > self.dropped_mark {
            self.said_over_budget = true;
            eprintln!(
                "spip: {}: its {} byte budget is full while it fails; dropping the oldest records (counted as dropped)",
                sh.name, sh.max_bytes
            );
        }
        let mut delay = self.jitter(self.backoff);
        if let Some(a) = after {
            delay = delay.max(a.min(self.retry.retry_after_max));
        }
        self.backoff = (self.backoff * 2).min(self.retry.backoff_max);
        Some(Instant::now() + delay)
    }

    fn recovered(&mut self) {
        self.backoff = self.retry.backoff_min;
        self.dropped_mark = self.shared.counters.dropped.load(Ordering::Relaxed);
        self.said_over_budget = false;
        if let Some((since, failures)) = self.failing_since.take() {
            eprintln!(
                "spip: {}: delivering again after {failures} failed attempts over {:.1}s",
                self.shared.name,
                since.elapsed().as_secs_f64()
            );
        }
    }

    /// A delay in [d/2, d].
    fn jitter(&mut self, d: Duration) -> Duration {
        // xorshift64*: jitter needs no crypto RNG.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11; // 53 bits
        let frac = r as f64 / (1u64 << 53) as f64;
        d.mul_f64(0.5 + 0.5 * frac)
    }
}

/// Seed for the jitter generator.
fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (t ^ (std::process::id() as u64).rotate_left(32)) | 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A sink that records what it got and answers from a script (then `Delivered`).
    struct Scripted {
        got: Arc<Mutex<Vec<Vec<String>>>>,
        script: Arc<Mutex<VecDeque<Delivery>>>,
        batching: Batching,
        stall: Option<Duration>,
        closed: Arc<AtomicUsize>,
    }

    struct Probe {
        got: Arc<Mutex<Vec<Vec<String>>>>,
        script: Arc<Mutex<VecDeque<Delivery>>>,
        closed: Arc<AtomicUsize>,
    }

    impl Probe {
        fn batches(&self) -> Vec<Vec<String>> {
            self.got.lock().unwrap().clone()
        }
        fn all(&self) -> Vec<String> {
            self.batches().concat()
        }
    }

    fn scripted(batching: Batching, stall: Option<Duration>) -> (Box<dyn Sink>, Probe) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let closed = Arc::new(AtomicUsize::new(0));
        let sink = Scripted {
            got: got.clone(),
            script: script.clone(),
            batching,
            stall,
            closed: closed.clone(),
        };
        (
            Box::new(sink),
            Probe {
                got,
                script,
                closed,
            },
        )
    }

    impl Sink for Scripted {
        fn name(&self) -> &'static str {
            "test"
        }
        fn batching(&self) -> Batching {
            self.batching
        }
        fn deliver(&mut self, records: &[&[u8]]) -> Delivery {
            if let Some(d) = self.stall {
                std::thread::sleep(d);
            }
            let answer = self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Delivery::Delivered);
            let texts = records
                .iter()
                .map(|r| String::from_utf8(r.to_vec()).unwrap())
                .collect();
            self.got.lock().unwrap().push(texts);
            answer
        }
        fn close(&mut self) {
            self.closed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(80),
            retry_after_max: Duration::from_secs(2),
        }
    }

    fn lines(range: std::ops::Range<usize>) -> Arc<Lines> {
        let mut bytes = Vec::new();
        for i in range.clone() {
            bytes.extend_from_slice(format!("r{i}\n").as_bytes());
        }
        Lines::new(bytes, range.len())
    }

    fn names(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("r{i}")).collect()
    }

    fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        cond()
    }

    fn batching(max_records: usize, max_bytes: usize, flush_ms: u64) -> Batching {
        Batching {
            max_records,
            max_bytes,
            flush_interval: Duration::from_millis(flush_ms),
        }
    }

    #[test]
    fn chunks_are_cut_into_batches_by_count_and_bytes_in_order() {
        let (sink, probe) = scripted(batching(4, 1 << 20, 3_600_000), None);
        let counters = Arc::new(SinkCounters::default());
        let r = SinkRunner::start(sink, 1 << 20, fast(), counters.clone()).unwrap();
        r.offer(lines(0..3));
        r.offer(lines(3..10));
        assert!(wait_for(|| probe.batches().len() == 2));
        assert_eq!(probe.batches(), vec![names(0..4), names(4..8)]);
        // Two left, under max_records and an hour from due: only the drain sends them.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(probe.batches().len(), 2);
        r.shutdown(Duration::from_secs(2));
        assert_eq!(probe.all(), names(0..10));
        assert_eq!(counters.sent.load(Ordering::Relaxed), 10);
        assert_eq!(counters.queue_bytes.load(Ordering::Relaxed), 0);
        assert_eq!(probe.closed.load(Ordering::Relaxed), 1);

        // Byte cap: "rNN" lines are 4 bytes with the newline; 10 bytes hold two.
        let (sink, probe) = scripted(batching(100, 10, 0), None);
        let r = SinkRunner::start(sink, 1 << 20, fast(), Arc::default()).unwrap();
        r.offer(lines(10..15));
        r.shutdown(Duration::from_secs(2));
        let sizes: Vec<usize> = probe.batches().iter().map(Vec::len).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 5);
        assert!(sizes.iter().all(|&n| n <= 2), "{sizes:?}");
        assert_eq!(probe.all(), names(10..15));
    }

    #[test]
    fn flush_interval_sends_a_partial_batch() {
        let (sink, probe) = scripted(batching(1000, 1 << 20, 150), None);
        let r = SinkRunner::start(sink, 1 << 20, fast(), Arc::default()).unwrap();
        let t0 = Instant::now();
        r.offer(lines(0..3));
        assert!(wait_for(|| probe.batches().len() == 1));
        assert!(t0.elapsed() >= Duration::from_millis(140));
        r.shutdown(Duration::from_secs(1));
        assert_eq!(probe.all(), names(0..3));
    }

    #[test]
    fn retry_all_redelivers_the_same_records_after_retry_after() {
        let (sink, probe) = scripted(batching(5, 1 << 20, 0), None);
        probe.script.lock().unwrap().extend([
            Delivery::RetryAll {
                after: Some(Duration::from_millis(300)),
                error: "busy".into(),
            },
            Delivery::RetryAll {
                after: None,
                error: "down".into(),
            },
        ]);
        let counters = Arc::new(SinkCounters::default());
        let r = SinkRunner::start(sink, 1 << 20, fast(), counters.clone()).unwrap();
        let t0 = Instant::now();
        r.offer(lines(0..5));
        assert!(wait_for(|| counters.sent.load(Ordering::Relaxed) == 5));
        assert!(
            t0.elapsed() >= Duration::from_millis(300),
            "Retry-After ignored"
        );
        assert_eq!(probe.batches(), vec![names(0..5); 3]);
        r.shutdown(Duration::from_secs(1));
        assert_eq!(counters.retries.load(Ordering::Relaxed), 2);
        assert_eq!(counters.errors.load(Ordering::Relaxed), 2);
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
        assert_eq!(counters.batches.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn partial_retries_the_named_records_first_and_counts_the_rejected() {
        let (sink, probe) = scripted(batching(4, 1 << 20, 0), None);
        probe.script.lock().unwrap().push_back(Delivery::Partial {
            retry: vec![1, 3],
            rejected: 1,
            error: "item errors".into(),
        });
        let counters = Arc::new(SinkCounters::default());
        let r = SinkRunner::start(sink, 1 << 20, fast(), counters.clone()).unwrap();
        r.offer(lines(0..6));
        r.shutdown(Duration::from_secs(2));
        let b = probe.batches();
        assert_eq!(b[0], names(0..4));
        // r1 and r3 come back before r4, r5: order is kept for what is retried.
        assert_eq!(b[1..].concat(), ["r1", "r3", "r4", "r5"]);
        assert_eq!(counters.sent.load(Ordering::Relaxed), 5);
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(counters.queue_bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn over_budget_the_oldest_queued_go_first_and_all_is_counted() {
        let (sink, probe) = scripted(batching(10, 1 << 20, 0), None);
        // The sink fails until the test stops scripting failures.
        for _ in 0..1000 {
            probe.script.lock().unwrap().push_back(Delivery::RetryAll {
                after: None,
                error: "down".into(),
            });
        }
        let counters = Arc::new(SinkCounters::default());
        let budget = 200;
        let r = SinkRunner::start(sink, budget, fast(), counters.clone()).unwrap();
        for i in 0..100 {
            r.offer(lines(i * 10..i * 10 + 10)); // 40-50 bytes each
            assert!(r.held_bytes() <= budget);
        }
        probe.script.lock().unwrap().clear();
        r.shutdown(Duration::from_secs(2));
        let got = probe.all();
        let unique: std::collections::BTreeSet<&String> = got.iter().collect();
        let sent = counters.sent.load(Ordering::Relaxed);
        let dropped = counters.dropped.load(Ordering::Relaxed);
        assert_eq!(sent + dropped, 1000, "sent {sent} dropped {dropped}");
        assert!(dropped >= 900, "{dropped}");
        assert!(unique.contains(&"r999".to_string()), "the newest survive");
        assert_eq!(counters.queue_bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_stalled_sink_never_slows_offers_and_shutdown_is_bounded() {
        let (sink, _probe) = scripted(batching(10, 1 << 20, 0), Some(Duration::from_secs(3)));
        let counters = Arc::new(SinkCounters::default());
        let r = SinkRunner::start(sink, 1 << 20, fast(), counters.clone()).unwrap();
        r.offer(lines(0..10));
        std::thread::sleep(Duration::from_millis(50)); // now stuck in deliver
        let t0 = Instant::now();
        for i in 1..1000 {
            r.offer(lines(i * 10..i * 10 + 10));
        }
        assert!(
            t0.elapsed() < Duration::from_millis(500),
            "{:?}",
            t0.elapsed()
        );
        let t1 = Instant::now();
        let until = Instant::now() + Duration::from_millis(300);
        r.begin_shutdown(until);
        r.finish_shutdown(until);
        assert!(
            t1.elapsed() < Duration::from_millis(800),
            "{:?}",
            t1.elapsed()
        );
        assert_eq!(counters.sent.load(Ordering::Relaxed), 0);
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 10_000);
        // Offers after the shutdown are dropped and counted too.
        r.offer(lines(0..3));
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 10_003);
    }

    #[test]
    fn a_chunk_larger_than_the_budget_is_dropped_and_counted() {
        let (sink, probe) = scripted(batching(10, 1 << 20, 0), None);
        let counters = Arc::new(SinkCounters::default());
        let r = SinkRunner::start(sink, 16, fast(), counters.clone()).unwrap();
        r.offer(lines(100..110));
        r.offer(lines(0..2));
        r.shutdown(Duration::from_secs(1));
        assert_eq!(probe.all(), names(0..2));
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 10);
    }
}
