//! The decision engine: what the gateway does with one request, as a value. Pure and
//! synchronous over a protocol-neutral request head and the compiled policy, so the server,
//! offline tools and tests all get the same answer from the same code.
//!
//! Two steps, because verifying a token may wait on a key refetch and that belongs to the
//! caller: `route` (limits, canonical target, host, route, token extraction), then the caller
//! verifies the token `route` found, then `decide` (verification result, issuer, scope and
//! claim rules, and every header edit of the request that goes upstream). `decide_with` runs
//! both with a synchronous verifier.

use crate::authz;
use crate::config::{Limits, Policy};
pub use crate::forwarding::Edit;
use crate::forwarding::{DPOP_HEADER, X_FORWARDED_PROTO, X_REQUEST_ID};
use crate::path;
use crate::response::{BadRequest, Deny, Limit, ProofDenial};
use crate::route::{self, Auth, Mode};
use crate::token::dpop::{self, Expected, ProofError, Target};
use crate::token::extract::{self, ExtractError, Found, Source};
use crate::token::verify::VerifyError;
use crate::token::{AuthError, Identity, TokenRules};
use http::{header, HeaderMap, HeaderValue, Method};
use std::net::IpAddr;
use std::sync::Arc;

/// What the engine reads of a request: its head, as any protocol delivers it.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    pub method: &'a Method,
    /// The request target as received: origin-form (`/a?b`) or absolute-form (`http://h/a`).
    pub target: &'a [u8],
    pub headers: &'a HeaderMap,
    /// HTTP/2's `:authority` pseudo-header; `None` over HTTP/1.1, where an authority comes
    /// in the target (absolute-form) or not at all.
    pub authority: Option<&'a str>,
    /// The address of the peer that sent the request.
    pub peer: Option<IpAddr>,
    /// The request arrived over TLS.
    pub tls: bool,
    /// The subject (RFC 4514) of the client certificate the connection was verified with.
    pub client_subject: Option<&'a str>,
    /// The SHA-256 of the DER of that certificate (for certificate-bound tokens).
    pub client_cert: Option<&'a [u8; 32]>,
}

/// A request matched to a route, with the token it carries (not yet verified).
#[derive(Debug)]
pub struct Routed {
    /// Index into `Policy::routes`.
    pub route: usize,
    /// Canonical path: the one matched and the one forwarded.
    pub path: String,
    /// The host the route was matched by (lower-case, no port); `None` without one.
    pub host: Option<String>,
    /// Query as received.
    query: Option<String>,
    /// The authority of an absolute-form target or of HTTP/2's `:authority`, as written.
    authority: Option<String>,
    /// The token to verify; `None` on `auth: none` routes and when the request has none.
    token: Option<Found>,
    /// Where to find the token was itself refused (two tokens…) on a `mode: shadow` route:
    /// judged with the rest, in `decide`.
    refused: Option<Deny>,
    /// A CORS preflight under `cors_preflight: forward`, routed as the method it asks about.
    preflight: bool,
}

impl Routed {
    /// The token the caller must verify before `decide`, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_ref().map(|f| f.token.as_str())
    }
}

/// How an allowed request got through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// An `auth: none` route: no token read.
    Public,
    /// An `auth: optional` route without a token.
    Anonymous,
    /// A verified token that meets the route's rules.
    Authenticated,
    /// A `mode: shadow` route that would have denied the request (`Allow::shadow` says why).
    Shadow,
    /// A CORS preflight forwarded without a token (`cors_preflight: forward`).
    Preflight,
}

impl Grant {
    /// The decision label of metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Grant::Public => "public",
            Grant::Anonymous => "anonymous",
            Grant::Authenticated => "allowed",
            Grant::Shadow => "shadow_denied",
            Grant::Preflight => "cors_preflight",
        }
    }
}

/// A request to forward.
#[derive(Debug)]
pub struct Allow {
    /// Index into `Policy::routes`.
    pub route: usize,
    /// Index into `Policy::upstreams`.
    pub upstream: usize,
    pub grant: Grant,
    /// Canonical path and query (a token parameter removed) to send upstream.
    pub target: String,
    /// Canonical path alone, for logs.
    pub path: String,
    pub identity: Option<Arc<Identity>>,
    /// Every header change, in order.
    pub edits: Vec<Edit>,
    /// On a `mode: shadow` route, the denial an enforcing route would have made.
    pub shadow: Option<Deny>,
}

