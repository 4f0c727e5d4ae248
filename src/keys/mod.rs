//! Per-issuer key sets shared by all worker threads: the initial fetch, background refresh,
//! the single-flight refetch on an unknown `kid`, and last-known-good through failures.
//!
//! The request path only reads an `Arc` snapshot (`IssuerKeys::current`); all fetching runs in
//! one task per issuer on the control runtime, so one slow or broken issuer never holds up the
//! refresh of another.

pub mod fetch;
pub mod set;

use crate::metrics::Metrics;
use arc_swap::ArcSwapOption;
use fetch::{FetchLimits, Fetched, Fetcher};
use rand::Rng;
pub use set::{KeyFamily, KeySet, VerifyKey};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{watch, Notify};

/// Shortest and longest time between two refreshes, whatever `max-age` says.
pub const MIN_REFRESH: Duration = Duration::from_secs(60);
pub const MAX_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// First retry after a failed fetch; doubles up to the refresh interval.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Most kids remembered as missing per issuer.
const MISSING_KIDS: u64 = 4096;

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    JwksUri(String),
    /// `<issuer>/.well-known/openid-configuration`, then its `jwks_uri`.
    Discovery {
        issuer: String,
    },
    File(PathBuf),
}

/// Compiled key settings of one issuer.
#[derive(Debug, Clone)]
pub struct KeySettings {
    /// `None`: inline keys or HMAC only: nothing to fetch.
    pub source: Option<KeySource>,
    pub allow_http: bool,
    pub refresh_interval: Duration,
    pub refetch_cooldown: Duration,
    /// Drop the keys after this long without a good refresh. `None`: never.
    pub max_stale: Option<Duration>,
    pub limits: FetchLimits,
}

#[derive(Debug, Default)]
struct FetchState {
    in_flight: bool,
    /// When the last unknown-kid refetch was started. Periodic refreshes do not count: a key
    /// published just after one is still picked up by the first request that uses it.
    last_refetch: Option<Instant>,
    /// The request whose unknown `kid` asked for the fetch about to start (its span links it).
    cause: Option<crate::telemetry::Cause>,
}

/// Called with (issuer id, new set) whenever an issuer's key set is replaced.
pub type OnKeysChanged = Arc<dyn Fn(u64, &KeySet) + Send + Sync>;

/// Source of `IssuerKeys::id`: unique for the life of the process.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// One issuer's live keys.
pub struct IssuerKeys {
    pub name: String,
    /// Unique to this issuer's settings: a reload that keeps the issuer unchanged keeps this
    /// `IssuerKeys` (and its id); one that changes it makes a new one. Cached tokens name it, so
    /// that an issuer index that moved in a reload cannot pass for another issuer.
    id: u64,
    /// The refresh task, once spawned; aborted when a reload removes or replaces the issuer.
    task: Mutex<Option<tokio::task::AbortHandle>>,
    on_change: std::sync::OnceLock<OnKeysChanged>,
    settings: KeySettings,
    /// The HMAC secret alone verifies this issuer's tokens: ready without any JWKS.
    hmac_only: bool,
    current: ArcSwapOption<KeySet>,
    state: Mutex<FetchState>,
    /// Bumped after every fetch attempt, good or bad: kid-miss waiters watch it.
    attempts: watch::Sender<u64>,
    kick: Notify,
    /// Unix seconds of the last good refresh (0: never).
    last_good: std::sync::atomic::AtomicU64,
    etag: Mutex<Option<String>>,
    /// The last good refresh on the monotonic clock, for `max_stale`.
    last_good_at: Mutex<Option<Instant>>,
    /// Kids that a fresh fetch did not have, for one cooldown: a repeated bad kid is refused at
    /// once instead of waiting on a fetch.
    missing_kids: moka::sync::Cache<String, ()>,
}

/// The outcome of asking for a refetch because of an unknown `kid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refetch {
    /// A fetch finished (the set may or may not hold the kid now).
    Done,
    /// The cooldown has not passed since the last fetch: no fetch.
    Suppressed,
    /// The fetch did not finish within the bounded wait.
    TimedOut,
}

