//! `portcullis explain` (and each case of `portcullis test`): what the gateway would do with one
//! request, step by step, offline. The decision is the engine's own (`engine::route`, the
//! token check, `engine::decide`, `forwarding::apply`) over the policy `config` compiles; this
//! module only feeds it a request built from the command line and describes each step.
//!
//! Tokens, offline: a `--token` is verified by the real `token::Authenticator` when its
//! issuer's keys are in the file (inline `jwks`, a readable `jwks_file`, or the HMAC secret's
//! variable set); when they would be fetched at run time (`discovery`, `jwks_uri`), its
//! signature is not checked and every other rule is, and the explanation says so. With
//! `--claims` there is no signature: the claims are judged as a verified token's would be,
//! with missing `iss`, `aud` and `exp` (and `iat` under `max_token_lifetime`) filled with
//! valid values for the route's issuer.

mod output;

use crate::authz::ScopeRule;
use crate::config::{self, Compiled, ConfigError, Options, Policy, Skipped};
use crate::demo::keys::SigningKey;
use crate::engine::{self, Decision, RequestHead};
use crate::keys::KeySource;
use crate::live::Generation;
use crate::response::{BadRequest, Deny};
use crate::route::Auth;
use crate::token::{self, verify, AuthError, Identity};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// Where the request's token comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenInput {
    /// No token beyond what the headers or URL carry.
    None,
    /// A compact JWT, sent as `Authorization: Bearer`.
    Token(String),
    /// Claims of a token whose signature is not checked.
    Claims(Value),
}

/// The DPoP proof of a request whose token is sent with the `DPoP` scheme.
#[derive(Debug, Clone, PartialEq)]
pub enum DpopInput {
    /// A proof as given (`explain --dpop-proof`).
    Proof(String),
    /// A valid proof made now for the request's method and URL and the token, signed with the
    /// PKCS#8 PEM private key in this file (`explain --dpop-key`).
    Key(std::path::PathBuf),
}

/// One request to explain.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// `https://host/path?query` (the host becomes the `Host` header unless one is given) or
    /// an origin-form `/path?query`.
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// The client's address; default 127.0.0.1.
    pub peer: Option<IpAddr>,
    pub token: TokenInput,
    /// With a token: send it as `Authorization: DPoP` with this proof.
    pub dpop: Option<DpopInput>,
    /// The request came over TLS; default: whether the config's listener is TLS (`tls:`).
    pub tls: Option<bool>,
    /// HTTP/2's `:authority` (`None`: HTTP/1.1, or HTTP/2 without one).
    pub authority: Option<String>,
    /// The subject (RFC 4514) of a client certificate the listener verified; needs TLS and
    /// `tls.client_ca_file`.
    pub client_subject: Option<String>,
}

/// One route tried, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tried {
    pub name: String,
    pub line: usize,
    /// `None`: it matched; else the condition that failed (`host`, `method`, `path`).
    pub miss: Option<&'static str>,
}

/// One scope or claim rule of the matched route, judged on the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCheck {
    pub rule: String,
    pub pass: bool,
}

/// What the gateway would do with the request, and why.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub method: String,
    /// The request target as sent (origin-form).
    pub target: String,
    /// The `Host` header sent, if any.
    pub host: Option<String>,
    /// The canonical path, or why the target was refused.
    pub path: Result<String, String>,
    /// Routes tried, in order, up to the one that matched.
    pub routes: Vec<Tried>,
    pub route: Option<String>,
    /// The token check, one line per fact.
    pub token: Vec<String>,
    pub rules: Vec<RuleCheck>,
    /// The gateway's own status for a denial; 200 for a forwarded request (the upstream's
    /// status, in reality).
    pub status: u16,
    /// `Deny::reason()`, or `allowed`, `anonymous`, `public`.
    pub reason: String,
    pub description: Option<String>,
    /// On a `mode: shadow` route: the (status, reason) an enforcing route would have answered.
    pub shadow: Option<(u16, String)>,
    pub upstream: Option<String>,
    /// The headers the upstream would get; several values of one header joined with `, `.
    pub upstream_headers: BTreeMap<String, String>,
}

