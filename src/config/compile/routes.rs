//! `routes:`: matchers (path pattern, host, methods), the auth mode, and the scope and claim
//! rules, with each route's upstream and issuers resolved to indexes.

use super::issuers::Issuers;
use super::upstreams::Upstreams;
use super::{err, CompileError};
use crate::authz::{ClaimRule, Expect, ScopeRule};
use crate::claims::ClaimRef;
use crate::config::raw::{
    RawAuth, RawClaimRule, RawMode, RawRoute, RawScopes, RawSenderConstraint,
};
use crate::route::{Auth, HostMatch, Mode, PathPattern, Route};
use http::Method;
use std::collections::{BTreeMap, HashMap};

pub(super) fn compile(
    raw: &[RawRoute],
    upstreams: &Upstreams,
    issuers: &Issuers,
) -> Result<Vec<Route>, CompileError> {
    let mut routes = Vec::new();
    let mut names = HashMap::new();
    for (i, r) in raw.iter().enumerate() {
        let at = format!("routes[{i}]");
        if r.name.trim().is_empty() {
            return err(format!("{at}.name"), "a route name is not empty");
        }
        if let Some(first) = names.insert(r.name.clone(), i) {
            return err(
                format!("{at}.name"),
                format!(
                    "duplicate route name {:?}: routes[{first}] has it already",
                    r.name
                ),
            );
        }
        routes.push(route(&at, r, upstreams, issuers)?);
    }
    if routes.is_empty() {
        return err(
            "routes",
            "at least one route is needed (unmatched requests get 404)",
        );
    }
    Ok(routes)
}

