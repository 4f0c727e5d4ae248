//! Prometheus metrics, prefix `portcullis_`, served as text on the admin listener.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// One route's metric children, resolved once per policy generation so that a request bumps
/// them without a label lookup.
pub struct RouteMetrics {
    pub requests: prometheus::IntCounter,
    pub last_match: prometheus::IntGauge,
    pub seconds: Histogram,
}

/// The prefix of every metric name.
const PREFIX: &str = "portcullis";

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    /// Full names (`portcullis_…`) of every metric registered, in registration order.
    names: Vec<String>,
    /// Requests by route (`-` when none matched) and precise reason (`allowed`, `expired`,
    /// `no_route`…: `access::Outcome::labels`).
    pub requests: IntCounterVec,
    /// The decision listener's share of `requests` (forward-auth questions), by the same labels.
    pub decision_requests: IntCounterVec,
    /// Requests that matched a route, by route: what finds dead routes.
    pub route_requests: IntCounterVec,
    /// Unix seconds of each route's last match.
    pub route_last_match: IntGaugeVec,
    /// Denials a `mode: shadow` route would have made, by route and reason; the request was
    /// forwarded.
    pub shadow_denials: IntCounterVec,
    /// By route (`-` when none matched).
    pub request_seconds: HistogramVec,
    /// Uncached verifications only.
    pub verify_seconds: Histogram,
    /// `hit` / `miss`.
    pub token_cache: IntCounterVec,
    /// `token_cache{result="hit"}` and `{result="miss"}`, resolved once: they are bumped on
    /// every authenticated request.
    pub token_cache_hit: prometheus::IntCounter,
    pub token_cache_miss: prometheus::IntCounter,
    pub token_cache_entries: IntGauge,
    /// What the cached tokens hold besides their fixed size (rendered identity headers, kept
    /// claims, subject): the cache's byte bound counts these.
    pub token_cache_bytes: IntGauge,
    /// Key refreshes by issuer and result (`ok`, `not_modified`, `http_error`, `timeout`,
    /// `invalid`, `too_large`).
    pub jwks_refresh: IntCounterVec,
    pub keys: IntGaugeVec,
    pub seconds_since_good_refresh: IntGaugeVec,
    pub kid_refetch: IntCounterVec,
    pub kid_refetch_suppressed: IntCounterVec,
    /// Tokens without `kid`, by issuer and result (`verified`, `bad_signature`, `no_key`,
    /// `kid_required`: refused untried, the issuer publishing too many keys to try).
    pub kidless: IntCounterVec,
    /// Config reloads by result (`ok`, `invalid`, `unchanged`).
    pub config_reloads: IntCounterVec,
    /// 1 at start, +1 per applied reload.
    pub config_generation: IntGauge,
    /// 1, labelled with the SHA-256 prefix of the loaded config file (`reload::Snapshot`).
    pub config_info: IntGaugeVec,
    /// Listener certificate re-reads by result (`ok`, `invalid`, `unchanged`).
    pub tls_certificate_reloads: IntCounterVec,
    /// Not-after of the listener certificate serving, Unix seconds (0 without `tls`).
    pub tls_certificate_expiry: IntGauge,
    /// Sampled spans never delivered to the collector: the export queue was full, or their
    /// batch failed or timed out.
    pub tracing_spans_dropped: prometheus::IntCounter,
}

