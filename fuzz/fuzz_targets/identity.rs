//! Fuzz target `identity`: claims to identity headers. Every value emitted is non-empty, at most
//! 8 KiB and free of control bytes; an absent claim sends no header; a refusal has an unsafe
//! value behind it.
//! The properties live in `fuzz/props/`, shared with `tests/fuzz_replay.rs`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::identity(data));
