//! Per-source scan summaries: what each source (IPv4 /32, IPv6 /64) did in an interval.
//!
//! Every worker (and the SYN log reader, and the UDP side) reports into one [`Summaries`]. The
//! table is a fixed number of slots split into sets of [`WAYS`] slots, each set behind its own
//! mutex: a report hashes the source to its set, locks it (uncontended in practice: the sets
//! far outnumber the threads), and updates a fixed-size entry in place. No report allocates
//! once a slot has been used (an evicted entry's box is reused); a new source in a full set
//! evicts the set's least-recently-seen source and is counted in [`Summaries::evicted`].
//!
//! [`Summaries::write_due`] writes one `event.kind: "metric"` record per source active in the
//! interval, then starts the next interval (sources idle for a whole interval are forgotten).

use crate::json::JsonWriter;
use crate::record::{format_ip, write_timestamp};
use ahash::RandomState;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Slots per set: a new source evicts the least-recently-seen of these.
const WAYS: usize = 8;
/// HyperLogLog registers (2^9 = 512 bytes; standard error about 4.6%, exact below
/// [`FIRST_PORTS`] distinct ports).
const HLL_BITS: u32 = 9;
const HLL_REGISTERS: usize = 1 << HLL_BITS;
/// Destination ports kept in the order first seen.
pub const FIRST_PORTS: usize = 16;
/// Distinct SYN fingerprints kept per source, and their longest kept length.
pub const FINGERPRINTS: usize = 3;
const FINGERPRINT_LEN: usize = 48;

/// Summary settings (`scan_summary_*` in the config).
#[derive(Debug, Clone, Copy)]
pub struct SummaryConfig {
    /// Sources tracked at once (rounded up to a multiple of [`WAYS`]); 0: no table.
    pub max_sources: usize,
    pub interval: Duration,
    /// Distinct destination ports in one interval from which a source is tagged `scanner`.
    pub scanner_ports: u32,
}

/// A source: an IPv4 address, or the /64 of an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKey {
    V4(u32),
    V6Prefix(u64),
}

impl SourceKey {
    pub fn of(ip: IpAddr) -> SourceKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => SourceKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => SourceKey::V6Prefix((u128::from(v6) >> 64) as u64),
        }
    }

    fn ip(self) -> IpAddr {
        match self {
            SourceKey::V4(a) => IpAddr::V4(a.into()),
            SourceKey::V6Prefix(p) => IpAddr::V6(Ipv6Addr::from(u128::from(p) << 64)),
        }
    }
}

/// Small distinct-count sketch (HyperLogLog, 8-bit registers).
#[derive(Clone)]
struct PortSketch {
    registers: [u8; HLL_REGISTERS],
}

impl PortSketch {
    const EMPTY: PortSketch = PortSketch {
        registers: [0; HLL_REGISTERS],
    };

    fn insert(&mut self, port: u16) {
        // A fixed mix (splitmix64 finalizer): ports are not secret and the sketch is per source.
        let mut h = u64::from(port).wrapping_add(0x9e37_79b9_7f4a_7c15);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
        let index = (h >> (64 - HLL_BITS)) as usize;
        let rank = ((h << HLL_BITS) | (1 << (HLL_BITS - 1))).leading_zeros() as u8 + 1;
        let r = &mut self.registers[index];
        *r = (*r).max(rank);
    }

    fn estimate(&self) -> u64 {
        let m = HLL_REGISTERS as f64;
        let mut sum = 0.0;
        let mut zeros = 0u32;
        for &r in &self.registers {
            sum += 1.0 / f64::from(1u32 << r.min(31));
            zeros += u32::from(r == 0);
        }
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / sum;
        let e = if raw <= 2.5 * m && zeros > 0 {
            m * (m / f64::from(zeros)).ln() // linear counting for small sets
        } else {
            raw
        };
        // Never more than the 65,536 ports there are.
        (e.round() as u64).min(65_536)
    }
}

