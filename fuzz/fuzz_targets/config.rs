//! Fuzz target `config`: config parsing and compiling. No panic; every error has a 1-based line
//! and column inside the text and a key path; a config that compiles gives a usable policy.
//! The properties live in `fuzz/props/`, shared with `tests/fuzz_replay.rs`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::config(data));
