//! Target `dpop`: the DPoP proof parser and its checks (`token::dpop::check`) on a proof as
//! text, against a fixed request (`GET https://api.fuzz.example/orders/7`), access token and
//! clock. The token's `cnf.jkt` is taken to be the thumbprint of the proof's own `jwk` (when it
//! has one), so that every other check is reachable.

use portcullis::token::dpop::{self, DpopRules, Expected, Guard, ProofError, Target};
use std::time::Duration;

/// The fixed clock of the target: 2027-01-15T08:00:00Z.
pub const DPOP_NOW: f64 = 1_800_000_000.0;
/// The access token the proofs' `ath` must hash.
pub const DPOP_TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJmdXp6In0.c2ln";
pub const DPOP_HTU: &str = "https://api.fuzz.example/orders/7";

fn rules() -> DpopRules {
    DpopRules {
        algorithms: ["ES256", "EdDSA", "PS256", "RS256"]
            .iter()
            .map(|a| a.parse().expect("a JWS algorithm"))
            .collect(),
        algs: "ES256 EdDSA PS256 RS256".into(),
        max_age: Duration::from_secs(60),
        nonce: false,
        replay_cache_entries: 16,
        nonce_secret_env: None,
    }
}

/// The thumbprint of the proof's header `jwk`, if it has a readable one.
fn proof_jkt(proof: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    let header = proof.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    dpop::thumbprint(value.get("jwk")?.as_object()?)
}

fn run(proof: &str, guard: &Guard, jkt: &[u8; 32]) -> Result<(), ProofError> {
    let target = Target {
        https: true,
        host: "api.fuzz.example",
        port: 443,
        path: "/orders/7",
    };
    let want = Expected {
        method: "GET",
        target: &target,
        token: DPOP_TOKEN,
        jkt,
        now: DPOP_NOW,
        leeway: Duration::ZERO,
    };
    dpop::check(proof, &rules(), guard, &want)
}

/// `check` never panics. A proof it accepts: is at most 4 KiB; is refused as a replay the
/// second time, and refused for any other key's thumbprint; is refused when one character of
/// its signature changes; names `GET` and the fixed URL (after normalisation).
pub fn dpop(data: &[u8]) {
    let Ok(proof) = std::str::from_utf8(data) else {
        return;
    };
    let guard = Guard::new(16, Some(b"fuzz nonce secret, thirty-two bytes"));
    let jkt = proof_jkt(proof).unwrap_or([0; 32]);
    let verdict = run(proof, &guard, &jkt);
    if verdict.is_err() {
        return;
    }
    assert!(proof.len() <= dpop::MAX_PROOF_BYTES);
    assert_eq!(run(proof, &guard, &jkt), Err(ProofError::Replay));
    let fresh = Guard::new(16, None);
    let mut other = jkt;
    other[0] ^= 1;
    assert_eq!(
        run(proof, &fresh, &other),
        Err(ProofError::ThumbprintMismatch)
    );
    let (signed, signature) = proof.rsplit_once('.').expect("three segments");
    for (i, c) in signature.char_indices() {
        let swapped = if c == 'A' { 'B' } else { 'A' };
        let mut changed = signature.to_string();
        changed.replace_range(i..i + c.len_utf8(), &swapped.to_string());
        let forged = format!("{signed}.{changed}");
        assert!(
            run(&forged, &Guard::new(16, None), &jkt).is_err(),
            "a proof still passed with signature character {i} changed"
        );
    }
}

/// Does this input pass every check (for the replay's check that valid seeds stay valid)?
pub fn dpop_accepts(data: &[u8]) -> bool {
    let Ok(proof) = std::str::from_utf8(data) else {
        return false;
    };
    let jkt = proof_jkt(proof).unwrap_or([0; 32]);
    run(proof, &Guard::new(16, None), &jkt).is_ok()
}
