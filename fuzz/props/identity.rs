//! Target `identity`: claims → identity header values.
use super::{assert_header_value_safe, fixture_config, remote_issuer};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use portcullis::claims::{ClaimRef, ScopeSet};
use portcullis::config::Policy;
use portcullis::identity::{self, Source, MAX_HEADER_VALUE_BYTES};
use serde_json::Value;
use std::path::Path;
use std::sync::OnceLock;

/// The identity fixture: names, JSON Pointers (nested, array index, empty key, escapes) and the
/// merged scope set, with and without the claims header.
fn identity_policies() -> &'static [Policy; 2] {
    static P: OnceLock<[Policy; 2]> = OnceLock::new();
    P.get_or_init(|| {
        let plain = fixture_config()
            .issuer(remote_issuer().set("scope_claims", "[scope, scp, permissions, /ext/scopes]"))
            .route(super::builder::Route::new("all", "/**"))
            .identity_header("x-auth-subject", "sub")
            .identity_header("x-auth-email", "email")
            .identity_header("x-auth-scopes", "scope")
            .identity_header("x-auth-roles", "/https:~1~1example.com~1roles")
            .identity_header("x-auth-org", "/org/id")
            .identity_header("x-auth-first-group", "/groups/0")
            .identity_header("x-auth-empty-key", "/")
            .identity_header("x-auth-tilde", "/a~0b~1c")
            .identity_header("x-user-name", "name")
            .identity_header("x-user-admin", "admin");
        let with_claims = plain.clone().identity("claims_header", "x-auth-claims");
        [plain.yaml(), with_claims.yaml()].map(|text| {
            portcullis::config::from_str(&text, "fuzz", Path::new("."))
                .expect("identity fixture config compiles")
        })
    })
}

/// Input: byte 0 picks the plan (even: no claims header; odd: with `x-auth-claims`); the rest
/// is the claims as JSON.
pub fn identity(data: &[u8]) {
    let Some((&sel, json)) = data.split_first() else {
        return;
    };
    let Ok(claims) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    check_identity(&identity_policies()[sel as usize & 1], &claims);
}

fn lookup<'a>(claims: &'a Value, c: &ClaimRef) -> Option<&'a Value> {
    match c {
        ClaimRef::Name(n) => claims.as_object().and_then(|o| o.get(n)),
        ClaimRef::Pointer(p) => claims.pointer(p),
    }
    .filter(|v| !v.is_null())
}

/// Must this text be refused? Over the size cap, or an ASCII control byte (docs/behaviour.md, "Identity headers").
fn must_refuse(text: &str) -> bool {
    text.len() > MAX_HEADER_VALUE_BYTES || text.bytes().any(|b| b < 0x20 || b == 0x7f)
}

/// May this text be refused? Also Unicode C1 controls (NEL U+0085…), which the gateway refuses
/// as well: no header value may hold any control character.
fn may_refuse(text: &str) -> bool {
    must_refuse(text) || text.chars().any(char::is_control)
}

pub fn check_identity(policy: &Policy, claims: &Value) {
    let plan = &policy.identity;
    let scopes = ScopeSet::from_claims(claims, &policy.issuers[0].scope_claims);
    // The text each header would carry, by the rendering rules of docs/behaviour.md; None: no header.
    let expected: Vec<(&str, Option<String>)> = plan
        .headers
        .iter()
        .map(|(name, source)| {
            let text = match source {
                Source::Scopes => (!scopes.is_empty()).then(|| scopes.joined()),
                Source::Claim(c) => lookup(claims, c).and_then(identity::render),
            };
            (name.as_str(), text)
        })
        .collect();
    let claims_text = plan
        .claims_header
        .as_ref()
        .map(|_| URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise")));
    let texts = || {
        expected
            .iter()
            .filter_map(|(_, t)| t.as_deref())
            .chain(claims_text.as_deref())
    };
    match plan.values(claims, &scopes) {
        Err(_) => assert!(
            texts().any(may_refuse),
            "identity headers refused though every value is safe: {claims}"
        ),
        Ok(headers) => {
            assert!(
                !texts().any(must_refuse),
                "an unsafe claim value was accepted: {claims}"
            );
            for (name, value) in &headers {
                assert_header_value_safe(name.as_str(), value.as_bytes());
                assert_eq!(
                    headers.iter().filter(|(n, _)| n == name).count(),
                    1,
                    "header {name} emitted twice"
                );
            }
            let emitted = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n.as_str() == name)
                    .map(|(_, v)| v.as_bytes())
            };
            for ((name, source), (_, want)) in plan.headers.iter().zip(&expected) {
                let got = emitted(name.as_str());
                match want {
                    None => assert!(got.is_none(), "absent claim {source:?} gave header {name}"),
                    Some(w) => assert_eq!(
                        got,
                        Some(w.as_bytes()),
                        "header {name} does not carry claim {source:?}"
                    ),
                }
                // Scalars and objects as docs/behaviour.md says, independently of `render`.
                if let Source::Claim(c) = source {
                    let exact = match lookup(claims, c) {
                        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                        Some(v @ (Value::Number(_) | Value::Bool(_) | Value::Object(_))) => {
                            Some(serde_json::to_string(v).expect("json"))
                        }
                        Some(Value::String(_)) => None,
                        _ => continue,
                    };
                    assert_eq!(
                        got,
                        exact.as_deref().map(str::as_bytes),
                        "{name} from {claims}"
                    );
                }
            }
            if let Some(name) = &plan.claims_header {
                let got = emitted(name.as_str()).expect("claims header emitted");
                let json = URL_SAFE_NO_PAD
                    .decode(got)
                    .expect("claims header is base64url");
                // Compared as text: serde_json's default float parser is not correctly
                // rounded, so parsing the header back can land on a neighbouring f64.
                assert_eq!(
                    json,
                    serde_json::to_vec(claims).expect("json"),
                    "claims header is not the claims' compact JSON"
                );
                let _: Value = serde_json::from_slice(&json).expect("claims header is JSON");
            }
            assert_eq!(
                headers.len(),
                expected.iter().filter(|(_, t)| t.is_some()).count()
                    + usize::from(plan.claims_header.is_some()),
                "unexpected extra identity headers"
            );
        }
    }
}
