//! Fingerprints.
pub mod community_id;
