//! The decision listener (`decision_listen`): forward-auth for ingresses that keep their own
//! data path (nginx `auth_request`, ingress-nginx `auth-url`, Traefik and Caddy
//! `forward_auth`). Each request to it describes another request in its headers; that request
//! is judged by the proxy's own engine (`Generation::decide`) and answered with the proxy's own
//! denials (`response::reply`), or 200 with the identity headers to set upstream.
//!
//! Only the peers in `trusted_proxies` are believed: anyone else, and a request that describes
//! none (or two), is answered 400.

use crate::access::{Listener, Outcome, Record};
use crate::engine::{self, Decision, Denial, Edit, RequestHead};
use crate::live::Shared;
use crate::metrics::Metrics;
use crate::proxy::InFlight;
use crate::response::{self, BadRequest, Deny};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use std::net::{IpAddr, SocketAddr};
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

/// Serve decisions on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<DecisionState>) {
    crate::http1::serve_with_peer(listener, move |req: Request<Incoming>, peer: SocketAddr| {
        let state = Arc::clone(&state);
        async move { state.answer(req.headers(), peer.ip()).await }
    })
    .await
}

impl DecisionState {
    /// Judge the request `headers` describe, asked by `peer`.
    pub async fn answer(&self, headers: &HeaderMap, peer: IpAddr) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let _in_flight = InFlight::enter(&self.in_flight);
        let live = self.live.load_full();
        let policy = &live.policy;
        let request_id = engine::request_id(headers);
        let trusted = policy.trusted_proxies.iter().any(|n| n.contains(&peer));
        let described = if trusted {
            describe(headers)
        } else {
            Err(Deny::BadRequest(BadRequest::Description))
        };
        let decision = match &described {
            Ok(d) => {
                let head = RequestHead {
                    method: &d.method,
                    target: d.target.as_bytes(),
                    headers: &d.headers,
                    authority: None,
                    peer: Some(peer),
                    tls: d.tls,
                    client_subject: None,
                };
                let in_flight = self.in_flight.load(Ordering::Acquire);
                live.decide(&head, in_flight, &request_id).await
            }
            Err(deny) => Decision::Deny(Denial::from(deny.clone())),
        };
        let (response, outcome) = match &decision {
            Decision::Allow(allow) => {
                let mut response = Response::builder().status(200);
                // Only the identity headers: the rest of the edits are the ingress's business.
                for edit in &allow.edits {
                    if let Edit::Set(name, value) = edit {
                        if policy.identity.strips(name) {
                            response = response.header(name, value);
                        }
                    }
                }
                (
                    response.body(Full::new(Bytes::new())),
                    Outcome::Allowed(allow.access, allow.shadow.clone()),
                )
            }
            Decision::Deny(denial) => {
                // Never gRPC's form: an ingress reads the HTTP status, and gRPC's is 200.
                let reply = response::reply(&denial.deny, false);
                let mut response = Response::builder().status(reply.status);
                for (name, value) in reply.headers {
                    response = response.header(name, value);
                }
                (
                    response.body(Full::new(reply.body)),
                    Outcome::Denied(denial.deny.clone()),
                )
            }
        };
        let mut response = response.unwrap_or_else(|_| {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            r
        });
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), request_id.clone());
        let identity = decision.identity();
        let route = decision.route();
        let method = described.as_ref().map_or("-", |d| d.method.as_str());
        Record {
            request_id: request_id.to_str().unwrap_or("-"),
            route: route.map(|r| policy.routes.routes()[r].name.as_str()),
            route_metrics: route.and_then(|r| live.route_metrics.get(r)),
            method,
            path: decision.path().unwrap_or(""),
            status: response.status().as_u16(),
            outcome: &outcome,
            issuer: identity.map_or("-", |i| policy.issuers[i.issuer].name.as_str()),
            subject: identity
                .filter(|_| policy.log_subject)
                .and_then(|i| i.subject.as_deref()),
            latency: started.elapsed(),
        }
        .emit_from(&self.metrics, Listener::Decision);
        response
    }
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
