//! Token verification per algorithm: the signature check alone, a whole uncached
//! `Authenticator::authenticate` (no cache: parse, header rules, key lookup, signature, claims,
//! scopes, identity headers), and a cache hit. The RS256 group also holds the bare aws-lc-rs
//! verifies of the same signature, so the ratio of whole-path verification to a bare aws-lc verify is read from one run.
//!
//! `cargo bench --bench verify`

#[path = "support/ready.rs"]
mod ready;
use aws_lc_rs::signature::{self as sig, RsaPublicKeyComponents};
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{Algorithm, DecodingKey};
use portcullis::config::Policy;
use portcullis::demo::keys::{jwks, now, SigningKey};
use portcullis::keys::KeyStore;
use portcullis::metrics::Metrics;
use portcullis::token::{verify, Authenticator};
use ready::ready;
use serde_json::json;
use std::hint::black_box;
use std::path::Path;

const AUD: &str = "api://bench";
const HMAC_ENV: &str = "PORTCULLIS_BENCH_HMAC_SECRET";
const HMAC_SECRET: &str = "bench-secret-0123456789abcdef-0123456789";

fn issuer_url(alg: Algorithm) -> String {
    format!("https://{alg:?}.bench.example/").to_lowercase()
}

/// A token like an IdP's access token: about 600 bytes for RS256.
fn claims(alg: Algorithm, sub: &str) -> serde_json::Value {
    let t = now();
    json!({
        "iss": issuer_url(alg), "sub": sub, "aud": [AUD, "https://other.example"],
        "iat": t, "nbf": t, "exp": t + 3600, "email": format!("{sub}@example.com"),
        "scope": "read:orders write:orders openid profile", "azp": "bench-client",
        "jti": format!("{sub}-0123456789abcdef"),
    })
}

struct Fixture {
    policy: Policy,
    keys: KeyStore,
    metrics: Metrics,
    signers: Vec<SigningKey>,
}

fn fixture() -> Fixture {
    // The HMAC issuer reads its secret from the environment at compile time.
    std::env::set_var(HMAC_ENV, HMAC_SECRET);
    let signers = vec![
        SigningKey::generate("rs", Algorithm::RS256),
        SigningKey::generate("ps", Algorithm::PS256),
        SigningKey::generate("es", Algorithm::ES256),
        SigningKey::generate("ed", Algorithm::EdDSA),
        SigningKey::hmac("hs", Algorithm::HS256, HMAC_SECRET.as_bytes()),
    ];
    let mut yaml = String::from(
        "listen: 127.0.0.1:0\nupstreams:\n  app: { url: \"http://127.0.0.1:1\" }\nupstream: app\n\
         identity:\n  headers:\n    x-auth-subject: sub\n    x-auth-email: email\n    x-auth-scopes: scope\n\
         routes:\n  - name: all\n    match: { path: /** }\nissuers:\n",
    );
    for key in &signers {
        let source = if key.alg == Algorithm::HS256 {
            format!("hmac_secret_env: {HMAC_ENV}")
        } else {
            format!("jwks: {}", jwks(&[key]))
        };
        yaml.push_str(&format!(
            "  {:?}:\n    issuer: \"{}\"\n    audiences: [\"{AUD}\"]\n    algorithms: [{:?}]\n    {source}\n",
            key.alg,
            issuer_url(key.alg),
            key.alg
        ));
    }
    let policy = portcullis::config::from_str(&yaml, "bench", Path::new(".")).expect("policy");
    let keys = portcullis::live::key_store(&policy);
    Fixture {
        policy,
        keys,
        metrics: Metrics::new(),
        signers,
    }
}

fn bench_verify(c: &mut Criterion) {
    let f = fixture();
    let rules = portcullis::engine::token_rules(&f.policy);
    let cold = Authenticator::new(0);
    let warm = Authenticator::new(10_000);
    for key in &f.signers {
        let index = f.policy.issuer_by_iss[issuer_url(key.alg).as_str()];
        let token = key.mint(&claims(key.alg, "user-1"));
        let name = format!("verify/{:?}", key.alg);
        let mut group = c.benchmark_group(&name);

        let parsed = verify::parse(&token).expect("parses");
        if key.alg == Algorithm::HS256 {
            let secret = f.policy.issuers[index].hmac.as_ref().expect("secret");
            group.bench_function("check_signature", |b| {
                b.iter(|| verify::check_signature(black_box(&parsed), secret, key.alg))
            });
        } else {
            let set = f.keys.issuer(index).current().expect("inline keys");
            let vkey = set.by_kid(&key.kid).expect("kid").clone();
            group.bench_function("check_signature", |b| {
                b.iter(|| verify::check_signature(black_box(&parsed), &vkey.key, key.alg))
            });
        }
        if key.alg == Algorithm::RS256 {
            bare_rsa_baselines(&mut group, key, &parsed);
        }
        // What `check_signature` did before keys were parsed at load: jsonwebtoken's verify,
        // which rebuilds the aws-lc key and decodes the signature into a Vec on every call.
        let old_key = if key.alg == Algorithm::HS256 {
            DecodingKey::from_secret(HMAC_SECRET.as_bytes()).unwrap()
        } else {
            DecodingKey::from_jwk(&serde_json::from_value(key.jwk()).unwrap()).unwrap()
        };
        let message = parsed.signing_input.as_bytes();
        assert!(
            jsonwebtoken::crypto::verify(parsed.signature, message, &old_key, key.alg).unwrap()
        );
        group.bench_function("jsonwebtoken_crypto_verify", |b| {
            b.iter(|| {
                jsonwebtoken::crypto::verify(
                    black_box(parsed.signature),
                    message,
                    &old_key,
                    key.alg,
                )
            })
        });

        ready(cold.authenticate(&token, &rules, &f.keys, &f.metrics)).expect("valid token");
        group.bench_function("authenticate_uncached", |b| {
            b.iter(|| ready(cold.authenticate(black_box(&token), &rules, &f.keys, &f.metrics)))
        });
        ready(warm.authenticate(&token, &rules, &f.keys, &f.metrics)).expect("valid token");
        group.bench_function("authenticate_cache_hit", |b| {
            b.iter(|| ready(warm.authenticate(black_box(&token), &rules, &f.keys, &f.metrics)))
        });
        if key.alg == Algorithm::HS256 {
            cache_miss_and_insert(&mut group, &f, key);
        }
        group.finish();
    }
}

