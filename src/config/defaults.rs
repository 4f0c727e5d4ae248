//! Every default of the config file, in one place. `raw.rs` (serde defaults) and `compile/`
//! read the typed constants below; [`TABLE`] lists every default as an operator writes and
//! reads it, and the tests at the end of this file hold `config.example.yaml`, README.md,
//! `docs/` and the field docs in `raw.rs` to it, and check that writing a default compiles to
//! the same policy as leaving the key out.
//!
//! Options that are off, empty or absent unless written (`false`, `null`, `[]`) take serde's
//! own default and have no constant here; they are in [`TABLE`] all the same.

use super::raw::RawAuth;
use std::time::Duration;

/// `listen`.
pub const LISTEN: &str = "0.0.0.0:8080";
/// `admin_listen`.
pub const ADMIN_LISTEN: &str = "127.0.0.1:9901";

/// `upstreams.<name>.connect_timeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// `upstreams.<name>.read_timeout`.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// `upstreams.<name>.protocol`: the only one available in this version.
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

/// `routes[].auth`.
pub const AUTH: RawAuth = RawAuth::Required;

/// `identity.strip_prefix`.
pub const STRIP_PREFIX: &str = "x-auth-";

/// `limits.max_token_bytes`.
pub const MAX_TOKEN_BYTES: usize = 8192;
/// `limits.token_cache_entries`.
pub const TOKEN_CACHE_ENTRIES: u64 = 10_000;
/// `limits.max_header_count`.
pub const MAX_HEADER_COUNT: usize = 100;
/// `limits.max_header_bytes`.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// `limits.max_target_bytes`.
pub const MAX_TARGET_BYTES: usize = 8192;
/// `limits.max_in_flight`.
pub const MAX_IN_FLIGHT: usize = 10_000;
/// `limits.client_body_timeout`.
pub const CLIENT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// `limits.client_idle_timeout`.
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// `server.threads`.
pub const THREADS: usize = 1;
/// `server.shutdown_grace`.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);

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
/// upstream when there is one, else none), and `ca_file`, `sni`, `dangerous_skip_verify`,
/// which belong to https upstreams and are refused until those exist.
pub const TABLE: &[Documented] = &[
    d("listen", LISTEN, LISTEN),
    d("admin_listen", ADMIN_LISTEN, ADMIN_LISTEN),
    d("upstreams.*.connect_timeout", "2s", "2 s"),
    d("upstreams.*.read_timeout", "30s", "30 s"),
    d("upstreams.*.protocol", PROTOCOL, PROTOCOL),
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
    d("identity.strip_prefix", STRIP_PREFIX, STRIP_PREFIX),
    d("identity.claims_header", "null", "none"),
    d("identity.forward_token", "false", "false"),
    d("token_sources.cookie", "null", "off"),
    d("token_sources.query", "null", "off"),
    d("token_sources.cookie_origins", "[]", "none"),
    d("trusted_proxies", "[]", "none"),
    d("tls", "null", "null"),
    d("limits.max_token_bytes", "8192", "8 KiB"),
    d("limits.token_cache_entries", "10000", "10,000"),
    d("limits.max_header_count", "100", "100"),
    d("limits.max_header_bytes", "32768", "32 KiB"),
    d("limits.max_target_bytes", "8192", "8 KiB"),
    d("limits.max_body_bytes", "null", "none"),
    d("limits.max_in_flight", "10000", "10,000"),
    d("limits.client_body_timeout", "30s", "30 s"),
    d("limits.client_idle_timeout", "60s", "60 s"),
    d("server.threads", "1", "1"),
    d("server.shutdown_grace", "25s", "25 s"),
    d("log_subject", "false", "false"),
];
