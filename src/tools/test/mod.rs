//! `portcullis test`: policy test cases written next to a config, run offline through
//! `explain` (so through the engine the gateway runs). The case file:
//!
//! ```yaml
//! cases:
//!   - name: readers can list orders
//!     request: { method: GET, url: "https://api.example.com/api/orders", headers: { x-request-id: abc } }
//!     claims: { sub: user-1, scope: "read:orders" }   # or token: <JWT>, or token: none
//!     expect: { status: 200, route: orders-read, upstream_headers: { x-auth-subject: user-1 } }
//! ```
//!
//! `expect` may hold `status`, `route` (`null`: no route), `reason`, `upstream` and
//! `upstream_headers` (`null`: the header must not be sent); only what it holds is compared.

mod output;
pub use output::{human, json, summary};

use crate::tools::explain::{Explainer, Explanation, Request, TokenInput};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub request: CaseRequest,
    /// Claims of a token whose signature is not checked (`explain --claims`).
    #[serde(default)]
    pub claims: Option<Value>,
    /// A compact JWT, or `none` for no token (also the default).
    #[serde(default)]
    pub token: Option<String>,
    /// Send the token (or claims) with the DPoP scheme and this `DPoP` proof.
    #[serde(default)]
    pub dpop_proof: Option<String>,
    /// Send the token (or claims) with the DPoP scheme and a valid proof made for the request,
    /// signed with the PKCS#8 PEM private key in this file (relative to the case file).
    #[serde(default)]
    pub dpop_key: Option<std::path::PathBuf>,
    pub expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseRequest {
    pub method: String,
    pub url: String,
    /// Header values may be written as numbers or booleans; they are sent as text.
    #[serde(default)]
    pub headers: BTreeMap<String, Scalar>,
    /// The client's address; default 127.0.0.1.
    #[serde(default)]
    pub peer: Option<std::net::IpAddr>,
    /// Over TLS; default: whether the config's listener is TLS.
    #[serde(default)]
    pub tls: Option<bool>,
    /// HTTP/2's `:authority`; default none (HTTP/1.1).
    #[serde(default)]
    pub authority: Option<String>,
    /// The subject of a verified client certificate (RFC 4514, `CN=alice,O=Example`).
    #[serde(default)]
    pub client_subject: Option<String>,
}

/// A YAML scalar read as text.
#[derive(Debug)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Scalar(s)),
            v @ (Value::Number(_) | Value::Bool(_)) => Ok(Scalar(v.to_string())),
            _ => Err(serde::de::Error::custom("a header value is text")),
        }
    }
}

/// What a case expects; only the fields written are compared.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default)]
    pub status: Option<u16>,
    /// `Some(None)`: `route: null`, no route matches.
    #[serde(default, deserialize_with = "written")]
    pub route: Option<Option<String>>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default, deserialize_with = "written")]
    pub upstream: Option<Option<String>>,
    /// A `null` value: the header must not be sent.
    #[serde(default)]
    pub upstream_headers: BTreeMap<String, Option<Scalar>>,
}

/// A key that is written, `null` or not (`Some(None)` for `null`).
fn written<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// The case file cannot be used (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CaseFileError(pub String);

/// Read a case file; errors name the file, line, column and key path.
pub fn read_cases(path: &Path) -> Result<CaseFile, CaseFileError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| CaseFileError(format!("{file}: cannot read: {e}")))?;
    let de = serde_yaml_ng::Deserializer::from_str(&text);
    let mut cases: CaseFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let (line, column) = crate::config::locate::locate_value(&text, &key)
            .or_else(|| crate::config::locate::locate(&text, &key))
            .or_else(|| inner.location().map(|l| (l.line(), l.column())))
            .unwrap_or((1, 1));
        let message = crate::config::strip_location(&inner.to_string());
        CaseFileError(format!("{file}:{line}:{column}: {key}: {message}"))
    })?;
    if cases.cases.is_empty() {
        return Err(CaseFileError(format!("{file}: no cases")));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    for (i, case) in cases.cases.iter_mut().enumerate() {
        if case.claims.is_some() && case.token.as_deref().is_some_and(|t| t != "none") {
            return Err(CaseFileError(format!(
                "{file}: cases[{i}] ({:?}): give claims or token, not both",
                case.name
            )));
        }
        if case.dpop_proof.is_some() && case.dpop_key.is_some() {
            return Err(CaseFileError(format!(
                "{file}: cases[{i}] ({:?}): give dpop_proof or dpop_key, not both",
                case.name
            )));
        }
        if let Some(key) = &mut case.dpop_key {
            *key = dir.join(&*key);
        }
    }
    Ok(cases)
}

