//! DPoP proofs (RFC 9449), the resource server's side: parse a `DPoP` proof header and run
//! every check of the RFC's section 4.3 against the request and the access token (`check`),
//! the RFC 7638 thumbprint of the proof's key (`thumbprint`), the per-replica `jti` replay
//! cache (`ReplayCache`) and stateless server nonces (`Nonces`). Pure except for the replay
//! cache, which is the one piece of state a proof check needs.

use crate::keys::set::{parse_public_key, VerifyKey};
use crate::token::verify::{self, decode_object};
use aws_lc_rs::{digest, hmac};
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

/// Longest proof accepted, in bytes, before any decoding: a proof carrying an RSA-4096 `jwk`
/// is about 1.5 KiB.
pub const MAX_PROOF_BYTES: usize = 4096;
/// Longest `jti` accepted.
pub const MAX_JTI_BYTES: usize = 256;
/// Private key members of a JWK (RFC 7518 section 6): a proof whose `jwk` holds any of them
/// is refused, since its key is no longer the client's secret.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The compiled `dpop:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopRules {
    /// Proof algorithms accepted (asymmetric only).
    pub algorithms: Vec<Algorithm>,
    /// The same, space separated, for the `algs` of a `WWW-Authenticate: DPoP` challenge.
    pub algs: String,
    /// A proof's `iat` must be within ± this (plus the token issuer's leeway) of now.
    pub max_age: Duration,
    /// Require a server nonce.
    pub nonce: bool,
    /// Entries of the replay cache.
    pub replay_cache_entries: usize,
    /// The env var of a nonce secret shared by replicas; `None`: a random per-process key.
    pub nonce_secret_env: Option<String>,
}

/// Why a proof is refused: 401 `invalid_dpop_proof` (`use_dpop_nonce` for `NonceNeeded`),
/// with a precise reason label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofError {
    /// No `DPoP` header with a DPoP-bound token.
    Missing,
    /// Not a compact JWS with JSON header and claims, a required member missing or mistyped.
    Malformed,
    /// `typ` is not `dpop+jwt`.
    WrongType,
    /// `alg` is not one of `dpop.algorithms` (`none` and HMAC never are).
    AlgorithmNotAllowed,
    /// The `jwk` header holds private key members.
    PrivateKey,
    /// The `jwk` is not a usable public key for `alg`.
    BadKey,
    /// The signature does not verify with the `jwk`.
    BadSignature,
    /// `htm` is not the request's method.
    WrongMethod,
    /// `htu` is not the request's URL (or holds a query or fragment).
    WrongUri,
    /// `iat` outside the window.
    Stale,
    /// `ath` is not the hash of the access token.
    WrongAth,
    /// The `jwk`'s thumbprint is not the token's `cnf.jkt`.
    ThumbprintMismatch,
    /// The `jti` was seen within the window.
    Replay,
    /// The replay cache is full of unexpired `jti`s: refused rather than forget one.
    ReplayCacheFull,
    /// No nonce, or one this server did not issue or that expired.
    NonceNeeded,
}

