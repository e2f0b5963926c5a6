//! UDP flows: the datagrams between one client address and port and one original destination
//! share an `event.id` while no gap between them is longer than the idle window. One table
//! per worker (no lock), bounded.

use crate::record::{EventId, EventIds};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

/// Flows tracked per worker at most; beyond it a datagram of a new flow gets a fresh
/// `event.id` that is not remembered (counted by the caller via [`Flow::untracked`]).
pub const MAX_FLOWS: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Entry {
    id: EventId,
    started: SystemTime,
    datagrams: u32,
    client_bytes: u64,
    last: Instant,
}

/// What a datagram's record says about its flow.
#[derive(Debug, Clone, Copy)]
pub struct Flow {
    pub id: EventId,
    /// When the flow's first datagram came.
    pub started: SystemTime,
    /// 1-based datagram number in the flow (`spip.turn`).
    pub turn: u32,
    /// Client bytes of the flow so far (`source.bytes`).
    pub client_bytes: u64,
    /// The table was full: this flow is not remembered.
    pub untracked: bool,
}

/// The flow table of one worker.
pub struct Flows {
    idle: Duration,
    table: HashMap<(SocketAddr, SocketAddr), Entry, ahash::RandomState>,
}

impl Flows {
    pub fn new(idle: Duration) -> Self {
        Flows {
            idle,
            table: HashMap::default(),
        }
    }

    /// The flow of a `len`-byte datagram from a client to a server (`(client, server)`);
    /// `None` when the datagram begins a flow and `admit` refuses it (nothing is remembered,
    /// so the flow's next datagram asks again).
    pub fn datagram(
        &mut self,
        (client, server): (SocketAddr, SocketAddr),
        len: usize,
        now: Instant,
        wall: SystemTime,
        ids: &mut EventIds,
        admit: impl FnOnce() -> bool,
    ) -> Option<Flow> {
        let fresh = |ids: &mut EventIds| Entry {
            id: ids.next_id(),
            started: wall,
            datagrams: 0,
            client_bytes: 0,
            last: now,
        };
        let full = self.table.len() >= MAX_FLOWS;
        let key = (client, server);
        let ongoing = self
            .table
            .get(&key)
            .map(|e| now.saturating_duration_since(e.last) <= self.idle);
        if ongoing != Some(true) && !admit() {
            if ongoing.is_some() {
                self.table.remove(&key); // its idle window is over anyway
            }
            return None;
        }
        let entry = match self.table.get_mut(&key) {
            Some(e) if ongoing == Some(true) => e,
            Some(e) => {
                *e = fresh(ids);
                e
            }
            None if full => {
                let e = fresh(ids);
                return Some(Flow {
                    id: e.id,
                    started: wall,
                    turn: 1,
                    client_bytes: len as u64,
                    untracked: true,
                });
            }
            None => self.table.entry(key).or_insert(fresh(ids)),
        };
        entry.datagrams = entry.datagrams.saturating_add(1);
        entry.client_bytes += len as u64;
        entry.last = now;
        Some(Flow {
            id: entry.id,
            started: entry.started,
            turn: entry.datagrams,
            client_bytes: entry.client_bytes,
            untracked: false,
        })
    }

    /// Forgets flows idle longer than the window.
    pub fn sweep(&mut self, now: Instant) {
        let idle = self.idle;
        self.table
            .retain(|_, e| now.saturating_duration_since(e.last) <= idle);
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_of_a_flow_share_an_id_until_it_goes_idle() {
        let mut ids = EventIds::new();
        let mut flows = Flows::new(Duration::from_secs(30));
        let c: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let s: SocketAddr = "198.51.100.2:53".parse().unwrap();
        let t0 = Instant::now();
        let w = SystemTime::now();
        let mut flow = |server: SocketAddr, len, at| {
            flows
                .datagram((c, server), len, at, w, &mut ids, || true)
                .expect("admitted")
        };
        let a = flow(s, 10, t0);
        let b = flow(s, 20, t0 + Duration::from_secs(29));
        assert_eq!(a.id.as_str(), b.id.as_str());
        assert_eq!((a.turn, b.turn), (1, 2));
        assert_eq!(b.client_bytes, 30);
        let other = flow("198.51.100.2:54".parse().unwrap(), 5, t0);
        assert_ne!(other.id.as_str(), a.id.as_str());
        let late = flow(s, 7, t0 + Duration::from_secs(60));
        assert_ne!(late.id.as_str(), a.id.as_str());
        assert_eq!((late.turn, late.client_bytes), (1, 7));
        flows.sweep(t0 + Duration::from_secs(60));
        assert_eq!(flows.len(), 1);
    }

    #[test]
    fn only_a_flows_first_datagram_asks_admission() {
        let mut ids = EventIds::new();
        let mut flows = Flows::new(Duration::from_secs(30));
        let key = (
            "192.0.2.1:5000".parse().unwrap(),
            "198.51.100.2:53".parse().unwrap(),
        );
        let (t0, w) = (Instant::now(), SystemTime::now());
        let mut asked = 0;
        let refused = flows.datagram(key, 10, t0, w, &mut ids, || {
            asked += 1;
            false
        });
        assert!(refused.is_none());
        assert!(flows.is_empty(), "a refused flow is not remembered");
        for n in 1..=3 {
            let flow = flows.datagram(key, 10, t0, w, &mut ids, || {
                asked += 1;
                true
            });
            assert_eq!(flow.map(|f| f.turn), Some(n));
        }
        assert_eq!(
            asked, 2,
            "the refused datagram and the admitted flow's first"
        );
        // Idle past the window: a new flow, which asks again.
        let later = t0 + Duration::from_secs(31);
        assert!(
            flows
                .datagram(key, 1, later, w, &mut ids, || false)
                .is_none()
        );
        assert!(flows.is_empty());
    }
}
