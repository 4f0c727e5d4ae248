//! The differential oracle: what real upstream parsers read of the requests the gateway
//! forwards. Generated requests (percent-encoded and PHP-mangled parameter and cookie names,
//! `+`, `;` and `,` separators, repeated parameters and cookies, `[]` suffixes, mixed case,
//! non-ASCII and obs-text bytes, many small headers, cookie crumbs, spoofed identity headers in
//! `_` and case variants) go through the real gateway over HTTP/1.1 and HTTP/2 to an upstream
//! that answers with the exact head it received. That head is then read by:
//!
//! - Python: a real `http.server` upstream, `urllib.parse.parse_qsl`, `http.cookies`
//!   (tests/oracle/reader.py);
//! - PHP: `php -S` with a router script, `$_GET`, `$_COOKIE`, `getallheaders()`,
//!   `$_SERVER['HTTP_*']` (tests/oracle/reader.php);
//! - Node: a real `node:http` upstream, `URLSearchParams`, the `cookie` package from npm
//!   (tests/oracle/node);
//! - Rust: `form_urlencoded` and the `cookie` crate, in this process.
//!
//! For every reader: each value it takes as the token (a parameter or cookie called
//! `access_token`, in any case) is the token the gateway verified, on a request it
//! authenticated; each identity or forwarding header it sees (any case, `_` or `-`) is one the
//! gateway set. A reader whose runtime is missing is skipped with a loud message.
//!
//! `ORACLE_CASES` (default 1000 per protocol) and `ORACLE_SEED` run it longer or otherwise by
//! hand. Each failure found became a named case in tests/adversarial.
mod common;
use common::*;

use jsonwebtoken::Algorithm;
use portcullis::demo::keys::SigningKey;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcp};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The token cookie and query parameter of the gateways under test.
const NAME: &str = "access_token";

/// Identity headers (the standard config's): seen only on a request the gateway authenticated,
/// with its values.
const IDENTITY: [&str; 6] = [
    "x-auth-subject",
    "x-auth-email",
    "x-auth-scopes",
    "x-auth-roles",
    "x-user-org",
    "x-auth-claims",
];

/// Forwarding headers the gateway sets or removes: seen only with its values. (`X-Request-Id`
/// is not one: a client's short printable id is kept on purpose.)
const FORWARDING: [&str; 5] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-real-ip",
];

fn oracle_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle")
}

/// A reader process: a real HTTP server of its language on loopback, killed when dropped.
struct Reader {
    name: &'static str,
    addr: SocketAddr,
    child: Child,
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn skipped(what: &str, why: &str) {
    eprintln!(
        "\n!!!!!!!! {what} is missing: the oracle's {why} reader is SKIPPED. \
         Install it (.ci/run does) to run the whole oracle. !!!!!!!!\n"
    );
}

/// Start a reader that prints its port on its first line.
fn spawn_printing_port(name: &'static str, mut cmd: Command) -> Reader {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start the {name} reader: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name} reader printed {line:?}"));
    Reader {
        name,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        child,
    }
}

fn start_readers() -> Vec<Reader> {
    let dir = oracle_dir();
    let mut readers = Vec::new();
    if runs("python3") {
        let mut cmd = Command::new("python3");
        cmd.arg(dir.join("reader.py"));
        readers.push(spawn_printing_port("python", cmd));
    } else {
        skipped("python3", "Python (parse_qsl, http.cookies)");
    }
    if runs("php") {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("php")
            .args(["-n", "-S", &format!("127.0.0.1:{port}")])
            .arg(dir.join("reader.php"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("php -S");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        while StdTcp::connect(addr).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "php -S not up");
            std::thread::sleep(Duration::from_millis(20));
        }
        readers.push(Reader {
            name: "php",
            addr,
            child,
        });
    } else {
        skipped("php-cli", "PHP ($_GET, $_COOKIE, getallheaders)");
    }
    let node = dir.join("node");
    if runs("node") {
        if !node.join("node_modules/cookie").is_dir() {
            let ok = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&node)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "npm ci in tests/oracle/node failed");
        }
        let mut cmd = Command::new("node");
        cmd.arg("reader.js").current_dir(&node);
        readers.push(spawn_printing_port("node", cmd));
    } else {
        skipped("Node.js", "Node (URLSearchParams, cookie)");
    }
    readers
}

