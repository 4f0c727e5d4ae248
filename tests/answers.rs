//! Every request gets exactly one complete answer (docs/behaviour.md, "Denied while the body is
//! still arriving"): for each answer the gateway writes itself and for allowed requests, with
//! request bodies of every shape (none, small, larger than the initial flow-control window, sent
//! slowly, never finished), one stream at a time and 100 at once on one connection, over h2c and
//! h2 (TLS), by the `h2` crate, curl, h2load and a tonic client; and on HTTP/1.1 keep-alive, the
//! request after a denial on the same connection is answered as if it came first.
mod common;
use bytes::Bytes;
use common::*;
use serde_json::json;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The gRPC health `Check` route: scope `health:read`, to a real tonic upstream.
const CHECK: &str = "/grpc.health.v1.Health/Check";
/// `max_body_bytes` of the gateways under test.
const MAX_BODY: usize = 300_000;
/// A body larger than HTTP/2's initial flow-control window (65,535 bytes).
const LARGE: usize = 100_000;

/// How a request body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// No body: END_STREAM on the HEADERS frame.
    None,
    /// A 10-byte body (a framed gRPC message), in one DATA frame after the HEADERS.
    Small,
    /// `LARGE` bytes: more than the initial window, so the gateway must read for it to arrive.
    Large,
    /// Five 10-byte DATA frames 20 ms apart.
    Slow,
    /// 10 bytes and never END_STREAM.
    Unfinished,
    /// `MAX_BODY` + 100,000 bytes without a `content-length`: over the limit part way through.
    Over,
}

const EVERY_SHAPE: &[Shape] = &[
    Shape::None,
    Shape::Small,
    Shape::Large,
    Shape::Slow,
    Shape::Unfinished,
];
/// The shapes a request that is forwarded can take: an unfinished body would wait for
/// `client_body_timeout` (a 408), not for the answer under test.
const FORWARDED_SHAPES: &[Shape] = &[Shape::None, Shape::Small, Shape::Large, Shape::Slow];

impl Shape {
    fn len(self) -> usize {
        match self {
            Shape::None => 0,
            Shape::Small | Shape::Unfinished => 10,
            Shape::Large => LARGE,
            Shape::Slow => 50,
            Shape::Over => MAX_BODY + 100_000,
        }
    }
}

/// The answer a request must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// The gateway's own JSON reply with this status and `error` code.
    Denied(u16, &'static str),
    /// gRPC's Trailers-Only reply with this `grpc-status`.
    Grpc(u8),
    /// The echo upstream's 200.
    Forwarded,
}

/// One kind of request: what is sent (besides the body) and what must come back.
#[derive(Debug, Clone)]
struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    want: Want,
    shapes: &'static [Shape],
}

impl Case {
    fn new(name: &'static str, method: &'static str, path: &str, want: Want) -> Case {
        Case {
            name,
            method,
            path: path.to_string(),
            headers: Vec::new(),
            want,
            shapes: EVERY_SHAPE,
        }
    }

