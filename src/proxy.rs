//! The pingora `ProxyHttp` implementation: the only module that touches a `Session`. It adapts
//! pingora to the decision engine (`engine`) and holds no policy of its own: read the head,
//! call the engine (verifying the token it found in between), apply the header edits, pick the
//! peer, map pingora's errors, log.

use crate::access::{Outcome, Record};
use crate::config::{Policy, Protocol};
use crate::engine::{self, Allow, Decision, Edit, RequestHead};
use crate::live::{Generation, Shared};
use crate::metrics::Metrics;
use crate::response::{self, Deny};
use async_trait::async_trait;
use http::{header, HeaderValue, Version};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::HttpTask;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Most requests sent at once on one HTTP/2 connection to an upstream (fewer when the
/// upstream's SETTINGS say so); more open another connection.
const UPSTREAM_H2_STREAMS: usize = 100;

/// Shared state of the gateway: the serving generation (compiled policy, live keys, the
/// verified-token cache), swapped whole by a reload.
pub struct Gateway {
    pub live: Shared,
    pub metrics: Arc<Metrics>,
    /// Requests being handled; SIGTERM waits for it to reach zero.
    pub in_flight: Arc<AtomicUsize>,
}

/// Per-request state.
pub struct Ctx {
    /// The policy this request is judged and forwarded under, start to end.
    policy: Arc<Policy>,
    /// The generation `policy` belongs to: the keys and token cache its issuers index.
    live: Arc<Generation>,
    started: Instant,
    request_id: HeaderValue,
    decision: Option<Decision>,
    outcome: Outcome,
    /// Request body bytes seen so far, against `limits.max_body_bytes`.
    body_bytes: u64,
    _in_flight: InFlight,
}

impl Ctx {
    /// The allowed request's upstream, target and header edits.
    fn forward(&self) -> Result<&Allow> {
        match &self.decision {
            Some(Decision::Allow(allow)) => Ok(allow),
            _ => Error::e_explain(ErrorType::InternalError, "no route chosen"),
        }
    }
}

impl Gateway {
    /// Run the engine over the request head, verifying the token it finds.
    async fn decide(&self, session: &Session, ctx: &Ctx) -> Decision {
        let req = session.req_header();
        let tls = session.digest().and_then(|d| d.ssl_digest.as_deref());
        let head = RequestHead {
            method: &req.method,
            target: req.raw_path(),
            headers: &req.headers,
            // pingora keeps HTTP/2's `:authority` in the URI.
            authority: (req.version == Version::HTTP_2)
                .then(|| req.uri.authority().map(|a| a.as_str()))
                .flatten(),
            peer: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            tls: tls.is_some(),
            client_subject: tls.and_then(crate::tls::client_subject),
        };
        let in_flight = self.in_flight.load(Ordering::Acquire);
        ctx.live.decide(&head, in_flight, &ctx.request_id).await
    }
}

/// Counts a request as in flight for as long as it lives: SIGTERM waits for none to be left.
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(count))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Write the gateway's own answer to `deny`.
async fn write_denial(session: &mut Session, deny: &Deny, request_id: &HeaderValue) -> Result<()> {
    let req = session.req_header();
    let reply = response::reply(deny, response::wants_grpc(&req.headers));
    // gRPC's Trailers-Only form exists in HTTP/2 only: over HTTP/1.1 the same head comes with
    // an empty body.
    let head_only = reply.trailers_only && req.version == Version::HTTP_2;
    let mut resp = ResponseHeader::build(reply.status, Some(reply.headers.len() + 2))?;
    for (name, value) in reply.headers {
        resp.insert_header(name, value)?;
    }
    resp.insert_header("x-request-id", request_id.clone())?;
    if head_only {
        // The downstream session itself: `Session::write_response_header` never ends an
        // HTTP/2 stream on the HEADERS frame, whatever its `end_of_stream`.
        session
            .as_mut()
            .response_duplex_vec(vec![HttpTask::Header(Box::new(resp), true)])
            .await?;
        return Ok(());
    }
    resp.insert_header(header::CONTENT_LENGTH, reply.body.len().to_string())?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(reply.body), true).await?;
    Ok(())
}

