//! spip: an io_uring network sensor (honeypot).
//!
//! The crate is split so that protocol code never touches IO:
//! - [`proto`] parses untrusted client bytes into borrowed views,
//! - [`fingerprint`] computes Community ID, JA4, JA3, HASSH (and JA4H with `ja4plus`),
//! - [`analysis`] turns one client turn into the record fields it yields,
//! - [`record`] / [`json`] serialize records straight from borrowed data,
//! - [`server`] owns sockets and buffers and drives all of the above.

pub mod cli;
pub mod config;
pub mod engine;
pub mod fingerprint;
pub mod inspect;
pub mod json;
pub mod limits;
pub mod output;
pub mod proto;
pub mod protocols;
pub mod record;
pub mod redirect;
pub mod server;
pub mod setup;
pub mod sinks;
/// Loom shipping lives in the sink layer; kept at its old path.
pub use sinks::loom;
pub mod stats;
