//! Every default of the config file, in one place. `raw.rs` (serde defaults) and `compile/`
//! read the typed constants below; [`TABLE`] lists every default as an operator writes and
//! reads it, and the tests at the end of this file hold `config.example.yaml`, README.md,
//! `docs/` and the field docs in `raw.rs` to it, and check that writing a default compiles to
//! the same policy as leaving the key out.
//!
//! Options that are off, empty or absent unless written (`false`, `null`, `[]`) take serde's
//! own default and have no constant here; they are in [`TABLE`] all the same.

use std::time::Duration;

/// `listen`.
pub const LISTEN: &str = "0.0.0.0:8080";
/// `admin_listen`.
pub const ADMIN_LISTEN: &str = "127.0.0.1:9901";

/// `upstreams.<name>.connect_timeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// `upstreams.<name>.read_timeout`.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// `upstreams.<name>.protocol`.
pub const PROTOCOL: &str = "h1";

/// `issuers.<name>.algorithms`.
pub const ALGORITHMS: &[&str] = &["RS256"];
/// `issuers.<name>.scope_claims`.
pub const SCOPE_CLAIMS: &[&str] = &["scope", "scp", "permissions"];
/// `issuers.<name>.leeway`.
pub const LEEWAY: Duration = Duration::from_secs(30);
/// `issuers.<name>.refresh_interval`.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(600);
/// `issuers.<name>.refetch_cooldown`.
pub const REFETCH_COOLDOWN: Duration = Duration::from_secs(30);

/// `identity.strip_prefix`.
pub const STRIP_PREFIX: &str = "x-auth-";
/// `identity.headers` when the key is absent: (header, claim). A first deployment forwards who
/// the caller is without writing any mapping; `headers: {}` turns them off.
pub const IDENTITY_HEADERS: &[(&str, &str)] = &[
    ("x-auth-subject", "sub"),
    ("x-auth-issuer", "iss"),
    ("x-auth-scopes", "scope"),
];

/// `limits.max_token_bytes`.
pub const MAX_TOKEN_BYTES: usize = 8192;
/// `limits.token_cache_entries`.
pub const TOKEN_CACHE_ENTRIES: u64 = 10_000;
/// `limits.max_header_count`.
pub const MAX_HEADER_COUNT: usize = 100;
/// `limits.max_header_bytes`.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// `limits.h2_max_concurrent_streams` (pingora's own default).
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// `limits.max_target_bytes`.
pub const MAX_TARGET_BYTES: usize = 8192;
/// `limits.max_in_flight`.
pub const MAX_IN_FLIGHT: usize = 10_000;
/// `limits.client_body_timeout`.
pub const CLIENT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// `limits.client_idle_timeout`.
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// `dpop.algorithms`.
pub const DPOP_ALGORITHMS: &[&str] = &["ES256", "EdDSA", "PS256", "RS256"];
/// `dpop.max_age`.
pub const DPOP_MAX_AGE: Duration = Duration::from_secs(60);
/// `dpop.replay_cache_entries`.
pub const DPOP_REPLAY_CACHE_ENTRIES: usize = 100_000;

/// `server.threads`.
pub const THREADS: usize = 1;
/// `server.shutdown_grace`.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);
/// `server.shutdown_delay`.
pub const SHUTDOWN_DELAY: Duration = Duration::ZERO;

/// `tracing.sample_ratio`.
pub const SAMPLE_RATIO: f64 = 1.0;
/// `tracing.service_name`.
pub const SERVICE_NAME: &str = "portcullis";

/// One default as an operator writes and reads it.
#[derive(Debug, Clone, Copy)]
pub struct Documented {
    /// Key path; `*` stands for the name of an upstream or issuer, `[]` for any route.
    pub key: &'static str,
    /// The value written in YAML: writing it compiles to the same policy as leaving it out.
    pub yaml: &'static str,
    /// How the prose spells it where that differs from `yaml` (`32 KiB`, `none`).
    pub spoken: &'static str,
}

impl Documented {
    /// The last component of the key (`leeway` for `issuers.*.leeway`).
    pub fn leaf(&self) -> &'static str {
        self.key.rsplit('.').next().unwrap_or(self.key)
    }
}

const fn d(key: &'static str, yaml: &'static str, spoken: &'static str) -> Documented {
    Documented { key, yaml, spoken }
}

