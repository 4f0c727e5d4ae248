//! HTTP/2 on the listener (h2c, prior knowledge) next to HTTP/1.1, and h2c to an upstream
//! (docs/behaviour.md, "HTTP/2 and gRPC"): the same requests get the same answers over both
//! protocols, `:authority` is the host, and what RFC 9113 forbids never reaches the upstream.
mod common;
use common::*;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

type Headers<'a> = Vec<(&'a str, &'a str)>;

/// The same request over HTTP/1.1 and over HTTP/2: `Host`, or `:authority`, `gateway.test`.
async fn both(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> (Response, Response) {
    let h1 = request_at(addr, method, target, headers, "").await;
    let h2 = h2_request(addr, method, target, "gateway.test", headers, b"")
        .await
        .response;
    (h1, h2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_and_http1_share_the_port_and_both_reach_the_upstream_with_identity_headers() {
    let s = setup().await;
    let token = s.issuer.token(json!({"scope": "read:orders"}));
    let auth = format!("Bearer {token}");
    let (h1, h2) = both(
        s.gw.addr,
        "GET",
        "/api/orders/7",
        &[("authorization", &auth)],
    )
    .await;
    for (protocol, r) in [("HTTP/1.1", h1), ("h2c", h2)] {
        let echo = r.echo();
        assert_eq!(echo.target, "/api/orders/7", "{protocol}");
        assert_eq!(echo.header("x-auth-subject"), Some("user-1"), "{protocol}");
        assert_eq!(
            echo.header("x-auth-scopes"),
            Some("read:orders"),
            "{protocol}"
        );
        assert_eq!(echo.header("host"), Some("gateway.test"), "{protocol}");
        assert!(!echo.has("authorization"), "{protocol}");
        assert!(echo.has("x-request-id"), "{protocol}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_requests_get_the_same_answers_over_http1_and_h2c() {
    let s = setup().await;
    let token = s.issuer.token(json!({"scope": "read:orders"}));
    let no_scope = s.issuer.token(json!({}));
    let auth = format!("Bearer {token}");
    let weak = format!("Bearer {no_scope}");
    let cases: Vec<(&str, &str, Headers)> = vec![
        (
            "dot segments",
            "/api/orders/%2e%2e/orders/7",
            vec![("authorization", &auth)],
        ),
        (
            "dot segments out of a public route",
            "/healthz/%2e%2e/api/x",
            vec![],
        ),
        (
            "encoded slash",
            "/api/a%2Fb",
            vec![("authorization", &auth)],
        ),
        (
            "spoofed identity",
            "/api/orders/1",
            vec![
                ("authorization", &auth),
                ("x-auth-subject", "admin"),
                ("x-auth-roles", "root"),
            ],
        ),
        (
            "spoofed identity on a public route",
            "/healthz",
            vec![("x-auth-subject", "admin"), ("x-user-org", "evil")],
        ),
        (
            "override header",
            "/api/orders/1",
            vec![
                ("authorization", &auth),
                ("x-http-method-override", "DELETE"),
            ],
        ),
        ("no token", "/api/orders/1", vec![]),
        (
            "missing scope",
            "/api/orders/1",
            vec![("authorization", &weak)],
        ),
        (
            "two tokens",
            "/api/orders/1",
            vec![("authorization", &auth), ("cookie", "session=x")],
        ),
        ("no route", "/nowhere", vec![]),
        (
            "token in the query",
            "/api/orders/1?access_token=abc",
            vec![("authorization", &auth)],
        ),
    ];
    for (name, target, headers) in cases {
        let (h1, h2) = both(s.gw.addr, "GET", target, &headers).await;
        assert_eq!(h1.status, h2.status, "{name}: HTTP/1.1 {h1:?}\nh2c {h2:?}");
        if h1.status != 200 {
            assert_eq!(h1.error(), h2.error(), "{name}");
            check_denied(&h2, h1.status, &h1.error()).unwrap_or_else(|e| panic!("{name}: {e}"));
            continue;
        }
        let (e1, e2) = (h1.echo(), h2.echo());
        assert_eq!(e1.target, e2.target, "{name}");
        for header in [
            "host",
            "x-auth-subject",
            "x-auth-roles",
            "x-user-org",
            "x-auth-scopes",
            "x-http-method-override",
            "authorization",
            "x-forwarded-host",
        ] {
            assert_eq!(
                e1.header_all(header),
                e2.header_all(header),
                "{name}: {header}"
            );
        }
        assert_ne!(e2.header("x-auth-subject"), Some("admin"), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authority_and_a_different_host_are_refused_and_never_forwarded() {
    let issuer = TestIssuer::start().await;
    let (upstream, hits) = start_counting_echo().await;
    let gw = start_gateway(&standard_config(&issuer.url(), upstream).yaml());
    gw.wait_ready().await;
    let r = h2_request(gw.addr, "GET", "/healthz", "gateway.test", &[], b"").await;
    assert_eq!(r.response.echo().header("host"), Some("gateway.test"));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    for host in ["other.test", "gateway.test.evil", "gateway.test:81"] {
        let r = h2_request(
            gw.addr,
            "GET",
            "/healthz",
            "gateway.test",
            &[("host", host)],
            b"",
        )
        .await;
        assert_eq!(r.response.status, 400, "Host {host}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "a refused request reached the upstream"
    );
}

/// A valid request's fields, in order; each case below changes one thing.
const VALID: [(&str, &str); 4] = [
    (":method", "GET"),
    (":scheme", "http"),
    (":authority", "gateway.test"),
    (":path", "/healthz"),
];

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut fields = VALID.to_vec();
    fields.extend_from_slice(extra);
    fields
}

fn without(name: &str) -> Vec<(&'static str, &'static str)> {
    VALID.iter().copied().filter(|(n, _)| *n != name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_rfc_9113_forbids_is_refused_and_never_reaches_the_upstream() {
    let issuer = TestIssuer::start().await;
    let (upstream, hits) = start_counting_echo().await;
    let gw = start_gateway(&standard_config(&issuer.url(), upstream).yaml());
    gw.wait_ready().await;
    // The hand-written frames make a request the gateway forwards…
    assert_eq!(
        raw_h2_request(gw.addr, &VALID).await,
        RawOutcome::Answered(Some(200))
    );
    assert_eq!(
        raw_h2_request(gw.addr, &with(&[("te", "trailers")])).await,
        RawOutcome::Answered(Some(200))
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // …and each of these is refused.
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("connection", with(&[("connection", "keep-alive")])),
        (
            "transfer-encoding",
            with(&[("transfer-encoding", "chunked")]),
        ),
        ("te other than trailers", with(&[("te", "gzip")])),
        ("upgrade", with(&[("upgrade", "websocket")])),
        ("keep-alive", with(&[("keep-alive", "timeout=5")])),
        (
            "proxy-connection",
            with(&[("proxy-connection", "keep-alive")]),
        ),
        ("upper-case name", with(&[("X-Auth-Subject", "admin")])),
        ("missing :path", without(":path")),
        ("missing :method", without(":method")),
        ("missing :scheme", without(":scheme")),
        (
            "empty :path",
            [without(":path"), vec![(":path", "")]].concat(),
        ),
        ("two :path", with(&[(":path", "/api/x")])),
        ("unknown pseudo-header", with(&[(":x", "1")])),
        (
            "pseudo-header after a field",
            [
                without(":authority"),
                vec![("accept", "*/*"), (":authority", "gateway.test")],
            ]
            .concat(),
        ),
        ("response pseudo-header", with(&[(":status", "200")])),
        (
            "relative :path",
            [without(":path"), vec![(":path", "healthz")]].concat(),
        ),
        (
            "absolute-form :path",
            [
                without(":path"),
                vec![(":path", "http://evil.test/healthz")],
            ]
            .concat(),
        ),
        ("no authority at all", without(":authority")),
    ];
    for (name, fields) in cases {
        let outcome = raw_h2_request(gw.addr, &fields).await;
        assert!(
            matches!(
                outcome,
                RawOutcome::Reset(_) | RawOutcome::GoAway(_) | RawOutcome::Answered(Some(400))
            ),
            "{name}: {outcome:?}"
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "a request RFC 9113 forbids reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_crumbs_of_an_h2_request_reach_an_http1_upstream_as_one_cookie_header() {
    let s = setup().await;
    let cookies = [("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")];
    let r = h2_request(s.gw.addr, "GET", "/healthz", "gateway.test", &cookies, b"").await;
    assert_eq!(r.response.echo().header_all("cookie"), ["a=1; b=2; c=3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_over_the_limits_get_the_same_431_over_h2c() {
    let s = setup_with(|c, _| c.limit("max_header_bytes", "2048")).await;
    let big = "v".repeat(3000);
    let (h1, h2) = both(s.gw.addr, "GET", "/healthz", &[("x-big", &big)]).await;
    assert_denied(&h1, 431, "headers_too_large");
    assert_denied(&h2, 431, "headers_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_upstream_receives_http2_with_the_authorised_host_and_identity() {
    let issuer = TestIssuer::start().await;
    let (upstream, hits) = start_h2c_echo().await;
    let config = standard_config(&issuer.url(), "127.0.0.1:1".parse().unwrap())
        .upstream_with("h2", &format!("http://{upstream}"), "protocol: h2c")
        .route_first(Route::new("h2", "/h2/**").set("upstream", "h2"));
    let gw = start_gateway(&config.yaml());
    gw.wait_ready().await;
    let token = issuer.token(json!({}));
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("x-auth-subject", "admin"),
    ];
    let (h1, h2) = both(gw.addr, "GET", "/h2/a/%2e%2e/b?x=1", &headers).await;
    for (protocol, r) in [("HTTP/1.1", h1), ("h2c", h2)] {
        assert_eq!(r.json()["version"], "HTTP/2.0", "{protocol}");
        let echo = r.echo();
        assert_eq!(echo.target, "/h2/b?x=1", "{protocol}");
        assert_eq!(
            echo.header(":authority"),
            Some("gateway.test"),
            "{protocol}"
        );
        assert!(!echo.has("host"), "{protocol}: Host goes as :authority");
        assert_eq!(echo.header("x-auth-subject"), Some("user-1"), "{protocol}");
        assert!(!echo.has("authorization"), "{protocol}");
    }
    // A request body goes through to an HTTP/2 upstream too.
    let r = h2_request(
        gw.addr,
        "POST",
        "/h2/upload",
        "gateway.test",
        &[("authorization", &auth)],
        b"payload",
    )
    .await;
    assert_eq!(r.response.echo().method, "POST");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_advertises_h2_max_concurrent_streams() {
    let s = setup_with(|c, _| c.limit("h2_max_concurrent_streams", "7")).await;
    let tcp = tokio::net::TcpStream::connect(s.gw.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("h2 ready");
    let request = http::Request::get("http://gateway.test/healthz")
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    // The server's SETTINGS come before its first response.
    assert_eq!(response.await.unwrap().status(), 200);
    assert_eq!(client.current_max_send_streams(), 7);
}