impl ProofError {
    /// The precise reason label of metrics and logs.
    pub fn label(self) -> &'static str {
        use ProofError::*;
        match self {
            Missing => "dpop_proof_missing",
            Malformed => "dpop_proof_malformed",
            WrongType => "dpop_wrong_type",
            AlgorithmNotAllowed => "dpop_algorithm_not_allowed",
            PrivateKey => "dpop_private_key",
            BadKey => "dpop_bad_key",
            BadSignature => "dpop_bad_signature",
            WrongMethod => "dpop_wrong_method",
            WrongUri => "dpop_wrong_uri",
            Stale => "dpop_stale",
            WrongAth => "dpop_wrong_ath",
            ThumbprintMismatch => "dpop_thumbprint_mismatch",
            Replay => "dpop_replay",
            ReplayCacheFull => "dpop_replay_cache_full",
            NonceNeeded => "dpop_nonce_needed",
        }
    }

    /// The fixed `error_description`.
    pub fn description(self) -> &'static str {
        use ProofError::*;
        match self {
            Missing => "DPoP proof required",
            Malformed => "malformed DPoP proof",
            WrongType => "DPoP proof typ must be dpop+jwt",
            AlgorithmNotAllowed => "DPoP proof algorithm not allowed",
            PrivateKey => "DPoP proof jwk holds a private key",
            BadKey => "DPoP proof jwk unusable",
            BadSignature => "invalid DPoP proof signature",
            WrongMethod => "DPoP proof htm does not match",
            WrongUri => "DPoP proof htu does not match",
            Stale => "DPoP proof iat outside the accepted window",
            WrongAth => "DPoP proof ath does not match the token",
            ThumbprintMismatch => "DPoP proof key is not the token's key",
            Replay => "DPoP proof replayed",
            ReplayCacheFull => "DPoP proof cannot be checked for replay now",
            NonceNeeded => "DPoP nonce required",
        }
    }

    /// The `error` code: `use_dpop_nonce` or `invalid_dpop_proof`.
    pub fn code(self) -> &'static str {
        match self {
            ProofError::NonceNeeded => "use_dpop_nonce",
            _ => "invalid_dpop_proof",
        }
    }
}

/// What a proof is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The request method.
    pub method: &'a str,
    /// The request URL as the client addressed it (`Target`).
    pub target: &'a Target<'a>,
    /// The access token presented (`ath`).
    pub token: &'a str,
    /// The token's `cnf.jkt`, decoded.
    pub jkt: &'a [u8; 32],
    /// Unix seconds.
    pub now: f64,
    /// The token issuer's leeway, added to `max_age`.
    pub leeway: Duration,
}

/// The request URL a proof's `htu` must name: scheme (`http`/`https`), host (lower case),
/// port (the scheme's default when absent), canonical path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    pub https: bool,
    pub host: &'a str,
    pub port: u16,
    pub path: &'a str,
}

/// The decoded claims and key of a proof whose signature verified.
struct Proof {
    thumbprint: [u8; 32],
    claims: Map<String, Value>,
}

/// Run every check of a proof, in RFC 9449 section 4.3's order, with the replay cache and
/// nonce last (so that a bad proof never takes a cache entry).
pub fn check(
    proof: &str,
    rules: &DpopRules,
    guard: &Guard,
    want: &Expected<'_>,
) -> Result<(), ProofError> {
    let proof_checked = parse_and_verify(proof, rules)?;
    let claims = &proof_checked.claims;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("htm") != Some(want.method) {
        return Err(ProofError::WrongMethod);
    }
    let htu = text("htu").ok_or(ProofError::Malformed)?;
    if !htu_matches(htu, want.target) {
        return Err(ProofError::WrongUri);
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_f64)
        .ok_or(ProofError::Malformed)?;
    let window = rules.max_age.as_secs_f64() + want.leeway.as_secs_f64();
    if !((want.now - window)..=(want.now + window)).contains(&iat) {
        return Err(ProofError::Stale);
    }
    let ath = text("ath").ok_or(ProofError::WrongAth)?;
    if ath != b64(digest::digest(&digest::SHA256, want.token.as_bytes()).as_ref()) {
        return Err(ProofError::WrongAth);
    }
    if &proof_checked.thumbprint != want.jkt {
        return Err(ProofError::ThumbprintMismatch);
    }
    if rules.nonce && !guard.nonces.accepts(text("nonce"), want.now) {
        return Err(ProofError::NonceNeeded);
    }
    let jti = text("jti").filter(|j| !j.is_empty() && j.len() <= MAX_JTI_BYTES);
    let jti = jti.ok_or(ProofError::Malformed)?;
    guard
        .replay
        .insert(&proof_checked.thumbprint, jti, iat + window, want.now)
}

