//! The serving generation: one compiled policy together with the live state built for it (the
//! key store and its refresh tasks, the verified-token cache, each route's metric children, how
//! to reach each upstream) and the settings pinned at start. A generation is made in exactly
//! three ways:
//!
//! - `Generation::start`: when `run` or `demo` starts; the generation that serves first.
//! - `Generation::next`: a reload; built next to the serving one, swapped in atomically, and the
//!   previous one's leftovers retired.
//! - `Generation::offline`: `explain` and `test`; keys only from the config file, nothing
//!   fetched, no cache.
//!
//! What `next` carries over: an issuer whose config block did not change keeps its key set,
//! refresh task and cached tokens; the token cache stays while what a cached token holds would
//! render the same (`Generation::keeps_cache_for`). What it never takes from the new file: the
//! settings a running listener cannot change (`Pinned`: `listen`, `admin_listen`, `tls` and
//! everything derived from it, `server.*`, the HTTP/2 SETTINGS, the span exporter's
//! `tracing.otlp_endpoint` and `tracing.service_name`); they stay as they were at start
//! until the process restarts.

use crate::config::{Policy, Protocol, Upstream};
use crate::engine;
use crate::keys::{IssuerKeyConfig, KeySet, KeySettings, KeySource, KeyStore};
use crate::metrics::{Metrics, RouteMetrics};
use crate::token::{AuthError, Authenticator, Identity};
use arc_swap::ArcSwap;
use pingora::upstreams::peer::HttpPeer;
use std::collections::HashSet;
use std::sync::Arc;

/// The generation new requests start under; a request keeps the one it started with.
pub type Shared = Arc<ArcSwap<Generation>>;

/// One policy generation and the live state built for it. Issuer indexes in `policy` refer to
/// `keys`, so the two only ever change together.
pub struct Generation {
    pub policy: Arc<Policy>,
    pub keys: Arc<KeyStore>,
    /// The verified-token cache (shared across generations while what it holds stays valid).
    auth: Arc<Authenticator>,
    /// 1 at start, +1 per applied reload.
    pub number: u64,
    /// Each route's metric children, indexed like `policy.routes`.
    pub route_metrics: Vec<RouteMetrics>,
    /// How to reach each upstream, indexed like `policy.upstreams`.
    pub peers: Vec<HttpPeer>,
    metrics: Arc<Metrics>,
}

impl Generation {
    /// The first generation of a server: key refresh starts on `runtime`, and a key set that
    /// changes drops the cached tokens its removed keys verified, in whichever generation
    /// serves by then.
    pub fn start(
        policy: Policy,
        metrics: Arc<Metrics>,
        runtime: &tokio::runtime::Handle,
    ) -> Shared {
        warn_unverified(&policy);
        let keys = Arc::new(key_store(&policy));
        let auth = Arc::new(Authenticator::new(policy.limits.token_cache_entries));
        let shared: Shared = Arc::new(ArcSwap::from_pointee(Generation::new(
            policy, keys, auth, 1, metrics,
        )));
        shared.load().serve_keys(&shared, runtime);
        shared
    }