    fn header(mut self, name: &str, value: &str) -> Case {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    fn bearer(self, token: &str) -> Case {
        self.header("authorization", &format!("Bearer {token}"))
    }

    fn grpc(self, status: u8) -> Case {
        let mut case = self
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        case.want = Want::Grpc(status);
        case
    }

    fn shapes(mut self, shapes: &'static [Shape]) -> Case {
        self.shapes = shapes;
        self
    }
}

/// The gateways under test and what their requests need.
struct Bench {
    gw: Gateway,
    issuer: TestIssuer,
    down: FaultyIssuer,
    _grpc: GrpcUpstream,
}

/// A gateway on the standard policy with, in front: `/dead/**` to a port nobody listens on
/// (502), `/silent/**` to an upstream that never answers (504 after 250 ms), `/down/**`
/// verified by an issuer whose keys cannot be fetched (503 keys_unavailable), the gRPC health
/// `Check` (scope `health:read`) to a tonic upstream; `max_body_bytes` 300,000 and, with
/// `tls`, the listener over TLS.
async fn bench(tls: Option<&str>) -> Bench {
    let issuer = TestIssuer::start().await;
    let down = FaultyIssuer::start_with(Fault::Refuse).await;
    let grpc = start_grpc().await;
    let echo = start_echo().await;
    let silent = start_silent().await;
    let mut config = standard_config(&issuer.url(), echo)
        .issuer(down.jwks_uri_block("down"))
        .upstream_with(
            "dead",
            &format!("http://{}", dead_port()),
            "connect_timeout: 1s",
        )
        .upstream_with("silent", &format!("http://{silent}"), "read_timeout: 250ms")
        .upstream_with("grpc", &format!("http://{}", grpc.addr), "protocol: h2c")
        .route_first(Route::new("down", "/down/**"))
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
        .route_first(
            Route::new("health-check", CHECK)
                .scopes("[health:read]")
                .set("upstream", "grpc"),
        )
        .limit("max_body_bytes", &MAX_BODY.to_string());
    if let Some(tls) = tls {
        config = config.set("tls", tls);
    }
    let gw = start_gateway(&config.yaml());
    Bench {
        gw,
        issuer,
        down,
        _grpc: grpc,
    }
}

/// `bench` with its listener over TLS, a certificate for `gateway.test` from a new test CA;
/// the CA, and the directory of the certificate files.
async fn tls_bench() -> (Bench, common::pki::Ca, tempfile::TempDir) {
    let ca = common::pki::Ca::new("answers CA");
    let leaf = ca.server("gateway.test", &["gateway.test"]);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = leaf.write(dir.path(), "server");
    let tls = format!(
        "{{ cert_file: {:?}, key_file: {:?} }}",
        cert.display().to_string(),
        key.display().to_string()
    );
    (bench(Some(&tls)).await, ca, dir)
}

/// Every answer the gateway writes itself, in JSON and (where a gRPC client can ask) as a gRPC
/// status, and allowed requests.
fn cases(b: &Bench) -> Vec<Case> {
    use Want::*;
    let token = b.issuer.token(json!({}));
    let down = b.down.token();
    let many: Vec<(String, String)> = (0..110)
        .map(|i| (format!("x-h{i}"), "v".to_string()))
        .collect();
    let mut too_many_headers = Case::new("431", "POST", "/api/x", Denied(431, "headers_too_large"));
    too_many_headers.headers = many;
    let long = format!("/api/x?q={}", "a".repeat(9000));
    vec![
        Case::new("400", "POST", "/api/a%2Fb", Denied(400, "bad_request")),
        Case::new("401", "POST", "/api/x", Denied(401, "missing_token")),
        Case::new("401 gRPC", "POST", CHECK, Denied(401, "missing_token")).grpc(16),
        Case::new(
            "403",
            "POST",
            "/api/reports/q3",
            Denied(403, "insufficient_scope"),
        )
        .bearer(&token),
        Case::new("403 gRPC", "POST", CHECK, Denied(403, "insufficient_scope"))
            .bearer(&token)
            .grpc(7),
        Case::new("404", "POST", "/nowhere", Denied(404, "no_route")),
        Case::new("404 gRPC", "POST", "/no.Such/Call", Denied(404, "no_route")).grpc(12),
        Case::new(
            "413 declared",
            "POST",
            "/api/x",
            Denied(413, "body_too_large"),
        )
        .header("content-length", &Shape::Over.len().to_string())
        .shapes(&[Shape::Over]),
        Case::new(
            "413 read",
            "POST",
            "/healthz",
            Denied(413, "body_too_large"),
        )
        .shapes(&[Shape::Over]),
        Case::new("414", "POST", &long, Denied(414, "uri_too_long")),
        too_many_headers,
        Case::new(
            "503 keys",
            "POST",
            "/down/x",
            Denied(503, "keys_unavailable"),
        )
        .bearer(&down),
        Case::new(
            "503 keys gRPC",
            "POST",
            "/down/x",
            Denied(503, "keys_unavailable"),
        )
        .bearer(&down)
        .grpc(14),
        Case::new("502", "POST", "/dead/x", Denied(502, "upstream_error")),
        Case::new("504", "POST", "/silent/x", Denied(504, "upstream_timeout"))
            .shapes(FORWARDED_SHAPES),
        Case::new("allowed", "POST", "/api/x", Forwarded)
            .bearer(&token)
            .shapes(FORWARDED_SHAPES),
    ]
}

/// What one HTTP/2 stream got: its status, headers and body, and whether the HEADERS frame
/// ended it (gRPC's Trailers-Only).
struct Got {
    response: Response,
    head_only: bool,
    trailers: Vec<(String, String)>,
}

/// Is `got` the answer `want`?
fn judge(got: &Got, want: Want) -> Result<(), String> {
    let r = &got.response;
    match want {
        Want::Denied(status, error) => check_denied(r, status, error),
        Want::Grpc(code) => {
            // Trailers-Only (one HEADERS frame), or the status in trailers after the head.
            let code = code.to_string();
            let in_trailers = got
                .trailers
                .iter()
                .any(|(k, v)| k == "grpc-status" && *v == code);
            let in_head = r.header("grpc-status") == Some(code.as_str());
            let fits = if got.head_only {
                in_head
            } else {
                in_trailers && r.header("grpc-status").is_none() && r.body.is_empty()
            };
            if r.status == 200 && fits {
                Ok(())
            } else {
                Err(format!(
                    "want grpc-status {code}, got {} head_only={} headers {:?} trailers {:?}",
                    r.status, got.head_only, r.headers, got.trailers
                ))
            }
        }
        Want::Forwarded => match r.status {
            200 if r.json()["headers"].is_array() => Ok(()),
            other => Err(format!(
                "want the upstream's 200, got {other}: {}",
                String::from_utf8_lossy(&r.body)
            )),
        },
    }
}

/// Send `case` with a body of `shape` on one stream of `client` and read its answer. `Err`
/// says how the answer was lost (a reset before or during the response).
async fn stream(
    mut client: h2::client::SendRequest<Bytes>,
    authority: &str,
    case: &Case,
    shape: Shape,
) -> Result<Got, String> {
    let mut request = http::Request::builder()
        .method(case.method)
        .uri(format!("http://{authority}{}", case.path));
    for (k, v) in &case.headers {
        request = request.header(k, v);
    }
    let request = request.body(()).unwrap();
    client = client
        .ready()
        .await
        .map_err(|e| format!("connection: {e}"))?;
    let (response, mut send) = client
        .send_request(request, shape == Shape::None)
        .map_err(|e| format!("send_request: {e}"))?;
    // The body goes out beside the wait for the answer, as a client that streams does; its
    // errors do not count: once the answer is complete the stream may be reset.
    let body = async move {
        let chunk = |n: usize| Bytes::from(vec![b'x'; n]);
        match shape {
            Shape::None => {}
            Shape::Small | Shape::Large | Shape::Over => {
                let _ = send.send_data(chunk(shape.len()), true);
            }
            Shape::Slow => {
                for i in 0..5 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if send.send_data(chunk(10), i == 4).is_err() {
                        break;
                    }
                }
            }
            Shape::Unfinished => {
                let _ = send.send_data(chunk(10), false);
            }
        }
        send
    };
    let answer = async move {
        let response = response.await.map_err(|e| format!("no response: {e}"))?;
        let (parts, mut recv) = response.into_parts();
        let head_only = recv.is_end_stream();
        let mut data = Vec::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.map_err(|e| format!("reset during the response body: {e}"))?;
            let _ = recv.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        let trailers = match head_only {
            true => None,
            false => recv
                .trailers()
                .await
                .map_err(|e| format!("reset before the trailers: {e}"))?,
        };
        let pairs = |map: &http::HeaderMap| -> Vec<(String, String)> {
            map.iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect()
        };
        let headers = pairs(&parts.headers);
        let trailers = trailers.as_ref().map(pairs).unwrap_or_default();
        Ok::<_, String>(Got {
            response: Response {
                request: String::new(),
                status: parts.status.as_u16(),
                headers,
                body: data,
            },
            head_only,
            trailers,
        })
    };
    let deadline = Duration::from_secs(20);
    let (send, got) = tokio::time::timeout(deadline, async { tokio::join!(body, answer) })
        .await
        .map_err(|_| "no answer in 20 s".to_string())?;
    // An unfinished body is abandoned only after its answer was read.
    drop(send);
    got
}

