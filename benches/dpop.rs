//! A DPoP-bound request beside a plain one, through the engine as the proxy runs it: route,
//! `authenticate` (a verified-token cache hit: the access token is cached either way), and
//! `decide`, which for the DPoP-bound token checks the request's proof (one signature
//! verification with the client's key, ES256 or EdDSA, and a replay-cache insert). Each DPoP
//! iteration gets a fresh proof made outside the timed part. Also the proof check alone.
//!
//! `cargo bench --bench dpop`

#[path = "support/ready.rs"]
mod ready;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, HeaderValue, Method};
use jsonwebtoken::Algorithm;
use portcullis::config::Policy;
use portcullis::demo::keys::{jwks, now, SigningKey};
use portcullis::engine::{self, Decision, RequestHead};
use portcullis::keys::KeyStore;
use portcullis::metrics::Metrics;
use portcullis::token::Authenticator;
use ready::ready;
use serde_json::json;
use std::hint::black_box;
use std::path::Path;

const ISS: &str = "https://issuer.bench.example/";
const AUD: &str = "api://bench";
const URL: &str = "http://api.bench.example/api/orders/7";

struct Fixture {
    policy: Policy,
    keys: KeyStore,
    metrics: Metrics,
    auth: Authenticator,
    issuer: SigningKey,
}

fn fixture() -> Fixture {
    let issuer = SigningKey::generate("rs", Algorithm::RS256);
    // A replay cache large enough that no iteration finds it full.
    let yaml = format!(
        "listen: 127.0.0.1:0\nupstreams:\n  app: {{ url: \"http://127.0.0.1:1\" }}\nupstream: app\n\
         dpop: {{ replay_cache_entries: 5000000 }}\n\
         routes:\n  - name: orders\n    match: {{ path: /api/orders/** }}\n\
         issuers:\n  main:\n    issuer: \"{ISS}\"\n    audiences: [\"{AUD}\"]\n    jwks: {}\n",
        jwks(&[&issuer])
    );
    let policy = portcullis::config::from_str(&yaml, "bench", Path::new(".")).expect("policy");
    let keys = portcullis::live::key_store(&policy);
    Fixture {
        policy,
        keys,
        metrics: Metrics::new(),
        auth: Authenticator::new(10_000),
        issuer,
    }
}

impl Fixture {
    fn token(&self, jkt: Option<String>) -> String {
        let t = now();
        let mut claims = json!({
            "iss": ISS, "sub": "user-1", "aud": AUD, "iat": t, "exp": t + 3600,
            "scope": "read:orders write:orders openid profile",
        });
        if let Some(jkt) = jkt {
            claims["cnf"] = json!({ "jkt": jkt });
        }
        self.issuer.mint(&claims)
    }

    /// The whole decision of `GET /api/orders/7` with these headers.
    fn decide(&self, headers: &HeaderMap) -> Decision {
        let head = RequestHead {
            method: &Method::GET,
            target: b"/api/orders/7",
            headers,
            authority: None,
            peer: None,
            tls: false,
            client_subject: None,
            client_cert: None,
        };
        let routed = match engine::route(&self.policy, &head) {
            Ok(r) => r,
            Err(d) => return Decision::Deny(d),
        };
        let rules = engine::token_rules(&self.policy);
        let verified = routed
            .token()
            .map(|t| ready(self.auth.authenticate(t, &rules, &self.keys, &self.metrics)));
        let id = HeaderValue::from_static("bench");
        engine::decide(&self.policy, &head, routed, verified, &id)
    }
}

fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("api.bench.example"));
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn allowed(d: &Decision) -> bool {
    matches!(d, Decision::Allow(_))
}

fn bench_dpop(c: &mut Criterion) {
    let f = fixture();
    let mut group = c.benchmark_group("request");

    let plain = f.token(None);
    let plain_headers = headers(&[("authorization", format!("Bearer {plain}"))]);
    // Twice: the second verification admits it to the cache.
    f.decide(&plain_headers);
    assert!(allowed(&f.decide(&plain_headers)));
    group.bench_function("bearer_cached", |b| {
        b.iter(|| black_box(f.decide(black_box(&plain_headers))))
    });

    for alg in [Algorithm::ES256, Algorithm::EdDSA] {
        let client = SigningKey::generate("client", alg);
        let token = f.token(Some(client.jkt()));
        let auth = format!("DPoP {token}");
        let fresh = || {
            headers(&[
                ("authorization", auth.clone()),
                (
                    "dpop",
                    client.dpop_proof("GET", URL, Some(&token), &json!({})),
                ),
            ])
        };
        f.decide(&fresh());
        assert!(allowed(&f.decide(&fresh())), "the DPoP fixture is refused");
        group.bench_function(format!("dpop_{alg:?}_cached_token"), |b| {
            b.iter_batched(fresh, |h| black_box(f.decide(&h)), BatchSize::SmallInput)
        });
    }
    group.finish();

    // The proof check alone.
    let mut group = c.benchmark_group("proof");
    for alg in [Algorithm::ES256, Algorithm::EdDSA] {
        let client = SigningKey::generate("client", alg);
        let token = f.token(Some(client.jkt()));
        let jkt = portcullis::token::dpop::decode_sha256(&client.jkt()).unwrap();
        let target = portcullis::token::dpop::Target {
            https: false,
            host: "api.bench.example",
            port: 80,
            path: "/api/orders/7",
        };
        let guard = portcullis::token::dpop::Guard::new(5_000_000, None);
        group.bench_function(format!("check_{alg:?}"), |b| {
            b.iter_batched(
                || client.dpop_proof("GET", URL, Some(&token), &json!({})),
                |proof| {
                    let want = portcullis::token::dpop::Expected {
                        method: "GET",
                        target: &target,
                        token: &token,
                        jkt: &jkt,
                        now: now() as f64,
                        leeway: std::time::Duration::from_secs(30),
                    };
                    let r = portcullis::token::dpop::check(&proof, &f.policy.dpop, &guard, &want);
                    assert!(r.is_ok());
                    black_box(r)
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_dpop);
criterion_main!(benches);
