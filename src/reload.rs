//! Hot reload of the config file: when to read it and what changed. The file is watched
//! (`watch`: in-place writes, write-then-rename, Kubernetes ConfigMap `..data` symlink swaps)
//! and SIGHUP asks for a reload; either way the file is read, and if its SHA-256 differs from
//! the one serving, compiled in full and handed to `live::Generation::next`, which builds the
//! next generation and swaps it in. A request keeps the generation it started with to its end.
//!
//! The file diff decides which issuers count as unchanged (their key sets, refresh tasks and
//! cached tokens carry over: no refetch on an edit elsewhere; a changed or added one starts
//! with no keys, so `/readyz` is 503 until it has some; a removed one stops refreshing) and
//! names the settings that wait for a restart in the log line. A cached token names the issuer
//! it was verified for by `IssuerKeys::id`, so an index that moved in a reload cannot make it
//! pass for another issuer (`KeyStore::is`).

use crate::config::{self, ConfigError, Policy};
use crate::live::{Generation, Shared};
use crate::metrics::Metrics;
use aws_lc_rs::digest;
use serde_yaml_ng::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What the serving policy was compiled from.
#[derive(Clone)]
pub struct Snapshot {
    digest: [u8; 32],
    tree: Value,
    /// The file's restart-only settings, as it asked for them (the server may run others).
    asked: RestartOnly,
}