/// The commit the binary was built from (build.rs), `unknown` outside a git checkout (or when
/// a build leaves build.rs out).
pub const REVISION: &str = match option_env!("PORTCULLIS_REVISION") {
    Some(revision) => revision,
    None => "unknown",
};

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some(PREFIX.into()), None).expect("valid prefix");
        let names = std::cell::RefCell::new(Vec::new());
        let register = |c: Box<dyn prometheus::core::Collector>| {
            names
                .borrow_mut()
                .extend(c.desc().iter().map(|d| format!("{PREFIX}_{}", d.fq_name)));
            registry.register(c).expect("unique metric");
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            register(Box::new(c.clone()));
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            register(Box::new(g.clone()));
            g
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid metric");
            register(Box::new(h.clone()));
            h
        };
        let histograms = |name: &str, help: &str, buckets: Vec<f64>, labels: &[&str]| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
                .expect("valid metric");
            register(Box::new(h.clone()));
            h
        };
        let latency = vec![
            0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 5.0,
        ];
        let token_cache_entries =
            IntGauge::new("token_cache_entries", "Verified tokens held in the cache")
                .expect("valid metric");
        register(Box::new(token_cache_entries.clone()));
        let token_cache_bytes = IntGauge::new(
            "token_cache_bytes",
            "Bytes of rendered identity headers, kept claims and subjects the token cache holds",
        )
        .expect("valid metric");
        register(Box::new(token_cache_bytes.clone()));
        let token_cache = counter(
            "token_cache_requests_total",
            "Verified-token cache lookups",
            &["result"],
        );
        let build_info = gauge(
            "build_info",
            "1, labelled with the version and the commit of the binary",
            &["version", "revision"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), REVISION])
            .set(1);
        let config_generation = IntGauge::new(
            "config_generation",
            "Config generation: 1 at start, +1 per applied reload",
        )
        .expect("valid metric");
        register(Box::new(config_generation.clone()));
        config_generation.set(1);
        let tls_certificate_expiry = IntGauge::new(
            "tls_certificate_expiry_timestamp_seconds",
            "Not-after of the listener's serving certificate, Unix seconds",
        )
        .expect("valid metric");
        register(Box::new(tls_certificate_expiry.clone()));
        let tracing_spans_dropped = prometheus::IntCounter::new(
            "tracing_spans_dropped_total",
            "Sampled spans not delivered to the collector (queue full, export failed or timed out)",
        )
        .expect("valid metric");
        register(Box::new(tracing_spans_dropped.clone()));
        let metrics = Metrics {
            tracing_spans_dropped,
            tls_certificate_reloads: counter(
                "tls_certificate_reloads_total",
                "Listener certificate re-reads by result",
                &["result"],
            ),
            tls_certificate_expiry,
            config_reloads: counter(
                "config_reloads_total",
                "Config reloads by result",
                &["result"],
            ),
            config_generation,
            config_info: gauge(
                "config_info",
                "1, labelled with the SHA-256 prefix of the loaded config file",
                &["hash"],
            ),
            requests: counter(
                "requests_total",
                "Requests by route and precise decision reason",
                &["route", "decision"],
            ),
            decision_requests: counter(
                "decision_requests_total",
                "Decision-listener (forward-auth) requests by route and precise decision reason, \
                 also counted in requests_total",
                &["route", "decision"],
            ),
            route_requests: counter(
                "route_requests_total",
                "Requests that matched each route",
                &["route"],
            ),
            route_last_match: gauge(
                "route_last_match_timestamp_seconds",
                "Unix time of each route's last match",
                &["route"],
            ),
            shadow_denials: counter(
                "shadow_denials_total",
                "Denials a shadow-mode route would have made (the request was forwarded)",
                &["route", "reason"],
            ),
            request_seconds: histograms(
                "request_duration_seconds",
                "Time to a decision or to the end of proxying, by route",
                latency.clone(),
                &["route"],
            ),
            verify_seconds: histogram(
                "verify_duration_seconds",
                "Uncached token verification time",
                latency,
            ),
            token_cache_hit: token_cache.with_label_values(&["hit"]),
            token_cache_miss: token_cache.with_label_values(&["miss"]),
            token_cache,
            token_cache_entries,
            token_cache_bytes,
            jwks_refresh: counter(
                "jwks_refresh_total",
                "Key set refreshes by issuer and result",
                &["issuer", "result"],
            ),
            keys: gauge("jwks_keys", "Usable keys per issuer", &["issuer"]),
            seconds_since_good_refresh: gauge(
                "jwks_seconds_since_last_good_refresh",
                "Seconds since the issuer's keys were last fetched successfully (-1: never)",
                &["issuer"],
            ),
            kid_refetch: counter(
                "jwks_kid_miss_refetch_total",
                "Refetches started by an unknown kid",
                &["issuer"],
            ),
            kid_refetch_suppressed: counter(
                "jwks_kid_miss_suppressed_total",
                "Unknown-kid refetches refused by the cooldown",
                &["issuer"],
            ),
            kidless: counter(
                "kidless_tokens_total",
                "Tokens without kid, by issuer and result",
                &["issuer", "result"],
            ),
            // Placeholders: the closures above borrow the real ones until here.
            registry: Registry::new(),
            names: Vec::new(),
        };
        Metrics {
            registry,
            names: names.into_inner(),
            ..metrics
        }
    }

    /// Full names of every metric the gateway exports (`portcullis_requests_total`…), also
    /// those not yet observed: what a dashboard's queries may use.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The metric children of each route, in route order.
    pub fn for_routes<'a>(&self, names: impl Iterator<Item = &'a str>) -> Vec<RouteMetrics> {
        names
            .map(|name| RouteMetrics {
                requests: self.route_requests.with_label_values(&[name]),
                last_match: self.route_last_match.with_label_values(&[name]),
                seconds: self.request_seconds.with_label_values(&[name]),
            })
            .collect()
    }

    /// Label `config_info` with this hash (and only this one).
    pub fn set_config_hash(&self, hash: &str) {
        self.config_info.reset();
        self.config_info.with_label_values(&[hash]).set(1);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding never fails on a Vec");
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
