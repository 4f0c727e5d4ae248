//! The pingora `ProxyHttp` implementation: the only module that touches a `Session`. It runs the
//! pipeline stages in SPEC order and holds no policy of its own: canonical path (`path`),
//! identity-header strip (`identity`), route (`route`), token (`token::extract`), verification
//! (`token::Authenticator`), authorisation (`authz`), then forward with identity headers.

use crate::authz;
use crate::config::Policy;
use crate::keys::KeyStore;
use crate::metrics::Metrics;
use crate::path;
use crate::response::{self, Deny, Limit};
use crate::route::{self, Auth};
use crate::token::extract::{self, Source};
use crate::token::{AuthError, Authenticator, Identity};
use async_trait::async_trait;
use http::header;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Shared state of the gateway: the compiled policy, live keys, the verified-token cache.
pub struct Gateway {
    pub policy: Arc<Policy>,
    pub keys: Arc<KeyStore>,
    pub auth: Arc<Authenticator>,
    pub metrics: Arc<Metrics>,
    /// Requests being handled; SIGTERM waits for it to reach zero.
    pub in_flight: Arc<AtomicUsize>,
}

/// Counts a request as in flight for as long as its context lives.
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Per-request state.
pub struct Ctx {
    policy: Arc<Policy>,
    started: Instant,
    request_id: String,
    /// Canonical path, as matched and as forwarded.
    path: String,
    /// Query to forward (the token parameter removed when it carried the token).
    query: Option<String>,
    route: Option<usize>,
    identity: Option<Arc<Identity>>,
    token_source: Option<Source>,
    /// The reason recorded in metrics and logs.
    decision: &'static str,
    /// Request body bytes seen so far, against `limits.max_body_bytes`.
    body_bytes: u64,
    _in_flight: InFlight,
}

impl Gateway {
    /// Run the pipeline up to the forward decision. `Err` is the denial to answer.
    async fn decide(&self, session: &mut Session, ctx: &mut Ctx) -> Result<(), Deny> {
        let policy = Arc::clone(&ctx.policy);
        check_limits(session, &policy, self.in_flight.load(Ordering::Acquire))?;
        let target = path::parse_target(session.req_header().raw_path())
            .map_err(|e| Deny::BadRequest(e.description()))?;
        ctx.path = target.path;
        ctx.query = target.query.map(str::to_string);
        let authority = target.authority.map(str::to_string);

        // Identity headers are stripped on every route, whatever happens next.
        let strip: Vec<_> = session
            .req_header()
            .headers
            .keys()
            .filter(|name| policy.identity.strips(name))
            .cloned()
            .collect();
        for name in strip {
            session.req_header_mut().remove_header(&name);
        }

        let host = request_host(session.req_header(), authority.as_deref())?;
        let method = session.req_header().method.clone();
        let index = policy
            .routes
            .find(host.as_deref(), &method, &ctx.path)
            .ok_or(Deny::NoRoute)?;
        ctx.route = Some(index);
        let route = &policy.routes.routes()[index];
        if route.auth == Auth::None {
            ctx.decision = "public";
            return Ok(());
        }

        let found = extract::extract(
            &method,
            &session.req_header().headers,
            ctx.query.as_deref(),
            &policy.token_sources,
        )
        .map_err(|e| Deny::BadRequest(e.description()))?;
        let Some(found) = found else {
            if route.auth == Auth::Optional {
                ctx.decision = "anonymous";
                return Ok(());
            }
            return Err(Deny::MissingToken);
        };
        ctx.token_source = Some(found.source);
        let identity = self
            .auth
            .authenticate(&found.token, &policy, &self.keys, &self.metrics)
            .await
            .map_err(|e| match e {
                AuthError::Invalid(v) => Deny::InvalidToken(v.description()),
                AuthError::KeysUnavailable => Deny::KeysUnavailable,
            })?;
        if !route.accepts_issuer(identity.issuer) {
            return Err(Deny::InvalidToken(
                crate::token::verify::VerifyError::IssuerNotAccepted.description(),
            ));
        }
        if identity.headers.is_err() {
            return Err(Deny::InvalidToken(
                crate::token::verify::VerifyError::UnsafeClaim.description(),
            ));
        }
        ctx.identity = Some(Arc::clone(&identity));
        if !authz::authorise(
            &route.scopes,
            &route.claims,
            &identity.claims,
            &identity.scopes,
        ) {
            return Err(Deny::InsufficientScope(route.scopes.challenge()));
        }
        ctx.decision = "allowed";
        Ok(())
    }
}

