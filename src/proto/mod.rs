//! Parsers of untrusted client bytes.
pub mod http;
pub mod reader;
pub mod ssh;
pub mod syn;
pub mod tls;
