#![no_main]
//! The TOML config loader: any text yields a config or an error, never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = spip::config::Config::from_toml_str(text, std::path::Path::new("/etc/spip"))
        {
            let _ = c.describe();
            let _ = c.tls_mode();
        }
    }
});
