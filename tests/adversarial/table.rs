//! The table machinery: what a case must produce (`Want`), the requests cases send, the runner
//! that judges every case and lists the failures, and the rig (issuer, counting echo, gateway).
use super::common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest any case may take before it counts as a hang.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(10);
/// Budget of a case marked `quick` (refused without any key fetch).
pub const QUICK: Duration = Duration::from_millis(1000);

/// One expected header value upstream.
#[derive(Debug, Clone)]
pub enum H {
    /// Sent exactly once, with this value.
    Is(String),
    /// Not sent at all.
    Absent,
    /// Sent once, a fresh gateway request id (32 hex digits).
    GeneratedId,
}

pub fn is(v: &str) -> H {
    H::Is(v.to_string())
}

/// What a case must produce.
#[derive(Debug, Clone)]
pub enum Want {
    /// Forwarded: the upstream saw exactly this target and these headers.
    Pass {
        method: &'static str,
        target: String,
        headers: Vec<(&'static str, H)>,
    },
    /// The gateway's own JSON reply (docs/behaviour.md, "Responses the gateway writes itself") with this status and `error`, in the shape
    /// `check_denied` checks, and nothing upstream.
    Deny(u16, &'static str),
    /// The gateway's own reply to a `HEAD` request: this status and challenge, no body (HTTP
    /// sends none for `HEAD`), and nothing upstream.
    DenyHead(u16, &'static str),
    /// pingora's HTTP/1.1 parser refused the request before any gateway code ran: a plain 400
    /// with an empty body and no request id (docs/behaviour.md, "Paths").
    ParserRefused,
    /// pingora-proxy's own 405 for CONNECT (CONNECT proxying is off): nothing reaches the
    /// upstream (docs/behaviour.md, "Paths").
    ConnectRefused,
}

impl Want {
    /// The same expectation with one more header.
    pub fn and(mut self, name: &'static str, h: H) -> Want {
        if let Want::Pass { headers, .. } = &mut self {
            headers.retain(|(n, _)| *n != name);
            headers.push((name, h));
        }
        self
    }

    pub fn method(mut self, m: &'static str) -> Want {
        if let Want::Pass { method, .. } = &mut self {
            *method = m;
        }
        self
    }
}

/// Forwarded for the test issuer's `user-1`: the verified subject, the claims header of exactly
/// this token's payload, and no token upstream.
pub fn user(target: &str, token: &str) -> Want {
    Want::Pass {
        method: "GET",
        target: target.to_string(),
        headers: vec![
            ("x-auth-subject", is("user-1")),
            ("x-auth-claims", is(segment(token, 1))),
            ("authorization", H::Absent),
        ],
    }
}

/// Forwarded without any identity (public route, or optional route without a token).
pub fn anonymous(target: &str) -> Want {
    Want::Pass {
        method: "GET",
        target: target.to_string(),
        headers: MANAGED.iter().map(|n| (*n, H::Absent)).collect(),
    }
}

/// 401 `invalid_token`.
pub fn refused() -> Want {
    Want::Deny(401, "invalid_token")
}

/// 400 `bad_request` from the gateway.
pub fn bad() -> Want {
    Want::Deny(400, "bad_request")
}

/// Every identity header of the standard config, plus one with the strip prefix.
pub const MANAGED: [&str; 7] = [
    "x-auth-subject",
    "x-auth-email",
    "x-auth-scopes",
    "x-auth-roles",
    "x-user-org",
    "x-auth-claims",
    "x-auth-admin",
];

pub struct Case {
    pub name: String,
    pub raw: Vec<u8>,
    pub want: Want,
    /// Must be answered within `QUICK` and cause no JWKS fetch.
    pub quick: bool,
}

pub fn case(name: impl Into<String>, raw: Vec<u8>, want: Want) -> Case {
    Case {
        name: name.into(),
        raw,
        want,
        quick: false,
    }
}

impl Case {
    pub fn quick(mut self) -> Case {
        self.quick = true;
        self
    }
}

/// A request with `Host: gateway.test` (unless given) and `Connection: close`.
pub fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    raw_request(method, target, headers, "")
}

pub fn get(target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    request("GET", target, headers)
}

pub fn bearer(target: &str, token: &str) -> Vec<u8> {
    get(target, &[("Authorization", &format!("Bearer {token}"))])
}

/// Bytes exactly as given, concatenated.
pub fn raw(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Segment `i` of a compact token.
pub fn segment(token: &str, i: usize) -> &str {
    token.split('.').nth(i).unwrap_or("")
}

/// Send one raw request; any answer but a complete HTTP response is an error.
pub async fn exchange(addr: SocketAddr, raw: &[u8]) -> Result<Response, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    // The gateway may answer and close before it has read a large request.
    let _ = stream.write_all(raw).await;
    let mut buf = Vec::new();
    match tokio::time::timeout(CASE_TIMEOUT, stream.read_to_end(&mut buf)).await {
        Err(_) => return Err(format!("no complete answer within {CASE_TIMEOUT:?} (hang)")),
        Ok(Err(e)) if buf.is_empty() => return Err(format!("connection dropped: {e}")),
        _ => {}
    }
    if buf.is_empty() {
        return Err("connection closed without any response".into());
    }
    parse_response(&buf).ok_or_else(|| format!("not an HTTP response: {:?}", lossy(&buf)))
}

pub fn lossy(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.chars().take(300).collect()
}

/// Judge one response against its expectation. `reached`: requests the upstream received.
pub fn check(r: &Response, want: &Want, reached: usize) -> Result<(), String> {
    if r.status >= 500 {
        return Err(format!("server error {}: {}", r.status, lossy(&r.body)));
    }
    match want {
        Want::Pass {
            method,
            target,
            headers,
        } => {
            if r.status != 200 {
                return Err(format!(
                    "expected the upstream's 200, got {}: {}",
                    r.status,
                    lossy(&r.body)
                ));
            }
            if reached != 1 {
                return Err(format!("the upstream received {reached} requests, not 1"));
            }
            let v: Value = serde_json::from_slice(&r.body)
                .map_err(|_| format!("upstream reply is not the echo: {}", lossy(&r.body)))?;
            if v["method"] != *method {
                return Err(format!("upstream saw method {}, not {method}", v["method"]));
            }
            if v["target"] != *target {
                return Err(format!(
                    "upstream saw target {}, not {target:?}",
                    v["target"]
                ));
            }
            let seen = v["headers"].as_array().cloned().unwrap_or_default();
            for (name, h) in headers {
                let values: Vec<&str> = seen
                    .iter()
                    .filter(|p| p[0].as_str().is_some_and(|k| k.eq_ignore_ascii_case(name)))
                    .filter_map(|p| p[1].as_str())
                    .collect();
                let ok = match h {
                    H::Is(want) => values == [want.as_str()],
                    H::Absent => values.is_empty(),
                    H::GeneratedId => {
                        values.len() == 1
                            && values[0].len() == 32
                            && values[0].bytes().all(|b| b.is_ascii_hexdigit())
                    }
                };
                if !ok {
                    return Err(format!(
                        "upstream header {name}: want {h:?}, saw {values:?}"
                    ));
                }
            }
            Ok(())
        }
        Want::Deny(status, error) => {
            check_denied(r, *status, error)?;
            if reached != 0 {
                return Err(format!(
                    "refused, yet the upstream received {reached} requests"
                ));
            }
            Ok(())
        }
        Want::DenyHead(status, challenge) => {
            let www = r.header("www-authenticate").unwrap_or("");
            if r.status != *status || !www.contains(challenge) || !r.body.is_empty() {
                return Err(format!(
                    "expected {status} with a challenge holding {challenge:?} and no body, got {} {www:?} {}",
                    r.status,
                    lossy(&r.body)
                ));
            }
            if reached != 0 {
                return Err(format!(
                    "refused, yet the upstream received {reached} requests"
                ));
            }
            Ok(())
        }
        Want::ConnectRefused => {
            if r.status != 405 || reached != 0 {
                return Err(format!(
                    "expected pingora's 405 with nothing upstream, got {} (upstream saw {reached})",
                    r.status
                ));
            }
            Ok(())
        }
        Want::ParserRefused => {
            if r.status != 400 {
                return Err(format!(
                    "expected pingora's plain 400, got {}: {}",
                    r.status,
                    lossy(&r.body)
                ));
            }
            if reached != 0 {
                return Err(format!(
                    "refused, yet the upstream received {reached} requests"
                ));
            }
            if !r.body.is_empty() || r.header("x-request-id").is_some() {
                return Err(format!(
                    "expected pingora's plain 400 (empty body, no request id), got {:?} {}",
                    r.headers,
                    lossy(&r.body)
                ));
            }
            Ok(())
        }
    }
}

/// Run every case in order against one gateway; fail with the list of failed cases.
pub async fn run_table(
    table: &str,
    gw: &Gateway,
    hits: &AtomicUsize,
    fetches: &dyn Fn() -> usize,
    cases: Vec<Case>,
) {
    let mut names = std::collections::HashSet::new();
    for c in &cases {
        assert!(
            names.insert(c.name.clone()),
            "duplicate case name {}",
            c.name
        );
    }
    let mut failures = Vec::new();
    for c in &cases {
        let before = hits.load(Ordering::SeqCst);
        let fetched = fetches();
        let started = Instant::now();
        let outcome = exchange(gw.addr, &c.raw).await;
        let elapsed = started.elapsed();
        let reached = hits.load(Ordering::SeqCst) - before;
        let mut result = outcome.and_then(|r| check(&r, &c.want, reached));
        if result.is_ok() && c.quick {
            if elapsed > QUICK {
                result = Err(format!("took {elapsed:?}, more than {QUICK:?}"));
            } else if fetches() != fetched {
                result = Err(format!("caused {} key fetches", fetches() - fetched));
            }
        }
        if let Err(why) = result {
            failures.push(format!("  {}: {why}", c.name));
        }
    }
    println!("{table}: {} cases, {} failed", cases.len(), failures.len());
    assert!(
        failures.is_empty(),
        "{table}: {} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Issuer, counting echo and a gateway on the standard config after `edit`, ready.
pub struct Rig {
    pub issuer: TestIssuer,
    pub gw: Gateway,
    pub hits: Arc<AtomicUsize>,
}

pub async fn rig(edit: impl FnOnce(Config) -> Config) -> Rig {
    let issuer = TestIssuer::start().await;
    let (echo, hits) = start_counting_echo().await;
    let gw = start_gateway(&edit(standard_config(&issuer.url(), echo)).yaml());
    gw.wait_ready().await;
    Rig { issuer, gw, hits }
}

impl Rig {
    pub async fn run(&self, table: &str, cases: Vec<Case>) {
        let fetches = || self.issuer.server.fetches();
        run_table(table, &self.gw, &self.hits, &fetches, cases).await;
    }
}