/// The request could not be built from what was given.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// A compiled policy with the offline key store and verifier `explain` uses.
pub struct Explainer {
    /// The policy and its offline keys (`Generation::offline`).
    generation: Generation,
    /// What compiling offline skipped.
    pub skipped: Vec<Skipped>,
    route_lines: Vec<usize>,
    /// Per issuer: its key set is in the file, so signatures can be checked.
    local_keys: Vec<bool>,
    runtime: tokio::runtime::Runtime,
}

impl Explainer {
    /// Read and compile a config file offline (`config::Options`).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = config::read(path)?;
        let compiled = config::compile_file(path, &text, Options { offline: true })?;
        Ok(Self::new(compiled, &text))
    }

    /// From a config compiled from `text`.
    pub fn new(compiled: Compiled, text: &str) -> Self {
        let Compiled { policy, skipped } = compiled;
        let route_lines = (0..policy.routes.routes().len())
            .map(|i| {
                config::locate::locate(text, &format!("routes[{i}]")).map_or(1, |(line, _)| line)
            })
            .collect();
        let generation = Generation::offline(policy);
        // Per issuer: whether its key set is in the file, so that signatures can be checked.
        let local_keys = generation
            .keys
            .issuers()
            .iter()
            .map(|issuer| issuer.current().is_some())
            .collect();
        Explainer {
            generation,
            local_keys,
            route_lines,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime"),
            skipped,
        }
    }

    /// The compiled policy.
    pub fn policy(&self) -> &Policy {
        &self.generation.policy
    }

    /// Explain one request.
    pub fn explain(&self, req: &Request) -> Result<Explanation, InputError> {
        let policy = &self.generation.policy;
        let method = Method::from_bytes(req.method.as_bytes())
            .map_err(|_| InputError(format!("{:?} is not an HTTP method", req.method)))?;
        let (url_host, target) = split_url(&req.url)?;
        let mut headers = HeaderMap::new();
        for (name, value) in &req.headers {
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| InputError(format!("{name:?} is not a header name")))?;
            let value = HeaderValue::from_str(value.trim())
                .map_err(|_| InputError(format!("the value of {name} is not a header value")))?;
            headers.append(name, value);
        }
        if let Some(host) = url_host {
            if !headers.contains_key(http::header::HOST) {
                let value = HeaderValue::from_str(&host)
                    .map_err(|_| InputError(format!("{host:?} is not a host")))?;
                headers.insert(http::header::HOST, value);
            }
        }
        let given = match &req.token {
            TokenInput::None => None,
            TokenInput::Token(t) => Some(t.as_str()),
            // Stands for the token the claims come from; never verified.
            TokenInput::Claims(_) => Some("claims.not.signed"),
        };
        if let Some(token) = given {
            if headers.contains_key(http::header::AUTHORIZATION) {
                return Err(InputError(
                    "an Authorization header and a token or claims: give one".into(),
                ));
            }
            let scheme = if req.dpop.is_some() { "DPoP" } else { "Bearer" };
            let value = HeaderValue::from_str(&format!("{scheme} {token}"))
                .map_err(|_| InputError("the token is not a header value".into()))?;
            headers.insert(http::header::AUTHORIZATION, value);
        }
        // An https:// URL is a request to a TLS listener (DPoP proofs name the scheme).
        let tls = req
            .tls
            .unwrap_or_else(|| req.url.starts_with("https://") || policy.tls.is_some());
        if req.client_subject.is_some() {
            if !tls {
                return Err(InputError(
                    "a client certificate comes only over TLS: the request is not TLS".into(),
                ));
            }
            if policy
                .tls
                .as_ref()
                .is_none_or(|t| t.client_ca_file.is_none())
            {
                return Err(InputError(
                    "a client certificate is verified only with tls.client_ca_file, which the \
                     config does not set"
                        .into(),
                ));
            }
        }
        let mut dpop_notes = Vec::new();
        match (&req.dpop, given) {
            (None, _) => {}
            (Some(_), None) => {
                return Err(InputError(
                    "a DPoP proof or key needs a token or claims".into(),
                ))
            }
            (Some(dpop), Some(token)) => {
                let proof = match dpop {
                    DpopInput::Proof(p) => {
                        dpop_notes.push("DPoP proof given".to_string());
                        p.clone()
                    }
                    DpopInput::Key(path) => {
                        let pem = std::fs::read(path)
                            .map_err(|e| InputError(format!("DPoP key {}: {e}", path.display())))?;
                        let key = SigningKey::from_pkcs8_pem("dpop", &pem)
                            .map_err(|e| InputError(format!("DPoP key {}: {e}", path.display())))?;
                        let host = req.authority.as_deref().unwrap_or_else(|| {
                            headers
                                .get(http::header::HOST)
                                .and_then(|h| h.to_str().ok())
                                .unwrap_or_default()
                        });
                        let scheme = if tls { "https" } else { "http" };
                        let path_only = target.split(['?', '#']).next().unwrap_or_default();
                        let htu = format!("{scheme}://{host}{path_only}");
                        dpop_notes.push(format!(
                            "DPoP proof made now with the {:?} key in {} (cnf.jkt {}) for {} {htu}",
                            key.alg,
                            path.display(),
                            key.jkt(),
                            req.method
                        ));
                        key.dpop_proof(&req.method, &htu, Some(token), &json!({}))
                    }
                };
                let value = HeaderValue::from_str(&proof)
                    .map_err(|_| InputError("the DPoP proof is not a header value".into()))?;
                headers.insert(HeaderName::from_static("dpop"), value);
            }
        }
        let head = RequestHead {
            method: &method,
            target: target.as_bytes(),
            headers: &headers,
            authority: req.authority.as_deref(),
            peer: Some(req.peer.unwrap_or(IpAddr::from([127, 0, 0, 1]))),
            tls,
            client_subject: req.client_subject.as_deref(),
            client_cert: None,
        };
        let mut out = Explanation {
            method: req.method.clone(),
            target: target.clone(),
            host: headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string),
            path: Err(String::new()),
            routes: Vec::new(),
            route: None,
            token: Vec::new(),
            rules: Vec::new(),
            status: 0,
            reason: String::new(),
            description: None,
            shadow: None,
            upstream: None,
            upstream_headers: BTreeMap::new(),
        };
        out.token.extend(dpop_notes);
        let request_id = engine::request_id(&headers);

        let decision = match engine::route(policy, &head) {
            Err(denial) => {
                out.path = denial.path.clone().ok_or_else(|| refusal(&denial.deny));
                if denial.deny == Deny::NoRoute {
                    self.tried(
                        &head,
                        denial.path.as_deref().unwrap_or_default(),
                        None,
                        &mut out,
                    );
                }
                Decision::Deny(denial)
            }
            Ok(routed) => {
                out.path = Ok(routed.path.clone());
                self.tried(&head, &routed.path, Some(routed.route), &mut out);
                let route = &policy.routes.routes()[routed.route];
                let verified = match routed.token() {
                    None => {
                        out.token.push(match route.auth {
                            Auth::None => "not read: the route is auth: none".into(),
                            Auth::Optional => "none: the route is auth: optional".into(),
                            Auth::Required => "none, and the route is auth: required".into(),
                        });
                        None
                    }
                    Some(token) => Some(self.verify(token, routed.route, req, &mut out.token)),
                };
                if let Some(Ok(identity)) = &verified {
                    out.token.push(format!(
                        "valid for issuer {:?}",
                        policy.issuers[identity.issuer].name
                    ));
                    if route.accepts_issuer(identity.issuer) {
                        out.rules = rules(route, identity);
                    }
                }
                engine::decide(policy, &head, routed, verified, &request_id)
            }
        };
        out.route = decision
            .route()
            .map(|i| policy.routes.routes()[i].name.clone());
        match decision {
            Decision::Allow(allow) => {
                out.status = 200;
                out.reason = allow.grant.label().into();
                out.shadow = allow
                    .shadow
                    .as_ref()
                    .map(|d| (d.status(), d.reason().to_string()));
                out.upstream = Some(policy.upstreams[allow.upstream].name.clone());
                let mut sent = headers.clone();
                let Ok(()) = crate::forwarding::apply(&mut sent, &allow.edits);
                for name in sent.keys() {
                    let values: Vec<&str> = sent
                        .get_all(name)
                        .iter()
                        .map(|v| v.to_str().unwrap_or("<not text>"))
                        .collect();
                    out.upstream_headers
                        .insert(name.as_str().to_string(), values.join(", "));
                }
            }
            Decision::Deny(denial) => {
                out.status = denial.deny.status();
                out.reason = denial.deny.reason().into();
                out.description = Some(denial.deny.description().into());
            }
        }
        Ok(out)
    }

    /// The routes tried before `matched` (all of them when none matched), and why each missed.
    fn tried(&self, head: &RequestHead, path: &str, matched: Option<usize>, out: &mut Explanation) {
        let target = crate::path::parse_target(head.target).ok();
        let Ok(host) = engine::request_authority(target.and_then(|t| t.authority), head)
            .and_then(|authority| engine::request_host(head.headers, authority))
        else {
            return;
        };
        let routes = self.generation.policy.routes.routes();
        let last = matched.map_or(routes.len(), |m| m + 1);
        for (i, route) in routes.iter().enumerate().take(last) {
            out.routes.push(Tried {
                name: route.name.clone(),
                line: self.route_lines[i],
                miss: route
                    .miss(host.as_deref(), head.method, path)
                    .map(|m| m.label()),
            });
        }
    }

    /// The token check of `token` on route `route`.
    fn verify(
        &self,
        token: &str,
        route: usize,
        req: &Request,
        notes: &mut Vec<String>,
    ) -> Result<Arc<Identity>, AuthError> {
        let policy = &self.generation.policy;
        let rules = engine::token_rules(policy);
        if let TokenInput::Claims(claims) = &req.token {
            notes.push("claims given: no signature, the issuer's keys are not used".into());
            let claims = self.fill(claims.clone(), route, notes);
            return token::dangerous_unsigned_identity(claims, &rules).map(Arc::new);
        }
        // A token: by the real verifier when its issuer's keys are in the file.
        let remote = verify::parse(token).ok().and_then(|parsed| {
            let iss = verify::unverified_issuer(&parsed).ok()?;
            let index = *policy.issuer_by_iss.get(iss)?;
            let issuer = &policy.issuers[index];
            let hmac = parsed.header.alg.starts_with("HS");
            let checkable = if hmac {
                issuer.hmac.is_some()
            } else {
                self.local_keys[index]
            };
            (!checkable).then_some((parsed, index))
        });
        match remote {
            None => {
                notes.push("token verified with the issuer's keys from the config file".into());
                self.runtime.block_on(self.generation.authenticate(token))
            }
            Some((parsed, index)) => {
                let issuer = &policy.issuers[index];
                notes.push(format!(
                    "signature NOT checked: the keys of issuer {:?} are {} (offline); every \
                     other rule is",
                    issuer.name,
                    match &policy.keys[index].settings.source {
                        _ if parsed.header.alg.starts_with("HS") => {
                            "an HMAC secret whose variable is not set here"
                        }
                        Some(KeySource::File(_)) => "in a jwks_file that is not here",
                        _ => "fetched at run time",
                    }
                ));
                if token.len() > policy.limits.max_token_bytes {
                    return Err(verify::VerifyError::TooLarge.into());
                }
                verify::check_header(&parsed.header, issuer)?;
                token::dangerous_unsigned_identity(parsed.claims, &rules).map(Arc::new)
            }
        }
    }

    /// Fill `iss`, `aud`, `exp` (and `iat` when the issuer limits the lifetime) with valid
    /// values for the route's issuer.
    fn fill(&self, mut claims: Value, route: usize, notes: &mut Vec<String>) -> Value {
        let policy = &self.generation.policy;
        let Some(map) = claims.as_object_mut() else {
            return claims;
        };
        let route = &policy.routes.routes()[route];
        let by_iss = map
            .get("iss")
            .and_then(Value::as_str)
            .and_then(|iss| policy.issuer_by_iss.get(iss).copied());
        let index = by_iss.or_else(|| (0..policy.issuers.len()).find(|&i| route.accepts_issuer(i)));
        let Some(index) = index else {
            return claims;
        };
        let issuer = &policy.issuers[index];
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut filled = Vec::new();
        if !map.contains_key("iss") {
            map.insert("iss".into(), json!(issuer.issuer));
            filled.push(format!("iss {:?}", issuer.issuer));
        }
        if !map.contains_key("aud") {
            if let Some(aud) = issuer.audiences.first() {
                map.insert("aud".into(), json!(aud));
                filled.push(format!("aud {aud:?}"));
            }
        }
        if !map.contains_key("exp") {
            map.insert("exp".into(), json!(now + 300));
            filled.push("exp in 5 minutes".into());
        }
        if issuer.max_token_lifetime.is_some() && !map.contains_key("iat") {
            map.insert("iat".into(), json!(now));
            filled.push("iat now".into());
        }
        if !filled.is_empty() {
            notes.push(format!(
                "filled for issuer {:?}: {}",
                issuer.name,
                filled.join(", ")
            ));
        }
        claims
    }
}

