//! The fuzz properties, shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and the
//! stable-Rust corpus replay (`tests/fuzz_replay.rs`). Each `pub fn <target>(data: &[u8])` runs
//! one input and panics on a property violation; returning normally means the input is fine.
//!
//! Fixtures (policies, keys, authenticators) are built once per process. Keys are fixed so that
//! a committed corpus replays to the same verdicts: they are test material, trusted by nothing.
#![allow(dead_code)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::Method;
use pingora::http::RequestHeader;
use portcullis::config::{ConfigError, Policy};
use portcullis::identity::{self, Source, MAX_HEADER_VALUE_BYTES};
use portcullis::keys::KeyStore;
use portcullis::metrics::Metrics;
use portcullis::path::{canonicalise, parse_target};
use portcullis::route::normalise_host;
use portcullis::token::claims::{ClaimRef, ScopeSet};
use portcullis::token::{verify, AuthError, Authenticator, Identity};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------------------------
// Fixed test keys. Generated once with openssl for the fuzzers; they sign nothing real.

/// RSA 2048, PKCS#8 DER, base64.
const RSA_PKCS8: &str = concat!(
    "MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCZSNJY1asYEHXoa6DUgeJaaeIhWJyHv0QCWj+8pgnQkTPw",
    "k/TE8+y50qF7MWUm7UTIaf+jHCL3Gfg27GzXSLdk1WCetoPjPqgTJgjqXeHlV6A8DRZi6a/dB3bQVnAbDSOceyDA21v27WEw",
    "KmQh3eex+ZUAjNuGLZM8gccjZwyhCasF4syQnnmDOJADfLtfI5/Htm3FoLqpJnxKOkAUuLoakZAOafqi87w8GKdKwrddMsco",
    "Iy4NXcs4oFbiRNNHGtjgt0ithQ8h2uW309QbvnAcvciIvXSHKkIeLgZcsi93LCJw/0WmvPdil8B27EkwafWQY9G2rY8ABKvF",
    "cQ2zjq9zAgMBAAECggEAJZPzMWEMZUVfyn9cOcyvs6+ihr9E/Ih4wUTjvDlOTanTPGbhSklsXu/Ss7Nb02u2gZVu3MtgjQh6",
    "T+itFCgZAajH25DuC09IgA1CgUZLw2A0gZRJySz19q9GQvP13sPdV5bd5DnCtWnjeh3iV2Uh0IFZtH1TsfTJVDuSmMzCDVZC",
    "tvzsNc13mag012EXoClEPslHImg2Lp4GohbAks5oFr2cNr7RHDuYAiEa+61qiUkD7pdDWR7FicXSZIRZTQiSefWJH7db9Qy+",
    "i2g6oia6ImUnohUkMSpYnHy30yP/ZdQqc33NwGSguqvcAIsUY6K45ibsfKyWCWL8qFVDjVJKFQKBgQDOnl/C8qAEZmmL0srM",
    "jFT1rdVRDYi8otE+lZczW+1mWvJ7nvvaVWXtf/34CItCvk8UtohZjVP9P/3agyuDolB5D5npTlTTkU9WhRbxPBw2q2Z1pBI+",
    "ldLTZjg5fmXqSa6R7psTBnIkComXjVaHGdpbC5A8YfkbrMu5RuRtDUHr3QKBgQC960gw4+yrQObYaSpYKFl3DnBDMjyNCHkG",
    "OO3M5/l3DjALyRjVwYhat6gqsW+cWSueX5zKeMExHEfiPRmuNF8t/c8MevYUYIBphTb0SHrrTzz8HTageqJhbK0AeN3I6bcU",
    "ua1zDR0qVm28XXpee5A5ddPiQ/sxbm/cv2KWjeA7jwKBgQCOo0DiuVKElxrIH0ZHfZ1tWYtJADnkV9ZyCR0vpIe4QJLjira9",
    "XHUYR2LRpzxUYEMBvp1UjT9tNo8OGb2hix1Y5c9QA/aFc+w8g3Z6JRApIZyDHDhIInA/5nJsJnk/C4zLS9icgrerb+bazATv",
    "EYbvkYUKWmx5kYm2p10sd5mJtQKBgQC0PXgs1hMFUDoFRoFmWxzVDcHjM+kdW94n1p1wqvMpVzCn7rkAHIUAu24A3pZzBnmL",
    "+2e9DC8lIZbjEmOt3Yw7BLacPJIQMqmL+151JdhqO7BAAKWYVeqHlXD2kr7Bb3VOWQ1QtDBqvs20R+7bfl8Y+UcWZLgfaJUH",
    "Jic1hP465wKBgCMEKjqTdj7wcv8FR4gJg7NQ2p64Mt36OTqu+sBU6jo9dLGv7z547zwwxb3Wvz+s3bTvEOszClP3wAhTN+xS",
    "egx+3V66Gsl9kFQ7tbx3M18nisaeodIr/d7/ilk8JewaKkMKs5ykoeasSGE3MPdGSTy8x9jo+KJCoZT8hUkKcxpt",
);

