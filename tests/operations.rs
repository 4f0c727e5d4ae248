//! Operating the gateway: `check`, config errors, the admin listener, metrics, keep-alive,
//! streamed bodies, WebSocket pass-through, SIGTERM, and logs that never hold a token.
mod common;
use common::*;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GOOD: &str = r#"
upstreams:
  app: { url: "http://127.0.0.1:3000" }
issuers:
  auth0:
    issuer: https://example.eu.auth0.com/
    discovery: true
    audiences: [https://api.example.com]
routes:
  - name: health
    match: { path: /healthz, methods: [GET] }
    auth: none
  - name: orders
    match: { path: /api/orders/** }
    scopes: [read:orders]
upstream: app
"#;

#[test]
fn version_prints_the_package_version_and_the_git_revision() {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!("portcullis {} (git ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&want), "{text}");
    let rev = text[want.len()..].trim_end().trim_end_matches(')');
    assert!(
        rev == "unknown" || (rev.len() >= 7 && rev.chars().all(|c| c.is_ascii_hexdigit())),
        "{text}"
    );
}

#[test]
fn check_accepts_a_good_file() {
    let (ok, text) = check_config(GOOD);
    assert!(ok, "{text}");
}

#[test]
fn check_names_file_line_column_and_key_of_an_unknown_key() {
    let (ok, text) =
        check_config(&GOOD.replace("    scopes: [read:orders]", "    scope: [read:orders]"));
    assert!(!ok);
    assert!(text.contains("bad.yaml:15:"), "{text}");
    assert!(text.contains("routes[1]"), "{text}");
    assert!(text.contains("unknown field `scope`"), "{text}");
}

#[test]
fn check_refuses_each_unsafe_or_inconsistent_setting_naming_its_key() {
    let cases = [
        (
            GOOD.replace("    audiences: [https://api.example.com]\n", ""),
            "issuers.auth0.audiences",
        ),
        (
            GOOD.replace(
                "    discovery: true\n",
                "    discovery: true\n    algorithms: [none]\n",
            ),
            "issuers.auth0.algorithms[0]",
        ),
        (
            GOOD.replace("https://example.eu.auth0.com/", "http://idp.local/"),
            "issuers.auth0.issuer",
        ),
        (
            GOOD.replace("upstream: app\n", "upstream: nope\n"),
            "upstream",
        ),
        (
            GOOD.replace(
                "    scopes: [read:orders]",
                "    scopes: [read:orders]\n    upstream: ghost",
            ),
            "routes[1].upstream",
        ),
        (
            GOOD.replace(
                "    scopes: [read:orders]",
                "    scopes: [read:orders]\n    issuers: [okta]",
            ),
            "routes[1].issuers[0]",
        ),
        (
            GOOD.replace("name: orders", "name: health"),
            "routes[1].name",
        ),
        (
            GOOD.replace("/api/orders/**", "/api/**/orders"),
            "routes[1].match.path",
        ),
        (
            GOOD.replace(
                "    discovery: true\n",
                "    discovery: true\n    leeway: soon\n",
            ),
            "issuers.auth0.leeway",
        ),
        (
            GOOD.replace(
                "    discovery: true\n",
                "    discovery: true\n    algorithms: [HS256]\n",
            ),
            "issuers.auth0.algorithms",
        ),
    ];
    for (yaml, key) in cases {
        let (ok, text) = check_config(&yaml);
        assert!(!ok, "accepted a bad file (expected an error at {key})");
        assert!(
            text.contains(&format!(": {key}: ")),
            "error should name {key}: {text}"
        );
        assert!(text.contains("bad.yaml:"), "{text}");
    }
}

