//! The YAML file as written by an operator: the only serde types of the config. Every struct
//! denies unknown keys, so a typo (`scope:` for `scopes:`) is an error, never a silently open
//! route. Nothing here reaches the request path: `compile/` turns it into a `Policy`. Every
//! default is a constant in `defaults.rs`.

use super::defaults;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Main listener. Default `0.0.0.0:8080`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// `/metrics`, `/healthz`, `/readyz`. Default `127.0.0.1:9901`; `null` turns it off.
    #[serde(default = "default_admin_listen")]
    pub admin_listen: Option<String>,
    /// Named upstreams.
    pub upstreams: BTreeMap<String, RawUpstream>,
    /// Upstream for routes that name none.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Named token issuers.
    #[serde(default)]
    pub issuers: BTreeMap<String, RawIssuer>,
    /// Routes, tried in file order; the first match wins.
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub identity: RawIdentity,
    #[serde(default)]
    pub token_sources: RawTokenSources,
    /// CIDRs whose `X-Forwarded-*` headers are kept (appended to) instead of replaced.
    /// Default none.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Method and URL override headers (`X-HTTP-Method-Override`, `X-HTTP-Method`,
    /// `X-Method-Override`, `X-Original-URL`, `X-Rewrite-URL`) to forward anyway, for an
    /// upstream that needs one; all others are removed from every request. Default none.
    #[serde(default)]
    pub keep_override_headers: Vec<String>,
    /// TLS on `listen` (then TLS only, ALPN h2 and http/1.1). Default null: plain HTTP.
    #[serde(default)]
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub server: RawServer,
    /// Add the token's `sub` to the access log line. Default false.
    #[serde(default)]
    pub log_subject: bool,
    /// `authenticate`: a CORS preflight is judged like any request. `forward`: an `OPTIONS`
    /// with `Origin` and `Access-Control-Request-Method` is routed as the method it asks
    /// about and forwarded without a token. Default `authenticate`.
    #[serde(default)]
    pub cors_preflight: RawCorsPreflight,
    /// The forward-auth listener (nginx `auth_request`, Traefik and Caddy `forward_auth`).
    /// Default null: off. Needs `trusted_proxies`: only their descriptions are believed.
    #[serde(default)]
    pub decision_listen: Option<String>,
    /// DPoP proofs (RFC 9449), checked whenever a token is DPoP-bound.
    #[serde(default)]
    pub dpop: RawDpop,
    /// OpenTelemetry tracing: off unless `otlp_endpoint` is set.
    #[serde(default)]
    pub tracing: RawTracing,
}

/// `tracing:`: OpenTelemetry spans of requests and key fetches, exported over OTLP/gRPC.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    /// The collector's OTLP/gRPC address, `http://host:port` (usually `:4317`). Default null:
    /// tracing off (W3C trace context is still forwarded untouched). Read at start: a change
    /// takes effect at the next restart.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// The share of requests without a sampled parent that start a sampled trace, 0 to 1; a
    /// request whose `traceparent` says sampled (or not) follows its parent. Default 1.0.
    /// Changes on reload.
    #[serde(default)]
    pub sample_ratio: Option<f64>,
    /// `service.name` of the exported spans. Default portcullis. Read at start.
    #[serde(default)]
    pub service_name: Option<String>,
}

/// `dpop:`: how DPoP proofs are checked.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDpop {
    /// Proof algorithms accepted (asymmetric only). Default `[ES256, EdDSA, PS256, RS256]`.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// A proof's `iat` must be within this of now, plus the token issuer's leeway. Default 60s.
    #[serde(default)]
    pub max_age: Option<Dur>,
    /// Require a server-issued nonce (`DPoP-Nonce`). Default false.
    #[serde(default)]
    pub nonce: bool,
    /// `jti`s remembered per process; a full cache refuses new proofs. Default 100000.
    #[serde(default)]
    pub replay_cache_entries: Option<usize>,
    /// Environment variable holding the key of server nonces, the same on every replica so
    /// that a nonce one replica issued is accepted by all. Default none: a random key per
    /// process (a nonce is then accepted only by the process that issued it).
    #[serde(default)]
    pub nonce_secret_env: Option<String>,
}