/// A cache miss that verifies, as every request of a distinct-token load does (a token is
/// inserted on its second verification only, so most of these insert nothing): HS256 (cheap to
/// mint in bulk), so that beside `authenticate_uncached` the difference is the cache's own
/// cost. The cache has the load test's capacity; tokens cycle through a pool larger than it,
/// and the hits this still lets through are printed.
fn cache_miss_and_insert(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    f: &Fixture,
    key: &SigningKey,
) {
    const CAPACITY: u64 = 100_000;
    let pool: Vec<String> = (0..2 * CAPACITY as usize)
        .map(|i| key.mint(&claims(key.alg, &format!("user-{i}"))))
        .collect();
    let cache = Authenticator::new(CAPACITY);
    let rules = portcullis::engine::token_rules(&f.policy);
    let hits = |m: &Metrics| m.token_cache.with_label_values(&["hit"]).get();
    let (hits_before, mut calls, mut next) = (hits(&f.metrics), 0u64, 0usize);
    group.bench_function("authenticate_cache_miss_insert", |b| {
        b.iter(|| {
            next = (next + 1) % pool.len();
            calls += 1;
            ready(cache.authenticate(&pool[next], &rules, &f.keys, &f.metrics))
        })
    });
    eprintln!(
        "authenticate_cache_miss_insert: {} of {calls} lookups were hits",
        hits(&f.metrics) - hits_before
    );
}

/// aws-lc-rs alone on the same signature: with the key parsed once (the floor), and with the
/// key rebuilt from (n, e) on every call (what `jsonwebtoken::crypto::verify` does).
fn bare_rsa_baselines(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    key: &SigningKey,
    parsed: &verify::Parsed<'_>,
) {
    let jwk = key.jwk();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let n = b64.decode(jwk["n"].as_str().unwrap()).unwrap();
    let e = b64.decode(jwk["e"].as_str().unwrap()).unwrap();
    let signature = b64.decode(parsed.signature).unwrap();
    let message = parsed.signing_input.as_bytes();
    let components = RsaPublicKeyComponents { n: &n, e: &e };
    let parsed_key = components
        .to_parsed_public_key(&sig::RSA_PKCS1_2048_8192_SHA256)
        .unwrap();
    parsed_key.verify_sig(message, &signature).expect("valid");
    group.bench_function("aws_lc_bare_parsed_key", |b| {
        b.iter(|| parsed_key.verify_sig(black_box(message), black_box(&signature)))
    });
    group.bench_function("aws_lc_bare_components_per_call", |b| {
        b.iter(|| {
            components.verify(
                &sig::RSA_PKCS1_2048_8192_SHA256,
                black_box(message),
                black_box(&signature),
            )
        })
    });
}

/// The token cache's key, natively: SipHash-2-4-128 (what the cache uses) beside SHA-256 (what it
/// used), both of the same RS256 token. Callgrind runs aws-lc's SHA-256 without the CPU's SHA
/// extensions (valgrind does not offer them), so only a native run says what the change is worth
/// on a CPU that has them.
fn bench_cache_key(c: &mut Criterion) {
    use siphasher::sip128::{Hasher128, SipHasher24};
    use std::hash::Hasher;
    let key = SigningKey::generate("bench-key", Algorithm::RS256);
    let token = key.mint(&claims(Algorithm::RS256, "user-1"));
    let mut group = c.benchmark_group("cache_key");
    let secret = SipHasher24::new_with_key(&[7; 16]);
    group.bench_function(format!("siphash24_128_{}_bytes", token.len()), |b| {
        b.iter(|| {
            let mut h = secret;
            h.write(black_box(token.as_bytes()));
            h.finish128().as_bytes()
        })
    });
    group.bench_function(format!("sha256_aws_lc_{}_bytes", token.len()), |b| {
        b.iter(|| {
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, black_box(token.as_bytes()))
        })
    });
}

criterion_group!(benches, bench_verify, bench_cache_key);
criterion_main!(benches);