/// A request the gateway answers itself.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The route matched before the denial, if any.
    pub route: Option<usize>,
    /// Canonical path, when the target had one.
    pub path: Option<String>,
    /// The verified token of a request that failed the route's rules, for the log.
    pub identity: Option<Arc<Identity>>,
    pub deny: Deny,
}

/// What the gateway does with a request.
#[derive(Debug)]
pub enum Decision {
    Allow(Allow),
    Deny(Refusal),
}

impl Decision {
    /// The route matched, allowed or not.
    pub fn route(&self) -> Option<usize> {
        match self {
            Decision::Allow(a) => Some(a.route),
            Decision::Deny(d) => d.route,
        }
    }

    /// The canonical path, when the target had one.
    pub fn path(&self) -> Option<&str> {
        match self {
            Decision::Allow(a) => Some(&a.path),
            Decision::Deny(d) => d.path.as_deref(),
        }
    }

    /// The verified token, allowed or not.
    pub fn identity(&self) -> Option<&Identity> {
        match self {
            Decision::Allow(a) => a.identity.as_deref(),
            Decision::Deny(d) => d.identity.as_deref(),
        }
    }
}

impl From<Deny> for Refusal {
    /// A denial made before the target was read (limits, admission).
    fn from(deny: Deny) -> Self {
        Refusal {
            route: None,
            path: None,
            identity: None,
            deny,
        }
    }
}

/// The token layer's view of the policy.
pub fn token_rules(policy: &Policy) -> TokenRules<'_> {
    TokenRules {
        issuers: &policy.issuers,
        issuer_by_iss: &policy.issuer_by_iss,
        max_token_bytes: policy.limits.max_token_bytes,
        identity: &policy.identity,
        keep_claims: &policy.authz_claims,
        keep_subject: policy.log_subject,
    }
}

/// Admission: `in_flight` (this request included) against `limits.max_in_flight`.
pub fn admit(limits: &Limits, in_flight: usize) -> Result<(), Deny> {
    if in_flight > limits.max_in_flight {
        return Err(Limit::Busy.into());
    }
    Ok(())
}

/// A request body, `seen` bytes so far, against `limits.max_body_bytes`.
pub fn body_within(limits: &Limits, seen: u64) -> Result<(), Deny> {
    match limits.max_body_bytes {
        Some(max) if seen > max => Err(Limit::Body.into()),
        _ => Ok(()),
    }
}

/// The request id that goes upstream and back: an incoming `X-Request-Id` if it is short
/// printable ASCII, otherwise 128 fresh random bits in hex. A header value, so that the
/// upstream request and the response share it without copying. Marked sensitive, which HTTP/2
/// encodes as a literal never indexed (RFC 7541 section 6.2.3): a value new on every request
/// would only push useful entries out of the peer's HPACK table, at a cost to both ends.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID).filter(|v| {
        let b = v.as_bytes();
        !b.is_empty() && b.len() <= 128 && b.iter().all(u8::is_ascii_graphic)
    }) {
        let mut id = v.clone();
        id.set_sensitive(true);
        return id;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits = rand::random::<u128>().to_be_bytes();
    let mut id = [0u8; 32];
    for (pair, byte) in id.chunks_exact_mut(2).zip(bits) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    let mut id = HeaderValue::from_bytes(&id).expect("hex digits are a header value");
    id.set_sensitive(true);
    id
}