/// What one reader took from a request.
#[derive(Debug, Default)]
struct Reading {
    query: Vec<(String, String)>,
    cookies: Vec<(String, String)>,
    headers: Vec<(String, String)>,
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Send the head the upstream received to a reader; `None` if it refused the request.
fn read_with(reader: &Reader, head: &[u8]) -> Option<Reading> {
    let mut s = StdTcp::connect(reader.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head).unwrap();
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let r = parse_response(&buf)?;
    if r.status != 200 {
        return None;
    }
    let mut body = r.body.as_slice();
    if let Some(len) = r
        .header("content-length")
        .and_then(|l| l.parse::<usize>().ok())
    {
        body = &body[..len.min(body.len())];
    }
    let v: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "{} reader answered {e}: {}",
            reader.name,
            String::from_utf8_lossy(&r.body)
        )
    });
    Some(Reading {
        query: pairs(&v["query"]),
        cookies: pairs(&v["cookies"]),
        headers: pairs(&v["headers"]),
    })
}

/// A header line as bytes: `(name, value)`.
type Field = (Vec<u8>, Vec<u8>);

/// A head as bytes: request line, then its header lines.
fn split_head(head: &[u8]) -> (Vec<u8>, Vec<Field>) {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or_default().to_vec();
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let colon = l.iter().position(|&b| b == b':')?;
            let value = &l[colon + 1..];
            let start = value.iter().position(|b| !matches!(b, b' ' | b'\t'));
            let value = start.map_or(&[][..], |s| &value[s..]);
            Some((l[..colon].to_vec(), value.to_vec()))
        })
        .collect();
    (request_line, headers)
}

/// Rust's reading: `form_urlencoded` for the query, the `cookie` crate (percent-decoding) for
/// each `Cookie` header, the header lines as received.
fn read_in_rust(head: &[u8]) -> Reading {
    let (line, headers) = split_head(head);
    let line = String::from_utf8_lossy(&line).into_owned();
    let target = line.split(' ').nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut reading = Reading {
        query: form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        ..Reading::default()
    };
    for (name, value) in &headers {
        let name = String::from_utf8_lossy(name).into_owned();
        let value = String::from_utf8_lossy(value).into_owned();
        if name.eq_ignore_ascii_case("cookie") {
            for c in cookie::Cookie::split_parse_encoded(value.clone()).flatten() {
                reading
                    .cookies
                    .push((c.name().to_string(), c.value().to_string()));
            }
        }
        reading.headers.push((name, value));
    }
    reading
}

/// One generated request.
#[derive(Debug, Clone)]
struct Shape {
    path: &'static str,
    query: Vec<u8>,
    /// Header fields in order; over HTTP/2 each `cookie` is its own field (a crumb).
    headers: Vec<(String, Vec<u8>)>,
}

impl Shape {
    fn target(&self) -> Vec<u8> {
        let mut t = self.path.as_bytes().to_vec();
        if !self.query.is_empty() {
            t.push(b'?');
            t.extend_from_slice(&self.query);
        }
        t
    }

    fn http1(&self) -> Vec<u8> {
        let mut raw = b"GET ".to_vec();
        raw.extend_from_slice(&self.target());
        raw.extend_from_slice(b" HTTP/1.1\r\nHost: gateway.test\r\n");
        for (k, v) in &self.headers {
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(b": ");
            raw.extend_from_slice(v);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"Connection: close\r\n\r\n");
        raw
    }

    fn describe(&self) -> String {
        let mut s = format!("GET {}", String::from_utf8_lossy(&self.target()));
        for (k, v) in &self.headers {
            s.push_str(&format!("\n      {k}: {}", v.escape_ascii()));
        }
        s
    }
}

/// The pieces requests are made of.
struct Pools {
    good: String,
    forged: String,
}

const QUERY_NAMES: [&str; 18] = [
    "access_token",
    "access_token",
    "%61ccess_token",
    "access%5ftoken",
    "access%5Ftoken",
    "access.token",
    "access+token",
    "access%20token",
    "access_token[]",
    "access_token[x]",
    "access[token",
    "ACCESS_TOKEN",
    "Access_Token",
    "+access_token",
    "access_token%00",
    "access_tokens",
    "a",
    "x",
];

/// `QUERY_NAMES[..QUERY_TOKEN_NAMES]` are spellings of the token parameter.
const QUERY_TOKEN_NAMES: usize = 15;

