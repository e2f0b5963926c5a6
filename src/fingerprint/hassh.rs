//! HASSH SSH client fingerprint (salesforce/hassh, BSD-3), see `shared/FINGERPRINTS.md` §8.
//!
//! `hasshAlgorithms = kex;enc_c2s;mac_c2s;comp_c2s` (name-lists verbatim),
//! `hassh = md5(hasshAlgorithms)`. The server variant uses the s2c lists.

use super::util::{Sink, ascii_str, md5_hex};
use crate::proto::ssh::KexInit;

/// A HASSH md5 as 32 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hassh {
    buf: [u8; 32],
}

impl Hassh {
    /// The md5 as text.
    pub fn as_str(&self) -> &str {
        ascii_str(&self.buf)
    }

    /// The md5 as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

impl std::fmt::Debug for Hassh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hassh({})", self.as_str())
    }
}

/// Streams the client `hasshAlgorithms` string into `out`.
pub fn write_hassh_algorithms(k: &KexInit<'_>, out: &mut impl Sink) {
    out.put(k.kex_algorithms());
    out.put(b";");
    out.put(k.encryption_c2s());
    out.put(b";");
    out.put(k.mac_c2s());
    out.put(b";");
    out.put(k.compression_c2s());
}

/// Streams the `hasshServerAlgorithms` string into `out`.
pub fn write_hassh_server_algorithms(k: &KexInit<'_>, out: &mut impl Sink) {
    out.put(k.kex_algorithms());
    out.put(b";");
    out.put(k.encryption_s2c());
    out.put(b";");
    out.put(k.mac_s2c());
    out.put(b";");
    out.put(k.compression_s2c());
}

/// HASSH of a client KEXINIT.
pub fn hassh(k: &KexInit<'_>) -> Hassh {
    Hassh {
        buf: md5_hex(|m| write_hassh_algorithms(k, m)),
    }
}

/// hasshServer of a server KEXINIT (useful as a self-check of the decoy).
pub fn hassh_server(k: &KexInit<'_>) -> Hassh {
    Hassh {
        buf: md5_hex(|m| write_hassh_server_algorithms(k, m)),
    }
}
