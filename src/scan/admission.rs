//! Admission control for new connections: Spip's global token bucket plus a per-source rate.
//!
//! Each worker thread owns an [`Admission`] with its share of the configured rates (the kernel
//! spreads connections over the SO_REUSEPORT listeners), so admission takes no lock. The
//! per-source table is bounded: idle sources are swept, and if a flood of distinct sources
//! still fills it, it is cleared (failing open keeps memory bounded; the global bucket and the
//! live-connection cap still hold).

use ahash::AHashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Sources tracked per thread before the table is swept.
const MAX_SOURCES: usize = 65_536;

#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    rate_per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate_per_sec: f64, burst: f64, now: Instant) -> Self {
        TokenBucket {
            rate_per_sec,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token if one is available.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate_per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket would be full by `now` (its source is idle and can be forgotten).
    fn is_full_at(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.rate_per_sec >= self.burst
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    RateLimited,
    PerSourceLimited,
}

pub struct Admission {
    global: TokenBucket,
    per_source: Option<(f64, f64)>,
    sources: AHashMap<IpAddr, TokenBucket>,
    last_sweep: Instant,
}

impl Admission {
    /// `share` is this thread's fraction of the configured rates (1 / threads).
    pub fn new(
        rate_per_sec: u32,
        burst: u32,
        per_source_rate: u32,
        per_source_burst: u32,
        share: f64,
        now: Instant,
    ) -> Self {
        let scaled = |v: u32| (f64::from(v) * share).max(1.0);
        Admission {
            global: TokenBucket::new(scaled(rate_per_sec), scaled(burst), now),
            per_source: (per_source_rate > 0)
                .then(|| (scaled(per_source_rate), scaled(per_source_burst))),
            sources: AHashMap::new(),
            last_sweep: now,
        }
    }

    /// Decides on a new connection from `ip`.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        if let Some((rate, burst)) = self.per_source {
            if self.sources.len() >= MAX_SOURCES {
                self.sweep(now);
            }
            let bucket = self
                .sources
                .entry(ip)
                .or_insert_with(|| TokenBucket::new(rate, burst, now));
            if !bucket.allow(now) {
                return Err(Refusal::PerSourceLimited);
            }
        }
        if !self.global.allow(now) {
            return Err(Refusal::RateLimited);
        }
        Ok(())
    }

    /// Forgets idle sources; called periodically and when the table is full.
    pub fn sweep(&mut self, now: Instant) {
        self.sources.retain(|_, b| !b.is_full_at(now));
        if self.sources.len() >= MAX_SOURCES {
            self.sources.clear();
        }
        self.last_sweep = now;
    }

    /// Sweeps if it has been a while.
    pub fn maybe_sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_sweep) > Duration::from_secs(10) {
            self.sweep(now);
        }
    }

    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3.0, t0);
        assert!(b.allow(t0) && b.allow(t0) && b.allow(t0));
        assert!(!b.allow(t0));
        assert!(b.allow(t0 + Duration::from_millis(100)));
        assert!(!b.allow(t0 + Duration::from_millis(100)));
    }

    #[test]
    fn per_source_limit_is_per_ip() {
        let t0 = Instant::now();
        let mut a = Admission::new(1000, 1000, 1, 2, 1.0, t0);
        let x: IpAddr = "192.0.2.1".parse().unwrap();
        let y: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(a.admit(x, t0), Ok(()));
        assert_eq!(a.admit(x, t0), Ok(()));
        assert_eq!(a.admit(x, t0), Err(Refusal::PerSourceLimited));
        assert_eq!(a.admit(y, t0), Ok(()));
        a.sweep(t0 + Duration::from_secs(5));
        assert_eq!(a.tracked_sources(), 0);
    }

    #[test]
    fn global_bucket() {
        let t0 = Instant::now();
        let mut a = Admission::new(1, 2, 0, 0, 1.0, t0);
        let x: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(a.admit(x, t0), Ok(()));
        assert_eq!(a.admit(x, t0), Ok(()));
        assert_eq!(a.admit(x, t0), Err(Refusal::RateLimited));
        assert_eq!(a.tracked_sources(), 0);
    }
}
