//! `explain` over an inline policy: the routes it lists agree with the engine's match, claims
//! are filled for the route's own issuer, and its input errors are refused.

use super::*;
use serde_json::json;

const CONFIG: &str = "\
listen: 127.0.0.1:0
upstreams:
  app: { url: http://127.0.0.1:1 }
  admin: { url: http://127.0.0.1:2 }
upstream: app
issuers:
  main:
    issuer: https://main.example/
    jwks_uri: https://main.example/jwks
    audiences: [api]
  other:
    issuer: https://other.example/
    jwks_uri: https://other.example/jwks
    audiences: [other-api]
    max_token_lifetime: 1h
identity:
  headers:
    x-auth-subject: sub
routes:
  - name: health
    match: { path: /healthz, methods: [GET] }
    auth: none
  - name: admin
    match: { path: /admin/**, host: admin.example.com }
    issuers: [other]
    upstream: admin
  - name: api
    match: { path: /api/*, methods: [GET, POST] }
    scopes: { any_of: [a, b] }
  - name: new-rule
    match: { path: /new/** }
    scopes: [c]
    mode: shadow
";

fn explainer() -> Explainer {
    let compiled =
        config::from_str_with(CONFIG, "t.yaml", Path::new("."), Options { offline: true }).unwrap();
    Explainer::new(compiled, CONFIG)
}

fn req(method: &str, url: &str, token: TokenInput) -> Request {
    Request {
        method: method.into(),
        url: url.into(),
        headers: Vec::new(),
        peer: None,
        token,
        dpop: None,
        tls: None,
        authority: None,
        client_subject: None,
    }
}

#[test]
fn the_routes_listed_are_the_ones_the_engine_tried() {
    let e = explainer();
    for (method, url, matched) in [
        ("GET", "http://admin.example.com/admin/x", Some("admin")),
        ("GET", "http://www.example.com/admin/x", None),
        ("POST", "http://h/api/x", Some("api")),
        ("HEAD", "http://h/healthz", Some("health")),
        ("DELETE", "http://h/api/x", None),
    ] {
        let x = e.explain(&req(method, url, TokenInput::None)).unwrap();
        assert_eq!(x.route.as_deref(), matched, "{method} {url}");
        let (last, before) = x.routes.split_last().unwrap();
        assert!(before.iter().all(|t| t.miss.is_some()), "{:?}", x.routes);
        match matched {
            Some(name) => assert_eq!((last.name.as_str(), last.miss), (name, None)),
            None => assert_eq!(x.routes.len(), 4),
        }
    }
    let x = e
        .explain(&req(
            "GET",
            "http://www.example.com/admin/x",
            TokenInput::None,
        ))
        .unwrap();
    let misses: Vec<_> = x.routes.iter().map(|t| t.miss.unwrap()).collect();
    assert_eq!(misses, ["path", "host", "path", "path"]);
    assert_eq!(x.routes[1].line, 23);
}

#[test]
fn claims_are_filled_for_the_routes_issuer() {
    let e = explainer();
    let x = e
        .explain(&req(
            "GET",
            "http://admin.example.com/admin/x",
            TokenInput::Claims(json!({"sub": "u1"})),
        ))
        .unwrap();
    assert_eq!((x.status, x.reason.as_str()), (200, "allowed"));
    assert_eq!(x.upstream.as_deref(), Some("admin"));
    assert_eq!(x.upstream_headers["x-auth-subject"], "u1");
    let filled = x.token.join("\n");
    assert!(filled.contains("\"https://other.example/\""), "{filled}");
    assert!(filled.contains("iat now"), "{filled}");

    // An iss the route does not accept is judged, not replaced.
    let x = e
        .explain(&req(
            "GET",
            "http://admin.example.com/admin/x",
            TokenInput::Claims(json!({"iss": "https://main.example/"})),
        ))
        .unwrap();
    assert_eq!((x.status, x.reason.as_str()), (401, "issuer_not_accepted"));
}

#[test]
fn any_of_is_one_rule() {
    let x = explainer()
        .explain(&req(
            "GET",
            "http://h/api/x",
            TokenInput::Claims(json!({"scope": "c b"})),
        ))
        .unwrap();
    assert_eq!(x.status, 200);
    assert_eq!(
        x.rules,
        [RuleCheck {
            rule: "any of the scopes a, b".into(),
            pass: true
        }]
    );
}

#[test]
fn input_that_is_not_a_request_is_refused() {
    let e = explainer();
    for (method, url) in [("GET", "api.example.com/x"), ("G T", "/x")] {
        assert!(
            e.explain(&req(method, url, TokenInput::None)).is_err(),
            "{method} {url}"
        );
    }
    let mut two = req("GET", "/api/x", TokenInput::Token("a.b.c".into()));
    two.headers
        .push(("Authorization".into(), "Bearer x".into()));
    assert!(e.explain(&two).is_err());
    // A lower-case method is a request the gateway refuses, not bad input.
    let x = e.explain(&req("get", "/api/x", TokenInput::None)).unwrap();
    assert_eq!((x.status, x.reason.as_str()), (400, "bad_request"));
}

#[test]
fn a_shadow_route_forwards_and_says_what_it_would_have_denied() {
    let x = explainer()
        .explain(&req(
            "GET",
            "http://h/new/x",
            TokenInput::Claims(json!({"sub": "u1", "scope": "a"})),
        ))
        .unwrap();
    assert_eq!((x.status, x.reason.as_str()), (200, "shadow_denied"));
    assert_eq!(x.shadow, Some((403, "insufficient_scope".to_string())));
    assert_eq!(x.json()["shadow_denial"]["reason"], "insufficient_scope");
    assert!(x.human().contains("it would be 403 insufficient_scope"));
}

#[test]
fn dpop_cases_give_a_proof_or_ask_for_one_made_from_a_key() {
    use crate::demo::keys::SigningKey;
    let e = explainer();
    let key = SigningKey::generate("client", jsonwebtoken::Algorithm::ES256);
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("client.pem");
    std::fs::write(&pem, key.pkcs8_pem().unwrap()).unwrap();
    let claims = json!({"sub": "u1", "scope": "a", "cnf": {"jkt": key.jkt()}});
    let url = "https://api.example.com/api/x";
    let with = |dpop: Option<DpopInput>| {
        let mut r = req("GET", url, TokenInput::Claims(claims.clone()));
        r.dpop = dpop;
        e.explain(&r).unwrap()
    };

    // A valid proof made from the key: allowed, and the notes say how it was made.
    let x = with(Some(DpopInput::Key(pem.clone())));
    assert_eq!((x.status, x.reason.as_str()), (200, "allowed"), "{x:?}");
    assert!(
        x.token.iter().any(|n| n.contains(&key.jkt())),
        "{:?}",
        x.token
    );
    // A given proof shows which check fails.
    let other_url = key.dpop_proof(
        "GET",
        "https://api.example.com/api/y",
        Some("claims.not.signed"),
        &json!({}),
    );
    let x = with(Some(DpopInput::Proof(other_url)));
    assert_eq!((x.status, x.reason.as_str()), (401, "dpop_wrong_uri"));
    let other_key = SigningKey::generate("other", jsonwebtoken::Algorithm::ES256);
    let other_dir = dir.path().join("other.pem");
    std::fs::write(&other_dir, other_key.pkcs8_pem().unwrap()).unwrap();
    let x = with(Some(DpopInput::Key(other_dir)));
    assert_eq!(
        (x.status, x.reason.as_str()),
        (401, "dpop_thumbprint_mismatch")
    );
    // The bound token without the DPoP scheme.
    let x = with(None);
    assert_eq!(
        (x.status, x.reason.as_str()),
        (401, "bound_token_as_bearer")
    );
    // A key that is not one.
    std::fs::write(&pem, "not a key").unwrap();
    let mut r = req("GET", url, TokenInput::Claims(claims.clone()));
    r.dpop = Some(DpopInput::Key(pem));
    assert!(e.explain(&r).is_err());
}
