//! Test harness: the real `portcullis` binary on port 0, the demo issuer (discovery + JWKS over
//! HTTP) and echo upstream in-process, and a raw HTTP/1.1 client that sends exactly the bytes
//! a test writes (no path normalisation, duplicate headers allowed).
//!
//! Submodules: `config` (the config builder, shared with fuzz/ and benches/), `deny` (the
//! assertions on the gateway's own replies), `faulty_issuer` (an issuer whose failures a test
//! switches), `grpc` (a tonic gRPC upstream), `http2` (HTTP/2 clients, one that writes raw
//! frames), `upstreams` (echo, counting echo, h2c echo, silent, slow and dead upstreams), `pki`
//! (a test CA and its certificates), `tls` (a TLS client showing what was negotiated, a TLS echo
//! upstream).
#![allow(dead_code)]

pub mod config;
mod deny;
mod faulty_issuer;
mod grpc;
mod http2;
pub mod pki;
pub mod tls;
mod upstreams;

// Each test binary uses a part of the harness.
#[allow(unused_imports)]
pub use config::{Config, IssuerBlock, Route};
#[allow(unused_imports)]
pub use deny::*;
#[allow(unused_imports)]
pub use faulty_issuer::{unique_claims, with_kid, Fault, FaultyIssuer};
#[allow(unused_imports)]
pub use grpc::{start_grpc, GrpcUpstream};
#[allow(unused_imports)]
pub use http2::{h2_request, raw_h2_request, H2Reply, RawOutcome};
#[allow(unused_imports)]
pub use upstreams::*;

use jsonwebtoken::Algorithm;
use portcullis::demo::{issuer::Issuer, keys::SigningKey};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use portcullis::demo::keys::now;

/// The audience every test issuer accepts.
pub const AUD: &str = "api://test";

/// A gateway process; killed on drop.
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    child: Child,
    /// Every stdout line the process printed so far (JSON logs).
    pub logs: Arc<Mutex<Vec<String>>>,
    /// The config file's temp dir, when the harness wrote it.
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `portcullis check -c` on `yaml` (written to a temp file): success, and stdout and stderr.
pub fn check_config(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Write `yaml` to a temp file and run `portcullis run -c` on it. Waits until the main
/// listener accepts connections.
pub fn start_gateway(yaml: &str) -> Gateway {
    start_gateway_env(yaml, &[])
}

pub fn start_gateway_env(yaml: &str, env: &[(&str, &str)]) -> Gateway {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("portcullis.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let mut gw = start_gateway_at(&path, env);
    gw._dir = Some(dir);
    gw
}

/// `portcullis run -c path` on a config file the test owns (and may rewrite).
pub fn start_gateway_at(path: &std::path::Path, env: &[(&str, &str)]) -> Gateway {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["run", "-c"])
        .arg(path)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis");
    let stdout = child.stdout.take().expect("stdout");
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = Arc::clone(&logs);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("\"message\":\"listening\"") {
                let _ = tx.send(line.clone());
            }
            sink.lock().unwrap().push(line);
        }
    });
    let line = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            panic!("gateway did not start: {err}");
        }
    };
    let v: Value = serde_json::from_str(&line).expect("JSON log line");
    let addr: SocketAddr = v["listen"].as_str().unwrap().parse().unwrap();
    let admin = v["admin"].as_str().and_then(|a| a.parse().ok());
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "gateway never accepted connections"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Gateway {
        addr,
        admin,
        child,
        logs,
        _dir: None,
    }
}

impl Gateway {
    /// Wait until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.admin_get("/readyz").await.status == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "gateway never became ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn admin_get(&self, path: &str) -> Response {
        let admin = self.admin.expect("admin listener");
        send_raw(
            admin,
            format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
    }

    /// `GET target` with these extra headers.
    pub async fn get(&self, target: &str, headers: &[(&str, &str)]) -> Response {
        self.request("GET", target, headers, "").await
    }

    /// `GET target` with a bearer token.
    pub async fn get_bearer(&self, target: &str, token: &str) -> Response {
        let auth = format!("Bearer {token}");
        self.get(target, &[("Authorization", &auth)]).await
    }