/// Step one: limits, canonical target, host, route, token extraction.
pub fn route(policy: &Policy, head: &RequestHead) -> Result<Routed, Refusal> {
    let denial = |route, path: Option<&str>, deny| Refusal {
        route,
        path: path.map(str::to_string),
        identity: None,
        deny,
    };
    check_limits(&policy.limits, head)?;
    // `delete` is not `DELETE` to the route table, but several frameworks upper-case it.
    if head.method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(Deny::BadRequest(BadRequest::Method).into());
    }
    let target = path::parse_target(head.target).map_err(Deny::from)?;
    let path = target.path;
    let host = request_authority(target.authority, head)
        .and_then(|authority| request_host(head.headers, authority))
        .map_err(|d| denial(None, Some(&path), d))?;
    let preflight = if policy.forward_preflights {
        preflight_method(head).map_err(|d| denial(None, Some(&path), d))?
    } else {
        None
    };
    let index = policy
        .routes
        .find(
            host.as_deref(),
            preflight.as_ref().unwrap_or(head.method),
            &path,
        )
        .ok_or_else(|| denial(None, Some(&path), Deny::NoRoute))?;
    let route = &policy.routes.routes()[index];
    let (token, refused) = if route.auth == Auth::None || preflight.is_some() {
        (None, None)
    } else {
        match extract::extract(
            head.method,
            head.headers,
            target.query,
            &policy.token_sources,
        ) {
            Ok(_) if head.headers.get_all(&DPOP_HEADER).iter().nth(1).is_some() => {
                let e = ExtractError::SeveralProofs;
                if route.mode != Mode::Shadow {
                    return Err(denial(Some(index), Some(&path), e.into()));
                }
                (None, Some(Deny::from(e)))
            }
            Ok(token) => (token, None),
            Err(e) if route.mode == Mode::Shadow => (None, Some(Deny::from(e))),
            Err(e) => return Err(denial(Some(index), Some(&path), e.into())),
        }
    };
    Ok(Routed {
        route: index,
        host,
        query: target.query.map(str::to_string),
        authority: target.authority.or(head.authority).map(str::to_string),
        path,
        token,
        refused,
        preflight: preflight.is_some(),
    })
}

/// The method a CORS preflight asks about: `Some` for an `OPTIONS` request with `Origin` and
/// one `Access-Control-Request-Method`; `None` for any other request (an `OPTIONS` without
/// them is an ordinary request). A requested method that is not an upper-case method token is
/// refused, like such a request method.
fn preflight_method(head: &RequestHead) -> Result<Option<Method>, Deny> {
    if head.method != Method::OPTIONS || !head.headers.contains_key(header::ORIGIN) {
        return Ok(None);
    }
    let mut asked = head
        .headers
        .get_all(header::ACCESS_CONTROL_REQUEST_METHOD)
        .iter();
    let bad = || Deny::BadRequest(BadRequest::Method);
    match (asked.next(), asked.next()) {
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err(bad()),
        (Some(m), None) => {
            let m = m.as_bytes().trim_ascii();
            if m.is_empty() || m.iter().any(u8::is_ascii_lowercase) {
                return Err(bad());
            }
            Method::from_bytes(m).map(Some).map_err(|_| bad())
        }
    }
}

/// Step two: judge the verification result `verified` (of `routed.token()`; `None` when there
/// was no token) against the route, and list the header edits of an allowed request.
pub fn decide(
    policy: &Policy,
    head: &RequestHead,
    routed: Routed,
    verified: Option<Result<Arc<Identity>, AuthError>>,
    request_id: &HeaderValue,
) -> Decision {
    let index = routed.route;
    let route = &policy.routes.routes()[index];
    let verified_identity = verified.as_ref().and_then(|v| v.as_ref().ok()).cloned();
    let (grant, identity, shadow) = match judge(policy, head, &routed, verified) {
        Ok((grant, identity)) => (grant, identity, None),
        // A shadow route forwards what it would have denied, with the identity of a token
        // that verified (and none of one that did not).
        Err(deny) if route.mode == Mode::Shadow => (Grant::Shadow, verified_identity, Some(deny)),
        Err(deny) => {
            return Decision::Deny(Refusal {
                route: Some(index),
                path: Some(routed.path),
                identity: verified_identity,
                deny,
            })
        }
    };
    let verified_source = routed.token.as_ref().map(|f| f.source);
    let carriers = match (route.auth, verified_source) {
        // Never verified: no bearer token of it goes upstream, whatever forward_token.
        (Auth::None, _) => edits::Carriers::RemoveBearer,
        // A CORS preflight: no token read, as on `auth: none`.
        _ if routed.preflight => edits::Carriers::RemoveBearer,
        // Only the carrier of the token that verified: a cookie ignored on a cross-site POST
        // goes, whatever forward_token.
        (_, Some(source)) if policy.identity.forward_token && identity.is_some() => {
            edits::Carriers::Keep(source)
        }
        (_, None) if policy.identity.forward_token && shadow.is_none() => {
            edits::Carriers::RemoveBearer
        }
        _ => edits::Carriers::RemoveAll,
    };
    let query = match (&policy.token_sources.query, &routed.query) {
        (Some(name), Some(q)) if !carriers.keeps(extract::Source::Query) => {
            extract::query_without(q, name)
        }
        _ => routed.query.clone(),
    };
    let target = match &query {
        Some(q) => format!("{}?{q}", routed.path),
        None => routed.path.clone(),
    };
    let edits = edits::edits(
        policy,
        head,
        carriers,
        identity.as_deref(),
        routed.authority.as_deref(),
        request_id,
    );
    Decision::Allow(Allow {
        route: index,
        upstream: route.upstream,
        grant,
        target,
        path: routed.path,
        identity,
        edits,
        shadow,
    })
}