/// HTTP/2 may split `Cookie` into one field per cookie; before HTTP/1.1 they are joined into
/// one with `; ` (RFC 9113 section 8.2.3): an HTTP/1.1 server may read only the first line.
fn join_cookie_crumbs(req: &mut RequestHeader) -> Result<()> {
    let mut crumbs = req.headers.get_all(header::COOKIE).iter();
    if crumbs.nth(1).is_none() {
        return Ok(());
    }
    let mut joined = Vec::new();
    for crumb in req.headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(crumb.as_bytes());
    }
    let joined = http::HeaderValue::from_bytes(&joined)
        .or_err(ErrorType::InvalidHTTPHeader, "joining cookie fields")?;
    req.insert_header(header::COOKIE, joined)
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        let live = self.live.load_full();
        Ctx {
            policy: Arc::clone(&live.policy),
            live,
            started: Instant::now(),
            request_id: HeaderValue::from_static(""),
            decision: None,
            outcome: Outcome::Unread,
            body_bytes: 0,
            _in_flight: InFlight::enter(&self.in_flight),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let limits = &ctx.policy.limits;
        session.set_read_timeout(Some(limits.client_body_timeout));
        session.set_keepalive(Some(limits.client_idle_timeout.as_secs()));
        ctx.request_id = engine::request_id(&session.req_header().headers);
        let decision = self.decide(session, ctx).await;
        let answered = match &decision {
            Decision::Allow(allow) => {
                ctx.outcome = Outcome::Allowed(allow.access, allow.shadow.clone());
                false
            }
            Decision::Deny(denial) => {
                if matches!(denial.deny, Deny::BadRequest(_)) {
                    session.set_keepalive(None);
                }
                write_denial(session, &denial.deny, &ctx.request_id).await?;
                ctx.outcome = Outcome::Denied(denial.deny.clone());
                true
            }
        };
        ctx.decision = Some(decision);
        Ok(answered)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.body_bytes += body.as_ref().map_or(0, |b| b.len() as u64);
        if engine::body_within(&ctx.policy.limits, ctx.body_bytes).is_err() {
            return Error::e_explain(
                ErrorType::HTTPStatus(413),
                "request body over max_body_bytes",
            );
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let upstream = &ctx.policy.upstreams[ctx.forward()?.upstream];
        let mut peer = match &upstream.tls {
            Some(tls) => {
                let mut peer = HttpPeer::new(upstream.address, true, tls.sni.clone());
                peer.options.verify_cert = tls.verify;
                peer.options.verify_hostname = tls.verify;
                peer.options.ca.clone_from(&tls.ca);
                peer.group_key = tls.pool_key;
                peer
            }
            None => HttpPeer::new(upstream.address, false, String::new()),
        };
        match upstream.protocol {
            Protocol::H1 => {}
            // HTTP/2 only: through ALPN over TLS (h2), with prior knowledge without (h2c).
            Protocol::H2c | Protocol::H2 => {
                peer.options.set_http_version(2, 2);
                peer.options.max_h2_streams = UPSTREAM_H2_STREAMS;
            }
        }
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
        let allow = ctx.forward()?;
        // Most requests are already canonical: then the bytes sent are the ones judged.
        if upstream.raw_path() != allow.target.as_bytes() {
            let uri = allow.target.parse::<http::Uri>().map_err(|_| {
                Error::explain(ErrorType::InternalError, "canonical target is not a URI")
            })?;
            upstream.set_uri(uri);
        }
        for edit in &allow.edits {
            match edit {
                Edit::Remove(name) => {
                    upstream.remove_header(name);
                }
                Edit::Set(name, value) => upstream.insert_header(name.clone(), value.clone())?,
            }
        }
        if upstream.version != Version::HTTP_2 {
            join_cookie_crumbs(upstream)?;
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
            resp.insert_header("x-request-id", ctx.request_id.clone())?;
        }
        // A proxy sends its own HTTP version: an HTTP/1.0 upstream's status line reaches
        // HTTP/1.x clients as HTTP/1.1 (the framing follows the client's request).
        if matches!(resp.version, Version::HTTP_09 | Version::HTTP_10) {
            resp.set_version(Version::HTTP_11);
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let mut error_code = 0;
        match response::deny_for_proxy_error(e.esource(), e.etype()) {
            Some(deny) if session.response_written().is_none() => {
                if write_denial(session, &deny, &ctx.request_id).await.is_ok() {
                    error_code = deny.status();
                }
                ctx.outcome = Outcome::Denied(deny);
            }
            _ if matches!(ctx.outcome, Outcome::Allowed(..)) => {
                ctx.outcome = Outcome::UpstreamFailed
            }
            _ => {}
        }
        FailToProxy {
            error_code,
            can_reuse_downstream: false,
        }
    }

    fn request_summary(&self, session: &Session, ctx: &Ctx) -> String {
        // Never the query string: it may carry a token.
        let path = ctx.decision.as_ref().and_then(Decision::path);
        format!("{} {}", session.req_header().method, path.unwrap_or("-"))
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let policy = &ctx.policy;
        let decision = ctx.decision.as_ref();
        let identity = decision.and_then(Decision::identity);
        let route = decision.and_then(Decision::route);
        Record {
            request_id: ctx.request_id.to_str().unwrap_or("-"),
            route: route.map(|r| policy.routes.routes()[r].name.as_str()),
            route_metrics: route.and_then(|r| ctx.live.route_metrics.get(r)),
            method: session.req_header().method.as_str(),
            path: decision.and_then(Decision::path).unwrap_or(""),
            status: session.response_written().map_or(0, |r| r.status.as_u16()),
            outcome: &ctx.outcome,
            issuer: identity.map_or("-", |i| policy.issuers[i.issuer].name.as_str()),
            subject: identity
                .filter(|_| policy.log_subject)
                .and_then(|i| i.subject.as_deref()),
            latency: ctx.started.elapsed(),
        }
        .emit(&self.metrics);
    }
}
