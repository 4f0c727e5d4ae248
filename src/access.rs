//! What a request came to, as the operator sees it: one JSON access-log line and the request
//! metrics. Never the token, the Authorization header, cookies or the query string: the path
//! logged is the canonical path alone.

use crate::engine::Access;
use crate::metrics::Metrics;
use crate::response::Deny;
use std::time::Duration;

/// The end of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing decided: pingora refused the request before the engine ran.
    Unread,
    Allowed(Access),
    Denied(Deny),
    /// Allowed, then the upstream failed after the response had started.
    UpstreamFailed,
}

impl Outcome {
    /// (`decision`, `reason`): the metrics label (the response's `error` code for a denial) and
    /// the precise reason of the log.
    pub fn labels(&self) -> (&'static str, &'static str) {
        match self {
            Outcome::Unread => ("bad_request", "bad_request"),
            Outcome::Allowed(access) => (access.label(), access.label()),
            Outcome::Denied(deny) => (deny.code(), deny.reason()),
            Outcome::UpstreamFailed => ("upstream_error", "upstream_error"),
        }
    }
}

/// One finished request.
pub struct Record<'a> {
    pub request_id: &'a str,
    /// Route name, `-` when none matched.
    pub route: &'a str,
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
}

impl Record<'_> {
    /// Count the request and write its log line.
    pub fn emit(&self, metrics: &Metrics) {
        let (decision, reason) = self.outcome.labels();
        metrics
            .requests
            .with_label_values(&[self.route, decision])
            .inc();
        metrics.request_seconds.observe(self.latency.as_secs_f64());
        tracing::info!(
            target: "access",
            request_id = %self.request_id,
            route = self.route,
            method = self.method,
            path = %self.path,
            status = self.status,
            decision,
            reason,
            issuer = self.issuer,
            subject = self.subject,
            latency_us = self.latency.as_micros() as u64,
        );
    }
}