/// A new HTTP/2 connection over `io` (a TCP or TLS stream).
async fn h2_client<T>(io: T) -> h2::client::SendRequest<Bytes>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = h2::client::handshake(io).await.expect("h2 handshake");
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("h2 connection: {e:?}");
        }
    });
    client
}

/// Tally of a run: streams sent, and a line for each that did not get its answer.
#[derive(Default)]
struct Tally {
    streams: usize,
    lost: Vec<String>,
}

impl Tally {
    fn record(&mut self, case: &Case, shape: Shape, how: &str, got: Result<Got, String>) {
        self.streams += 1;
        if let Err(why) = got.and_then(|got| judge(&got, case.want)) {
            self.lost
                .push(format!("{} {shape:?} {how}: {why}", case.name));
        }
    }

    #[track_caller]
    fn assert_all_answered(&self, what: &str) {
        assert!(
            self.lost.is_empty(),
            "{what}: {} of {} streams without their answer:\n{}",
            self.lost.len(),
            self.streams,
            self.lost[..self.lost.len().min(20)].join("\n")
        );
        eprintln!("{what}: {} streams, all answered", self.streams);
    }
}

/// For every case and shape: `sequential` streams one after the other on one connection, then
/// `together` streams at once on another; `connect` opens a connection. Four cases and shapes
/// run at a time (an unfinished body is answered only after the gateway stops waiting for it).
async fn run_all<F, Fut>(cases: &[Case], sequential: usize, together: usize, connect: F) -> Tally
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = h2::client::SendRequest<Bytes>> + Send,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(4));
    let mut combos = tokio::task::JoinSet::new();
    for case in cases {
        for &shape in case.shapes {
            let (case, connect, slots) = (Arc::new(case.clone()), connect.clone(), slots.clone());
            combos.spawn(async move {
                let _slot = slots.acquire().await.unwrap();
                let mut results = Vec::new();
                let client = connect().await;
                for _ in 0..sequential {
                    let got = stream(client.clone(), "gateway.test", &case, shape).await;
                    results.push(("one at a time", got));
                }
                let client = connect().await;
                let mut streams = tokio::task::JoinSet::new();
                for _ in 0..together {
                    let (client, case) = (client.clone(), Arc::clone(&case));
                    streams
                        .spawn(async move { stream(client, "gateway.test", &case, shape).await });
                }
                while let Some(got) = streams.join_next().await {
                    results.push(("100 at once", got.expect("stream task")));
                }
                (case, shape, results)
            });
        }
    }
    let mut tally = Tally::default();
    while let Some(combo) = combos.join_next().await {
        let (case, shape, results) = combo.expect("case task");
        for (how, got) in results {
            tally.record(&case, shape, how, got);
        }
    }
    tally
}

