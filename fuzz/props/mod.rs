//! The fuzz properties, shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and the
//! stable-Rust corpus replay (`tests/fuzz_replay.rs`). Each `pub fn <target>(data: &[u8])` runs
//! one input and panics on a property violation; returning normally means the input is fine.
//! One file per target (`token.rs`, `path_route.rs`, `config.rs`, `identity.rs`, `dpop.rs`); this one holds
//! what they share.
//!
//! Fixtures (policies, keys, authenticators) are built once per process. Keys are fixed so that
//! a committed corpus replays to the same verdicts: they are test material, trusted by nothing.
//! Fixture configs are written with the test suite's config builder.
#![allow(dead_code)]

#[path = "../../tests/common/config.rs"]
mod builder;
mod config;
mod dpop;
mod identity;
mod path_route;
mod token;

// A fuzz target uses one of these; the corpus replay uses them all.
#[allow(unused_imports)]
pub use config::*;
#[allow(unused_imports)]
pub use dpop::*;
#[allow(unused_imports)]
pub use identity::*;
#[allow(unused_imports)]
pub use path_route::*;
#[allow(unused_imports)]
pub use token::*;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use builder::{Config, IssuerBlock};
use portcullis::identity::MAX_HEADER_VALUE_BYTES;

/// `iss` of the fixtures' main issuer.
pub const MAIN_ISS: &str = "https://issuer.fuzz.example/";
pub const AUD: &str = "api://fuzz";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What every fixture config has: no admin listener, one upstream nobody listens on.
fn fixture_config() -> Config {
    Config::new()
        .no_admin()
        .upstream("app", "http://127.0.0.1:1")
}

/// Issuer `main` with a remote key set (never fetched: the route and identity fixtures only
/// compile their policy).
fn remote_issuer() -> IssuerBlock {
    IssuerBlock::new("main", MAIN_ISS)
        .jwks_uri(&format!("{MAIN_ISS}jwks"))
        .audiences(&[AUD])
}

/// docs/behaviour.md, "Identity headers": a header value the gateway emits is non-empty, at most 8 KiB, with no control byte.
pub fn assert_header_value_safe(name: &str, value: &[u8]) {
    assert!(!value.is_empty(), "identity header {name} is empty");
    assert!(
        value.len() <= MAX_HEADER_VALUE_BYTES,
        "identity header {name} is {} bytes",
        value.len()
    );
    if let Some(b) = value.iter().find(|&&b| b < 0x20 || b == 0x7f) {
        panic!("identity header {name} holds control byte {b:#04x}: {value:?}");
    }
}
