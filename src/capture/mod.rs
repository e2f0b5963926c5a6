//! The network loop: worker threads, the record writer, signals and counters.
//!
//! Main thread: blocks the handled signals before any thread exists, validates, binds one
//! SO_REUSEPORT listener per worker (so bind errors surface before anything runs), starts the
//! sinks, the metrics listener and the workers, then waits for signals: SIGHUP reopens the log
//! file, SIGINT/SIGTERM stop accepting, let live connections finish within
//! `shutdown_grace_seconds`, drain the sinks within [`crate::config::SINK_DRAIN`], and exit 0.
//! Signals arriving during the stop stay blocked (pending), so they never kill the process.
//! Counters go to stderr every `stats_interval_seconds` and always at exit.

pub mod conn;
pub mod registry;
pub mod synlog;
pub mod sys;
pub mod udp;
pub mod worker;

use crate::config::Config;
use crate::json::JsonWriter;
use crate::output::{Output, RecordSink};
use crate::scan::summary::{Summaries, SummaryConfig};
use crate::sinks::metrics::Metrics;
use crate::stats::Counters;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};
pub use worker::DriverChoice;

/// State shared by all threads.
pub struct Shared {
    pub cfg: Config,
    pub counters: Arc<Counters>,
    pub output: Output,
    pub shutdown: AtomicBool,
    pub driver: DriverChoice,
    /// The connection engine's settings (TLS configurations included).
    pub engine: crate::engine::EngineConfig,
    /// Prometheus metrics (`metrics_listen` set): the engine counts closed connections here.
    pub metrics: Option<Arc<Metrics>>,
    /// Per-source scan summaries, written every `scan_summary_interval_seconds`.
    pub summaries: Summaries,
}

