//! JSON writer.