/// Top-level claims that some route's `claims:` rule reads, sorted.
pub(super) fn authz_claims(routes: &[Route]) -> Vec<String> {
    let mut out: Vec<String> = routes
        .iter()
        .flat_map(|r| r.claims.iter().map(|c| c.claim.top_level()))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn route(
    at: &str,
    r: &RawRoute,
    upstreams: &Upstreams,
    issuers: &Issuers,
) -> Result<Route, CompileError> {
    let path = PathPattern::parse(&r.matcher.path).map_err(|m| CompileError {
        path: format!("{at}.match.path"),
        message: m,
    })?;
    let host = HostMatch::parse(r.matcher.host.as_deref()).map_err(|m| CompileError {
        path: format!("{at}.match.host"),
        message: m,
    })?;
    let methods = match &r.matcher.methods {
        None => None,
        Some(list) => Some(methods(&format!("{at}.match.methods"), list)?),
    };
    let auth = match r.auth.unwrap_or_default() {
        RawAuth::Required => Auth::Required,
        RawAuth::Optional => Auth::Optional,
        RawAuth::None => Auth::None,
    };
    let mode = match r.mode.unwrap_or_default() {
        RawMode::Enforce => Mode::Enforce,
        RawMode::Shadow => Mode::Shadow,
    };
    if auth == Auth::None && r.sender_constraint == Some(RawSenderConstraint::Required) {
        return err(
            format!("{at}.sender_constraint"),
            "a route with auth: none reads no token: sender_constraint: required needs auth: required or optional",
        );
    }
    if auth == Auth::None && mode == Mode::Shadow {
        return err(
            format!("{at}.mode"),
            "a route with auth: none has no decision to watch: mode: shadow needs auth: required or optional",
        );
    }
    if auth == Auth::None && (r.scopes.is_some() || !r.claims.is_empty() || r.issuers.is_some()) {
        return err(at, "a route with auth: none cannot have scopes, claims or issuers: they would never be checked");
    }
    if auth == Auth::Optional && (r.scopes.is_some() || !r.claims.is_empty()) {
        let key = if r.scopes.is_some() {
            "scopes"
        } else {
            "claims"
        };
        return err(
            format!("{at}.{key}"),
            "a route with auth: optional cannot have scopes or claims: a request without a token \
             would pass without meeting them; use auth: required",
        );
    }
    if auth != Auth::None && issuers.rules.is_empty() {
        return err(
            format!("{at}.auth"),
            "this route needs a token but no issuer is configured",
        );
    }
    let route_issuers = match &r.issuers {
        None => None,
        Some(list) if list.is_empty() => {
            return err(
                format!("{at}.issuers"),
                "list at least one issuer, or leave issuers out",
            )
        }
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(n, name)| {
                    issuers
                        .by_name
                        .get(name)
                        .copied()
                        .ok_or_else(|| CompileError {
                            path: format!("{at}.issuers[{n}]"),
                            message: super::unknown("issuer", name, issuers.by_name.keys()),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let scopes = match &r.scopes {
        None => ScopeRule::Nothing,
        Some(RawScopes::AllOfList(list)) => {
            ScopeRule::AllOf(scope_list(&format!("{at}.scopes"), list)?)
        }
        Some(RawScopes::Rule(rule)) => match (&rule.any_of, &rule.all_of) {
            (Some(any), None) => ScopeRule::AnyOf(scope_list(&format!("{at}.scopes.any_of"), any)?),
            (None, Some(all)) => ScopeRule::AllOf(scope_list(&format!("{at}.scopes.all_of"), all)?),
            _ => {
                return err(
                    format!("{at}.scopes"),
                    "write exactly one of any_of or all_of",
                )
            }
        },
    };
    let claims = claims(at, &r.claims)?;
    let upstream = match &r.upstream {
        Some(name) => *upstreams.index.get(name).ok_or_else(|| CompileError {
            path: format!("{at}.upstream"),
            message: super::unknown("upstream", name, upstreams.index.keys()),
        })?,
        None => upstreams.default.ok_or_else(|| CompileError {
            path: format!("{at}.upstream"),
            message: "no upstream: name one here or set the top-level upstream".into(),
        })?,
    };
    Ok(Route {
        name: r.name.clone(),
        host,
        methods,
        path,
        auth,
        issuers: route_issuers,
        scopes,
        claims,
        upstream,
        mode,
        sender_constrained: r.sender_constraint == Some(RawSenderConstraint::Required),
    })
}

fn methods(path: &str, list: &[String]) -> Result<Vec<Method>, CompileError> {
    if list.is_empty() {
        return err(path, "list at least one method, or leave methods out");
    }
    list.iter()
        .enumerate()
        .map(|(n, m)| {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                return err(
                    format!("{path}[{n}]"),
                    format!("{m:?} is not an upper-case HTTP method"),
                );
            }
            Method::from_bytes(m.as_bytes())
                .or_else(|_| err(format!("{path}[{n}]"), "not an HTTP method"))
        })
        .collect()
}

fn scope_list(path: &str, list: &[String]) -> Result<Vec<String>, CompileError> {
    if list.is_empty() {
        return err(path, "list at least one scope");
    }
    for (n, s) in list.iter().enumerate() {
        if s.contains(char::is_whitespace) {
            let words: Vec<&str> = s.split_whitespace().collect();
            return err(
                format!("{path}[{n}]"),
                format!(
                    "{s:?} holds a space, and no token can carry it: a token's scope claim is \
                     space-separated, so it holds the scopes {words:?}, one by one. List them \
                     as separate scopes ([{}]) or fix the name",
                    words.join(", ")
                ),
            );
        }
        if s.is_empty() || s.contains('"') || s.contains('\\') {
            return err(
                format!("{path}[{n}]"),
                "a scope is one word without spaces or quotes",
            );
        }
    }
    Ok(list.to_vec())
}

fn claims(
    at: &str,
    claims: &BTreeMap<String, RawClaimRule>,
) -> Result<Vec<ClaimRule>, CompileError> {
    let mut out = Vec::new();
    for (name, rule) in claims {
        let path = format!("{at}.claims.{name}");
        let claim = ClaimRef::parse(name).map_err(|m| CompileError {
            path: path.clone(),
            message: m,
        })?;
        let expect = match rule {
            RawClaimRule::Bool(b) => Expect::Bool(*b),
            RawClaimRule::OneOf(values) if values.is_empty() => {
                return err(path, "list at least one allowed value")
            }
            RawClaimRule::OneOf(values) => {
                if values
                    .iter()
                    .any(|v| v.is_object() || v.is_array() || v.is_null())
                {
                    return err(path, "allowed values are strings, numbers or booleans");
                }
                Expect::OneOf(values.clone())
            }
        };
        out.push(ClaimRule { claim, expect });
    }
    Ok(out)
}
