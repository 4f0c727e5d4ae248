//! Hot reload: the live policy generation, and how a new one replaces it. The config file is
//! watched (`watch`: in-place writes, write-then-rename, Kubernetes ConfigMap `..data`
//! symlink swaps) and SIGHUP asks for a reload; either way the file is read, and if its
//! SHA-256 differs from the one serving, compiled in full and swapped in atomically. A request
//! keeps the generation it started with to its end.
//!
//! What carries over: an issuer whose config block did not change keeps its key set, refresh
//! task and cached tokens (no refetch on an edit elsewhere); a changed or added one starts with
//! no keys, so `/readyz` is 503 until it has some; a removed one stops refreshing. The token
//! cache is replaced when what a cached token holds would render differently (`identity`,
//! the claims route rules read, `log_subject`, `limits.token_cache_entries`); and a cached
//! token names the issuer it was verified for by `IssuerKeys::id`, so an index that moved in a
//! reload cannot make it pass for another issuer (`KeyStore::is`).

use crate::config::{self, ConfigError, Policy};
use crate::keys::{KeyStore, OnKeysChanged};
use crate::metrics::{Metrics, RouteMetrics};
use crate::token::Authenticator;
use arc_swap::ArcSwap;
use aws_lc_rs::digest;
use serde_yaml_ng::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One policy generation and the live state built for it. Issuer indexes in `policy` refer
/// to `keys`, so the two are swapped together.
pub struct Live {
    pub policy: Arc<Policy>,
    pub keys: Arc<KeyStore>,
    /// The verified-token cache (shared across generations while what it holds stays valid).
    pub auth: Arc<Authenticator>,
    /// 1 at start, +1 per applied reload.
    pub generation: u64,
    /// Each route's metric children, indexed like `policy.routes`.
    pub route_metrics: Vec<RouteMetrics>,
}

impl Live {
    pub fn new(
        policy: Policy,
        keys: Arc<KeyStore>,
        auth: Arc<Authenticator>,
        generation: u64,
        metrics: &Metrics,
    ) -> Live {
        let route_metrics =
            metrics.for_routes(policy.routes.routes().iter().map(|r| r.name.as_str()));
        Live {
            policy: Arc::new(policy),
            keys,
            auth,
            generation,
            route_metrics,
        }
    }
}

/// The generation new requests start under.
pub type Shared = Arc<ArcSwap<Live>>;

/// What the serving policy was compiled from.
#[derive(Clone)]
pub struct Snapshot {
    digest: [u8; 32],
    tree: Value,
}

impl Snapshot {
    fn of(text: &str, tree: Value) -> Snapshot {
        Snapshot {
            digest: sha256(text),
            tree,
        }
    }

    /// First 12 hex digits of the file's SHA-256 (`portcullis_config_info{hash}`).
    pub fn hash(&self) -> String {
        hex(&self.digest[..6])
    }
}

fn sha256(text: &str) -> [u8; 32] {
    digest::digest(&digest::SHA256, text.as_bytes())
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A config file that `run` serves, and the snapshot of what it held at load.
pub struct ConfigFile {
    pub path: PathBuf,
    pub snapshot: Snapshot,
}

/// Read and compile `path` once (the same text is hashed and compiled).
pub fn load(path: &Path) -> Result<(Policy, ConfigFile), ConfigError> {
    let text = config::read(path)?;
    let (policy, tree) = compile(path, &text)?;
    Ok((
        policy,
        ConfigFile {
            path: path.to_path_buf(),
            snapshot: Snapshot::of(&text, tree),
        },
    ))
}

fn compile(path: &Path, text: &str) -> Result<(Policy, Value), ConfigError> {
    let policy = config::compile_file(path, text, config::Options::default())?.policy;
    // It compiled, so it is YAML.
    let tree = serde_yaml_ng::from_str(text).unwrap_or(Value::Null);
    Ok((policy, tree))
}

pub use crate::watch::Trigger;

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The new policy serves, as this generation.
    Applied(u64),
    /// The file holds what already serves.
    Unchanged,
    /// The file could not be read or compiled; the old policy keeps serving.
    Invalid,
}

