//! Every row of the table of responses in docs/behaviour.md, with the exact status, JSON body, WWW-Authenticate,
//! Cache-Control and (for gRPC) grpc-status the gateway writes itself.
mod common;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_path_is_400_bad_request() {
    let s = setup().await;
    let r = s.gw.get("/api/a%2Fb", &[]).await;
    assert_denied(&r, 400, "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_tokens_and_malformed_authorization_are_400() {
    let s = setup().await;
    let t = s.issuer.token(json!({}));
    let auth = format!("Bearer {t}");
    let two =
        s.gw.get(
            "/api/x",
            &[("Authorization", &auth), ("Authorization", &auth)],
        )
        .await;
    assert_denied(&two, 400, "bad_request");
    let empty = s.gw.get("/api/x", &[("Authorization", "Bearer")]).await;
    assert_denied(&empty, 400, "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_is_401_with_a_bare_realm_challenge() {
    let s = setup().await;
    let r = s.gw.get("/api/x", &[]).await;
    assert_denied(&r, 401, "missing_token");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"portcullis\"")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_token_is_401_with_error_in_the_challenge_and_no_echo_of_input() {
    let s = setup().await;
    let token = s.issuer.token(json!({"exp": now() - 3600}));
    let r = s.gw.get_bearer("/api/x", &token).await;
    assert_denied(&r, 401, "invalid_token");
    let challenge = r.header("www-authenticate").unwrap();
    assert!(
        challenge.starts_with("Bearer realm=\"portcullis\", error=\"invalid_token\""),
        "{challenge}"
    );
    assert_eq!(r.json()["error_description"], "token expired");
    assert!(!String::from_utf8_lossy(&r.body).contains(&token[..20]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_scope_is_403_naming_the_required_scopes() {
    let s = setup().await;
    let token = s.issuer.token(json!({"scope": "profile"}));
    let r = s.gw.get_bearer("/api/reports/q3", &token).await;
    assert_denied(&r, 403, "insufficient_scope");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"portcullis\", error=\"insufficient_scope\", scope=\"read:reports export\"")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_request_is_404_no_route() {
    let s = setup().await;
    let r = s.gw.get("/nowhere", &[]).await;
    assert_denied(&r, 404, "no_route");
}

fn upstream_config(
    iss: &str,
    echo: std::net::SocketAddr,
    dead: std::net::SocketAddr,
    silent: std::net::SocketAddr,
) -> String {
    standard_config(iss, echo)
        .upstream_with("dead", &format!("http://{dead}"), "connect_timeout: 1s")
        .upstream_with("silent", &format!("http://{silent}"), "read_timeout: 1s")
        .route_first(
            Route::new("silent", "/silent/**")
                .auth("none")
                .set("upstream", "silent"),
        )
        .route_first(
            Route::new("dead", "/dead/**")
                .auth("none")
                .set("upstream", "dead"),
        )
        .yaml()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upstream_is_502_and_silent_upstream_is_504() {
    let issuer = TestIssuer::start().await;
    let echo = start_echo().await;
    let silent = start_silent().await;
    let gw = start_gateway(&upstream_config(&issuer.url(), echo, dead_port(), silent));
    gw.wait_ready().await;

    let refused = gw.get("/dead/x", &[]).await;
    assert_denied(&refused, 502, "upstream_error");

    let started = std::time::Instant::now();
    let timed_out = gw.get("/silent/x", &[]).await;
    assert_denied(&timed_out, 504, "upstream_timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_that_never_had_keys_is_503_with_retry_after() {
    let issuer = TestIssuer::start().await;
    let echo = start_echo().await;
    let dead = dead_port();
    let yaml = standard_config(&issuer.url(), echo)
        .edit_issuer("main", |main| {
            main.jwks_uri(&format!("http://{dead}/jwks.json"))
        })
        .yaml();
    let gw = start_gateway(&yaml);
    let r = gw.get_bearer("/api/x", &issuer.token(json!({}))).await;
    assert_denied(&r, 503, "keys_unavailable");
    assert!(r
        .header("retry-after")
        .is_some_and(|v| v.parse::<u32>().is_ok()));
    assert_eq!(gw.admin_get("/readyz").await.status, 503);
    // auth: none routes are served while no issuer has keys.
    assert_eq!(gw.get("/healthz", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_requests_get_grpc_status_codes() {
    let s = setup().await;
    let grpc = [("content-type", "application/grpc")];
    let cases = [
        (s.gw.request("POST", "/api/x", &grpc, "").await, "16"),
        (s.gw.request("POST", "/nowhere", &grpc, "").await, "12"),
    ];
    for (r, code) in cases {
        assert_eq!(r.status, 200);
        assert_eq!(r.header("grpc-status"), Some(code));
        assert!(r.header("grpc-message").is_some());
    }
    let token = s.issuer.token(json!({"scope": "none"}));
    let auth = format!("Bearer {token}");
    let r =
        s.gw.request(
            "POST",
            "/api/reports/1",
            &[
                ("content-type", "application/grpc+proto"),
                ("authorization", &auth),
            ],
            "",
        )
        .await;
    assert_eq!(r.header("grpc-status"), Some("7"));
}