/// `cors_preflight`; the default is `authenticate`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RawCorsPreflight {
    #[default]
    Authenticate,
    Forward,
}

fn default_listen() -> String {
    defaults::LISTEN.into()
}

fn default_admin_listen() -> Option<String> {
    Some(defaults::ADMIN_LISTEN.into())
}

/// `tls:`: the listener's certificate, and client certificates.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain, leaf first. Re-read when it changes on disk.
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf. Re-read with `cert_file`.
    pub key_file: String,
    /// PEM bundle of the CAs that sign client certificates; when set, every client must
    /// present one. Default null: no client certificates.
    #[serde(default)]
    pub client_ca_file: Option<String>,
    /// Header set on every forwarded request to the verified client certificate's subject
    /// (RFC 4514); an incoming one is always removed. Needs `client_ca_file`. Default null.
    #[serde(default)]
    pub client_subject_header: Option<String>,
    /// With `client_ca_file`: `required` (every client presents a certificate) or `optional`
    /// (a client may connect without one; one it presents must still chain to the CAs).
    /// Default `required`.
    #[serde(default)]
    pub client_auth: Option<RawClientAuth>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawClientAuth {
    Required,
    Optional,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// `http://host:port` or `https://host:port`; a path or query is an error.
    pub url: String,
    /// Default 2s. A connect timeout answers 504 `upstream_timeout`.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
    /// Default 30s: longest wait for the upstream's next bytes. Exceeded: 504.
    #[serde(default = "default_read_timeout")]
    pub read_timeout: Dur,
    /// The HTTP version spoken to the upstream. Default `h1`; `h2c`: HTTP/2 over cleartext with
    /// prior knowledge (gRPC servers, an http url); `h2`: HTTP/2 through ALPN (an https url).
    #[serde(default)]
    pub protocol: Option<String>,
    /// PEM bundle of the CAs an `https` upstream's certificate must chain to. Default null:
    /// the system's roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Server name sent and verified on an `https` upstream. Default null: the url's host.
    #[serde(default)]
    pub sni: Option<String>,
    /// Accept any certificate from an `https` upstream. Default false; logged as a warning at
    /// every load and reload.
    #[serde(default)]
    pub dangerous_skip_verify: bool,
}

fn default_connect_timeout() -> Dur {
    Dur(defaults::CONNECT_TIMEOUT)
}

