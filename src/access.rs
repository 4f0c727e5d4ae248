//! What a request came to, as the operator sees it: one JSON access-log line and the request
//! metrics. Never the token, the Authorization header, cookies or the query string: the path
//! logged is the canonical path alone. With tracing on, the line names the request's trace and
//! span, and the span is ended here with the same outcome.

use crate::engine::Grant;
use crate::metrics::{Metrics, RouteMetrics};
use crate::response::{BadRequest, Deny};
use crate::telemetry::{RequestSpan, SpanEnd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The end of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing decided: pingora refused the request before the engine ran.
    Unread,
    /// Forwarded; with the denial a `mode: shadow` route would have made, if any.
    Allowed(Grant, Option<Deny>),
    Denied(Deny),
    /// Allowed, then the upstream failed after the response had started.
    UpstreamFailed,
}

impl Outcome {
    /// (`decision`, `reason`): the response's `error` code for a denial (the access label for
    /// a forwarded request), and the precise reason: the `decision` label of the request
    /// metrics and the `reason` of the log.
    pub fn labels(&self) -> (&'static str, &'static str) {
        let denied = |deny: &Deny| (deny.code(), deny.reason());
        match self {
            Outcome::Unread => denied(&Deny::BadRequest(BadRequest::Malformed)),
            Outcome::Allowed(access, _) => (access.label(), access.label()),
            Outcome::Denied(deny) => denied(deny),
            Outcome::UpstreamFailed => denied(&Deny::UpstreamError),
        }
    }

    /// The reason a shadow-mode route would have denied the request.
    pub fn shadow_reason(&self) -> Option<&'static str> {
        match self {
            Outcome::Allowed(_, Some(deny)) => Some(deny.reason()),
            _ => None,
        }
    }
}

/// Where a request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The proxy (`listen`).
    Proxy,
    /// The decision listener (`decision_listen`): a forward-auth question about a request an
    /// ingress forwards itself.
    Decision,
}

impl Listener {
    /// The `listener` field of the log line.
    pub fn label(self) -> &'static str {
        match self {
            Listener::Proxy => "proxy",
            Listener::Decision => "decision",
        }
    }
}

/// One finished request.
pub struct Record<'a> {
    pub request_id: &'a str,
    /// Route name; `None` when none matched (`-` in metrics and logs).
    pub route: Option<&'a str>,
    /// The matched route's metric children.
    pub route_metrics: Option<&'a RouteMetrics>,
    pub method: &'a str,
    /// Canonical path (never the query).
    pub path: &'a str,
    /// Status sent to the client, 0 when none was.
    pub status: u16,
    pub outcome: &'a Outcome,
    /// Issuer name of a verified token, `-` without one.
    pub issuer: &'a str,
    /// `sub`, only with `log_subject: true`.
    pub subject: Option<&'a str>,
    pub latency: Duration,
    /// The request's span, with tracing on: ended here, its ids logged.
    pub trace: Option<&'a RequestSpan>,
}

impl Record<'_> {
    /// Count the proxy's request and write its log line.
    pub fn emit(&self, metrics: &Metrics) {
        self.emit_from(metrics, Listener::Proxy)
    }

    /// Count a request that came in on `listener` and write its log line.
    pub fn emit_from(&self, metrics: &Metrics, listener: Listener) {
        let (decision, reason) = self.outcome.labels();
        let shadow_reason = self.outcome.shadow_reason();
        let route = self.route.unwrap_or("-");
        metrics.requests.with_label_values(&[route, reason]).inc();
        if listener == Listener::Decision {
            metrics
                .decision_requests
                .with_label_values(&[route, reason])
                .inc();
        }
        let seconds = self.latency.as_secs_f64();
        match self.route_metrics {
            Some(m) => {
                m.requests.inc();
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                m.last_match.set(now);
                m.seconds.observe(seconds);
            }
            None => metrics
                .request_seconds
                .with_label_values(&[route])
                .observe(seconds),
        }
        if let Some(shadow) = shadow_reason {
            metrics
                .shadow_denials
                .with_label_values(&[route, shadow])
                .inc();
        }
        tracing::info!(
            target: "access",
            listener = listener.label(),
            request_id = %self.request_id,
            route,
            method = self.method,
            path = %self.path,
            status = self.status,
            decision,
            reason,
            shadow_reason,
            issuer = self.issuer,
            subject = self.subject,
            latency_us = self.latency.as_micros() as u64,
            trace_id = self.trace.map(RequestSpan::trace_id),
            span_id = self.trace.map(RequestSpan::span_id),
        );
        if let Some(span) = self.trace {
            span.end(SpanEnd {
                route: self.route,
                path: self.path,
                status: self.status,
                decision,
                reason,
                shadow_reason,
                issuer: (self.issuer != "-").then_some(self.issuer),
            });
        }
    }
}
