//! Interop with a real OpenID provider: `oidc-provider` (Node, tests/idp/server.mjs) on loopback
//! issues JWT access tokens to a `client_credentials` client through resource indicators, one
//! resource per signing algorithm (RS256, ES256, EdDSA). The gateway finds its keys through OIDC
//! discovery, and the tokens the provider's token endpoint returns are allowed, denied and turned
//! into identity headers exactly as the gateway's own test issuer's are. With its DPoP feature
//! on, a client made with the npm `dpop` library (tests/idp/dpop_client.mjs) obtains a
//! DPoP-bound token and makes proofs with its own key; the gateway accepts the token with a
//! proof and refuses it as Bearer, with a stale, replayed, or other URL's or method's proof.
//!
//! Needs Node.js (22 LTS or newer: oidc-provider 9 warns "Unsupported runtime" on 20.19, where it
//! still works) and tests/idp/node_modules (`npm ci` there; this test runs it
//! when the folder is missing). Without Node the test is skipped with a loud message.
mod common;
use common::*;

use base64::Engine;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The provider process, stopped when dropped.
struct Provider {
    child: Child,
    /// The JSON line server.mjs prints when it listens.
    info: Value,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn idp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp")
}

fn node_version() -> Option<String> {
    let out = Command::new("node").arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn start_provider() -> Provider {
    let dir = idp_dir();
    if !dir.join("node_modules/oidc-provider").is_dir() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm (comes with Node.js) to install tests/idp");
        assert!(status.success(), "npm ci in tests/idp failed");
    }
    let mut child = Command::new("node")
        .arg("server.mjs")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node server.mjs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the provider's first line");
    let info: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("server.mjs printed {line:?} instead of its JSON line: {e}"));
    Provider { child, info }
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    (pairs.iter())
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Provider {
    fn str(&self, key: &str) -> &str {
        self.info[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} in {}", self.info))
    }

    fn resource(&self, alg: &str) -> &str {
        self.info["resources"][alg].as_str().expect("resource")
    }

    /// An access token from the provider's token endpoint (client_credentials grant).
    async fn token(&self, resource: &str, scope: &str) -> String {
        let body = form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", self.str("client_id")),
            ("client_secret", self.str("client_secret")),
            ("resource", resource),
            ("scope", scope),
        ]);
        let reply = reqwest::Client::new()
            .post(self.str("token_endpoint"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("token endpoint");
        let status = reply.status();
        let bytes = reply.bytes().await.expect("token endpoint body");
        let json: Value = serde_json::from_slice(&bytes).expect("token endpoint JSON");
        assert!(status.is_success(), "token endpoint: {status} {json}");
        assert_eq!(json["token_type"], "Bearer", "{json}");
        json["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }
}

impl Provider {
    /// What tests/idp/dpop_client.mjs printed: a DPoP-bound token for `resource` obtained with
    /// the `dpop` library, and its proofs for `GET url`.
    fn dpop_client(&self, resource: &str, scope: &str, url: &str) -> Value {
        let out = Command::new("node")
            .arg("dpop_client.mjs")
            .args([
                self.str("token_endpoint"),
                self.str("client_id"),
                self.str("client_secret"),
                resource,
                scope,
                url,
            ])
            .current_dir(idp_dir())
            .stderr(Stdio::inherit())
            .output()
            .expect("node dpop_client.mjs");
        assert!(out.status.success(), "dpop_client.mjs failed");
        serde_json::from_slice(&out.stdout).expect("dpop_client.mjs JSON line")
    }
}

/// The decoded JOSE header of a compact JWS.
fn jose_header(token: &str) -> Value {
    let first = token.split('.').next().expect("header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(first)
        .expect("base64url header");
    serde_json::from_slice(&bytes).expect("JSON header")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_a_real_openid_provider_are_allowed_denied_and_forwarded_with_identity() {
    let Some(version) = node_version() else {
        eprintln!(
            "\n\n!!!!!!!! SKIPPED idp_interop: `node` is not installed, so the interop test \
             against a real OpenID provider (oidc-provider) did not run. Install Node.js 22 LTS+ \
             and run `npm ci` in tests/idp. !!!!!!!!\n\n"
        );
        return;
    };
    eprintln!("idp_interop: oidc-provider on node {version}");
    let idp = start_provider();
    let issuer = idp.str("issuer").to_string();
    let echo = start_echo().await;
    let (rs, es, ed) = (
        idp.resource("RS256"),
        idp.resource("ES256"),
        idp.resource("EdDSA"),
    );

    // No identity: key, so the default identity headers are what the upstream gets.
    let config = Config::new()
        .upstream("app", &format!("http://{echo}"))
        .issuer(
            IssuerBlock::new("idp", &issuer)
                .discovery()
                .allow_http()
                .audiences(&[rs, es, ed])
                .algorithms(&["RS256", "ES256", "EdDSA"])
                .set("required_typ", "at+jwt"),
        )
        .route(
            Route::new("orders-read", "/api/orders/**")
                .methods(&["GET"])
                .scopes("[read:orders]"),
        )
        .route(
            Route::new("orders-write", "/api/orders/**")
                .methods(&["POST"])
                .scopes("[write:orders]"),
        )
        // An Auth0-style namespaced custom claim and Keycloak's realm roles, by JSON Pointer.
        .route(
            Route::new("billing", "/api/billing/**")
                .claims(r#"{ "/https:~1~1example.com~1roles": [billing-admin] }"#),
        )
        .route(
            Route::new("reports", "/api/reports/**")
                .claims("{ /realm_access/roles: [orders-reader] }"),
        )
        .route(Route::new("audit", "/api/audit/**").claims("{ /realm_access/roles: [auditor] }"));
    let gw = start_gateway(&config.yaml());
    // Ready means the keys came through the provider's discovery document and JWKS.
    gw.wait_ready().await;

    for (alg, resource) in [("RS256", rs), ("ES256", es), ("EdDSA", ed)] {
        let token = idp.token(resource, "read:orders").await;
        let header = jose_header(&token);
        assert_eq!(header["alg"], alg, "{header}");
        assert_eq!(header["typ"], "at+jwt", "{header}");

        let r = gw.get_bearer("/api/orders/7", &token).await;
        assert_eq!(r.status, 200, "{alg}: {}", String::from_utf8_lossy(&r.body));
        let seen = r.echo();
        assert_eq!(
            seen.header("x-auth-subject"),
            Some(idp.str("client_id")),
            "{alg}"
        );
        assert_eq!(seen.header("x-auth-issuer"), Some(issuer.as_str()), "{alg}");
        assert_eq!(seen.header("x-auth-scopes"), Some("read:orders"), "{alg}");
        assert!(
            !seen.has("authorization"),
            "{alg}: the token is not forwarded"
        );

        // The token lacks write:orders.
        let auth = format!("Bearer {token}");
        let r = gw
            .request("POST", "/api/orders/7", &[("Authorization", &auth)], "")
            .await;
        check_denied(&r, 403, "insufficient_scope").unwrap();
        // Custom claims: allowed by the namespaced claim and the realm role, denied by a role
        // the token does not have.
        assert_eq!(gw.get_bearer("/api/billing/1", &token).await.status, 200);
        assert_eq!(gw.get_bearer("/api/reports/1", &token).await.status, 200);
        let r = gw.get_bearer("/api/audit/1", &token).await;
        check_denied(&r, 403, "insufficient_scope").unwrap();

        // A token altered after signing.
        let mut forged = token.clone();
        let last = forged.pop().expect("a signature");
        forged.push(if last == 'A' { 'B' } else { 'A' });
        let r = gw.get_bearer("/api/orders/7", &forged).await;
        check_denied(&r, 401, "invalid_token").unwrap();
    }

    // Both scopes: the write route lets it through, and the scope header lists both, sorted.
    let token = idp.token(rs, "write:orders read:orders").await;
    let auth = format!("Bearer {token}");
    let r = gw
        .request("POST", "/api/orders/7", &[("Authorization", &auth)], "")
        .await;
    assert_eq!(
        r.echo().header("x-auth-scopes"),
        Some("read:orders write:orders")
    );

    // A real token for an API the gateway does not list in `audiences`.
    let other = idp.token(idp.str("unlisted_resource"), "read:orders").await;
    let r = gw.get_bearer("/api/orders/7", &other).await;
    check_denied(&r, 401, "invalid_token").unwrap();

    // No token at all.
    let r = gw.get("/api/orders/7", &[]).await;
    check_denied(&r, 401, "missing_token").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dpop_bound_token_from_a_real_provider_needs_a_real_clients_fresh_proof() {
    let Some(version) = node_version() else {
        eprintln!(
            "\n\n!!!!!!!! SKIPPED idp_interop DPoP: `node` is not installed, so the DPoP interop \
             test against oidc-provider and the npm dpop client did not run. Install Node.js \
             20.19+ and run `npm ci` in tests/idp. !!!!!!!!\n\n"
        );
        return;
    };
    eprintln!("idp_interop DPoP: oidc-provider and dpop on node {version}");
    let idp = start_provider();
    let issuer = idp.str("issuer").to_string();
    let echo = start_echo().await;
    let es = idp.resource("ES256");
    let config = Config::new()
        .upstream("app", &format!("http://{echo}"))
        .issuer(
            IssuerBlock::new("idp", &issuer)
                .discovery()
                .allow_http()
                .audiences(&[es])
                .algorithms(&["ES256"])
                .set("required_typ", "at+jwt"),
        )
        .route(
            Route::new("orders", "/api/orders/**")
                .scopes("[read:orders]")
                .set("sender_constraint", "required"),
        );
    let gw = start_gateway(&config.yaml());
    gw.wait_ready().await;

    let url = "http://gateway.test/api/orders/7";
    let client = idp.dpop_client(es, "read:orders", url);
    assert_eq!(client["token_type"], "DPoP", "{client}");
    let token = client["access_token"].as_str().unwrap();
    let proof = |name: &str| client["proofs"][name].as_str().unwrap().to_string();
    let dpop = format!("DPoP {token}");
    let send = |proof: String| {
        let dpop = dpop.clone();
        let gw = &gw;
        async move {
            gw.get(
                "/api/orders/7",
                &[("Authorization", &dpop), ("DPoP", &proof)],
            )
            .await
        }
    };

    let r = send(proof("valid")).await;
    let seen = r.echo();
    assert_eq!(seen.header("x-auth-subject"), Some(idp.str("client_id")));
    assert!(!seen.has("dpop") && !seen.has("authorization"));
    // A second proof from the same key: a new jti, accepted.
    assert_eq!(send(proof("again")).await.status, 200);

    // The same token as Bearer: refused, even with a valid proof beside it.
    let r = gw.get_bearer("/api/orders/7", token).await;
    check_denied(&r, 401, "invalid_token").unwrap();
    for (name, why) in [
        ("valid", "DPoP proof replayed"),
        ("stale", "DPoP proof iat outside the accepted window"),
        ("other_url", "DPoP proof htu does not match"),
        ("other_method", "DPoP proof htm does not match"),
    ] {
        let r = send(proof(name)).await;
        check_denied(&r, 401, "invalid_dpop_proof").unwrap();
        assert_eq!(r.json()["error_description"], why, "{name}");
    }
    // No proof at all.
    let r = gw.get("/api/orders/7", &[("Authorization", &dpop)]).await;
    check_denied(&r, 401, "invalid_dpop_proof").unwrap();
    // An ordinary Bearer token from the same provider: refused on a sender_constraint route.
    let bearer = idp.token(es, "read:orders").await;
    let r = gw.get_bearer("/api/orders/7", &bearer).await;
    check_denied(&r, 401, "invalid_token").unwrap();
}
