//! CORS preflights (docs/behaviour.md): with `cors_preflight: forward`, a browser's preflight
//! reaches the route's upstream without a token and counts as `cors_preflight`; without
//! `Access-Control-Request-Method` the same `OPTIONS` is an ordinary request; the default
//! judges preflights like any request.
mod common;
use common::*;

/// What a browser sends before a cross-origin `GET` with an `Authorization` header.
const PREFLIGHT: &[(&str, &str)] = &[
    ("Origin", "https://app.example"),
    ("Access-Control-Request-Method", "GET"),
    ("Access-Control-Request-Headers", "authorization"),
];

async fn forwarding() -> Setup {
    setup_with(|c, _| {
        c.set("cors_preflight", "forward")
            .route_first(Route::new("static-get", "/static/**").methods(&["GET"]))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_preflight_reaches_the_upstream_without_a_token() {
    let s = forwarding().await;
    let mut headers = PREFLIGHT.to_vec();
    // Not what browsers send, but anything token-like or identity-like is stripped all the same.
    headers.push(("Authorization", "Bearer not-a-token"));
    headers.push(("X-Auth-Subject", "admin"));
    let r = s.gw.request("OPTIONS", "/api/orders/7", &headers, "").await;
    let echo = r.echo();
    assert_eq!(echo.method, "OPTIONS");
    assert_eq!(echo.target, "/api/orders/7");
    assert_eq!(echo.header("origin"), Some("https://app.example"));
    assert_eq!(echo.header("access-control-request-method"), Some("GET"));
    assert!(!echo.has("authorization"), "{:?}", echo.headers);
    assert!(!echo.has("x-auth-subject"), "{:?}", echo.headers);
    // Matched as the GET it asks about: the GET/HEAD-only route, not the catch-all `api`.
    s.gw.wait_metric(
        "portcullis_requests_total{decision=\"cors_preflight\",route=\"orders-read\"}",
        1.0,
    )
    .await;
    let log = s.gw.wait_log("\"reason\":\"cors_preflight\"").await;
    assert!(!log.contains("not-a-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_options_without_a_requested_method_is_an_ordinary_request() {
    let s = forwarding().await;
    let r =
        s.gw.request(
            "OPTIONS",
            "/api/orders/7",
            &[("Origin", "https://app.example")],
            "",
        )
        .await;
    assert_denied(&r, 401, "missing_token");
    // And with a token it is judged (and forwarded) as the OPTIONS it is, by the `api` route.
    let token = s.issuer.token(serde_json::json!({}));
    let auth = format!("Bearer {token}");
    let r =
        s.gw.request("OPTIONS", "/api/orders/7", &[("Authorization", &auth)], "")
            .await;
    assert_eq!(r.echo().header("x-auth-subject"), Some("user-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_for_a_method_no_route_takes_is_404() {
    let s = forwarding().await;
    let ask = |m| {
        vec![
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", m),
        ]
    };
    let r =
        s.gw.request("OPTIONS", "/static/app.js", &ask("DELETE"), "")
            .await;
    assert_denied(&r, 404, "no_route");
    let r =
        s.gw.request("OPTIONS", "/static/app.js", &ask("GET"), "")
            .await;
    assert_eq!(r.echo().method, "OPTIONS");
    // A requested method that is no method token is refused, like such a request method.
    let r =
        s.gw.request("OPTIONS", "/static/app.js", &ask("get"), "")
            .await;
    assert_denied(&r, 400, "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_preflight_is_judged_like_any_request() {
    let s = setup().await;
    let r =
        s.gw.request("OPTIONS", "/api/orders/7", PREFLIGHT, "")
            .await;
    assert_denied(&r, 401, "missing_token");
}
