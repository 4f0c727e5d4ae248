//! `identity:`: the header plan. Which incoming headers are stripped and which are set from
//! claims; names the gateway owns, and names with `_`, are refused.

use super::{err, CompileError};
use crate::claims::ClaimRef;
use crate::config::raw::RawIdentity;
use crate::identity::{IdentityPlan, Source};
use http::HeaderName;

/// Headers an identity mapping may not take over: the proxy or the protocol owns them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "cookie",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-authorization",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
];

/// Incoming names are compared with `_` read as `-` when stripping (CGI-style upstreams read
/// `X_Auth_Subject` as `X-Auth-Subject`), so a configured name with `_` would never match a
/// spoofed incoming one: refuse it.
fn no_underscore<T>(path: &str, name: &str) -> Result<T, CompileError> {
    err(
        path,
        format!(
            "{name:?}: identity header names use '-' not '_' (write {:?}): upstreams that read \
             headers CGI-style treat them alike, and a spoofed one would not be stripped",
            name.replace('_', "-")
        ),
    )
}

pub(super) fn compile(i: &RawIdentity) -> Result<IdentityPlan, CompileError> {
    let strip_prefix = i.strip_prefix.to_ascii_lowercase();
    if strip_prefix.contains('_') {
        return no_underscore("identity.strip_prefix", &i.strip_prefix);
    }
    if !strip_prefix.is_empty() && HeaderName::from_bytes(strip_prefix.as_bytes()).is_err() {
        return err("identity.strip_prefix", "not the start of a header name");
    }
    let mut headers = Vec::new();
    for (name, claim) in &i.headers {
        let path = format!("identity.headers.{name}");
        let h = header_name(&path, name)?;
        let source = if claim == "scope" {
            Source::Scopes
        } else {
            Source::Claim(ClaimRef::parse(claim).map_err(|m| CompileError {
                path: path.clone(),
                message: m,
            })?)
        };
        headers.push((h, source));
    }
    let claims_header = match &i.claims_header {
        Some(name) => Some(header_name("identity.claims_header", name)?),
        None => None,
    };
    Ok(IdentityPlan {
        strip_prefix,
        headers,
        claims_header,
        forward_token: i.forward_token,
    })
}

/// A header name the gateway sets: `-` not `_`, valid, not one the proxy or protocol owns.
pub(super) fn header_name(path: &str, name: &str) -> Result<HeaderName, CompileError> {
    if name.contains('_') {
        return no_underscore(path, name);
    }
    let h = HeaderName::from_bytes(name.as_bytes())
        .or_else(|_| err(path, format!("{name:?} is not a header name")))?;
    if RESERVED_HEADERS.contains(&h.as_str()) {
        return err(path, format!("{name} is managed by the gateway itself"));
    }
    Ok(h)
}
