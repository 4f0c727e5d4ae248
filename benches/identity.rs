//! Identity-header mapping (`IdentityPlan::values`) for a typical token: three claim headers,
//! one JSON Pointer into a nested claim, the merged scope set; and the same plus the
//! base64url `claims_header`.
//!
//! `cargo bench --bench identity`

use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderName;
use portcullis::claims::{ClaimRef, ScopeSet};
use portcullis::identity::{IdentityPlan, Source};
use serde_json::json;
use std::hint::black_box;

fn bench_identity(c: &mut Criterion) {
    let claim = |name: &str| Source::Claim(ClaimRef::parse(name).expect("claim"));
    let mut plan = IdentityPlan {
        strip_prefix: "x-auth-".into(),
        headers: vec![
            (HeaderName::from_static("x-auth-subject"), claim("sub")),
            (HeaderName::from_static("x-auth-email"), claim("email")),
            (HeaderName::from_static("x-auth-scopes"), Source::Scopes),
            (
                HeaderName::from_static("x-auth-roles"),
                claim("/https:~1~1example.com~1roles"),
            ),
            (HeaderName::from_static("x-auth-org"), claim("org_id")),
        ],
        claims_header: None,
        forward_token: false,
    };
    let claims = json!({
        "iss": "https://issuer.example/", "sub": "auth0|5f7c8ec7c33c6c004bbafe82",
        "aud": ["api://bench"], "iat": 1_700_000_000, "exp": 1_700_003_600,
        "email": "jane.doe@example.com", "org_id": "acme",
        "scope": "read:orders write:orders openid profile",
        "https://example.com/roles": ["admin", "billing"],
    });
    let scopes = ScopeSet::from_claims(&claims, &[ClaimRef::parse("scope").unwrap()]);
    let mut group = c.benchmark_group("identity_values");
    assert_eq!(plan.values(&claims, &scopes).expect("safe").len(), 5);
    group.bench_function("five_headers", |b| {
        b.iter(|| plan.values(black_box(&claims), black_box(&scopes)))
    });
    plan.claims_header = Some(HeaderName::from_static("x-auth-claims"));
    group.bench_function("five_headers_and_claims_header", |b| {
        b.iter(|| plan.values(black_box(&claims), black_box(&scopes)))
    });
    group.bench_function("scope_set_from_claims", |b| {
        let scope_claims = [
            ClaimRef::parse("scope").unwrap(),
            ClaimRef::parse("scp").unwrap(),
        ];
        b.iter(|| ScopeSet::from_claims(black_box(&claims), &scope_claims))
    });
    group.finish();
}

criterion_group!(benches, bench_identity);
criterion_main!(benches);
