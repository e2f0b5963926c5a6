#![no_main]
//! SSH identification line + binary packets + KEXINIT + HASSH.
use libfuzzer_sys::fuzz_target;
use spip::fingerprint;
use spip::proto::ssh;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = ssh::parse_client(data) {
        assert!(c.len <= data.len());
    }
    let _ = ssh::parse_banner(data);
    let _ = ssh::parse_packet(data);
    let _ = ssh::KexInit::parse(data);
    if let Some(c) = fingerprint::ssh_client(data) {
        assert!(c.len <= data.len());
        let mut out = Vec::new();
        c.write_hassh_algorithms(&mut out);
    }
});