/// One case's outcome.
#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    /// Empty when the case passed.
    pub differences: Vec<String>,
    pub explanation: Option<Explanation>,
}

/// Run every case.
pub fn run(explainer: &Explainer, cases: &CaseFile) -> Vec<Outcome> {
    cases.cases.iter().map(|c| run_case(explainer, c)).collect()
}

fn run_case(explainer: &Explainer, case: &Case) -> Outcome {
    let token = match (&case.claims, case.token.as_deref()) {
        (Some(claims), _) => TokenInput::Claims(claims.clone()),
        (None, None | Some("none")) => TokenInput::None,
        (None, Some(jwt)) => TokenInput::Token(jwt.to_string()),
    };
    let request = Request {
        method: case.request.method.clone(),
        url: case.request.url.clone(),
        headers: case
            .request
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect(),
        peer: case.request.peer,
        token,
        dpop: match (&case.dpop_proof, &case.dpop_key) {
            (Some(p), _) => Some(crate::tools::explain::DpopInput::Proof(p.clone())),
            (None, Some(k)) => Some(crate::tools::explain::DpopInput::Key(k.clone())),
            (None, None) => None,
        },
        tls: case.request.tls,
        authority: case.request.authority.clone(),
        client_subject: case.request.client_subject.clone(),
    };
    match explainer.explain(&request) {
        Ok(e) => Outcome {
            name: case.name.clone(),
            differences: differences(&case.expect, &e),
            explanation: Some(e),
        },
        Err(err) => Outcome {
            name: case.name.clone(),
            differences: vec![format!("the request cannot be built: {err}")],
            explanation: None,
        },
    }
}

fn shown(v: Option<&str>) -> String {
    v.map_or("none".into(), |v| format!("{v:?}"))
}

/// What differs between the expectation and what the gateway would do.
pub fn differences(expect: &Expect, got: &Explanation) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(status) = expect.status {
        if status != got.status {
            out.push(format!(
                "status {} ({}), expected {status}",
                got.status, got.reason
            ));
        }
    }
    if let Some(route) = &expect.route {
        if route != &got.route {
            out.push(format!(
                "route {}, expected {}",
                shown(got.route.as_deref()),
                shown(route.as_deref())
            ));
        }
    }
    if let Some(reason) = &expect.reason {
        if reason != &got.reason {
            out.push(format!("reason {:?}, expected {reason:?}", got.reason));
        }
    }
    if let Some(upstream) = &expect.upstream {
        if upstream != &got.upstream {
            out.push(format!(
                "upstream {}, expected {}",
                shown(got.upstream.as_deref()),
                shown(upstream.as_deref())
            ));
        }
    }
    for (name, want) in &expect.upstream_headers {
        let have = got.upstream_headers.get(&name.to_ascii_lowercase());
        match (want, have) {
            (Some(w), Some(h)) if &w.0 == h => {}
            (None, None) => {}
            (Some(w), None) => {
                let why = if got.upstream.is_none() {
                    " (the request is not forwarded)"
                } else {
                    ""
                };
                out.push(format!("header {name} not sent{why}, expected {:?}", w.0));
            }
            (Some(w), Some(h)) => out.push(format!("header {name} {h:?}, expected {:?}", w.0)),
            (None, Some(h)) => out.push(format!("header {name} {h:?}, expected none")),
        }
    }
    out
}