/// What one source did in the current interval (plus when it was first seen).
struct Entry {
    key: SourceKey,
    first_seen: Instant,
    last_seen: Instant,
    /// The source completed a TCP handshake at some point (accepted or shed after accept).
    handshake_ever: bool,
    /// SYNs seen by the firewall log.
    syns: u64,
    accepted: u64,
    shed: u64,
    empty: u64,
    with_payload: u64,
    udp: u64,
    ports: PortSketch,
    first_ports: [u16; FIRST_PORTS],
    first_ports_len: u8,
    fingerprints: [([u8; FINGERPRINT_LEN], u8); FINGERPRINTS],
    fingerprints_len: u8,
}

impl Entry {
    fn fresh(key: SourceKey, now: Instant) -> Entry {
        Entry {
            key,
            first_seen: now,
            last_seen: now,
            handshake_ever: false,
            syns: 0,
            accepted: 0,
            shed: 0,
            empty: 0,
            with_payload: 0,
            udp: 0,
            ports: PortSketch::EMPTY,
            first_ports: [0; FIRST_PORTS],
            first_ports_len: 0,
            fingerprints: [([0; FINGERPRINT_LEN], 0); FINGERPRINTS],
            fingerprints_len: 0,
        }
    }

    fn reset(&mut self, key: SourceKey, now: Instant) {
        *self = Entry::fresh(key, now);
    }

    fn active(&self) -> bool {
        self.syns + self.accepted + self.shed + self.empty + self.with_payload + self.udp > 0
    }

    /// Starts a new interval: counts back to zero, first/last seen and the handshake kept.
    fn next_interval(&mut self) {
        let (key, first, last, ever) = (
            self.key,
            self.first_seen,
            self.last_seen,
            self.handshake_ever,
        );
        self.reset(key, first);
        self.last_seen = last;
        self.handshake_ever = ever;
    }

    fn port(&mut self, port: u16) {
        self.ports.insert(port);
        let len = usize::from(self.first_ports_len);
        if len < FIRST_PORTS && !self.first_ports[..len].contains(&port) {
            self.first_ports[len] = port;
            self.first_ports_len += 1;
        }
    }

    fn fingerprint(&mut self, fp: &str) {
        let fp = &fp.as_bytes()[..fp.len().min(FINGERPRINT_LEN)];
        let len = usize::from(self.fingerprints_len);
        if len == FINGERPRINTS
            || self.fingerprints[..len]
                .iter()
                .any(|(b, n)| &b[..*n as usize] == fp)
        {
            return;
        }
        let slot = &mut self.fingerprints[len];
        slot.0[..fp.len()].copy_from_slice(fp);
        slot.1 = fp.len() as u8; // ok: at most FINGERPRINT_LEN (48)
        self.fingerprints_len += 1;
    }

    /// SYNs that never became a connection we saw: each accepted or shed connection had one.
    fn syn_only(&self) -> u64 {
        self.syns.saturating_sub(self.accepted + self.shed)
    }

    fn distinct_ports(&self) -> u64 {
        let listed = u64::from(self.first_ports_len);
        if (self.first_ports_len as usize) < FIRST_PORTS {
            listed // exact while the list has room
        } else {
            self.ports.estimate().max(listed)
        }
    }
}

/// One set of the table. The ways' keys and last-seen stamps are inline, so finding a source
/// (or the least recently seen one to evict) reads this struct, not every way's entry: under a
/// flood from many sources each of those would be a cache miss.
#[derive(Default)]
struct Set {
    keys: [Option<SourceKey>; WAYS],
    /// The set's update count when each way's source was last updated: the smallest is the
    /// least recently seen (a logical clock, so no time arithmetic per update).
    seen: [u64; WAYS],
    updates: u64,
    /// Boxed so that an unused way costs a pointer, not a whole entry.
    entries: [Option<Box<Entry>>; WAYS],
}