/// Wait (at most 15 s) until the gateway's keys for `main` are in: `/readyz` stays 503 with
/// the `down` issuer, so ask with a token instead.
async fn wait_keys(b: &Bench) {
    let token = b.issuer.token(json!({}));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while b.gw.get_bearer("/api/x", &token).await.status != 200 {
        assert!(std::time::Instant::now() < deadline, "keys never loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_h2c_stream_gets_its_one_complete_answer_whatever_its_body() {
    let b = bench(None).await;
    wait_keys(&b).await;
    let addr = b.gw.addr;
    let tally = run_all(&cases(&b), 2, 100, move || async move {
        h2_client(TcpStream::connect(addr).await.unwrap()).await
    })
    .await;
    tally.assert_all_answered("h2c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_h2_stream_over_tls_gets_its_one_complete_answer_whatever_its_body() {
    let (b, ca, _dir) = tls_bench().await;
    let addr = b.gw.addr;
    let ca = Arc::new(ca);
    let connect = move || {
        let ca = Arc::clone(&ca);
        async move {
            let tls = common::tls::connect(addr, "gateway.test", &ca, None, &[b"h2"])
                .await
                .expect("TLS handshake");
            h2_client(tls).await
        }
    };
    // Keys first (as `wait_keys`, over HTTP/2 since the listener speaks TLS).
    let token = b.issuer.token(json!({}));
    let ready = Case::new("ready", "GET", "/api/x", Want::Forwarded).bearer(&token);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while stream(connect().await, "gateway.test", &ready, Shape::None)
        .await
        .is_ok_and(|got| got.response.status != 200)
    {
        assert!(std::time::Instant::now() < deadline, "keys never loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tally = run_all(&cases(&b), 1, 50, connect).await;
    tally.assert_all_answered("h2 over TLS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stream_refused_as_overloaded_gets_its_503_whatever_its_body() {
    // One request held by an upstream that never answers fills `max_in_flight: 1`.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            open.push(s);
            let _ = accepted_tx.send(());
        }
    });
    let issuer = TestIssuer::start().await;
    let config = standard_config(&issuer.url(), start_echo().await)
        .upstream_with(
            "silent",
            &format!("http://{silent_addr}"),
            "read_timeout: 300s",
        )
        .route_first(
            Route::new("silent", "/silent/**")
                .auth("none")
                .set("upstream", "silent"),
        )
        .limit("max_in_flight", "1");
    let gw = start_gateway(&config.yaml());
    let addr = gw.addr;
    // Held only once the upstream has it: a try that met another request in flight was itself
    // refused (503), and is made again. The connection stays open for the whole test.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let _held = loop {
        assert!(std::time::Instant::now() < deadline, "never held a request");
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&raw_request("GET", "/silent/x", &[], ""))
            .await
            .unwrap();
        let mut first = [0u8; 1];
        let refused = tokio::select! {
            _ = accepted.recv() => false,
            _ = s.read(&mut first) => true,
        };
        if !refused {
            break s;
        }
    };
    assert_eq!(gw.get("/healthz", &[]).await.status, 503, "overloaded");
    let busy = Case::new(
        "503 overloaded",
        "POST",
        "/healthz",
        Want::Denied(503, "overloaded"),
    );
    let cases = [busy.clone(), busy.grpc(14)];
    let tally = run_all(&cases, 2, 100, move || async move {
        h2_client(TcpStream::connect(addr).await.unwrap()).await
    })
    .await;
    tally.assert_all_answered("overloaded, h2c");
}

// ---------------------------------------------------------------------------------------------
// Real clients: curl, h2load, tonic.

/// Run `program` with `args`; its stdout. Panics, saying how to install it, when it is missing.
fn run_tool(program: &str, package: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| {
        panic!("{program} is needed by this test ({e}); install it (Debian: apt-get install {package})")
    });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `tries` times, one curl process each: `curl --http2-prior-knowledge -X POST` with `headers`
/// and a 10-byte body (`--data-binary`, which curl writes after the HEADERS frame) to `url`.
/// Each answer as `<exit code> <status> <grpc-status>`.
fn curl_posts(url: &str, headers: &[&str], tries: usize, extra: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let frame = dir.path().join("frame");
    // A gRPC frame: not compressed, 5 bytes long, then the 5 bytes.
    std::fs::write(&frame, b"\x00\x00\x00\x00\x05hello").unwrap();
    let data = format!("@{}", frame.display());
    let mut args = vec![
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %header{grpc-status}",
        "-X",
        "POST",
        "--data-binary",
        &data,
    ];
    args.extend_from_slice(extra);
    for h in headers {
        args.extend_from_slice(&["-H", h]);
    }
    args.push(url);
    (0..tries)
        .map(|_| {
            let out = Command::new("curl").args(&args).output().unwrap_or_else(|e| {
                panic!("curl is needed by this test ({e}); install it (Debian: apt-get install curl)")
            });
            format!(
                "{} {}",
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).trim()
            )
        })
        .collect()
}

