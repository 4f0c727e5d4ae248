//! The fault-injecting issuer of the key-lifecycle tests: discovery and `/jwks.json` over HTTP,
//! with failures a test switches at run time (refused connections, 500, garbage, a hang,
//! oversized bodies), a settable key set, discovery `issuer`, `max-age` and `ETag`, and counters
//! of what it was asked.
use super::config::IssuerBlock;
use super::{now, AUD};
use jsonwebtoken::Algorithm;
use portcullis::demo::keys::{jwks, SigningKey};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The gateway's response body cap for key documents.
const BODY_CAP: usize = 1 << 20;

/// How the issuer answers `/jwks.json`. Discovery is always answered normally while the issuer
/// listens; `Refuse` stops listening altogether.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Not listening: every connection is refused.
    Refuse,
    /// `500 Internal Server Error`.
    Status500,
    /// `200` with a body that is not JSON.
    Garbage,
    /// Hold the request for 30 s, well past the gateway's 10 s fetch timeout.
    Slow,
    /// A JSON key set padded past 1 MiB, announced by `Content-Length`.
    Oversized,
    /// The same body chunked, without `Content-Length`: the cap must hold while streaming.
    OversizedChunked,
}

/// What the issuer serves, and what it has seen.
struct IssuerState {
    url: String,
    jwks: Mutex<Value>,
    /// The discovery document's `issuer`; `None`: the issuer's own URL.
    discovery_issuer: Mutex<Option<String>>,
    /// `Cache-Control: max-age` of JWKS responses.
    max_age: Mutex<Option<u64>>,
    /// `ETag` of JWKS responses; a matching `If-None-Match` is answered 304.
    etag: Mutex<Option<String>>,
    jwks_requests: AtomicUsize,
    not_modified: AtomicUsize,
    discovery_requests: AtomicUsize,
}

/// An HTTP issuer (discovery + `/jwks.json`) whose failures a test switches at run time. Every
/// response closes its connection, so the gateway never holds a pooled connection across a
/// change of fault.
pub struct FaultyIssuer {
    pub addr: SocketAddr,
    state: Arc<IssuerState>,
    fault: watch::Sender<Fault>,
    /// Published RS256 key, kid `rs`.
    pub rs: SigningKey,
    /// Published EdDSA key, kid `ed`.
    pub ed: SigningKey,
}

impl FaultyIssuer {
    pub async fn start() -> FaultyIssuer {
        FaultyIssuer::start_with(Fault::None).await
    }

