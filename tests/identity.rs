//! Identity headers as the upstream sees them (docs/behaviour.md, "Identity headers"): spoofed headers are
//! stripped on every route, claims are rendered exactly, unsafe claims fail closed, and the
//! gateway owns the token, `X-Forwarded-*` and `X-Request-Id` headers.
mod common;
use common::*;

use base64::Engine;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

/// Every header name (any casing) a client might use to pass itself off as someone else.
const SPOOFED: [(&str, &str); 7] = [
    ("X-Auth-Subject", "admin"),
    ("X-Auth-Subject", "root"),
    ("x-AUTH-roles", "superuser"),
    ("X-User-Org", "evil-corp"),
    ("X-Auth-Claims", "eyJzdWIiOiJhZG1pbiJ9"),
    ("X-Auth-Anything-Else", "1"),
    ("X-Auth-Email", "boss@example.com"),
];

/// The headers the gateway manages or strips by prefix, lower-case.
const MANAGED: [&str; 7] = [
    "x-auth-subject",
    "x-auth-roles",
    "x-user-org",
    "x-auth-claims",
    "x-auth-anything-else",
    "x-auth-email",
    "x-auth-scopes",
];

fn spoofed_with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut headers = SPOOFED.to_vec();
    headers.push(("X-Other", "kept"));
    headers.extend_from_slice(extra);
    headers
}

fn assert_no_identity_headers(echo: &Echo) {
    for name in MANAGED {
        assert!(
            !echo.has(name),
            "{name} reached the upstream: {:?}",
            echo.header_all(name)
        );
    }
    assert_eq!(
        echo.header("x-other"),
        Some("kept"),
        "unrelated header lost"
    );
}