/// The header and signature checks: one compact JWS within `MAX_PROOF_BYTES`, `typ`
/// `dpop+jwt`, an allowed asymmetric `alg`, a public `jwk` that fits it and verifies the
/// signature. Returns the claims and the key's thumbprint.
fn parse_and_verify(proof: &str, rules: &DpopRules) -> Result<Proof, ProofError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(ProofError::Malformed);
    }
    let parsed = verify::parse(proof).map_err(|_| ProofError::Malformed)?;
    let header_b64 = proof.split('.').next().unwrap_or_default();
    let header = decode_object(header_b64).map_err(|_| ProofError::Malformed)?;
    if parsed.header.typ.as_deref() != Some("dpop+jwt") {
        return Err(ProofError::WrongType);
    }
    let alg: Algorithm = parsed
        .header
        .alg
        .parse()
        .map_err(|_| ProofError::AlgorithmNotAllowed)?;
    if !rules.algorithms.contains(&alg) || !is_asymmetric(alg) {
        return Err(ProofError::AlgorithmNotAllowed);
    }
    if parsed.header.crit {
        return Err(ProofError::Malformed);
    }
    let Some(Value::Object(jwk)) = header.get("jwk") else {
        return Err(ProofError::BadKey);
    };
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(ProofError::PrivateKey);
    }
    let thumbprint = thumbprint(jwk).ok_or(ProofError::BadKey)?;
    let key: VerifyKey =
        parse_public_key(&Value::Object(jwk.clone())).map_err(|_| ProofError::BadKey)?;
    if !key.accepts(alg) {
        return Err(ProofError::BadKey);
    }
    verify::check_signature(&parsed, &key.key, alg).map_err(|_| ProofError::BadSignature)?;
    let Value::Object(claims) = parsed.claims else {
        return Err(ProofError::Malformed);
    };
    Ok(Proof { thumbprint, claims })
}

