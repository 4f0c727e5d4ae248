//! The offline policy tools through the real binary: `check` (refusals and warnings, offline),
//! `explain` (JSON of each kind of decision), `test` (the shipped example, a failing case, an
//! unreadable case file), and one test that sends the same requests to a running gateway and
//! through `test`, and finds the same status and route.
mod common;
use common::*;
use jsonwebtoken::Algorithm;
use portcullis::demo::keys::{jwks, SigningKey};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml");
const EXAMPLE_CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/policy-tests.example.yaml");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", self.stdout, self.stderr))
    }
}

fn portcullis(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .env_remove("PORTCULLIS_TEST_SECRET")
        .output()
        .expect("run portcullis");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// A file in a temp dir (kept alive by the returned guard).
fn file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const HEAD: &str = "\
listen: 127.0.0.1:0
upstreams:
  app: { url: http://127.0.0.1:3000 }
issuers:
  main:
    issuer: https://main.example/
    jwks_uri: https://main.example/jwks
    audiences: [api]
routes:
";

fn check_json(routes: &str, extra: &[&str]) -> (Run, Value) {
    let (_dir, path) = file("policy.yaml", &format!("{HEAD}{routes}"));
    let mut args = vec!["check", "-c", s(&path), "--format", "json"];
    args.extend_from_slice(extra);
    let run = portcullis(&args);
    let v = run.json();
    (run, v)
}

#[test]
fn check_is_quiet_on_the_example_config() {
    let run = portcullis(&["check", "-c", EXAMPLE]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.ends_with(" routes, 1 issuer, 1 upstream)\n"),
        "{}",
        run.stdout
    );
    let run = portcullis(&["check", "-c", EXAMPLE, "--format", "json", "--strict"]);
    assert_eq!(run.code, 0);
    let v = run.json();
    assert_eq!(v["errors"], json!([]));
    assert_eq!(v["warnings"], json!([]));
}

#[test]
fn check_fails_on_a_route_an_earlier_one_covers_with_its_name_and_line() {
    let routes = "  - name: api\n    match: { path: /api/** }\n  - name: orders\n    match: { path: /api/orders/*, methods: [GET], host: a.example.com }\n    scopes: [read:orders]\n";
    let (run, v) = check_json(routes, &[]);
    assert_eq!(
        run.code, 2,
        "a route that never matches fails without --strict"
    );
    assert_eq!(v["warnings"], json!([]), "{v:#}");
    let e = &v["errors"];
    assert_eq!(e.as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(e[0]["route"], "orders");
    assert_eq!(e[0]["line"], 12);
    assert!(
        e[0]["message"]
            .as_str()
            .unwrap()
            .contains("never matches: route \"api\" (line 10)"),
        "{v:#}"
    );
}

#[test]
fn a_lost_method_is_a_warning_that_fails_only_under_strict() {
    let routes = "  - name: read\n    match: { path: /a/**, methods: [GET] }\n  - name: rw\n    match: { path: /a/b, methods: [GET, POST] }\n";
    let (run, v) = check_json(routes, &[]);
    assert_eq!(run.code, 0, "warnings alone exit 0: {v:#}");
    assert_eq!(v["warnings"].as_array().unwrap().len(), 1, "{v:#}");
    let (run, _) = check_json(routes, &["--strict"]);
    assert_eq!(run.code, 2, "warnings under --strict exit 2");
}

#[test]
fn check_fails_on_a_public_route_before_a_protected_one_it_overlaps() {
    let (run, v) = check_json(
        "  - name: docs\n    match: { path: /api/*/docs }\n    auth: none\n  - name: orders\n    match: { path: /api/orders/**, methods: [GET, HEAD] }\n",
        &[],
    );
    assert_eq!(run.code, 2);
    let e = &v["errors"];
    assert_eq!(e.as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(e[0]["route"], "docs");
    assert_eq!(e[0]["line"], 10);
    let message = e[0]["message"].as_str().unwrap();
    assert!(message.contains("\"orders\" (line 13)"), "{message}");
    assert!(message.contains("served without a token"), "{message}");
}

/// The first route `{path: /**, auth: none}` opens every protected route after it: `check`
/// says so (not only that they never match) and exits non-zero without `--strict`.
#[test]
fn check_fails_on_a_public_catch_all_before_protected_routes() {
    let (_dir, path) = file(
        "policy.yaml",
        &format!("{HEAD}  - {{ name: all, match: {{ path: /** }}, auth: none }}\n  - {{ name: orders, match: {{ path: /api/orders/** }}, scopes: [read:orders] }}\n"),
    );
    let run = portcullis(&["check", "-c", s(&path)]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("loads, but check refuses it (2 routes, 1 issuer, 1 upstream), 2 errors"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("error: ")
            && run
                .stdout
                .contains("route \"all\": auth: none, declared before route \"orders\"")
            && run.stdout.contains("served without a token"),
        "{}",
        run.stdout
    );
}

/// `auth: optional` and `mode: shadow` forward a request without a verified token as well.
#[test]
fn check_fails_on_an_optional_or_shadow_route_before_a_protected_one() {
    for extra in ["auth: optional", "mode: shadow"] {
        let (run, v) = check_json(
            &format!("  - name: docs\n    match: {{ path: /api/*/docs }}\n    {extra}\n  - name: orders\n    match: {{ path: /api/orders/** }}\n"),
            &[],
        );
        assert_eq!(run.code, 2, "{extra}: {v:#}");
        let message = v["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(extra), "{extra}: {v:#}");
        assert!(message.contains("served without a token"), "{extra}: {v:#}");
    }
}

#[test]
fn check_warns_about_an_issuer_no_route_accepts() {
    let text = HEAD.replace(
        "routes:\n",
        "  spare:\n    issuer: https://spare.example/\n    jwks_uri: https://spare.example/jwks\n    audiences: [api]\nroutes:\n  - name: a\n    match: { path: /a }\n    issuers: [main]\n",
    );
    let (_dir, path) = file("policy.yaml", &text);
    let run = portcullis(&["check", "-c", s(&path)]);
    assert_eq!(run.code, 0);
    assert!(
        run.stdout
            .contains("(1 route, 2 issuers, 1 upstream), 1 warning"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("warning: ")
            && run
                .stdout
                .contains("policy.yaml:9: issuers.spare: issuer \"spare\" is accepted by no route"),
        "{}",
        run.stdout
    );
}

#[test]
fn check_says_what_no_upstream_used_once_is_wrong_with() {
    let text = HEAD.replace(
        "upstreams:\n  app: { url: http://127.0.0.1:3000 }\n",
        "upstreams:\n  app: { url: http://127.0.0.1:3000 }\n  other: { url: http://127.0.0.1:3001 }\nupstream: app\n",
    );
    let (_dir, path) = file(
        "policy.yaml",
        &format!("{text}  - name: a\n    match: {{ path: /a }}\n    upstream: other\n"),
    );
    let run = portcullis(&["check", "-c", s(&path), "--strict"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(!run.stdout.contains("warning"), "{}", run.stdout);
}

#[test]
fn a_scope_with_a_space_is_an_error_that_explains_why() {
    let (run, v) = check_json(
        "  - name: orders\n    match: { path: /api/orders/** }\n    scopes: [\"read orders\"]\n",
        &[],
    );
    assert_eq!(run.code, 1);
    let e = &v["errors"][0];
    assert_eq!(e["route"], "orders");
    assert_eq!(e["path"], "routes[0].scopes[0]");
    assert_eq!(e["line"], 12);
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("no token can carry it"), "{message}");
    assert!(message.contains("[read, orders]"), "{message}");
}

#[test]
fn check_runs_offline_and_says_what_it_skipped() {
    let text = format!(
        "{}{}",
        HEAD.replace("http://127.0.0.1:3000", "http://backend.invalid:8080")
            .replace(
                "routes:\n",
                "  files:\n    issuer: https://files.example/\n    jwks_file: missing-jwks.json\n    audiences: [api]\n  hmac:\n    issuer: https://hmac.example/\n    algorithms: [HS256]\n    hmac_secret_env: PORTCULLIS_TEST_SECRET\n    audiences: [api]\nroutes:\n",
            ),
        "  - name: a\n    match: { path: /a }\n"
    );
    let (_dir, path) = file("policy.yaml", &text);
    let run = portcullis(&["check", "-c", s(&path)]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    for skipped in [
        "skipped: ",
        "upstreams.app.url: host name \"backend.invalid\" not resolved (offline)",
        "issuers.files.jwks_file: ",
        "missing-jwks.json not read: it does not exist here (offline)",
        "issuers.hmac.hmac_secret_env: environment variable PORTCULLIS_TEST_SECRET is not set here",
    ] {
        assert!(run.stdout.contains(skipped), "{skipped}: {}", run.stdout);
    }
    let v = portcullis(&["check", "-c", s(&path), "--format", "json"]).json();
    assert_eq!(v["skipped"].as_array().unwrap().len(), 3, "{v:#}");
}

#[test]
fn errors_point_at_the_value_and_say_what_is_accepted() {
    let (_dir, path) = file(
        "policy.yaml",
        &format!("{HEAD}  - name: w\n    match: {{ path: /w }}\n    scopes: read:widgets\n"),
    );
    let run = portcullis(&["check", "-c", s(&path)]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("policy.yaml:12:13: routes[0].scopes: scopes is a list"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("{ any_of: [read:widgets] }"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("RawScopes"), "{}", run.stderr);

    let (_dir, path) = file(
        "policy.yaml",
        &HEAD.replace(
            "    audiences: [api]\n",
            "    audiences: [api]\n    leeway: 30x\n",
        ),
    );
    let run = portcullis(&["check", "-c", s(&path)]);
    assert!(
        run.stderr
            .contains("policy.yaml:9:13: issuers.main.leeway: invalid duration \"30x\""),
        "{}",
        run.stderr
    );

    let run = portcullis(&["check", "-c", "/nonexistent/portcullis.yaml"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr.matches("No such file or directory").count(),
        1,
        "{}",
        run.stderr
    );
}

#[test]
fn every_subcommand_documents_its_config_flag() {
    for cmd in ["run", "check", "explain", "test"] {
        let run = portcullis(&[cmd, "--help"]);
        let at = run
            .stdout
            .find("-c, --config <FILE>")
            .expect("-c documented");
        let help: String = run.stdout[at..].lines().take(2).collect();
        assert!(
            help.contains("The config file (YAML)"),
            "{cmd}: {}",
            run.stdout
        );
    }
}

fn explain(args: &[&str]) -> Value {
    let mut all = vec!["explain", "-c", EXAMPLE, "--format", "json"];
    all.extend_from_slice(args);
    let run = portcullis(&all);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.json()
}

#[test]
fn explain_an_allowed_request() {
    let v = explain(&[
        "--method",
        "GET",
        "--url",
        "https://api.example.com/api/orders/7?page=2",
        "--header",
        "X-Auth-Subject: spoofed",
        "--claims",
        r#"{"sub": "user-1", "scope": "read:orders"}"#,
    ]);
    assert_eq!(v["route"], "orders-read");
    assert_eq!(v["status"], 200);
    assert_eq!(v["reason"], "allowed");
    assert_eq!(v["upstream"], "app");
    assert_eq!(v["path"], "/api/orders/7");
    assert_eq!(v["upstream_headers"]["x-auth-subject"], "user-1");
    assert_eq!(v["upstream_headers"]["x-auth-scopes"], "read:orders");
    assert_eq!(v["upstream_headers"]["host"], "api.example.com");
    assert!(v["upstream_headers"].get("authorization").is_none());
    assert_eq!(v["routes_tried"][0]["miss"], "path");
    assert_eq!(v["routes_tried"][1]["matched"], true);
    assert_eq!(
        v["rules"],
        json!([{"rule": "scope read:orders", "pass": true}])
    );
    let token = v["token"].to_string();
    assert!(token.contains("no signature"), "{token}");
    assert!(token.contains("filled for issuer"), "{token}");
}

#[test]
fn explain_a_missing_token() {
    let v = explain(&[
        "--method",
        "GET",
        "--url",
        "https://api.example.com/api/orders",
    ]);
    assert_eq!(v["route"], "orders-read");
    assert_eq!(v["status"], 401);
    assert_eq!(v["reason"], "no_token");
    assert_eq!(v["upstream"], Value::Null);
    assert_eq!(v["upstream_headers"], json!({}));
}

#[test]
fn explain_a_missing_scope() {
    let v = explain(&[
        "--method",
        "GET",
        "--url",
        "https://api.example.com/api/orders",
        "--claims",
        r#"{"sub": "user-1", "scope": "read:invoices"}"#,
    ]);
    assert_eq!(v["route"], "orders-read");
    assert_eq!(v["status"], 403);
    assert_eq!(v["reason"], "insufficient_scope");
    assert_eq!(
        v["rules"],
        json!([{"rule": "scope read:orders", "pass": false}])
    );
}

#[test]
fn explain_no_route() {
    let v = explain(&[
        "--method",
        "POST",
        "--url",
        "https://api.example.com/api/orders",
    ]);
    assert_eq!(v["route"], Value::Null);
    assert_eq!(v["status"], 404);
    assert_eq!(v["reason"], "no_route");
    let misses: Vec<&str> = v["routes_tried"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["miss"].as_str().unwrap())
        .collect();
    assert_eq!(misses[..4], ["method", "method", "host", "path"]);
    assert_eq!(misses.len(), v["routes_tried"].as_array().unwrap().len());

    let v = explain(&["--method", "GET", "--url", "https://api.example.com/a%2Fb"]);
    assert_eq!(v["status"], 400);
    assert_eq!(v["refused"], "refused: encoded slash in path");
}

/// A config whose issuer has inline keys, written to a temp dir.
fn inline_config(key: &SigningKey, echo: &str) -> String {
    Config::new()
        .upstream("echo", &format!("http://{echo}"))
        .default_upstream("echo")
        .issuer(
            IssuerBlock::new("main", "https://issuer.test/")
                .jwks(jwks(&[key]))
                .audiences(&[AUD]),
        )
        .identity_header("x-auth-subject", "sub")
        .identity_header("x-auth-scopes", "scope")
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
            Route::new("org", "/api/org/**")
                .claims("{ /org_id: [acme, globex], email_verified: true }"),
        )
        .route(Route::new("admin-host", "/admin/**").host("admin.example.com"))
        .route(Route::new("tenant-host", "/tenant/**").host("*.tenants.example.com"))
        .route(
            Route::new("new-rule", "/reports/**")
                .scopes("[read:reports]")
                .set("mode", "shadow"),
        )
        .yaml()
}

#[test]
fn explain_verifies_a_token_against_inline_keys_and_says_when_it_cannot() {
    let key = SigningKey::generate("k1", Algorithm::RS256);
    let (_dir, path) = file("policy.yaml", &inline_config(&key, "127.0.0.1:9"));
    let good = key.mint(&claims_for(
        "https://issuer.test/",
        json!({"scope": "read:orders"}),
    ));
    let forged = SigningKey::generate("k1", Algorithm::RS256).mint(&claims_for(
        "https://issuer.test/",
        json!({"scope": "read:orders"}),
    ));
    let run = |token: &str| {
        portcullis(&[
            "explain",
            "-c",
            s(&path),
            "--method",
            "GET",
            "--url",
            "http://gw/api/orders/1",
            "--token",
            token,
            "--format",
            "json",
        ])
        .json()
    };
    let v = run(&good);
    assert_eq!(
        (v["status"].as_u64(), v["reason"].as_str()),
        (Some(200), Some("allowed"))
    );
    assert!(v["token"]
        .to_string()
        .contains("verified with the issuer's keys"));
    let v = run(&forged);
    assert_eq!(
        (v["status"].as_u64(), v["reason"].as_str()),
        (Some(401), Some("bad_signature"))
    );

    // The example's issuer uses discovery: offline, only the signature is not checked.
    let token = key.mint(&claims_for(
        "https://example.eu.auth0.com/",
        json!({"aud": "https://api.example.com", "scope": "read:orders"}),
    ));
    let v = explain(&[
        "--method",
        "GET",
        "--url",
        "https://x/api/orders",
        "--token",
        &token,
    ]);
    assert_eq!(v["status"], 200);
    assert!(
        v["token"].to_string().contains("signature NOT checked"),
        "{v:#}"
    );
}

#[test]
fn test_passes_the_shipped_example() {
    let run = portcullis(&["test", "-c", EXAMPLE, EXAMPLE_CASES]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let last = run.stdout.lines().last().unwrap();
    assert!(last.ends_with(" passed, 0 failed"), "{}", run.stdout);
    assert!(run.stdout.lines().count() > 10);
}

#[test]
fn test_names_the_failing_case_and_the_difference() {
    let (_dir, cases) = file(
        "cases.yaml",
        r#"
cases:
  - name: readers can list orders
    request: { method: GET, url: "https://api.example.com/api/orders" }
    claims: { sub: user-1, scope: "read:orders" }
    expect: { status: 200, route: orders-read, upstream_headers: { x-auth-subject: user-1 } }
  - name: wrong on purpose
    request: { method: GET, url: "https://api.example.com/api/orders" }
    token: none
    expect: { status: 200, route: orders-admin }
"#,
    );
    let run = portcullis(&["test", "-c", EXAMPLE, s(&cases)]);
    assert_eq!(run.code, 1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "ok   readers can list orders");
    assert_eq!(
        lines[1],
        "FAIL wrong on purpose: status 401 (no_token), expected 200; route \"orders-read\", expected \"orders-admin\""
    );
    assert_eq!(lines[2], "1 passed, 1 failed");
    let v = portcullis(&["test", "-c", EXAMPLE, s(&cases), "--format", "json"]).json();
    assert_eq!(
        (v["passed"].as_u64(), v["failed"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(v["cases"][1]["name"], "wrong on purpose");
    assert_eq!(v["cases"][1]["passed"], false);
}

#[test]
fn an_unreadable_case_file_exits_2() {
    let run = portcullis(&["test", "-c", EXAMPLE, "/nonexistent/cases.yaml"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let (_dir, cases) = file(
        "cases.yaml",
        "cases:\n  - name: x\n    request: { method: GET }\n    expect: {}\n",
    );
    let run = portcullis(&["test", "-c", EXAMPLE, s(&cases)]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("cases.yaml:3:14: cases[0].request: missing field `url`"),
        "{}",
        run.stderr
    );
}

/// One request of the parity test: what to send, and the claims of its token (`None`: none).
struct Probe {
    method: &'static str,
    target: &'static str,
    host: &'static str,
    claims: Option<Value>,
}

fn probe(method: &'static str, target: &'static str, claims: Option<Value>) -> Probe {
    Probe {
        method,
        target,
        host: "gateway.test",
        claims,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_and_test_give_the_same_status_and_route() {
    let key = SigningKey::generate("k1", Algorithm::RS256);
    let echo = start_echo().await;
    let yaml = inline_config(&key, &echo.to_string());
    let gw = start_gateway(&yaml);
    let iss = "https://issuer.test/";
    let probes = vec![
        probe("GET", "/healthz", None),
        probe(
            "GET",
            "/api/orders/7",
            Some(json!({"scope": "read:orders"})),
        ),
        probe("GET", "/api/orders/7", None),
        probe(
            "GET",
            "/api/orders/7",
            Some(json!({"scope": "read:invoices"})),
        ),
        probe(
            "DELETE",
            "/api/orders/7",
            Some(json!({"scope": "orders:delete"})),
        ),
        probe(
            "DELETE",
            "/api/orders/7",
            Some(json!({"scope": "read:orders"})),
        ),
        probe("POST", "/api/orders/7", Some(json!({"scope": "admin"}))),
        probe(
            "GET",
            "/api/org/1",
            Some(json!({"org_id": "acme", "email_verified": true})),
        ),
        probe(
            "GET",
            "/api/org/1",
            Some(json!({"org_id": "initech", "email_verified": true})),
        ),
        probe("GET", "/api/org/1", Some(json!({"org_id": "acme"}))),
        probe("GET", "/opt/page", None),
        probe("GET", "/opt/page", Some(json!({}))),
        probe(
            "GET",
            "/api/orders/7",
            Some(json!({"scope": "read:orders", "exp": now() - 3600})),
        ),
        probe(
            "GET",
            "/api/orders/7",
            Some(json!({"scope": "read:orders", "aud": "api://other"})),
        ),
        probe("GET", "/healthz/../api/orders/1", None),
        probe("GET", "/api/orders%2F7", None),
        probe("GET", "/nowhere", None),
        probe("GET", "/reports/1", Some(json!({"scope": "read:orders"}))),
        probe("GET", "/reports/1", None),
        Probe {
            host: "admin.example.com",
            ..probe("GET", "/admin/x", Some(json!({})))
        },
        Probe {
            host: "a.tenants.example.com",
            ..probe("GET", "/tenant/x", Some(json!({})))
        },
        Probe {
            host: "tenants.example.com",
            ..probe("GET", "/tenant/x", Some(json!({})))
        },
    ];

    let mut cases = String::from("cases:\n");
    let mut server = Vec::new();
    for (i, p) in probes.iter().enumerate() {
        let id = format!("probe-{i}");
        let mut headers = vec![("Host", p.host.to_string()), ("X-Request-Id", id.clone())];
        if let Some(c) = &p.claims {
            let token = key.mint(&claims_for(iss, c.clone()));
            headers.push(("Authorization", format!("Bearer {token}")));
        }
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = gw.request(p.method, p.target, &pairs, "").await;
        server.push((id, r.status));
        // The same request as a case: the claims without iss, aud and exp (test fills them,
        // except where the probe sets its own).
        let token = match &p.claims {
            None => "token: none".to_string(),
            Some(c) => format!("claims: {c}"),
        };
        cases.push_str(&format!(
            "  - name: probe {i}\n    request: {{ method: {}, url: \"http://{}{}\", headers: {{ x-request-id: probe-{i} }} }}\n    {token}\n    expect: {{}}\n",
            p.method, p.host, p.target
        ));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let logs = gw.log_text();
    let routes: std::collections::HashMap<String, String> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "access")
        .map(|v| {
            (
                v["request_id"].as_str().unwrap_or_default().to_string(),
                v["route"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("policy.yaml");
    let case_file = dir.path().join("cases.yaml");
    std::fs::write(&config, &yaml).unwrap();
    std::fs::write(&case_file, &cases).unwrap();
    let run = portcullis(&["test", "-c", s(&config), s(&case_file), "--format", "json"]);
    assert_eq!(run.code, 0, "{}{}\n{cases}", run.stdout, run.stderr);
    let offline = run.json();
    let mut seen = std::collections::HashSet::new();
    for (i, (id, status)) in server.iter().enumerate() {
        let case = &offline["cases"][i];
        let p = &probes[i];
        let what = format!("{} {} (Host {}) {:?}", p.method, p.target, p.host, p.claims);
        assert_eq!(
            case["status"].as_u64(),
            Some(u64::from(*status)),
            "status of {what}"
        );
        let server_route = routes
            .get(id)
            .map(String::as_str)
            .unwrap_or("<no log line>");
        let test_route = case["route"].as_str().unwrap_or("-");
        assert_eq!(test_route, server_route, "route of {what}");
        seen.insert(*status);
    }
    // The probes cover every kind of answer.
    for status in [200, 400, 401, 403, 404] {
        assert!(seen.contains(&status), "no probe got {status}");
    }
}

/// `explain … --format json | head -c 600`: the reader goes away before the output is
/// written. The command exits as it would have (0), quietly: no panic, no backtrace.
#[test]
fn explain_into_a_closed_pipe_exits_quietly() {
    for format in ["json", "human"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args([
                "explain",
                "-c",
                EXAMPLE,
                "--method",
                "GET",
                "--url",
                "https://api.example.com/api/orders/7",
                "--claims",
                r#"{"sub": "u1", "scope": "read:orders"}"#,
                "--format",
                format,
            ])
            .env("RUST_BACKTRACE", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        // Close the read end at once, as `head` does once it has its bytes.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{format}: {stderr}");
        assert!(!stderr.contains("panicked"), "{format}: {stderr}");
        assert!(stderr.is_empty(), "{format}: {stderr}");
    }
}

#[test]
fn explain_and_test_show_what_a_tls_listener_does_with_an_authority_and_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pki::Ca::new("Test CA")
        .server("gateway-1", &["gateway.test"])
        .write(dir.path(), "server");
    let clients = pki::Ca::new("Client CA").write(&dir.path().join("clients.pem"));
    let text = HEAD.replace(
        "routes:\n",
        &format!(
            "tls: {{ cert_file: {cert:?}, key_file: {key:?}, client_ca_file: {clients:?}, \
             client_subject_header: x-client-subject }}\nroutes:\n  - name: pub\n    \
             match: {{ path: /pub/**, host: a.example.com }}\n    auth: none\n"
        ),
    );
    let config = dir.path().join("policy.yaml");
    std::fs::write(&config, text).unwrap();
    let explain = |extra: &[&str]| {
        let mut args = vec![
            "explain",
            "-c",
            s(&config),
            "--method",
            "GET",
            "--url",
            "/pub/x",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--format", "json"]);
        portcullis(&args)
    };

    // The listener is TLS: the request is, unless the case says otherwise; HTTP/2's
    // :authority routes it; the verified client subject goes upstream.
    let run = explain(&[
        "--authority",
        "a.example.com",
        "--client-subject",
        "CN=alice,O=T",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let v = run.json();
    assert_eq!(v["route"], "pub", "{v:#}");
    let up = &v["upstream_headers"];
    assert_eq!(up["x-forwarded-proto"], "https", "{v:#}");
    assert_eq!(up["x-client-subject"], "CN=alice,O=T", "{v:#}");
    assert_eq!(up["host"], "a.example.com", "{v:#}");

    let run = explain(&["--authority", "a.example.com", "--tls", "false"]);
    let v = run.json();
    assert_eq!(v["upstream_headers"]["x-forwarded-proto"], "http", "{v:#}");
    assert!(
        v["upstream_headers"].get("x-client-subject").is_none(),
        "{v:#}"
    );
    // The gateway's own check of `:authority` against `Host` (pingora refuses the conflict
    // over HTTP/2 before it runs, so only here can it be seen at work).
    let run = explain(&[
        "--authority",
        "a.example.com",
        "--header",
        "Host: b.example.com",
    ]);
    let v = run.json();
    assert_eq!(
        (v["status"].as_u64(), v["reason"].as_str()),
        (Some(400), Some("bad_request")),
        "{v:#}"
    );
    assert_eq!(v["description"], "bad host", "{v:#}");
    let run = explain(&[
        "--authority",
        "a.example.com",
        "--header",
        "Host: A.example.com:443",
    ]);
    assert_eq!(run.json()["route"], "pub");
    // Without the authority, no host: the route does not match.
    assert_eq!(explain(&[]).json()["route"], Value::Null);
    // A client certificate without TLS cannot be.
    let run = explain(&["--tls", "false", "--client-subject", "CN=alice"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("only over TLS"), "{}", run.stderr);

    let (_cases_dir, cases) = file(
        "cases.yaml",
        "cases:\n  - name: over the TLS listener\n    request:\n      method: GET\n      \
         url: /pub/x\n      authority: a.example.com\n      client_subject: CN=alice\n    \
         expect:\n      status: 200\n      route: pub\n      upstream_headers:\n        \
         x-forwarded-proto: https\n        x-client-subject: CN=alice\n  - name: told it \
         is not TLS\n    request:\n      method: GET\n      url: /pub/x\n      \
         authority: a.example.com\n      tls: false\n    expect:\n      upstream_headers:\n        \
         x-forwarded-proto: http\n        x-client-subject: null\n",
    );
    let run = portcullis(&["test", "-c", s(&config), s(&cases)]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}
