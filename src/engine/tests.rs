//! The engine without a socket: a compiled policy, the real verifier over inline keys, and a
//! request head built in memory. Every denial reason and every header edit the black-box suites
//! check through the running gateway is checked here too.

use super::*;
use crate::demo::keys::{jwks, now, SigningKey};
use crate::forwarding::{apply, OVERRIDE_HEADERS};
use crate::keys::KeyStore;
use crate::metrics::Metrics;
use crate::token::Authenticator;
use http::HeaderName;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::OnceLock;

const ISS: &str = "https://issuer.example/";
const OTHER_ISS: &str = "https://other.example/";
const AUD: &str = "api://portcullis";

struct Fixture {
    policy: Policy,
    keys: KeyStore,
    auth: Authenticator,
    metrics: Metrics,
    signer: SigningKey,
    other: SigningKey,
    /// A key the issuers do not publish.
    stranger: SigningKey,
}

fn yaml(jwks_main: &Value, jwks_other: &Value) -> String {
    format!(
        r#"
listen: 127.0.0.1:0
upstreams:
  app: {{ url: "http://127.0.0.1:1" }}
  admin: {{ url: "http://127.0.0.1:2" }}
upstream: app
issuers:
  main:
    issuer: "{ISS}"
    audiences: [{AUD}]
    algorithms: [RS256, ES256]
    required_typ: null
    max_token_lifetime: 1d
    jwks: {jwks_main}
  other:
    issuer: "{OTHER_ISS}"
    audiences: [{AUD}]
    jwks: {jwks_other}
identity:
  headers:
    x-auth-subject: sub
    x-auth-scopes: scope
    x-user-org: org_id
token_sources: {{ cookie: session, query: access_token }}
trusted_proxies: [10.0.0.0/8]
limits: {{ max_target_bytes: 3000, max_header_count: 20, max_header_bytes: 4000, max_body_bytes: 100, max_token_bytes: 2000 }}
routes:
  - name: health
    match: {{ path: /healthz }}
    auth: none
  - name: optional
    match: {{ path: /opt/** }}
    auth: optional
  - name: orders-read
    match: {{ path: /api/orders/**, methods: [GET, HEAD] }}
    scopes: [read:orders]
  - name: org
    match: {{ path: /api/org/** }}
    claims: {{ org_id: [acme, globex] }}
  - name: other-only
    match: {{ path: /other/** }}
    issuers: [other]
  - name: admin-host
    match: {{ path: /admin/**, host: admin.example.com }}
    upstream: admin
  - name: api
    match: {{ path: /api/** }}
"#
    )
}

/// A fixture whose config text is the standard one edited by `edit`.
fn fixture_with(edit: impl Fn(String) -> String) -> Fixture {
    let signer = SigningKey::generate("k1", Algorithm::RS256);
    let other = SigningKey::generate("o1", Algorithm::RS256);
    let stranger = SigningKey::generate("k1", Algorithm::RS256);
    let text = edit(yaml(&jwks(&[&signer]), &jwks(&[&other])));
    let policy = crate::config::from_str(&text, "engine-test.yaml", Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    let keys = crate::live::key_store(&policy);
    Fixture {
        keys,
        auth: Authenticator::new(100),
        metrics: Metrics::new(),
        policy,
        signer,
        other,
        stranger,
    }
}

/// One fixture for the tests that use the default policy: RSA key generation is slow.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| fixture_with(|text| text))
}

fn claims(extra: Value) -> Value {
    let mut c = json!({
        "iss": ISS, "aud": AUD, "sub": "user-1",
        "iat": now(), "exp": now() + 600,
    });
    for (k, v) in extra.as_object().expect("object") {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

/// A request head, peer 192.0.2.7 unless a test says otherwise.
struct Req {
    method: Method,
    target: String,
    headers: HeaderMap,
    /// HTTP/2's `:authority`.
    authority: Option<String>,
    peer: Option<IpAddr>,
    tls: bool,
    client_subject: Option<String>,
}

fn req(method: &str, target: &str, headers: &[(&str, &str)]) -> Req {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    Req {
        method: Method::from_bytes(method.as_bytes()).unwrap(),
        target: target.to_string(),
        headers: map,
        authority: None,
        peer: Some("192.0.2.7".parse().unwrap()),
        tls: false,
        client_subject: None,
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

impl Fixture {
    fn token(&self, extra: Value) -> String {
        self.signer.mint(&claims(extra))
    }

    fn decide(&self, r: &Req) -> Decision {
        let head = RequestHead {
            method: &r.method,
            target: r.target.as_bytes(),
            headers: &r.headers,
            authority: r.authority.as_deref(),
            peer: r.peer,
            tls: r.tls,
            client_subject: r.client_subject.as_deref(),
            client_cert: None,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        decide_with(
            &self.policy,
            &head,
            &HeaderValue::from_static("rid-1"),
            |token| {
                rt.block_on(self.auth.authenticate(
                    token,
                    &token_rules(&self.policy),
                    &self.keys,
                    &self.metrics,
                ))
            },
        )
    }

    fn denied(&self, r: &Req) -> Deny {
        match self.decide(r) {
            Decision::Deny(d) => d.deny,
            Decision::Allow(a) => panic!("allowed on route {}: {:?}", a.route, r.target),
        }
    }

    fn allowed(&self, r: &Req) -> Allow {
        match self.decide(r) {
            Decision::Allow(a) => a,
            Decision::Deny(d) => panic!("denied {:?}: {:?}", r.target, d.deny),
        }
    }

    fn route_name(&self, index: usize) -> &str {
        &self.policy.routes.routes()[index].name
    }
}

/// The headers the upstream receives: the incoming ones with the edits applied.
fn upstream_headers(r: &Req, allow: &Allow) -> HeaderMap {
    let mut h = r.headers.clone();
    let Ok(()) = apply(&mut h, &allow.edits);
    h
}

fn values<'a>(h: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

#[test]
fn every_denial_reason_is_decided_without_a_socket() {
    let f = fixture();
    let good = f.token(json!({"scope": "read:orders"}));
    let long_target = format!("/api/{}", "a".repeat(3000));
    let many_headers: Vec<(String, String)> =
        (0..25).map(|i| (format!("x-h{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many_headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let big_value = "v".repeat(4100);
    let cases: Vec<(&str, Req, u16, &str)> = vec![
        (
            "encoded slash",
            req("GET", "/api/a%2Fb", &[]),
            400,
            "bad_request",
        ),
        (
            "two hosts",
            req("GET", "/healthz", &[("host", "a"), ("host", "b")]),
            400,
            "bad_request",
        ),
        (
            "authority and host disagree",
            req("GET", "http://a.example/healthz", &[("host", "b.example")]),
            400,
            "bad_request",
        ),
        (
            "two tokens",
            req(
                "GET",
                "/api/orders/1",
                &[("authorization", &bearer(&good)), ("cookie", "session=x")],
            ),
            400,
            "bad_request",
        ),
        (
            "malformed authorization",
            req("GET", "/api/orders/1", &[("authorization", "Bearer")]),
            400,
            "bad_request",
        ),
        ("no route", req("GET", "/nowhere", &[]), 404, "no_route"),
        (
            "target too long",
            req("GET", &long_target, &[]),
            414,
            "uri_too_long",
        ),
        (
            "too many headers",
            req("GET", "/healthz", &many),
            431,
            "headers_too_large",
        ),
        (
            "header bytes",
            req("GET", "/healthz", &[("x-big", &big_value)]),
            431,
            "headers_too_large",
        ),
        (
            "declared body",
            req("POST", "/healthz", &[("content-length", "101")]),
            413,
            "body_too_large",
        ),
        (
            "no token",
            req("GET", "/api/orders/1", &[]),
            401,
            "no_token",
        ),
    ];
    for (name, r, status, reason) in cases {
        let deny = f.denied(&r);
        assert_eq!((deny.status(), deny.reason()), (status, reason), "{name}");
    }
    let busy = admit(&f.policy.limits, f.policy.limits.max_in_flight + 1).unwrap_err();
    assert_eq!((busy.status(), busy.reason()), (503, "overloaded"));
    assert!(admit(&f.policy.limits, f.policy.limits.max_in_flight).is_ok());
}

#[test]
fn every_verification_failure_has_its_own_reason() {
    let f = fixture();
    let header = |h: Value| json!({"alg": "RS256", "kid": "k1"}).merge(h);
    let cases: Vec<(&str, String, &str)> = vec![
        ("garbage", "not.a.jwt".into(), "malformed_token"),
        (
            "too large",
            f.token(json!({"pad": "x".repeat(2000)})),
            "token_too_large",
        ),
        (
            "expired",
            f.token(json!({"exp": now() - 3600, "iat": now() - 7200})),
            "expired",
        ),
        (
            "not yet valid",
            f.token(json!({"nbf": now() + 3600})),
            "not_yet_valid",
        ),
        (
            "issued in the future",
            f.token(json!({"iat": now() + 3600})),
            "issued_in_future",
        ),
        ("no exp", f.token(json!({"exp": null})), "missing_expiry"),
        (
            "lifetime",
            f.token(json!({"exp": now() + 3 * 86400})),
            "lifetime_too_long",
        ),
        (
            "audience",
            f.token(json!({"aud": "api://elsewhere"})),
            "wrong_audience",
        ),
        (
            "unknown iss",
            f.token(json!({"iss": "https://evil.example/"})),
            "wrong_issuer",
        ),
        (
            "signed by another key with the same kid",
            f.stranger.mint(&claims(json!({}))),
            "bad_signature",
        ),
        (
            "unknown kid",
            f.signer
                .mint_with_header(&header(json!({"kid": "nope"})), &claims(json!({}))),
            "unknown_kid",
        ),
        (
            "alg outside the allow-list",
            f.signer
                .mint_with_header(&header(json!({"alg": "PS256"})), &claims(json!({}))),
            "algorithm_not_allowed",
        ),
        (
            "alg of another key type",
            f.signer
                .mint_with_header(&header(json!({"alg": "ES256"})), &claims(json!({}))),
            "key_mismatch",
        ),
        (
            "crit",
            f.signer
                .mint_with_header(&header(json!({"crit": ["exp"]})), &claims(json!({}))),
            "critical_header",
        ),
        (
            "control character in an identity claim",
            f.token(json!({"sub": "a\r\nx-injected: 1"})),
            "unsafe_claim",
        ),
    ];
    for (name, token, reason) in cases {
        let deny = f.denied(&req(
            "GET",
            "/api/things",
            &[("authorization", &bearer(&token))],
        ));
        assert_eq!(
            (deny.status(), deny.code(), deny.reason()),
            (401, "invalid_token", reason),
            "{name}"
        );
    }
    // A route that narrows its issuers refuses a valid token of another one.
    let main_token = f.token(json!({}));
    let deny = f.denied(&req(
        "GET",
        "/other/x",
        &[("authorization", &bearer(&main_token))],
    ));
    assert_eq!(deny.reason(), "issuer_not_accepted");
    let other_token = f.other.mint(&claims(json!({"iss": OTHER_ISS})));
    f.allowed(&req(
        "GET",
        "/other/x",
        &[("authorization", &bearer(&other_token))],
    ));
}

trait Merge {
    fn merge(self, other: Value) -> Value;
}

impl Merge for Value {
    fn merge(mut self, other: Value) -> Value {
        for (k, v) in other.as_object().expect("object") {
            self[k] = v.clone();
        }
        self
    }
}

#[test]
fn wrong_typ_is_refused_where_a_type_is_required() {
    let f = fixture_with(|text| text.replace("required_typ: null", "required_typ: at+jwt"));
    let token = f.token(json!({}));
    let deny = f.denied(&req("GET", "/api/x", &[("authorization", &bearer(&token))]));
    assert_eq!(deny.reason(), "wrong_type");
}

#[test]
fn scope_and_claim_rules_deny_with_their_own_reason() {
    let f = fixture();
    let no_scope = f.token(json!({"scope": "write:orders"}));
    let deny = f.denied(&req(
        "GET",
        "/api/orders/1",
        &[("authorization", &bearer(&no_scope))],
    ));
    assert_eq!((deny.status(), deny.reason()), (403, "insufficient_scope"));
    assert_eq!(deny, Deny::InsufficientScope(Some("read:orders".into())));

    let wrong_org = f.token(json!({"org_id": "initech"}));
    let deny = f.denied(&req(
        "GET",
        "/api/org/1",
        &[("authorization", &bearer(&wrong_org))],
    ));
    assert_eq!(
        (deny.status(), deny.code(), deny.reason()),
        (403, "insufficient_scope", "claim_mismatch")
    );
    let acme = f.token(json!({"org_id": "acme"}));
    f.allowed(&req(
        "GET",
        "/api/org/1",
        &[("authorization", &bearer(&acme))],
    ));
}

#[test]
fn keys_unavailable_is_the_verifier_s_answer_passed_through() {
    let f = fixture();
    let r = req("GET", "/api/x", &[("authorization", &bearer("a.b.c"))]);
    let head = RequestHead {
        method: &r.method,
        target: r.target.as_bytes(),
        headers: &r.headers,
        authority: None,
        peer: r.peer,
        tls: false,
        client_subject: None,
        client_cert: None,
    };
    let decision = decide_with(&f.policy, &head, &HeaderValue::from_static("rid"), |_| {
        Err(AuthError::KeysUnavailable)
    });
    let Decision::Deny(d) = decision else {
        panic!("allowed without keys")
    };
    assert_eq!(
        (d.deny.status(), d.deny.reason()),
        (503, "keys_unavailable")
    );
    assert_eq!(d.route.map(|i| f.route_name(i)), Some("api"));
}

#[test]
fn allowed_requests_say_how_they_got_through() {
    let f = fixture();
    let public = f.allowed(&req("GET", "/healthz", &[]));
    assert_eq!(
        (public.grant, public.identity.is_none()),
        (Grant::Public, true)
    );
    let anonymous = f.allowed(&req("GET", "/opt/x", &[]));
    assert_eq!(anonymous.grant, Grant::Anonymous);
    let token = f.token(json!({"scope": "read:orders"}));
    let authed = f.allowed(&req(
        "GET",
        "/api/orders/7",
        &[("authorization", &bearer(&token))],
    ));
    assert_eq!(authed.grant, Grant::Authenticated);
    assert_eq!(f.route_name(authed.route), "orders-read");
    // An invalid token on an optional route is refused, not ignored.
    let deny = f.denied(&req(
        "GET",
        "/opt/x",
        &[("authorization", &bearer("not.a.jwt"))],
    ));
    assert_eq!(deny.status(), 401);
}

#[test]
fn the_target_forwarded_is_the_canonical_one_without_the_token_parameter() {
    let f = fixture();
    let a = f.allowed(&req("GET", "/healthz/../healthz?x=%2F..&y=1", &[]));
    assert_eq!(a.target, "/healthz?x=%2F..&y=1");
    let token = f.token(json!({}));
    let a = f.allowed(&req(
        "GET",
        &format!("/api//x/./y?a=1&access_token={token}&b=2"),
        &[],
    ));
    assert_eq!(a.target, "/api/x/y?a=1&b=2");
    let a = f.allowed(&req("GET", &format!("/api/x?access_token={token}"), &[]));
    assert_eq!(a.target, "/api/x");
    // On a public route the token parameter goes too: nothing verified it.
    let a = f.allowed(&req("GET", "/healthz?access_token=abc&x=1", &[]));
    assert_eq!(a.target, "/healthz?x=1");
    // Other parameters go as they came, on every route.
    let a = f.allowed(&req("GET", "/healthz?next=%2F..&x", &[]));
    assert_eq!(a.target, "/healthz?next=%2F..&x");
}

#[test]
fn header_edits_strip_identity_headers_and_token_carriers_and_set_identity() {
    let f = fixture();
    let token = f.token(json!({"scope": "read:orders other", "org_id": "acme"}));
    let auth = bearer(&token);
    let r = req(
        "GET",
        "/api/orders/1",
        &[
            ("authorization", &auth),
            ("x-auth-subject", "forged"),
            ("x_auth_role", "forged"),
            ("x-auth-anything", "forged"),
            ("x-user-org", "forged"),
            ("x-other", "kept"),
        ],
    );
    let a = f.allowed(&r);
    let h = upstream_headers(&r, &a);
    assert_eq!(values(&h, "x-auth-subject"), ["user-1"]);
    assert_eq!(values(&h, "x-auth-scopes"), ["other read:orders"]);
    assert_eq!(values(&h, "x-user-org"), ["acme"]);
    assert!(!h.contains_key("x_auth_role"));
    assert!(!h.contains_key("x-auth-anything"));
    assert!(!h.contains_key("authorization"));
    assert_eq!(values(&h, "x-other"), ["kept"]);
    assert_eq!(values(&h, "x-request-id"), ["rid-1"]);

    // An absent claim sends no header.
    let bare = f.token(json!({"scope": "read:orders"}));
    let auth = bearer(&bare);
    let r = req("GET", "/api/orders/1", &[("authorization", &auth)]);
    let h = upstream_headers(&r, &f.allowed(&r));
    assert!(!h.contains_key("x-user-org"));

    // Identity headers are stripped on public routes too, and no identity is set there.
    let r = req("GET", "/healthz", &[("x-auth-subject", "forged")]);
    let h = upstream_headers(&r, &f.allowed(&r));
    assert!(!h.contains_key("x-auth-subject"));
}

#[test]
fn the_token_cookie_is_removed_and_other_cookies_kept() {
    let f = fixture();
    let token = f.token(json!({}));
    let cookie = format!("a=1; session={token}; b=2");
    let r = req("GET", "/api/x", &[("cookie", &cookie)]);
    let a = f.allowed(&r);
    let h = upstream_headers(&r, &a);
    assert_eq!(values(&h, "cookie"), ["a=1; b=2"]);
    // A cross-site unsafe request's cookie is not a token, yet it is still removed.
    let r = req("POST", "/opt/x", &[("cookie", &cookie)]);
    let a = f.allowed(&r);
    assert_eq!(a.grant, Grant::Anonymous);
    assert_eq!(values(&upstream_headers(&r, &a), "cookie"), ["a=1; b=2"]);
    // Only the token cookie: nothing left, no Cookie header at all.
    let only = format!("session={token}");
    let r = req("GET", "/api/x", &[("cookie", &only)]);
    assert!(!upstream_headers(&r, &f.allowed(&r)).contains_key("cookie"));
}

#[test]
fn forward_token_keeps_the_carriers() {
    let f = fixture_with(|text| {
        text.replace(
            "identity:\n  headers:",
            "identity:\n  forward_token: true\n  headers:",
        )
    });
    let token = f.token(json!({}));
    let auth = bearer(&token);
    let r = req("GET", &format!("/api/x?access_token={token}"), &[]);
    let a = f.allowed(&r);
    assert_eq!(a.target, format!("/api/x?access_token={token}"));
    let r = req("GET", "/api/x", &[("authorization", &auth)]);
    let h = upstream_headers(&r, &f.allowed(&r));
    assert_eq!(values(&h, "authorization"), [auth.as_str()]);
    assert_eq!(values(&h, "x-auth-subject"), ["user-1"]);
}

#[test]
fn forward_token_keeps_only_the_carrier_that_verified() {
    let f = fixture_with(|text| {
        text.replace(
            "identity:\n  headers:",
            "identity:\n  forward_token: true\n  headers:",
        )
    });
    let auth = bearer(&f.token(json!({})));
    // A cookie on a cross-site POST is ignored, so it was not verified: it does not go along
    // with the verified Authorization.
    let r = req(
        "POST",
        "/api/x",
        &[("authorization", &auth), ("cookie", "a=1; session=forged")],
    );
    let h = upstream_headers(&r, &f.allowed(&r));
    assert_eq!(values(&h, "authorization"), [auth.as_str()]);
    assert_eq!(values(&h, "cookie"), ["a=1"]);
}

#[test]
fn forwarding_headers_are_replaced_for_untrusted_peers_and_extended_for_trusted_ones() {
    let f = fixture();
    let incoming = [
        ("host", "api.example.com"),
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
    ];
    let r = req("GET", "/healthz", &incoming);
    let h = upstream_headers(&r, &f.allowed(&r));
    assert_eq!(values(&h, "x-forwarded-for"), ["192.0.2.7"]);
    assert_eq!(values(&h, "x-forwarded-proto"), ["http"]);
    assert_eq!(values(&h, "x-forwarded-host"), ["api.example.com"]);

    let mut r = req("GET", "/healthz", &incoming);
    r.peer = Some("10.1.2.3".parse().unwrap());
    let h = upstream_headers(&r, &f.allowed(&r));
    assert_eq!(values(&h, "x-forwarded-for"), ["6.6.6.6, 10.1.2.3"]);
    assert_eq!(values(&h, "x-forwarded-proto"), ["https"]);
    assert_eq!(values(&h, "x-forwarded-host"), ["evil.example"]);

    let mut r = req("GET", "/healthz", &[("host", "api.example.com")]);
    r.tls = true;
    let h = upstream_headers(&r, &f.allowed(&r));
    assert_eq!(values(&h, "x-forwarded-proto"), ["https"]);
}

#[test]
fn the_client_subject_header_carries_only_the_verified_subject() {
    // The listener's files: compiled (and so read) with the policy.
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["gateway.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    let f = fixture_with(|text| {
        format!(
            "{text}tls:\n  cert_file: {c:?}\n  key_file: {k:?}\n  client_ca_file: {c:?}\n  \
             client_subject_header: x-client-subject\n"
        )
    });
    let spoofed = [
        ("x-client-subject", "CN=admin"),
        ("X_Client_Subject", "CN=root"),
    ];
    let token = bearer(&f.token(json!({"scope": "read:orders"})));
    for target in ["/healthz", "/opt/x", "/api/orders/1"] {
        let mut headers = spoofed.to_vec();
        headers.push(("authorization", &token));
        let mut r = req("GET", target, &headers);
        r.tls = true;
        // No certificate on the connection: neither spelling goes through, none is set.
        let h = upstream_headers(&r, &f.allowed(&r));
        assert!(values(&h, "x-client-subject").is_empty(), "{target}");
        assert!(values(&h, "x_client_subject").is_empty(), "{target}");
        // A verified one: its subject, once.
        r.client_subject = Some("CN=alice,O=Example".into());
        let h = upstream_headers(&r, &f.allowed(&r));
        assert_eq!(
            values(&h, "x-client-subject"),
            ["CN=alice,O=Example"],
            "{target}"
        );
        assert!(values(&h, "x_client_subject").is_empty(), "{target}");
    }
}

#[test]
fn request_ids_are_kept_when_sane_and_made_otherwise() {
    let mut h = HeaderMap::new();
    h.insert("x-request-id", HeaderValue::from_static("abc-123"));
    assert_eq!(request_id(&h), "abc-123");
    h.insert("x-request-id", HeaderValue::from_static("has space"));
    let made = request_id(&h);
    assert_eq!(made.len(), 32);
    assert!(made.as_bytes().iter().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(made, request_id(&h), "fresh bits every time");
    h.insert(
        "x-request-id",
        HeaderValue::from_str(&"a".repeat(129)).unwrap(),
    );
    assert_eq!(request_id(&h).len(), 32);
}

#[test]
fn hosts_route_and_an_absolute_form_authority_becomes_the_host() {
    let f = fixture();
    let token = f.token(json!({}));
    let auth = bearer(&token);
    let r = req(
        "GET",
        "/admin/x",
        &[("host", "Admin.Example.com:8443"), ("authorization", &auth)],
    );
    let a = f.allowed(&r);
    assert_eq!(f.route_name(a.route), "admin-host");
    assert_eq!(f.policy.upstreams[a.upstream].name, "admin");

    let r = req(
        "GET",
        "http://admin.example.com/admin/x",
        &[("authorization", &auth)],
    );
    let a = f.allowed(&r);
    assert_eq!(f.route_name(a.route), "admin-host");
    assert_eq!(
        values(&upstream_headers(&r, &a), "host"),
        ["admin.example.com"]
    );
    assert_eq!(a.target, "/admin/x");
}

/// The request as HTTP/2 delivers it: the authority in `:authority`, usually no `Host`.
fn h2_req(target: &str, authority: &str, headers: &[(&str, &str)]) -> Req {
    Req {
        authority: Some(authority.to_string()),
        ..req("GET", target, headers)
    }
}

#[test]
fn an_h2_authority_is_the_host_and_goes_upstream_as_host() {
    let f = fixture();
    let token = f.token(json!({}));
    let auth = bearer(&token);
    let r = h2_req(
        "/admin/x",
        "admin.example.com:8443",
        &[("authorization", &auth)],
    );
    let a = f.allowed(&r);
    assert_eq!(f.route_name(a.route), "admin-host");
    assert_eq!(
        values(&upstream_headers(&r, &a), "host"),
        ["admin.example.com:8443"]
    );
    // The same authority in `Host` as well: one Host upstream, the one routed by.
    let r = h2_req(
        "/admin/x",
        "admin.example.com",
        &[("host", "admin.example.com"), ("authorization", &auth)],
    );
    let a = f.allowed(&r);
    assert_eq!(
        values(&upstream_headers(&r, &a), "host"),
        ["admin.example.com"]
    );
}

#[test]
fn an_h2_authority_and_a_host_naming_another_host_are_refused() {
    let f = fixture();
    for (authority, host) in [
        ("admin.example.com", "other.example.com"),
        ("other.example.com", "admin.example.com"),
        ("admin.example.com", "admin.example.com.evil"),
    ] {
        let deny = f.denied(&h2_req("/admin/x", authority, &[("host", host)]));
        assert_eq!(
            deny,
            Deny::BadRequest(BadRequest::Host),
            "{authority} {host}"
        );
    }
    // An absolute-form target and `:authority` must agree too.
    let deny = f.denied(&h2_req("http://a.example/healthz", "b.example", &[]));
    assert_eq!(deny, Deny::BadRequest(BadRequest::Host));
    let deny = f.denied(&h2_req("/healthz", "a.example:x", &[]));
    assert_eq!(deny, Deny::BadRequest(BadRequest::Host));
}

#[test]
fn a_method_that_is_not_upper_case_is_refused_before_routing() {
    let f = fixture();
    for method in ["delete", "Get", "pOST", "purge"] {
        let deny = f.denied(&req(method, "/healthz", &[]));
        assert_eq!(
            (deny.status(), deny, method),
            (400, Deny::BadRequest(BadRequest::Method), method)
        );
    }
}

#[test]
fn head_is_judged_by_the_rules_of_get() {
    let f = fixture();
    let token = f.token(json!({"scope": "read:orders"}));
    let a = f.allowed(&req(
        "HEAD",
        "/api/orders/1",
        &[("authorization", &bearer(&token))],
    ));
    assert_eq!(f.route_name(a.route), "orders-read");
    let no_scope = f.token(json!({}));
    let deny = f.denied(&req(
        "HEAD",
        "/api/orders/1",
        &[("authorization", &bearer(&no_scope))],
    ));
    assert_eq!(deny.reason(), "insufficient_scope");
}

#[test]
fn a_host_with_a_port_that_is_not_numeric_is_refused() {
    let f = fixture();
    for host in [
        "admin.example.com:x",
        "a.com:1:2",
        "evil.com:x.example.com",
        "admin.example.com:",
        "admin.example.com:123456",
    ] {
        let deny = f.denied(&req("GET", "/admin/x", &[("host", host)]));
        assert_eq!(deny, Deny::BadRequest(BadRequest::Host), "{host}");
        let deny = f.denied(&req("GET", &format!("http://{host}/admin/x"), &[]));
        assert_eq!(deny.status(), 400, "absolute-form {host}");
    }
}

#[test]
fn override_headers_are_removed_in_every_spelling() {
    let f = fixture();
    let r = req(
        "GET",
        "/healthz",
        &[
            ("x-http-method-override", "DELETE"),
            ("x-http-method", "DELETE"),
            ("x-method-override", "DELETE"),
            ("x-original-url", "/admin"),
            ("x-rewrite-url", "/admin"),
            ("x_http_method_override", "DELETE"),
            ("X_Original_URL", "/admin"),
        ],
    );
    let h = upstream_headers(&r, &f.allowed(&r));
    for name in OVERRIDE_HEADERS {
        assert!(!h.contains_key(name), "{name}");
    }
    assert!(!h.contains_key("x_http_method_override"));
    assert!(!h.contains_key("x_original_url"));
}

#[test]
fn an_override_header_named_in_the_config_is_kept_in_its_own_spelling_only() {
    let f = fixture_with(|text| {
        text.replace(
            "trusted_proxies:",
            "keep_override_headers: [X-HTTP-Method-Override]\ntrusted_proxies:",
        )
    });
    let r = req(
        "POST",
        "/healthz",
        &[
            ("x-http-method-override", "PATCH"),
            ("x_http_method_override", "DELETE"),
            ("x-original-url", "/admin"),
        ],
    );
    let h = upstream_headers(&r, &f.allowed(&r));
    assert_eq!(values(&h, "x-http-method-override"), ["PATCH"]);
    assert!(!h.contains_key("x_http_method_override"));
    assert!(!h.contains_key("x-original-url"));
}

#[test]
fn forwarded_and_x_real_ip_come_only_from_trusted_proxies() {
    let f = fixture();
    let incoming = [
        ("forwarded", "for=6.6.6.6;host=evil.example;proto=https"),
        ("x-real-ip", "6.6.6.6"),
        ("x_real_ip", "6.6.6.6"),
        ("x_forwarded_for", "6.6.6.6"),
        ("x_forwarded_host", "evil.example"),
        ("x_request_id", "forged"),
    ];
    let r = req("GET", "/healthz", &incoming);
    let h = upstream_headers(&r, &f.allowed(&r));
    for name in [
        "forwarded",
        "x-real-ip",
        "x_real_ip",
        "x_forwarded_for",
        "x_forwarded_host",
        "x_request_id",
    ] {
        assert!(!h.contains_key(name), "{name} from an untrusted peer");
    }
    let mut r = req("GET", "/healthz", &incoming);
    r.peer = Some("10.9.9.9".parse().unwrap());
    let h = upstream_headers(&r, &f.allowed(&r));
    assert_eq!(
        values(&h, "forwarded"),
        ["for=6.6.6.6;host=evil.example;proto=https"]
    );
    assert_eq!(values(&h, "x-real-ip"), ["6.6.6.6"]);
    // Underscore spellings go whoever sent them.
    assert!(!h.contains_key("x_real_ip"));
    assert!(!h.contains_key("x_forwarded_for"));
}

#[test]
fn an_unverified_bearer_token_never_goes_upstream_from_a_public_route() {
    let f = fixture();
    let token = f.token(json!({}));
    let cookie = format!("a=1; session={token}");
    let r = req(
        "GET",
        &format!("/healthz?access_token={token}&x=1"),
        &[("authorization", &bearer(&token)), ("cookie", &cookie)],
    );
    let a = f.allowed(&r);
    assert_eq!(a.grant, Grant::Public);
    assert_eq!(a.target, "/healthz?x=1");
    let h = upstream_headers(&r, &a);
    assert!(!h.contains_key("authorization"));
    assert_eq!(values(&h, "cookie"), ["a=1"]);
    // Other schemes are the upstream's own business on a public route.
    let r = req("GET", "/healthz", &[("authorization", "Basic dTpw")]);
    let h = upstream_headers(&r, &f.allowed(&r));
    assert_eq!(values(&h, "authorization"), ["Basic dTpw"]);
    // forward_token forwards verified tokens only.
    let f = fixture_with(|text| {
        text.replace(
            "identity:\n  headers:",
            "identity:\n  forward_token: true\n  headers:",
        )
    });
    let auth = bearer(&f.token(json!({})));
    let r = req("GET", "/healthz", &[("authorization", &auth)]);
    assert!(!upstream_headers(&r, &f.allowed(&r)).contains_key("authorization"));
}

#[test]
fn an_array_scope_element_with_a_space_grants_nothing() {
    let f = fixture();
    let token = f.token(json!({"scp": ["not read:orders"]}));
    let deny = f.denied(&req(
        "GET",
        "/api/orders/1",
        &[("authorization", &bearer(&token))],
    ));
    assert_eq!(deny.reason(), "insufficient_scope");
    let token = f.token(json!({"scp": ["read:orders"]}));
    f.allowed(&req(
        "GET",
        "/api/orders/1",
        &[("authorization", &bearer(&token))],
    ));
}

#[test]
fn a_token_without_kid_is_tried_against_a_few_keys_at_most() {
    let f = fixture();
    let no_kid = |key: &SigningKey| {
        key.mint_with_header(&json!({"alg": "RS256", "typ": "JWT"}), &claims(json!({})))
    };
    let r = |t: &str| req("GET", "/api/x", &[("authorization", &bearer(t))]);
    f.allowed(&r(&no_kid(&f.signer)));
    assert_eq!(f.denied(&r(&no_kid(&f.stranger))).reason(), "bad_signature");

    let extra: Vec<SigningKey> = (0..3)
        .map(|i| SigningKey::generate(&format!("x{i}"), Algorithm::RS256))
        .collect();
    let signer = SigningKey::generate("k1", Algorithm::RS256);
    let publishing = |published: &[&SigningKey]| {
        let set = jwks(published);
        fixture_with(|text| {
            let main = text.find("jwks: ").unwrap();
            let end = main + text[main..].find('\n').unwrap();
            format!("{}jwks: {set}{}", &text[..main], &text[end..])
        })
    };
    // Three RSA keys published: all three are tried, the last one too.
    let f = publishing(&[&extra[0], &extra[1], &signer]);
    f.allowed(&r(&no_kid(&signer)));
    // Four: a token without kid is refused untried.
    let f = publishing(&[&extra[0], &extra[1], &extra[2], &signer]);
    let deny = f.denied(&r(&no_kid(&signer)));
    assert_eq!(deny.reason(), "kid_required");
    let with_kid = signer.mint(&claims(json!({})));
    f.allowed(&r(&with_kid));
    let refused = f
        .metrics
        .kidless
        .with_label_values(&["main", "kid_required"])
        .get();
    assert_eq!(refused, 1);
}

/// A token verified twice (so cached), then its key removed from the issuer's set.
fn cached_then_key_removed(announce: bool) -> (Fixture, Req) {
    let f = fixture_with(|text| text);
    let r = req(
        "GET",
        "/api/x",
        &[("authorization", &bearer(&f.token(json!({}))))],
    );
    f.allowed(&r);
    f.allowed(&r);
    assert_eq!(f.auth.cached_entries(), 1);
    let replacement = SigningKey::generate("k2", Algorithm::RS256);
    let body = serde_json::to_vec(&jwks(&[&replacement])).unwrap();
    let (set, _) = crate::keys::KeySet::parse(&body, 10).unwrap();
    let main = f
        .policy
        .issuers
        .iter()
        .position(|i| i.name == "main")
        .unwrap();
    let issuer = f.keys.issuer(main);
    if announce {
        // What the server's hook does when a refresh replaces the set.
        f.auth.forget_removed_keys(issuer.id(), &set);
    }
    issuer.install_unannounced(set);
    (f, r)
}

#[test]
fn a_replaced_key_set_drops_the_cached_tokens_of_its_removed_keys() {
    let (f, _) = cached_then_key_removed(true);
    assert_eq!(f.auth.cached_entries(), 0);
}

#[test]
fn a_cache_hit_whose_key_left_the_set_is_verified_again_even_if_nobody_dropped_it() {
    let (f, r) = cached_then_key_removed(false);
    assert_eq!(
        f.auth.cached_entries(),
        1,
        "still cached: only the hit check is left"
    );
    assert_eq!(f.denied(&r).reason(), "unknown_kid");
}

fn shadow_fixture() -> Fixture {
    fixture_with(|text| {
        text.replace(
            "    scopes: [read:orders]\n",
            "    scopes: [read:orders]\n    mode: shadow\n",
        )
    })
}

#[test]
fn a_shadow_route_forwards_what_it_would_deny_and_says_why() {
    let f = shadow_fixture();
    let no_scope = f.token(json!({"scope": "write:orders"}));
    let r = req(
        "GET",
        "/api/orders/1",
        &[("authorization", &bearer(&no_scope))],
    );
    let a = f.allowed(&r);
    assert_eq!(f.route_name(a.route), "orders-read");
    assert_eq!(a.grant, Grant::Shadow);
    assert_eq!(
        a.shadow,
        Some(Deny::InsufficientScope(Some("read:orders".into())))
    );
    // The token verified: its identity goes upstream, the token itself does not.
    let h = upstream_headers(&r, &a);
    assert_eq!(values(&h, "x-auth-subject"), ["user-1"]);
    assert!(!h.contains_key("authorization"));

    // A token that does not verify: forwarded without identity, reason kept.
    let expired = f.token(json!({"exp": now() - 3600, "iat": now() - 7200}));
    let r = req(
        "GET",
        "/api/orders/1",
        &[
            ("authorization", &bearer(&expired)),
            ("x-auth-subject", "forged"),
        ],
    );
    let a = f.allowed(&r);
    assert_eq!(a.shadow.as_ref().map(Deny::reason), Some("expired"));
    assert!(a.identity.is_none());
    let h = upstream_headers(&r, &a);
    assert!(!h.contains_key("x-auth-subject"));
    assert!(!h.contains_key("authorization"));

    // No token, two tokens: the same.
    let a = f.allowed(&req("GET", "/api/orders/1", &[]));
    assert_eq!(a.shadow.as_ref().map(Deny::reason), Some("no_token"));
    let a = f.allowed(&req(
        "GET",
        "/api/orders/1",
        &[
            ("authorization", &bearer(&no_scope)),
            ("cookie", &format!("session={no_scope}")),
        ],
    ));
    assert_eq!(a.shadow.as_ref().map(Deny::reason), Some("bad_request"));

    // What the route allows is allowed as usual, with no shadow denial.
    let good = f.token(json!({"scope": "read:orders"}));
    let a = f.allowed(&req(
        "GET",
        "/api/orders/1",
        &[("authorization", &bearer(&good))],
    ));
    assert_eq!((a.grant, a.shadow), (Grant::Authenticated, None));
}

#[test]
fn shadow_is_per_route_and_the_gateway_s_own_checks_still_hold() {
    let f = shadow_fixture();
    // Other routes enforce.
    assert_eq!(
        f.denied(&req("GET", "/api/things", &[])).reason(),
        "no_token"
    );
    // Before a route is known there is nothing to shadow: the path is still refused.
    assert_eq!(f.denied(&req("GET", "/api/orders/%2F", &[])).status(), 400);
}

#[test]
fn forward_token_on_a_shadow_route_forwards_only_a_verified_token() {
    let f = fixture_with(|text| {
        text.replace(
            "    scopes: [read:orders]\n",
            "    scopes: [read:orders]\n    mode: shadow\n",
        )
        .replace(
            "identity:\n  headers:",
            "identity:\n  forward_token: true\n  headers:",
        )
    });
    let r = req("GET", "/api/orders/1", &[("authorization", "Bearer a.b.c")]);
    let a = f.allowed(&r);
    assert_eq!(a.shadow.as_ref().map(Deny::reason), Some("malformed_token"));
    assert!(!upstream_headers(&r, &a).contains_key("authorization"));
    let token = f.token(json!({}));
    let auth = bearer(&token);
    let r = req("GET", "/api/orders/1", &[("authorization", &auth)]);
    let a = f.allowed(&r);
    assert_eq!(
        a.shadow.as_ref().map(Deny::reason),
        Some("insufficient_scope")
    );
    assert_eq!(
        values(&upstream_headers(&r, &a), "authorization"),
        [auth.as_str()]
    );
}

/// Every name a policy may remove passes its sieve, in either spelling: a list left out of
/// `config::strip_sieve` would let its names through unseen.
#[test]
fn the_strip_sieve_passes_every_name_the_lists_hold() {
    use crate::forwarding::{CLIENT_HEADERS, GATEWAY_HEADERS};
    let policy = &fixture().policy;
    let identity = &policy.identity;
    let names: Vec<String> = identity
        .headers
        .iter()
        .map(|(n, _)| n.as_str())
        .chain(identity.claims_header.as_ref().map(HeaderName::as_str))
        .chain(OVERRIDE_HEADERS)
        .chain(CLIENT_HEADERS)
        .chain(GATEWAY_HEADERS)
        .map(str::to_string)
        .chain([format!("{}anything", identity.strip_prefix)])
        .collect();
    assert!(names.len() > 12, "{names:?}");
    for name in &names {
        assert!(policy.strip_sieve.may_name(name), "{name}");
        assert!(
            policy.strip_sieve.may_name(&name.replace('-', "_")),
            "{name}"
        );
    }
}