/// Reloads the config file into `live`.
pub struct Reloader {
    path: PathBuf,
    live: Shared,
    metrics: Arc<Metrics>,
    runtime: tokio::runtime::Handle,
    on_keys_changed: OnKeysChanged,
    /// What the serving generation was compiled from; also serialises reloads.
    applied: Mutex<Snapshot>,
}

impl Reloader {
    pub fn new(
        file: ConfigFile,
        live: Shared,
        metrics: Arc<Metrics>,
        runtime: tokio::runtime::Handle,
        on_keys_changed: OnKeysChanged,
    ) -> Self {
        metrics.set_config_hash(&file.snapshot.hash());
        Reloader {
            path: file.path,
            live,
            metrics,
            runtime,
            on_keys_changed,
            applied: Mutex::new(file.snapshot),
        }
    }

    /// Read the file and apply it if it changed and compiles.
    pub fn reload(&self, trigger: Trigger) -> Outcome {
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        let file = self.path.display().to_string();
        let outcome = match config::read(&self.path).and_then(|text| {
            if sha256(&text) == applied.digest {
                return Ok(None);
            }
            compile(&self.path, &text)
                .map(|(policy, tree)| Some((policy, Snapshot::of(&text, tree))))
        }) {
            Ok(None) => {
                let level_info = trigger == Trigger::Signal;
                if level_info {
                    tracing::info!(event = "config_reload", result = "unchanged", trigger = trigger.label(),
                        file = %file, hash = %applied.hash(), "config unchanged; nothing to reload");
                } else {
                    tracing::debug!(event = "config_reload", result = "unchanged", trigger = trigger.label(),
                        file = %file, "config unchanged; nothing to reload");
                }
                Outcome::Unchanged
            }
            Ok(Some((policy, snapshot))) => {
                let generation = self.apply(policy, &snapshot, &applied, trigger);
                *applied = snapshot;
                Outcome::Applied(generation)
            }
            Err(e) => {
                log_invalid(&e, trigger);
                Outcome::Invalid
            }
        };
        let label = match outcome {
            Outcome::Applied(_) => "ok",
            Outcome::Unchanged => "unchanged",
            Outcome::Invalid => "invalid",
        };
        self.metrics
            .config_reloads
            .with_label_values(&[label])
            .inc();
        outcome
    }

    /// Build the new generation next to the old one, swap it in, then retire what it dropped.
    fn apply(&self, mut policy: Policy, new: &Snapshot, old: &Snapshot, trigger: Trigger) -> u64 {
        let current = self.live.load_full();
        // The DPoP replay cache and nonce key outlive a reload that keeps their settings: a
        // reload must not forget the jtis seen, nor the nonces handed out.
        if current.policy.dpop.replay_cache_entries == policy.dpop.replay_cache_entries
            && current.policy.dpop.nonce_secret_env == policy.dpop.nonce_secret_env
        {
            policy.dpop_guard = Arc::clone(&current.policy.dpop_guard);
        }
        let changes = Changes::between(&old.tree, &new.tree, &current.policy, &policy);
        let kept: HashSet<String> = current
            .policy
            .issuers
            .iter()
            .map(|i| i.name.clone())
            .filter(|name| {
                !changes.issuers.changed.contains(name) && !changes.issuers.removed.contains(name)
            })
            .collect();
        let keys = Arc::new(KeyStore::carry_over(
            &current.keys,
            crate::server::key_configs(&policy),
            &kept,
        ));
        keys.on_change(Arc::clone(&self.on_keys_changed));
        keys.spawn_refreshers(&self.runtime, Arc::clone(&self.metrics));
        let same_cache = old.tree.get("identity") == new.tree.get("identity")
            && current.policy.authz_claims == policy.authz_claims
            && current.policy.log_subject == policy.log_subject
            && current.policy.limits.token_cache_entries == policy.limits.token_cache_entries;
        let auth = if same_cache {
            Arc::clone(&current.auth)
        } else {
            Arc::new(Authenticator::new(policy.limits.token_cache_entries))
        };
        crate::tls::warn_unverified(&policy);
        for setting in &changes.restart_only {
            tracing::warn!(event = "config_reload", setting = %setting,
                "changed in the file; ignored until the next restart");
        }
        let generation = current.generation + 1;
        self.live.store(Arc::new(Live::new(
            policy,
            Arc::clone(&keys),
            auth,
            generation,
            &self.metrics,
        )));
        KeyStore::retire(&current.keys, &keys, &self.metrics);
        self.metrics.config_generation.set(generation as i64);
        self.metrics.set_config_hash(&new.hash());
        tracing::info!(
            event = "config_reload",
            result = "ok",
            trigger = trigger.label(),
            file = %self.path.display(),
            generation,
            hash = %new.hash(),
            routes_added = %changes.routes.added.join(","),
            routes_removed = %changes.routes.removed.join(","),
            routes_changed = %changes.routes.changed.join(","),
            issuers_added = %changes.issuers.added.join(","),
            issuers_removed = %changes.issuers.removed.join(","),
            issuers_changed = %changes.issuers.changed.join(","),
            upstreams_changed = %changes.upstreams.all().join(","),
            other_changed = %changes.other.join(","),
            token_cache_kept = same_cache,
            "config reloaded"
        );
        generation
    }

