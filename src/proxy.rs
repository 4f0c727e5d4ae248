//! The pingora `ProxyHttp` implementation: the only module that touches a `Session`. It adapts
//! pingora to the decision engine (`engine`) and holds no policy of its own: read the head,
//! call the engine (verifying the token it found in between), apply the header edits, pick the
//! peer, map pingora's errors, log.

use crate::access::{Outcome, Record};
use crate::config::Policy;
use crate::engine::{self, Allow, Decision, RequestHead};
use crate::forwarding::{self, Headers};
use crate::live::{Generation, Shared};
use crate::metrics::Metrics;
use crate::response::{self, Deny, Limit};
use crate::telemetry::{RequestSpan, SpanStart};
use async_trait::async_trait;
use http::{header, HeaderValue, Version};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::HttpTask;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// After the gateway's own answer to a request whose body is still arriving, at most this much
/// of the rest is read and thrown away (see `discard_unread_body`).
const DISCARD_BYTES: u64 = 1 << 20;
/// ... and for at most this long.
const DISCARD_TIME: Duration = Duration::from_secs(2);

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
    /// Boxed, like `body_refused`: the context is moved with pingora's request future, a few
    /// times per request, and every byte of it is copied each time.
    decision: Option<Box<Decision>>,
    outcome: Outcome,
    /// Request body bytes seen so far, against `limits.max_body_bytes`.
    body_bytes: u64,
    /// The gateway's own refusal of a body it was reading (over `limits.max_body_bytes`):
    /// answered by `fail_to_proxy` as it is, not rebuilt from pingora's error.
    body_refused: Option<Box<Deny>>,
    /// An HTTP/2 answer left open while the request body arrives (`write_denial`).
    ending: Option<Ending>,
    /// The request's span; `None` with tracing off.
    trace: Option<RequestSpan>,
    _in_flight: InFlight,
}

