//! OpenTelemetry tracing against a real OTLP/gRPC collector (a tonic server over the
//! `opentelemetry-proto` types, on port 0): the spans the gateway exports, the `traceparent`
//! the upstream receives, the access log's trace ids, secrets kept out of every exported byte,
//! a collector that never answers, a reload that changes `sample_ratio`, and W3C trace context
//! forwarded untouched with tracing off.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use portcullis::demo::keys::SigningKey;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::server::TcpIncoming;

/// An OTLP/gRPC trace collector: keeps every export request it receives.
#[derive(Clone, Default)]
struct Collector {
    received: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.received.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    async fn start() -> (Collector, SocketAddr) {
        let collector = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(collector.clone()))
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        (collector, addr)
    }

    /// Every span received so far, with its resource's `service.name`.
    fn spans(&self) -> Vec<(String, Span)> {
        let mut out = Vec::new();
        for request in self.received.lock().unwrap().iter() {
            for rs in &request.resource_spans {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                    .and_then(|a| a.value.as_ref())
                    .and_then(|v| match &v.value {
                        Some(Any::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        out.push((service.clone(), span.clone()));
                    }
                }
            }
        }
        out
    }

    /// Every byte received, as the export requests encode.
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for request in self.received.lock().unwrap().iter() {
            out.extend(prost::Message::encode_to_vec(request));
        }
        out
    }

    /// Wait (at most 20 s) for a span that `want` accepts.
    async fn wait_span(&self, what: &str, want: impl Fn(&Span) -> bool) -> Span {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some((_, span)) = self.spans().into_iter().find(|(_, s)| want(s)) {
                return span;
            }
            assert!(
                Instant::now() < deadline,
                "no span {what} reached the collector; got {:#?}",
                self.spans()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server span of trace `trace_id` (hex).
    async fn server_span(&self, trace_id: &str) -> Span {
        let id = trace_id.to_string();
        self.wait_span(&format!("of trace {trace_id}"), move |s| {
            hex(&s.trace_id) == id && s.kind == 2
        })
        .await
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An attribute of `span`, as text (strings as they are, numbers in decimal).
fn attr(span: &Span, key: &str) -> Option<String> {
    let a = span.attributes.iter().find(|a| a.key == key)?;
    match a.value.as_ref()?.value.as_ref()? {
        Any::StringValue(s) => Some(s.clone()),
        Any::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// The standard policy exporting to `collector` at `ratio`, and any other edit.
async fn traced(collector: SocketAddr, ratio: &str, edit: impl FnOnce(Config) -> Config) -> Setup {
    let tracing = format!("{{ otlp_endpoint: \"http://{collector}\", sample_ratio: {ratio}, service_name: gateway-test }}");
    setup_with(move |c, _| edit(c.set("tracing", &tracing))).await
}

/// A sampled `traceparent` of a fresh trace, and its trace id and parent id.
fn parent(n: u8) -> (String, String, String) {
    let trace = format!("4bf92f3577b34da6a3ce929d0e0e47{n:02x}");
    let span = format!("00f067aa0ba902{n:02x}");
    (format!("00-{trace}-{span}-01"), trace, span)
}

/// The access-log line of the request whose log line holds `needle`, parsed.
async fn log_line(gw: &Gateway, needle: &str) -> serde_json::Value {
    let log = gw.wait_log(needle).await;
    let line = log
        .lines()
        .find(|l| l.contains("\"target\":\"access\"") && l.contains(needle))
        .unwrap_or_else(|| panic!("no access line with {needle}:\n{log}"));
    serde_json::from_str(line).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_request_is_a_child_span_named_in_the_upstream_traceparent() {
    let (collector, at) = Collector::start().await;
    let Setup { issuer, gw, .. } = traced(at, "1.0", |c| c).await;
    let token = issuer.token(json!({"scope": "read:orders"}));
    let (traceparent, trace, parent_id) = parent(1);
    let auth = format!("Bearer {token}");
    let resp = gw
        .get(
            "/api/orders/7?page=2",
            &[
                ("Authorization", &auth),
                ("traceparent", &traceparent),
                ("tracestate", "vendor=opaque"),
                ("X-Request-Id", "allowed-1"),
            ],
        )
        .await;
    assert_eq!(resp.status, 200);
    let span = collector.server_span(&trace).await;
    assert_eq!(hex(&span.parent_span_id), parent_id);
    // The upstream's parent is the gateway's span; the client's tracestate goes on with it.
    let echo = resp.echo();
    assert_eq!(
        echo.header("traceparent"),
        Some(format!("00-{trace}-{}-01", hex(&span.span_id)).as_str())
    );
    assert_eq!(echo.header("tracestate"), Some("vendor=opaque"));
    assert_eq!(span.name, "GET orders-read");
    for (key, want) in [
        ("http.request.method", "GET"),
        ("url.path", "/api/orders/7"),
        ("http.route", "orders-read"),
        ("http.response.status_code", "200"),
        ("server.address", "gateway.test"),
        ("network.protocol.version", "1.1"),
        ("portcullis.listener", "proxy"),
        ("portcullis.decision", "allowed"),
        ("portcullis.reason", "allowed"),
        ("portcullis.issuer", "main"),
        ("portcullis.token_cache", "miss"),
    ] {
        assert_eq!(attr(&span, key).as_deref(), Some(want), "{key}");
    }
    let services: Vec<String> = collector.spans().into_iter().map(|(s, _)| s).collect();
    assert!(services.iter().all(|s| s == "gateway-test"), "{services:?}");
    // The log line names the same trace and span.
    let line = log_line(&gw, "allowed-1").await;
    assert_eq!(line["trace_id"], trace.as_str());
    assert_eq!(line["span_id"], hex(&span.span_id).as_str());

    // The same token twice more (the cache admits a token on its second verification): the
    // third use comes from the cache. Without a traceparent: a root of its own.
    gw.get("/api/orders/8", &[("Authorization", &auth)]).await;
    let resp = gw
        .get(
            "/api/orders/8",
            &[("Authorization", &auth), ("X-Request-Id", "allowed-2")],
        )
        .await;
    assert_eq!(resp.status, 200);
    let line = log_line(&gw, "allowed-2").await;
    let trace = line["trace_id"].as_str().expect("a trace id").to_string();
    let span = collector.server_span(&trace).await;
    assert!(span.parent_span_id.is_empty());
    assert_eq!(
        attr(&span, "portcullis.token_cache").as_deref(),
        Some("hit")
    );
    assert_eq!(
        resp.echo().header("traceparent"),
        Some(format!("00-{trace}-{}-01", hex(&span.span_id)).as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_denial_is_a_span_with_its_status_and_reason() {
    let (collector, at) = Collector::start().await;
    let Setup { issuer, gw, .. } = traced(at, "1.0", |c| c).await;
    let expired = issuer.token(json!({"exp": now() - 3600, "iat": now() - 7200}));
    let no_scope = issuer.token(json!({"scope": "other"}));
    // (target, headers, status, route)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, u16, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("/api/orders/1", vec![], 401, Some("orders-read")),
        (
            "/api/orders/1",
            vec![("Authorization", format!("Bearer {expired}"))],
            401,
            Some("orders-read"),
        ),
        (
            "/api/orders/1",
            vec![("Authorization", "Bearer not.a.jwt".to_string())],
            401,
            Some("orders-read"),
        ),
        (
            "/api/orders/1",
            vec![("Authorization", format!("Bearer {no_scope}"))],
            403,
            Some("orders-read"),
        ),
        ("/nowhere", vec![], 404, None),
        (
            "/api/orders/1",
            vec![
                ("Authorization", format!("Bearer {no_scope}")),
                ("Authorization", format!("Bearer {expired}")),
            ],
            400,
            None,
        ),
    ];
    for (n, (target, headers, status, route)) in cases.into_iter().enumerate() {
        let (traceparent, trace, parent_id) = parent(0x10 + n as u8);
        let mut all: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.push(("traceparent", &traceparent));
        let resp = gw.get(target, &all).await;
        assert_eq!(resp.status, status, "{target} {headers:?}");
        let span = collector.server_span(&trace).await;
        assert_eq!(hex(&span.parent_span_id), parent_id);
        let code = status.to_string();
        assert_eq!(attr(&span, "http.response.status_code"), Some(code));
        assert_eq!(
            attr(&span, "portcullis.decision").as_deref(),
            Some(resp.error().as_str()),
            "{target} {headers:?}"
        );
        assert!(attr(&span, "portcullis.reason").is_some_and(|r| !r.is_empty()));
        if let Some(route) = route {
            assert_eq!(attr(&span, "http.route").as_deref(), Some(route));
        }
        // A refusal is the client's error, not the server's.
        assert_ne!(span.status.as_ref().map_or(0, |s| s.code), 2, "{span:?}");
        // Nothing went upstream, so nothing upstream was told.
        assert_eq!(resp.header("traceparent"), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_carrier_reaches_the_collector() {
    let (collector, at) = Collector::start().await;
    let Setup { issuer, gw, .. } = traced(at, "1.0", |c| {
        c.set(
            "token_sources",
            "{ cookie: session_token, query: access_token }",
        )
    })
    .await;
    let claim = "claim-value-4e1f9a";
    let token = |n: u32| {
        issuer.token(json!({
            "scope": "read:orders",
            "email": format!("{claim}-{n}@example.com"),
            "org_id": format!("org-secret-{n}"),
            "jti": format!("jti-{n}"),
        }))
    };
    let (bearer, cookie, query) = (token(1), token(2), token(3));
    let bad = "eyJhbGciOiJSUzI1NiJ9.eyJzZWNyZXQiOiJiYWQtdG9rZW4tN2MyIn0.c2lnbmF0dXJlLXNlY3JldA";
    let (tp1, t1, _) = parent(0x31);
    let (tp2, t2, _) = parent(0x32);
    let (tp3, t3, _) = parent(0x33);
    let (tp4, t4, _) = parent(0x34);
    let auth = format!("Bearer {bearer}");
    let resp = gw
        .get(
            "/api/orders/1?q=query-secret-81d",
            &[
                ("Authorization", &auth),
                ("Cookie", "other=cookie-secret-5b2; theme=dark"),
                ("DPoP", "dpop-proof-secret-9c0"),
                ("traceparent", &tp1),
            ],
        )
        .await;
    assert!(resp.status < 500, "{}", resp.status);
    let cookie_header = format!("session_token={cookie}; other=cookie-secret-5b2");
    let resp = gw
        .get(
            "/api/orders/2",
            &[("Cookie", &cookie_header), ("traceparent", &tp2)],
        )
        .await;
    assert_eq!(resp.status, 200);
    let target = format!("/api/orders/3?access_token={query}&x=query-secret-81d");
    let resp = gw.get(&target, &[("traceparent", &tp3)]).await;
    assert_eq!(resp.status, 200);
    let bad_auth = format!("Bearer {bad}");
    let resp = gw
        .get(
            "/api/orders/4?q=query-secret-81d",
            &[("Authorization", &bad_auth), ("traceparent", &tp4)],
        )
        .await;
    assert_eq!(resp.status, 401);
    for trace in [&t1, &t2, &t3, &t4] {
        collector.server_span(trace).await;
    }
    let bytes = collector.bytes();
    let text = String::from_utf8_lossy(&bytes);
    let mut secrets: Vec<String> = vec![
        claim.into(),
        "org-secret".into(),
        "jti-".into(),
        "query-secret-81d".into(),
        "access_token".into(),
        "cookie-secret-5b2".into(),
        "session_token".into(),
        "dpop-proof-secret-9c0".into(),
        "Bearer".into(),
        "user-1".into(),
    ];
    for t in [&bearer, &cookie, &query, &bad.to_string()] {
        secrets.extend(t.split('.').map(str::to_string));
    }
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{secret:?} reached the collector"
        );
    }
    // The spans are there, with the path alone.
    assert!(text.contains("/api/orders/3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_parent_is_followed_and_still_propagated() {
    let (collector, at) = Collector::start().await;
    // Ratio 0: a root is never sampled; a sampled parent still is.
    let Setup { gw, .. } = traced(at, "0.0", |c| c).await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let resp = gw
        .get(
            "/healthz",
            &[("traceparent", &format!("00-{trace}-b7ad6b7169203331-00"))],
        )
        .await;
    assert_eq!(resp.status, 200);
    let sent = resp.echo().header("traceparent").unwrap().to_string();
    assert!(sent.starts_with(&format!("00-{trace}-")), "{sent}");
    assert!(sent.ends_with("-00"), "{sent}");
    assert!(!sent.contains("b7ad6b7169203331"), "{sent}");
    let resp = gw.get("/healthz", &[("X-Request-Id", "root-0")]).await;
    let root = resp.echo().header("traceparent").unwrap().to_string();
    assert!(root.ends_with("-00"), "{root}");
    let (traceparent, sampled, _) = parent(0x41);
    gw.get("/healthz", &[("traceparent", &traceparent)]).await;
    // Spans leave in order: once the sampled one is in, the others would be too.
    collector.server_span(&sampled).await;
    let traces: Vec<String> = collector
        .spans()
        .iter()
        .map(|(_, s)| hex(&s.trace_id))
        .collect();
    assert_eq!(
        traces,
        vec![sampled],
        "only the sampled request is exported"
    );
    // The log still names the trace of an unsampled request.
    let line = log_line(&gw, "root-0").await;
    assert_eq!(line["trace_id"].as_str(), root.get(3..35));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kid_miss_refetch_is_a_span_linked_to_its_request() {
    let (collector, at) = Collector::start().await;
    let Setup { issuer, gw, .. } = traced(at, "1.0", |c| c).await;
    let stranger = SigningKey::generate("rotated-in", jsonwebtoken::Algorithm::RS256);
    let token = stranger.mint(&issuer.claims(json!({"scope": "read:orders"})));
    let (traceparent, trace, _) = parent(0x51);
    let auth = format!("Bearer {token}");
    let resp = gw
        .get(
            "/api/orders/1",
            &[("Authorization", &auth), ("traceparent", &traceparent)],
        )
        .await;
    assert_eq!(resp.status, 401);
    let request = collector.server_span(&trace).await;
    let fetch = collector
        .wait_span("of a kid-miss refetch", |s| {
            s.name == "jwks fetch"
                && s.attributes
                    .iter()
                    .any(|a| a.key == "portcullis.jwks.trigger")
                && attr(s, "portcullis.jwks.trigger").as_deref() == Some("kid_miss")
        })
        .await;
    assert_eq!(attr(&fetch, "portcullis.issuer").as_deref(), Some("main"));
    assert_eq!(
        attr(&fetch, "portcullis.jwks.result").as_deref(),
        Some("ok")
    );
    let link = fetch.links.first().expect("a link to the request");
    assert_eq!(hex(&link.trace_id), trace);
    assert_eq!(link.span_id, request.span_id);
    // The fetch at start is a span too (a root: no request asked for it).
    let refresh = collector
        .wait_span("of the first key refresh", |s| {
            attr(s, "portcullis.jwks.trigger").as_deref() == Some("refresh")
        })
        .await;
    assert!(refresh.links.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_drops_spans_and_requests_carry_on() {
    // Accepts connections and never says a word.
    let at = start_silent().await;
    let Setup { gw, .. } = traced(at, "1.0", |c| c).await;
    for n in 0..50 {
        let resp = tokio::time::timeout(
            Duration::from_secs(30),
            gw.get("/healthz", &[("X-Request-Id", &format!("silent-{n}"))]),
        )
        .await
        .expect("a request completes while the collector hangs");
        assert_eq!(resp.status, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let dropped = gw.metric("portcullis_tracing_spans_dropped_total").await;
        if dropped >= 50.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dropped spans counted: {dropped}, want at least 50"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_the_last_spans_before_the_process_exits() {
    let (collector, at) = Collector::start().await;
    let Setup { mut gw, .. } = traced(at, "1.0", |c| c).await;
    let (traceparent, trace, _) = parent(0x71);
    let resp = gw.get("/healthz", &[("traceparent", &traceparent)]).await;
    assert_eq!(resp.status, 200);
    // At once: the span waits for its batch (up to a second) when the signal comes.
    let pid = gw.pid().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.child().try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the gateway did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        collector
            .spans()
            .iter()
            .any(|(_, s)| hex(&s.trace_id) == trace),
        "the last request's span was lost at shutdown: {:?}",
        collector.spans()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_sample_ratio() {
    let (collector, at) = Collector::start().await;
    let issuer = TestIssuer::start().await;
    let echo = start_echo().await;
    let config = |ratio: &str| {
        standard_config(&issuer.url(), echo)
            .set(
                "tracing",
                &format!("{{ otlp_endpoint: \"http://{at}\", sample_ratio: {ratio} }}"),
            )
            .yaml()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.yaml");
    std::fs::write(&path, config("0")).unwrap();
    let gw = start_gateway_at(&path, &[]);
    gw.wait_ready().await;
    let before = gw.get("/healthz", &[]).await;
    assert!(before
        .echo()
        .header("traceparent")
        .unwrap()
        .ends_with("-00"));
    std::fs::write(&path, config("1")).unwrap();
    gw.wait_metric("portcullis_config_generation", 2.0).await;
    let after = gw.get("/healthz", &[]).await;
    let sent = after.echo().header("traceparent").unwrap().to_string();
    assert!(sent.ends_with("-01"), "{sent}");
    let span = collector.server_span(&sent[3..35]).await;
    assert_eq!(hex(&span.span_id), sent[36..52]);
    assert_eq!(hex(&span.trace_id), sent[3..35]);
    // Once the sampled one is in, the unsampled one would be too.
    assert_eq!(collector.spans().len(), 1 + jwks_spans(&collector));
}

/// Key fetch spans received so far.
fn jwks_spans(collector: &Collector) -> usize {
    collector
        .spans()
        .iter()
        .filter(|(_, s)| s.name == "jwks fetch")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_listener_request_is_a_span_too() {
    let (collector, at) = Collector::start().await;
    let Setup { issuer, gw, .. } = traced(at, "1.0", |c| {
        c.set("decision_listen", "127.0.0.1:0")
            .set("trusted_proxies", "[127.0.0.1/32]")
    })
    .await;
    let log = gw.wait_log("\"message\":\"listening\"").await;
    let line = log
        .lines()
        .find(|l| l.contains("\"message\":\"listening\""))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let decision: SocketAddr = v["decision"].as_str().unwrap().parse().unwrap();
    let token = issuer.token(json!({"scope": "read:orders"}));
    let (traceparent, trace, parent_id) = parent(0x61);
    let auth = format!("Bearer {token}");
    let resp = request_at(
        decision,
        "GET",
        "/",
        &[
            ("Host", "api.example.com"),
            ("X-Original-Method", "GET"),
            ("X-Original-URI", "/api/orders/9?secret=query-secret-3e"),
            ("Authorization", &auth),
            ("traceparent", &traceparent),
        ],
        "",
    )
    .await;
    assert_eq!(resp.status, 200);
    let span = collector.server_span(&trace).await;
    assert_eq!(hex(&span.parent_span_id), parent_id);
    for (key, want) in [
        ("portcullis.listener", "decision"),
        ("url.path", "/api/orders/9"),
        ("http.route", "orders-read"),
        ("http.response.status_code", "200"),
        ("server.address", "api.example.com"),
        ("portcullis.issuer", "main"),
    ] {
        assert_eq!(attr(&span, key).as_deref(), Some(want), "{key}");
    }
    let text = String::from_utf8_lossy(&collector.bytes()).into_owned();
    assert!(!text.contains("query-secret-3e"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_is_forwarded_untouched_with_tracing_off() {
    let Setup { gw, .. } = setup().await;
    let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let long_state = format!("a={}", "x".repeat(4000));
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("traceparent", valid),
            ("tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
        ],
        // Malformed in every way W3C Trace Context names: all forwarded as they came.
        vec![("traceparent", "garbage")],
        vec![(
            "traceparent",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
        )],
        vec![(
            "traceparent",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )],
        vec![(
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        )],
        vec![(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        )],
        vec![(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        )],
        vec![("traceparent", ""), ("tracestate", "=,,=")],
        vec![("tracestate", long_state.as_str())],
    ];
    for headers in cases {
        let resp = gw.get("/healthz", &headers).await;
        assert_eq!(resp.status, 200, "{headers:?}");
        let echo = resp.echo();
        for (name, value) in &headers {
            assert_eq!(echo.header_all(name), vec![*value], "{name} of {headers:?}");
        }
        if !headers.iter().any(|(n, _)| *n == "traceparent") {
            assert!(!echo.has("traceparent"));
        }
    }
    // Two traceparent fields: both go on, in order.
    let resp = gw
        .get(
            "/healthz",
            &[("traceparent", valid), ("traceparent", "garbage")],
        )
        .await;
    assert_eq!(
        resp.echo().header_all("traceparent"),
        vec![valid, "garbage"]
    );
    // No trace ids in the log without tracing.
    assert!(!gw.log_text().contains("trace_id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_trace_context_with_tracing_on_starts_a_new_trace() {
    let (collector, at) = Collector::start().await;
    let Setup { gw, .. } = traced(at, "1.0", |c| c).await;
    for bad in [
        vec![("traceparent", "garbage"), ("tracestate", "a=b")],
        vec![(
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        )],
        vec![
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01",
            ),
        ],
    ] {
        let resp = gw.get("/healthz", &bad).await;
        assert_eq!(resp.status, 200, "{bad:?}");
        let echo = resp.echo();
        let sent = echo.header_all("traceparent");
        assert_eq!(sent.len(), 1, "{bad:?}");
        let trace = &sent[0][3..35];
        assert!(!bad.iter().any(|(_, v)| v.contains(trace)), "{bad:?}");
        // A tracestate without a valid parent belongs to no trace.
        assert!(!echo.has("tracestate"), "{bad:?}");
        let span = collector.server_span(trace).await;
        assert!(span.parent_span_id.is_empty());
    }
}

#[test]
fn check_accepts_the_tracing_block_and_refuses_bad_values() {
    let base = standard_config("https://idp.example/", "127.0.0.1:9".parse().unwrap());
    let (ok, text) = check_config(
        &base
            .clone()
            .set(
                "tracing",
                "{ otlp_endpoint: \"http://otel-collector:4317\", sample_ratio: 0.01, service_name: edge }",
            )
            .yaml(),
    );
    assert!(ok, "{text}");
    for (block, key) in [
        ("{ sample_ratio: 1.5 }", "tracing.sample_ratio"),
        ("{ sample_ratio: -1 }", "tracing.sample_ratio"),
        ("{ otlp_endpoint: \"otel:4317\" }", "tracing.otlp_endpoint"),
        (
            "{ otlp_endpoint: \"https://otel:4317\" }",
            "tracing.otlp_endpoint",
        ),
        (
            "{ otlp_endpoint: \"http://otel\" }",
            "tracing.otlp_endpoint",
        ),
        ("{ sample_rate: 0.5 }", "sample_rate"),
        ("{ service_name: \"\" }", "tracing.service_name"),
    ] {
        let (ok, text) = check_config(&base.clone().set("tracing", block).yaml());
        assert!(!ok, "{block} was accepted");
        assert!(text.contains(key), "{block}: {text}");
    }
}