/// How many of `answers` are not `want`, with the distinct wrong ones.
#[track_caller]
fn assert_every_answer(answers: &[String], want: &str, what: &str) {
    let wrong: Vec<&String> = answers.iter().filter(|a| a.as_str() != want).collect();
    let mut kinds: Vec<&String> = wrong.clone();
    kinds.sort();
    kinds.dedup();
    assert!(
        wrong.is_empty(),
        "{what}: {} of {} tries lost the answer {want:?} (got {kinds:?}; curl exit 92 is \
         'Stream error in the HTTP/2 framing layer')",
        wrong.len(),
        answers.len()
    );
}

/// The first reproduction: a gRPC unary call without a token, over h2c, by curl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_grpc_unary_call_without_a_token_always_gets_unauthenticated() {
    let b = bench(None).await;
    let url = format!("http://{}{CHECK}", b.gw.addr);
    let answers = curl_posts(
        &url,
        &["content-type: application/grpc", "te: trailers"],
        200,
        &["--http2-prior-knowledge"],
    );
    assert_every_answer(&answers, "0 200 16", "curl gRPC without a token");
}

/// The second reproduction: an HTTP/2 POST with a body to a protected route, by curl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_http2_post_with_a_body_to_a_protected_route_always_gets_401() {
    let b = bench(None).await;
    let url = format!("http://{}/api/orders/1", b.gw.addr);
    let answers = curl_posts(&url, &[], 200, &["--http2-prior-knowledge"]);
    assert_every_answer(&answers, "0 401", "curl HTTP/2 POST without a token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_tls_gets_every_denial_of_a_post_with_a_body() {
    let (b, ca, dir) = tls_bench().await;
    let ca_file = ca.write(&dir.path().join("ca.pem"));
    let resolve = format!("gateway.test:{}:127.0.0.1", b.gw.addr.port());
    let ca_arg = ca_file.display().to_string();
    let tls_args = ["--http2", "--cacert", &ca_arg, "--resolve", &resolve];
    let port = b.gw.addr.port();
    let answers = curl_posts(
        &format!("https://gateway.test:{port}{CHECK}"),
        &["content-type: application/grpc", "te: trailers"],
        100,
        &tls_args,
    );
    assert_every_answer(&answers, "0 200 16", "curl gRPC over TLS");
    let answers = curl_posts(
        &format!("https://gateway.test:{port}/api/orders/1"),
        &[],
        100,
        &tls_args,
    );
    assert_every_answer(&answers, "0 401", "curl POST over TLS");
}