/// `COOKIE_NAMES[..COOKIE_TOKEN_NAMES]` are spellings of the token cookie.
const COOKIE_TOKEN_NAMES: usize = 8;

const COOKIE_NAMES: [&str; 12] = [
    "access_token",
    "access_token",
    "Access_Token",
    "access.token",
    "access token",
    "%61ccess_token",
    " access_token",
    "access_token[]",
    "\"access_token\"",
    "a",
    "b",
    "$access_token",
];

const SPOOFED: [&str; 14] = [
    "X-Auth-Subject",
    "x_auth_subject",
    "X_AUTH_SUBJECT",
    "x-auth_subject",
    "X-AUTH-SUBJECT",
    "X-Auth-Claims",
    "x_auth_claims",
    "X-User-Org",
    "x_user_org",
    "X-Forwarded-For",
    "x_forwarded_for",
    "X-Request-Id",
    "x_request_id",
    "X_Real_IP",
];

impl Pools {
    /// `text` with the tokens written `<good>` and `<forged>`, for reading failures.
    fn shorten(&self, text: &str) -> String {
        text.replace(&self.good, "<good>")
            .replace(&self.good.replace('.', "%2E"), "<good%2E>")
            .replace(&self.forged, "<forged>")
    }

    fn value(&self, rng: &mut StdRng, in_cookie: bool) -> Vec<u8> {
        let pick = rng.random_range(0..if in_cookie { 10 } else { 8 });
        match pick {
            0 | 1 => self.good.clone().into_bytes(),
            2 | 3 => self.forged.clone().into_bytes(),
            4 => Vec::new(),
            5 => b"1".to_vec(),
            // Percent-encoded dots: the same token to a decoding reader.
            6 => self.good.replace('.', "%2E").into_bytes(),
            7 => format!("{}+x", self.forged).into_bytes(),
            8 => format!("\"{}\"", self.forged).into_bytes(),
            _ => {
                [b"x\xe9".as_slice(), b"\xff\xfe", b"caf\xc3\xa9"][rng.random_range(0..3)].to_vec()
            }
        }
    }

    /// A request with one good token in one carrier under one of its spellings, among
    /// parameters and cookies of other names: what a real client sends, read by the readers.
    fn clean(&self, rng: &mut StdRng) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
        let mut params: Vec<Vec<u8>> = (0..rng.random_range(0..3))
            .map(|i| {
                format!(
                    "{}={i}",
                    ["a", "x", "access_tokens", "token"][rng.random_range(0..4)]
                )
                .into_bytes()
            })
            .collect();
        let mut cookies: Vec<Vec<u8>> = (0..rng.random_range(0..3))
            .map(|i| {
                let mut c =
                    format!("{}=", ["a", "theme", "sessions"][rng.random_range(0..3)]).into_bytes();
                c.extend_from_slice(if i == 0 { b"caf\xe9" } else { b"1" });
                c
            })
            .collect();
        let mut headers = Vec::new();
        match rng.random_range(0..3) {
            0 => {
                let name = QUERY_NAMES[rng.random_range(0..QUERY_TOKEN_NAMES)];
                let value = if rng.random_bool(0.5) {
                    self.good.clone()
                } else {
                    self.good.replace('.', "%2E")
                };
                let at = rng.random_range(0..=params.len());
                params.insert(at, format!("{name}={value}").into_bytes());
            }
            1 => {
                let name = COOKIE_NAMES[rng.random_range(0..COOKIE_TOKEN_NAMES)];
                let at = rng.random_range(0..=cookies.len());
                cookies.insert(at, format!("{name}={}", self.good).into_bytes());
            }
            _ => headers.push((
                "Authorization".to_string(),
                format!("Bearer {}", self.good).into_bytes(),
            )),
        }
        if !cookies.is_empty() {
            headers.push(("Cookie".to_string(), cookies.join(&b"; "[..])));
        }
        (params.join(&b"&"[..]), headers)
    }

    fn shape(&self, rng: &mut StdRng, h2: bool) -> Shape {
        let path = ["/healthz", "/opt/x", "/api/x"][rng.random_range(0..3)];
        if rng.random_bool(0.3) {
            let (query, mut headers) = self.clean(rng);
            if h2 {
                for (k, _) in &mut headers {
                    *k = k.to_ascii_lowercase();
                }
            }
            return Shape {
                path,
                query,
                headers,
            };
        }
        let mut query = Vec::new();
        for i in 0..rng.random_range(0..4) {
            if i > 0 {
                query.extend_from_slice([b"&", b"&", b";"][rng.random_range(0..3)]);
            }
            query.extend_from_slice(QUERY_NAMES[rng.random_range(0..QUERY_NAMES.len())].as_bytes());
            query.push(b'=');
            let v = self.value(rng, false);
            query.extend(v.iter().copied().filter(u8::is_ascii_graphic));
        }
        let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
        match rng.random_range(0..6) {
            0 => headers.push((
                "Authorization".into(),
                format!("Bearer {}", self.good).into(),
            )),
            1 => headers.push((
                "Authorization".into(),
                format!("Bearer {}", self.forged).into(),
            )),
            2 => headers.push(("Authorization".into(), b"Basic dTpw".to_vec())),
            _ => {}
        }
        for _ in 0..rng.random_range(0..3) {
            let mut value = Vec::new();
            for i in 0..rng.random_range(1..4) {
                if i > 0 {
                    value
                        .extend_from_slice([&b"; "[..], b";", b", ", b" "][rng.random_range(0..4)]);
                }
                value.extend_from_slice(
                    COOKIE_NAMES[rng.random_range(0..COOKIE_NAMES.len())].as_bytes(),
                );
                value.push(b'=');
                value.extend(self.value(rng, true));
            }
            headers.push(("Cookie".into(), value));
        }
        for _ in 0..rng.random_range(0..3) {
            let name = SPOOFED[rng.random_range(0..SPOOFED.len())];
            let value: &[u8] = if rng.random_bool(0.7) {
                b"forged"
            } else {
                b"forged\xe9"
            };
            headers.push((name.into(), value.to_vec()));
        }
        for i in 0..rng.random_range(0..12) {
            headers.push((format!("x-p{i}"), b"v".to_vec()));
        }
        if rng.random_bool(0.2) {
            headers.push(("X-Other".into(), b"caf\xe9".to_vec()));
        }
        // Shuffle so that spoofed headers come before and after the rest.
        for i in (1..headers.len()).rev() {
            headers.swap(i, rng.random_range(0..=i));
        }
        if h2 {
            for (k, _) in &mut headers {
                *k = k.to_ascii_lowercase();
            }
        }
        Shape {
            path,
            query,
            headers,
        }
    }
}

