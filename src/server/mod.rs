//! Network loop.
