//! The config parser, fed whatever a profiles.toml can hold:
//! `jwtagent::fuzzing::config_parser` says what must hold (the normal test
//! run replays the seeds through it).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| jwtagent::fuzzing::config_parser(text));
