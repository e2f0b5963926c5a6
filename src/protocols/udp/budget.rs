//! Reply budgets: each source may draw a few replies, the whole sensor a byte rate. One per
//! worker thread (no lock); the sensor-wide rate is split evenly across workers. An IPv6
//! source is its /64 (one host holds a whole /64, and could otherwise take a fresh budget per
//! address).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Sources tracked per worker at most; a full table refuses replies to new sources.
const MAX_SOURCES: usize = 16_384;
/// A source's burst: this many seconds of its rate.
const SOURCE_BURST_SECONDS: f64 = 8.0;
/// The sensor's burst: this many seconds of its rate.
const GLOBAL_BURST_SECONDS: f64 = 2.0;

/// Why a reply was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The source spent its budget (or the table of sources is full).
    Source,
    /// The sensor-wide reply byte rate is spent.
    Global,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    bytes: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.bytes = (self.bytes + elapsed * rate).min(burst);
        self.at = now;
    }
}

/// The reply budgets of one worker.
pub struct ReplyBudget {
    source_rate: f64,
    global_rate: f64,
    global: Bucket,
    sources: HashMap<IpAddr, Bucket, ahash::RandomState>,
}

impl ReplyBudget {
    /// `source_rate` bytes per second per source, `global_rate` for this worker's share.
    pub fn new(source_rate: u32, global_rate: f64, now: Instant) -> Self {
        ReplyBudget {
            source_rate: f64::from(source_rate),
            global_rate,
            global: Bucket {
                bytes: global_rate * GLOBAL_BURST_SECONDS,
                at: now,
            },
            sources: HashMap::default(),
        }
    }

    /// Takes `len` bytes from `source`'s and the sensor's budgets, or neither.
    pub fn take(&mut self, source: IpAddr, len: usize, now: Instant) -> Result<(), Refused> {
        let source = source_key(source);
        let len = len as f64;
        let source_burst = self.source_rate * SOURCE_BURST_SECONDS;
        let global_burst = self.global_rate * GLOBAL_BURST_SECONDS;
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&source) {
            return Err(Refused::Source);
        }
        let bucket = self.sources.entry(source).or_insert(Bucket {
            bytes: source_burst,
            at: now,
        });
        bucket.refill(now, self.source_rate, source_burst);
        if bucket.bytes < len {
            return Err(Refused::Source);
        }
        self.global.refill(now, self.global_rate, global_burst);
        if self.global.bytes < len {
            return Err(Refused::Global);
        }
        bucket.bytes -= len;
        self.global.bytes -= len;
        Ok(())
    }

    /// Forgets sources whose budget is full again (they would start from a full one anyway).
    pub fn sweep(&mut self, now: Instant) {
        let (rate, burst) = (self.source_rate, self.source_rate * SOURCE_BURST_SECONDS);
        self.sources.retain(|_, b| {
            b.refill(now, rate, burst);
            b.bytes < burst
        });
    }
}

/// The budget's key: the address itself (IPv4, IPv4-mapped) or its /64 (IPv6).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = ReplyBudget::new(100, 1e9, t0);
        let src: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..8 {
            assert_eq!(b.take(src, 100, t0), Ok(()));
        }
        assert_eq!(b.take(src, 100, t0), Err(Refused::Source));
        assert_eq!(b.take(other, 100, t0), Ok(()), "other sources keep theirs");
        assert_eq!(b.take(src, 100, t0 + Duration::from_secs(1)), Ok(()));
        assert_eq!(
            b.take(src, 100, t0 + Duration::from_secs(1)),
            Err(Refused::Source)
        );
    }

    #[test]
    fn the_sensor_rate_bounds_all_sources() {
        let t0 = Instant::now();
        let mut b = ReplyBudget::new(10_000, 500.0, t0);
        let mut sent = 0;
        for i in 0..100u8 {
            if b.take(IpAddr::from([10, 0, 0, i]), 100, t0).is_ok() {
                sent += 1;
            }
        }
        assert_eq!(sent, 10, "two seconds of 500 B/s");
        let refused = b.take(IpAddr::from([10, 0, 1, 1]), 100, t0);
        assert_eq!(refused, Err(Refused::Global));
    }

    #[test]
    fn an_ipv6_64_shares_one_budget() {
        let t0 = Instant::now();
        let mut b = ReplyBudget::new(100, 1e9, t0);
        for i in 0..8u16 {
            let ip = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, i + 1));
            assert_eq!(b.take(ip, 100, t0), Ok(()));
        }
        let next: IpAddr = "2001:db8:0:1::ffff".parse().unwrap();
        assert_eq!(b.take(next, 100, t0), Err(Refused::Source));
        let other: IpAddr = "2001:db8:0:2::1".parse().unwrap();
        assert_eq!(b.take(other, 100, t0), Ok(()));
    }

    #[test]
    fn sweep_forgets_full_buckets() {
        let t0 = Instant::now();
        let mut b = ReplyBudget::new(100, 1e9, t0);
        b.take("192.0.2.1".parse().unwrap(), 100, t0).unwrap();
        b.sweep(t0);
        assert_eq!(b.sources.len(), 1);
        b.sweep(t0 + Duration::from_secs(2));
        assert!(b.sources.is_empty());
    }
}