/// The shared, bounded per-source table.
pub struct Summaries {
    sets: Box<[Mutex<Set>]>,
    hasher: RandomState,
    config: SummaryConfig,
    /// Sources dropped from a full set to make room for a new one.
    evicted: AtomicU64,
    /// When the current interval started, and the clocks it is read against.
    interval_start: Mutex<Instant>,
    clock_base: (Instant, SystemTime),
}

impl Summaries {
    /// The table for `config.max_sources` sources; none (every update a no-op) when that is 0.
    pub fn new(config: SummaryConfig, now: Instant) -> Summaries {
        let sets = config.max_sources.div_ceil(WAYS);
        Summaries {
            sets: (0..sets).map(|_| Mutex::new(Default::default())).collect(),
            hasher: RandomState::new(),
            config,
            evicted: AtomicU64::new(0),
            interval_start: Mutex::new(now),
            clock_base: (now, SystemTime::now()),
        }
    }

    pub fn config(&self) -> &SummaryConfig {
        &self.config
    }

    /// Sources evicted from a full table so far.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// An accepted connection (`syn`: its SYN fingerprint, when known).
    pub fn accepted(&self, src: IpAddr, dport: u16, syn: Option<&str>, now: Instant) {
        self.update(src, now, |e| {
            e.accepted += 1;
            e.handshake_ever = true;
            e.port(dport);
            if let Some(fp) = syn {
                e.fingerprint(fp);
            }
        });
    }

    /// A connection refused by a limit right after accept().
    pub fn shed(&self, src: IpAddr, dport: u16, now: Instant) {
        self.update(src, now, |e| {
            e.shed += 1;
            e.handshake_ever = true;
            e.port(dport);
        });
    }

    /// An accepted connection ended, having sent `payload_bytes`.
    pub fn closed(&self, src: IpAddr, payload_bytes: usize, now: Instant) {
        self.update(src, now, |e| {
            if payload_bytes == 0 {
                e.empty += 1;
            } else {
                e.with_payload += 1;
            }
        });
    }

    /// A UDP datagram.
    pub fn udp(&self, src: IpAddr, dport: u16, now: Instant) {
        self.update(src, now, |e| {
            e.udp += 1;
            e.port(dport);
        });
    }

    /// A SYN seen by the firewall log (NFLOG). Those that became connections are subtracted
    /// when the summary is written (see [`Entry::syn_only`]).
    pub fn syn_only(&self, src: IpAddr, dport: u16, now: Instant) {
        self.update(src, now, |e| {
            e.syns += 1;
            e.port(dport);
        });
    }

