//! Limits against slow and large requests: header count and size (431), request target (414),
//! body size (413), stalled bodies (408), requests in flight (503), idle keep-alive close.
mod common;
use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A ready gateway on the standard policy in front of `upstream`, with this `limits` entry.
async fn gateway_with_limit(
    (key, value): (&str, &str),
    upstream: std::net::SocketAddr,
) -> (TestIssuer, Gateway) {
    let issuer = TestIssuer::start().await;
    let gw = start_gateway(
        &standard_config(&issuer.url(), upstream)
            .limit(key, value)
            .yaml(),
    );
    gw.wait_ready().await;
    (issuer, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_headers_is_431() {
    let (_i, gw) = gateway_with_limit(("max_header_count", "20"), start_echo().await).await;
    let many: Vec<(String, String)> = (0..25)
        .map(|i| (format!("x-h{i}"), "v".to_string()))
        .collect();
    let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_denied(&gw.get("/healthz", &refs).await, 431, "headers_too_large");
    assert_eq!(gw.get("/healthz", &refs[..10]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_431_by_default() {
    let (_i, gw) = gateway_with_limit(("max_token_bytes", "8192"), start_echo().await).await;
    let big = "a".repeat(40 * 1024);
    assert_denied(
        &gw.get("/healthz", &[("x-big", &big)]).await,
        431,
        "headers_too_large",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlong_request_target_is_414() {
    let (_i, gw) = gateway_with_limit(("max_target_bytes", "1024"), start_echo().await).await;
    let long = format!("/healthz?q={}", "a".repeat(2000));
    assert_denied(&gw.get(&long, &[]).await, 414, "uri_too_long");
    assert_eq!(gw.get("/healthz?q=short", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_body_over_the_limit_is_413_and_never_reaches_the_upstream() {
    let (_i, gw) = gateway_with_limit(("max_body_bytes", "1000"), start_echo().await).await;
    let r = gw.request("POST", "/healthz", &[], &"x".repeat(1001)).await;
    assert_denied(&r, 413, "body_too_large");
    let ok = gw.request("POST", "/healthz", &[], &"x".repeat(1000)).await;
    assert_eq!(ok.echo().body.len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_is_413() {
    let (_i, gw) = gateway_with_limit(("max_body_bytes", "1000"), start_echo().await).await;
    let chunk = "x".repeat(600);
    let raw = format!(
        "POST /healthz HTTP/1.1\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let r = send_raw(gw.addr, raw.as_bytes()).await;
    assert_denied(&r, 413, "body_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_is_408() {
    let (_i, gw) = gateway_with_limit(("client_body_timeout", "1s"), start_echo().await).await;
    let mut conn = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(
        b"POST /healthz HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let r = parse_response(&buf).expect("an answer, not a silent close");
    assert_denied(&r, 408, "request_timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_max_in_flight_get_503_overloaded() {
    let slow_addr = start_slow(Duration::from_secs(1), "ok").await;
    let (_i, gw) = gateway_with_limit(("max_in_flight", "1"), slow_addr).await;
    let addr = gw.addr;
    let first =
        tokio::spawn(
            async move { request_at(addr, "GET", "/healthz", &[("Host", "x")], "").await },
        );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = gw.get("/healthz", &[]).await;
    assert_denied(&second, 503, "overloaded");
    assert!(second.header("retry-after").is_some());
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(gw.get("/healthz", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_client_idle_timeout() {
    let (_i, gw) = gateway_with_limit(("client_idle_timeout", "1s"), start_echo().await).await;
    let mut conn = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(n > 0);
    let started = Instant::now();
    // Drain the rest of the response, then expect the server to close the idle connection.
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("closed within 5 s")
            .unwrap();
        if n == 0 {
            break;
        }
    }
    let idle = started.elapsed();
    assert!(
        idle >= Duration::from_millis(800) && idle < Duration::from_secs(4),
        "{idle:?}"
    );
}