/// h2load's summary line `requests: N total, N started, N done, N succeeded, N failed, ...`
/// and its status-code line.
fn h2load(args: &[&str]) -> (String, String) {
    let (ok, out, err) = run_tool("h2load", "nghttp2-client", args);
    assert!(ok, "h2load failed: {out}{err}");
    let line = |prefix: &str| {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in h2load's output:\n{out}"))
            .to_string()
    };
    (line("requests:"), line("status codes:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2load_gets_every_denial_with_100_streams_at_once_on_one_connection() {
    let b = bench(None).await;
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    let large = dir.path().join("large");
    std::fs::write(&small, b"\x00\x00\x00\x00\x05hello").unwrap();
    std::fs::write(&large, vec![b'x'; LARGE]).unwrap();
    let grpc_url = format!("http://{}{CHECK}", b.gw.addr);
    let post_url = format!("http://{}/api/orders/1", b.gw.addr);
    for (body, url, headers) in [
        (
            &small,
            &grpc_url,
            ["content-type: application/grpc", "te: trailers"],
        ),
        (
            &large,
            &grpc_url,
            ["content-type: application/grpc", "te: trailers"],
        ),
        (&small, &post_url, ["accept: */*", "x-try: 1"]),
        (&large, &post_url, ["accept: */*", "x-try: 1"]),
    ] {
        let data = body.display().to_string();
        let mut args = vec!["-n", "500", "-c", "1", "-m", "100", "-d", &data];
        for h in &headers {
            args.extend_from_slice(&["-H", h]);
        }
        args.push(url);
        let (requests, codes) = h2load(&args);
        let what = format!("h2load -d {data} {url}");
        assert!(
            // h2load counts a 4xx as "failed"; a stream reset before its answer is "errored"
            // and has no status code.
            requests.contains("500 done") && requests.contains(" 0 errored, 0 timeout"),
            "{what}: {requests}"
        );
        let want = if url == &grpc_url {
            "500 2xx"
        } else {
            "500 4xx"
        };
        assert!(codes.contains(want), "{what}: {codes}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_unary_calls_get_their_status_one_at_a_time_and_100_at_once() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let b = bench(None).await;
    wait_keys(&b).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", b.gw.addr))
        .unwrap()
        .connect()
        .await
        .expect("connect to the gateway");
    let allowed = b.issuer.token(json!({"scope": "health:read"}));
    let weak = b.issuer.token(json!({}));
    let cases = [
        (None, tonic::Code::Unauthenticated),
        (Some(weak), tonic::Code::PermissionDenied),
        // The health service knows no "unknown" service.
        (Some(allowed), tonic::Code::NotFound),
    ];
    let call = |channel: tonic::transport::Channel, token: Option<String>| async move {
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: "unknown".into(),
        });
        if let Some(t) = token {
            let value = format!("Bearer {t}").parse().unwrap();
            request.metadata_mut().insert("authorization", value);
        }
        HealthClient::new(channel).check(request).await
    };
    let mut tally = (0, Vec::new());
    for (token, want) in cases {
        let mut check = |got: Result<_, tonic::Status>| {
            tally.0 += 1;
            match got {
                Err(status) if status.code() == want => {}
                other => tally.1.push(format!("want {want:?}, got {other:?}")),
            }
        };
        for _ in 0..20 {
            check(call(channel.clone(), token.clone()).await);
        }
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..100 {
            calls.spawn(call(channel.clone(), token.clone()));
        }
        while let Some(got) = calls.join_next().await {
            check(got.unwrap());
        }
    }
    assert!(
        tally.1.is_empty(),
        "{} of {} tonic calls got the wrong status: {:?}",
        tally.1.len(),
        tally.0,
        &tally.1[..tally.1.len().min(10)]
    );
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 keep-alive.

/// Read one HTTP/1.1 response with a `Content-Length` from a kept-alive connection.
async fn read_one(conn: &mut TcpStream) -> Option<Response> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), conn.read(&mut byte)).await {
            Ok(Ok(1)) => buf.push(byte[0]),
            _ => return None,
        }
    }
    let mut r = parse_response(&buf)?;
    let len: usize = r.header("content-length")?.parse().ok()?;
    let mut body = vec![0u8; len];
    tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut body))
        .await
        .ok()?
        .ok()?;
    r.body = body;
    Some(r)
}

