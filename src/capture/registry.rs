//! A worker's live connections, indexed by fd, and the deadline of their first wait.
//!
//! Most connections of a scan flood send nothing: they sit in their first read until the read
//! timeout. Giving each of them a runtime timer costs memory (the timer future and its heap
//! entry) and CPU (arming and cancelling it). But the first wait always lasts
//! `read_timeout_seconds` from accept, so first-wait deadlines arrive in accept order: one FIFO
//! per worker holds them all, and a periodic sweep ends the expired waits with
//! `shutdown(SHUT_RD)`, which makes the pending read return EOF. The connection then asks
//! [`Registry::first_wait_timed_out`] to tell a timeout from a real EOF.
//!
//! Entries are generation-tagged, so a deadline never hits a newer connection that reused the fd.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::time::Instant;

const GEN_MASK: u32 = 0x3fff_ffff;
/// The first wait is over (data, EOF or error): the deadline no longer applies.
const FIRST_WAIT_DONE: u32 = 1 << 30;
/// The sweep ended the first wait.
const TIMED_OUT: u32 = 1 << 31;

/// Identifies one connection: its fd plus a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnId {
    pub fd: RawFd,
    generation: u32,
}

#[derive(Default)]
pub struct Registry {
    /// By fd: 0 = no connection, else generation | flags.
    slots: Vec<u32>,
    live: usize,
    next_generation: u32,
    first_wait_deadlines: VecDeque<(Instant, ConnId)>,
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers a new connection whose first wait ends at `deadline`.
    pub fn insert(&mut self, fd: RawFd, deadline: Instant) -> ConnId {
        self.next_generation = (self.next_generation % GEN_MASK) + 1; // never 0
        let id = ConnId {
            fd,
            generation: self.next_generation,
        };
        let idx = fd.max(0) as usize;
        if idx >= self.slots.len() {
            self.slots.resize((idx + 1).next_power_of_two(), 0);
        }
        self.slots[idx] = id.generation;
        self.live += 1;
        self.first_wait_deadlines.push_back((deadline, id));
        id
    }

    fn slot(&mut self, id: ConnId) -> Option<&mut u32> {
        self.slots
            .get_mut(id.fd.max(0) as usize)
            .filter(|s| **s & GEN_MASK == id.generation)
    }

    /// The first wait ended by itself; its deadline no longer applies.
    pub fn first_wait_over(&mut self, id: ConnId) {
        if let Some(s) = self.slot(id) {
            *s |= FIRST_WAIT_DONE;
        }
    }

    /// Whether the sweep ended this connection's first wait.
    pub fn first_wait_timed_out(&mut self, id: ConnId) -> bool {
        self.slot(id).is_some_and(|s| *s & TIMED_OUT != 0)
    }

    pub fn remove(&mut self, id: ConnId) {
        if let Some(s) = self.slot(id) {
            *s = 0;
            self.live -= 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Ends the first waits whose deadline has passed; returns how many.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let mut ended = 0;
        while let Some(&(deadline, id)) = self.first_wait_deadlines.front() {
            if deadline > now {
                break;
            }
            self.first_wait_deadlines.pop_front();
            if let Some(s) = self.slot(id)
                && *s & FIRST_WAIT_DONE == 0
            {
                *s |= TIMED_OUT | FIRST_WAIT_DONE;
                // The generation matched, so `id.fd` is still this connection's open socket
                // (connections leave the registry before they close their fd).
                super::sys::shutdown(id.fd, std::net::Shutdown::Read);
                ended += 1;
            }
        }
        ended
    }

    /// Every live connection's fd (for the end of the shutdown grace period).
    pub fn live_fds(&self) -> Vec<RawFd> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| **s != 0)
            .map(|(fd, _)| fd as RawFd)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn generations_protect_reused_fds() {
        let t0 = Instant::now();
        let mut r = Registry::new();
        // Use fds that are not open in this process, so shutdown() is a harmless EBADF.
        let a = r.insert(100_000, t0);
        r.remove(a);
        let b = r.insert(100_000, t0 + Duration::from_secs(10));
        assert_eq!(
            r.sweep(t0 + Duration::from_secs(1)),
            0,
            "a's deadline must not hit b"
        );
        assert!(!r.first_wait_timed_out(b));
        assert_eq!(r.sweep(t0 + Duration::from_secs(11)), 1);
        assert!(r.first_wait_timed_out(b));
        assert!(!r.is_empty());
        r.remove(b);
        assert!(r.is_empty());
    }

    #[test]
    fn finished_first_waits_are_left_alone() {
        let t0 = Instant::now();
        let mut r = Registry::new();
        let a = r.insert(100_001, t0);
        r.first_wait_over(a);
        assert_eq!(r.sweep(t0 + Duration::from_secs(1)), 0);
        assert!(!r.first_wait_timed_out(a));
        assert_eq!(r.live_fds(), vec![100_001]);
    }
}
