//! The admin listener: `/healthz` (liveness), `/readyz` (every issuer of the serving policy
//! has keys, and no SIGTERM yet), `/metrics`
//! (Prometheus text). It exists only on `admin_listen`; on the main listener these paths are
//! ordinary routes.

use crate::live::Shared;
use crate::metrics::Metrics;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the admin endpoints read.
pub struct AdminState {
    /// The serving generation: its issuers' keys, its token cache.
    pub live: Shared,
    pub metrics: Arc<Metrics>,
    /// Set when SIGTERM (or SIGINT) arrives.
    pub draining: Arc<AtomicBool>,
}

impl AdminState {
    pub fn new(live: Shared, metrics: Arc<Metrics>, draining: Arc<AtomicBool>) -> Self {
        AdminState {
            live,
            metrics,
            draining,
        }
    }

    /// Answer one admin request.
    pub fn handle(&self, path: &str) -> (StatusCode, &'static str, String) {
        match path {
            "/healthz" => (StatusCode::OK, "text/plain", "ok\n".into()),
            "/readyz" if self.draining.load(Ordering::Acquire) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "not ready: shutting down\n".into(),
            ),
            "/readyz" => {
                let live = self.live.load();
                let pending: Vec<&str> = live
                    .keys
                    .issuers()
                    .iter()
                    .filter(|i| !i.ready())
                    .map(|i| i.name.as_str())
                    .collect();
                if pending.is_empty() {
                    (StatusCode::OK, "text/plain", "ready\n".into())
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        format!(
                            "not ready: no keys yet for issuer(s) {}\n",
                            pending.join(", ")
                        ),
                    )
                }
            }
            "/metrics" => {
                self.refresh_gauges();
                (
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    self.metrics.render(),
                )
            }
            _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        }
    }

    fn refresh_gauges(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let live = self.live.load();
        for issuer in live.keys.issuers() {
            let last = issuer.last_good();
            let age = if last == 0 {
                -1
            } else {
                now.saturating_sub(last) as i64
            };
            self.metrics
                .seconds_since_good_refresh
                .with_label_values(&[&issuer.name])
                .set(age);
        }
        // Two atomic reads: a scrape takes no cache lock.
        self.metrics
            .token_cache_entries
            .set(live.cached_tokens() as i64);
        self.metrics
            .token_cache_bytes
            .set(live.cached_token_bytes() as i64);
    }
}

/// Serve the admin endpoints on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<AdminState>) {
    crate::http1::serve(listener, move |req: Request<Incoming>| {
        let state = Arc::clone(&state);
        async move {
            let (status, ctype, body) = state.handle(req.uri().path());
            Response::builder()
                .status(status)
                .header("content-type", ctype)
                .header("cache-control", "no-store")
                .body(Full::new(Bytes::from(body)))
                .expect("static response parts")
        }
    })
    .await
}
