//! The profiles.toml parser, fed any file a user (or an editor crash) can
//! leave. It must never panic, and a config it accepts must survive being
//! written out by jwtagent and read back unchanged.
#![no_main]

use jwtagent::config::ConfigFile;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|text: &str| {
    let path = Path::new("/fuzz/profiles.toml");
    if let Ok(config) = ConfigFile::parse(text, path) {
        let written = config.to_toml();
        let reread = ConfigFile::parse(&written, path)
            .unwrap_or_else(|e| panic!("jwtagent cannot read what it wrote: {e}\n{written}"));
        assert_eq!(reread, config);
    }
});
