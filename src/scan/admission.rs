//! Admission control for new connections: Spip's global token bucket, a per-source rate, and
//! a fair share of the global budget per source.
//!
//! Each worker thread owns an [`Admission`] with its share of the configured rates (the kernel
//! spreads connections over the SO_REUSEPORT listeners), so admission takes no lock.
//!
//! - Sources are keyed by [`SourceKey`]: an IPv4 address, or an IPv6 /64 (one host's usual
//!   allocation; keying by full address would give each of its 2^64 addresses a fresh bucket).
//! - The table is bounded: when full, the least recently seen source is forgotten (O(1)),
//!   never the whole table; idle sources are swept from the old end.
//! - Fair share: once less than half the global burst is left, a source may take global tokens
//!   only at its share of the global rate (the rate divided by the sources seen in the last
//!   [`ACTIVE_WINDOW`]), and while it draws on them it leaves the last token for a source
//!   that does not. A busy source then leaves the rest of each refill for the others, instead
//!   of taking every token the moment it arrives, and a newcomer finds a token. A lone source
//!   still gets the whole rate, and the first half of the burst is first come, first served.

use ahash::RandomState;
use lru::LruCache;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

/// Sources tracked per thread; beyond it the least recently seen one is forgotten.
const MAX_SOURCES: usize = 65_536;
/// A source counts as active for this long after its last connection.
pub const ACTIVE_WINDOW: Duration = Duration::from_secs(1);

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

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate_per_sec).min(self.burst);
    }

    /// Takes a token if one is available.
    pub fn allow(&mut self, now: Instant) -> bool {
        self.refill(now);
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
    /// The global budget is contended and this source has had its share of it.
    OverFairShare,
}

/// Who a connection is from, for admission: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceKey(u128);

impl SourceKey {
    pub fn of(ip: IpAddr) -> SourceKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => SourceKey(u128::from(v4.to_ipv6_mapped())),
            IpAddr::V6(v6) => SourceKey(u128::from(v6) & !u128::from(u64::MAX)),
        }
    }
}

/// An LRU map holding at most `capacity` entries that allocates as it fills (the crate's bounded
/// constructor would reserve the whole capacity up front).
fn bounded_lru(capacity: usize) -> LruCache<SourceKey, Source, RandomState> {
    let mut map = LruCache::unbounded_with_hasher(RandomState::new());
    map.resize(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN));
    map
}

/// What admission remembers of one source.
#[derive(Debug)]
struct Source {
    /// The per-source rate (`per_source_rate_per_second`), when one is configured.
    rate: Option<TokenBucket>,
    /// Global tokens this source may still take while the global budget is contended.
    share_tokens: f64,
    share_last: Instant,
    last_seen: Instant,
}