/// (host, origin-form target) of a URL or an origin-form target.
fn split_url(url: &str) -> Result<(Option<String>, String), InputError> {
    if url.starts_with('/') {
        return Ok((None, url.to_string()));
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            InputError(format!(
                "{url:?}: write the URL as http(s)://host/path or /path"
            ))
        })?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (host, target) = rest.split_at(end);
    let target = if target.starts_with('?') || target.is_empty() {
        format!("/{target}")
    } else {
        target.to_string()
    };
    Ok(((!host.is_empty()).then(|| host.to_string()), target))
}

/// Why a target was refused before it had a path.
fn refusal(deny: &Deny) -> String {
    match deny {
        Deny::BadRequest(BadRequest::Target(e)) => format!("refused: {e}"),
        other => format!("refused: {}", other.description()),
    }
}

/// Each scope and claim rule of `route` on a verified token.
fn rules(route: &crate::route::Route, identity: &Identity) -> Vec<RuleCheck> {
    let mut out = Vec::new();
    match &route.scopes {
        ScopeRule::Nothing => {}
        ScopeRule::AllOf(list) => {
            for s in list {
                out.push(RuleCheck {
                    rule: format!("scope {s}"),
                    pass: identity.scopes.contains(s),
                });
            }
        }
        ScopeRule::AnyOf(list) => {
            out.push(RuleCheck {
                rule: format!("any of the scopes {}", list.join(", ")),
                pass: route.scopes.allows(&identity.scopes),
            });
        }
    }
    for rule in &route.claims {
        let name = match &rule.claim {
            crate::claims::ClaimRef::Name(n) | crate::claims::ClaimRef::Pointer(n) => n.clone(),
        };
        let want = match &rule.expect {
            crate::authz::Expect::Bool(b) => format!("is {b}"),
            crate::authz::Expect::OneOf(values) => format!(
                "is one of {}",
                values
                    .iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let has = match rule.claim.lookup(identity.claims()) {
            Some(v) => format!("token has {v}"),
            None => "token has none".into(),
        };
        out.push(RuleCheck {
            rule: format!("claim {name} {want} ({has})"),
            pass: rule.allows(identity.claims()),
        });
    }
    out
}

#[cfg(test)]
mod tests;