    /// The generation after the one `shared` serves, from a reloaded `policy`: swapped in, and
    /// the previous generation's key sets that it no longer uses retired. Issuers named in
    /// `unchanged` keep their key sets. The settings pinned at start are taken from the
    /// previous generation, whatever the new file says. Refused (nothing changes) when the new
    /// policy conflicts with them.
    pub fn next(
        shared: &Shared,
        policy: Policy,
        unchanged: &HashSet<String>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Arc<Generation>, String> {
        let previous = shared.load_full();
        let mut policy = Pinned::of(&previous.policy).onto(policy)?;
        // The DPoP replay cache and nonce key outlive a reload that keeps their settings: a
        // reload must not forget the jtis seen, nor the nonces handed out.
        if previous.policy.dpop.replay_cache_entries == policy.dpop.replay_cache_entries
            && previous.policy.dpop.nonce_secret_env == policy.dpop.nonce_secret_env
        {
            policy.dpop_guard = Arc::clone(&previous.policy.dpop_guard);
        }
        warn_unverified(&policy);
        let keys = Arc::new(KeyStore::carry_over(
            &previous.keys,
            key_configs(&policy),
            unchanged,
        ));
        let auth = if previous.keeps_cache_for(&policy) {
            Arc::clone(&previous.auth)
        } else {
            Arc::new(Authenticator::new(policy.limits.token_cache_entries))
        };
        let next = Arc::new(Generation::new(
            policy,
            keys,
            auth,
            previous.number + 1,
            Arc::clone(&previous.metrics),
        ));
        next.serve_keys(shared, runtime);
        shared.store(Arc::clone(&next));
        crate::telemetry::set_sample_ratio(next.policy.tracing.sample_ratio);
        KeyStore::retire(&previous.keys, &next.keys, &next.metrics);
        Ok(next)
    }

    /// For `explain` and `test`: the keys written in the config file (inline sets and
    /// `jwks_file`s that can be read here), nothing fetched, no token cache.
    pub fn offline(policy: Policy) -> Generation {
        let issuers = policy
            .keys
            .iter()
            .zip(&policy.issuers)
            .map(|(plan, rules)| {
                let inline = plan.inline.clone().or_else(|| match &plan.settings.source {
                    Some(KeySource::File(path)) => std::fs::read(path)
                        .ok()
                        .and_then(|body| KeySet::parse(&body, plan.settings.limits.max_keys).ok())
                        .map(|(set, _)| Arc::new(set)),
                    _ => None,
                });
                IssuerKeyConfig {
                    name: rules.name.clone(),
                    settings: KeySettings {
                        source: None,
                        ..plan.settings.clone()
                    },
                    inline,
                    hmac_only: plan.hmac_only,
                }
            })
            .collect();
        Generation::new(
            policy,
            Arc::new(KeyStore::new(issuers)),
            Arc::new(Authenticator::new(0)),
            1,
            Arc::new(Metrics::new()),
        )
    }

    fn new(
        policy: Policy,
        keys: Arc<KeyStore>,
        auth: Arc<Authenticator>,
        number: u64,
        metrics: Arc<Metrics>,
    ) -> Generation {
        let route_metrics =
            metrics.for_routes(policy.routes.routes().iter().map(|r| r.name.as_str()));
        let peers = policy.upstreams.iter().map(peer).collect();
        Generation {
            policy: Arc::new(policy),
            keys,
            auth,
            number,
            route_metrics,
            peers,
            metrics,
        }
    }

    /// Verify `token` under this generation's issuers, keys and token cache.
    pub async fn authenticate(&self, token: &str) -> Result<Arc<Identity>, AuthError> {
        let rules = engine::token_rules(&self.policy);
        self.auth
            .authenticate(token, &rules, &self.keys, &self.metrics)
            .await
    }

    /// The whole judgement of one request under this generation: admission (`in_flight`
    /// requests, this one included), route, the token verified, the decision. The proxy and
    /// the decision listener both ask here.
    pub async fn decide(
        &self,
        head: &engine::RequestHead<'_>,
        in_flight: usize,
        request_id: &http::HeaderValue,
    ) -> engine::Decision {
        let policy = &self.policy;
        let routed = match engine::admit(&policy.limits, in_flight)
            .map_err(engine::Refusal::from)
            .and_then(|()| engine::route(policy, head))
        {
            Ok(routed) => routed,
            Err(denial) => return engine::Decision::Deny(denial),
        };
        let verified = match routed.token() {
            Some(token) => Some(self.authenticate(token).await),
            None => None,
        };
        engine::decide(policy, head, routed, verified, request_id)
    }

    /// Whether this generation serves from the same token cache as `other`.
    pub fn shares_cache_with(&self, other: &Generation) -> bool {
        Arc::ptr_eq(&self.auth, &other.auth)
    }

    /// Verified tokens held in the cache now.
    pub fn cached_tokens(&self) -> u64 {
        self.auth.cached_entries()
    }

    /// Bytes the cached tokens hold, by the cache's own count.
    pub fn cached_token_bytes(&self) -> u64 {
        self.auth.cached_bytes()
    }

    /// Whether a token cached under this generation renders the same under `policy`: the
    /// identity headers it was rendered for, the claims route rules read, whether its
    /// subject is kept for the log, and the cache's size.
    fn keeps_cache_for(&self, policy: &Policy) -> bool {
        let was = &self.policy;
        was.identity == policy.identity
            && was.authz_claims == policy.authz_claims
            && was.log_subject == policy.log_subject
            && was.limits.token_cache_entries == policy.limits.token_cache_entries
    }

    /// Key refresh for this generation's issuers, and the hook that drops cached tokens whose
    /// key left its set (in the generation serving when it happens).
    fn serve_keys(&self, shared: &Shared, runtime: &tokio::runtime::Handle) {
        let serving = Arc::downgrade(shared);
        self.keys.on_change(Arc::new(move |issuer, set| {
            if let Some(serving) = serving.upgrade() {
                serving.load().auth.forget_removed_keys(issuer, set);
            }
        }));
        self.keys
            .spawn_refreshers(runtime, Arc::clone(&self.metrics));
    }
}

/// The settings a running listener cannot change: what the server started with stays in force
/// until the restart, with everything derived from it (the TLS listener's client subject
/// header included).
struct Pinned<'a> {
    at_start: &'a Policy,
}