/// Every default, in the order of `config.example.yaml`. Not listed: `upstream` (the only
/// upstream when there is one, else none), and `upstreams.*.sni` (the url's host).
pub const TABLE: &[Documented] = &[
    d("listen", LISTEN, LISTEN),
    d("admin_listen", ADMIN_LISTEN, ADMIN_LISTEN),
    d("upstreams.*.connect_timeout", "2s", "2 s"),
    d("upstreams.*.read_timeout", "30s", "30 s"),
    d("upstreams.*.protocol", PROTOCOL, PROTOCOL),
    d("upstreams.*.ca_file", "null", "the system's roots"),
    d("upstreams.*.dangerous_skip_verify", "false", "false"),
    d("issuers.*.discovery", "false", "false"),
    d("issuers.*.allow_http", "false", "false"),
    d("issuers.*.algorithms", "[RS256]", "[RS256]"),
    d(
        "issuers.*.scope_claims",
        "[scope, scp, permissions]",
        "[scope, scp, permissions]",
    ),
    d("issuers.*.leeway", "30s", "30 s"),
    d("issuers.*.max_token_lifetime", "null", "none"),
    d("issuers.*.required_typ", "null", "none"),
    d("issuers.*.refresh_interval", "10m", "10 min"),
    d("issuers.*.refetch_cooldown", "30s", "30 s"),
    d("issuers.*.max_stale", "null", "never"),
    d("issuers.*.hmac_secret_env", "null", "none"),
    d("routes[].match.methods", "null", "every method"),
    d("routes[].match.host", "null", "any host"),
    d("routes[].auth", "required", "required"),
    d("routes[].mode", "enforce", "enforce"),
    d("routes[].sender_constraint", "any", "any"),
    d("identity.strip_prefix", STRIP_PREFIX, STRIP_PREFIX),
    d(
        "identity.headers",
        "{x-auth-subject: sub, x-auth-issuer: iss, x-auth-scopes: scope}",
        "x-auth-subject: sub, x-auth-issuer: iss, x-auth-scopes: scope",
    ),
    d("identity.claims_header", "null", "none"),
    d("identity.forward_token", "false", "false"),
    d("token_sources.cookie", "null", "off"),
    d("token_sources.query", "null", "off"),
    d("token_sources.cookie_origins", "[]", "none"),
    d("trusted_proxies", "[]", "none"),
    d("keep_override_headers", "[]", "none"),
    d("tls", "null", "null"),
    d("tls.client_ca_file", "null", "null"),
    d("tls.client_subject_header", "null", "null"),
    d("tls.client_auth", "required", "required"),
    d("limits.max_token_bytes", "8192", "8 KiB"),
    d("limits.token_cache_entries", "10000", "10,000"),
    d("limits.max_header_count", "100", "100"),
    d("limits.max_header_bytes", "32768", "32 KiB"),
    d("limits.h2_max_concurrent_streams", "100", "100"),
    d("limits.max_target_bytes", "8192", "8 KiB"),
    d("limits.max_body_bytes", "null", "none"),
    d("limits.max_in_flight", "10000", "10,000"),
    d("limits.client_body_timeout", "30s", "30 s"),
    d("limits.client_idle_timeout", "60s", "60 s"),
    d("server.threads", "1", "1"),
    d("server.shutdown_grace", "25s", "25 s"),
    d("server.shutdown_delay", "0s", "0 s"),
    d("log_subject", "false", "false"),
    d(
        "dpop.algorithms",
        "[ES256, EdDSA, PS256, RS256]",
        "[ES256, EdDSA, PS256, RS256]",
    ),
    d("dpop.max_age", "60s", "60 s"),
    d("dpop.nonce", "false", "false"),
    d("dpop.replay_cache_entries", "100000", "100,000"),
    d("dpop.nonce_secret_env", "null", "none"),
    d("cors_preflight", "authenticate", "authenticate"),
    d("decision_listen", "null", "off"),
    d("tracing.otlp_endpoint", "null", "off"),
    d("tracing.sample_ratio", "1.0", "1.0"),
    d("tracing.service_name", SERVICE_NAME, SERVICE_NAME),
];

#[cfg(test)]
mod tests {
    use super::{Documented, TABLE};
    use crate::config::{from_str, Policy};
    use std::path::Path;

    fn repo_file(path: &str) -> String {
        let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
    }

    /// Does `text` say `default <value>` (any case, backticks ignored), with `value` ending
    /// there, not as the start of a longer word or number?
    fn says_default(text: &str, value: &str) -> bool {
        let text = text.replace('`', "").to_ascii_lowercase();
        let want = format!("default {}", value.to_ascii_lowercase());
        text.match_indices(&want).any(|(i, _)| {
            text[i + want.len()..]
                .chars()
                .next()
                .is_none_or(|c| !c.is_ascii_alphanumeric())
        })
    }

    fn says_this_default(text: &str, d: &Documented) -> bool {
        says_default(text, d.yaml) || says_default(text, d.spoken)
    }

