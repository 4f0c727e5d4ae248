//! Fuzz target `path_route`: path canonicalisation and route matching. The canonical path is a
//! fixed point with no ambiguous encoding, and the target forwarded upstream is exactly the one
//! the route matched.
//! The properties live in `fuzz/props/`, shared with `tests/fuzz_replay.rs`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::path_route(data));
