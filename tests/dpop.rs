//! Sender-constrained tokens, black-box: DPoP-bound tokens (RFC 9449) with proofs made by a
//! client key, the `DPoP` scheme and its downgrade to `Bearer`, replay, server nonces, the
//! `sender_constraint: required` route, and the reasons in logs and metrics. Certificate-bound
//! tokens (RFC 8705) are in tests/tls.rs, with the client certificates.
mod common;
use common::*;
use jsonwebtoken::Algorithm;
use portcullis::demo::keys::SigningKey;
use serde_json::{json, Value};

/// A gateway on the standard policy with `dpop` (a YAML value) and a route that requires
/// sender-constrained tokens.
async fn dpop_setup(dpop: Option<&str>) -> Setup {
    setup_with(|config, _| {
        let config = config.route_first(
            Route::new("bound-only", "/bound/**").set("sender_constraint", "required"),
        );
        match dpop {
            Some(v) => config.set("dpop", v),
            None => config,
        }
    })
    .await
}

/// A token bound to `key` (`cnf.jkt`) with `extra` claims.
fn bound_token(issuer: &TestIssuer, key: &SigningKey, extra: Value) -> String {
    let mut claims = issuer.claims(extra);
    claims["cnf"] = json!({"jkt": key.jkt()});
    issuer.rs.mint(&claims)
}

/// `method target` with `Authorization: DPoP token` and these proofs.
async fn with_proofs(
    gw: &Gateway,
    method: &str,
    target: &str,
    token: &str,
    proofs: &[&str],
) -> Response {
    let auth = format!("DPoP {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    headers.extend(proofs.iter().map(|p| ("DPoP", *p)));
    gw.request(method, target, &headers, "").await
}

fn url(path: &str) -> String {
    format!("http://gateway.test{path}")
}

#[tokio::test]
async fn a_dpop_bound_token_with_a_valid_proof_is_forwarded_without_its_credentials() {
    let s = dpop_setup(None).await;
    let key = SigningKey::generate("client", Algorithm::ES256);
    let token = bound_token(&s.issuer, &key, json!({}));
    let proof = key.dpop_proof("GET", &url("/api/x"), Some(&token), &json!({}));
    let r = with_proofs(&s.gw, "GET", "/api/x", &token, &[&proof]).await;
    let echo = r.echo();
    assert_eq!(echo.header("x-auth-subject"), Some("user-1"));
    assert!(!echo.has("dpop"), "the proof went upstream");
    assert!(!echo.has("authorization"), "the token went upstream");
    // EdDSA and RSA client keys too.
    for alg in [Algorithm::EdDSA, Algorithm::PS256] {
        let key = SigningKey::generate("client", alg);
        let token = bound_token(&s.issuer, &key, json!({}));
        let proof = key.dpop_proof("GET", &url("/api/x"), Some(&token), &json!({}));
        let r = with_proofs(&s.gw, "GET", "/api/x", &token, &[&proof]).await;
        assert_forwarded(&r);
    }
}

#[tokio::test]
async fn a_dpop_bound_token_is_refused_as_bearer_and_an_unbound_one_as_dpop() {
    let s = dpop_setup(None).await;
    let key = SigningKey::generate("client", Algorithm::ES256);
    let token = bound_token(&s.issuer, &key, json!({}));
    let r = s.gw.get_bearer("/api/x", &token).await;
    assert_refused_as(&r, "DPoP-bound token must use the DPoP scheme");
    // Even with a valid proof beside it.
    let proof = key.dpop_proof("GET", &url("/api/x"), Some(&token), &json!({}));
    let auth = format!("Bearer {token}");
    let r =
        s.gw.get("/api/x", &[("Authorization", &auth), ("DPoP", &proof)])
            .await;
    assert_denied(&r, 401, "invalid_token");

    let plain = s.issuer.token(json!({}));
    let proof = key.dpop_proof("GET", &url("/api/x"), Some(&plain), &json!({}));
    let r = with_proofs(&s.gw, "GET", "/api/x", &plain, &[&proof]).await;
    assert_refused_as(&r, "token is not DPoP-bound");
    s.gw.wait_log("\"reason\":\"bound_token_as_bearer\"").await;
    s.gw.wait_log("\"reason\":\"not_dpop_bound\"").await;
}

#[tokio::test]
async fn a_missing_bad_or_replayed_proof_is_401_invalid_dpop_proof() {
    let s = dpop_setup(None).await;
    let key = SigningKey::generate("client", Algorithm::ES256);
    let token = bound_token(&s.issuer, &key, json!({}));

    let r = with_proofs(&s.gw, "GET", "/api/x", &token, &[]).await;
    assert_denied(&r, 401, "invalid_dpop_proof");
    let challenge = r.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("algs=\"ES256 EdDSA PS256 RS256\""),
        "{challenge}"
    );

    let proof = key.dpop_proof("GET", &url("/api/x"), Some(&token), &json!({}));
    assert_forwarded(&with_proofs(&s.gw, "GET", "/api/x", &token, &[&proof]).await);
    let again = with_proofs(&s.gw, "GET", "/api/x", &token, &[&proof]).await;
    assert_denied(&again, 401, "invalid_dpop_proof");
    assert_eq!(description(&again), "DPoP proof replayed");

    let cases: Vec<(&str, String)> = vec![
        (
            "DPoP proof htm does not match",
            key.dpop_proof("POST", &url("/api/x"), Some(&token), &json!({})),
        ),
        (
            "DPoP proof htu does not match",
            key.dpop_proof("GET", &url("/api/y"), Some(&token), &json!({})),
        ),
        (
            "DPoP proof iat outside the accepted window",
            key.dpop_proof(
                "GET",
                &url("/api/x"),
                Some(&token),
                &json!({"iat": now() - 600}),
            ),
        ),
        (
            "DPoP proof ath does not match the token",
            key.dpop_proof("GET", &url("/api/x"), Some("another.token.x"), &json!({})),
        ),
        (
            "DPoP proof key is not the token's key",
            SigningKey::generate("other", Algorithm::ES256).dpop_proof(
                "GET",
                &url("/api/x"),
                Some(&token),
                &json!({}),
            ),
        ),
    ];
    for (why, proof) in cases {
        let r = with_proofs(&s.gw, "GET", "/api/x", &token, &[&proof]).await;
        assert_denied(&r, 401, "invalid_dpop_proof");
        assert_eq!(description(&r), why);
    }
    let metrics = s.gw.admin_get("/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    for reason in [
        "dpop_proof_missing",
        "dpop_replay",
        "dpop_wrong_method",
        "dpop_wrong_uri",
        "dpop_stale",
        "dpop_wrong_ath",
        "dpop_thumbprint_mismatch",
    ] {
        assert!(
            text.contains(&format!("decision=\"{reason}\"")),
            "no {reason} in metrics"
        );
    }
}