impl Ctx {
    /// The allowed request's upstream, target and header edits.
    fn forward(&self) -> Result<&Allow> {
        match self.decision.as_deref() {
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
            client_cert: tls.and_then(crate::tls::client_certificate_sha256),
        };
        let in_flight = self.in_flight.load(Ordering::Acquire);
        let decide = ctx.live.decide(&head, in_flight, &ctx.request_id);
        RequestSpan::within(ctx.trace.as_ref(), decide).await
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

/// How an HTTP/2 answer written while the request body is still arriving is ended, once the
/// rest of that body has been read (`discard_unread_body`).
enum Ending {
    /// An empty DATA frame with END_STREAM after the JSON body.
    Empty,
    /// gRPC's status in trailers (`grpc-status`, `grpc-message`).
    Trailers(Box<http::HeaderMap>),
}

/// Write the gateway's own answer to `deny`. Over HTTP/2, while the request body is still
/// arriving, the stream is left open: the returned `Ending` ends it after the body (see
/// `discard_unread_body` for why).
async fn write_denial(
    session: &mut Session,
    deny: &Deny,
    request_id: &HeaderValue,
) -> Result<Option<Ending>> {
    let req = session.req_header();
    let reply = response::reply(deny, response::wants_grpc(&req.headers));
    let h2 = req.version == Version::HTTP_2;
    let hold = h2 && waits_for_body(req, deny) && !session.as_mut().is_body_done();
    // No record of how each name was written (`build_no_case`): the names are the gateway's
    // own, and pingora spells them for HTTP/1.1 as RFC 9110 does (`Content-Type`).
    // Room for `X-Request-Id` and `Content-Length`, and the `Date` and `Connection` pingora adds.
    let mut resp = ResponseHeader::build_no_case(reply.status, Some(reply.headers.len() + 4))?;
    for (name, value) in reply.headers {
        resp.append_header(name, value)?;
    }
    resp.append_header("x-request-id", request_id.clone())?;
    // gRPC's Trailers-Only form exists in HTTP/2 only: over HTTP/1.1 the same head comes with
    // an empty body.
    if reply.trailers_only && h2 {
        let mut trailers = None;
        if hold {
            // The head now, the status in trailers after the body: gRPC's other form.
            let mut status = http::HeaderMap::new();
            for name in ["grpc-status", "grpc-message"] {
                if let Some(value) = resp.remove_header(name) {
                    status.insert(name, value);
                }
            }
            trailers = Some(Ending::Trailers(Box::new(status)));
        }
        // The downstream session itself: `Session::write_response_header` never ends an
        // HTTP/2 stream on the HEADERS frame, whatever its `end_of_stream`.
        session
            .as_mut()
            .response_duplex_vec(vec![HttpTask::Header(Box::new(resp), !hold)])
            .await?;
        return Ok(trailers);
    }
    resp.insert_header(header::CONTENT_LENGTH, HeaderValue::from(reply.body.len()))?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(reply.body), !hold).await?;
    Ok(hold.then_some(Ending::Empty))
}

/// End an HTTP/2 answer `write_denial` left open.
async fn end_answer(session: &mut Session, ending: Ending) {
    let last = match ending {
        Ending::Empty => HttpTask::Body(Some(bytes::Bytes::new()), true),
        Ending::Trailers(trailers) => HttpTask::Trailer(Some(trailers)),
    };
    // A client gone by now has its answer's head and nobody to tell.
    let _ = session.as_mut().response_duplex_vec(vec![last]).await;
}

/// Is the rest of a denied request's body worth waiting for? Not when the client waits for a
/// `100 Continue` it will not get (it sends no body, RFC 9110 section 10.1.1), nor when the
/// body already stalled (408).
fn waits_for_body(req: &RequestHeader, deny: &Deny) -> bool {
    !expects_continue(req) && !matches!(deny, Deny::Limit(Limit::BodyTimeout))
}

/// After the gateway has answered a request whose body is still arriving (a denial read from the
/// head, a 413 part way through), read and throw away what follows, within `DISCARD_BYTES` and
/// `DISCARD_TIME`, so that a client which is still sending meets the end of its own request
/// rather than a reset or a closed connection.
///
/// HTTP/2: ending the stream right after the answer, and resetting it with NO_ERROR, is what
/// RFC 9113 section 8.1 allows; but a client that has not finished sending may then fail the
/// call while it writes, with the complete answer already received (curl 7.88: "(92) Stream
/// error in the HTTP/2 framing layer"), or, when the answer's END_STREAM came before it sent
/// its last DATA frame, wait for the connection to close. So the answer's END_STREAM (its empty
/// last DATA frame, or gRPC's trailers) is sent once the client's END_STREAM has been read, and
/// a body past the bounds gets it then, followed by RST_STREAM(NO_ERROR): a client cannot hold
/// a stream open by trickling.
///
/// HTTP/1.1: the connection stays open for the next request when the rest of the body was read
/// within the bounds (`keep_alive_if_discardable`), and is closed otherwise, never left with
/// unread bytes that the next request would be parsed from.
async fn discard_unread_body(session: &mut Session, deny: &Deny) {
    if session.as_mut().is_body_done() {
        return;
    }
    let finished = waits_for_body(session.req_header(), deny)
        && tokio::time::timeout(DISCARD_TIME, async {
            let mut read = 0u64;
            while read <= DISCARD_BYTES {
                match session.read_request_body().await {
                    Ok(Some(chunk)) => read += chunk.len() as u64,
                    Ok(None) => return true,
                    Err(_) => return false,
                }
            }
            false
        })
        .await
        .unwrap_or(false);
    if !finished {
        session.set_keepalive(None);
    }
}

/// An HTTP/1.1 connection whose request is answered before its body was read is closed after
/// the answer (pingora's default, and the `Connection: close` the answer carries), unless the
/// rest of the body can be discarded within `DISCARD_BYTES` (a `Content-Length` that says so,
/// or chunks) and the client is sending it (no `Expect: 100-continue`): then the answer says
/// `keep-alive` and `discard_unread_body` closes the connection only if the body does not end
/// within the bounds.
fn keep_alive_if_discardable(session: &mut Session) {
    let req = session.req_header();
    let declared = req
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if !expects_continue(req) && declared.is_none_or(|n| n <= DISCARD_BYTES) {
        session
            .as_mut()
            .set_close_on_response_before_downstream_finish(false);
    }
}

/// Did the client ask to be told before it sends the body (`Expect: 100-continue`)?
fn expects_continue(req: &RequestHeader) -> bool {
    req.headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// The upstream request's headers, as `forwarding::apply` edits them: through pingora's own
/// calls, which keep its record of how each name was written in step.
struct UpstreamHeaders<'a>(&'a mut RequestHeader);

impl Headers for UpstreamHeaders<'_> {
    type Error = Box<Error>;

