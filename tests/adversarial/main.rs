//! Adversarial corpus: named attacks against the real gateway, one table per theme
//! (tokens, Authorization and cookies, paths and targets, identity headers, claims carried into
//! headers, requests an upstream would read otherwise than the gateway, DPoP proofs). Each case states the exact status and, for a request that passes, exactly what the
//! upstream saw; for a refusal, the `error` code, and that nothing reached the upstream. No case
//! may answer 5xx, hang, or drop the connection without a response.
//!
//! One test binary (link time), one module per table: `tokens`, `credentials`, `paths`,
//! `identity_headers`, `claim_headers`, `differentials`, `dpop`; the table machinery (expectations, the runner, the
//! gateway rig) is in `table`.
#[path = "../common/mod.rs"]
mod common;

mod claim_headers;
mod credentials;
mod differentials;
mod dpop;
mod identity_headers;
mod paths;
mod table;
mod tokens;