#[tokio::test]
async fn two_dpop_headers_are_400() {
    let s = dpop_setup(None).await;
    let key = SigningKey::generate("client", Algorithm::ES256);
    let token = bound_token(&s.issuer, &key, json!({}));
    let a = key.dpop_proof("GET", &url("/api/x"), Some(&token), &json!({}));
    let b = key.dpop_proof("GET", &url("/api/x"), Some(&token), &json!({}));
    let r = with_proofs(&s.gw, "GET", "/api/x", &token, &[&a, &b]).await;
    assert_denied(&r, 400, "bad_request");
}

#[tokio::test]
async fn with_nonces_a_proof_needs_a_current_server_nonce() {
    let s = dpop_setup(Some("{ nonce: true }")).await;
    let key = SigningKey::generate("client", Algorithm::ES256);
    let token = bound_token(&s.issuer, &key, json!({}));
    let proof = key.dpop_proof("GET", &url("/api/x"), Some(&token), &json!({}));
    let r = with_proofs(&s.gw, "GET", "/api/x", &token, &[&proof]).await;
    assert_denied(&r, 401, "use_dpop_nonce");
    let nonce = r.header("dpop-nonce").expect("a DPoP-Nonce").to_string();

    let forged = key.dpop_proof(
        "GET",
        &url("/api/x"),
        Some(&token),
        &json!({"nonce": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
    );
    let r = with_proofs(&s.gw, "GET", "/api/x", &token, &[&forged]).await;
    assert_denied(&r, 401, "use_dpop_nonce");

    let proof = key.dpop_proof(
        "GET",
        &url("/api/x"),
        Some(&token),
        &json!({"nonce": nonce}),
    );
    assert_forwarded(&with_proofs(&s.gw, "GET", "/api/x", &token, &[&proof]).await);
}

#[tokio::test]
async fn a_sender_constraint_required_route_refuses_unbound_tokens() {
    let s = dpop_setup(None).await;
    let r =
        s.gw.get_bearer("/bound/x", &s.issuer.token(json!({})))
            .await;
    assert_refused_as(&r, "sender-constrained token required");
    let key = SigningKey::generate("client", Algorithm::ES256);
    let token = bound_token(&s.issuer, &key, json!({}));
    let proof = key.dpop_proof("GET", &url("/bound/x"), Some(&token), &json!({}));
    assert_forwarded(&with_proofs(&s.gw, "GET", "/bound/x", &token, &[&proof]).await);
}

#[tokio::test]
async fn a_cached_token_still_needs_a_fresh_proof_each_time() {
    let s = dpop_setup(None).await;
    let key = SigningKey::generate("client", Algorithm::ES256);
    let token = bound_token(&s.issuer, &key, json!({}));
    for _ in 0..3 {
        let proof = key.dpop_proof("GET", &url("/api/x"), Some(&token), &json!({}));
        assert_forwarded(&with_proofs(&s.gw, "GET", "/api/x", &token, &[&proof]).await);
    }
    // The token is in the cache now; without a proof it is still refused.
    let r = with_proofs(&s.gw, "GET", "/api/x", &token, &[]).await;
    assert_denied(&r, 401, "invalid_dpop_proof");
    let r = s.gw.get_bearer("/api/x", &token).await;
    assert_denied(&r, 401, "invalid_token");
}

#[tokio::test]
async fn an_unreadable_cnf_is_refused() {
    let s = dpop_setup(None).await;
    for cnf in [
        json!("x"),
        json!({"jkt": "not-a-thumbprint"}),
        json!({"jkt": 7}),
    ] {
        let token = s.issuer.token(json!({ "cnf": cnf }));
        let r = s.gw.get_bearer("/api/x", &token).await;
        assert_refused_as(&r, "unreadable token binding");
    }
}

#[tokio::test]
async fn no_dpop_token_or_proof_reaches_the_upstream_of_a_public_route() {
    let s = dpop_setup(None).await;
    let key = SigningKey::generate("client", Algorithm::ES256);
    let token = bound_token(&s.issuer, &key, json!({}));
    let proof = key.dpop_proof("GET", &url("/healthz"), Some(&token), &json!({}));
    let echo = with_proofs(&s.gw, "GET", "/healthz", &token, &[&proof])
        .await
        .echo();
    assert!(
        !echo.has("authorization"),
        "an unverified DPoP token went upstream"
    );
    assert!(!echo.has("dpop"), "a proof went upstream");
    // Another scheme is the upstream's business.
    let echo =
        s.gw.get("/healthz", &[("Authorization", "Basic dXNlcjpwdw==")])
            .await
            .echo();
    assert_eq!(echo.header("authorization"), Some("Basic dXNlcjpwdw=="));
}

#[tokio::test]
async fn a_reload_does_not_forget_the_proofs_seen() {
    let issuer = TestIssuer::start().await;
    let echo = start_echo().await;
    let config = standard_config(&issuer.url(), echo);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.yaml");
    std::fs::write(&path, config.yaml()).unwrap();
    let gw = start_gateway_at(&path, &[]);
    gw.wait_ready().await;
    let key = SigningKey::generate("client", Algorithm::ES256);
    let token = bound_token(&issuer, &key, json!({}));
    let proof = key.dpop_proof("GET", &url("/api/x"), Some(&token), &json!({}));
    assert_forwarded(&with_proofs(&gw, "GET", "/api/x", &token, &[&proof]).await);

    // Another route: a new policy generation, the same replay cache.
    let edited = config.route_first(Route::new("extra", "/extra/**"));
    std::fs::write(&path, edited.yaml()).unwrap();
    gw.wait_metric("portcullis_config_generation", 2.0).await;
    let r = with_proofs(&gw, "GET", "/api/x", &token, &[&proof]).await;
    assert_denied(&r, 401, "invalid_dpop_proof");
    assert_eq!(description(&r), "DPoP proof replayed");
}