    /// Any request; `Host: gateway.test` unless a Host header is given.
    pub async fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response {
        request_at(self.addr, method, target, headers, body).await
    }

    /// The value of a metric line (`name{labels}` exactly as exported), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = String::from_utf8(self.admin_get("/metrics").await.body).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Wait until `series` reaches `want`, at most 5 s.
    pub async fn wait_metric(&self, series: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = self.metric(series).await;
            if got == want {
                return;
            }
            assert!(Instant::now() < deadline, "{series} is {got}, want {want}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait (at most 5 s) until the log printed so far holds `needle`; returns the log.
    pub async fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = self.log_text();
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The access-log lines printed so far.
    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }
}

/// `Gateway::request` to the gateway listening at `addr` (for spawned tasks, which cannot
/// borrow the `Gateway`).
pub async fn request_at(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    send_raw(addr, &raw_request(method, target, headers, body)).await
}

/// `GET target` with a bearer token, to the gateway listening at `addr`.
pub async fn get_bearer_at(addr: SocketAddr, target: &str, token: &str) -> Response {
    let auth = format!("Bearer {token}");
    request_at(addr, "GET", target, &[("Authorization", &auth)], "").await
}

/// The bytes of a request with `Host: gateway.test` (unless a Host header is given), a
/// `Content-Length` when there is a body, and `Connection: close`.
pub fn raw_request(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut raw = format!("{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        raw.push_str("Host: gateway.test\r\n");
    }
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    raw.push_str("Connection: close\r\n\r\n");
    raw.push_str(body);
    raw.into_bytes()
}

/// Values of header `name` (case-insensitive) in a list of pairs.
fn values_of<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The head of the request that got this answer, long values cut (for failure messages);
    /// empty when the response was parsed from bytes alone.
    pub request: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// Values of header `name` (case-insensitive).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        values_of(&self.headers, name)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).first().copied()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "not JSON ({}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `error` code of a gateway reply.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// What the echo upstream saw.
    pub fn echo(&self) -> Echo {
        assert_eq!(
            self.status,
            200,
            "expected the upstream's 200, got {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        Echo {
            method: v["method"].as_str().unwrap().to_string(),
            target: v["target"].as_str().unwrap().to_string(),
            headers: v["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap().to_string(),
                        p[1].as_str().unwrap().to_string(),
                    )
                })
                .collect(),
            body: v["body"].as_str().unwrap_or_default().to_string(),
        }
    }
}

/// The request as the echo upstream received it.
#[derive(Debug, Clone)]
pub struct Echo {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Echo {
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        values_of(&self.headers, name)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let all = self.header_all(name);
        assert!(
            all.len() <= 1,
            "header {name} sent {} times: {all:?}",
            all.len()
        );
        all.first().copied()
    }

    pub fn has(&self, name: &str) -> bool {
        !self.header_all(name).is_empty()
    }
}

/// Send raw bytes, read the whole response (the request should say `Connection: close`).
pub async fn send_raw(addr: SocketAddr, raw: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(raw).await.expect("write request");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut buf)).await;
    let mut r = parse_response(&buf)
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(&buf)));
    r.request = request_head(raw);
    r
}