/// Both steps, with a synchronous verifier: for offline tools and tests.
pub fn decide_with(
    policy: &Policy,
    head: &RequestHead,
    request_id: &HeaderValue,
    verify: impl FnOnce(&str) -> Result<Arc<Identity>, AuthError>,
) -> Decision {
    match route(policy, head) {
        Ok(routed) => {
            let verified = routed.token().map(verify);
            decide(policy, head, routed, verified, request_id)
        }
        Err(denial) => Decision::Deny(denial),
    }
}

/// The route's verdict on the token (or its absence).
fn judge(
    policy: &Policy,
    head: &RequestHead,
    routed: &Routed,
    verified: Option<Result<Arc<Identity>, AuthError>>,
) -> Result<(Grant, Option<Arc<Identity>>), Deny> {
    let route = &policy.routes.routes()[routed.route];
    if routed.preflight {
        return Ok((Grant::Preflight, None));
    }
    if route.auth == Auth::None {
        return Ok((Grant::Public, None));
    }
    if let Some(deny) = &routed.refused {
        return Err(deny.clone());
    }
    let Some(verified) = verified else {
        return match route.auth {
            Auth::Optional => Ok((Grant::Anonymous, None)),
            _ => Err(Deny::MissingToken),
        };
    };
    let identity = verified?;
    if !route.accepts_issuer(identity.issuer) {
        return Err(VerifyError::IssuerNotAccepted.into());
    }
    check_binding(policy, head, routed, &identity)?;
    if let Err(unsafe_claim) = &identity.headers {
        return Err((*unsafe_claim).into());
    }
    authz::authorise(
        &route.scopes,
        &route.claims,
        identity.claims(),
        &identity.scopes,
    )?;
    Ok((Grant::Authenticated, Some(identity)))
}

/// Sender constraints: a DPoP-bound token (`cnf.jkt`) only with the `DPoP` scheme and a valid
/// proof, the `DPoP` scheme only with a DPoP-bound token, a certificate-bound token
/// (`cnf."x5t#S256"`) only on a connection verified with that certificate, and on a
/// `sender_constraint: required` route no token bound to nothing.
fn check_binding(
    policy: &Policy,
    head: &RequestHead,
    routed: &Routed,
    identity: &Identity,
) -> Result<(), Deny> {
    let route = &policy.routes.routes()[routed.route];
    let dpop_scheme = routed
        .token
        .as_ref()
        .is_some_and(|f| f.source == Source::Dpop);
    let binding = identity.binding.as_deref();
    match binding.and_then(|b| b.jkt.as_ref()) {
        Some(jkt) if dpop_scheme => {
            let token = routed.token().unwrap_or_default();
            check_proof(policy, head, routed, identity, token, jkt)?;
        }
        Some(_) => return Err(VerifyError::BoundTokenAsBearer.into()),
        None if dpop_scheme => return Err(VerifyError::NotDpopBound.into()),
        None => {}
    }
    if let Some(x5t) = binding.and_then(|b| b.x5t.as_ref()) {
        if head.client_cert != Some(x5t) {
            return Err(VerifyError::CertificateMismatch.into());
        }
    }
    if route.sender_constrained && binding.is_none() {
        return Err(VerifyError::Unbound.into());
    }
    Ok(())
}