impl Snapshot {
    fn of(text: &str, tree: Value, policy: &Policy) -> Snapshot {
        Snapshot {
            digest: sha256(text),
            tree,
            asked: RestartOnly::of(policy),
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
    let snapshot = Snapshot::of(&text, tree, &policy);
    Ok((
        policy,
        ConfigFile {
            path: path.to_path_buf(),
            snapshot,
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

/// Read the file until two reads in a row agree: a write that began while it was read (the
/// watcher reads only complete writes, but the next one may start at any time) is not
/// compiled half-done. After a few tries that disagree, the file is left for the event its
/// writer's close sends.
fn read_stable(path: &Path) -> Result<String, ConfigError> {
    const TRIES: usize = 5;
    let mut text = config::read(path)?;
    for _ in 0..TRIES {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let again = config::read(path)?;
        if again == text {
            return Ok(text);
        }
        text = again;
    }
    Err(ConfigError::Read {
        file: path.display().to_string(),
        error: std::io::Error::other("the file kept changing while it was read"),
    })
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
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
    /// What the serving generation was compiled from; also serialises reloads.
    applied: Mutex<Snapshot>,
}

impl Reloader {
    pub fn new(
        file: ConfigFile,
        live: Shared,
        metrics: Arc<Metrics>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        metrics.set_config_hash(&file.snapshot.hash());
        Reloader {
            path: file.path,
            live,
            metrics,
            runtime,
            applied: Mutex::new(file.snapshot),
        }
    }

    /// Read the file and apply it if it changed and compiles.
    pub fn reload(&self, trigger: Trigger) -> Reloaded {
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        let file = self.path.display().to_string();
        let outcome = match read_stable(&self.path).and_then(|text| {
            if sha256(&text) == applied.digest {
                return Ok(None);
            }
            compile(&self.path, &text).map(|(policy, tree)| {
                let snapshot = Snapshot::of(&text, tree, &policy);
                Some((policy, snapshot))
            })
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
                Reloaded::Unchanged
            }
            Ok(Some((policy, snapshot))) => {
                match self.apply(policy, &snapshot, &applied, trigger) {
                    Ok(generation) => {
                        *applied = snapshot;
                        Reloaded::Applied(generation)
                    }
                    Err(message) => {
                        tracing::error!(event = "config_reload", result = "invalid",
                            trigger = trigger.label(), file = %file, error = %message,
                            "config refused; the current policy keeps serving");
                        Reloaded::Invalid
                    }
                }
            }
            Err(e) => {
                log_invalid(&e, trigger);
                Reloaded::Invalid
            }
        };
        let label = match outcome {
            Reloaded::Applied(_) => "ok",
            Reloaded::Unchanged => "unchanged",
            Reloaded::Invalid => "invalid",
        };
        self.metrics
            .config_reloads
            .with_label_values(&[label])
            .inc();
        outcome
    }

    /// Build the next generation (`live`) and swap it in; log what changed.
    fn apply(
        &self,
        policy: Policy,
        new: &Snapshot,
        old: &Snapshot,
        trigger: Trigger,
    ) -> Result<u64, String> {
        let current = self.live.load_full();
        let changes = Changes::between(old, new);
        let unchanged: HashSet<String> = current
            .policy
            .issuers
            .iter()
            .map(|i| i.name.clone())
            .filter(|name| {
                !changes.issuers.changed.contains(name) && !changes.issuers.removed.contains(name)
            })
            .collect();
        let next = Generation::next(&self.live, policy, &unchanged, &self.runtime)?;
        for setting in &changes.restart_only {
            tracing::warn!(event = "config_reload", setting = %setting,
                "changed in the file; ignored until the next restart");
        }
        let generation = next.number;
        let token_cache_kept = next.shares_cache_with(&current);
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
            token_cache_kept,
            "config reloaded"
        );
        Ok(generation)
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
    /// Settings the new file changes that take effect only at start (`RestartOnly`): the
    /// listener keeps what it was opened with (the TLS files' contents reload on their own).
    pub restart_only: Vec<&'static str>,
}

impl Changes {
    fn between(old: &Snapshot, new: &Snapshot) -> Changes {
        let (old_tree, new_tree) = (&old.tree, &new.tree);
        let routes = Delta::between(old_tree.get("routes"), new_tree.get("routes"));
        let mut other = Vec::new();
        let order = |tree: &Value| -> Vec<String> {
            named(tree.get("routes"))
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        let (was, is) = (order(old_tree), order(new_tree));
        let common = |list: &[String], other: &[String]| -> Vec<String> {
            list.iter().filter(|n| other.contains(n)).cloned().collect()
        };
        if common(&was, &is) != common(&is, &was) {
            other.push("routes (order)".to_string());
        }
        let mut keys: Vec<String> = [old_tree, new_tree]
            .iter()
            .filter_map(|t| t.as_mapping())
            .flat_map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_string)))
            .filter(|k| {
                !matches!(
                    k.as_str(),
                    "routes"
                        | "issuers"
                        | "upstreams"
                        | "listen"
                        | "admin_listen"
                        | "decision_listen"
                )
            })
            .collect();
        keys.sort();
        keys.dedup();
        other.extend(
            keys.into_iter()
                .filter(|k| old_tree.get(k) != new_tree.get(k)),
        );
        Changes {
            routes,
            issuers: Delta::between(old_tree.get("issuers"), new_tree.get("issuers")),
            upstreams: Delta::between(old_tree.get("upstreams"), new_tree.get("upstreams")),
            other,
            restart_only: old.asked.changed_in(&new.asked),
        }
    }
}

/// The settings of a config that take effect only when the server starts (`live` pins them):
/// compared between two versions of the file, to log which ones a reload leaves for later.
#[derive(Clone, PartialEq)]
struct RestartOnly {
    listen: std::net::SocketAddr,
    admin_listen: Option<std::net::SocketAddr>,
    decision_listen: Option<std::net::SocketAddr>,
    threads: usize,
    shutdown_grace: std::time::Duration,
    shutdown_delay: std::time::Duration,
    /// Whether the listener is TLS, its files, client CAs and client subject header.
    tls: Option<(PathBuf, PathBuf, Option<PathBuf>, Option<http::HeaderName>)>,
    /// HTTP/2 SETTINGS are built once, when the listener starts.
    h2_max_concurrent_streams: u32,
    /// The span exporter is built once, when the server starts.
    otlp_endpoint: Option<String>,
    service_name: String,
}

impl RestartOnly {
    fn of(policy: &Policy) -> Self {
        RestartOnly {
            listen: policy.listen,
            admin_listen: policy.admin_listen,
            decision_listen: policy.decision_listen,
            threads: policy.server.threads,
            shutdown_grace: policy.server.shutdown_grace,
            shutdown_delay: policy.server.shutdown_delay,
            tls: policy.tls.as_ref().map(|t| {
                (
                    t.cert_file.clone(),
                    t.key_file.clone(),
                    t.client_ca_file.clone(),
                    t.client_subject_header.clone(),
                )
            }),
            h2_max_concurrent_streams: policy.limits.h2_max_concurrent_streams,
            otlp_endpoint: policy.tracing.otlp_endpoint.clone(),
            service_name: policy.tracing.service_name.clone(),
        }
    }

    /// The settings `new` changes, by their config key.
    fn changed_in(&self, new: &RestartOnly) -> Vec<&'static str> {
        [
            ("listen", self.listen != new.listen),
            ("admin_listen", self.admin_listen != new.admin_listen),
            (
                "decision_listen",
                self.decision_listen != new.decision_listen,
            ),
            ("server.threads", self.threads != new.threads),
            (
                "server.shutdown_grace",
                self.shutdown_grace != new.shutdown_grace,
            ),
            (
                "server.shutdown_delay",
                self.shutdown_delay != new.shutdown_delay,
            ),
            ("tls", self.tls != new.tls),
            (
                "limits.h2_max_concurrent_streams",
                self.h2_max_concurrent_streams != new.h2_max_concurrent_streams,
            ),
            (
                "tracing.otlp_endpoint",
                self.otlp_endpoint != new.otlp_endpoint,
            ),
            (
                "tracing.service_name",
                self.service_name != new.service_name,
            ),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
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
        // What `Snapshot::hash` prints: the first six bytes of the file's SHA-256.
        assert_eq!(hex(&sha256("")[..6]), "e3b0c44298fc");
    }
}