/// The head of a raw request, one line per header, values over 60 bytes cut.
pub fn request_head(raw: &[u8]) -> String {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end])
        .split("\r\n")
        .map(|line| match line.char_indices().nth(60) {
            Some((cut, _)) => format!("{}…", &line[..cut]),
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n    ")
}

/// Parse one HTTP/1.1 response (Content-Length, chunked, or until close).
pub fn parse_response(buf: &[u8]) -> Option<Response> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &buf[end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Some(Response {
        request: String::new(),
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..pos]).unwrap_or("0").trim(), 16)
                .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = pos + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// A test issuer: RS256, PS256, ES256 and EdDSA keys, served over HTTP with discovery.
pub struct TestIssuer {
    pub server: Issuer,
    pub rs: SigningKey,
    pub ps: SigningKey,
    pub es: SigningKey,
    pub ed: SigningKey,
}

impl TestIssuer {
    pub async fn start() -> TestIssuer {
        let rs = SigningKey::generate("rs", Algorithm::RS256);
        let ps = SigningKey::generate("ps", Algorithm::PS256);
        let es = SigningKey::generate("es", Algorithm::ES256);
        let ed = SigningKey::generate("ed", Algorithm::EdDSA);
        let jwks = portcullis::demo::keys::jwks(&[&rs, &ps, &es, &ed]);
        let server = Issuer::start(jwks).await.expect("issuer");
        TestIssuer {
            server,
            rs,
            ps,
            es,
            ed,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Claims of a valid token: iss, aud, sub, iat now, exp in an hour, plus `extra`.
    pub fn claims(&self, extra: Value) -> Value {
        claims_for(&self.url(), extra)
    }

    /// A valid RS256 token with these extra claims (`null` removes a claim).
    pub fn token(&self, extra: Value) -> String {
        self.rs.mint(&self.claims(extra))
    }
}

/// Valid claims for `iss` (aud, sub `user-1`, iat now, exp in an hour) with `extra` merged in;
/// a `null` in `extra` removes the claim.
pub fn claims_for(iss: &str, extra: Value) -> Value {
    let mut c = json!({"iss": iss, "aud": AUD, "sub": "user-1", "iat": now(), "exp": now() + 3600});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            if v.is_null() {
                c.remove(k);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
    }
    c
}

/// The standard test policy: issuer `main` (discovery over HTTP, RS256/PS256/ES256/EdDSA,
/// audiences `AUD` and `api://other`, 1 s refetch cooldown), the identity headers below, and the
/// route list below, in front of `echo`.
pub fn standard_config(iss: &str, echo: SocketAddr) -> Config {
    Config::new()
        .upstream("echo", &format!("http://{echo}"))
        .default_upstream("echo")
        .issuer(
            IssuerBlock::new("main", iss)
                .discovery()
                .allow_http()
                .audiences(&[AUD, "api://other"])
                .algorithms(&["RS256", "PS256", "ES256", "EdDSA"])
                .set("refetch_cooldown", "1s"),
        )
        .identity_header("x-auth-subject", "sub")
        .identity_header("x-auth-email", "email")
        .identity_header("x-auth-scopes", "scope")
        .identity_header("x-auth-roles", "/https:~1~1example.com~1roles")
        .identity_header("x-user-org", "org_id")
        .identity("claims_header", "x-auth-claims")
        .route(Route::new("health", "/healthz").auth("none"))
        .route(Route::new("optional", "/opt/**").auth("optional"))
        .route(
            Route::new("orders-read", "/api/orders/**")
                .methods(&["GET", "HEAD"])
                .scopes("[read:orders]"),
        )
        .route(
            Route::new("orders-delete", "/api/orders/**")
                .methods(&["DELETE"])
                .scopes("{ any_of: [admin, orders:delete] }"),
        )
        .route(
            Route::new("reports", "/api/reports/**").scopes("{ all_of: [read:reports, export] }"),
        )
        .route(
            Route::new("org", "/api/org/**")
                .claims("{ /org_id: [acme, globex], email_verified: true }"),
        )
        .route(Route::new("admin-host", "/admin/**").host("admin.example.com"))
        .route(Route::new("tenant-host", "/tenant/**").host("*.tenants.example.com"))
        .route(Route::new("profile", "/users/*/profile"))
        .route(Route::new("api", "/api/**"))
}

/// Issuer + echo + gateway on the standard policy, ready.
pub struct Setup {
    pub issuer: TestIssuer,
    pub echo: SocketAddr,
    pub gw: Gateway,
}

pub async fn setup() -> Setup {
    setup_with(|config, _| config).await
}

/// Issuer, echo and a ready gateway on the standard policy after `edit` (which may use the
/// issuer's keys, e.g. for an inline-JWKS issuer beside `main`).
pub async fn setup_with(edit: impl FnOnce(Config, &TestIssuer) -> Config) -> Setup {
    let issuer = TestIssuer::start().await;
    let echo = start_echo().await;
    let config = edit(standard_config(&issuer.url(), echo), &issuer);
    let gw = start_gateway(&config.yaml());
    gw.wait_ready().await;
    Setup { issuer, echo, gw }
}
