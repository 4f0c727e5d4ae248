//! The pingora `ProxyHttp` implementation: the only module that touches a `Session`. It adapts
//! pingora to the decision engine (`engine`) and holds no policy of its own: read the head,
//! call the engine (verifying the token it found in between), apply the header edits, pick the
//! peer, map pingora's errors, log.

use crate::config::Policy;
use crate::engine::{self, Access, Decision, Edit, RequestHead};
use crate::keys::KeyStore;
use crate::metrics::Metrics;
use crate::response::{self, Deny};
use crate::token::{Authenticator, Identity};
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

/// What a request came to, for metrics and the access log.
enum Outcome {
    /// Not decided yet (pingora failed before the engine ran).
    Pending,
    Allowed(Access),
    Denied(Deny),
    /// Allowed, then the upstream failed after the response had started.
    UpstreamFailed,
}

/// Per-request state.
pub struct Ctx {
    /// The policy this request is judged and forwarded under, start to end.
    policy: Arc<Policy>,
    started: Instant,
    request_id: String,
    /// Canonical path, for the log (never the query).
    path: String,
    route: Option<usize>,
    /// Upstream, target and header edits of an allowed request.
    forward: Option<engine::Allow>,
    /// The verified token, allowed or not, for the log.
    identity: Option<Arc<Identity>>,
    outcome: Outcome,
    /// Request body bytes seen so far, against `limits.max_body_bytes`.
    body_bytes: u64,
    _in_flight: InFlight,
}

impl Gateway {
    /// Run the engine over the request head, verifying the token it finds.
    async fn decide(&self, session: &Session, ctx: &Ctx) -> Decision {
        let policy = &ctx.policy;
        let req = session.req_header();
        let head = RequestHead {
            method: &req.method,
            target: req.raw_path(),
            headers: &req.headers,
            peer: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            tls: false,
        };
        if let Err(deny) = engine::admit(&policy.limits, self.in_flight.load(Ordering::Acquire)) {
            return Decision::Deny(engine::Denial {
                route: None,
                path: None,
                identity: None,
                deny,
            });
        }
        let routed = match engine::route(policy, &head) {
            Ok(routed) => routed,
            Err(denial) => return Decision::Deny(denial),
        };
        let verified = match routed.token() {
            Some(token) => Some(
                self.auth
                    .authenticate(
                        token,
                        &engine::token_rules(policy),
                        &self.keys,
                        &self.metrics,
                    )
                    .await,
            ),
            None => None,
        };
        engine::decide(policy, &head, routed, verified, &ctx.request_id)
    }
}

fn is_grpc(req: &RequestHeader) -> bool {
    req.headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// Write the gateway's own answer to `deny`.
async fn write_denial(session: &mut Session, deny: &Deny, request_id: &str) -> Result<()> {
    let reply = response::reply(deny, is_grpc(session.req_header()));
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
            route: None,
            forward: None,
            identity: None,
            outcome: Outcome::Pending,
            body_bytes: 0,
            _in_flight: InFlight(Arc::clone(&self.in_flight)),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let limits = &ctx.policy.limits;
        session.set_read_timeout(Some(limits.client_body_timeout));
        session.set_keepalive(Some(limits.client_idle_timeout.as_secs()));
        ctx.request_id = engine::request_id(&session.req_header().headers);
        let decision = self.decide(session, ctx).await;
        ctx.route = decision.route();
        match decision {
            Decision::Allow(allow) => {
                ctx.path.clone_from(&allow.path);
                ctx.identity.clone_from(&allow.identity);
                ctx.outcome = Outcome::Allowed(allow.access);
                ctx.forward = Some(allow);
                Ok(false)
            }
            Decision::Deny(denial) => {
                ctx.path = denial.path.unwrap_or_default();
                ctx.identity = denial.identity;
                if matches!(denial.deny, Deny::BadRequest(_)) {
                    session.set_keepalive(None);
                }
                write_denial(session, &denial.deny, &ctx.request_id).await?;
                ctx.outcome = Outcome::Denied(denial.deny);
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
        let allow = ctx
            .forward
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route chosen"))?;
        let upstream = &ctx.policy.upstreams[allow.upstream];
        let mut peer = HttpPeer::new(upstream.address, false, String::new());
        peer.options.connection_timeout = Some(upstream.connect_timeout);
        peer.options.read_timeout = Some(upstream.read_timeout);
        peer.options.write_timeout = Some(upstream.read_timeout);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let allow = ctx
            .forward
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route chosen"))?;
        let uri = allow.target.parse::<http::Uri>().map_err(|_| {
            Error::explain(ErrorType::InternalError, "canonical target is not a URI")
        })?;
        upstream.set_uri(uri);
        for edit in &allow.edits {
            match edit {
                Edit::Remove(name) => {
                    upstream.remove_header(name);
                }
                Edit::Set(name, value) => upstream.insert_header(name.clone(), value.clone())?,
            }
        }
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
        let dead = matches!(
            e.etype(),
            ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed
        ) && e.esource() == &ErrorSource::Downstream;
        let mut code = 0;
        if !dead && session.response_written().is_none() {
            let deny = response::deny_for_proxy_error(e.esource(), e.etype());
            code = deny.status();
            if write_denial(session, &deny, &ctx.request_id).await.is_err() {
                code = 0;
            }
            ctx.outcome = Outcome::Denied(deny);
        } else if matches!(ctx.outcome, Outcome::Allowed(_)) {
            ctx.outcome = Outcome::UpstreamFailed;
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
        let (decision, reason) = match &ctx.outcome {
            Outcome::Pending => ("bad_request", "bad_request"),
            Outcome::Allowed(access) => (access.label(), access.label()),
            Outcome::Denied(deny) => (deny.code(), deny.reason()),
            Outcome::UpstreamFailed => ("upstream_error", "upstream_error"),
        };
        let elapsed = ctx.started.elapsed();
        self.metrics
            .requests
            .with_label_values(&[route, decision])
            .inc();
        self.metrics.request_seconds.observe(elapsed.as_secs_f64());
        let identity = ctx.identity.as_deref();
        let issuer = identity.map_or("-", |i| ctx.policy.issuers[i.issuer].name.as_str());
        let subject = identity
            .filter(|_| ctx.policy.log_subject)
            .and_then(|i| i.subject.as_deref());
        tracing::info!(
            target: "access",
            request_id = %ctx.request_id,
            route,
            method = %session.req_header().method,
            path = %ctx.path,
            status,
            decision,
            reason,
            issuer,
            subject,
            latency_us = elapsed.as_micros() as u64,
        );
    }
}