/// Runs the sensor until SIGINT/SIGTERM. Returns the process exit code.
pub fn run(cfg: Config, driver: DriverChoice) -> i32 {
    // Block the signals we handle before any thread exists (sinks, metrics, workers), so all of
    // them inherit the mask and only the main thread's sigtimedwait sees them.
    let signals = sys::Signals::block();
    // Bad certificate/key files are a bad config: exit 2, naming the file.
    let tls = match cfg
        .tls
        .as_ref()
        .map(crate::engine::tls::TlsConfigs::load)
        .transpose()
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("spip: {e}");
            return 2;
        }
    };
    sys::raise_nofile_limit();
    sys::keep_freed_heap();

    let addr = SocketAddr::new(cfg.ip, cfg.port);
    let mut listeners = Vec::with_capacity(cfg.threads);
    for _ in 0..cfg.threads {
        match worker::bind_listener(addr, cfg.mode == crate::config::Mode::Tproxy, cfg.save_syn) {
            Ok(l) => listeners.push(l),
            Err(e) => {
                eprintln!("spip: cannot listen on {addr}: {e}");
                return 1;
            }
        }
    }
    let mut udp_sockets = Vec::new();
    if cfg.udp.enabled {
        for _ in 0..cfg.threads {
            match udp::bind_socket(addr) {
                Ok(s) => udp_sockets.push(s),
                Err(e) => {
                    eprintln!("spip: cannot receive UDP on {addr}: {e}");
                    return 1;
                }
            }
        }
    }
    let counters = Arc::new(Counters::default());
    let output = match crate::sinks::start_all(&cfg) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("spip: {e}");
            return 1;
        }
    };
    let sink_counters: Vec<_> = output.sinks().iter().map(|s| s.stats()).collect();
    let metrics = match cfg.metrics_listen {
        None => None,
        Some(addr) => {
            let m = Arc::new(Metrics::new(counters.clone(), sink_counters.clone()));
            match m.clone().serve(addr) {
                Ok(bound) => eprintln!("spip: metrics on http://{bound}/metrics"),
                Err(e) => {
                    eprintln!("spip: cannot serve metrics_listen {addr}: {e}");
                    output.shutdown(Instant::now());
                    return 1;
                }
            }
            Some(m)
        }
    };
    // The SYN log binds now (it needs CAP_NET_ADMIN, like a transparent listener): a failure
    // is a startup error, not a silent gap in the counts.
    let syn_log = match cfg.syn_log_group.map(synlog::open).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("spip: {e}");
            output.shutdown(Instant::now());
            return 1;
        }
    };
    let stats_interval = cfg.stats_interval;
    let engine = crate::engine::EngineConfig::new(&cfg, tls);
    let summaries = Summaries::new(
        SummaryConfig {
            // Summaries off: no table, so connections pay nothing for them.
            max_sources: if cfg.scan_summaries {
                cfg.scan_summary_max_sources
            } else {
                0
            },
            interval: cfg.scan_summary_interval,
            scanner_ports: cfg.scan_summary_scanner_ports,
        },
        Instant::now(),
    );
    let shared = Arc::new(Shared {
        summaries,
        engine,
        cfg,
        counters: counters.clone(),
        output: output.clone(),
        shutdown: AtomicBool::new(false),
        driver,
        metrics,
    });
    let stats = |last: bool| print_stats(&counters, &sink_counters, last);
    eprintln!(
        "spip: listening on {addr} with {} worker threads ({} mode)",
        shared.cfg.threads,
        if shared.cfg.tls_mode() {
            "tls"
        } else {
            "plain"
        }
    );

    let syn_log = syn_log.and_then(|socket| {
        let for_reader = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("spip-synlog".into())
            .spawn(move || {
                let s = &for_reader;
                synlog::run(socket, &s.summaries, &s.counters, &s.shutdown)
            });
        match spawned {
            Ok(h) => Some(h),
            Err(e) => {
                eprintln!("spip: cannot start the SYN log thread: {e}; SYN-only counts are off");
                None
            }
        }
    });
    let mut workers = Vec::new();
    let mut udp_sockets = udp_sockets.into_iter();
    for (i, listener) in listeners.into_iter().enumerate() {
        let for_worker = shared.clone();
        let udp = udp_sockets.next();
        let spawned = std::thread::Builder::new()
            .name(format!("spip-worker-{i}"))
            .spawn(move || {
                let shared = for_worker;
                if let Err(e) = worker::run(shared.clone(), listener, udp, i) {
                    eprintln!("spip: worker {i} failed: {e}");
                    if e.raw_os_error() == Some(libc::EPERM)
                        || e.kind() == io::ErrorKind::Unsupported
                    {
                        eprintln!(
                            "spip: io_uring looks blocked (seccomp or kernel.io_uring_disabled); \
                             set io_driver = \"poll\" in the config or allow io_uring"
                        );
                    }
                    shared.shutdown.store(true, Ordering::Release);
                    sys::terminate_self();
                }
            });
        match spawned {
            Ok(h) => workers.push(h),
            Err(e) => {
                eprintln!("spip: cannot start worker thread: {e}");
                shared.shutdown.store(true, Ordering::Release);
                for w in workers {
                    let _ = w.join();
                }
                output.shutdown(Instant::now() + crate::config::SINK_DRAIN);
                stats(true);
                return 1;
            }
        }
    }

    let mut next_stats = Instant::now() + stats_interval;
    let mut summary_sink = RecordSink::new(output.clone());
    loop {
        let now = Instant::now();
        if shared.summaries.due(now) {
            write_summaries(&shared, &mut summary_sink, now);
        }
        let wait = next_stats
            .min(shared.summaries.next_due())
            .saturating_duration_since(now);
        match signals.wait(wait) {
            Some(libc::SIGHUP) => shared.output.request_reopen(),
            Some(_) => break,
            None => {}
        }
        if Instant::now() >= next_stats {
            let evicted = shared.summaries.evicted();
            counters
                .scan_sources_evicted
                .fetch_max(evicted, Ordering::Relaxed);
            stats(false);
            next_stats = Instant::now() + stats_interval;
        }
    }

    eprintln!(
        "spip: shutting down (grace {}s)",
        shared.cfg.shutdown_grace.as_secs()
    );
    shared.shutdown.store(true, Ordering::Release);
    let failed = workers
        .into_iter()
        .map(|w| w.join().is_err())
        .fold(false, |a, b| a | b);
    if let Some(reader) = syn_log {
        let _ = reader.join(); // it sees the shutdown flag within its poll interval
    }
    // The last (partial) interval's summaries, before the sinks drain.
    write_summaries(&shared, &mut summary_sink, Instant::now());
    let summaries_evicted = shared.summaries.evicted();
    // Every worker flushed its batch when it ended; now the sinks drain (bounded). Signals stay
    // blocked, so none can end the process: SIGHUP still reopens the log, the rest are noted.
    drop(shared);
    let until = Instant::now() + crate::config::SINK_DRAIN;
    output.begin_shutdown(until);
    let mut said_stopping = false;
    while !output.drained() && Instant::now() < until {
        match signals.wait(std::time::Duration::from_millis(50)) {
            Some(libc::SIGHUP) => output.request_reopen(),
            Some(_) if !said_stopping => {
                said_stopping = true;
                eprintln!(
                    "spip: already stopping; the outputs drain for at most {:?}",
                    crate::config::SINK_DRAIN
                );
            }
            _ => {}
        }
    }
    output.finish_shutdown(until);
    let evicted = summaries_evicted;
    counters
        .scan_sources_evicted
        .fetch_max(evicted, Ordering::Relaxed);
    stats(true);
    if failed { 1 } else { 0 }
}

/// Writes the interval's scan summaries to the outputs, like connection records (with
/// `scan_summaries = false` there is no table and nothing to write).
fn write_summaries(shared: &Shared, sink: &mut RecordSink, now: Instant) {
    shared
        .summaries
        .write_interval(&shared.cfg.name, now, |line| {
            sink.push(|buf| buf.extend_from_slice(line));
        });
    sink.flush();
}

fn print_stats(counters: &Counters, sinks: &[crate::sinks::SinkStats], last: bool) {
    let mut line = Vec::with_capacity(512);
    let mut w = JsonWriter::new(&mut line);
    w.begin();
    w.key_only("@timestamp");
    crate::record::write_timestamp(w.buf(), SystemTime::now());
    w.str("type", if last { b"final_stats" } else { b"stats" });
    counters.write_fields(&mut w);
    for sink in sinks {
        if sink.name == crate::sinks::file::NAME {
            // The local output's counts under their historical names.
            let c = &sink.counters;
            w.u64("recorded", c.sent.load(Ordering::Relaxed));
            w.u64("records_dropped", c.dropped.load(Ordering::Relaxed));
        }
        sink.write_stats(&mut w);
    }
    w.finish();
    line.push(b'\n');
    let _ = io::stderr().lock().write_all(&line);
}