    fn remove(&mut self, name: &http::HeaderName) {
        self.0.remove_header(name);
    }

    fn set(&mut self, name: http::HeaderName, value: HeaderValue) -> Result<()> {
        // pingora spells a `HeaderName` for the wire by copying it; the names the gateway sets
        // on every request are spelled from static text instead.
        match forwarding::static_name(&name) {
            Some(name) => self.0.insert_header(name, value),
            None => self.0.insert_header(name, value),
        }
    }
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
            body_refused: None,
            ending: None,
            trace: None,
            _in_flight: InFlight::enter(&self.in_flight),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let limits = &ctx.policy.limits;
        session.set_read_timeout(Some(limits.client_body_timeout));
        session.set_keepalive(Some(limits.client_idle_timeout.as_secs()));
        ctx.request_id = engine::request_id(&session.req_header().headers);
        let req = session.req_header();
        ctx.trace = RequestSpan::start(|| SpanStart {
            method: Some(&req.method),
            headers: &req.headers,
            version: req.version,
            authority: req.uri.authority().map(|a| a.as_str()),
            listener: "proxy",
        });
        let decision = self.decide(session, ctx).await;
        let answered = match &decision {
            Decision::Allow(allow) => {
                ctx.outcome = Outcome::Allowed(allow.grant, allow.shadow.clone());
                false
            }
            Decision::Deny(denial) => {
                if matches!(denial.deny, Deny::BadRequest(_)) {
                    session.set_keepalive(None);
                } else if !session.as_mut().is_body_done() {
                    keep_alive_if_discardable(session);
                }
                ctx.ending = write_denial(session, &denial.deny, &ctx.request_id).await?;
                ctx.outcome = Outcome::Denied(denial.deny.clone());
                true
            }
        };
        ctx.decision = Some(Box::new(decision));
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
        if let Err(deny) = engine::body_within(&ctx.policy.limits, ctx.body_bytes) {
            let status = deny.status();
            ctx.body_refused = Some(Box::new(deny));
            return Error::e_explain(
                ErrorType::HTTPStatus(status),
                "request body over max_body_bytes",
            );
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        // Built once per generation (`live`): a clone, not a rebuild.
        Ok(Box::new(ctx.live.peers[ctx.forward()?.upstream].clone()))
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
        forwarding::apply(&mut UpstreamHeaders(upstream), &allow.edits)?;
        if let Some(span) = &ctx.trace {
            span.propagate(&mut UpstreamHeaders(upstream))?;
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
        if !resp.headers.contains_key(&forwarding::X_REQUEST_ID) {
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
        let deny = ctx
            .body_refused
            .take()
            .map(|deny| *deny)
            .or_else(|| response::deny_for_proxy_error(e.esource(), e.etype()));
        match deny {
            Some(deny) if session.response_written().is_none() => {
                // The connection is not reused after a failed proxy attempt: say so.
                session.set_keepalive(None);
                if let Ok(ending) = write_denial(session, &deny, &ctx.request_id).await {
                    ctx.ending = ending;
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
        let path = ctx.decision.as_deref().and_then(Decision::path);
        format!("{} {}", session.req_header().method, path.unwrap_or("-"))
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let policy = &ctx.policy;
        let decision = ctx.decision.as_deref();
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
            trace: ctx.trace.as_ref(),
        }
        .emit(&self.metrics);
        if let Outcome::Denied(deny) = &ctx.outcome {
            if session.response_written().is_some() {
                discard_unread_body(session, deny).await;
            }
        }
        if let Some(ending) = ctx.ending.take() {
            end_answer(session, ending).await;
        }
    }
}