    fn yaml(text: &str) -> serde_yaml_ng::Value {
        serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    /// A config that writes `extra` (leaf and value) at `key`, or nothing when `None`. A
    /// `tls.` key is written beside a certificate pair from `pair`; `tls` itself, and any other
    /// key, without one.
    fn config_with(extra: Option<(&Documented, &str)>, pair: Option<&str>) -> String {
        let mut top = String::new();
        if let Some(pair) = pair {
            top.push_str(&format!("tls:\n{pair}"));
        }
        let (mut upstream, mut issuer, mut route, mut matcher) =
            (String::new(), String::new(), String::new(), String::new());
        if let Some((d, value)) = extra {
            let line = format!("{}: {value}\n", d.leaf());
            match d.key.split_once('.') {
                None => top.push_str(&line),
                Some(("upstreams", _)) => upstream = format!("    {line}"),
                Some(("issuers", _)) => issuer = format!("    {line}"),
                Some(("routes[]", rest)) if rest.starts_with("match.") => {
                    matcher = format!("      {line}")
                }
                Some(("routes[]", _)) => route = format!("    {line}"),
                Some(("tls", _)) => top.push_str(&format!("  {line}")),
                Some((section, _)) => top.push_str(&format!("{section}:\n  {line}")),
            }
        }
        format!(
            "upstreams:\n  app:\n    url: http://127.0.0.1:1\n{upstream}\
             issuers:\n  idp:\n    issuer: https://idp.example/\n    \
             jwks_uri: https://idp.example/jwks\n    audiences: [api]\n{issuer}\
             routes:\n  - name: all\n    match:\n      path: /api/**\n{matcher}{route}\
             {top}"
        )
    }

    /// Everything compiled, in text: the policy's Debug, and the issuer rules that its Debug
    /// leaves out.
    fn compiled(text: &str) -> String {
        let policy: Policy =
            from_str(text, "t.yaml", Path::new(".")).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let mut out = format!("{policy:?}");
        for r in &policy.issuers {
            out.push_str(&format!(
                "\n{:?} {:?} {:?} {:?} {:?}",
                r.audiences, r.scope_claims, r.leeway, r.max_token_lifetime, r.required_typ
            ));
        }
        out
    }

    /// A certificate pair in `dir`, as the lines of a `tls:` block.
    fn pair_in(dir: &Path) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["gateway.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        format!(
            "  cert_file: {}\n  key_file: {}\n",
            c.display(),
            k.display()
        )
    }

    #[test]
    fn writing_a_default_compiles_to_the_same_policy_as_leaving_it_out() {
        let dir = tempfile::tempdir().unwrap();
        let pair = pair_in(dir.path());
        for d in TABLE {
            let pair = d.key.starts_with("tls.").then_some(pair.as_str());
            let omitted = compiled(&config_with(None, pair));
            let written = config_with(Some((d, d.yaml)), pair);
            assert_eq!(
                compiled(&written),
                omitted,
                "{} written as {} differs from leaving it out",
                d.key,
                d.yaml
            );
        }
    }

    #[test]
    fn the_comparison_sees_a_value_that_is_not_the_default() {
        let omitted = compiled(&config_with(None, None));
        for (key, other) in [
            ("issuers.*.leeway", "31s"),
            ("issuers.*.scope_claims", "[scope]"),
            ("upstreams.*.read_timeout", "29s"),
            ("routes[].match.methods", "[GET]"),
            ("limits.max_header_bytes", "32767"),
            ("server.shutdown_grace", "24s"),
            ("server.shutdown_delay", "1s"),
        ] {
            let d = TABLE.iter().find(|d| d.key == key).expect("in TABLE");
            assert_ne!(
                compiled(&config_with(Some((d, other)), None)),
                omitted,
                "{key}"
            );
        }
    }