fn is_asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK: its required members, in lexicographic
/// order, as JSON without whitespace. `None` for a key type without a thumbprint here.
pub fn thumbprint(jwk: &Map<String, Value>) -> Option<[u8; 32]> {
    let kty = jwk.get("kty")?.as_str()?;
    let members: &[&str] = match kty {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    let mut canonical = String::from("{");
    for (i, name) in members.iter().enumerate() {
        let value = jwk.get(*name)?.as_str()?;
        if i > 0 {
            canonical.push(',');
        }
        canonical.push_str(&serde_json::to_string(name).ok()?);
        canonical.push(':');
        canonical.push_str(&serde_json::to_string(value).ok()?);
    }
    canonical.push('}');
    digest::digest(&digest::SHA256, canonical.as_bytes())
        .as_ref()
        .try_into()
        .ok()
}

/// Does `htu` name `target`? After RFC 3986 syntax- and scheme-based normalisation: scheme and
/// host compare case-insensitively, an absent port is the scheme's default, the path is
/// canonicalised as request paths are. A query, a fragment or userinfo never matches.
pub fn htu_matches(htu: &str, target: &Target<'_>) -> bool {
    // The URI without its query and fragment is what is compared; a proof that carries either
    // is malformed (RFC 9449 section 4.2: "without query and fragment parts").
    let (uri, extra) = match htu.find(['?', '#']) {
        Some(i) => htu.split_at(i),
        None => (htu, ""),
    };
    if !extra.is_empty() {
        return false;
    }
    let Some((scheme, rest)) = uri.split_once("://") else {
        return false;
    };
    let https = if scheme.eq_ignore_ascii_case("https") {
        true
    } else if scheme.eq_ignore_ascii_case("http") {
        false
    } else {
        return false;
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return false;
    }
    let Some(host) = crate::route::normalise_host(authority) else {
        return false;
    };
    let port = match authority.rsplit_once(':') {
        Some((_, p)) if !authority.ends_with(']') => match p.parse::<u16>() {
            Ok(p) => p,
            Err(_) => return false,
        },
        _ => default_port(https),
    };
    let Ok(path) = crate::path::canonicalise(path) else {
        return false;
    };
    https == target.https && host == target.host && port == target.port && path == target.path
}

/// 443 for https, 80 for http.
pub fn default_port(https: bool) -> u16 {
    if https {
        443
    } else {
        80
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decode a base64url SHA-256 (a `cnf.jkt` or `cnf."x5t#S256"`).
pub fn decode_sha256(text: &str) -> Option<[u8; 32]> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()?;
    bytes.try_into().ok()
}

/// The state proofs are checked with, shared by every request of the process (and carried
/// over a reload while `dpop.replay_cache_entries` and the nonce secret stay the same).
pub struct Guard {
    pub replay: ReplayCache,
    pub nonces: Nonces,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("replay_cache_entries", &self.replay.capacity)
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// A replay cache of `entries`, nonces keyed with `secret` (or a random per-process key).
    pub fn new(entries: usize, secret: Option<&[u8]>) -> Guard {
        Guard {
            replay: ReplayCache::new(entries),
            nonces: Nonces::new(secret),
        }
    }
}

/// The `jti`s of accepted proofs, each kept until the proof's `iat` window has closed (after
/// which the proof fails the `iat` check anyway). Bounded by entry count: when every entry is
/// still unexpired, a new proof is refused (`ReplayCacheFull`) rather than an entry evicted, so
/// a flood of fresh proofs can never make room for a replay. An entry is a 16-byte digest of
/// the key's thumbprint and the `jti` plus its expiry, about 64 bytes with the map and heap
/// overhead: 100,000 entries are about 6.4 MB. Per process: replicas do not share it.
pub struct ReplayCache {
    capacity: usize,
    inner: Mutex<ReplayInner>,
}

#[derive(Default)]
struct ReplayInner {
    /// Entry → expiry (Unix milliseconds).
    seen: HashMap<[u8; 16], u64>,
    /// Expiries, soonest first, to drop expired entries.
    expiries: BinaryHeap<Reverse<(u64, [u8; 16])>>,
}

impl ReplayCache {
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            capacity,
            inner: Mutex::new(ReplayInner::default()),
        }
    }

    /// Record `jti` (of the key with `thumbprint`) until `expires` (Unix seconds); `Replay` if
    /// it is already there, `ReplayCacheFull` if there is no room.
    pub fn insert(
        &self,
        thumbprint: &[u8; 32],
        jti: &str,
        expires: f64,
        now: f64,
    ) -> Result<(), ProofError> {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(thumbprint);
        ctx.update(jti.as_bytes());
        let key: [u8; 16] = ctx.finish().as_ref()[..16]
            .try_into()
            .expect("16 bytes of SHA-256");
        let now_ms = millis(now);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(Reverse((at, k))) = inner.expiries.peek().copied() {
            if at > now_ms {
                break;
            }
            inner.expiries.pop();
            if inner.seen.get(&k) == Some(&at) {
                inner.seen.remove(&k);
            }
        }
        if inner.seen.contains_key(&key) {
            return Err(ProofError::Replay);
        }
        if inner.seen.len() >= self.capacity {
            return Err(ProofError::ReplayCacheFull);
        }
        let at = millis(expires).max(now_ms + 1);
        inner.seen.insert(key, at);
        inner.expiries.push(Reverse((at, key)));
        Ok(())
    }

    /// Unexpired entries as of the last insert.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .seen
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn millis(seconds: f64) -> u64 {
    (seconds.max(0.0) * 1000.0) as u64
}

/// Stateless server nonces (RFC 9449 section 8): a nonce is a time window's number and an
/// HMAC-SHA256 of it, so any process with the same key accepts it without shared state. It is
/// accepted in its own window and the next one, and a window is `NONCE_WINDOW` long: a nonce
/// lives between one and two windows.
pub struct Nonces {
    key: hmac::Key,
}

/// The length of a nonce window.
pub const NONCE_WINDOW: Duration = Duration::from_secs(60);

impl Nonces {
    /// Keyed with `secret`, or with 256 random bits when `None` (then only this process
    /// accepts its nonces).
    pub fn new(secret: Option<&[u8]>) -> Nonces {
        let random: [u8; 32] = rand::random();
        Nonces {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.unwrap_or(&random)),
        }
    }

    fn window(now: f64) -> u64 {
        (now.max(0.0) as u64) / NONCE_WINDOW.as_secs()
    }

    fn for_window(&self, window: u64) -> String {
        let tag = hmac::sign(&self.key, &window.to_be_bytes());
        let mut bytes = window.to_be_bytes().to_vec();
        bytes.extend_from_slice(tag.as_ref());
        b64(&bytes)
    }

    /// A nonce for now.
    pub fn fresh(&self, now: f64) -> String {
        self.for_window(Self::window(now))
    }

    /// Is `nonce` one of this key's, of the current or the previous window?
    pub fn accepts(&self, nonce: Option<&str>, now: f64) -> bool {
        let Some(bytes) = nonce.and_then(|n| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(n)
                .ok()
        }) else {
            return false;
        };
        if bytes.len() != 8 + 32 {
            return false;
        }
        let window = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
        let current = Self::window(now);
        (window == current || window + 1 == current)
            && hmac::verify(&self.key, &bytes[..8], &bytes[8..]).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target<'static> {
        Target {
            https: true,
            host: "api.example.com",
            port: 443,
            path: "/orders/7",
        }
    }

    #[test]
    fn htu_is_compared_after_normalisation() {
        let t = target();
        for ok in [
            "https://api.example.com/orders/7",
            "HTTPS://API.Example.COM/orders/7",
            "https://api.example.com:443/orders/7",
            "https://api.example.com/orders/./7",
            "https://api.example.com/orders/%37",
        ] {
            assert!(htu_matches(ok, &t), "{ok}");
        }
        for bad in [
            "https://api.example.com/orders/7?a=1",
            "https://api.example.com/orders/7#x",
            "https://api.example.com/orders/7?",
            "http://api.example.com/orders/7",
            "https://api.example.com:8443/orders/7",
            "https://other.example.com/orders/7",
            "https://u@api.example.com/orders/7",
            "https://api.example.com/Orders/7",
            "api.example.com/orders/7",
        ] {
            assert!(!htu_matches(bad, &t), "{bad}");
        }
        let plain = Target {
            https: false,
            host: "127.0.0.1",
            port: 80,
            path: "/",
        };
        assert!(htu_matches("http://127.0.0.1", &plain));
        assert!(htu_matches("http://127.0.0.1:80/", &plain));
    }

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        // RFC 7638 section 3.1.
        let jwk: Value = serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let t = thumbprint(jwk.as_object().unwrap()).unwrap();
        assert_eq!(b64(&t), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn the_replay_cache_refuses_rather_than_forgets() {
        let cache = ReplayCache::new(2);
        let k = [7u8; 32];
        assert_eq!(cache.insert(&k, "a", 160.0, 100.0), Ok(()));
        assert_eq!(cache.insert(&k, "a", 160.0, 100.0), Err(ProofError::Replay));
        assert_eq!(cache.insert(&[8u8; 32], "a", 160.0, 100.0), Ok(()));
        assert_eq!(
            cache.insert(&k, "b", 160.0, 100.0),
            Err(ProofError::ReplayCacheFull)
        );
        // Still remembered while unexpired, however many fresh proofs came.
        assert_eq!(cache.insert(&k, "a", 160.0, 150.0), Err(ProofError::Replay));
        // Expired entries make room.
        assert_eq!(cache.insert(&k, "b", 260.0, 161.0), Ok(()));
        assert_eq!(cache.insert(&k, "a", 260.0, 161.0), Ok(()));
    }

    #[test]
    fn nonces_rotate_and_need_the_key() {
        let a = Nonces::new(Some(b"shared secret"));
        let b = Nonces::new(Some(b"shared secret"));
        let other = Nonces::new(None);
        let n = a.fresh(1000.0);
        assert!(b.accepts(Some(&n), 1000.0));
        assert!(b.accepts(Some(&n), 1000.0 + NONCE_WINDOW.as_secs_f64()));
        assert!(!b.accepts(Some(&n), 1000.0 + 2.0 * NONCE_WINDOW.as_secs_f64() + 1.0));
        assert!(!other.accepts(Some(&n), 1000.0));
        assert!(!a.accepts(None, 1000.0));
        assert!(!a.accepts(Some("bm9wZQ"), 1000.0));
    }
}