/// The claims the `x-auth-claims` header carries, decoded.
fn decoded_claims(echo: &Echo) -> Value {
    let encoded = echo.header("x-auth-claims").expect("x-auth-claims header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .unwrap_or_else(|e| panic!("x-auth-claims is not unpadded base64url ({e}): {encoded}"));
    serde_json::from_slice(&bytes).expect("x-auth-claims holds JSON")
}

/// What the upstream saw for `GET /api/x` (route `api`: any valid token) with these claims.
async fn upstream_saw(s: &Setup, extra: Value) -> Echo {
    let token = s.issuer.token(extra);
    s.gw.get_bearer("/api/x", &token).await.echo()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_are_stripped_on_a_public_route() {
    let s = setup().await;
    let echo = s.gw.get("/healthz", &spoofed_with(&[])).await.echo();
    assert_eq!(echo.target, "/healthz");
    assert_no_identity_headers(&echo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_are_stripped_on_an_optional_route_without_a_token() {
    let s = setup().await;
    let echo = s.gw.get("/opt/page", &spoofed_with(&[])).await.echo();
    assert_eq!(echo.target, "/opt/page");
    assert_no_identity_headers(&echo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_are_replaced_by_verified_values_on_a_protected_route() {
    let s = setup().await;
    // No `email` claim: the spoofed X-Auth-Email must go and nothing take its place.
    let claims = s.issuer.claims(json!({
        "scope": "read:orders",
        "https://example.com/roles": ["viewer"],
        "org_id": "acme",
    }));
    let token = s.issuer.rs.mint(&claims);
    let auth = format!("Bearer {token}");
    let echo =
        s.gw.get("/api/orders/7", &spoofed_with(&[("Authorization", &auth)]))
            .await
            .echo();
    assert_eq!(echo.target, "/api/orders/7");
    // `header` asserts each is present at most once: no spoofed copy survives beside the real one.
    assert_eq!(echo.header("x-auth-subject"), Some("user-1"));
    assert_eq!(echo.header("x-auth-roles"), Some("viewer"));
    assert_eq!(echo.header("x-user-org"), Some("acme"));
    assert_eq!(echo.header("x-auth-scopes"), Some("read:orders"));
    assert_eq!(decoded_claims(&echo), claims);
    assert!(
        !echo.has("x-auth-email"),
        "{:?}",
        echo.header_all("x-auth-email")
    );
    assert!(!echo.has("x-auth-anything-else"));
    assert_eq!(echo.header("x-other"), Some("kept"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_rendered_as_strings_joined_arrays_and_json_text() {
    let s = setup().await;

    let echo = upstream_saw(
        &s,
        json!({
            "email": "a@example.com",
            "https://example.com/roles": ["admin", "ops"],
            "org_id": 42,
        }),
    )
    .await;
    assert_eq!(echo.header("x-auth-subject"), Some("user-1"));
    assert_eq!(echo.header("x-auth-email"), Some("a@example.com"));
    assert_eq!(echo.header("x-auth-roles"), Some("admin ops"));
    assert_eq!(echo.header("x-user-org"), Some("42"));

    let cases = [
        (json!(true), "true"),
        (json!(false), "false"),
        (json!(-1.5), "-1.5"),
        (json!("acme"), "acme"),
        (json!({"a": 1, "b": [2, "x"]}), r#"{"a":1,"b":[2,"x"]}"#),
    ];
    for (value, want) in cases {
        let echo = upstream_saw(&s, json!({ "org_id": value })).await;
        assert_eq!(echo.header("x-user-org"), Some(want), "org_id {value}");
    }

    let echo = upstream_saw(&s, json!({"https://example.com/roles": "solo"})).await;
    assert_eq!(echo.header("x-auth-roles"), Some("solo"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_header_is_the_union_of_scope_scp_and_permissions() {
    let s = setup().await;
    let echo = upstream_saw(
        &s,
        json!({
            "scope": "read:orders write:orders",
            "scp": ["export", "read:orders"],
            "permissions": ["admin"],
        }),
    )
    .await;
    let header = echo.header("x-auth-scopes").expect("x-auth-scopes");
    let mut got: Vec<&str> = header.split(' ').collect();
    assert!(
        !got.contains(&""),
        "scopes not separated by single spaces: {header:?}"
    );
    got.sort_unstable();
    assert_eq!(
        got,
        ["admin", "export", "read:orders", "write:orders"],
        "{header:?}"
    );

    // A scope granted only through `permissions` counts for authorisation too.
    let token = s.issuer.token(json!({"permissions": ["read:orders"]}));
    let echo = s.gw.get_bearer("/api/orders/1", &token).await.echo();
    assert_eq!(echo.header("x-auth-scopes"), Some("read:orders"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_claim_sends_no_header_at_all() {
    let s = setup().await;
    let echo = upstream_saw(&s, json!({})).await;
    assert_eq!(echo.header("x-auth-subject"), Some("user-1"));
    for name in [
        "x-auth-email",
        "x-auth-roles",
        "x-user-org",
        "x-auth-scopes",
    ] {
        assert!(!echo.has(name), "{name}: {:?}", echo.header_all(name));
    }

    let echo = upstream_saw(&s, json!({"sub": null, "email": "a@example.com"})).await;
    assert!(
        !echo.has("x-auth-subject"),
        "{:?}",
        echo.header_all("x-auth-subject")
    );
    assert_eq!(echo.header("x-auth-email"), Some("a@example.com"));

    // Never an empty header: an empty string or an empty array is no value either.
    let echo = upstream_saw(
        &s,
        json!({"email": "", "https://example.com/roles": [], "scope": ""}),
    )
    .await;
    for name in ["x-auth-email", "x-auth-roles", "x-auth-scopes"] {
        assert!(!echo.has(name), "{name}: {:?}", echo.header_all(name));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_with_a_control_character_is_401_and_never_reaches_the_upstream() {
    let issuer = TestIssuer::start().await;
    let (upstream, count) = start_counting_echo().await;
    let gw = start_gateway(&standard_config(&issuer.url(), upstream).yaml());
    gw.wait_ready().await;

    // The counter works: a clean token reaches it once.
    let clean = gw.get_bearer("/api/x", &issuer.token(json!({}))).await;
    assert_forwarded(&clean);
    assert_eq!(count.load(Ordering::SeqCst), 1);

    let bad = [
        json!({"email": "a@b.c\r\nX-Injected: 1"}),
        json!({"email": "a@b.c\nX-Injected: 1"}),
        json!({"email": "a\u{0}b"}),
        json!({"sub": "user\r\n"}),
        json!({"org_id": "acme\u{0}"}),
        json!({"https://example.com/roles": ["ok", "bad\r\nX-Injected: 1"]}),
        json!({"email": "tab\there"}),
    ];
    for extra in bad {
        let token = issuer.token(extra.clone());
        for target in ["/api/x", "/opt/x"] {
            let r = gw.get_bearer(target, &token).await;
            check_denied(&r, 401, "invalid_token")
                .unwrap_or_else(|why| panic!("{target} {extra}: {why}"));
            assert!(
                r.header("x-injected").is_none(),
                "{target} {extra}: {:?}",
                r.headers
            );
        }
    }
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "a request with an unsafe claim reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_header_is_unpadded_base64url_of_the_verified_claims() {
    let s = setup().await;
    // Characters that need `-`/`_` in base64url and a length that would need padding.
    let claims = s.issuer.claims(json!({
        "email": "a?b>~@example.com",
        "name": "José Ñandú",
        "https://example.com/roles": ["a", "b"],
        "org_id": {"n": 1},
        "nested": {"deep": [1, 2, {"x": null}]},
        "pad": "x",
    }));
    let token = s.issuer.rs.mint(&claims);
    let echo = s.gw.get_bearer("/api/x", &token).await.echo();
    let encoded = echo.header("x-auth-claims").expect("x-auth-claims");
    assert!(
        !encoded.contains(['=', '+', '/']),
        "not unpadded base64url: {encoded}"
    );
    assert_eq!(decoded_claims(&echo), claims);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_not_forwarded_by_default() {
    let s = setup().await;
    let token = s.issuer.token(json!({"scope": "read:orders"}));
    let echo = s.gw.get_bearer("/api/orders/1", &token).await.echo();
    assert!(
        !echo.has("authorization"),
        "{:?}",
        echo.header_all("authorization")
    );
    let echo = s.gw.get_bearer("/opt/x", &token).await.echo();
    assert!(
        !echo.has("authorization"),
        "{:?}",
        echo.header_all("authorization")
    );

    // An `auth: none` route reads no token and leaves the Authorization header alone.
    let echo =
        s.gw.get("/healthz", &[("Authorization", "Basic dXNlcjpwdw==")])
            .await
            .echo();
    assert_eq!(echo.header("authorization"), Some("Basic dXNlcjpwdw=="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_token_keeps_the_authorization_header() {
    let s = setup_with(|config, _| config.identity("forward_token", "true")).await;
    let token = s.issuer.token(json!({"scope": "read:orders"}));
    let echo = s.gw.get_bearer("/api/orders/1", &token).await.echo();
    let want = format!("Bearer {token}");
    assert_eq!(echo.header("authorization"), Some(want.as_str()));
    assert_eq!(echo.header("x-auth-subject"), Some("user-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_from_an_untrusted_peer_are_replaced() {
    let s = setup().await;
    let token = s.issuer.token(json!({}));
    let auth = format!("Bearer {token}");
    let spoofed = [
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Forwarded-For", "198.51.100.1"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.example"),
    ];
    for (target, with_token) in [("/api/x", true), ("/healthz", false)] {
        let mut headers = spoofed.to_vec();
        if with_token {
            headers.push(("Authorization", &auth));
        }
        let echo = s.gw.get(target, &headers).await.echo();
        assert_eq!(
            echo.header("x-forwarded-for"),
            Some("127.0.0.1"),
            "{target}"
        );
        assert_eq!(echo.header("x-forwarded-proto"), Some("http"), "{target}");
        assert_eq!(
            echo.header("x-forwarded-host"),
            Some("gateway.test"),
            "{target}"
        );
    }

    // Nothing sent by the client: the gateway still sets all three.
    let echo = s.gw.get("/healthz", &[]).await.echo();
    assert_eq!(echo.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(echo.header("x-forwarded-proto"), Some("http"));
    assert_eq!(echo.header("x-forwarded-host"), Some("gateway.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_from_a_trusted_proxy_are_kept_and_extended() {
    let s = setup_with(|config, _| config.set("trusted_proxies", "[127.0.0.1/32]")).await;
    let echo =
        s.gw.get(
            "/healthz",
            &[
                ("X-Forwarded-For", "203.0.113.9, 10.0.0.2"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "www.example.com"),
            ],
        )
        .await
        .echo();
    assert_eq!(
        echo.header("x-forwarded-for"),
        Some("203.0.113.9, 10.0.0.2, 127.0.0.1")
    );
    assert_eq!(echo.header("x-forwarded-proto"), Some("https"));
    assert_eq!(echo.header("x-forwarded-host"), Some("www.example.com"));

    // A trusted peer that sent none gets them set like anyone else.
    let echo = s.gw.get("/healthz", &[]).await.echo();
    assert_eq!(echo.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(echo.header("x-forwarded-proto"), Some("http"));
    assert_eq!(echo.header("x-forwarded-host"), Some("gateway.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_request_id_is_kept_upstream_and_on_the_response() {
    let s = setup().await;
    let r =
        s.gw.get("/healthz", &[("X-Request-Id", "req-abc-123")])
            .await;
    assert_eq!(r.header_all("x-request-id"), ["req-abc-123"]);
    assert_eq!(r.echo().header("x-request-id"), Some("req-abc-123"));

    let token = s.issuer.token(json!({}));
    let auth = format!("Bearer {token}");
    let r =
        s.gw.get(
            "/api/x",
            &[("X-Request-Id", "req-def-456"), ("Authorization", &auth)],
        )
        .await;
    assert_eq!(r.header_all("x-request-id"), ["req-def-456"]);
    assert_eq!(r.echo().header("x-request-id"), Some("req-def-456"));

    // The gateway's own replies carry it too.
    let r = s.gw.get("/api/x", &[("X-Request-Id", "req-ghi-789")]).await;
    assert_denied(&r, 401, "missing_token");
    assert_eq!(r.header_all("x-request-id"), ["req-ghi-789"]);
}

fn is_generated_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_is_generated_when_none_is_sent() {
    let s = setup().await;
    let first = s.gw.get("/healthz", &[]).await;
    let ids = first.header_all("x-request-id");
    assert_eq!(ids.len(), 1, "{:?}", first.headers);
    let id = ids[0].to_string();
    assert!(is_generated_id(&id), "not 32 hex characters: {id:?}");
    assert_eq!(first.echo().header("x-request-id"), Some(id.as_str()));

    let second = s.gw.get("/healthz", &[]).await;
    let other = second.header("x-request-id").expect("x-request-id");
    assert!(is_generated_id(other), "not 32 hex characters: {other:?}");
    assert_ne!(other, id, "two requests got the same id");

    let denied = s.gw.get("/nowhere", &[]).await;
    assert_denied(&denied, 404, "no_route");
    let denied_id = denied.header("x-request-id").expect("x-request-id on 404");
    assert!(is_generated_id(denied_id), "{denied_id:?}");
}

/// The standard issuer and one `/api/**` route in front of `echo`, with `identity` keys only
/// from `identity` (none at all when it is empty).
fn config_without_identity_headers(iss: &str, echo: std::net::SocketAddr) -> Config {
    Config::new()
        .upstream("echo", &format!("http://{echo}"))
        .issuer(
            IssuerBlock::new("main", iss)
                .discovery()
                .allow_http()
                .audiences(&[AUD]),
        )
        .route(Route::new("api", "/api/**"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_identity_headers_key_subject_issuer_and_scopes_are_forwarded() {
    let issuer = TestIssuer::start().await;
    let echo = start_echo().await;
    let gw = start_gateway(&config_without_identity_headers(&issuer.url(), echo).yaml());
    gw.wait_ready().await;
    let token = issuer.token(json!({"scope": "b a", "permissions": ["c"], "email": "e@x"}));
    let seen = gw.get_bearer("/api/x", &token).await.echo();
    assert_eq!(seen.header("x-auth-subject"), Some("user-1"));
    assert_eq!(seen.header("x-auth-issuer"), Some(issuer.url().as_str()));
    assert_eq!(seen.header("x-auth-scopes"), Some("a b c"));
    assert!(!seen.has("x-auth-email"), "only the default set is sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_identity_headers_map_forwards_no_identity() {
    let issuer = TestIssuer::start().await;
    let echo = start_echo().await;
    let config = config_without_identity_headers(&issuer.url(), echo).identity("headers", "{}");
    let gw = start_gateway(&config.yaml());
    gw.wait_ready().await;
    let token = issuer.token(json!({"scope": "read"}));
    let seen = gw.get_bearer("/api/x", &token).await.echo();
    for name in ["x-auth-subject", "x-auth-issuer", "x-auth-scopes"] {
        assert!(!seen.has(name), "{name}: {:?}", seen.header_all(name));
    }
}
