//! JA4T TCP client fingerprint. SPDX-License-Identifier: LicenseRef-FoxIO-1.1
//!
//! JA4T is part of JA4+ and licensed under the FoxIO License 1.1 (non-commercial use only);
//! this module is compiled only with the `ja4plus` cargo feature. See `LICENSES/FoxIO-1.1.txt`.
//!
//! `window_options_mss_wscale` from the client's SYN (see `shared/FINGERPRINTS.md` §5):
//! - window: the raw window field, decimal;
//! - options: every option kind in wire order, `-`-joined, EOL and the zero padding after it
//!   listed as `0` each; no options → `00`;
//! - mss: option 2's value; absent → `00`;
//! - wscale: option 3's shift count; absent or 0 → `00`.
//!
//! An ECN-setup SYN (ECE+CWR) is fingerprinted like any SYN: the flags are not part of JA4T.

use super::util::{Sink, ascii_str, put_dec};
use crate::proto::syn::{MAX_OPTION_KINDS, TcpOptions};

/// "65535_" + 40 kinds of up to 3 digits with separators + "_65535_255".
const JA4T_MAX: usize = 6 + MAX_OPTION_KINDS * 4 + 10;

/// A JA4T fingerprint, on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ja4t {
    buf: [u8; JA4T_MAX],
    len: usize,
}

impl Ja4t {
    pub fn as_str(&self) -> &str {
        ascii_str(self.as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

impl Sink for Ja4t {
    fn put(&mut self, bytes: &[u8]) {
        let end = (self.len + bytes.len()).min(JA4T_MAX);
        let n = end - self.len;
        self.buf[self.len..end].copy_from_slice(&bytes[..n]);
        self.len = end;
    }
}

impl std::fmt::Debug for Ja4t {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ja4t({})", self.as_str())
    }
}

/// JA4T of a SYN with this window and these options.
pub fn ja4t(window: u16, options: &TcpOptions) -> Ja4t {
    let mut out = Ja4t {
        buf: [0; JA4T_MAX],
        len: 0,
    };
    put_dec(&mut out, window);
    out.put(b"_");
    if options.kinds().is_empty() {
        out.put(b"00");
    }
    out.put(options.kinds_text().as_bytes());
    out.put(b"_");
    match options.mss {
        Some(mss) => put_dec(&mut out, mss),
        None => out.put(b"00"),
    }
    out.put(b"_");
    match options.window_scale {
        Some(shift) if shift > 0 => put_dec(&mut out, u16::from(shift)),
        _ => out.put(b"00"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        // Nmap's SYN: MSS only.
        let nmap = TcpOptions::parse(&[2, 4, 0x05, 0xb4]);
        assert_eq!(ja4t(1024, &nmap).as_str(), "1024_2_1460_00");
        // Zmap: no options at all.
        assert_eq!(
            ja4t(65535, &TcpOptions::parse(&[])).as_str(),
            "65535_00_00_00"
        );
        // Ubuntu 22.04.
        let ubuntu = TcpOptions::parse(&[
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 8,
        ]);
        assert_eq!(ja4t(65535, &ubuntu).as_str(), "65535_2-4-8-1-3_1460_8");
    }

    #[test]
    fn longest_fingerprint_fits() {
        let opts = TcpOptions::parse(&[255, 2].repeat(20));
        let fp = ja4t(65535, &opts);
        assert!(fp.as_str().starts_with("65535_255-"));
        assert!(fp.as_str().ends_with("_00_00"));
        let zeros = TcpOptions::parse(&[0; 40]);
        assert_eq!(ja4t(0, &zeros).as_bytes().len(), 2 + 79 + 6);
    }
}