    /// Watch the file (`watch`) and SIGHUP; reload on either. Returns once both are set up
    /// (SIGHUP no longer ends the process from then on).
    pub fn spawn(self: Arc<Self>) -> std::io::Result<()> {
        let runtime = self.runtime.clone();
        crate::watch::spawn(
            "portcullis-reload",
            vec![self.path.clone()],
            &runtime,
            move |trigger| {
                self.reload(trigger);
            },
        )
    }
}

/// One line, with the file position and key of the error, for a config that was refused.
fn log_invalid(e: &ConfigError, trigger: Trigger) {
    match e {
        ConfigError::Invalid {
            file,
            line,
            column,
            path,
            message,
        } => tracing::error!(
            event = "config_reload",
            result = "invalid",
            trigger = trigger.label(),
            file = %file,
            line = *line as u64,
            column = *column as u64,
            key = %path,
            error = %e,
            detail = %message,
            "config refused; the current policy keeps serving"
        ),
        ConfigError::Read { file, error } => tracing::error!(
            event = "config_reload",
            result = "invalid",
            trigger = trigger.label(),
            file = %file,
            error = %e,
            detail = %error,
            "config refused; the current policy keeps serving"
        ),
    }
}

/// Names added, removed and changed between two versions of a list or map of named blocks.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl Delta {
    fn between(old: Option<&Value>, new: Option<&Value>) -> Delta {
        let (old, new) = (named(old), named(new));
        let find = |list: &[(String, Value)], name: &str| {
            list.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
        };
        let mut delta = Delta::default();
        for (name, block) in &new {
            match find(&old, name) {
                None => delta.added.push(name.clone()),
                Some(before) if &before != block => delta.changed.push(name.clone()),
                Some(_) => {}
            }
        }
        for (name, _) in &old {
            if find(&new, name).is_none() {
                delta.removed.push(name.clone());
            }
        }
        delta
    }

    fn all(&self) -> Vec<String> {
        let mut all = self.added.clone();
        all.extend(self.removed.iter().cloned());
        all.extend(self.changed.iter().cloned());
        all
    }
}

/// The blocks of a map (`issuers:`, `upstreams:`) by key, or of a list (`routes:`) by `name`.
fn named(v: Option<&Value>) -> Vec<(String, Value)> {
    let key = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other).unwrap_or_default(),
    };
    match v {
        Some(Value::Mapping(m)) => m.iter().map(|(k, v)| (key(k), v.clone())).collect(),
        Some(Value::Sequence(list)) => list
            .iter()
            .map(|item| (item.get("name").map(key).unwrap_or_default(), item.clone()))
            .collect(),
        _ => Vec::new(),
    }
}

