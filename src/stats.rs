//! Counters, reported as one JSON line on stderr periodically and at exit (with each sink's
//! counters, see [`crate::sinks::SinkCounters`]).

use crate::json::JsonWriter;
use std::sync::atomic::{AtomicU64, Ordering};

/// Process-wide counters. Relaxed atomics: they are statistics, not synchronization.
#[derive(Debug, Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    /// Connections closed at once because the live-connection cap was reached.
    pub shed_live_cap: AtomicU64,
    /// Connections closed by the global token bucket (`rate_limit_per_second`).
    pub rate_limited: AtomicU64,
    /// Connections closed by the per-source-IP rate.
    pub per_source_limited: AtomicU64,
    pub read_timeouts: AtomicU64,
    pub session_timeouts: AtomicU64,
    pub payload_capped: AtomicU64,
    /// Connections that sent nothing.
    pub empty_connections: AtomicU64,
    /// accept() errors such as EMFILE that made us back off.
    pub accept_errors: AtomicU64,
    /// Live connections now (a gauge).
    pub live: AtomicU64,
    /// Accepted connections without SYN facts although `save_syn` is on: the kernel kept no
    /// SYN (it answered with a SYN cookie) or its headers were unreadable.
    pub syn_not_saved: AtomicU64,
    /// Connections closed because their source had its fair share of a contended global
    /// budget (see [`crate::scan::admission`]).
    pub fair_share_limited: AtomicU64,
    /// Sources admission forgot because its table was full (a flood of distinct sources).
    pub admission_evictions: AtomicU64,
    /// SYNs read from the firewall's SYN log (`syn_log_group`).
    pub syn_logged: AtomicU64,
    /// Times the kernel dropped SYN log messages because we fell behind.
    pub syn_log_overflows: AtomicU64,
    /// Sources evicted from the full scan summary table (a total, updated with the stats).
    pub scan_sources_evicted: AtomicU64,
}

impl Counters {
    pub fn inc(&self, c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// Writes the counters as members of the open object.
    pub fn write_fields(&self, w: &mut JsonWriter) {
        let fields = [
            ("accepted", &self.accepted),
            ("shed_live_cap", &self.shed_live_cap),
            ("rate_limited", &self.rate_limited),
            ("per_source_limited", &self.per_source_limited),
            ("read_timeouts", &self.read_timeouts),
            ("session_timeouts", &self.session_timeouts),
            ("payload_capped", &self.payload_capped),
            ("empty_connections", &self.empty_connections),
            ("accept_errors", &self.accept_errors),
            ("live", &self.live),
            ("syn_not_saved", &self.syn_not_saved),
            ("fair_share_limited", &self.fair_share_limited),
            ("admission_evictions", &self.admission_evictions),
            ("syn_logged", &self.syn_logged),
            ("syn_log_overflows", &self.syn_log_overflows),
            ("scan_sources_evicted", &self.scan_sources_evicted),
        ];
        for (k, v) in fields {
            w.u64(k, self.get(v));
        }
    }
}