pub struct Admission {
    global: TokenBucket,
    per_source: Option<(f64, f64)>,
    sources: LruCache<SourceKey, Source, RandomState>,
    /// Sources seen in the current and the previous [`ACTIVE_WINDOW`].
    active_now: u32,
    active_before: u32,
    window_start: Instant,
    evicted: u64,
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
        Self::with_capacity(
            rate_per_sec,
            burst,
            per_source_rate,
            per_source_burst,
            share,
            MAX_SOURCES,
            now,
        )
    }

    fn with_capacity(
        rate_per_sec: u32,
        burst: u32,
        per_source_rate: u32,
        per_source_burst: u32,
        share: f64,
        capacity: usize,
        now: Instant,
    ) -> Self {
        let scaled = |v: u32| (f64::from(v) * share).max(1.0);
        Admission {
            global: TokenBucket::new(scaled(rate_per_sec), scaled(burst), now),
            per_source: (per_source_rate > 0)
                .then(|| (scaled(per_source_rate), scaled(per_source_burst))),
            sources: bounded_lru(capacity),
            active_now: 0,
            active_before: 0,
            window_start: now,
            evicted: 0,
            last_sweep: now,
        }
    }

    /// Decides on a new connection from `ip`.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        self.roll_window(now);
        // Without a per-source rate, an uncontended global budget needs no per-source state
        // (fair shares start to count once it is contended).
        if self.per_source.is_none() {
            self.global.refill(now);
            if self.global.tokens >= self.global.burst / 2.0 && self.global.allow(now) {
                return Ok(());
            }
        }
        let key = SourceKey::of(ip);
        // When full, inserting reuses the least recently seen source's entry (no allocation).
        if self.sources.len() >= self.sources.cap().get() && !self.sources.contains(&key) {
            self.evicted += 1;
        }
        let mut inserted = false;
        let per_source = self.per_source;
        let source = self.sources.get_or_insert_mut(key, || {
            inserted = true;
            Source {
                rate: per_source.map(|(rate, burst)| TokenBucket::new(rate, burst, now)),
                // Full: clamped to the fair share below.
                share_tokens: f64::INFINITY,
                share_last: now,
                last_seen: now,
            }
        });
        if inserted || source.last_seen < self.window_start {
            self.active_now = self.active_now.saturating_add(1);
        }
        source.last_seen = now;
        if let Some(bucket) = source.rate.as_mut() {
            if !bucket.allow(now) {
                return Err(Refusal::PerSourceLimited);
            }
        }
        // The source's share refills at the fair rate, up to a second's worth (at least one).
        let active = self.active_now.max(self.active_before).max(1);
        let fair_rate = self.global.rate_per_sec / f64::from(active);
        let since = now
            .saturating_duration_since(source.share_last)
            .as_secs_f64();
        source.share_last = now;
        let fair_burst = fair_rate.max(1.0);
        source.share_tokens = (source.share_tokens + since * fair_rate).min(fair_burst);
        self.global.refill(now);
        let contended = self.global.tokens < self.global.burst / 2.0;
        if contended {
            // (The share and the global bucket refill alike for a lone source: tolerate
            // rounding.)
            if source.share_tokens < 1.0 - 1e-9 {
                return Err(Refusal::OverFairShare);
            }
            // A source drawing on the contended budget leaves one token for a source that has
            // not (a newcomer, or one below its share), so that one never finds it spent.
            let drawing = source.share_tokens < fair_burst - 1e-9;
            if drawing && self.global.tokens < 2.0 {
                return Err(Refusal::OverFairShare);
            }
        }
        if !self.global.allow(now) {
            return Err(Refusal::RateLimited);
        }
        if contended {
            source.share_tokens -= 1.0;
        }
        Ok(())
    }

    /// Starts a new active-source window when the current one is over.
    fn roll_window(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < ACTIVE_WINDOW {
            return;
        }
        self.active_before = if elapsed < ACTIVE_WINDOW * 2 {
            self.active_now
        } else {
            0
        };
        self.active_now = 0;
        self.window_start = now;
    }

    /// Forgets idle sources, oldest first; called periodically.
    pub fn sweep(&mut self, now: Instant) {
        while let Some((_, source)) = self.sources.peek_lru() {
            let idle = now.saturating_duration_since(source.last_seen) >= ACTIVE_WINDOW
                && source.rate.is_none_or(|b| b.is_full_at(now));
            if !idle {
                break;
            }
            self.sources.pop_lru();
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

    /// Sources forgotten because the table was full, since the last call.
    pub fn take_evicted(&mut self) -> u64 {
        std::mem::take(&mut self.evicted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

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
        let (x, y) = (ip("192.0.2.1"), ip("192.0.2.2"));
        assert_eq!(a.admit(x, t0), Ok(()));
        assert_eq!(a.admit(x, t0), Ok(()));
        assert_eq!(a.admit(x, t0), Err(Refusal::PerSourceLimited));
        assert_eq!(a.admit(y, t0), Ok(()));
        a.sweep(t0 + Duration::from_secs(5));
        assert_eq!(a.tracked_sources(), 0);
    }

    #[test]
    fn ipv6_sources_are_keyed_by_slash_64() {
        let t0 = Instant::now();
        let mut a = Admission::new(1000, 1000, 1, 2, 1.0, t0);
        // Three addresses of one /64 share one bucket of 2.
        assert_eq!(a.admit(ip("2001:db8:1:2::1"), t0), Ok(()));
        assert_eq!(a.admit(ip("2001:db8:1:2:ffff::9"), t0), Ok(()));
        assert_eq!(
            a.admit(ip("2001:db8:1:2:dead:beef:0:1"), t0),
            Err(Refusal::PerSourceLimited)
        );
        // The neighbouring /64 is another source.
        assert_eq!(a.admit(ip("2001:db8:1:3::1"), t0), Ok(()));
        assert_eq!(a.tracked_sources(), 2);
        // An IPv4-mapped client is its IPv4 address, and IPv4 addresses are not grouped.
        assert_eq!(
            SourceKey::of(ip("::ffff:192.0.2.1")),
            SourceKey::of(ip("192.0.2.1"))
        );
        assert_ne!(
            SourceKey::of(ip("192.0.2.1")),
            SourceKey::of(ip("192.0.2.2"))
        );
    }

    #[test]
    fn full_table_forgets_least_recently_seen() {
        let t0 = Instant::now();
        let mut a = Admission::with_capacity(1000, 1000, 1, 1, 1.0, 3, t0);
        let (w, x, y, z) = (
            ip("192.0.2.1"),
            ip("192.0.2.2"),
            ip("192.0.2.3"),
            ip("192.0.2.4"),
        );
        let t = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(a.admit(w, t(1)), Ok(()));
        assert_eq!(a.admit(x, t(2)), Ok(()));
        assert_eq!(a.admit(y, t(3)), Ok(()));
        // w is seen again (refused, but seen): x is now the least recently seen.
        assert_eq!(a.admit(w, t(4)), Err(Refusal::PerSourceLimited));
        assert_eq!(a.admit(z, t(5)), Ok(()));
        assert_eq!((a.tracked_sources(), a.take_evicted()), (3, 1));
        // w and z keep their state (still limited); x starts afresh, evicting y.
        assert_eq!(a.admit(w, t(6)), Err(Refusal::PerSourceLimited));
        assert_eq!(a.admit(z, t(6)), Err(Refusal::PerSourceLimited));
        assert_eq!(a.admit(x, t(7)), Ok(()));
        assert_eq!(a.take_evicted(), 1);
    }

    #[test]
    fn global_bucket() {
        let t0 = Instant::now();
        let mut a = Admission::new(1, 2, 0, 0, 1.0, t0);
        let x = ip("192.0.2.1");
        assert_eq!(a.admit(x, t0), Ok(()));
        assert_eq!(a.admit(x, t0), Ok(()));
        assert_eq!(a.admit(x, t0), Err(Refusal::RateLimited));
    }

    /// Spip's rates scaled down: global 20/s (burst 40), per source 100/s (burst 1000).
    /// A busy source asks 100 times a second for 30 s; a quiet one once a second.
    fn busy_and_quiet(quiet_offset_ms: u64) -> (u32, u32) {
        let t0 = Instant::now();
        let mut a = Admission::new(20, 40, 100, 1000, 1.0, t0);
        let (busy, quiet) = (ip("198.51.100.7"), ip("2001:db8::5"));
        let (mut busy_ok, mut quiet_ok) = (0, 0);
        for tick in 0..3000u64 {
            let now = t0 + Duration::from_millis(tick * 10);
            if a.admit(busy, now).is_ok() {
                busy_ok += 1;
            }
            if tick % 100 == quiet_offset_ms / 10 && a.admit(quiet, now).is_ok() {
                quiet_ok += 1;
            }
        }
        (busy_ok, quiet_ok)
    }

    #[test]
    fn one_busy_source_cannot_starve_another() {
        for offset in [0, 10, 500, 990] {
            let (busy, quiet) = busy_and_quiet(offset);
            assert_eq!(
                quiet, 30,
                "quiet source at +{offset} ms: {quiet}/30 admitted"
            );
            // The busy source still gets the rest: the burst plus about 30 s x (20 - 1)/s.
            assert!((500..=640).contains(&busy), "busy source admitted {busy}");
        }
    }

    #[test]
    fn a_lone_source_gets_the_whole_rate() {
        let t0 = Instant::now();
        let mut a = Admission::new(20, 40, 0, 0, 1.0, t0);
        let x = ip("192.0.2.9");
        let admitted = (0..3000u64)
            .filter(|tick| a.admit(x, t0 + Duration::from_millis(tick * 10)).is_ok())
            .count();
        // 40 burst + 30 s x 20/s.
        assert!((630..=641).contains(&admitted), "{admitted}");
    }

    #[test]
    fn many_sources_share_the_rate() {
        let t0 = Instant::now();
        let mut a = Admission::new(20, 40, 0, 0, 1.0, t0);
        let busy = ip("198.51.100.7");
        let mut quiet_ok = 0;
        for tick in 0..3000u64 {
            let now = t0 + Duration::from_millis(tick * 10);
            let _ = a.admit(busy, now);
            // Ten quiet sources, one every 200 ms in turn (each once every 2 s).
            if tick % 20 == 0 {
                let n = (tick / 20) % 10;
                if a.admit(ip(&format!("192.0.2.{}", n + 1)), now).is_ok() {
                    quiet_ok += 1;
                }
            }
        }
        assert_eq!(quiet_ok, 150, "quiet sources admitted {quiet_ok}/150");
    }
}