/// The `limits:` that can be judged from the request head, before anything else.
fn check_limits(session: &mut Session, policy: &Policy, in_flight: usize) -> Result<(), Deny> {
    let limits = &policy.limits;
    session.set_read_timeout(Some(limits.client_body_timeout));
    session.set_keepalive(Some(limits.client_idle_timeout.as_secs()));
    // `in_flight` counts this request too.
    if in_flight > limits.max_in_flight {
        return Err(Deny::Limit(Limit::Busy));
    }
    let req = session.req_header();
    if req.raw_path().len() > limits.max_target_bytes {
        return Err(Deny::Limit(Limit::Target));
    }
    if req.headers.len() > limits.max_header_count {
        return Err(Deny::Limit(Limit::Headers));
    }
    let header_bytes: usize = req
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > limits.max_header_bytes {
        return Err(Deny::Limit(Limit::Headers));
    }
    if let Some(max) = limits.max_body_bytes {
        let declared = req
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return Err(Deny::Limit(Limit::Body));
        }
    }
    Ok(())
}

/// The request's host for route matching: the absolute-form authority or the `Host` header,
/// which must agree when both are present. Two `Host` headers are refused.
fn request_host(req: &RequestHeader, authority: Option<&str>) -> Result<Option<String>, Deny> {
    let bad = Deny::BadRequest("bad host");
    let mut hosts = req.headers.get_all(header::HOST).iter();
    let header_host = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(bad),
        (Some(h), None) => Some(
            h.to_str()
                .ok()
                .and_then(route::normalise_host)
                .ok_or(bad.clone())?,
        ),
        (None, _) => None,
    };
    let authority_host = match authority {
        Some(a) => Some(route::normalise_host(a).ok_or(bad.clone())?),
        None => None,
    };
    match (authority_host, header_host) {
        (Some(a), Some(h)) if a != h => Err(bad),
        (Some(a), _) => Ok(Some(a)),
        (None, h) => Ok(h),
    }
}

