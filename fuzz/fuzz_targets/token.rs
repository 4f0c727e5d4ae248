//! Fuzz target `token`: token verification with a fixed key set. No panic; a verified token
//! has a future `exp` and its issuer's `iss` and `aud`, verifies again after its segments are
//! split and re-joined, and stops verifying when one signature byte or signed character changes.
//! The properties live in `fuzz/props/`, shared with `tests/fuzz_replay.rs`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::token(data));
