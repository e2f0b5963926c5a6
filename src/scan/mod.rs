//! Who may connect, and what scanning sources do.
pub mod admission;
pub mod payload_tags;
pub mod summary;
