//! Who may connect, and what scanning sources do.
pub mod admission;
