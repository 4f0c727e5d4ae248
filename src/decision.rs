//! The decision listener (`decision_listen`): forward-auth for ingresses that keep their own
//! data path (nginx `auth_request`, ingress-nginx `auth-url`, Traefik and Caddy
//! `forward_auth`) and, on the same port over h2c, Envoy's ext_authz gRPC
//! (`envoy.service.auth.v3.Authorization/Check`). Each request to it describes another request
//! (in its headers, or in the `CheckRequest`); that request is judged by the proxy's own engine
//! (`Generation::decide`) and answered with the proxy's own denials (`response::reply`), or
//! allowed with the identity headers to set upstream (and, for Envoy, the headers the proxy
//! would have stripped, to remove).
//!
//! Only the peers in `trusted_proxies` are believed: anyone else, and a request that describes
//! none (or two), is answered 400.

use crate::access::{Listener, Outcome, Record};
use crate::config::Policy;
use crate::engine::{self, Decision, Edit, Refusal, RequestHead};
use crate::live::{Generation, Shared};
use crate::metrics::Metrics;
use crate::proxy::InFlight;
use crate::response::{self, BadRequest, Deny};
use crate::telemetry::{RequestSpan, SpanStart};
use bytes::Bytes;
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HeaderAppendAction, HttpStatus,
};
use envoy_types::ext_authz::v3::{
    CheckResponseExt, DeniedHttpResponseBuilder, OkHttpResponseBuilder,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The headers that describe the request, in the two conventions. They are the decision
/// request's own, never part of the request described.
const DESCRIPTION: [&str; 5] = [
    "x-original-method",
    "x-original-url",
    "x-original-uri",
    "x-forwarded-method",
    "x-forwarded-uri",
];

/// What the decision listener shares with the proxy.
pub struct DecisionState {
    pub live: Shared,
    pub metrics: Arc<Metrics>,
    /// The proxy's in-flight count: decisions count against `limits.max_in_flight` too.
    pub in_flight: Arc<AtomicUsize>,
}

/// The request a decision request describes.
#[derive(Debug)]
struct Described {
    method: Method,
    /// Origin-form (`/a?b`), or absolute-form from `X-Original-URL`.
    target: String,
    /// The decision request's headers without the description, `Host` being the described
    /// request's.
    headers: HeaderMap,
    tls: bool,
}

/// Serve decisions on `listener` until the process ends: HTTP/1.1 forward-auth and, over h2c
/// on the same port, Envoy's ext_authz gRPC.
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<DecisionState>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let state = Arc::clone(&state);
                async move {
                    let response = if is_check(&req) {
                        let mut grpc = AuthorizationServer::new(Check {
                            state,
                            peer: peer.ip(),
                        });
                        match tower_service::Service::call(&mut grpc, req).await {
                            Ok(response) => response,
                            Err(never) => match never {},
                        }
                    } else {
                        state
                            .answer(req.headers(), peer.ip())
                            .await
                            .map(tonic::body::Body::new)
                    };
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Envoy's ext_authz call: gRPC to `Authorization/Check`.
fn is_check<B>(req: &Request<B>) -> bool {
    req.uri().path() == "/envoy.service.auth.v3.Authorization/Check"
        && response::wants_grpc(req.headers())
}

/// One judged request: the decision, with what its log line and metrics need.
struct Judged {
    live: Arc<Generation>,
    decision: Decision,
    method: Option<Method>,
    request_id: HeaderValue,
    started: Instant,
    trace: Option<RequestSpan>,
}

impl DecisionState {
    /// Judge the request `described` describes, asked by `peer`; the description is believed
    /// only from `trusted_proxies`.
    async fn judge(
        &self,
        described: Result<Described, Deny>,
        peer: IpAddr,
        request_id: HeaderValue,
    ) -> Judged {
        let started = Instant::now();
        // An IPv4 ingress reaching a `[::]` listener is `::ffff:a.b.c.d`: compared as IPv4.
        let peer = peer.to_canonical();
        let _in_flight = InFlight::enter(&self.in_flight);
        let live = self.live.load_full();
        let trusted = live
            .policy
            .trusted_proxies
            .iter()
            .any(|n| n.contains(&peer));
        let described = if trusted {
            described
        } else {
            Err(Deny::BadRequest(BadRequest::Description))
        };
        let no_headers = HeaderMap::new();
        let trace = RequestSpan::start(|| SpanStart {
            method: described.as_ref().ok().map(|d| &d.method),
            headers: described.as_ref().map_or(&no_headers, |d| &d.headers),
            version: http::Version::HTTP_11,
            authority: None,
            listener: "decision",
        });
        let decision = match &described {
            Ok(d) => {
                let head = RequestHead {
                    method: &d.method,
                    target: d.target.as_bytes(),
                    headers: &d.headers,
                    authority: None,
                    peer: Some(peer),
                    tls: d.tls,
                    // The ingress ended TLS: no client certificate reaches this listener, so a
                    // certificate-bound token is refused here.
                    client_subject: None,
                    client_cert: None,
                };
                let in_flight = self.in_flight.load(Ordering::Acquire);
                let decide = live.decide(&head, in_flight, &request_id);
                RequestSpan::within(trace.as_ref(), decide).await
            }
            Err(deny) => Decision::Deny(Refusal::from(deny.clone())),
        };
        Judged {
            live,
            decision,
            method: described.ok().map(|d| d.method),
            request_id,
            started,
            trace,
        }
    }

    /// Count a judged request answered `status`, and write its log line.
    fn record(&self, judged: &Judged, status: u16) {
        let (live, decision) = (&judged.live, &judged.decision);
        let policy = &live.policy;
        let outcome = match decision {
            Decision::Allow(allow) => Outcome::Allowed(allow.grant, allow.shadow.clone()),
            Decision::Deny(denial) => Outcome::Denied(denial.deny.clone()),
        };
        let identity = decision.identity();
        let route = decision.route();
        Record {
            request_id: judged.request_id.to_str().unwrap_or("-"),
            route: route.map(|r| policy.routes.routes()[r].name.as_str()),
            route_metrics: route.and_then(|r| live.route_metrics.get(r)),
            method: judged.method.as_ref().map_or("-", Method::as_str),
            path: decision.path().unwrap_or(""),
            status,
            outcome: &outcome,
            issuer: identity.map_or("-", |i| policy.issuers[i.issuer].name.as_str()),
            subject: identity
                .filter(|_| policy.log_subject)
                .and_then(|i| i.subject.as_deref()),
            latency: judged.started.elapsed(),
            trace: judged.trace.as_ref(),
        }
        .emit_from(&self.metrics, Listener::Decision);
    }

    /// Answer a forward-auth request: the request its `headers` describe, asked by `peer`.
    pub async fn answer(&self, headers: &HeaderMap, peer: IpAddr) -> Response<Full<Bytes>> {
        let request_id = engine::request_id(headers);
        let judged = self.judge(describe(headers), peer, request_id).await;
        let policy = &judged.live.policy;
        let response = match &judged.decision {
            Decision::Allow(allow) => {
                let mut response = Response::builder().status(200);
                // Only the identity headers: the rest of the edits are the ingress's business.
                for (name, value) in identity_headers(policy, &allow.edits) {
                    response = response.header(name, value);
                }
                response.body(Full::new(Bytes::new()))
            }
            Decision::Deny(denial) => {
                // Never gRPC's form: an ingress reads the HTTP status, and gRPC's is 200.
                let reply = response::reply(&denial.deny, false);
                let mut response = Response::builder().status(reply.status);
                for (name, value) in reply.headers {
                    response = response.header(name, value);
                }
                response.body(Full::new(reply.body))
            }
        };
        let mut response = response.unwrap_or_else(|_| {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            r
        });
        response.headers_mut().insert(
            HeaderName::from_static("x-request-id"),
            judged.request_id.clone(),
        );
        self.record(&judged, response.status().as_u16());
        response
    }
}

/// The identity headers an allowed request gets, from its edits.
fn identity_headers<'a>(
    policy: &'a Policy,
    edits: &'a [Edit],
) -> impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)> + 'a {
    edits.iter().filter_map(move |edit| match edit {
        Edit::Set(name, value) if policy.identity.strips(name) => Some((name, value)),
        _ => None,
    })
}