fn default_read_timeout() -> Dur {
    Dur(defaults::READ_TIMEOUT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    /// The exact `iss` value of this issuer's tokens.
    pub issuer: String,
    /// Fetch `<issuer>/.well-known/openid-configuration` and use its `jwks_uri`. Default false.
    #[serde(default)]
    pub discovery: bool,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// Inline key set (`{ keys: [ … ] }`), for tests and air-gapped setups.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// Permit `http://` key URLs. Default false.
    #[serde(default)]
    pub allow_http: bool,
    /// Required, non-empty: `aud` must contain one of these.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Allowed `alg` values. Default `[RS256]`; `none` is an error.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Claims merged into the token's scope set. Default `[scope, scp, permissions]`.
    #[serde(default)]
    pub scope_claims: Option<Vec<String>>,
    /// Clock skew allowed on `exp`, `nbf`, `iat`. Default 30s.
    #[serde(default)]
    pub leeway: Option<Dur>,
    /// Refuse tokens whose `exp - iat` is longer. Default none: no limit.
    #[serde(default)]
    pub max_token_lifetime: Option<Dur>,
    /// Required `typ` header, e.g. `at+jwt`. Default none: not checked.
    #[serde(default)]
    pub required_typ: Option<String>,
    /// Background key refresh. Default 10m (a `Cache-Control: max-age` overrides it).
    #[serde(default)]
    pub refresh_interval: Option<Dur>,
    /// Least time between two unknown-`kid` refetches. Default 30s.
    #[serde(default)]
    pub refetch_cooldown: Option<Dur>,
    /// Drop the issuer's keys when no refresh has succeeded for this long (its tokens then get
    /// 503). Default never: last-known-good keys serve through any outage.
    #[serde(default)]
    pub max_stale: Option<Dur>,
    /// Environment variable holding the HS256/384/512 secret. Default none.
    #[serde(default)]
    pub hmac_secret_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Unique; used in metrics and logs.
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    /// `required`, `optional` or `none`. Default `required`. `optional` forwards a request
    /// without a token anonymously, so it allows no `scopes` or `claims`.
    #[serde(default)]
    pub auth: Option<RawAuth>,
    /// Narrow the issuers accepted on this route.
    #[serde(default)]
    pub issuers: Option<Vec<String>>,
    #[serde(default)]
    pub scopes: Option<RawScopes>,
    /// `claim-name-or-/json/pointer: [allowed, values]` or `: true` / `: false`.
    #[serde(default)]
    pub claims: BTreeMap<String, RawClaimRule>,
    #[serde(default)]
    pub upstream: Option<String>,
    /// `enforce` or `shadow`: a shadow route is evaluated in full, but the request is forwarded
    /// whatever the decision, and a denial it would have made is logged and counted. Default
    /// `enforce`.
    #[serde(default)]
    pub mode: Option<RawMode>,
    /// `any` or `required`: a `required` route refuses tokens bound to nothing (neither DPoP
    /// nor a client certificate). Default `any`.
    #[serde(default)]
    pub sender_constraint: Option<RawSenderConstraint>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawSenderConstraint {
    Any,
    Required,
}

/// `routes[].mode`; the default is `enforce`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RawMode {
    #[default]
    Enforce,
    Shadow,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    /// Literal segments, `*` (one segment), trailing `**` (zero or more).
    pub path: String,
    /// Default every method.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Exact host or `*.example.com`. Default any host.
    #[serde(default)]
    pub host: Option<String>,
}

/// `routes[].auth`; the default is `required`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RawAuth {
    #[default]
    Required,
    Optional,
    None,
}

/// `scopes:`: a list, `{ any_of: [...] }` or `{ all_of: [...] }`. Deserialised by hand, not
/// `untagged`, so a wrong shape says what is accepted instead of naming a Rust type.
#[derive(Debug)]
pub enum RawScopes {
    /// A plain list means all of them.
    AllOfList(Vec<String>),
    Rule(RawScopeRule),
}

