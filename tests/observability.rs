//! What an operator sees: every decision reason is counted under its own label after a request
//! that causes it, routes count their matches, shadow routes count what they would have denied,
//! the Grafana dashboard asks only for metrics the gateway exports, and no secret reaches a log
//! line even at debug level.
mod common;
use common::*;
use portcullis::demo::keys::SigningKey;
use serde_json::{json, Value};
use std::time::Duration;

/// The value of `portcullis_requests_total{decision, route}`, 0 when absent.
fn requests(metrics: &str, decision: &str, route: &str) -> u64 {
    let line = format!("portcullis_requests_total{{decision=\"{decision}\",route=\"{route}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |v| v.trim().parse().unwrap_or(0))
}

async fn metrics_text(gw: &Gateway) -> String {
    String::from_utf8(gw.admin_get("/metrics").await.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decision_reason_is_counted_under_its_own_label() {
    let down = dead_port();
    let slow = start_slow(Duration::from_secs(3), "late").await;
    let dead = dead_port();
    let down_iss = format!("http://{down}/");
    let issuer = TestIssuer::start().await;
    let echo = start_echo().await;
    let config = standard_config(&issuer.url(), echo)
        .upstream_with("slow", &format!("http://{slow}"), "read_timeout: 300ms")
        .upstream("dead", &format!("http://{dead}"))
        .issuer(
            IssuerBlock::new("down", &down_iss)
                .jwks_uri(&format!("http://{down}/jwks"))
                .allow_http()
                .audiences(&[AUD]),
        )
        .route_first(Route::new("down", "/down/**").set("issuers", "[down]"))
        .route_first(
            Route::new("slow", "/slow/**")
                .auth("none")
                .set("upstream", "slow"),
        )
        .route_first(
            Route::new("dead", "/dead/**")
                .auth("none")
                .set("upstream", "dead"),
        )
        .route_first(
            Route::new("watched", "/watched/**")
                .scopes("[admin]")
                .set("mode", "shadow"),
        )
        .limit("max_in_flight", "1");
    let s = Setup {
        gw: start_gateway(&config.yaml()),
        issuer,
        echo,
    };
    // The `down` issuer never gets keys, so /readyz stays 503: wait for the main issuer's.
    let probe = s.issuer.token(json!({"scope": "read:orders"}));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut probes = 1;
    while s.gw.get_bearer("/api/orders/0", &probe).await.status != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "main issuer never ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        probes += 1;
    }
    let gw = &s.gw;
    let token = |extra: Value| s.issuer.token(extra);
    let get = |target: &'static str, t: String| async move {
        gw.get(target, &[("authorization", &format!("Bearer {t}"))])
            .await
    };
    let stranger = SigningKey::generate("rs", jsonwebtoken::Algorithm::RS256);

    // (reason, route, status) after one request each.
    let mut want: Vec<(&str, &str, u16)> = Vec::new();
    let mut send = |reason, route, r: Response| {
        want.push((reason, route, r.status));
    };
    send(
        "allowed",
        "orders-read",
        get("/api/orders/1", token(json!({"scope": "read:orders"}))).await,
    );
    send("public", "health", gw.get("/healthz", &[]).await);
    send("anonymous", "optional", gw.get("/opt/x", &[]).await);
    send(
        "no_token",
        "orders-read",
        gw.get("/api/orders/1", &[]).await,
    );
    send(
        "expired",
        "api",
        get(
            "/api/x",
            token(json!({"exp": now() - 3600, "iat": now() - 7200})),
        )
        .await,
    );
    send(
        "not_yet_valid",
        "api",
        get("/api/x", token(json!({"nbf": now() + 3600}))).await,
    );
    send(
        "bad_signature",
        "api",
        get("/api/x", stranger.mint(&s.issuer.claims(json!({})))).await,
    );
    send(
        "unknown_kid",
        "api",
        get(
            "/api/x",
            s.issuer.rs.mint_with_header(
                &json!({"alg": "RS256", "kid": "nope"}),
                &s.issuer.claims(json!({})),
            ),
        )
        .await,
    );
    send(
        "wrong_issuer",
        "api",
        get(
            "/api/x",
            token(json!({"iss": "https://elsewhere.example/"})),
        )
        .await,
    );
    send(
        "wrong_audience",
        "api",
        get("/api/x", token(json!({"aud": "api://nope"}))).await,
    );
    send(
        "algorithm_not_allowed",
        "api",
        get(
            "/api/x",
            s.issuer.rs.mint_with_header(
                &json!({"alg": "RS512", "kid": "rs"}),
                &s.issuer.claims(json!({})),
            ),
        )
        .await,
    );
    send(
        "malformed_token",
        "api",
        get("/api/x", "a.b.c".into()).await,
    );
    send(
        "insufficient_scope",
        "orders-read",
        get("/api/orders/1", token(json!({}))).await,
    );
    send(
        "claim_mismatch",
        "org",
        get(
            "/api/org/1",
            token(json!({"org_id": "initech", "email_verified": true})),
        )
        .await,
    );
    send("no_route", "-", gw.get("/nowhere", &[]).await);
    send("bad_request", "-", gw.get("/api/a%2Fb", &[]).await);
    send(
        "keys_unavailable",
        "down",
        get(
            "/down/x",
            s.issuer.rs.mint(&claims_for(&down_iss, json!({}))),
        )
        .await,
    );
    send("upstream_error", "dead", gw.get("/dead/x", &[]).await);
    send("upstream_timeout", "slow", gw.get("/slow/x", &[]).await);
    send(
        "shadow_denied",
        "watched",
        get("/watched/x", token(json!({}))).await,
    );

    // Overloaded: a second request while one is in flight, with `max_in_flight: 1`.
    let addr = gw.addr;
    let hold = tokio::spawn(async move { request_at(addr, "GET", "/slow/x", &[], "").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    send("overloaded", "-", gw.get("/healthz", &[]).await);
    let _ = hold.await;

    for (reason, _, status) in &want {
        let expected = match *reason {
            "allowed" | "public" | "anonymous" | "shadow_denied" => 200,
            "no_token"
            | "expired"
            | "not_yet_valid"
            | "bad_signature"
            | "unknown_kid"
            | "wrong_issuer"
            | "wrong_audience"
            | "algorithm_not_allowed"
            | "malformed_token" => 401,
            "insufficient_scope" | "claim_mismatch" => 403,
            "no_route" => 404,
            "bad_request" => 400,
            "keys_unavailable" | "overloaded" => 503,
            "upstream_error" => 502,
            "upstream_timeout" => 504,
            other => panic!("no status expected for {other}"),
        };
        assert_eq!(*status, expected, "{reason}");
    }
    let metrics = metrics_text(gw).await;
    for (reason, route, status) in &want {
        assert!(
            requests(&metrics, reason, route) >= 1,
            "no portcullis_requests_total{{decision={reason:?},route={route:?}}} after a {status} \
             request:\n{}",
            metrics
                .lines()
                .filter(|l| l.starts_with("portcullis_requests_total"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // Routes count their matches; shadow routes count the denials they did not make.
    // orders-read: the readiness probes, allowed, no_token, insufficient_scope.
    let matched = format!(
        "portcullis_route_requests_total{{route=\"orders-read\"}} {}",
        probes + 3
    );
    assert!(metrics.contains(&matched), "{matched} in\n{metrics}");
    assert!(metrics.contains("portcullis_route_last_match_timestamp_seconds{route=\"health\"}"));
    assert!(metrics.contains(
        "portcullis_shadow_denials_total{reason=\"insufficient_scope\",route=\"watched\"} 1"
    ));
}

#[test]
fn the_dashboard_queries_only_metrics_the_gateway_exports() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/helm/portcullis/dashboards/portcullis.json"
    );
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard file")).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(
        exprs.len() >= 8,
        "the dashboard has {} queries",
        exprs.len()
    );
    let exported = portcullis::metrics::Metrics::new();
    let exported = exported.names();
    let mut used = 0;
    for expr in &exprs {
        for name in metric_names(expr) {
            used += 1;
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| exported.iter().any(|e| e == b))
                .unwrap_or(&name);
            assert!(
                exported.iter().any(|e| e == base),
                "the dashboard queries {name}, which the gateway does not export ({expr})"
            );
        }
    }
    assert!(used >= exprs.len(), "every query names a metric");
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_exprs(i, out)),
        _ => {}
    }
}

/// Every `portcullis_…` identifier in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("portcullis_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_line_even_at_debug_level() {
    let issuer = TestIssuer::start().await;
    let echo = start_echo().await;
    let config = standard_config(&issuer.url(), echo)
        .set("token_sources", "{ cookie: session, query: access_token }");
    let gw = start_gateway_env(&config.yaml(), &[("RUST_LOG", "debug")]);
    gw.wait_ready().await;
    let header_token = issuer.token(json!({"scope": "read:orders"}));
    let cookie_token = issuer.token(json!({"scope": "read:orders", "n": 1}));
    let query_token = issuer.token(json!({"scope": "read:orders", "n": 2}));
    let bad_token = format!("{}x", issuer.token(json!({"n": 3})));
    let secret_query = "next=s3cr3t-query-value";
    let cookie = format!("other=s3cr3t-cookie-value; session={cookie_token}");
    let bearer = format!("Bearer {header_token}");
    let bad_bearer = format!("Bearer {bad_token}");
    // (target, headers, status)
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, u16);
    let cases: Vec<Case> = vec![
        (
            format!("/api/orders/1?{secret_query}"),
            vec![("authorization", bearer.as_str())],
            200,
        ),
        (
            "/api/orders/2".into(),
            vec![("cookie", cookie.as_str())],
            200,
        ),
        (
            format!("/api/orders/3?access_token={query_token}&{secret_query}"),
            vec![],
            200,
        ),
        (
            format!("/api/orders/4?{secret_query}"),
            vec![("authorization", bad_bearer.as_str())],
            401,
        ),
        (
            format!("/nowhere?{secret_query}"),
            vec![("authorization", bearer.as_str())],
            404,
        ),
    ];
    for (target, headers, status) in &cases {
        assert_eq!(gw.get(target, headers).await.status, *status, "{target}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = gw.log_text();
    assert!(
        logs.lines().filter(|l| l.contains("\"DEBUG\"")).count() > 0,
        "RUST_LOG=debug produced no debug line: the test would prove nothing"
    );
    for secret in [
        header_token.as_str(),
        cookie_token.as_str(),
        query_token.as_str(),
        bad_token.as_str(),
        "s3cr3t-query-value",
        "s3cr3t-cookie-value",
    ] {
        // Any part of the token that identifies it: its signature segment.
        let needle = secret.rsplit('.').next().unwrap_or(secret);
        if let Some(line) = logs.lines().find(|l| l.contains(needle)) {
            panic!("a secret reached the log at debug level: {line}");
        }
    }
}