/// EC P-256, PKCS#8 DER, base64.
const EC_PKCS8: &str = concat!(
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgHIWf2FTu+yHZ6U5vyLJepIyZ7lR0t9nPe+/gnJVznMih",
    "RANCAARVpSZBzoD/hnDeIW58k7UyMOxS7bXp7+y6PtWerp8fJaltfyHqOU6Upn1kn276NBC7KvvrsBF5cSYBC95KxLVY",
);

/// Ed25519 seed (exactly 32 bytes).
const ED_SEED: &[u8; 32] = b"portcullis-fuzz-ed25519-seed-32b";

/// The environment variable the fixture's HMAC issuer reads its secret from.
pub const HMAC_ENV: &str = "PORTCULLIS_FUZZ_HMAC_SECRET";
pub const HMAC_SECRET: &str = "portcullis-fuzz-hmac-secret-0123456789";
/// `iss` of the JWKS issuer (RS256, PS256, ES256, EdDSA; leeway 0).
pub const MAIN_ISS: &str = "https://issuer.fuzz.example/";
/// `iss` of the HMAC issuer (HS256; typ at+jwt; max lifetime; leeway 30 s).
pub const HMAC_ISS: &str = "https://hmac.fuzz.example";
pub const AUD: &str = "api://fuzz";
/// 2100-01-01: seeds minted with this `exp` stay valid for the life of the corpus.
pub const FAR_EXP: i64 = 4_102_444_800;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn std_b64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("fixture key is base64")
}

struct Keys {
    rsa: RsaKeyPair,
    ec: EcdsaKeyPair,
    ed: Ed25519KeyPair,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa: RsaKeyPair::from_pkcs8(&std_b64(RSA_PKCS8)).expect("fixture RSA key"),
        ec: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &std_b64(EC_PKCS8))
            .expect("fixture EC key"),
        ed: Ed25519KeyPair::from_seed_unchecked(ED_SEED).expect("fixture Ed25519 seed"),
    })
}

/// The public JWKS of the fixture keys: RSA (`alg: RS256`), P-256, Ed25519, each with a kid.
pub fn fixture_jwks() -> Value {
    let k = keys();
    let rsa = RsaPublicKeyComponents::<Vec<u8>>::from(k.rsa.public_key());
    let point = k.ec.public_key().as_ref();
    let (x, y) = point[1..].split_at((point.len() - 1) / 2);
    json!({"keys": [
        {"kty": "RSA", "kid": "rs", "alg": "RS256", "use": "sig", "n": b64(&rsa.n), "e": b64(&rsa.e)},
        {"kty": "EC", "kid": "es", "alg": "ES256", "use": "sig", "crv": "P-256", "x": b64(x), "y": b64(y)},
        {"kty": "OKP", "kid": "ed", "alg": "EdDSA", "use": "sig", "crv": "Ed25519",
         "x": b64(k.ed.public_key().as_ref())},
    ]})
}

#[derive(Clone, Copy)]
enum Kind {
    RsaPkcs1,
    RsaPss,
    Ec,
    Ed,
    Hmac,
    /// HS256 keyed with the RSA public key: the classic key-confusion attack.
    HmacWithRsaPublicKey,
}

/// One way to sign a token in the `token` target's signed mode.
pub struct Signer {
    pub alg: &'static str,
    pub kid: Option<&'static str>,
    pub typ: &'static str,
    kind: Kind,
}

/// Signers, picked by one input byte. Some are meant to be refused (PS256 with an RS256 JWK,
/// ES256 under the Ed25519 kid, HS256 keyed with the RSA public key).
pub const SIGNERS: [Signer; 8] = [
    Signer {
        alg: "RS256",
        kid: Some("rs"),
        typ: "JWT",
        kind: Kind::RsaPkcs1,
    },
    Signer {
        alg: "PS256",
        kid: Some("rs"),
        typ: "JWT",
        kind: Kind::RsaPss,
    },
    Signer {
        alg: "ES256",
        kid: Some("es"),
        typ: "JWT",
        kind: Kind::Ec,
    },
    Signer {
        alg: "EdDSA",
        kid: Some("ed"),
        typ: "JWT",
        kind: Kind::Ed,
    },
    Signer {
        alg: "HS256",
        kid: None,
        typ: "at+jwt",
        kind: Kind::Hmac,
    },
    Signer {
        alg: "HS256",
        kid: Some("rs"),
        typ: "JWT",
        kind: Kind::HmacWithRsaPublicKey,
    },
    Signer {
        alg: "EdDSA",
        kid: None,
        typ: "JWT",
        kind: Kind::Ed,
    },
    Signer {
        alg: "ES256",
        kid: Some("ed"),
        typ: "JWT",
        kind: Kind::Ec,
    },
];