impl<'a> Pinned<'a> {
    fn of(policy: &'a Policy) -> Self {
        Pinned { at_start: policy }
    }

    /// `policy` with the pinned settings put back; refused when its identity headers would
    /// take the pinned client subject header's name.
    fn onto(&self, mut policy: Policy) -> Result<Policy, String> {
        let start = self.at_start;
        let requested = policy
            .tls
            .as_ref()
            .and_then(|t| t.client_subject_header.clone());
        policy.listen = start.listen;
        policy.admin_listen = start.admin_listen;
        policy.decision_listen = start.decision_listen;
        policy.tls.clone_from(&start.tls);
        let pinned = policy
            .tls
            .as_ref()
            .and_then(|t| t.client_subject_header.as_ref());
        policy.pending_subject_header = requested.filter(|n| Some(n) != pinned);
        policy.strip_sieve = crate::config::strip_sieve(&policy);
        policy.server.clone_from(&start.server);
        policy.limits.h2_max_concurrent_streams = start.limits.h2_max_concurrent_streams;
        // The span exporter is built at start; `sample_ratio` alone changes on reload.
        policy
            .tracing
            .otlp_endpoint
            .clone_from(&start.tracing.otlp_endpoint);
        policy
            .tracing
            .service_name
            .clone_from(&start.tracing.service_name);
        if let Some(subject) = policy
            .tls
            .as_ref()
            .and_then(|t| t.client_subject_header.as_ref())
        {
            let identity = &policy.identity;
            let mut names = identity.headers.iter().map(|(n, _)| n);
            if names.any(|n| n == subject) || identity.claims_header.as_ref() == Some(subject) {
                return Err(format!(
                    "{subject} is the listener's client subject header until the next restart: \
                     it cannot also be an identity header"
                ));
            }
        }
        Ok(policy)
    }
}

/// Most requests sent at once on one HTTP/2 connection to an upstream (fewer when the
/// upstream's SETTINGS say so); more open another connection.
const UPSTREAM_H2_STREAMS: usize = 100;

/// How pingora reaches `upstream`: address, TLS and its verification, protocol, timeouts.
fn peer(upstream: &Upstream) -> HttpPeer {
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
    peer
}

/// One warning per upstream whose certificate is not verified: at start and at every reload.
fn warn_unverified(policy: &Policy) {
    for u in &policy.upstreams {
        if u.tls.as_ref().is_some_and(|t| !t.verify) {
            tracing::warn!(upstream = %u.name, setting = "dangerous_skip_verify",
                "the upstream's TLS certificate is NOT verified: anyone on the path can impersonate it");
        }
    }
}

/// What the key store needs of each issuer of `policy` (inline key sets were parsed at load).
pub fn key_configs(policy: &Policy) -> Vec<IssuerKeyConfig> {
    policy
        .keys
        .iter()
        .zip(&policy.issuers)
        .map(|(plan, rules)| {
            for skipped in &plan.skipped {
                tracing::warn!(issuer = %rules.name, "inline jwks: {skipped}");
            }
            IssuerKeyConfig {
                name: rules.name.clone(),
                settings: plan.settings.clone(),
                inline: plan.inline.clone(),
                hmac_only: plan.hmac_only,
            }
        })
        .collect()
}

/// A key store for the policy's key plans, not yet refreshing (tests and benches).
pub fn key_store(policy: &Policy) -> KeyStore {
    KeyStore::new(key_configs(policy))
}