/// The ext_authz service of one connection.
struct Check {
    state: Arc<DecisionState>,
    peer: IpAddr,
}

#[tonic::async_trait]
impl Authorization for Check {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let http = request
            .into_inner()
            .attributes
            .and_then(|a| a.request)
            .and_then(|r| r.http);
        let described = http.as_ref().map_or(
            Err(Deny::BadRequest(BadRequest::Description)),
            describe_check,
        );
        let request_id = match &described {
            Ok(d) => engine::request_id(&d.headers),
            Err(_) => engine::request_id(&HeaderMap::new()),
        };
        let judged = self.state.judge(described, self.peer, request_id).await;
        let policy = &judged.live.policy;
        let (response, status) = match &judged.decision {
            Decision::Allow(allow) => {
                let mut ok = OkHttpResponseBuilder::new();
                let set: Vec<&HeaderName> = identity_headers(policy, &allow.edits)
                    .map(|(name, value)| {
                        ok.add_header(
                            name.as_str(),
                            value.to_str().unwrap_or_default(),
                            Some(HeaderAppendAction::OverwriteIfExistsOrAdd),
                            false,
                        );
                        name
                    })
                    .collect();
                // What the proxy would strip: client identity headers, token carriers, override
                // headers. A token cookie is removed whole (the other cookies with it).
                let mut removed: Vec<&str> = Vec::new();
                for edit in &allow.edits {
                    if let Edit::Remove(name) = edit {
                        if !set.contains(&name) && !removed.contains(&name.as_str()) {
                            removed.push(name.as_str());
                        }
                    }
                }
                for name in removed {
                    ok.remove_header(name);
                }
                let mut response = CheckResponse::with_status(tonic::Status::ok(""));
                response.set_http_response(ok);
                (response, 200)
            }
            Decision::Deny(denial) => {
                let reply = response::reply(&denial.deny, false);
                let mut denied = DeniedHttpResponseBuilder::new();
                for (name, value) in &reply.headers {
                    denied.add_header(*name, value.to_str().unwrap_or_default(), None, false);
                }
                denied.set_body(String::from_utf8_lossy(&reply.body).into_owned());
                let mut denied = denied.build();
                denied.status = Some(HttpStatus {
                    code: i32::from(reply.status),
                });
                let code = match reply.status {
                    401 => tonic::Code::Unauthenticated,
                    503 => tonic::Code::Unavailable,
                    _ => tonic::Code::PermissionDenied,
                };
                let mut response =
                    CheckResponse::with_status(tonic::Status::new(code, denial.deny.description()));
                response.set_http_response(denied);
                (response, reply.status)
            }
        };
        self.state.record(&judged, status);
        Ok(tonic::Response::new(response))
    }
}