fn sign(signer: &Signer, input: &[u8]) -> Vec<u8> {
    let k = keys();
    let rng = SystemRandom::new();
    let hmac = |secret: &[u8]| {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
        aws_lc_rs::hmac::sign(&key, input).as_ref().to_vec()
    };
    match signer.kind {
        Kind::RsaPkcs1 | Kind::RsaPss => {
            let padding: &dyn signature::RsaEncoding = match signer.kind {
                Kind::RsaPkcs1 => &signature::RSA_PKCS1_SHA256,
                _ => &signature::RSA_PSS_SHA256,
            };
            let mut sig = vec![0; k.rsa.public_modulus_len()];
            k.rsa
                .sign(padding, &rng, input, &mut sig)
                .expect("RSA signing");
            sig
        }
        Kind::Ec => {
            k.ec.sign(&rng, input)
                .expect("ECDSA signing")
                .as_ref()
                .to_vec()
        }
        Kind::Ed => k.ed.sign(input).as_ref().to_vec(),
        Kind::Hmac => hmac(HMAC_SECRET.as_bytes()),
        Kind::HmacWithRsaPublicKey => hmac(k.rsa.public_key().as_ref()),
    }
}

/// `{"alg", "typ", "kid"}` of a signer, as JSON bytes.
pub fn default_header(signer: &Signer) -> Vec<u8> {
    let mut h = json!({"alg": signer.alg, "typ": signer.typ});
    if let Some(kid) = signer.kid {
        h["kid"] = json!(kid);
    }
    h.to_string().into_bytes()
}