impl IssuerKeys {
    fn new(
        name: String,
        settings: KeySettings,
        inline: Option<Arc<KeySet>>,
        hmac_only: bool,
    ) -> Self {
        let has_inline = inline.is_some();
        let settings_cooldown = settings.refetch_cooldown.max(Duration::from_secs(1));
        let keys = IssuerKeys {
            name,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            task: Mutex::new(None),
            on_change: std::sync::OnceLock::new(),
            settings,
            hmac_only,
            current: ArcSwapOption::new(inline),
            state: Mutex::new(FetchState::default()),
            attempts: watch::channel(0).0,
            kick: Notify::new(),
            last_good: std::sync::atomic::AtomicU64::new(0),
            etag: Mutex::new(None),
            last_good_at: Mutex::new(None),
            missing_kids: moka::sync::Cache::builder()
                .max_capacity(MISSING_KIDS)
                .time_to_live(settings_cooldown)
                .build(),
        };
        if has_inline {
            keys.mark_good();
        }
        keys
    }

    /// See the field: unique to this issuer block's settings.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The current key set; `None` while the issuer has never had usable keys.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.current.load_full()
    }

    /// Can this issuer's tokens be verified at all?
    pub fn ready(&self) -> bool {
        self.hmac_only || self.current.load().is_some()
    }

    /// Unix seconds of the last good refresh; 0 if never.
    pub fn last_good(&self) -> u64 {
        self.last_good.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Did a fetch within the last cooldown show that this kid is not in the set?
    pub fn known_missing(&self, kid: &str) -> bool {
        self.missing_kids.contains_key(kid)
    }

    /// Remember that a fresh set lacks this kid.
    pub fn mark_missing(&self, kid: &str) {
        self.missing_kids.insert(kid.to_string(), ());
    }

    /// Past `max_stale` without a good refresh: drop the keys (fail closed on old keys).
    fn drop_if_stale(&self, metrics: &Metrics) {
        let Some(max) = self.settings.max_stale else {
            return;
        };
        let last = *self.last_good_at.lock().unwrap_or_else(|p| p.into_inner());
        let Some(age) = last.map(|t| t.elapsed()) else {
            return;
        };
        if age >= max && self.current.load().is_some() {
            tracing::error!(issuer = %self.name, stale_ms = age.as_millis() as u64, "keys older than max_stale: dropped");
            self.current.store(None);
            metrics.keys.with_label_values(&[&self.name]).set(0);
        }
    }

    fn mark_good(&self) {
        *self.last_good_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        self.last_good
            .store(now, std::sync::atomic::Ordering::Relaxed);
    }

    /// An unknown `kid` (or no keys yet): ask for one refetch and wait for it, at most `wait`.
    /// Concurrent callers share the fetch in flight; a new fetch starts at most once per
    /// `refetch_cooldown`.
    pub async fn refetch(&self, wait: Duration, metrics: &Metrics) -> Refetch {
        if self.settings.source.is_none() {
            return Refetch::Suppressed;
        }
        let mut done = self.attempts.subscribe();
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if !st.in_flight {
                let cooling = st
                    .last_refetch
                    .is_some_and(|t| t.elapsed() < self.settings.refetch_cooldown);
                if cooling {
                    metrics
                        .kid_refetch_suppressed
                        .with_label_values(&[&self.name])
                        .inc();
                    return Refetch::Suppressed;
                }
                st.in_flight = true;
                st.last_refetch = Some(Instant::now());
                st.cause = crate::telemetry::cause();
                metrics.kid_refetch.with_label_values(&[&self.name]).inc();
                self.kick.notify_one();
            }
        }
        match tokio::time::timeout(wait, done.changed()).await {
            Ok(_) => Refetch::Done,
            Err(_) => Refetch::TimedOut,
        }
    }

    /// The refresh loop of this issuer; runs forever on the control runtime.
    async fn run(self: Arc<Self>, metrics: Arc<Metrics>) {
        let Some(source) = self.settings.source.clone() else {
            return;
        };
        let fetcher = match Fetcher::new(self.settings.limits, self.settings.allow_http) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(issuer = %self.name, error = %e, "cannot build the key fetcher");
                return;
            }
        };
        let mut delay = Duration::ZERO;
        let mut failures: u32 = 0;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.kick.notified() => {}
            }
            let cause = {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.in_flight = true;
                st.cause.take()
            };
            let span = crate::telemetry::KeyFetch::start(&self.name, cause);
            let etag = self.etag.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let etag = etag.filter(|_| self.current.load().is_some());
            let result = fetcher.fetch(&source, etag.as_deref()).await;
            let label = match result {
                Ok(Fetched::Keys {
                    set,
                    warnings,
                    max_age,
                    etag,
                }) => {
                    for w in warnings {
                        tracing::warn!(issuer = %self.name, "{w}");
                    }
                    tracing::info!(event = "key_refresh", issuer = %self.name, result = "ok",
                        keys = set.len(), "keys refreshed");
                    metrics
                        .keys
                        .with_label_values(&[&self.name])
                        .set(set.len() as i64);
                    if let Some(hook) = self.on_change.get() {
                        hook(self.id, &set);
                    }
                    self.current.store(Some(Arc::new(set)));
                    *self.etag.lock().unwrap_or_else(|p| p.into_inner()) = etag;
                    self.mark_good();
                    failures = 0;
                    delay = next_refresh(max_age, self.settings.refresh_interval);
                    "ok"
                }
                Ok(Fetched::NotModified { max_age }) => {
                    tracing::debug!(event = "key_refresh", issuer = %self.name,
                        result = "not_modified", "keys unchanged");
                    self.mark_good();
                    failures = 0;
                    delay = next_refresh(max_age, self.settings.refresh_interval);
                    "not_modified"
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    delay = backoff(failures, self.settings.refresh_interval);
                    tracing::warn!(event = "key_refresh", issuer = %self.name, result = e.label(),
                        error = %e, retry_in_ms = delay.as_millis() as u64,
                        "key refresh failed; keeping the last good keys");
                    self.drop_if_stale(&metrics);
                    e.label()
                }
            };
            metrics
                .jwks_refresh
                .with_label_values(&[&self.name, label])
                .inc();
            if let Some(span) = span {
                span.end(label);
            }
            {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.in_flight = false;
            }
            self.attempts.send_modify(|n| *n += 1);
        }
    }
}