    fn update(&self, src: IpAddr, now: Instant, apply: impl FnOnce(&mut Entry)) {
        if self.sets.is_empty() {
            return; // summaries are off
        }
        let key = SourceKey::of(src);
        let index = (self.hasher.hash_one(key) % self.sets.len() as u64) as usize;
        let mut set = match self.sets[index].lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(), // plain counters: still consistent
        };
        let way = match set.keys.iter().position(|k| *k == Some(key)) {
            Some(way) => way,
            None => self.way_for_new(&mut set, key, now),
        };
        set.updates += 1;
        set.seen[way] = set.updates;
        if let Some(e) = set.entries[way].as_deref_mut() {
            e.last_seen = e.last_seen.max(now);
            apply(e);
        }
    }

    /// A free way, else the set's least recently seen source (evicted), reset for `key`.
    fn way_for_new(&self, set: &mut Set, key: SourceKey, now: Instant) -> usize {
        let way = match set.keys.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                self.evicted.fetch_add(1, Ordering::Relaxed);
                (0..WAYS).min_by_key(|&w| set.seen[w]).unwrap_or(0)
            }
        };
        set.keys[way] = Some(key);
        match &mut set.entries[way] {
            Some(e) => e.reset(key, now),
            empty @ None => *empty = Some(Box::new(Entry::fresh(key, now))),
        }
        way
    }

    /// When the current interval ends.
    pub fn next_due(&self) -> Instant {
        let start = *self
            .interval_start
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        start + self.config.interval
    }

    /// Whether the current interval is over at `now`.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next_due()
    }

    /// Writes one record per source active in the interval that ends at `now` (each line via
    /// `emit`), then starts the next interval. Returns how many records were written.
    pub fn write_interval(
        &self,
        sensor_name: &str,
        now: Instant,
        mut emit: impl FnMut(&[u8]),
    ) -> usize {
        let start = {
            let mut s = self
                .interval_start
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *s, now)
        };
        let mut line = Vec::with_capacity(1024);
        let mut written = 0;
        for set in self.sets.iter() {
            let mut set = set.lock().unwrap_or_else(|p| p.into_inner());
            let set = &mut *set;
            for (slot, key) in set.entries.iter_mut().zip(set.keys.iter_mut()) {
                let Some(e) = slot.as_deref_mut() else {
                    continue;
                };
                if !e.active() {
                    // Idle for a whole interval: forget it.
                    *slot = None;
                    *key = None;
                    continue;
                }
                line.clear();
                self.write_record(&mut line, sensor_name, e, start, now);
                emit(&line);
                written += 1;
                e.next_interval();
            }
        }
        written
    }

    fn wall(&self, t: Instant) -> SystemTime {
        let (base, wall) = self.clock_base;
        match t.checked_duration_since(base) {
            Some(d) => wall + d,
            None => wall - base.duration_since(t),
        }
    }

    fn write_record(
        &self,
        out: &mut Vec<u8>,
        sensor_name: &str,
        e: &Entry,
        start: Instant,
        end: Instant,
    ) {
        let mut w = JsonWriter::new(out);
        w.begin();
        w.key_only("@timestamp");
        write_timestamp(w.buf(), self.wall(end));
        w.begin_object("event");
        w.str("kind", b"metric");
        w.str("dataset", b"spip.scan_summary");
        w.str("ingested_by", b"spip");
        w.key_only("start");
        write_timestamp(w.buf(), self.wall(start));
        w.key_only("end");
        write_timestamp(w.buf(), self.wall(end));
        w.end_object();

        let name = sensor_name.as_bytes();
        w.begin_object("observer");
        w.str("hostname", name);
        w.str("id", name);
        w.end_object();
        w.begin_object("host");
        w.str("name", name);
        w.end_object();

        let mut ip = [0u8; 46];
        let n = format_ip(&mut ip, e.key.ip());
        w.begin_object("source");
        w.str("ip", &ip[..n]);
        w.end_object();

        let distinct = e.distinct_ports();
        let scanner = distinct >= u64::from(self.config.scanner_ports);
        let spoofable = !e.handshake_ever;
        let tags: [(&[u8], bool); 2] = [(b"scanner", scanner), (b"spoofable", spoofable)];
        if scanner || spoofable {
            w.str_array("tags", tags.iter().filter(|t| t.1).map(|t| t.0));
        }

        w.begin_object("spip");
        w.begin_object("scan");
        if let SourceKey::V6Prefix(_) = e.key {
            w.u64("prefix_length", 64);
        }
        w.key_only("first_seen");
        write_timestamp(w.buf(), self.wall(e.first_seen));
        w.key_only("last_seen");
        write_timestamp(w.buf(), self.wall(e.last_seen));
        w.u64("syn_only", e.syn_only());
        w.u64("syns_logged", e.syns);
        w.u64("accepted", e.accepted);
        w.u64("empty", e.empty);
        w.u64("with_payload", e.with_payload);
        w.u64("shed", e.shed);
        w.u64("udp", e.udp);
        w.u64("distinct_ports", distinct);
        w.key_only("first_ports");
        let ports = w.buf();
        ports.push(b'[');
        for (i, p) in e.first_ports[..usize::from(e.first_ports_len)]
            .iter()
            .enumerate()
        {
            if i > 0 {
                ports.push(b',');
            }
            crate::json::write_u64(ports, u64::from(*p));
        }
        ports.push(b']');
        if e.fingerprints_len > 0 {
            let fps = &e.fingerprints[..usize::from(e.fingerprints_len)];
            w.str_array(
                "syn_fingerprints",
                fps.iter().map(|(b, n)| &b[..*n as usize]),
            );
        }
        w.end_object();
        w.end_object();
        w.finish();
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max_sources: usize) -> (Summaries, Instant) {
        let t0 = Instant::now();
        let cfg = SummaryConfig {
            max_sources,
            interval: Duration::from_secs(60),
            scanner_ports: 25,
        };
        (Summaries::new(cfg, t0), t0)
    }

    fn records(s: &Summaries, now: Instant) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        s.write_interval("sensor-1", now, |l| {
            out.push(serde_json::from_slice(l).expect("valid JSON"))
        });
        out
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_source_scanning_is_counted_and_tagged() {
        let (s, t0) = table(1024);
        let src = ip("192.0.2.7");
        for port in 1..=10_000u16 {
            let now = t0 + Duration::from_millis(u64::from(port));
            if port <= 1000 {
                s.accepted(src, port, Some("64240_2-4-8-1-3_1460_7"), now);
                s.closed(src, if port % 2 == 0 { 0 } else { 10 }, now);
            } else {
                s.shed(src, port, now);
            }
        }
        let r = records(&s, t0 + Duration::from_secs(60));
        assert_eq!(r.len(), 1);
        let v = &r[0];
        assert_eq!(v["event"]["kind"], "metric");
        assert_eq!(v["source"]["ip"], "192.0.2.7");
        let scan = &v["spip"]["scan"];
        assert_eq!(scan["accepted"], 1000);
        assert_eq!(scan["shed"], 9000);
        assert_eq!(scan["empty"], 500);
        assert_eq!(scan["with_payload"], 500);
        let d = scan["distinct_ports"].as_u64().unwrap();
        assert!((9000..=11_000).contains(&d), "distinct_ports {d}");
        assert_eq!(scan["first_ports"].as_array().unwrap().len(), FIRST_PORTS);
        assert_eq!(scan["first_ports"][0], 1);
        assert_eq!(scan["syn_fingerprints"][0], "64240_2-4-8-1-3_1460_7");
        assert_eq!(v["tags"], serde_json::json!(["scanner"]));
    }

    #[test]
    fn syn_only_sources_are_spoofable_and_accepted_syns_are_not_counted_twice() {
        let (s, t0) = table(1024);
        let scanner = ip("198.51.100.1");
        for port in 0..30u16 {
            s.syn_only(scanner, port, t0);
        }
        let mixed = ip("198.51.100.2");
        for port in 0..5u16 {
            s.syn_only(mixed, port, t0);
        }
        s.accepted(mixed, 1, None, t0);
        s.shed(mixed, 2, t0);
        let r = records(&s, t0 + Duration::from_secs(60));
        let by_ip = |a: &str| r.iter().find(|v| v["source"]["ip"] == a).unwrap().clone();
        let v = by_ip("198.51.100.1");
        assert_eq!(v["spip"]["scan"]["syn_only"], 30);
        assert_eq!(v["spip"]["scan"]["distinct_ports"], 30);
        assert_eq!(v["tags"], serde_json::json!(["scanner", "spoofable"]));
        let v = by_ip("198.51.100.2");
        assert_eq!(v["spip"]["scan"]["syn_only"], 3);
        assert!(v.get("tags").is_none());
    }

    #[test]
    fn ipv6_sources_share_their_slash_64() {
        let (s, t0) = table(1024);
        s.udp(ip("2001:db8:1:2::1"), 53, t0);
        s.udp(ip("2001:db8:1:2:ffff::9"), 161, t0);
        s.udp(ip("2001:db8:1:3::1"), 53, t0);
        s.udp(ip("::ffff:192.0.2.1"), 53, t0);
        let r = records(&s, t0 + Duration::from_secs(60));
        assert_eq!(r.len(), 3);
        let v = r
            .iter()
            .find(|v| v["source"]["ip"] == "2001:db8:1:2::")
            .unwrap();
        assert_eq!(v["spip"]["scan"]["udp"], 2);
        assert_eq!(v["spip"]["scan"]["prefix_length"], 64);
        assert!(r.iter().any(|v| v["source"]["ip"] == "192.0.2.1"));
    }

    #[test]
    fn intervals_reset_counts_and_forget_idle_sources() {
        let (s, t0) = table(1024);
        let a = ip("192.0.2.1");
        s.accepted(a, 80, None, t0);
        assert!(!s.due(t0 + Duration::from_secs(59)));
        assert!(s.due(t0 + Duration::from_secs(60)));
        assert_eq!(records(&s, t0 + Duration::from_secs(60)).len(), 1);
        // Nothing new: no record, and the source is dropped.
        assert_eq!(records(&s, t0 + Duration::from_secs(120)).len(), 0);
        s.syn_only(a, 81, t0 + Duration::from_secs(130));
        let r = records(&s, t0 + Duration::from_secs(180));
        assert_eq!(r[0]["spip"]["scan"]["accepted"], 0);
        assert_eq!(r[0]["spip"]["scan"]["syn_only"], 1);
    }

    #[test]
    fn full_table_evicts_least_recently_seen_and_counts() {
        let (s, t0) = table(WAYS); // one set
        for i in 0..WAYS as u32 {
            s.accepted(
                IpAddr::V4((0xc000_0200 + i).into()),
                80,
                None,
                t0 + Duration::from_secs(u64::from(i)),
            );
        }
        assert_eq!(s.evicted(), 0);
        s.accepted(ip("203.0.113.9"), 80, None, t0 + Duration::from_secs(30));
        assert_eq!(s.evicted(), 1);
        let r = records(&s, t0 + Duration::from_secs(60));
        assert_eq!(r.len(), WAYS);
        // 192.0.2.0 was the least recently seen.
        assert!(r.iter().all(|v| v["source"]["ip"] != "192.0.2.0"));
        assert!(r.iter().any(|v| v["source"]["ip"] == "203.0.113.9"));
    }

    #[test]
    fn no_table_when_summaries_are_off() {
        let (s, t0) = table(0);
        s.accepted(ip("192.0.2.7"), 22, None, t0);
        s.closed(ip("192.0.2.7"), 0, t0);
        s.udp(ip("192.0.2.8"), 53, t0);
        assert!(records(&s, t0 + Duration::from_secs(60)).is_empty());
        assert_eq!(s.evicted(), 0);
    }

    #[test]
    fn fingerprints_are_distinct_and_bounded() {
        let (s, t0) = table(64);
        let a = ip("192.0.2.1");
        for fp in ["a", "b", "a", "c", "d", "e"] {
            s.accepted(a, 80, Some(fp), t0);
        }
        let long = "x".repeat(200);
        s.accepted(ip("192.0.2.2"), 80, Some(&long), t0);
        let r = records(&s, t0 + Duration::from_secs(60));
        let v = r.iter().find(|v| v["source"]["ip"] == "192.0.2.1").unwrap();
        assert_eq!(
            v["spip"]["scan"]["syn_fingerprints"],
            serde_json::json!(["a", "b", "c"])
        );
        let v = r.iter().find(|v| v["source"]["ip"] == "192.0.2.2").unwrap();
        assert_eq!(
            v["spip"]["scan"]["syn_fingerprints"][0]
                .as_str()
                .unwrap()
                .len(),
            FINGERPRINT_LEN
        );
    }

    #[test]
    fn sketch_estimates_within_error() {
        for n in [100u32, 1000, 5000, 65_536] {
            let mut sk = PortSketch::EMPTY;
            for p in 0..n {
                sk.insert(p as u16);
            }
            let e = sk.estimate() as f64;
            let err = (e - f64::from(n)).abs() / f64::from(n);
            assert!(err < 0.2, "n {n} estimate {e}");
        }
    }

    #[test]
    fn summaries_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Summaries>();
    }
}