/// How an HTTP/1.1 request body is sent.
#[derive(Debug, Clone, Copy)]
enum H1Body {
    Small,
    Large,
    Chunked,
    Slow,
}

/// Write a request with a body of `shape` after `head` (which ends with the blank line).
async fn write_h1(conn: &mut TcpStream, head: &str, shape: H1Body) {
    let body = |n: usize| vec![b'x'; n];
    let framing = match shape {
        H1Body::Small | H1Body::Slow => "Content-Length: 50\r\n",
        H1Body::Large => "Content-Length: 100000\r\n",
        H1Body::Chunked => "Transfer-Encoding: chunked\r\n",
    };
    conn.write_all(format!("{head}{framing}\r\n").as_bytes())
        .await
        .unwrap();
    match shape {
        H1Body::Small => conn.write_all(&body(50)).await.unwrap(),
        H1Body::Large => conn.write_all(&body(LARGE)).await.unwrap(),
        H1Body::Chunked => {
            for _ in 0..3 {
                conn.write_all(b"a\r\n0123456789\r\n").await.unwrap();
            }
            conn.write_all(b"0\r\n\r\n").await.unwrap();
        }
        H1Body::Slow => {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                conn.write_all(&body(10)).await.unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_http1_keep_alive_the_request_after_a_denial_with_a_body_is_answered_correctly() {
    let b = bench(None).await;
    wait_keys(&b).await;
    let token = b.issuer.token(json!({}));
    let down = b.down.token();
    let denials: Vec<(String, u16, &str)> = vec![
        ("POST /api/a%2Fb".into(), 400, "bad_request"),
        ("POST /api/x".into(), 401, "missing_token"),
        (
            format!("POST /api/reports/q3\r\nAuthorization: Bearer {token}"),
            403,
            "insufficient_scope",
        ),
        ("POST /nowhere".into(), 404, "no_route"),
        (
            format!("POST /api/x?q={}", "a".repeat(9000)),
            414,
            "uri_too_long",
        ),
        (
            format!("POST /down/x\r\nAuthorization: Bearer {down}"),
            503,
            "keys_unavailable",
        ),
        ("POST /dead/x".into(), 502, "upstream_error"),
        ("POST /silent/x".into(), 504, "upstream_timeout"),
    ];
    let (mut kept, mut closed) = (Vec::new(), Vec::new());
    for (request, status, error) in &denials {
        for shape in [H1Body::Small, H1Body::Large, H1Body::Chunked, H1Body::Slow] {
            let (line, extra) = request.split_once("\r\n").unwrap_or((request, ""));
            let (method, target) = line.split_once(' ').unwrap();
            let extra = if extra.is_empty() {
                String::new()
            } else {
                format!("{extra}\r\n")
            };
            let head = format!("{method} {target} HTTP/1.1\r\nHost: gateway.test\r\n{extra}");
            let mut conn = TcpStream::connect(b.gw.addr).await.unwrap();
            write_h1(&mut conn, &head, shape).await;
            let what = format!("{line} with a {shape:?} body");
            let denied = read_one(&mut conn)
                .await
                .unwrap_or_else(|| panic!("{what}: no answer"));
            if let Err(why) = check_denied(&denied, *status, error) {
                panic!("{what}: {why}");
            }
            if matches!(status, 400 | 502 | 504) {
                // A request that could not be read, or that failed upstream, closes the
                // connection (docs/behaviour.md), and the answer says so.
                assert_eq!(denied.header("connection"), Some("close"), "{what}");
                let mut rest = Vec::new();
                let read =
                    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest));
                assert!(matches!(read.await, Ok(Ok(0))), "{what}: not closed");
                continue;
            }
            assert_eq!(denied.header("connection"), Some("keep-alive"), "{what}");
            // The answer said keep-alive: the next request on the connection is answered as if it
            // came first, or (when the gateway could not keep it after all) the connection
            // closes without a word; never a reply to a request parsed from the leftover body.
            conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
                .await
                .unwrap();
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                while !rest.ends_with(b"}") {
                    let mut buf = [0u8; 4096];
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => rest.extend_from_slice(&buf[..n]),
                    }
                }
            })
            .await;
            if rest.is_empty() {
                closed.push(what);
                continue;
            }
            let next =
                parse_response(&rest).unwrap_or_else(|| panic!("{what}: not an answer: {rest:?}"));
            assert_eq!(next.echo().target, "/healthz", "{what}: the next request");
            kept.push(what);
        }
    }
    eprintln!(
        "HTTP/1.1: {} denials followed by a request on the same connection, {} closed instead: {closed:?}",
        kept.len(),
        closed.len()
    );
    assert!(
        closed.len() * 4 < kept.len(),
        "most connections should carry the next request: closed {closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_http1_a_denied_request_that_waits_for_100_continue_closes_the_connection_at_once() {
    let b = bench(None).await;
    let mut conn = TcpStream::connect(b.gw.addr).await.unwrap();
    conn.write_all(
        b"POST /api/x HTTP/1.1\r\nHost: gateway.test\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n",
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let denied = read_one(&mut conn).await.expect("an answer");
    assert_denied(&denied, 401, "missing_token");
    // The body was never sent: the connection cannot carry another request, and is closed
    // rather than kept waiting for bytes that will not come.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0))),
        "the connection stayed open: {read:?} {rest:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "closed only after {:?}",
        started.elapsed()
    );
}