    /// Start with a fault already on (`Refuse`: the port is reserved but nobody listens).
    pub async fn start_with(fault: Fault) -> FaultyIssuer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind issuer");
        let addr = listener.local_addr().expect("issuer address");
        let rs = SigningKey::generate("rs", Algorithm::RS256);
        let ed = SigningKey::generate("ed", Algorithm::EdDSA);
        let state = Arc::new(IssuerState {
            url: format!("http://{addr}"),
            jwks: Mutex::new(jwks(&[&rs, &ed])),
            discovery_issuer: Mutex::new(None),
            max_age: Mutex::new(None),
            etag: Mutex::new(None),
            jwks_requests: AtomicUsize::new(0),
            not_modified: AtomicUsize::new(0),
            discovery_requests: AtomicUsize::new(0),
        });
        let (tx, rx) = watch::channel(fault);
        tokio::spawn(supervise(addr, listener, Arc::clone(&state), rx));
        let issuer = FaultyIssuer {
            addr,
            state,
            fault: tx,
            rs,
            ed,
        };
        issuer.settle().await;
        issuer
    }

    pub fn url(&self) -> String {
        self.state.url.clone()
    }

    /// Switch the fault; returns once connections are refused (or accepted again).
    pub async fn set_fault(&self, fault: Fault) {
        self.fault.send_replace(fault);
        self.settle().await;
    }

    async fn settle(&self) {
        let refuse = *self.fault.borrow() == Fault::Refuse;
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(self.addr).await.is_ok() == refuse {
            assert!(
                Instant::now() < deadline,
                "issuer never switched to refuse={refuse}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn set_jwks(&self, set: Value) {
        *self.state.jwks.lock().unwrap() = set;
    }

    pub fn set_discovery_issuer(&self, iss: &str) {
        *self.state.discovery_issuer.lock().unwrap() = Some(iss.to_string());
    }

    pub fn set_max_age(&self, secs: u64) {
        *self.state.max_age.lock().unwrap() = Some(secs);
    }

    pub fn set_etag(&self, tag: &str) {
        *self.state.etag.lock().unwrap() = Some(tag.to_string());
    }

    /// Requests for `/jwks.json` received, whatever the answer.
    pub fn fetches(&self) -> usize {
        self.state.jwks_requests.load(Ordering::SeqCst)
    }

    /// `/jwks.json` requests answered 304.
    pub fn not_modified(&self) -> usize {
        self.state.not_modified.load(Ordering::SeqCst)
    }

    pub fn discovery_requests(&self) -> usize {
        self.state.discovery_requests.load(Ordering::SeqCst)
    }

    /// Issuer block `name` fetching `/jwks.json` directly: HTTP allowed, audience `AUD`,
    /// RS256 and EdDSA, a 1 s refetch cooldown.
    pub fn jwks_uri_block(&self, name: &str) -> IssuerBlock {
        IssuerBlock::new(name, &self.url())
            .jwks_uri(&format!("{}/jwks.json", self.url()))
            .allow_http()
            .audiences(&[AUD])
            .algorithms(&["RS256", "EdDSA"])
            .set("refetch_cooldown", "1s")
    }

    /// The same block using OIDC discovery.
    pub fn discovery_block(&self, name: &str) -> IssuerBlock {
        self.jwks_uri_block(name).discovery()
    }

    /// A valid RS256 token, never seen before (unique `jti`, so never a cache hit).
    pub fn token(&self) -> String {
        self.rs.mint(&unique_claims(&self.url()))
    }

    /// A valid EdDSA token, never seen before.
    pub fn ed_token(&self) -> String {
        self.ed.mint(&unique_claims(&self.url()))
    }

    /// A token of this issuer naming a kid nobody publishes.
    pub fn unknown_kid_token(&self) -> String {
        let kid = format!("unknown-{}", rand::random::<u64>());
        with_kid(&self.ed, &kid, &self.url())
    }
}

/// Listen on `addr` while the fault is not `Refuse`; stop listening while it is. Ends when the
/// `FaultyIssuer` is dropped.
async fn supervise(
    addr: SocketAddr,
    first: TcpListener,
    state: Arc<IssuerState>,
    mut fault: watch::Receiver<Fault>,
) {
    let mut listener = Some(first);
    loop {
        if *fault.borrow_and_update() == Fault::Refuse {
            listener = None;
        } else if listener.is_none() {
            listener = Some(bind_again(addr).await);
        }
        match &listener {
            None => {
                if fault.changed().await.is_err() {
                    return;
                }
            }
            Some(l) => tokio::select! {
                accepted = l.accept() => {
                    if let Ok((stream, _)) = accepted {
                        tokio::spawn(answer(stream, Arc::clone(&state), fault.clone()));
                    }
                }
                changed = fault.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            },
        }
    }
}

/// Bind the issuer's port again after a `Refuse` spell (same URL, no gateway restart).
async fn bind_again(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) => assert!(Instant::now() < deadline, "cannot bind {addr} again: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Answer one request on `stream`, then close it.
async fn answer(mut stream: TcpStream, state: Arc<IssuerState>, fault: watch::Receiver<Fault>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or_default()
        .to_string();
    let if_none_match = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("if-none-match"))
        .map(|(_, v)| v.trim().to_string());
    let fault = *fault.borrow();
    let json_type = ("content-type", "application/json".to_string());
    match path.as_str() {
        "/.well-known/openid-configuration" => {
            state.discovery_requests.fetch_add(1, Ordering::SeqCst);
            let iss = state
                .discovery_issuer
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_else(|| state.url.clone());
            let doc = json!({"issuer": iss, "jwks_uri": format!("{}/jwks.json", state.url)});
            let reply = response(200, &[json_type], doc.to_string().as_bytes());
            let _ = stream.write_all(&reply).await;
        }
        "/jwks.json" => {
            state.jwks_requests.fetch_add(1, Ordering::SeqCst);
            match fault {
                Fault::None | Fault::Refuse => {
                    let etag = state.etag.lock().unwrap().clone();
                    let mut headers = vec![json_type];
                    if let Some(secs) = *state.max_age.lock().unwrap() {
                        headers.push(("cache-control", format!("public, max-age={secs}")));
                    }
                    if let Some(tag) = &etag {
                        headers.push(("etag", tag.clone()));
                    }
                    let reply = if etag.is_some() && etag == if_none_match {
                        state.not_modified.fetch_add(1, Ordering::SeqCst);
                        response(304, &headers, b"")
                    } else {
                        let body = state.jwks.lock().unwrap().to_string();
                        response(200, &headers, body.as_bytes())
                    };
                    let _ = stream.write_all(&reply).await;
                }
                Fault::Status500 => {
                    let reply = response(
                        500,
                        &[("content-type", "text/plain".into())],
                        b"internal error",
                    );
                    let _ = stream.write_all(&reply).await;
                }
                Fault::Garbage => {
                    let reply = response(200, &[json_type], b"<html>\x00\xff{\"keys\": [oops");
                    let _ = stream.write_all(&reply).await;
                }
                Fault::Slow => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                Fault::Oversized => {
                    let reply = response(200, &[json_type], &oversized_jwks(&state));
                    let _ = stream.write_all(&reply).await;
                }
                Fault::OversizedChunked => {
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                transfer-encoding: chunked\r\nconnection: close\r\n\r\n";
                    if stream.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    for piece in oversized_jwks(&state).chunks(64 * 1024) {
                        let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
                        chunk.extend_from_slice(piece);
                        chunk.extend_from_slice(b"\r\n");
                        if stream.write_all(&chunk).await.is_err() {
                            return;
                        }
                    }
                    let _ = stream.write_all(b"0\r\n\r\n").await;
                }
            }
        }
        _ => {
            let _ = stream.write_all(&response(404, &[], b"")).await;
        }
    }
    let _ = stream.shutdown().await;
}

/// The issuer's current (good) key set padded past the body cap: valid JSON, too large.
fn oversized_jwks(state: &IssuerState) -> Vec<u8> {
    let mut set = state.jwks.lock().unwrap().clone();
    set["padding"] = Value::String("x".repeat(BODY_CAP + 1));
    let body = set.to_string().into_bytes();
    assert!(body.len() > BODY_CAP);
    body
}

/// An HTTP/1.1 response that closes the connection.
fn response(status: u16, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        304 => "Not Modified",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if status != 304 {
        out.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    out.push_str("connection: close\r\n\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Valid claims for issuer `iss`, with a unique `jti` (so never a verified-token cache hit).
pub fn unique_claims(iss: &str) -> Value {
    let t = now();
    json!({"iss": iss, "aud": AUD, "sub": "user-1", "iat": t, "exp": t + 3600,
           "jti": rand::random::<u64>().to_string()})
}

/// A token signed by `key` whose header names `kid`, claiming issuer `iss`.
pub fn with_kid(key: &SigningKey, kid: &str, iss: &str) -> String {
    key.mint_with_header(
        &json!({"alg": format!("{:?}", key.alg), "typ": "JWT", "kid": kid}),
        &unique_claims(iss),
    )
}