#[test]
fn run_refuses_to_start_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "routes: 7\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_serves_health_readiness_and_metrics() {
    let s = setup().await;
    assert_eq!(s.gw.admin_get("/healthz").await.status, 200);
    assert_eq!(s.gw.admin_get("/readyz").await.status, 200);
    let token = s.issuer.token(json!({"scope": "read:orders"}));
    assert_eq!(s.gw.get_bearer("/api/orders/1", &token).await.status, 200);
    assert_denied(&s.gw.get("/api/orders/1", &[]).await, 401, "missing_token");
    let metrics = String::from_utf8(s.gw.admin_get("/metrics").await.body).unwrap();
    assert!(
        metrics.contains("portcullis_requests_total{decision=\"allowed\",route=\"orders-read\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("portcullis_requests_total{decision=\"no_token\",route=\"orders-read\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_jwks_refresh_total{issuer=\"main\",result=\"ok\"}"),
        "{metrics}"
    );
    // The admin paths are not served on the main listener: there they are ordinary routes.
    assert_eq!(s.gw.get("/metrics", &[]).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let s = setup().await;
    let mut conn = tokio::net::TcpStream::connect(s.gw.addr).await.unwrap();
    for i in 0..3 {
        let req = format!("GET /healthz?n={i} HTTP/1.1\r\nHost: gateway.test\r\n\r\n");
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // Read until the whole response (headers + content-length body) has arrived.
        loop {
            let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "connection closed after {i} responses");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(r) = parse_response(&buf) {
                let len: usize = r.header("content-length").unwrap().parse().unwrap();
                if r.body.len() >= len {
                    assert_eq!(r.status, 200);
                    assert!(String::from_utf8_lossy(&r.body).contains(&format!("n={i}")));
                    break;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_are_streamed_to_the_upstream() {
    let s = setup().await;
    let body = "x".repeat(300_000);
    let echo = s.gw.request("POST", "/healthz", &[], &body).await.echo();
    assert_eq!(echo.method, "POST");
    assert_eq!(echo.body.len(), body.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_passed_through_after_authorisation() {
    let s = setup().await;
    let token = s.issuer.token(json!({}));
    let handshake = |auth: String| {
        format!(
            "GET /api/ws HTTP/1.1\r\nHost: gateway.test\r\n{auth}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    };
    // Without a token the upgrade is refused like any request.
    let refused = send_raw(
        s.gw.addr,
        handshake(String::new())
            .replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_denied(&refused, 401, "missing_token");

    let mut conn = tokio::net::TcpStream::connect(s.gw.addr).await.unwrap();
    conn.write_all(handshake(format!("Authorization: Bearer {token}\r\n")).as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    conn.write_all(b"ping-through-the-gateway").await.unwrap();
    let mut got = Vec::new();
    while got.len() < 24 {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(&got, b"ping-through-the-gateway");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_nothing_in_flight_exits_at_once_with_status_zero() {
    let mut s = setup().await;
    assert_eq!(s.gw.get("/healthz", &[]).await.status, 200);
    let started = Instant::now();
    Command::new("kill")
        .args(["-TERM", &s.gw.pid().to_string()])
        .status()
        .unwrap();
    let status = exit_status(&mut s.gw, started, Duration::from_secs(5)).await;
    assert!(status.success(), "{status:?}");
}

/// The gateway's exit status, which must come within `limit` of `since`.
async fn exit_status(
    gw: &mut Gateway,
    since: Instant,
    limit: Duration,
) -> std::process::ExitStatus {
    loop {
        if let Some(status) = gw.child().try_wait().unwrap() {
            return status;
        }
        assert!(
            since.elapsed() < limit,
            "still running {limit:?} after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `server.shutdown_delay`: after SIGTERM `/readyz` is 503 at once, but new connections are
/// still accepted and their requests served (with a valid token too) for the delay, while
/// Kubernetes removes the pod from its endpoints; then the listener closes and the process
/// exits 0, within the grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_accepting_new_connections_for_the_shutdown_delay() {
    let issuer = TestIssuer::start().await;
    let echo = start_echo().await;
    let config = standard_config(&issuer.url(), echo)
        .server("shutdown_delay", "4s")
        .server("shutdown_grace", "15s");
    let mut gw = start_gateway(&config.yaml());
    gw.wait_ready().await;
    let token = issuer.token(json!({ "scope": "read:orders" }));
    let signalled = Instant::now();
    Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = gw.admin_get("/readyz").await;
        if r.status == 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {} after SIGTERM",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Each request on a connection of its own (the helpers open one per request), well inside
    // the delay (a connection still in the kernel's backlog when it ends is not served).
    let mut served = 0;
    while signalled.elapsed() < Duration::from_secs(2) {
        let r = gw.get("/healthz", &[("Host", "x")]).await;
        assert_eq!(r.status, 200, "a new connection during the delay");
        let r = gw.get_bearer("/api/orders/1", &token).await;
        assert_eq!(r.status, 200, "an authorised request during the delay");
        served += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served >= 3, "only {served} rounds during the delay");
    assert!(
        gw.child().try_wait().unwrap().is_none(),
        "exited before the delay ended"
    );
    let status = exit_status(&mut gw, signalled, Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(4),
        "exited {:?} after SIGTERM, before the delay ended",
        signalled.elapsed()
    );
    assert!(
        std::net::TcpStream::connect(gw.addr).is_err(),
        "the listener is closed after the exit"
    );
}

#[test]
fn a_shutdown_delay_longer_than_the_grace_is_refused() {
    let (ok, out) = check_config(&format!(
        "{GOOD}server:\n  shutdown_grace: 5s\n  shutdown_delay: 6s\n"
    ));
    assert!(!ok, "{out}");
    assert!(out.contains("server.shutdown_delay"), "{out}");
    assert!(out.contains("shutdown_grace"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish() {
    let issuer = TestIssuer::start().await;
    let slow_addr = start_slow(Duration::from_millis(500), "slow").await;
    let mut gw = start_gateway(&standard_config(&issuer.url(), slow_addr).yaml());
    gw.wait_ready().await;
    let addr = gw.addr;
    let pending =
        tokio::spawn(
            async move { request_at(addr, "GET", "/healthz", &[("Host", "x")], "").await },
        );
    tokio::time::sleep(Duration::from_millis(150)).await;
    Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .status()
        .unwrap();
    let r = pending.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"slow");
    let started = Instant::now();
    while gw.child().try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still running after the drain"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_has_one_json_line_per_request_and_never_a_token_or_query() {
    let s = setup().await;
    let token = s.issuer.token(json!({"scope": "read:orders"}));
    let auth = format!("Bearer {token}");
    let r =
        s.gw.get(
            "/api/orders/1?secret=hunter2",
            &[("Authorization", &auth), ("Cookie", "sid=cookie-secret")],
        )
        .await;
    assert_eq!(r.status, 200);
    let bad =
        s.gw.get_bearer("/api/orders/1?secret=hunter2", &format!("{token}x"))
            .await;
    assert_denied(&bad, 401, "invalid_token");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = s.gw.log_text();
    let access: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "access")
        .collect();
    assert_eq!(access.len(), 2, "{logs}");
    assert_eq!(access[0]["route"], "orders-read");
    assert_eq!(access[0]["status"], 200);
    assert_eq!(access[0]["path"], "/api/orders/1");
    assert_eq!(access[1]["decision"], "invalid_token");
    for needle in [&token[..40], "hunter2", "cookie-secret", "Bearer"] {
        assert!(!logs.contains(needle), "log leaks {needle}: {logs}");
    }
}

#[test]
fn the_shipped_example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c", path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The issuer and route blocks README.md shows for Auth0, Okta, Keycloak and Azure AD load as
/// written (with an upstream added and the tenant placeholder filled in).
#[test]
fn the_readme_identity_provider_examples_pass_check() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme
        .find("## Connect your identity provider")
        .expect("README section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let blocks: Vec<&str> = section
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap_or_default())
        .collect();
    assert!(
        blocks.len() >= 4,
        "one block per provider: {}",
        blocks.len()
    );
    for block in blocks {
        let yaml = format!(
            "upstreams:\n  app: {{ url: \"http://127.0.0.1:3000\" }}\n{}",
            block.replace("TENANT_ID", "contoso")
        );
        let (ok, text) = check_config(&yaml);
        assert!(ok, "{text}\n{yaml}");
    }
}

/// An HTTP/1.0 upstream (a raw socket answering `HTTP/1.0 200 OK` and closing): the client's
/// HTTP/1.1 response carries the gateway's own version, HTTP/1.1, not the upstream's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_0_upstreams_status_line_reaches_http_1_1_clients_as_http_1_1() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold-server")
                    .await;
            });
        }
    });
    let issuer = TestIssuer::start().await;
    let gw = start_gateway(&standard_config(&issuer.url(), upstream).yaml());
    gw.wait_ready().await;
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(10);
        while !String::from_utf8_lossy(&got).contains("old-server") {
            assert!(
                Instant::now() < deadline,
                "{}",
                String::from_utf8_lossy(&got)
            );
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
                .await
                .expect("response in time")
                .unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
        assert!(text.contains("old-server"), "{text}");
    }
}
