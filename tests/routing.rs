//! Routing as a client sees it (docs/behaviour.md: pipeline, paths, routes): the canonical path is the one matched
//! and the one forwarded, ambiguous paths are 400, routes match by segment, method and host in
//! file order, and the token comes from exactly one configured place.
mod common;
use common::*;

use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canonical_path_is_matched_and_forwarded() {
    let s = setup().await;
    let reader = s.issuer.token(json!({"scope": "read:orders"}));
    // A token the `api` route accepts but `orders-read` refuses: a 403 proves the canonical
    // path, not the raw one, chose the route.
    let other = s.issuer.token(json!({"scope": "other"}));
    for target in [
        "/api/orders/./7",
        "//api//orders/7",
        "/api/x/../orders/7",
        "/api/%6Frders/7",
        "/api/%6frders/7",
        "/api/orders/%2e%2e/orders/7",
        "/api/orders/%2E%2E/orders/./7",
    ] {
        let echo = s.gw.get_bearer(target, &reader).await.echo();
        assert_eq!(echo.target, "/api/orders/7", "{target}");
        let r = s.gw.get_bearer(target, &other).await;
        assert_denied(&r, 403, "insufficient_scope");
    }

    let echo =
        s.gw.get_bearer("/api/orders/./7?b=2&a=%2F&c=x%20y&c=..", &reader)
            .await
            .echo();
    assert_eq!(echo.target, "/api/orders/7?b=2&a=%2F&c=x%20y&c=..");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn climbing_out_of_a_looser_route_is_judged_as_the_resolved_path() {
    let s = setup().await;
    // `/opt/**` is `auth: optional`: judged on the raw path this would go through anonymously.
    for target in [
        "/opt/../api/orders/1",
        "/public/../api/orders/1",
        "/opt/%2e%2e/api/orders/1",
        "/healthz/../api/orders/1",
    ] {
        let r = s.gw.get(target, &[]).await;
        assert_denied(&r, 401, "missing_token");
    }
    let other = s.issuer.token(json!({"scope": "other"}));
    let r = s.gw.get_bearer("/opt/../api/orders/1", &other).await;
    assert_denied(&r, 403, "insufficient_scope");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_paths_are_400_before_any_other_decision() {
    let s = setup().await;
    let reader = s.issuer.token(json!({"scope": "read:orders"}));
    for target in [
        "/api/orders/a%2Fb",
        "/api/orders/a%2fb",
        "/api/orders/a\\b",
        "/api/orders/a%5Cb",
        "/api/orders/a%5cb",
        "/api/orders/a%00",
        "/api/orders/a%0D%0AX-Injected:%201",
        "/api/orders/1;jsessionid=x",
        "/api/orders;jsessionid=x/1",
        "/api/orders/1%3Bjsessionid=x",
        "/api/orders/1%23frag",
        "/..",
        "/../api/orders/1",
        "/api/../../api/orders/1",
        "/%2e%2e/x",
        "/api/orders/%zz",
        "/api/orders/%2",
        "/api/orders/%C0%AE",
        "/api/orders/%C0%AE%C0%AE/1",
    ] {
        // No token, a valid token, a public route prefix: the path alone decides.
        let r = s.gw.get(target, &[]).await;
        assert_denied(&r, 400, "bad_request");
        let r = s.gw.get_bearer(target, &reader).await;
        assert_denied(&r, 400, "bad_request");
    }
    let r = s.gw.get("/healthz;x", &[]).await;
    assert_denied(&r, 400, "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_star_stops_at_a_segment_boundary() {
    let s = setup().await;
    let other = s.issuer.token(json!({"scope": "other"}));
    let reader = s.issuer.token(json!({"scope": "read:orders"}));

    // `/api/ordersX` is not under `/api/orders/**`: it falls to `/api/**` (any valid token).
    let echo = s.gw.get_bearer("/api/ordersX", &other).await.echo();
    assert_eq!(echo.target, "/api/ordersX");
    let echo = s.gw.get_bearer("/api/ordersX/1", &other).await.echo();
    assert_eq!(echo.target, "/api/ordersX/1");
    let r = s.gw.get_bearer("/api/orders/1", &other).await;
    assert_denied(&r, 403, "insufficient_scope");

    // `/api/orders` itself is under `/api/orders/**`.
    let r = s.gw.get_bearer("/api/orders", &other).await;
    assert_denied(&r, 403, "insufficient_scope");
    let echo = s.gw.get_bearer("/api/orders", &reader).await.echo();
    assert_eq!(echo.target, "/api/orders");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_star_matches_exactly_one_segment() {
    let s = setup().await;
    let token = s.issuer.token(json!({}));
    let echo = s.gw.get_bearer("/users/42/profile", &token).await.echo();
    assert_eq!(echo.target, "/users/42/profile");
    assert_denied(
        &s.gw.get("/users/42/profile", &[]).await,
        401,
        "missing_token",
    );
    for target in [
        "/users/1/2/profile",
        "/users/profile",
        "/users//profile",
        "/users/42/profile/x",
    ] {
        let r = s.gw.get_bearer(target, &token).await;
        assert_denied(&r, 404, "no_route");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmatched_path_is_404_no_route() {
    let s = setup().await;
    let token = s.issuer.token(json!({}));
    for target in [
        "/nothing/here",
        "/",
        "/healthz/",
        "/Healthz",
        "/API/orders/1",
    ] {
        let r = s.gw.get(target, &[]).await;
        assert_denied(&r, 404, "no_route");
        let r = s.gw.get_bearer(target, &token).await;
        assert_denied(&r, 404, "no_route");
    }
    let r = s.gw.get("/nothing/here", &[]).await;
    assert_eq!(
        r.json(),
        json!({"error": "no_route", "error_description": "no route for this request"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_select_the_route() {
    let s = setup().await;
    let deleter = s.issuer.token(json!({"scope": "orders:delete"}));
    let admin = s.issuer.token(json!({"permissions": ["admin"]}));
    let reader = s.issuer.token(json!({"scope": "read:orders"}));
    let other = s.issuer.token(json!({"scope": "other"}));
    let bearer = |t: &str| format!("Bearer {t}");

    // DELETE: any_of [admin, orders:delete].
    for token in [&deleter, &admin] {
        let r =
            s.gw.request(
                "DELETE",
                "/api/orders/1",
                &[("Authorization", &bearer(token))],
                "",
            )
            .await;
        let echo = r.echo();
        assert_eq!(
            (echo.method.as_str(), echo.target.as_str()),
            ("DELETE", "/api/orders/1")
        );
    }
    let r =
        s.gw.request(
            "DELETE",
            "/api/orders/1",
            &[("Authorization", &bearer(&reader))],
            "",
        )
        .await;
    assert_denied(&r, 403, "insufficient_scope");

    // GET: read:orders.
    let r = s.gw.get_bearer("/api/orders/1", &deleter).await;
    assert_denied(&r, 403, "insufficient_scope");
    let echo = s.gw.get_bearer("/api/orders/1", &reader).await.echo();
    assert_eq!(echo.method, "GET");

    // POST matches neither orders route and falls to `/api/**`.
    let r =
        s.gw.request(
            "POST",
            "/api/orders/1",
            &[("Authorization", &bearer(&other))],
            "{\"n\":1}",
        )
        .await;
    let echo = r.echo();
    assert_eq!(echo.method, "POST");
    assert_eq!(echo.target, "/api/orders/1");
    assert_eq!(echo.body, "{\"n\":1}");
    let r = s.gw.request("POST", "/api/orders/1", &[], "x").await;
    assert_denied(&r, 401, "missing_token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_are_tried_in_file_order_and_the_first_match_wins() {
    let s = setup_with(|config, _| {
        config
            .route_first(Route::new("narrow-second", "/spec/open").auth("none"))
            .route_first(Route::new("broad-first", "/spec/**"))
            .route_first(Route::new("locked-second", "/order/**"))
            .route_first(Route::new("open-first", "/order/**").auth("none"))
    })
    .await;
    let echo = s.gw.get("/order/1", &[]).await.echo();
    assert_eq!(echo.target, "/order/1");
    // The more specific route comes second, so the broader one decides.
    assert_denied(&s.gw.get("/spec/open", &[]).await, 401, "missing_token");

    // In the standard policy `orders-read` precedes `api`, which would accept any token.
    let other = s.issuer.token(json!({"scope": "other"}));
    let r = s.gw.get_bearer("/api/orders/1", &other).await;
    assert_denied(&r, 403, "insufficient_scope");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_routes_match_only_their_host() {
    let s = setup().await;
    let token = s.issuer.token(json!({}));
    let auth = format!("Bearer {token}");

    for host in [
        "admin.example.com",
        "admin.example.com:8443",
        "ADMIN.EXAMPLE.COM",
        "Admin.Example.Com:80",
    ] {
        let echo =
            s.gw.get("/admin/x", &[("Host", host), ("Authorization", &auth)])
                .await
                .echo();
        assert_eq!(echo.target, "/admin/x", "{host}");
        assert_denied(
            &s.gw.get("/admin/x", &[("Host", host)]).await,
            401,
            "missing_token",
        );
    }
    for host in [
        "gateway.test",
        "other.example.com",
        "admin.example.com.evil.test",
        "xadmin.example.com",
    ] {
        let r =
            s.gw.get("/admin/x", &[("Host", host), ("Authorization", &auth)])
                .await;
        assert_denied(&r, 404, "no_route");
    }

    for host in [
        "a.tenants.example.com",
        "A.Tenants.Example.com:8080",
        "x.y.tenants.example.com",
    ] {
        let echo =
            s.gw.get("/tenant/1", &[("Host", host), ("Authorization", &auth)])
                .await
                .echo();
        assert_eq!(echo.target, "/tenant/1", "{host}");
    }
    for host in [
        "tenants.example.com",
        "eviltenants.example.com",
        "a.tenants.example.com.evil.test",
    ] {
        let r =
            s.gw.get("/tenant/1", &[("Host", host), ("Authorization", &auth)])
                .await;
        assert_denied(&r, 404, "no_route");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_form_target_must_agree_with_the_host_header() {
    let s = setup().await;
    let token = s.issuer.token(json!({}));
    let auth = format!("Bearer {token}");
    for host in ["gateway.test", "admin.example.com.evil.test"] {
        let r =
            s.gw.get(
                "http://admin.example.com/admin/x",
                &[("Host", host), ("Authorization", &auth)],
            )
            .await;
        assert_eq!(
            r.status, 400,
            "absolute-form admin.example.com, Host {host}"
        );
    }

    let echo =
        s.gw.get(
            "http://admin.example.com/admin/./x?q=1",
            &[("Host", "admin.example.com"), ("Authorization", &auth)],
        )
        .await
        .echo();
    assert_eq!(echo.target, "/admin/x?q=1");
    assert_eq!(echo.header("x-auth-subject"), Some("user-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_auth_forwards_anonymously_or_with_a_valid_identity() {
    let s = setup().await;
    let echo = s.gw.get("/opt/page", &[]).await.echo();
    assert_eq!(echo.target, "/opt/page");
    for name in [
        "x-auth-subject",
        "x-auth-email",
        "x-auth-scopes",
        "x-auth-claims",
        "x-user-org",
    ] {
        assert!(!echo.has(name), "anonymous request carried {name}");
    }

    let token = s
        .issuer
        .token(json!({"email": "a@example.com", "org_id": "acme"}));
    let echo = s.gw.get_bearer("/opt/page", &token).await.echo();
    assert_eq!(echo.header("x-auth-subject"), Some("user-1"));
    assert_eq!(echo.header("x-auth-email"), Some("a@example.com"));
    assert_eq!(echo.header("x-user-org"), Some("acme"));
    assert!(echo.has("x-auth-claims"));

    let expired = s
        .issuer
        .token(json!({"iat": now() - 7200, "exp": now() - 3600}));
    let wrong_audience = s.issuer.token(json!({"aud": "api://nobody"}));
    for (what, bad) in [
        ("expired", expired.as_str()),
        ("wrong audience", wrong_audience.as_str()),
        ("not a JWT", "not-a-jwt"),
        ("garbage segments", "abc.def.ghi"),
    ] {
        let r = s.gw.get_bearer("/opt/page", bad).await;
        check_denied(&r, 401, "invalid_token").unwrap_or_else(|why| panic!("{what}: {why}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive_and_malformed_credentials_are_refused() {
    let s = setup().await;
    let token = s.issuer.token(json!({"scope": "read:orders"}));

    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let auth = format!("{scheme} {token}");
        let echo =
            s.gw.get("/api/orders/1", &[("Authorization", &auth)])
                .await
                .echo();
        assert_eq!(echo.header("x-auth-subject"), Some("user-1"), "{scheme}");
    }

    let tab = format!("Bearer\t{token}");
    let two_tokens = format!("Bearer {token} {token}");
    for (what, value) in [
        ("no token", "Bearer"),
        ("tab", tab.as_str()),
        ("not token68", "Bearer abc,def"),
        ("two tokens in one header", two_tokens.as_str()),
    ] {
        let r = s.gw.get("/api/orders/1", &[("Authorization", value)]).await;
        check_denied(&r, 400, "bad_request").unwrap_or_else(|why| panic!("{what}: {why}"));
    }

    let auth = format!("Bearer {token}");
    let r =
        s.gw.get(
            "/api/orders/1",
            &[("Authorization", &auth), ("Authorization", &auth)],
        )
        .await;
    assert_denied(&r, 400, "bad_request");
    let r =
        s.gw.get(
            "/opt/x",
            &[("Authorization", &auth), ("Authorization", &auth)],
        )
        .await;
    assert_denied(&r, 400, "bad_request");

    // Another scheme presents no bearer token.
    let basic = [("Authorization", "Basic dXNlcjpwdw==")];
    let r = s.gw.get("/api/orders/1", &basic).await;
    assert_denied(&r, 401, "missing_token");
    let echo = s.gw.get("/opt/x", &basic).await.echo();
    assert!(!echo.has("x-auth-subject"));
}

async fn cookie_setup() -> Setup {
    setup_with(|config, _| {
        config.set(
            "token_sources",
            "{ cookie: session, cookie_origins: [\"https://app.example.com\"] }",
        )
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_token_works_and_is_removed_before_forwarding() {
    let s = cookie_setup().await;
    let token = s.issuer.token(json!({"scope": "read:orders"}));
    let cookie = format!("theme=dark; session={token}; lang=en");
    let echo =
        s.gw.get("/api/orders/1", &[("Cookie", &cookie)])
            .await
            .echo();
    assert_eq!(echo.header("x-auth-subject"), Some("user-1"));
    assert_eq!(echo.header("cookie"), Some("theme=dark; lang=en"));
    assert!(!echo.has("authorization"));

    // The token was the only cookie: no Cookie header is left.
    let only = format!("session={token}");
    let echo = s.gw.get("/api/orders/1", &[("Cookie", &only)]).await.echo();
    assert!(!echo.has("cookie"), "{:?}", echo.header_all("cookie"));

    // Header and cookie both, or the cookie twice: more than one token.
    let auth = format!("Bearer {token}");
    let r =
        s.gw.get(
            "/api/orders/1",
            &[("Authorization", &auth), ("Cookie", &cookie)],
        )
        .await;
    assert_denied(&r, 400, "bad_request");
    let twice = format!("session={token}; session={token}");
    let r = s.gw.get("/api/orders/1", &[("Cookie", &twice)]).await;
    assert_denied(&r, 400, "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_token_on_an_unsafe_method_needs_an_allowed_origin() {
    let s = cookie_setup().await;
    let token = s.issuer.token(json!({}));
    let cookie = format!("session={token}; theme=dark");

    let r =
        s.gw.request("POST", "/api/x", &[("Cookie", &cookie)], "{}")
            .await;
    assert_denied(&r, 401, "missing_token");
    for origin in [
        "https://evil.example",
        "http://app.example.com",
        "https://app.example.com.evil.test",
        "null",
    ] {
        let r =
            s.gw.request(
                "POST",
                "/api/x",
                &[("Cookie", &cookie), ("Origin", origin)],
                "{}",
            )
            .await;
        assert_denied(&r, 401, "missing_token");
    }

    let r =
        s.gw.request(
            "POST",
            "/api/x",
            &[("Cookie", &cookie), ("Origin", "https://app.example.com")],
            "{}",
        )
        .await;
    let echo = r.echo();
    assert_eq!(echo.method, "POST");
    assert_eq!(echo.header("x-auth-subject"), Some("user-1"));
    assert_eq!(echo.header("cookie"), Some("theme=dark"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_tokens_are_off_by_default() {
    let s = setup().await;
    let token = s.issuer.token(json!({"scope": "read:orders"}));
    let target = format!("/api/orders/1?access_token={token}");
    assert_denied(&s.gw.get(&target, &[]).await, 401, "missing_token");

    let target = format!("/healthz?x=1&access_token={token}&y=2");
    let echo = s.gw.get(&target, &[]).await.echo();
    assert_eq!(echo.target, target);
    let target = format!("/opt/x?access_token={token}");
    let echo = s.gw.get(&target, &[]).await.echo();
    assert_eq!(echo.target, target);
    assert!(!echo.has("x-auth-subject"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_token_works_when_enabled_and_is_removed_before_forwarding() {
    let s = setup_with(|config, _| config.set("token_sources", "{ query: access_token }")).await;
    let token = s.issuer.token(json!({"scope": "read:orders"}));

    let echo =
        s.gw.get(&format!("/api/orders/1?a=1&access_token={token}&b=2"), &[])
            .await
            .echo();
    assert_eq!(echo.target, "/api/orders/1?a=1&b=2");
    assert_eq!(echo.header("x-auth-subject"), Some("user-1"));

    let echo =
        s.gw.get(&format!("/api/orders/1?access_token={token}"), &[])
            .await
            .echo();
    assert_eq!(echo.target, "/api/orders/1");

    let auth = format!("Bearer {token}");
    let r =
        s.gw.get(
            &format!("/api/orders/1?access_token={token}"),
            &[("Authorization", &auth)],
        )
        .await;
    assert_denied(&r, 400, "bad_request");
}
