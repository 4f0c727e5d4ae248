//! The decision listener (README: "Use it with your ingress"): forward-auth questions in both
//! conventions are judged by the proxy's own engine and answered with its own denials; only
//! `trusted_proxies` are believed; and, with a real nginx (`auth_request`) and a real Caddy
//! (`forward_auth`) started here from the configurations the README gives, one table of
//! requests gets the same statuses and the same upstream-visible identity through each
//! ingress as through the portcullis proxy itself, and a client's `X-Auth-Subject` never
//! reaches the upstream.
mod common;
use common::*;

use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The standard policy with a public area, an admin area and the decision listener, which
/// believes loopback.
async fn forward_auth() -> Setup {
    setup_with(|c, _| {
        c.set("decision_listen", "127.0.0.1:0")
            .set("trusted_proxies", "[127.0.0.1/32]")
            .route_first(Route::new("public", "/public/**").auth("none"))
            .route(Route::new("admin", "/admin/**").scopes("[admin]"))
    })
    .await
}

/// The decision listener's address, from the `listening` line.
async fn decision_addr(gw: &Gateway) -> SocketAddr {
    let log = gw.wait_log("\"message\":\"listening\"").await;
    let line = log
        .lines()
        .find(|l| l.contains("\"message\":\"listening\""))
        .expect("listening line");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["decision"]
        .as_str()
        .unwrap()
        .parse()
        .expect("decision address")
}

/// Request headers, name and value.
type Headers<'a> = Vec<(&'a str, &'a str)>;

/// A forward-auth question in the Traefik / Caddy convention.
fn traefik(method: &'static str, uri: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("Host", "portcullis.internal:8181"),
        ("X-Forwarded-Method", method),
        ("X-Forwarded-Uri", uri),
        ("X-Forwarded-Host", "gateway.test"),
        ("X-Forwarded-Proto", "http"),
    ]
}

/// A forward-auth question in the nginx `auth_request` convention.
fn nginx(method: &'static str, uri: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("Host", "gateway.test"),
        ("X-Original-Method", method),
        ("X-Original-URI", uri),
    ]
}

