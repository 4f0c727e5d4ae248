//! `portcullis demo`: the whole gateway on loopback with a built-in issuer (keys generated at
//! start, discovery and JWKS over HTTP) and an echo upstream, under an embedded policy. It
//! prints curl commands with a valid token, one lacking a scope, and an expired one.
//!
//! `keys`, `issuer` and `echo` are also the test suite's issuer and upstream; `portcullis run`
//! never uses this module.

pub mod echo;
pub mod issuer;
pub mod keys;

use crate::server;
use jsonwebtoken::Algorithm;
use keys::SigningKey;
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;

/// The demo policy; `{issuer}` and `{upstream}` are filled in at start.
pub const DEMO_CONFIG: &str = r#"
listen: "{listen}"
admin_listen: 127.0.0.1:0
upstreams:
  echo: { url: "http://{upstream}" }
upstream: echo
issuers:
  demo:
    issuer: "{issuer}"
    discovery: true
    allow_http: true            # the demo issuer is plain HTTP on loopback
    audiences: [https://api.demo.local]
    algorithms: [RS256]
identity:
  headers:
    x-auth-subject: sub
    x-auth-email: email
    x-auth-scopes: scope
routes:
  - name: health
    match: { path: /healthz }
    auth: none
  - name: orders-read
    match: { path: /api/orders/**, methods: [GET, HEAD] }
    scopes: [read:orders]
  - name: orders-write
    match: { path: /api/orders/**, methods: [POST, PUT, DELETE] }
    scopes: { any_of: [write:orders, admin] }
  - name: me
    match: { path: /api/me }
  - name: public
    match: { path: /public/** }
    auth: optional
"#;

/// Build the demo (issuer, upstream, policy), print how to use it, and serve until SIGTERM.
pub fn run(listen: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let control = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("portcullis-control")
        .enable_all()
        .build()?;
    let key = SigningKey::generate("demo-rs256", Algorithm::RS256);
    let (issuer, upstream) = control.block_on(async {
        let issuer = issuer::Issuer::start(keys::jwks(&[&key])).await?;
        let upstream = echo::start().await?;
        Ok::<_, std::io::Error>((issuer, upstream))
    })?;
    let text = DEMO_CONFIG
        .replace("{listen}", &listen.to_string())
        .replace("{issuer}", &issuer.url())
        .replace("{upstream}", &upstream.to_string());
    let policy = crate::config::from_str(&text, "<demo>", Path::new("."))?;
    let prepared = server::prepare(policy, None, control)?;

    let now = keys::now();
    let claims = |scope: &str, exp: i64| {
        json!({"iss": issuer.url(), "sub": "demo-user", "email": "demo@example.com",
               "aud": "https://api.demo.local", "scope": scope, "iat": now.min(exp - 60), "exp": exp})
    };
    let valid = key.mint(&claims("read:orders write:orders", now + 3600));
    let no_scope = key.mint(&claims("profile", now + 3600));
    let expired = key.mint(&claims("read:orders", now - 3600));
    let base = format!("http://{}", prepared.listen);
    let admin = prepared.admin.map(|a| a.to_string()).unwrap_or_default();
    println!(
        r#"
portcullis demo: gateway on {base}, issuer on {iss}, echo upstream on {up}, admin on {admin}

# 200: a valid token; the echo shows the x-auth-* identity headers the upstream received
curl -i {base}/api/orders/42 -H 'Authorization: Bearer {valid}'

# 403 insufficient_scope: a valid token without read:orders
curl -i {base}/api/orders/42 -H 'Authorization: Bearer {no_scope}'

# 401 invalid_token: an expired token
curl -i {base}/api/orders/42 -H 'Authorization: Bearer {expired}'

# 401: no token at all
curl -i {base}/api/orders/42

# 200: a public route, with a spoofed identity header stripped before it reaches the upstream
curl -i {base}/healthz -H 'X-Auth-Subject: admin'

# readiness and metrics
curl -i http://{admin}/readyz
curl -s http://{admin}/metrics

Stop with Ctrl-C.
"#,
        iss = issuer.url(),
        up = upstream,
    );
    prepared.run();
    drop(issuer);
    Ok(())
}