/// A compact JWS of raw header and payload bytes, signed by `signer`.
pub fn mint(signer: &Signer, header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig = sign(signer, input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// Shared checks.

/// SPEC 4: a header value the gateway emits is non-empty, at most 8 KiB, with no control byte.
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

// ---------------------------------------------------------------------------------------------
// Target `token`: verification with a fixed key set.

/// Configuration of the `token` fixture: a JWKS issuer and an HMAC issuer.
pub fn token_config() -> String {
    format!(
        r#"listen: 127.0.0.1:0
admin_listen: null
upstreams:
  app: {{ url: "http://127.0.0.1:1" }}
log_subject: true
routes:
  - name: all
    match: {{ path: /** }}
    claims: {{ /org/id: [acme, 7], email_verified: true }}
identity:
  headers:
    x-auth-subject: sub
    x-auth-email: email
    x-auth-scopes: scope
    x-auth-roles: /https:~1~1example.com~1roles
  claims_header: x-auth-claims
issuers:
  main:
    issuer: "{MAIN_ISS}"
    jwks: {jwks}
    audiences: ["{AUD}", "https://api.fuzz.example"]
    algorithms: [RS256, PS256, ES256, EdDSA]
    leeway: 0s
  hmac:
    issuer: "{HMAC_ISS}"
    hmac_secret_env: {HMAC_ENV}
    audiences: ["{AUD}"]
    algorithms: [HS256]
    required_typ: at+jwt
    max_token_lifetime: 200years
    leeway: 30s
"#,
        jwks = fixture_jwks()
    )
}

struct TokenFixture {
    policy: Policy,
    keys: KeyStore,
    metrics: Metrics,
    /// No verified-token cache.
    plain: Authenticator,
    /// With a cache, to check that a hit answers as a miss does.
    cached: Authenticator,
    rt: tokio::runtime::Runtime,
}

fn token_fixture() -> &'static TokenFixture {
    static F: OnceLock<TokenFixture> = OnceLock::new();
    F.get_or_init(|| {
        std::env::set_var(HMAC_ENV, HMAC_SECRET);
        let policy = portcullis::config::from_str(&token_config(), "fuzz", Path::new("."))
            .expect("token fixture config compiles");
        let keys = portcullis::server::key_store(&policy);
        TokenFixture {
            keys,
            metrics: Metrics::new(),
            plain: Authenticator::new(0),
            cached: Authenticator::new(4096),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("tokio runtime"),
            policy,
        }
    })
}

fn authenticate(
    f: &TokenFixture,
    a: &Authenticator,
    token: &str,
) -> Result<Arc<Identity>, AuthError> {
    f.rt.block_on(a.authenticate(
        token,
        &portcullis::engine::token_rules(&f.policy),
        &f.keys,
        &f.metrics,
    ))
}

/// Input: byte 0 even → the rest is a token as text. Byte 0 odd → byte 1 picks a `SIGNERS`
/// entry and the rest is `header JSON 0xFF payload JSON` (no 0xFF: the signer's default
/// header, the rest is the payload), signed with that key: lets the fuzzer reach claim checks.
pub fn token(data: &[u8]) {
    if let Some(token) = token_text(data) {
        check_token(&token);
    }
}

/// The token a `token` input stands for.
pub fn token_text(data: &[u8]) -> Option<String> {
    let (&mode, rest) = data.split_first()?;
    if mode & 1 == 0 {
        return std::str::from_utf8(rest).ok().map(str::to_string);
    }
    let (&which, rest) = rest.split_first()?;
    let signer = &SIGNERS[which as usize % SIGNERS.len()];
    Some(match rest.iter().position(|&b| b == 0xff) {
        Some(i) => mint(signer, &rest[..i], &rest[i + 1..]),
        None => mint(signer, &default_header(signer), rest),
    })
}

/// Does this `token` input verify? (For the replay's check that the valid seeds stay valid.)
pub fn token_verifies(data: &[u8]) -> bool {
    let f = token_fixture();
    token_text(data).is_some_and(|t| authenticate(f, &f.plain, &t).is_ok())
}

/// Both answers name the same identity, or the same error.
fn same_answer(a: &Result<Arc<Identity>, AuthError>, b: &Result<Arc<Identity>, AuthError>) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => {
            x.issuer == y.issuer
                && x.signer == y.signer
                && x.claims == y.claims
                && x.headers == y.headers
                && x.subject == y.subject
        }
        (Err(x), Err(y)) => x == y,
        // A token expiring between the two calls.
        (Ok(_), Err(AuthError::Invalid(verify::VerifyError::Expired)))
        | (Err(AuthError::Invalid(verify::VerifyError::Expired)), Ok(_)) => true,
        _ => false,
    }
}

pub fn check_token(token: &str) {
    let f = token_fixture();
    let before = unix_now();
    let plain = authenticate(f, &f.plain, token);
    let miss = authenticate(f, &f.cached, token);
    let hit = authenticate(f, &f.cached, token);
    assert!(
        same_answer(&plain, &miss) && same_answer(&plain, &hit),
        "cached and uncached verification disagree on {token:?}: {:?} / {:?} / {:?}",
        plain.as_ref().map(|i| &i.claims),
        miss.as_ref().map(|i| &i.claims),
        hit.as_ref().map(|i| &i.claims)
    );
    match plain {
        Err(AuthError::KeysUnavailable) => {
            panic!("keys_unavailable with inline keys for {token:?}")
        }
        Err(AuthError::Invalid(_)) => {}
        Ok(identity) => verified_token_properties(f, token, &identity, before),
    }
}

fn verified_token_properties(f: &TokenFixture, token: &str, id: &Identity, before: f64) {
    assert!(
        token.len() <= f.policy.limits.max_token_bytes,
        "a token over max_token_bytes verified"
    );
    let rules = &f.policy.issuers[id.issuer];
    let parsed = verify::parse(token).expect("a verified token parses");
    let claims = &parsed.claims;
    let leeway = rules.leeway.as_secs_f64();

    // Registered claims, as SPEC section 3 states them.
    assert_eq!(
        claims.get("iss").and_then(Value::as_str),
        Some(rules.issuer.as_str()),
        "verified token's iss is not its issuer's: {token:?}"
    );
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => rules.audiences.contains(a),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .any(|a| rules.audiences.iter().any(|w| w == a)),
        _ => false,
    };
    assert!(aud_ok, "verified token's aud is not configured: {token:?}");
    let exp = match claims.get("exp") {
        Some(Value::Number(n)) => n.as_f64().expect("number"),
        other => panic!("verified token without numeric exp ({other:?}): {token:?}"),
    };
    assert!(
        exp.is_finite() && exp + leeway > before,
        "verified token expired (exp {exp}, now {before}): {token:?}"
    );
    let after = unix_now();
    let time = |name: &str| -> Option<f64> {
        claims.get(name).map(|v| {
            v.as_f64()
                .filter(|t| t.is_finite())
                .unwrap_or_else(|| panic!("verified token with non-numeric {name}: {token:?}"))
        })
    };
    if let Some(nbf) = time("nbf") {
        assert!(
            nbf <= after + leeway,
            "verified token not yet valid: {token:?}"
        );
    }
    let iat = time("iat");
    if let Some(iat) = iat {
        assert!(
            iat <= after + leeway,
            "verified token issued in the future: {token:?}"
        );
    }
    if let Some(max) = rules.max_token_lifetime {
        let iat = iat.unwrap_or_else(|| panic!("max_token_lifetime passed without iat: {token:?}"));
        assert!(
            exp - iat <= max.as_secs_f64(),
            "lifetime over the maximum: {token:?}"
        );
    }

    // The identity keeps exactly the claims route rules read (`authz_claims`), as verified.
    let kept: serde_json::Map<String, Value> = f
        .policy
        .authz_claims
        .iter()
        .filter_map(|n| claims.get(n).map(|v| (n.clone(), v.clone())))
        .collect();
    assert_eq!(
        id.claims,
        Value::Object(kept),
        "the identity's claims are not the verified authz claims"
    );

    // The header rules, through the pure pieces.
    assert!(!parsed.header.crit, "a token with crit verified: {token:?}");
    assert!(
        !parsed.header.alg.eq_ignore_ascii_case("none"),
        "alg none verified: {token:?}"
    );
    assert!(
        verify::check_header(&parsed.header, rules).is_ok(),
        "a verified token fails its issuer's header rules: {token:?}"
    );
    if parsed.header.alg.starts_with("HS") {
        assert!(
            rules.hmac.is_some(),
            "an HMAC token verified without a secret"
        );
    }
    assert!(
        verify::check_claims(claims, rules, unix_now()).is_ok() || exp + leeway <= unix_now(),
        "the pure claim check refuses a verified token: {token:?}"
    );
    assert_eq!(
        id.subject.as_deref(),
        claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|_| f.policy.log_subject),
        "subject is not the sub claim (log_subject) or none"
    );
    if let Ok(headers) = &id.headers {
        for (name, value) in headers {
            assert_header_value_safe(name.as_str(), value.as_bytes());
        }
    }

    // Round trip: split into three segments, decode, re-encode, re-join: the same token, and
    // it verifies to the same identity. A verified token in a non-canonical encoding would be
    // a second spelling of the same signed content.
    let segments: Vec<&str> = token.split('.').collect();
    assert_eq!(segments.len(), 3, "a verified token without three segments");
    let decoded: Vec<Vec<u8>> = segments
        .iter()
        .map(|s| {
            URL_SAFE_NO_PAD
                .decode(s)
                .unwrap_or_else(|_| panic!("a verified token's segment {s:?} is not base64url"))
        })
        .collect();
    let rejoined = format!(
        "{}.{}.{}",
        b64(&decoded[0]),
        b64(&decoded[1]),
        b64(&decoded[2])
    );
    assert_eq!(
        rejoined, token,
        "a verified token is not in canonical base64url"
    );
    let again = authenticate(f, &f.plain, &rejoined);
    assert!(
        same_answer(&again, &Ok(Arc::new(clone_identity(id)))),
        "a verified token no longer verifies after its segments are re-joined: {token:?}"
    );

    // One byte of the signature changed: refused.
    let sig = &decoded[2];
    let spot = token
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    let mut positions = vec![0, sig.len() / 2, sig.len() - 1, spot % sig.len()];
    positions.dedup();
    for (n, &pos) in positions.iter().enumerate() {
        let mut bad = sig.clone();
        bad[pos] ^= if n % 2 == 0 { 0x01 } else { 0x80 };
        let forged = format!("{}.{}.{}", segments[0], segments[1], b64(&bad));
        let which = if n == 1 { &f.cached } else { &f.plain };
        assert!(
            authenticate(f, which, &forged).is_err(),
            "signature byte {pos} changed and the token still verifies: {forged:?}"
        );
    }
    // One character changed, in the signature and in the signed part: refused.
    let sig_start = segments[0].len() + segments[1].len() + 2;
    let signed_spot = spot % (sig_start - 1);
    for pos in [
        token.len() - 1,
        sig_start + (spot % segments[2].len()),
        signed_spot,
    ] {
        let old = token.as_bytes()[pos];
        if old == b'.' {
            continue;
        }
        let new = if old == b'A' { 'B' } else { 'A' };
        let mut forged = token.to_string();
        forged.replace_range(pos..pos + 1, &new.to_string());
        assert!(
            authenticate(f, &f.plain, &forged).is_err(),
            "character {pos} changed and the token still verifies: {forged:?}"
        );
    }
}

fn clone_identity(id: &Identity) -> Identity {
    Identity {
        issuer: id.issuer,
        signer: id.signer,
        expires_at: id.expires_at,
        claims: id.claims.clone(),
        scopes: id.scopes.clone(),
        headers: id.headers.clone(),
        subject: id.subject.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Target `path_route`: canonical path + route match + the target forwarded upstream.

const ROUTE_CONFIG: &str = r#"listen: 127.0.0.1:0
admin_listen: null
upstreams:
  app: { url: "http://127.0.0.1:1" }
issuers:
  main:
    issuer: https://issuer.fuzz.example/
    jwks_uri: https://issuer.fuzz.example/jwks
    audiences: [api://fuzz]
routes:
  - { name: health, match: { path: /healthz, methods: [GET] }, auth: none }
  - { name: root, match: { path: / }, auth: none }
  - { name: orders-read, match: { path: /api/orders/**, methods: [GET, HEAD] }, scopes: [read:orders] }
  - { name: orders-admin, match: { path: /api/orders/**, methods: [DELETE], host: admin.example.com } }
  - { name: profile, match: { path: /users/*/profile } }
  - { name: files, match: { path: /files/*/raw/** } }
  - { name: spaced, match: { path: /a%20b/** } }
  - { name: tilde, match: { path: /~user/* } }
  - { name: tenant, match: { path: /tenant/**, host: "*.example.com" } }
  - { name: public, match: { path: /public/** }, auth: optional }
  - { name: admin, match: { path: /admin/** } }
"#;

fn route_policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        portcullis::config::from_str(ROUTE_CONFIG, "fuzz", Path::new("."))
            .expect("route fixture config compiles")
    })
}

const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE",
];
/// `Host` header values.
const HOSTS: [Option<&str>; 4] = [
    None,
    Some("api.example.com"),
    Some("Admin.Example.com:8443"),
    Some("x.admin.example.com"),
];

/// Input: byte 0 picks the method (low 3 bits) and the `Host` header (next 2 bits); the rest is
/// the raw request target.
pub fn path_route(data: &[u8]) {
    let Some((&sel, raw)) = data.split_first() else {
        return;
    };
    let method = Method::from_bytes(METHODS[sel as usize % 8].as_bytes()).expect("method");
    check_path(raw, &method, HOSTS[(sel as usize >> 3) % HOSTS.len()]);
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The shape of a canonical path (SPEC 1.1).
fn assert_canonical_shape(path: &str) {
    assert!(
        path.starts_with('/'),
        "canonical path {path:?} does not start with /"
    );
    for bad in ["//", "/./", "/../"] {
        assert!(!path.contains(bad), "canonical path {path:?} holds {bad:?}");
    }
    assert!(
        !path.ends_with("/.") && !path.ends_with("/.."),
        "canonical path {path:?} ends in a dot segment"
    );
    let upper = path.to_ascii_uppercase();
    for bad in ["%2F", "%5C", "%3B", "%23", "%00"] {
        assert!(!upper.contains(bad), "canonical path {path:?} holds {bad}");
    }
    let bytes = path.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        assert!(
            (0x21..0x7f).contains(&b) && !matches!(b, b'\\' | b';' | b'#' | b'?'),
            "canonical path {path:?} holds byte {b:#04x}"
        );
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .unwrap_or_else(|| panic!("cut escape in {path:?}"));
            assert!(
                hex.iter()
                    .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h)),
                "escape in {path:?} is not two upper-case hex digits"
            );
            let v = u8::from_str_radix(std::str::from_utf8(hex).expect("ascii"), 16).expect("hex");
            assert!(
                !is_unreserved(v),
                "canonical path {path:?} escapes unreserved {v:#04x}"
            );
        }
    }
    // What a lenient upstream sees after decoding every escape: the same segments, no dot
    // segments, no separators or control bytes smuggled in, valid UTF-8.
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let v =
                u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap(), 16).unwrap();
            decoded.push(v);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(decoded)
        .unwrap_or_else(|_| panic!("canonical path {path:?} decodes to invalid UTF-8"));
    assert_eq!(
        decoded.matches('/').count(),
        path.matches('/').count(),
        "canonical path {path:?} decodes to other segments"
    );
    for seg in decoded.split('/').skip(1) {
        assert!(
            seg != "." && seg != "..",
            "canonical path {path:?} decodes to a dot segment"
        );
        assert!(
            !seg.bytes()
                .any(|b| b < 0x20 || b == 0x7f || matches!(b, b'\\' | b';' | b'#')),
            "canonical path {path:?} decodes to {seg:?}"
        );
    }
}

/// `raw` is the request target as the client sent it. The canonical-form properties hold for
/// any input; the forwarding ones are checked as the gateway meets the request: after
/// httparse (bytes 0x21..=0x7E and 0x80..) and pingora's `RequestHeader` accepted it, on
/// pingora's `raw_path()`, and forwarded through `RequestHeader::set_uri` as `proxy.rs` does.
pub fn check_path(raw: &[u8], method: &Method, host_header: Option<&str>) {
    let Ok(target) = parse_target(raw) else {
        return;
    };
    let path = target.path.as_str();
    assert_canonical_shape(path);
    assert_eq!(
        canonicalise(path).as_deref(),
        Ok(path),
        "canonical path is not a fixed point (raw {raw:?})"
    );
    if let Some(q) = target.query {
        assert!(
            !q.bytes().any(|b| b == b'#' || b < 0x20 || b == 0x7f),
            "query {q:?} holds a fragment or a control byte"
        );
    }

    let on_the_wire = raw.iter().all(|&b| (0x21..=0x7e).contains(&b) || b >= 0x80);
    let incoming = on_the_wire
        .then(|| RequestHeader::build(method.clone(), raw, None).ok())
        .flatten();
    let target = match &incoming {
        Some(req) => match parse_target(req.raw_path()) {
            Ok(t) => t,
            Err(_) => return,
        },
        None => target,
    };
    let path = target.path.as_str();

    // The host, as the proxy takes it: absolute-form authority, else the Host header; both
    // given and different: 400.
    let header_host = match host_header.map(normalise_host) {
        Some(None) => return,
        Some(Some(h)) => Some(h),
        None => None,
    };
    let host = match target.authority.map(normalise_host) {
        Some(None) => return,
        Some(Some(a)) if header_host.as_ref().is_some_and(|h| *h != a) => return,
        Some(Some(a)) => Some(a),
        None => header_host,
    };
    let table = &route_policy().routes;
    let Some(index) = table.find(host.as_deref(), method, path) else {
        return;
    };
    let routes = table.routes();
    assert!(routes[index].matches(host.as_deref(), method, path));
    assert!(
        !routes[..index]
            .iter()
            .any(|r| r.matches(host.as_deref(), method, path)),
        "an earlier route matches {path:?}"
    );

    // The target sent upstream, built as the proxy builds it.
    let forwarded = match target.query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    if let Some(req) = &incoming {
        let uri: http::Uri = forwarded.parse().unwrap_or_else(|e| {
            panic!(
                "route {:?} authorised {raw:?} but the forwarded target {forwarded:?} is not a \
                 URI ({e}): the proxy would answer 500",
                routes[index].name
            )
        });
        assert_eq!(uri.path(), path, "forwarded path is not the matched path");
        assert_eq!(uri.query(), target.query, "forwarded query changed");
        let mut upstream = req.clone();
        upstream.set_uri(uri);
        assert_eq!(
            upstream.raw_path(),
            forwarded.as_bytes(),
            "the request line sent upstream is not the canonical target"
        );
    }
    // The upstream's view: the forwarded target parses to the same path, query and route.
    let again = parse_target(forwarded.as_bytes()).unwrap_or_else(|e| {
        panic!("forwarded target {forwarded:?} is refused when parsed again ({e:?})")
    });
    assert_eq!(again.path, path, "forwarded path canonicalises differently");
    assert_eq!(
        again.query, target.query,
        "forwarded query parses differently"
    );
    assert_eq!(
        table.find(host.as_deref(), method, &again.path),
        Some(index),
        "the forwarded path matches another route"
    );
}

// ---------------------------------------------------------------------------------------------
// Target `config`: parse and compile arbitrary YAML.

/// Does a config name a file outside the (non-existent) base directory? Compile reads
/// `jwks_file`; an absolute path could name /dev/zero or a FIFO and hang the fuzzer. Keys can
/// only be spelled `jwks_file` literally or through a double-quoted escape.
fn names_absolute_file(text: &str) -> bool {
    if !text.contains("jwks_file") && !text.contains('\\') {
        return false;
    }
    fn walk(v: &serde_yaml_ng::Value) -> bool {
        use serde_yaml_ng::Value as Y;
        match v {
            Y::String(s) => s.starts_with('/') || s.starts_with('~'),
            Y::Sequence(items) => items.iter().any(walk),
            Y::Mapping(m) => m.iter().any(|(k, v)| walk(k) || walk(v)),
            Y::Tagged(t) => walk(&t.value),
            _ => false,
        }
    }
    // Unparseable YAML never reaches compile.
    serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text).is_ok_and(|v| walk(&v))
}

/// Input: the YAML text (UTF-8).
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        check_config(text);
    }
}

pub fn check_config(text: &str) {
    if names_absolute_file(text) {
        return;
    }
    // Relative jwks_file paths resolve under a directory that does not exist.
    let base = Path::new("portcullis-fuzz-no-such-dir");
    match portcullis::config::from_str(text, "fuzz.yaml", base) {
        Err(ConfigError::Read { .. }) => panic!("from_str gave a Read error"),
        Err(ConfigError::Invalid {
            file,
            line,
            column,
            path,
            message,
        }) => {
            let at = format!("{file}:{line}:{column}: {path}: {message}");
            assert_eq!(file, "fuzz.yaml", "{at}");
            assert!(line >= 1 && column >= 1, "error position not 1-based: {at}");
            assert!(!path.is_empty(), "error without a key path: {at}");
            assert!(!message.is_empty(), "error without a message: {at}");
            // Every line break YAML knows: LF, CR LF, a lone CR, NEL, LS, PS.
            let lines = 1 + text
                .replace("\r\n", "\n")
                .matches(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'])
                .count();
            assert!(
                line <= lines + 1,
                "error line past the end ({lines} lines): {at}"
            );
        }
        Ok(policy) => compiled_policy_properties(&policy),
    }
}

/// A config that compiles is a config that works.
fn compiled_policy_properties(policy: &Policy) {
    let routes = policy.routes.routes();
    assert!(!routes.is_empty(), "a policy without routes");
    for r in routes {
        assert!(
            r.upstream < policy.upstreams.len(),
            "route {} upstream out of range",
            r.name
        );
        if let Some(list) = &r.issuers {
            assert!(!list.is_empty() && list.iter().all(|&i| i < policy.issuers.len()));
        }
    }
    assert_eq!(policy.issuers.len(), policy.keys.len());
    assert_eq!(policy.issuer_by_iss.len(), policy.issuers.len());
    for (i, rules) in policy.issuers.iter().enumerate() {
        assert_eq!(policy.issuer_by_iss.get(&rules.issuer), Some(&i));
        assert!(!rules.audiences.is_empty() && !rules.algorithms.is_empty());
        if rules
            .algorithms
            .iter()
            .any(|a| format!("{a:?}").starts_with("HS"))
        {
            assert!(
                rules.hmac.is_some(),
                "issuer {} allows HS* without a secret",
                rules.name
            );
        }
    }
    let store = portcullis::server::key_store(policy);
    for (i, plan) in policy.keys.iter().enumerate() {
        if plan.inline.is_some() {
            assert!(
                store.issuer(i).current().is_some(),
                "inline jwks of issuer {i} compiled but yields no key set"
            );
        }
        if plan.hmac_only {
            assert!(policy.issuers[i].hmac.is_some());
        }
    }
    for (name, _) in &policy.identity.headers {
        assert!(
            !matches!(
                name.as_str(),
                "host" | "authorization" | "cookie" | "x-request-id"
            ),
            "identity header {name} overrides a managed header"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Target `identity`: claims → identity header values.

const IDENTITY_CONFIG: &str = r#"listen: 127.0.0.1:0
admin_listen: null
upstreams:
  app: { url: "http://127.0.0.1:1" }
issuers:
  main:
    issuer: https://issuer.fuzz.example/
    jwks_uri: https://issuer.fuzz.example/jwks
    audiences: [api://fuzz]
    scope_claims: [scope, scp, permissions, /ext/scopes]
routes:
  - { name: all, match: { path: /** } }
identity:
  headers:
    x-auth-subject: sub
    x-auth-email: email
    x-auth-scopes: scope
    x-auth-roles: /https:~1~1example.com~1roles
    x-auth-org: /org/id
    x-auth-first-group: /groups/0
    x-auth-empty-key: /
    x-auth-tilde: /a~0b~1c
    x-user-name: name
    x-user-admin: admin
"#;

fn identity_policies() -> &'static [Policy; 2] {
    static P: OnceLock<[Policy; 2]> = OnceLock::new();
    P.get_or_init(|| {
        let with_claims = format!("{IDENTITY_CONFIG}  claims_header: x-auth-claims\n");
        [IDENTITY_CONFIG, with_claims.as_str()].map(|text| {
            portcullis::config::from_str(text, "fuzz", Path::new("."))
                .expect("identity fixture config compiles")
        })
    })
}

/// Input: byte 0 picks the plan (even: no claims header; odd: with `x-auth-claims`); the rest
/// is the claims as JSON.
pub fn identity(data: &[u8]) {
    let Some((&sel, json)) = data.split_first() else {
        return;
    };
    let Ok(claims) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    check_identity(&identity_policies()[sel as usize & 1], &claims);
}

fn lookup<'a>(claims: &'a Value, c: &ClaimRef) -> Option<&'a Value> {
    match c {
        ClaimRef::Name(n) => claims.as_object().and_then(|o| o.get(n)),
        ClaimRef::Pointer(p) => claims.pointer(p),
    }
    .filter(|v| !v.is_null())
}

/// Must this text be refused? Over the size cap, or an ASCII control byte (SPEC 4).
fn must_refuse(text: &str) -> bool {
    text.len() > MAX_HEADER_VALUE_BYTES || text.bytes().any(|b| b < 0x20 || b == 0x7f)
}

/// May this text be refused? Also Unicode C1 controls (NEL U+0085…), which the gateway refuses
/// as well: no header value may hold any control character.
fn may_refuse(text: &str) -> bool {
    must_refuse(text) || text.chars().any(char::is_control)
}

pub fn check_identity(policy: &Policy, claims: &Value) {
    let plan = &policy.identity;
    let scopes = ScopeSet::from_claims(claims, &policy.issuers[0].scope_claims);
    // The text each header would carry, by the SPEC 4 rendering rules; None: no header.
    let expected: Vec<(&str, Option<String>)> = plan
        .headers
        .iter()
        .map(|(name, source)| {
            let text = match source {
                Source::Scopes => (!scopes.is_empty()).then(|| scopes.joined()),
                Source::Claim(c) => lookup(claims, c).and_then(identity::render),
            };
            (name.as_str(), text)
        })
        .collect();
    let claims_text = plan
        .claims_header
        .as_ref()
        .map(|_| URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise")));
    let texts = || {
        expected
            .iter()
            .filter_map(|(_, t)| t.as_deref())
            .chain(claims_text.as_deref())
    };
    match plan.values(claims, &scopes) {
        Err(_) => assert!(
            texts().any(may_refuse),
            "identity headers refused though every value is safe: {claims}"
        ),
        Ok(headers) => {
            assert!(
                !texts().any(must_refuse),
                "an unsafe claim value was accepted: {claims}"
            );
            for (name, value) in &headers {
                assert_header_value_safe(name.as_str(), value.as_bytes());
                assert_eq!(
                    headers.iter().filter(|(n, _)| n == name).count(),
                    1,
                    "header {name} emitted twice"
                );
            }
            let emitted = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n.as_str() == name)
                    .map(|(_, v)| v.as_bytes())
            };
            for ((name, source), (_, want)) in plan.headers.iter().zip(&expected) {
                let got = emitted(name.as_str());
                match want {
                    None => assert!(got.is_none(), "absent claim {source:?} gave header {name}"),
                    Some(w) => assert_eq!(
                        got,
                        Some(w.as_bytes()),
                        "header {name} does not carry claim {source:?}"
                    ),
                }
                // Scalars and objects as SPEC 4 says, independently of `render`.
                if let Source::Claim(c) = source {
                    let exact = match lookup(claims, c) {
                        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                        Some(v @ (Value::Number(_) | Value::Bool(_) | Value::Object(_))) => {
                            Some(serde_json::to_string(v).expect("json"))
                        }
                        Some(Value::String(_)) => None,
                        _ => continue,
                    };
                    assert_eq!(
                        got,
                        exact.as_deref().map(str::as_bytes),
                        "{name} from {claims}"
                    );
                }
            }
            if let Some(name) = &plan.claims_header {
                let got = emitted(name.as_str()).expect("claims header emitted");
                let json = URL_SAFE_NO_PAD
                    .decode(got)
                    .expect("claims header is base64url");
                // Compared as text: serde_json's default float parser is not correctly
                // rounded, so parsing the header back can land on a neighbouring f64.
                assert_eq!(
                    json,
                    serde_json::to_vec(claims).expect("json"),
                    "claims header is not the claims' compact JSON"
                );
                let _: Value = serde_json::from_slice(&json).expect("claims header is JSON");
            }
            assert_eq!(
                headers.len(),
                expected.iter().filter(|(_, t)| t.is_some()).count()
                    + usize::from(plan.claims_header.is_some()),
                "unexpected extra identity headers"
            );
        }
    }
}
