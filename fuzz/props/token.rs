//! Target `token`: verification with a fixed key set (the fixed keys and the ways to sign a
//! token are here too: only this target signs).
use super::builder::{IssuerBlock, Route};
use super::{assert_header_value_safe, b64, fixture_config, AUD, MAIN_ISS};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use portcullis::config::Policy;
use portcullis::keys::KeyStore;
use portcullis::metrics::Metrics;
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
/// `iss` of the HMAC issuer (HS256; typ at+jwt; max lifetime; leeway 30 s).
pub const HMAC_ISS: &str = "https://hmac.fuzz.example";
/// 2100-01-01: seeds minted with this `exp` stay valid for the life of the corpus.
pub const FAR_EXP: i64 = 4_102_444_800;

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
// The target.

/// Configuration of the `token` fixture: a JWKS issuer and an HMAC issuer.
pub fn token_config() -> String {
    fixture_config()
        .set("log_subject", "true")
        .route(Route::new("all", "/**").claims("{ /org/id: [acme, 7], email_verified: true }"))
        .identity_header("x-auth-subject", "sub")
        .identity_header("x-auth-email", "email")
        .identity_header("x-auth-scopes", "scope")
        .identity_header("x-auth-roles", "/https:~1~1example.com~1roles")
        .identity("claims_header", "x-auth-claims")
        .issuer(
            IssuerBlock::new("main", MAIN_ISS)
                .jwks(fixture_jwks())
                .audiences(&[AUD, "https://api.fuzz.example"])
                .algorithms(&["RS256", "PS256", "ES256", "EdDSA"])
                .set("leeway", "0s"),
        )
        .issuer(
            IssuerBlock::new("hmac", HMAC_ISS)
                .hmac_secret_env(HMAC_ENV)
                .audiences(&[AUD])
                .algorithms(&["HS256"])
                .set("required_typ", "at+jwt")
                .set("max_token_lifetime", "200years")
                .set("leeway", "30s"),
        )
        .yaml()
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
        let keys = portcullis::live::key_store(&policy);
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
    // A token is cached on its second verification: the third call is the hit.
    let miss = authenticate(f, &f.cached, token);
    let admitted = authenticate(f, &f.cached, token);
    let hit = authenticate(f, &f.cached, token);
    assert!(
        same_answer(&plain, &miss) && same_answer(&plain, &admitted) && same_answer(&plain, &hit),
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

    // Registered claims, as docs/behaviour.md ("Verification") states them.
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
        *id.claims(),
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
        for (name, value) in headers.iter(&f.policy.identity, &id.scopes) {
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
        issuer_id: id.issuer_id,
        signer: id.signer,
        expires_at: id.expires_at,
        claims: id.claims.clone(),
        scopes: id.scopes.clone(),
        headers: id.headers.clone(),
        subject: id.subject.clone(),
        binding: id.binding.clone(),
    }
}
