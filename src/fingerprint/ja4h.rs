//! JA4H (FoxIO License 1.1): HTTP client fingerprint.