/// What a reload changes, for its log line.
#[derive(Debug, Default)]
pub struct Changes {
    pub routes: Delta,
    pub issuers: Delta,
    pub upstreams: Delta,
    /// Other top-level keys whose value changed (`identity`, `limits`, `routes (order)`…).
    pub other: Vec<String>,
    /// Settings that take effect only at start: `listen`, `admin_listen`, `server.threads`,
    /// `server.shutdown_grace`, and `tls` but its `client_subject_header` (the listener keeps
    /// the files and client CAs it was opened with; the files' contents reload on their own).
    pub restart_only: Vec<&'static str>,
}

impl Changes {
    pub fn between(old: &Value, new: &Value, before: &Policy, after: &Policy) -> Changes {
        let routes = Delta::between(old.get("routes"), new.get("routes"));
        let mut other = Vec::new();
        let order = |tree: &Value| -> Vec<String> {
            named(tree.get("routes"))
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        let (was, is) = (order(old), order(new));
        let common = |list: &[String], other: &[String]| -> Vec<String> {
            list.iter().filter(|n| other.contains(n)).cloned().collect()
        };
        if common(&was, &is) != common(&is, &was) {
            other.push("routes (order)".to_string());
        }
        let mut keys: Vec<String> = [old, new]
            .iter()
            .filter_map(|t| t.as_mapping())
            .flat_map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_string)))
            .filter(|k| {
                !matches!(
                    k.as_str(),
                    "routes" | "issuers" | "upstreams" | "listen" | "admin_listen"
                )
            })
            .collect();
        keys.sort();
        keys.dedup();
        other.extend(keys.into_iter().filter(|k| old.get(k) != new.get(k)));
        let mut restart_only = Vec::new();
        if before.listen != after.listen {
            restart_only.push("listen");
        }
        if before.admin_listen != after.admin_listen {
            restart_only.push("admin_listen");
        }
        if before.server.threads != after.server.threads {
            restart_only.push("server.threads");
        }
        if before.server.shutdown_grace != after.server.shutdown_grace {
            restart_only.push("server.shutdown_grace");
        }
        if crate::tls::listener_files(before.tls.as_ref())
            != crate::tls::listener_files(after.tls.as_ref())
        {
            restart_only.push("tls");
        }
        // HTTP/2 SETTINGS are built once, when the listener starts.
        if before.limits.h2_max_concurrent_streams != after.limits.h2_max_concurrent_streams {
            restart_only.push("limits.h2_max_concurrent_streams");
        }
        Changes {
            routes,
            issuers: Delta::between(old.get("issuers"), new.get("issuers")),
            upstreams: Delta::between(old.get("upstreams"), new.get("upstreams")),
            other,
            restart_only,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(yaml: &str) -> Value {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn delta_names_added_removed_and_changed_routes() {
        let old = tree("routes: [{name: a, x: 1}, {name: b, x: 1}, {name: c, x: 1}]");
        let new = tree("routes: [{name: a, x: 1}, {name: c, x: 2}, {name: d, x: 1}]");
        let d = Delta::between(old.get("routes"), new.get("routes"));
        assert_eq!(d.added, ["d"]);
        assert_eq!(d.removed, ["b"]);
        assert_eq!(d.changed, ["c"]);
    }

    #[test]
    fn delta_names_issuers_by_block_key() {
        let old = tree("issuers: {a: {issuer: x}, b: {issuer: y}}");
        let new = tree("issuers: {a: {issuer: x}, b: {issuer: z}, c: {issuer: w}}");
        let d = Delta::between(old.get("issuers"), new.get("issuers"));
        assert_eq!(
            (d.added, d.removed, d.changed),
            (vec!["c".to_string()], vec![], vec!["b".to_string()])
        );
    }

    #[test]
    fn hash_is_a_sha256_prefix() {
        let s = Snapshot::of("", Value::Null);
        assert_eq!(s.hash(), "e3b0c44298fc");
    }
}
