//! Parsers of untrusted client bytes.
pub mod http;