/// The refresh delay: `max-age` if the IdP sent one, else the configured interval, clamped to
/// [`MIN_REFRESH`, `MAX_REFRESH`], minus up to 10 % jitter so a fleet does not refresh in step.
fn next_refresh(max_age: Option<Duration>, interval: Duration) -> Duration {
    let base = max_age.unwrap_or(interval).clamp(MIN_REFRESH, MAX_REFRESH);
    let jitter = rand::rng().random_range(0.0..0.1);
    base.mul_f64(1.0 - jitter)
}

/// Exponential back-off after `failures` failed fetches, capped by the refresh interval.
fn backoff(failures: u32, interval: Duration) -> Duration {
    let exp = FIRST_RETRY.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let jitter = rand::rng().random_range(0.0..0.2);
    exp.min(interval.max(FIRST_RETRY)).mul_f64(1.0 - jitter)
}

/// Every issuer's keys, indexed like `Policy::issuers`.
pub struct KeyStore {
    issuers: Vec<Arc<IssuerKeys>>,
}

/// What `KeyStore::new` needs per issuer.
pub struct IssuerKeyConfig {
    pub name: String,
    pub settings: KeySettings,
    /// A key set parsed at load (inline `jwks`): the issuer starts with it.
    pub inline: Option<Arc<KeySet>>,
    pub hmac_only: bool,
}

impl KeyStore {
    pub fn new(issuers: Vec<IssuerKeyConfig>) -> Self {
        KeyStore {
            issuers: issuers
                .into_iter()
                .map(|c| Arc::new(IssuerKeys::new(c.name, c.settings, c.inline, c.hmac_only)))
                .collect(),
        }
    }

    /// The store of a reloaded policy: each issuer named in `kept` carries over from `old`
    /// with its keys, token-cache entries and refresh task; every other one starts without
    /// keys (and `/readyz` waits for it).
    pub fn carry_over(
        old: &KeyStore,
        issuers: Vec<IssuerKeyConfig>,
        kept: &std::collections::HashSet<String>,
    ) -> Self {
        KeyStore {
            issuers: issuers
                .into_iter()
                .map(|c| match old.issuers.iter().find(|o| o.name == c.name) {
                    Some(o) if kept.contains(&c.name) => Arc::clone(o),
                    _ => Arc::new(IssuerKeys::new(c.name, c.settings, c.inline, c.hmac_only)),
                })
                .collect(),
        }
    }