/// The request's DPoP proof against `dpop:`, the request and the token.
fn check_proof(
    policy: &Policy,
    head: &RequestHead,
    routed: &Routed,
    identity: &Identity,
    token: &str,
    jkt: &[u8; 32],
) -> Result<(), Deny> {
    let rules = &policy.dpop;
    let now = crate::token::unix_now();
    let deny = |error: ProofError| {
        Deny::Proof(ProofDenial {
            error,
            algs: rules.algs.clone(),
            nonce: (error == ProofError::NonceNeeded).then(|| policy.dpop_guard.nonces.fresh(now)),
        })
    };
    let proof = head
        .headers
        .get(&DPOP_HEADER)
        .ok_or_else(|| deny(ProofError::Missing))?
        .to_str()
        .map_err(|_| deny(ProofError::Malformed))?;
    let https = head.tls || forwarded_https(policy, head);
    let (host, port) =
        request_host_port(routed, head, https).ok_or_else(|| deny(ProofError::WrongUri))?;
    let target = Target {
        https,
        host: &host,
        port,
        path: &routed.path,
    };
    let leeway = policy
        .issuers
        .get(identity.issuer)
        .map_or(std::time::Duration::ZERO, |i| i.leeway);
    let want = Expected {
        method: head.method.as_str(),
        target: &target,
        token,
        jkt,
        now,
        leeway,
    };
    dpop::check(proof, rules, &policy.dpop_guard, &want).map_err(deny)
}

/// Did a trusted proxy say the client used https (`X-Forwarded-Proto: https`)?
fn forwarded_https(policy: &Policy, head: &RequestHead) -> bool {
    let trusted = head
        .peer
        .is_some_and(|ip| policy.trusted_proxies.iter().any(|n| n.contains(&ip)));
    trusted
        && head
            .headers
            .get(&X_FORWARDED_PROTO)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// The host (as routed) and port (as written, or the scheme's default) the client addressed.
fn request_host_port(routed: &Routed, head: &RequestHead, https: bool) -> Option<(String, u16)> {
    let authority = match &routed.authority {
        Some(a) => a.as_str(),
        None => head.headers.get(header::HOST)?.to_str().ok()?,
    };
    let host = routed.host.clone()?;
    let port = match authority.rsplit_once(':') {
        Some((_, p)) if !authority.ends_with(']') => p.parse().ok()?,
        _ => dpop::default_port(https),
    };
    Some((host, port))
}

/// The `limits:` that can be judged from the request head.
fn check_limits(limits: &Limits, head: &RequestHead) -> Result<(), Deny> {
    if head.target.len() > limits.max_target_bytes {
        return Err(Limit::Target.into());
    }
    if head.headers.len() > limits.max_header_count {
        return Err(Limit::Headers.into());
    }
    let header_bytes: usize = head
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > limits.max_header_bytes {
        return Err(Limit::Headers.into());
    }
    if let Some(max) = limits.max_body_bytes {
        let declared = head
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return Err(Limit::Body.into());
        }
    }
    Ok(())
}

/// The request's authority besides `Host`: an absolute-form target's (`target`) or HTTP/2's
/// `:authority`, which must name the same one when both are present. Public for `portcullis
/// explain`.
pub fn request_authority<'a>(
    target: Option<&'a str>,
    head: &RequestHead<'a>,
) -> Result<Option<&'a str>, Deny> {
    match (target, head.authority) {
        (Some(t), Some(a)) if !t.eq_ignore_ascii_case(a) => Err(Deny::BadRequest(BadRequest::Host)),
        (t, a) => Ok(t.or(a)),
    }
}

/// The request's host for route matching: the authority (`request_authority`) or the `Host` header,
/// which must agree when both are present. Two `Host` headers are refused. Public for
/// `portcullis explain`, which shows why each route missed.
pub fn request_host(headers: &HeaderMap, authority: Option<&str>) -> Result<Option<String>, Deny> {
    let bad = || Deny::BadRequest(BadRequest::Host);
    let mut hosts = headers.get_all(header::HOST).iter();
    let header_host = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(bad()),
        (Some(h), None) => Some(
            h.to_str()
                .ok()
                .and_then(route::normalise_host)
                .ok_or_else(bad)?,
        ),
        (None, _) => None,
    };
    let authority_host = match authority {
        Some(a) => Some(route::normalise_host(a).ok_or_else(bad)?),
        None => None,
    };
    match (authority_host, header_host) {
        (Some(a), Some(h)) if a != h => Err(bad()),
        (Some(a), _) => Ok(Some(a)),
        (None, h) => Ok(h),
    }
}

mod edits;

#[cfg(test)]
mod tests;