/// An upstream that answers every request with the exact head it received.
async fn start_mirror() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let mut chunk = [0u8; 16384];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head: Vec<u8> = buf.drain(..end + 4).collect();
                    let mut reply =
                        format!("HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n", head.len())
                            .into_bytes();
                    reply.extend_from_slice(&head);
                    if s.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Send a shape over HTTP/2 (prior knowledge); `(status, body)`.
async fn send_h2(addr: SocketAddr, shape: &Shape) -> Result<(u16, Vec<u8>), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (client, connection) = h2::client::handshake(tcp)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let mut client = client.ready().await.map_err(|e| e.to_string())?;
    let uri = format!(
        "http://gateway.test{}",
        String::from_utf8_lossy(&shape.target())
    );
    let mut request = http::Request::builder().method("GET").uri(uri);
    for (k, v) in &shape.headers {
        let value = http::HeaderValue::from_bytes(v).map_err(|e| e.to_string())?;
        request = request.header(k.as_str(), value);
    }
    let request = request.body(()).map_err(|e| e.to_string())?;
    let (response, _) = client
        .send_request(request, true)
        .map_err(|e| e.to_string())?;
    let response = response.await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    Ok((status, data))
}

/// `X_Auth-Subject` → `x-auth-subject`; PHP's `$_SERVER` keys come without `HTTP_`.
fn dashed(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// Judge one reading: each failure as a line.
fn judge(who: &str, reading: &Reading, good: &str, authenticated: bool) -> Vec<String> {
    let mut out = Vec::new();
    for (what, list) in [("parameter", &reading.query), ("cookie", &reading.cookies)] {
        for (k, v) in list {
            if k.eq_ignore_ascii_case(NAME) && (v != good || !authenticated) {
                let why = if v == good {
                    "the verified token on a request the gateway did not authenticate"
                } else {
                    "a token the gateway did not verify"
                };
                out.push(format!("{who} reads {what} {k}={v:?}: {why}"));
            }
        }
    }
    for (k, v) in &reading.headers {
        let n = dashed(k);
        if !IDENTITY.contains(&n.as_str()) && !FORWARDING.contains(&n.as_str()) {
            continue;
        }
        if v.contains("forged") {
            out.push(format!("{who} sees header {k}: {v:?}, not the gateway's"));
        } else if IDENTITY.contains(&n.as_str()) && !authenticated {
            out.push(format!(
                "{who} sees identity header {k}: {v:?} on an unauthenticated request"
            ));
        }
    }
    out
}

/// The gateway authenticated the request: it set the verified subject (forged values are
/// never `user-1`).
fn authenticated(head: &[u8]) -> bool {
    let (_, headers) = split_head(head);
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(b"x-auth-subject"))
        .map(|(_, v)| v.as_slice())
        .eq([&b"user-1"[..]])
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_parser_reads_only_the_verified_token_and_the_gateways_identity_headers() {
    let readers = start_readers();
    let issuer = TestIssuer::start().await;
    let mirror = start_mirror().await;
    let gateway = |forward: bool| {
        let mut c = standard_config(&issuer.url(), mirror).set(
            "token_sources",
            &format!("{{ cookie: {NAME}, query: {NAME} }}"),
        );
        if forward {
            c = c.identity("forward_token", "true");
        }
        start_gateway(&c.yaml())
    };
    let gateways = [gateway(false), gateway(true)];
    for gw in &gateways {
        gw.wait_ready().await;
    }
    // A token of a key the issuer never published, with the same kid: forged.
    let stranger = SigningKey::generate("rs", Algorithm::RS256);
    let pools = Pools {
        good: issuer.token(json!({})),
        forged: stranger.mint(&issuer.claims(json!({"sub": "forged"}))),
    };

    let cases = env_number("ORACLE_CASES", 1000);
    let seed = env_number("ORACLE_SEED", 19);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut failures: Vec<String> = Vec::new();
    let mut forwarded = 0;
    let mut read_tokens = 0;
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for i in 0..cases * 2 {
        let h2 = i % 2 == 1;
        let forward = (i / 2) % 2 == 1;
        let gw = &gateways[usize::from(forward)];
        let shape = pools.shape(&mut rng, h2);
        let (status, body) = if h2 {
            match send_h2(gw.addr, &shape).await {
                Ok(r) => r,
                // The h2 client refused to send it (a field it cannot encode): not a case.
                Err(_) => continue,
            }
        } else {
            let r = send_raw(gw.addr, &shape.http1()).await;
            (r.status, r.body)
        };
        *statuses.entry(status).or_default() += 1;
        let label = format!(
            "case {i} ({}, forward_token {forward}): {}",
            if h2 { "h2" } else { "http/1.1" },
            shape.describe()
        );
        if status >= 500 {
            failures.push(pools.shorten(&format!("{label}\n    gateway answered {status}")));
            continue;
        }
        if status != 200 {
            continue;
        }
        forwarded += 1;
        let head = body;
        let authenticated = authenticated(&head);
        let mut found = judge("rust", &read_in_rust(&head), &pools.good, authenticated);
        for reader in &readers {
            if let Some(reading) = read_with(reader, &head) {
                read_tokens += reading
                    .query
                    .iter()
                    .chain(&reading.cookies)
                    .filter(|(k, _)| k.eq_ignore_ascii_case(NAME))
                    .count();
                found.extend(judge(reader.name, &reading, &pools.good, authenticated));
            }
        }
        if !found.is_empty() {
            failures.push(pools.shorten(&format!(
                "{label}\n    upstream received:\n      {}\n    {}",
                String::from_utf8_lossy(&head)
                    .trim_end()
                    .replace("\r\n", "\n      "),
                found.join("\n    ")
            )));
        }
    }
    let names: Vec<&str> = readers.iter().map(|r| r.name).collect();
    let limit = env_number("ORACLE_SHOW", 15) as usize;
    eprintln!(
        "oracle: seed {seed}, {} requests, {forwarded} forwarded, statuses {statuses:?}, \
         {read_tokens} token reads by {names:?} + rust",
        cases * 2
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests were read otherwise upstream (seed {seed}):\n{}",
        failures.len(),
        cases * 2,
        failures[..failures.len().min(limit)].join("\n\n")
    );
    // The generator must reach the upstream with tokens, or the oracle proves nothing.
    assert!(forwarded > cases / 4, "only {forwarded} requests forwarded");
    assert!(read_tokens > 0, "no reader ever read a token");
}
