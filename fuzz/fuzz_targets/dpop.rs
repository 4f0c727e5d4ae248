//! Fuzz target `dpop`: a DPoP proof through every check of `token::dpop::check`. No panic; an
//! accepted proof is refused as a replay the second time, for another key, and with any
//! signature character changed. The properties live in `fuzz/props/`, shared with
//! `tests/fuzz_replay.rs`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::dpop(data));
