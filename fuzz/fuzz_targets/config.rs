//! The daemons' TOML configurations: parsed and checked, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = mirrord::config::Config::parse(text, Path::new("fuzz.toml"));
    let _ = hbmirror::hb::config::Config::parse(text, Path::new("fuzz.toml"));
});