    /// The first line of `config.example.yaml` that writes the key, live or commented out; for
    /// a key of a plain top-level section (`dpop.max_age`), within that section, so that leaves
    /// of the same name (`issuers.*.algorithms`, `dpop.algorithms`) are told apart.
    fn example_line<'a>(example: &'a str, d: &Documented) -> Option<(&'a str, bool)> {
        let section = match d.key.split_once('.') {
            Some((s, _)) if s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') => example
                .find(&format!("\n{s}:"))
                .map_or(example, |at| &example[at..]),
            _ => example,
        };
        section.lines().find_map(|line| {
            let t = line.trim_start();
            let live = !t.starts_with('#');
            let t = t.trim_start_matches('#').trim_start();
            t.starts_with(&format!("{}:", d.leaf()))
                .then_some((line, live))
        })
    }

    #[test]
    fn the_example_config_shows_every_default() {
        let example = repo_file("config.example.yaml");
        for d in TABLE {
            let Some((line, live)) = example_line(&example, d) else {
                panic!("config.example.yaml does not write {}", d.key);
            };
            let value = line.trim_start().trim_start_matches('#').trim_start()
                [d.leaf().len() + 1..]
                .split(" #")
                .next()
                .unwrap_or_default()
                .trim();
            let shows = live && yaml(value) == yaml(d.yaml);
            assert!(
                shows || says_this_default(line, d),
                "config.example.yaml: {line:?} neither writes nor names the default of {} ({})",
                d.key,
                d.yaml
            );
            if line.to_ascii_lowercase().contains("default ") {
                assert!(
                    says_this_default(line, d),
                    "config.example.yaml: {line:?} names another default than {} for {}",
                    d.yaml,
                    d.key
                );
            }
        }
    }

    /// The doc comment on `field` of `pub struct name` in `raw.rs`.
    fn field_doc(raw: &str, name: &str, field: &str) -> String {
        let start = raw
            .find(&format!("pub struct {name} {{"))
            .unwrap_or_else(|| panic!("raw.rs has no struct {name}"));
        let body = &raw[start..start + raw[start..].find("\n}").expect("struct end")];
        let mut doc = Vec::new();
        for line in body.lines() {
            let t = line.trim();
            if let Some(text) = t.strip_prefix("///") {
                doc.push(text.trim());
            } else if t.starts_with(&format!("pub {field}:")) {
                return doc.join(" ");
            } else if !t.starts_with("#[") {
                doc.clear();
            }
        }
        panic!("raw.rs: {name} has no field {field}");
    }

    #[test]
    fn the_raw_field_docs_name_every_default() {
        let raw = repo_file("src/config/raw.rs");
        for d in TABLE {
            let name = match d.key.split_once('.').map(|(s, _)| s) {
                None => "RawConfig",
                Some("upstreams") => "RawUpstream",
                Some("issuers") => "RawIssuer",
                Some("routes[]") if d.key.starts_with("routes[].match.") => "RawMatch",
                Some("routes[]") => "RawRoute",
                Some("identity") => "RawIdentity",
                Some("token_sources") => "RawTokenSources",
                Some("limits") => "RawLimits",
                Some("server") => "RawServer",
                Some("tls") => "RawTls",
                Some("dpop") => "RawDpop",
                Some("tracing") => "RawTracing",
                Some(other) => panic!("no raw struct for {other}"),
            };
            let doc = field_doc(&raw, name, d.leaf());
            assert!(
                says_this_default(&doc, d),
                "raw.rs {name}.{}: {doc:?} does not say `Default {}`",
                d.leaf(),
                d.spoken
            );
        }
    }

    /// Rows of the README.md and docs/*.md tables whose header names a default, whose first
    /// cell starts with a key in backticks:
    /// (file, key as written with `<name>` read as `*`, second cell without backticks).
    fn doc_rows() -> Vec<(String, String, String)> {
        let mut files = vec!["README.md".to_string()];
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        for entry in std::fs::read_dir(dir).expect("docs/") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            if name.ends_with(".md") {
                files.push(format!("docs/{name}"));
            }
        }
        let mut rows = Vec::new();
        for file in files {
            // Only tables whose header names a default (a metrics table has other columns).
            let mut in_defaults_table = false;
            let mut previous_was_row = false;
            for line in repo_file(&file).lines() {
                let is_row = line.trim_start().starts_with('|');
                if is_row && !previous_was_row {
                    in_defaults_table = line.to_ascii_lowercase().contains("default");
                }
                previous_was_row = is_row;
                if !is_row || !in_defaults_table {
                    continue;
                }
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let (Some(first), Some(second)) = (cells.get(1), cells.get(2)) else {
                    continue;
                };
                let Some(key) = first.strip_prefix('`').and_then(|k| k.split('`').next()) else {
                    continue;
                };
                rows.push((
                    file.clone(),
                    key.replace("<name>", "*"),
                    second.replace('`', ""),
                ));
            }
        }
        rows
    }

    #[test]
    fn the_docs_list_every_default_as_the_table_has_it() {
        let rows = doc_rows();
        for d in TABLE {
            // A row naming the whole key wins over rows naming its leaf (`dpop.algorithms` is
            // not `issuers.<name>.algorithms`).
            let exact: Vec<_> = rows.iter().filter(|(_, key, _)| key == d.key).collect();
            let mine: Vec<_> = if exact.is_empty() {
                rows.iter()
                    .filter(|(_, key, _)| key == d.leaf() || d.key.ends_with(&format!(".{key}")))
                    .collect()
            } else {
                exact
            };
            assert!(
                !mine.is_empty(),
                "no table row in README.md or docs/ gives the default of {}",
                d.key
            );
            for (file, key, value) in mine {
                assert!(
                    value == d.spoken || value == d.yaml,
                    "{file}: `{key}` has default {value:?}, expected {:?}",
                    d.spoken
                );
            }
        }
    }
}