    /// Stop the refresh of every issuer of `old` that `new` does not carry over, and drop the
    /// gauges of the names that are gone.
    pub fn retire(old: &KeyStore, new: &KeyStore, metrics: &Metrics) {
        for issuer in &old.issuers {
            if new.issuers.iter().any(|n| Arc::ptr_eq(n, issuer)) {
                continue;
            }
            if let Some(task) = issuer.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
                task.abort();
            }
            match new.issuers.iter().find(|n| n.name == issuer.name) {
                // Replaced by a changed block of the same name: its keys, none until fetched.
                Some(next) => metrics
                    .keys
                    .with_label_values(&[&issuer.name])
                    .set(next.current().map_or(0, |set| set.len() as i64)),
                None => {
                    let _ = metrics.keys.remove_label_values(&[&issuer.name]);
                    let _ = metrics
                        .seconds_since_good_refresh
                        .remove_label_values(&[&issuer.name]);
                }
            }
        }
    }

    /// Is `issuers[index]` the issuer with this id? False when a reload moved or replaced it.
    pub fn is(&self, index: usize, id: u64) -> bool {
        self.issuers.get(index).is_some_and(|i| i.id == id)
    }

    /// Register the hook run when a key set is replaced (set once, before refreshers start).
    pub fn on_change(&self, hook: OnKeysChanged) {
        for issuer in &self.issuers {
            let _ = issuer.on_change.set(Arc::clone(&hook));
        }
    }

    pub fn issuer(&self, index: usize) -> &IssuerKeys {
        &self.issuers[index]
    }

    pub fn issuers(&self) -> &[Arc<IssuerKeys>] {
        &self.issuers
    }

    /// Ready when every issuer can verify tokens.
    pub fn ready(&self) -> bool {
        self.issuers.iter().all(|i| i.ready())
    }

    /// Start one refresh task per issuer that has none yet (one carried over by a reload
    /// keeps its own).
    pub fn spawn_refreshers(&self, runtime: &tokio::runtime::Handle, metrics: Arc<Metrics>) {
        for issuer in &self.issuers {
            let mut task = issuer.task.lock().unwrap_or_else(|p| p.into_inner());
            if task.is_some() {
                continue;
            }
            if let Some(set) = issuer.current() {
                metrics
                    .keys
                    .with_label_values(&[&issuer.name])
                    .set(set.len() as i64);
            }
            let handle = runtime.spawn(Arc::clone(issuer).run(Arc::clone(&metrics)));
            *task = Some(handle.abort_handle());
        }
    }
}

impl IssuerKeys {
    /// Install `set` as a refresh does, but without calling the `on_change` hook: for the tests
    /// that show each layer of the removed-key check catching a removed key on its own.
    #[cfg(test)]
    pub(crate) fn install_unannounced(&self, set: KeySet) {
        self.current.store(Some(Arc::new(set)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_is_clamped_and_jittered_down() {
        let d = next_refresh(Some(Duration::from_secs(5)), Duration::from_secs(600));
        assert!(d <= MIN_REFRESH && d >= MIN_REFRESH.mul_f64(0.9));
        let d = next_refresh(
            Some(Duration::from_secs(10 * 86400)),
            Duration::from_secs(600),
        );
        assert!(d <= MAX_REFRESH);
        let d = next_refresh(None, Duration::from_secs(600));
        assert!(d <= Duration::from_secs(600) && d >= Duration::from_secs(540));
    }

    #[test]
    fn backoff_doubles_up_to_the_interval() {
        assert!(backoff(1, Duration::from_secs(600)) <= Duration::from_secs(1));
        assert!(backoff(4, Duration::from_secs(600)) <= Duration::from_secs(8));
        assert!(backoff(4, Duration::from_secs(600)) >= Duration::from_millis(6400));
        assert!(backoff(30, Duration::from_secs(600)) <= Duration::from_secs(600));
    }
}