async fn ask(addr: SocketAddr, mut headers: Vec<(&str, &str)>, bearer: Option<&str>) -> Response {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    request_at(addr, "GET", "/", &headers, "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_request_is_200_with_the_identity_headers_and_nothing_else() {
    let s = forward_auth().await;
    let decision = decision_addr(&s.gw).await;
    let reader = s
        .issuer
        .token(json!({"scope": "read:orders", "email": "a@example.com"}));
    for question in [
        traefik("GET", "/api/orders/7"),
        nginx("GET", "/api/orders/7"),
    ] {
        let mut q = question.clone();
        q.push(("X-Auth-Subject", "admin"));
        let r = ask(decision, q, Some(&reader)).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header_all("x-auth-subject"), ["user-1"]);
        assert_eq!(r.header("x-auth-scopes"), Some("read:orders"));
        assert_eq!(r.header("x-auth-email"), Some("a@example.com"));
        assert!(r.header("authorization").is_none());
        assert!(r.header("x-forwarded-for").is_none());
    }
    // ingress-nginx: the absolute URL, the decision request's Host naming the listener.
    let q = vec![
        ("Host", "portcullis.auth.svc"),
        ("X-Original-Method", "GET"),
        ("X-Original-URL", "http://gateway.test/api/orders/7"),
    ];
    let r = ask(decision, q, Some(&reader)).await;
    assert_eq!(r.header("x-auth-subject"), Some("user-1"));
    // Anonymous on an optional route: allowed, and no identity header at all.
    let r = ask(decision, traefik("GET", "/opt/x"), None).await;
    assert_eq!(r.status, 200);
    assert!(!r.headers.iter().any(|(k, _)| k.starts_with("x-auth")));
    s.gw.wait_metric(
        "portcullis_decision_requests_total{decision=\"allowed\",route=\"orders-read\"}",
        3.0,
    )
    .await;
    s.gw.wait_log("\"listener\":\"decision\"").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_is_the_proxys_own_status_body_and_challenge() {
    let s = forward_auth().await;
    let decision = decision_addr(&s.gw).await;
    let other = s.issuer.token(json!({"scope": "other"}));
    let expired = s
        .issuer
        .token(json!({"exp": now() - 3600, "iat": now() - 7200}));
    let cases: [(&'static str, &'static str, Option<&str>, u16, &str); 6] = [
        ("GET", "/api/orders/7", None, 401, "missing_token"),
        (
            "GET",
            "/api/orders/7",
            Some(&other),
            403,
            "insufficient_scope",
        ),
        ("GET", "/api/orders/7", Some(&expired), 401, "invalid_token"),
        ("GET", "/public/../admin/x", None, 401, "missing_token"),
        ("GET", "/api/%2e%2e%2fadmin", None, 400, "bad_request"),
        ("get", "/api/orders/7", None, 400, "bad_request"),
    ];
    for (method, uri, token, status, error) in cases {
        let proxy = match token {
            Some(t) => {
                s.gw.request(
                    method,
                    uri,
                    &[("Authorization", &format!("Bearer {t}"))],
                    "",
                )
                .await
            }
            None => s.gw.request(method, uri, &[], "").await,
        };
        assert_denied(&proxy, status, error);
        for question in [traefik(method, uri), nginx(method, uri)] {
            let r = ask(decision, question, token).await;
            assert_denied(&r, status, error);
            assert_eq!(r.body, proxy.body, "{method} {uri}");
            assert_eq!(
                r.header("www-authenticate"),
                proxy.header("www-authenticate")
            );
        }
    }
    // A route the described request does not have: 404, as from the proxy.
    let r = ask(decision, traefik("GET", "/nowhere"), None).await;
    assert_denied(&r, 404, "no_route");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_description_is_400() {
    let s = forward_auth().await;
    let decision = decision_addr(&s.gw).await;
    let reader = s.issuer.token(json!({"scope": "read:orders"}));
    let r = ask(decision, vec![("Host", "gateway.test")], Some(&reader)).await;
    assert_denied(&r, 400, "bad_request");
    let r = ask(decision, vec![("X-Original-Method", "GET")], Some(&reader)).await;
    assert_denied(&r, 400, "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_description_from_outside_trusted_proxies_is_400() {
    let s = setup_with(|c, _| {
        c.set("decision_listen", "127.0.0.1:0")
            .set("trusted_proxies", "[10.0.0.0/8]")
    })
    .await;
    let reader = s.issuer.token(json!({"scope": "read:orders"}));
    let r = ask(
        decision_addr(&s.gw).await,
        traefik("GET", "/api/orders/7"),
        Some(&reader),
    )
    .await;
    assert_denied(&r, 400, "bad_request");
    assert!(r.header("x-auth-subject").is_none());
}

#[test]
fn a_decision_listener_without_trusted_proxies_does_not_load() {
    let yaml = Config::new()
        .upstream("app", "http://127.0.0.1:1")
        .route(Route::new("all", "/**").auth("none"))
        .set("decision_listen", "127.0.0.1:8181")
        .yaml();
    let (ok, text) = check_config(&yaml);
    assert!(!ok, "{text}");
    assert!(
        text.contains("decision_listen") && text.contains("trusted_proxies"),
        "{text}"
    );
}

// ---- Real ingresses ------------------------------------------------------------------------

/// The README's nginx configuration, between its markers (the doc is the test's input).
fn readme_block(marker: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = format!("<!-- {marker} -->");
    let from = readme
        .find(&start)
        .unwrap_or_else(|| panic!("no {start} in README.md"));
    let rest = &readme[from + start.len()..];
    let fence = rest.find("```").expect("a code block after the marker");
    let body = &rest[fence..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").expect("closing fence")].to_string()
}

/// A process the test started; stopped when dropped.
struct Ingress {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Ingress {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary(name: &str) -> String {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"] {
        let p = format!("{dir}/{name}");
        if Path::new(&p).exists() {
            return p;
        }
    }
    panic!("{name} is not installed (Debian: apt-get install {name}); .ci/run installs it")
}

fn wait_listening(child: &mut Child, addr: SocketAddr, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "{what} never listened on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// nginx with the README's `auth_request` server block in front of `echo`, asking `decision`.
fn start_nginx(echo: SocketAddr, decision: SocketAddr) -> Ingress {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // Nobody listens there now: the ingress binds it.
    let port = dead_port().port();
    let server = readme_block("nginx")
        .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
        .replace("127.0.0.1:8181", &decision.to_string())
        .replace("http://app:8080", &format!("http://{echo}"));
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         {server}\n}}\n"
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let mut child = Command::new(binary("nginx"))
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(&mut child, addr, "nginx", &dir.path().join("error.log"));
    Ingress {
        child,
        addr,
        _dir: dir,
    }
}

/// Caddy with the README's `forward_auth` site in front of `echo`, asking `decision`.
fn start_caddy(echo: SocketAddr, decision: SocketAddr) -> Ingress {
    let dir = tempfile::tempdir().unwrap();
    // Nobody listens there now: the ingress binds it.
    let port = dead_port().port();
    let site = readme_block("caddy")
        .replace(
            "http://:80 {",
            &format!("http://:{port} {{\n\tbind 127.0.0.1"),
        )
        .replace("127.0.0.1:8181", &decision.to_string())
        .replace("app:8080", &echo.to_string());
    let conf = format!("{{\n  admin off\n  auto_https off\n}}\n{site}");
    let path = dir.path().join("Caddyfile");
    std::fs::write(&path, conf).unwrap();
    let log = dir.path().join("caddy.log");
    let mut child = Command::new(binary("caddy"))
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&path)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start caddy");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(&mut child, addr, "caddy", &log);
    Ingress {
        child,
        addr,
        _dir: dir,
    }
}

/// What one request came to: the status, and for a forwarded one the identity the upstream
/// saw (`x-auth-subject`, `x-auth-scopes`).
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    subject: Option<String>,
    scopes: Option<String>,
}

async fn through(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Seen {
    let r = request_at(addr, "GET", target, headers, "").await;
    if r.status != 200 {
        return Seen {
            status: r.status,
            subject: None,
            scopes: None,
        };
    }
    assert!(!r.body.is_empty(), "{addr} {target}: {r:?}");
    let echo = r.echo();
    Seen {
        status: 200,
        subject: echo
            .header_all("x-auth-subject")
            .first()
            .map(|s| s.to_string()),
        scopes: echo
            .header_all("x-auth-scopes")
            .first()
            .map(|s| s.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_and_caddy_in_front_give_the_proxys_answers() {
    let s = forward_auth().await;
    let decision = decision_addr(&s.gw).await;
    let nginx = start_nginx(s.echo, decision);
    let caddy = start_caddy(s.echo, decision);

    let reader = format!("Bearer {}", s.issuer.token(json!({"scope": "read:orders"})));
    let other = format!("Bearer {}", s.issuer.token(json!({"scope": "other"})));
    let expired = format!(
        "Bearer {}",
        s.issuer
            .token(json!({"exp": now() - 3600, "iat": now() - 7200}))
    );
    let table: Vec<(&str, &str, Headers, u16)> = vec![
        (
            "valid token",
            "/api/orders/7",
            vec![("Authorization", &reader)],
            200,
        ),
        ("no token", "/api/orders/7", vec![], 401),
        (
            "missing scope",
            "/api/orders/7",
            vec![("Authorization", &other)],
            403,
        ),
        (
            "expired",
            "/api/orders/7",
            vec![("Authorization", &expired)],
            401,
        ),
        (
            "spoofed identity with a token",
            "/api/orders/7",
            vec![("Authorization", &reader), ("X-Auth-Subject", "admin")],
            200,
        ),
        (
            "spoofed identity on a public route",
            "/public/x",
            vec![("X-Auth-Subject", "admin"), ("X-Auth-Scopes", "admin")],
            200,
        ),
        (
            "climbing out of the public area",
            "/public/../admin/x",
            vec![],
            401,
        ),
    ];
    for (what, target, headers, status) in &table {
        let proxy = through(s.gw.addr, target, headers).await;
        assert_eq!(proxy.status, *status, "{what}: the proxy");
        if *status == 200 && !target.starts_with("/public") {
            assert_eq!(proxy.subject.as_deref(), Some("user-1"), "{what}");
        }
        for (name, ingress) in [("nginx", &nginx), ("caddy", &caddy)] {
            let seen = through(ingress.addr, target, headers).await;
            assert_eq!(seen, proxy, "{what}: {name} + portcullis against the proxy");
            assert_ne!(seen.subject.as_deref(), Some("admin"), "{what}: {name}");
        }
    }
    // A client that writes a description of its own (another convention's headers, a URL)
    // for a request to the admin area is never let through.
    let spoofs: [&[(&str, &str)]; 3] = [
        &[
            ("X-Original-Method", "GET"),
            ("X-Original-URI", "/public/x"),
        ],
        &[
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/public/x"),
        ],
        &[("X-Original-URL", "http://gateway.test/public/x")],
    ];
    for spoof in spoofs {
        for (name, ingress) in [("nginx", &nginx), ("caddy", &caddy)] {
            let seen = through(ingress.addr, "/admin/x", spoof).await;
            assert!(
                seen.status == 401 || seen.status == 400 || seen.status == 500,
                "{spoof:?} through {name}: {seen:?}"
            );
        }
    }
}

// ---- Envoy ext_authz ---------------------------------------------------------------------

mod ext_authz {
    use super::*;
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
    use envoy_types::pb::envoy::service::auth::v3::{
        AttributeContext, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
    };

    /// What Envoy sends about a client's request.
    fn check_request(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
        let mut map: std::collections::HashMap<String, String> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        map.insert(":authority".into(), "gateway.test".into());
        map.insert(":path".into(), path.into());
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: method.into(),
                        path: path.into(),
                        host: "gateway.test".into(),
                        scheme: "http".into(),
                        headers: map,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    async fn check(addr: SocketAddr, request: CheckRequest) -> CheckResponse {
        let mut client = AuthorizationClient::connect(format!("http://{addr}"))
            .await
            .expect("h2c connection to the decision listener");
        client
            .check(request)
            .await
            .expect("a CheckResponse")
            .into_inner()
    }

    fn ok(r: &CheckResponse) -> &OkHttpResponse {
        assert_eq!(r.status.as_ref().unwrap().code, 0, "{r:?}");
        match r.http_response.as_ref() {
            Some(HttpResponse::OkResponse(ok)) => ok,
            other => panic!("not an OK response: {other:?}"),
        }
    }

    fn denied(r: &CheckResponse) -> &DeniedHttpResponse {
        match r.http_response.as_ref() {
            Some(HttpResponse::DeniedResponse(d)) => d,
            other => panic!("not a denied response: {other:?}"),
        }
    }

    fn set(ok: &OkHttpResponse) -> Vec<(String, String, i32)> {
        ok.headers
            .iter()
            .map(|h| {
                let hv = h.header.as_ref().unwrap();
                (hv.key.clone(), hv.value.clone(), h.append_action)
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_allowed_check_sets_the_identity_and_removes_what_the_proxy_strips() {
        use envoy_types::ext_authz::v3::pb::HeaderAppendAction;
        let s = forward_auth().await;
        let decision = decision_addr(&s.gw).await;
        let reader = format!("Bearer {}", s.issuer.token(json!({"scope": "read:orders"})));
        let r = check(
            decision,
            check_request(
                "GET",
                "/api/orders/7?x=1",
                &[("authorization", &reader), ("x-auth-roles", "admin")],
            ),
        )
        .await;
        let allowed = ok(&r);
        let overwrite = HeaderAppendAction::OverwriteIfExistsOrAdd as i32;
        let set = set(allowed);
        assert!(
            set.contains(&("x-auth-subject".into(), "user-1".into(), overwrite)),
            "{set:?}"
        );
        assert!(
            set.contains(&("x-auth-scopes".into(), "read:orders".into(), overwrite)),
            "{set:?}"
        );
        let removed = &allowed.headers_to_remove;
        assert!(
            removed.contains(&"authorization".to_string()),
            "{removed:?}"
        );
        assert!(removed.contains(&"x-auth-roles".to_string()), "{removed:?}");
        assert!(
            !removed.contains(&"x-auth-subject".to_string()),
            "{removed:?}"
        );

        // Anonymous: nothing set, the client's identity header removed.
        let r = check(
            decision,
            check_request("GET", "/opt/x", &[("x-auth-subject", "admin")]),
        )
        .await;
        let anonymous = ok(&r);
        assert!(anonymous.headers.is_empty(), "{:?}", anonymous.headers);
        let removed = &anonymous.headers_to_remove;
        assert!(
            removed.contains(&"x-auth-subject".to_string()),
            "{removed:?}"
        );
        assert!(
            removed
                .iter()
                .all(|h| h == "x-auth-subject" || h == "authorization"),
            "{removed:?}"
        );
        s.gw.wait_metric(
            "portcullis_decision_requests_total{decision=\"anonymous\",route=\"optional\"}",
            1.0,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_denied_check_carries_the_proxys_status_body_and_challenge() {
        let s = forward_auth().await;
        let decision = decision_addr(&s.gw).await;
        let other = format!("Bearer {}", s.issuer.token(json!({"scope": "other"})));
        let cases: [(&str, Headers, u16, i32); 3] = [
            ("/api/orders/7", vec![], 401, 16),
            (
                "/api/orders/7",
                vec![("authorization", other.as_str())],
                403,
                7,
            ),
            ("/nowhere", vec![], 404, 7),
        ];
        for (path, headers, status, grpc) in cases {
            let proxy = s.gw.request("GET", path, &headers, "").await;
            assert_eq!(proxy.status, status);
            let r = check(decision, check_request("GET", path, &headers)).await;
            assert_eq!(r.status.as_ref().unwrap().code, grpc, "{path}: {r:?}");
            let d = denied(&r);
            assert_eq!(d.status.as_ref().unwrap().code, i32::from(status), "{path}");
            assert_eq!(d.body.as_bytes(), proxy.body.as_slice(), "{path}");
            let header = |name: &str| {
                d.headers
                    .iter()
                    .filter_map(|h| h.header.as_ref())
                    .find(|h| h.key == name)
                    .map(|h| h.value.clone())
            };
            assert_eq!(
                header("www-authenticate").as_deref(),
                proxy.header("www-authenticate")
            );
            assert_eq!(header("content-type").as_deref(), Some("application/json"));
        }
        // No HTTP attributes at all: a denial, never an error Envoy might fail open on.
        let r = check(decision, CheckRequest::default()).await;
        assert_eq!(denied(&r).status.as_ref().unwrap().code, 400);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_decision_listener_until_the_restart() {
    let issuer = TestIssuer::start().await;
    let echo = start_echo().await;
    let yaml = |listen: &str, route: &str| {
        standard_config(&issuer.url(), echo)
            .set("decision_listen", listen)
            .set("trusted_proxies", "[127.0.0.1/32]")
            .route_first(Route::new("new", route).auth("none"))
            .yaml()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.yaml");
    std::fs::write(&path, yaml("127.0.0.1:0", "/before")).unwrap();
    let gw = start_gateway_at(&path, &[]);
    gw.wait_ready().await;
    let decision = decision_addr(&gw).await;
    // A complete new file, renamed into place: another decision address and a new route.
    let next = dir.path().join("next.yaml");
    std::fs::write(&next, yaml("127.0.0.1:1", "/after")).unwrap();
    std::fs::rename(&next, &path).unwrap();
    gw.wait_metric("portcullis_config_generation", 2.0).await;
    gw.wait_log("\"setting\":\"decision_listen\"").await;
    // The new policy answers on the listener the server started with.
    let r = ask(decision, traefik("GET", "/after"), None).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}