/// The request an ext_authz `CheckRequest` describes: its method, target (`path` holds the
/// query too), `host`, `scheme` and headers (pseudo-headers left out).
fn describe_check(http: &HttpRequest) -> Result<Described, Deny> {
    let bad = || Deny::BadRequest(BadRequest::Description);
    let method = Method::from_bytes(http.method.as_bytes()).map_err(|_| bad())?;
    if http.path.is_empty() {
        return Err(bad());
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &http.headers {
        if name.starts_with(':') {
            continue;
        }
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(value).map_err(|_| bad())?;
        headers.append(name, value);
    }
    if !http.host.is_empty() {
        headers.insert(
            header::HOST,
            HeaderValue::from_str(&http.host).map_err(|_| bad())?,
        );
    }
    Ok(Described {
        method,
        target: http.path.clone(),
        headers,
        tls: http.scheme.eq_ignore_ascii_case("https"),
    })
}

/// Read the description: `X-Original-Method` with `X-Original-URL` (absolute) or with
/// `X-Original-URI` and `Host` (nginx); else `X-Forwarded-Method` and `X-Forwarded-Uri`, with
/// `X-Forwarded-Host` (or `Host`) and `X-Forwarded-Proto` (Traefik, Caddy). Each header once.
fn describe(headers: &HeaderMap) -> Result<Described, Deny> {
    let bad = || Deny::BadRequest(BadRequest::Description);
    let one = |name: &str| -> Result<Option<&str>, Deny> {
        let mut all = headers.get_all(name).iter();
        match (all.next(), all.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => v.to_str().map(Some).map_err(|_| bad()),
            (Some(_), Some(_)) => Err(bad()),
        }
    };
    let https = |proto: Option<&str>| proto.is_some_and(|p| p.eq_ignore_ascii_case("https"));
    // An ingress sets its own convention's headers, and passes the client's others on: a
    // request carrying both conventions has a description its client wrote.
    let original = DESCRIPTION[..3].iter().any(|n| headers.contains_key(*n));
    let forwarded = DESCRIPTION[3..].iter().any(|n| headers.contains_key(*n));
    if original && forwarded {
        return Err(bad());
    }
    let mut host = None;
    let (method, target, tls) = if let Some(method) = one("x-original-method")? {
        match (one("x-original-url")?, one("x-original-uri")?) {
            (Some(url), uri) => {
                let parsed: http::Uri = url.parse().map_err(|_| bad())?;
                let scheme = parsed.scheme_str().ok_or_else(bad)?;
                // ingress-nginx sends both; they must name the same target.
                let path = parsed.path_and_query().map_or("/", |p| p.as_str());
                if uri.is_some_and(|u| u != path) {
                    return Err(bad());
                }
                // The authority comes with the URL: the decision request's `Host` names the
                // decision listener.
                host = Some(None);
                (method, url, scheme.eq_ignore_ascii_case("https"))
            }
            (None, Some(uri)) => (method, uri, https(one("x-forwarded-proto")?)),
            (None, None) => return Err(bad()),
        }
    } else {
        match (one("x-forwarded-method")?, one("x-forwarded-uri")?) {
            (Some(method), Some(uri)) => {
                if let Some(h) = one("x-forwarded-host")? {
                    host = Some(Some(HeaderValue::from_str(h).map_err(|_| bad())?));
                }
                (method, uri, https(one("x-forwarded-proto")?))
            }
            _ => return Err(bad()),
        }
    };
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| bad())?;
    let mut described = headers.clone();
    for name in DESCRIPTION {
        described.remove(name);
    }
    match host {
        Some(Some(h)) => {
            described.insert(header::HOST, h);
        }
        Some(None) => {
            described.remove(header::HOST);
        }
        None => {}
    }
    Ok(Described {
        method,
        target: target.to_string(),
        headers: described,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn both_conventions_describe_the_same_request() {
        let nginx = describe(&headers(&[
            ("host", "api.example.com"),
            ("x-original-method", "DELETE"),
            ("x-original-uri", "/api/orders/7?x=1"),
            ("x-forwarded-proto", "https"),
        ]))
        .unwrap();
        let traefik = describe(&headers(&[
            ("host", "portcullis:8181"),
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-uri", "/api/orders/7?x=1"),
            ("x-forwarded-host", "api.example.com"),
            ("x-forwarded-proto", "https"),
        ]))
        .unwrap();
        for d in [&nginx, &traefik] {
            assert_eq!(d.method, Method::DELETE);
            assert_eq!(d.target, "/api/orders/7?x=1");
            assert_eq!(d.headers.get("host").unwrap(), "api.example.com");
            assert!(d.tls);
            assert!(DESCRIPTION.iter().all(|n| !d.headers.contains_key(*n)));
        }
        let ingress = describe(&headers(&[
            ("host", "portcullis.auth.svc"),
            ("x-original-method", "GET"),
            ("x-original-url", "http://api.example.com/a"),
            ("x-original-uri", "/a"),
        ]))
        .unwrap();
        assert_eq!(ingress.target, "http://api.example.com/a");
        assert!(!ingress.headers.contains_key("host"));
        assert!(!ingress.tls);
    }

    #[test]
    fn no_description_half_a_description_or_two_are_refused() {
        for pairs in [
            &[("host", "a")][..],
            &[("x-original-method", "GET")][..],
            &[("x-forwarded-method", "GET")][..],
            &[("x-forwarded-uri", "/a")][..],
            &[
                ("x-original-method", "GET"),
                ("x-original-url", "/relative"),
            ][..],
            &[
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", "/a"),
                ("x-forwarded-uri", "/b"),
            ][..],
            // Both conventions: one of them is the client's.
            &[
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", "/admin"),
                ("x-original-method", "GET"),
                ("x-original-uri", "/public/a"),
            ][..],
            // A URL and a URI that disagree.
            &[
                ("x-original-method", "GET"),
                ("x-original-url", "http://h/public/a"),
                ("x-original-uri", "/admin"),
            ][..],
        ] {
            assert_eq!(
                describe(&headers(pairs)).unwrap_err(),
                Deny::BadRequest(BadRequest::Description),
                "{pairs:?}"
            );
        }
    }
}