fn is_grpc(req: &RequestHeader) -> bool {
    req.headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// A fresh request id: 128 random bits in hex.
fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// An incoming `X-Request-Id` is kept if it is short printable ASCII; otherwise replaced.
fn incoming_request_id(req: &RequestHeader) -> Option<String> {
    let v = req.headers.get("x-request-id")?.to_str().ok()?;
    (!v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| v.to_string())
}

async fn write_reply(
    session: &mut Session,
    reply: response::Reply,
    request_id: &str,
) -> Result<()> {
    let mut resp = ResponseHeader::build(reply.status, Some(reply.headers.len() + 2))?;
    for (name, value) in reply.headers {
        resp.insert_header(name, value)?;
    }
    resp.insert_header("x-request-id", request_id)?;
    resp.insert_header(header::CONTENT_LENGTH, reply.body.len().to_string())?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(reply.body), true).await?;
    Ok(())
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Ctx {
            policy: Arc::clone(&self.policy),
            started: Instant::now(),
            request_id: String::new(),
            path: String::new(),
            query: None,
            route: None,
            identity: None,
            token_source: None,
            decision: "",
            body_bytes: 0,
            _in_flight: InFlight(Arc::clone(&self.in_flight)),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.request_id = incoming_request_id(session.req_header()).unwrap_or_else(new_request_id);
        match self.decide(session, ctx).await {
            Ok(()) => Ok(false),
            Err(deny) => {
                ctx.decision = deny.code();
                let grpc = is_grpc(session.req_header());
                if matches!(deny, Deny::BadRequest(_)) {
                    session.set_keepalive(None);
                }
                write_reply(session, response::reply(&deny, grpc), &ctx.request_id).await?;
                Ok(true)
            }
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let (Some(chunk), Some(max)) = (body.as_ref(), ctx.policy.limits.max_body_bytes) {
            ctx.body_bytes += chunk.len() as u64;
            if ctx.body_bytes > max {
                return Error::e_explain(
                    ErrorType::HTTPStatus(413),
                    "request body over max_body_bytes",
                );
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let route = ctx
            .route
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route chosen"))?;
        let upstream = &ctx.policy.upstreams[ctx.policy.routes.routes()[route].upstream];
        let mut peer = HttpPeer::new(upstream.address, false, String::new());
        peer.options.connection_timeout = Some(upstream.connect_timeout);
        peer.options.read_timeout = Some(upstream.read_timeout);
        peer.options.write_timeout = Some(upstream.read_timeout);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let policy = &ctx.policy;
        // Forward exactly the path that was matched.
        // On routes that read tokens, token carriers never go upstream unless forward_token:
        // not the one used, and not one that was ignored (a cross-site cookie).
        let route_auth = ctx.route.map(|r| policy.routes.routes()[r].auth);
        let strip_tokens = route_auth != Some(Auth::None) && !policy.identity.forward_token;
        let query = match (&policy.token_sources.query, &ctx.query) {
            (Some(name), Some(q)) if strip_tokens => extract::query_without(q, name),
            _ => ctx.query.clone(),
        };
        let target = match &query {
            Some(q) => format!("{}?{}", ctx.path, q),
            None => ctx.path.clone(),
        };
        let uri = target.parse::<http::Uri>().map_err(|_| {
            Error::explain(ErrorType::InternalError, "canonical target is not a URI")
        })?;
        upstream.set_uri(uri);

        if strip_tokens {
            upstream.remove_header(&header::AUTHORIZATION);
            if let Some(name) = &policy.token_sources.cookie {
                let cookies: Vec<String> = upstream
                    .headers
                    .get_all(header::COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .filter_map(|v| extract::cookie_without(v, name))
                    .collect();
                upstream.remove_header(&header::COOKIE);
                if !cookies.is_empty() {
                    upstream.insert_header(header::COOKIE, cookies.join("; "))?;
                }
            }
        }
        if let Some(identity) = &ctx.identity {
            if let Ok(headers) = &identity.headers {
                for (name, value) in headers {
                    upstream.insert_header(name.clone(), value.clone())?;
                }
            }
        }

        // X-Forwarded-*: replaced unless the peer is a trusted proxy.
        let client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let trusted =
            client_ip.is_some_and(|ip| policy.trusted_proxies.iter().any(|n| n.contains(&ip)));
        let ip_text = client_ip.map(|ip| ip.to_string()).unwrap_or_default();
        if trusted {
            let prior: Vec<String> = upstream
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_string))
                .collect();
            let mut chain = prior.join(", ");
            if !chain.is_empty() {
                chain.push_str(", ");
            }
            chain.push_str(&ip_text);
            upstream.insert_header("x-forwarded-for", chain)?;
            if upstream.headers.get("x-forwarded-proto").is_none() {
                upstream.insert_header("x-forwarded-proto", "http")?;
            }
        } else {
            upstream.insert_header("x-forwarded-for", ip_text)?;
            upstream.insert_header("x-forwarded-proto", "http")?;
            upstream.remove_header("x-forwarded-host");
        }
        if !trusted || upstream.headers.get("x-forwarded-host").is_none() {
            if let Some(host) = upstream.headers.get(header::HOST).cloned() {
                upstream.insert_header("x-forwarded-host", host)?;
            }
        }
        upstream.insert_header("x-request-id", ctx.request_id.as_str())?;
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if resp.headers.get("x-request-id").is_none() {
            resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let deny = match (e.esource(), e.etype()) {
            (_, ErrorType::HTTPStatus(413)) => Some(Deny::Limit(Limit::Body)),
            (ErrorSource::Downstream, ErrorType::ReadTimedout) => {
                Some(Deny::Limit(Limit::BodyTimeout))
            }
            (_, ErrorType::HTTPStatus(400)) | (ErrorSource::Downstream, _) => {
                Some(Deny::BadRequest("bad request"))
            }
            (
                _,
                ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout,
            ) => Some(Deny::UpstreamTimeout),
            _ => Some(Deny::UpstreamError),
        };
        let dead = matches!(
            e.etype(),
            ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed
        ) && e.esource() == &ErrorSource::Downstream;
        let mut code = 0;
        if let Some(deny) = deny.filter(|_| !dead && session.response_written().is_none()) {
            ctx.decision = deny.code();
            code = deny.status();
            let grpc = is_grpc(session.req_header());
            if write_reply(session, response::reply(&deny, grpc), &ctx.request_id)
                .await
                .is_err()
            {
                code = 0;
            }
        } else if ctx.decision == "allowed"
            || ctx.decision == "anonymous"
            || ctx.decision == "public"
        {
            ctx.decision = "upstream_error";
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn request_summary(&self, session: &Session, ctx: &Ctx) -> String {
        // Never the query string: it may carry a token.
        format!("{} {}", session.req_header().method, ctx.path)
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let route = ctx
            .route
            .map_or("-", |r| ctx.policy.routes.routes()[r].name.as_str());
        let decision = if ctx.decision.is_empty() {
            "bad_request"
        } else {
            ctx.decision
        };
        let elapsed = ctx.started.elapsed();
        self.metrics
            .requests
            .with_label_values(&[route, decision])
            .inc();
        self.metrics.request_seconds.observe(elapsed.as_secs_f64());
        let issuer = ctx
            .identity
            .as_ref()
            .map_or("-", |i| ctx.policy.issuers[i.issuer].name.as_str());
        let subject = if ctx.policy.log_subject {
            ctx.identity.as_ref().and_then(|i| i.subject.as_deref())
        } else {
            None
        };
        tracing::info!(
            target: "access",
            request_id = %ctx.request_id,
            route,
            method = %session.req_header().method,
            path = %ctx.path,
            status,
            decision,
            issuer,
            subject,
            latency_us = elapsed.as_micros() as u64,
        );
    }
}
