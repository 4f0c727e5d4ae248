//! Upstreams for the gateway under test, each on its own port 0: the demo echo upstream, an echo
//! that counts what reaches it, one that never answers, one that answers late, and a dead port.
use bytes::Bytes;
use http_body_util::Full;
use portcullis::demo::echo;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The echo upstream, on the current runtime.
pub async fn start_echo() -> SocketAddr {
    echo::start().await.expect("echo upstream")
}

/// A TCP port nobody listens on.
pub fn dead_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A listener that accepts and never answers (for read timeouts).
pub async fn start_silent() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    addr
}

/// An upstream that reads a request, waits `delay`, then answers 200 with `body`.
pub async fn start_slow(delay: Duration, body: &'static str) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                tokio::time::sleep(delay).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}

/// An upstream that answers like the echo upstream (method, target and headers as JSON; no
/// body) and counts every request it receives.
pub async fn start_counting_echo() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&hits);
    tokio::spawn(portcullis::http1::serve(
        listener,
        move |req: http::Request<hyper::body::Incoming>| {
            seen.fetch_add(1, Ordering::SeqCst);
            let headers: Vec<_> = (req.headers().iter())
                .map(|(k, v)| json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]))
                .collect();
            let doc = json!({"method": req.method().as_str(), "target": req.uri().to_string(), "headers": headers});
            let reply = http::Response::builder().header("content-type", "application/json");
            std::future::ready(reply.body(Full::new(Bytes::from(doc.to_string()))).unwrap())
        },
    ));
    (addr, hits)
}

/// An upstream that speaks HTTP/2 only, with prior knowledge (h2c): it answers like the echo
/// upstream (method, target, headers as JSON, `:authority` listed as a header of that name)
/// plus `version`, and counts every request. A client speaking HTTP/1.1 to it gets nothing:
/// a 200 from it proves the request came over HTTP/2.
pub async fn start_h2c_echo() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    seen.fetch_add(1, Ordering::SeqCst);
                    let mut headers = vec![];
                    if let Some(a) = req.uri().authority() {
                        headers.push(json!([":authority", a.as_str()]));
                    }
                    headers.extend(
                        req.headers().iter().map(|(k, v)| {
                            json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())])
                        }),
                    );
                    let target = req.uri().path_and_query().map_or("", |p| p.as_str());
                    let doc = json!({
                        "method": req.method().as_str(),
                        "target": target,
                        "version": format!("{:?}", req.version()),
                        "headers": headers,
                    });
                    let response = http::Response::builder()
                        .header("content-type", "application/json")
                        .body(())
                        .unwrap();
                    if let Ok(mut send) = respond.send_response(response, false) {
                        let _ = send.send_data(Bytes::from(doc.to_string()), true);
                    }
                }
            });
        }
    });
    (addr, hits)
}
