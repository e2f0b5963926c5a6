//! spip: an io_uring network sensor (honeypot).
//!
//! Bytes come in from sockets, an IO-free engine decides what they are and what to answer,
//! records go out to sinks. A dependency points down this list, never up:
//! - [`cli`], [`config`]: the command line and the validated settings;
//! - [`capture`]: sockets (io_uring accept and reads, original destination), driving the engine;
//! - [`engine`]: one connection as an IO-free state machine (turns, budgets, deadlines, TLS);
//! - [`protocols`]: the responders, one module per protocol, in a registry;
//! - [`proto`]: zero-copy parsers of untrusted client bytes (TLS, HTTP/1, SSH, saved SYNs);
//! - [`fingerprint`]: Community ID, JA4, JA3, HASSH (and JA4H, JA4T with `ja4plus`);
//! - [`record`] / [`json`]: ECS records written straight from borrowed data;
//! - [`output`], [`sinks`]: the record batches and the sinks that ship them (file, Loom,
//!   Elasticsearch, metrics);
//! - [`scan`]: admission (rate limits);
//! - [`ops`]: firewall rules (`redirect`) and first-run `setup`;
//! - [`inspect`]: the parsers over a captured payload, for `spip-agent inspect`.

pub mod capture;
pub mod cli;
pub mod config;
pub mod engine;
pub mod fingerprint;
pub mod inspect;
pub mod json;
pub mod ops;
pub mod output;
pub mod proto;
pub mod protocols;
pub mod record;
pub mod scan;
pub mod sinks;
/// Loom shipping lives in the sink layer; kept at its old path.
pub use sinks::loom;
pub mod stats;