impl<'de> Deserialize<'de> for RawScopes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawScopes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a list of scopes ([read:orders, write:orders], all of them needed), \
                     { any_of: [...] } or { all_of: [...] }",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawScopes, E> {
                Err(E::custom(format!(
                    "scopes is a list, not a string: write [{v}] (all of the listed scopes \
                     needed), {{ any_of: [{v}] }} or {{ all_of: [{v}] }}"
                )))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, a: A) -> Result<RawScopes, A::Error> {
                Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(a))
                    .map(RawScopes::AllOfList)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, a: A) -> Result<RawScopes, A::Error> {
                RawScopeRule::deserialize(serde::de::value::MapAccessDeserializer::new(a))
                    .map(RawScopes::Rule)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScopeRule {
    #[serde(default)]
    pub any_of: Option<Vec<String>>,
    #[serde(default)]
    pub all_of: Option<Vec<String>>,
}

/// One `claims:` rule: `true`/`false` or a list of allowed values. Deserialised by hand, like
/// `RawScopes`, so a wrong shape says what is accepted.
#[derive(Debug)]
pub enum RawClaimRule {
    /// The claim must be this boolean.
    Bool(bool),
    /// The claim (or one element of an array claim) must equal one of these.
    OneOf(Vec<serde_json::Value>),
}

impl<'de> Deserialize<'de> for RawClaimRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawClaimRule;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of allowed values ([acme, globex]), or true or false")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<RawClaimRule, E> {
                Ok(RawClaimRule::Bool(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawClaimRule, E> {
                Err(E::custom(format!(
                    "a claim rule is a list of allowed values or true/false, not a string: \
                     write [{v}]"
                )))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                a: A,
            ) -> Result<RawClaimRule, A::Error> {
                Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(a))
                    .map(RawClaimRule::OneOf)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    /// Every incoming header with this prefix is removed. Default `x-auth-`. Written with `-`,
    /// never `_`, like every identity header name.
    #[serde(default = "default_strip_prefix")]
    pub strip_prefix: String,
    /// `header-name: claim` (top-level name, or a JSON Pointer starting with `/`).
    /// Header names are written with `-`, never `_`. Writing the key replaces the whole set;
    /// `{}` sends none. Default x-auth-subject: sub, x-auth-issuer: iss, x-auth-scopes: scope.
    #[serde(default = "default_identity_headers")]
    pub headers: BTreeMap<String, String>,
    /// Header carrying base64url JSON of all verified claims. Default none.
    #[serde(default)]
    pub claims_header: Option<String>,
    /// Keep the Authorization header (and token cookie/query) upstream. Default false.
    #[serde(default)]
    pub forward_token: bool,
}

fn default_strip_prefix() -> String {
    defaults::STRIP_PREFIX.into()
}

fn default_identity_headers() -> BTreeMap<String, String> {
    (defaults::IDENTITY_HEADERS.iter())
        .map(|(header, claim)| (header.to_string(), claim.to_string()))
        .collect()
}

impl Default for RawIdentity {
    fn default() -> Self {
        RawIdentity {
            strip_prefix: default_strip_prefix(),
            headers: default_identity_headers(),
            claims_header: None,
            forward_token: false,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenSources {
    /// Cookie name to read a token from. Default off.
    #[serde(default)]
    pub cookie: Option<String>,
    /// Query parameter to read a token from. Default off (URLs leak into logs).
    #[serde(default)]
    pub query: Option<String>,
    /// Origins allowed to send a cookie token on unsafe methods. Default none.
    #[serde(default)]
    pub cookie_origins: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Default 8192.
    #[serde(default)]
    pub max_token_bytes: Option<usize>,
    /// Default 10000; 0 disables the verified-token cache.
    #[serde(default)]
    pub token_cache_entries: Option<u64>,
    /// Most request headers. Default 100; more: 431.
    #[serde(default)]
    pub max_header_count: Option<usize>,
    /// Most bytes of all header names and values together. Default 32768; more: 431.
    #[serde(default)]
    pub max_header_bytes: Option<usize>,
    /// Most HTTP/2 requests open at once on one client connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    /// Default 100. Read at start: a change takes effect at the next restart.
    #[serde(default)]
    pub h2_max_concurrent_streams: Option<u32>,
    /// Longest request target (path and query). Default 8192; longer: 414.
    #[serde(default)]
    pub max_target_bytes: Option<usize>,
    /// Largest request body. Default none (no limit); larger: 413.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Most requests handled at once. Default 10000; more: 503 `overloaded`.
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// Longest wait for the next bytes of a request body. Default 30s; exceeded: 408.
    #[serde(default)]
    pub client_body_timeout: Option<Dur>,
    /// How long an idle keep-alive connection stays open. Default 60s.
    #[serde(default)]
    pub client_idle_timeout: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// pingora worker threads. Default 1.
    #[serde(default)]
    pub threads: Option<usize>,
    /// SIGTERM drain budget. Default 25s.
    #[serde(default)]
    pub shutdown_grace: Option<Dur>,
    /// How long SIGTERM keeps accepting before the drain, inside `shutdown_grace`. Default 0s.
    #[serde(default)]
    pub shutdown_delay: Option<Dur>,
}

/// A duration written `30s`, `10m`, `24h`, `1h 30m`, `500ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(text.trim())
            .map(Dur)
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "invalid duration {text:?}: write it like 30s, 10m or 24h"
                ))
            })
    }
}
