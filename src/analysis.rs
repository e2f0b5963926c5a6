//! Per-turn analysis.
