//! Validate the raw config and compile it into the runtime `Policy`: route matchers, issuer
//! rules, key plans and the identity header plan. Everything a request needs is decided here,
//! once; a config that compiles is a config that works, and `portcullis check` runs this.

use super::raw::{self, RawAuth, RawClaimRule, RawConfig, RawScopes};
use crate::authz::{ClaimRule, Expect, ScopeRule};
use crate::identity::{IdentityPlan, Source};
use crate::keys::fetch::FetchLimits;
use crate::keys::{KeySet, KeySettings, KeySource};
use crate::route::{Auth, HostMatch, PathPattern, Route, RouteTable};
use crate::token::claims::ClaimRef;
use crate::token::extract::TokenSources;
use crate::token::verify::{HmacSecret, IssuerRules};
use http::{HeaderName, Method};
use ipnet::IpNet;
use jsonwebtoken::Algorithm;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A compile error before it is given a file position.
#[derive(Debug)]
pub struct CompileError {
    pub path: String,
    pub message: String,
}

fn err<T>(path: impl Into<String>, message: impl Into<String>) -> Result<T, CompileError> {
    Err(CompileError {
        path: path.into(),
        message: message.into(),
    })
}

/// A compiled upstream.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    /// Resolved once at load.
    pub address: SocketAddr,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

/// How an issuer's key store starts.
#[derive(Debug, Clone)]
pub struct KeyPlan {
    pub settings: KeySettings,
    /// Inline `jwks`, already checked to parse.
    pub inline: Option<Vec<u8>>,
    /// Only HMAC algorithms, with a secret: no key set needed.
    pub hmac_only: bool,
}

/// `limits:`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_token_bytes: usize,
    pub token_cache_entries: u64,
    pub max_header_count: usize,
    pub max_header_bytes: usize,
    pub max_target_bytes: usize,
    pub max_body_bytes: Option<u64>,
    pub max_in_flight: usize,
    pub client_body_timeout: Duration,
    pub client_idle_timeout: Duration,
}

/// `server:`.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub threads: usize,
    pub shutdown_grace: Duration,
}

/// The compiled runtime policy. Nothing in it is a serde type.
#[derive(Debug)]
pub struct Policy {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub routes: RouteTable,
    pub upstreams: Vec<Upstream>,
    pub issuers: Vec<IssuerRules>,
    /// Exact `iss` → index into `issuers`.
    pub issuer_by_iss: HashMap<String, usize>,
    pub keys: Vec<KeyPlan>,
    pub identity: IdentityPlan,
    pub token_sources: TokenSources,
    pub trusted_proxies: Vec<IpNet>,
    pub limits: Limits,
    pub server: ServerSettings,
    pub log_subject: bool,
    /// Top-level claims that some route's `claims:` rule reads: the only claims a cached
    /// token keeps (identity headers are rendered at verification).
    pub authz_claims: Vec<String>,
}

/// Default `limits.max_token_bytes`.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
/// Default `limits.token_cache_entries`.
pub const DEFAULT_TOKEN_CACHE_ENTRIES: u64 = 10_000;

/// Headers an identity mapping may not take over: the proxy or the protocol owns them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "cookie",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-authorization",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
];

pub fn compile(raw: RawConfig, base: &Path) -> Result<Policy, CompileError> {
    let listen = parse_addr("listen", &raw.listen)?;
    let admin_listen = match &raw.admin_listen {
        Some(a) => Some(parse_addr("admin_listen", a)?),
        None => None,
    };
    if raw.tls.as_ref().is_some_and(|t| !t.is_null()) {
        return err(
            "tls",
            "TLS listeners are not available in this version; terminate TLS in front of portcullis",
        );
    }

    if raw.upstreams.is_empty() {
        return err("upstreams", "at least one upstream is needed");
    }
    let mut upstreams = Vec::new();
    let mut upstream_index = HashMap::new();
    for (name, u) in &raw.upstreams {
        upstream_index.insert(name.clone(), upstreams.len());
        upstreams.push(compile_upstream(name, u)?);
    }
    let default_upstream = match &raw.upstream {
        Some(name) => Some(*upstream_index.get(name).ok_or_else(|| CompileError {
            path: "upstream".into(),
            message: format!("unknown upstream {name:?}"),
        })?),
        None if upstreams.len() == 1 => Some(0),
        None => None,
    };

    let mut issuers = Vec::new();
    let mut keys = Vec::new();
    let mut issuer_by_iss = HashMap::new();
    let mut issuer_index = HashMap::new();
    for (name, i) in &raw.issuers {
        let (rules, plan) = compile_issuer(name, i, base)?;
        if issuer_by_iss
            .insert(rules.issuer.clone(), issuers.len())
            .is_some()
        {
            return err(
                format!("issuers.{name}.issuer"),
                "two issuers have the same issuer value",
            );
        }
        issuer_index.insert(name.clone(), issuers.len());
        issuers.push(rules);
        keys.push(plan);
    }

    let mut routes = Vec::new();
    let mut names = HashSet::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        if r.name.trim().is_empty() {
            return err(format!("{at}.name"), "a route name is not empty");
        }
        if !names.insert(r.name.clone()) {
            return err(
                format!("{at}.name"),
                format!("duplicate route name {:?}", r.name),
            );
        }
        routes.push(compile_route(
            &at,
            r,
            &upstream_index,
            default_upstream,
            &issuer_index,
        )?);
    }
    if routes.is_empty() {
        return err(
            "routes",
            "at least one route is needed (unmatched requests get 404)",
        );
    }

    let mut authz_claims: Vec<String> = routes
        .iter()
        .flat_map(|r: &Route| r.claims.iter().map(|c| c.claim.top_level()))
        .collect();
    authz_claims.sort();
    authz_claims.dedup();
    let identity = compile_identity(&raw.identity)?;
    let token_sources = TokenSources {
        cookie: non_empty("token_sources.cookie", &raw.token_sources.cookie)?,
        query: non_empty("token_sources.query", &raw.token_sources.query)?,
        cookie_origins: raw.token_sources.cookie_origins.clone(),
    };
    let mut trusted_proxies = Vec::new();
    for (i, cidr) in raw.trusted_proxies.iter().enumerate() {
        let net = cidr
            .parse::<IpNet>()
            .or_else(|_| cidr.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| CompileError {
                path: format!("trusted_proxies[{i}]"),
                message: format!("{cidr:?} is not an IP address or CIDR"),
            })?;
        trusted_proxies.push(net);
    }
    let max_token_bytes = raw
        .limits
        .max_token_bytes
        .unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
    if !(64..=65536).contains(&max_token_bytes) {
        return err("limits.max_token_bytes", "must be between 64 and 65536");
    }
    let threads = raw.server.threads.unwrap_or(1);
    if !(1..=256).contains(&threads) {
        return err("server.threads", "must be between 1 and 256");
    }
    Ok(Policy {
        listen,
        admin_listen,
        routes: RouteTable::new(routes),
        upstreams,
        issuers,
        issuer_by_iss,
        keys,
        identity,
        token_sources,
        trusted_proxies,
        limits: compile_limits(&raw.limits, max_token_bytes)?,
        server: ServerSettings {
            threads,
            shutdown_grace: raw
                .server
                .shutdown_grace
                .map_or(Duration::from_secs(25), |d| d.0),
        },
        log_subject: raw.log_subject,
        authz_claims,
    })
}

fn compile_limits(l: &raw::RawLimits, max_token_bytes: usize) -> Result<Limits, CompileError> {
    let positive = |path: &str, v: usize| -> Result<usize, CompileError> {
        if v == 0 {
            err(format!("limits.{path}"), "must be above zero")
        } else {
            Ok(v)
        }
    };
    let body_timeout = l
        .client_body_timeout
        .map_or(Duration::from_secs(30), |d| d.0);
    let idle_timeout = l
        .client_idle_timeout
        .map_or(Duration::from_secs(60), |d| d.0);
    if body_timeout.is_zero() {
        return err("limits.client_body_timeout", "must be above zero");
    }
    if idle_timeout.as_secs() == 0 {
        return err("limits.client_idle_timeout", "must be at least 1s");
    }
    Ok(Limits {
        max_token_bytes,
        token_cache_entries: l.token_cache_entries.unwrap_or(DEFAULT_TOKEN_CACHE_ENTRIES),
        max_header_count: positive("max_header_count", l.max_header_count.unwrap_or(100))?,
        max_header_bytes: positive("max_header_bytes", l.max_header_bytes.unwrap_or(32 * 1024))?,
        max_target_bytes: positive("max_target_bytes", l.max_target_bytes.unwrap_or(8192))?,
        max_body_bytes: l.max_body_bytes,
        max_in_flight: positive("max_in_flight", l.max_in_flight.unwrap_or(10_000))?,
        client_body_timeout: body_timeout,
        client_idle_timeout: idle_timeout,
    })
}

fn parse_addr(path: &str, text: &str) -> Result<SocketAddr, CompileError> {
    text.parse().or_else(|_| {
        err(
            path,
            format!("{text:?} is not an address like 0.0.0.0:8080"),
        )
    })
}

fn non_empty(path: &str, v: &Option<String>) -> Result<Option<String>, CompileError> {
    match v {
        Some(s) if s.trim().is_empty() => err(path, "must not be empty"),
        other => Ok(other.clone()),
    }
}

fn compile_upstream(name: &str, u: &raw::RawUpstream) -> Result<Upstream, CompileError> {
    let at = format!("upstreams.{name}");
    let uri: http::Uri = u
        .url
        .parse()
        .or_else(|_| err(format!("{at}.url"), format!("{:?} is not a URL", u.url)))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return err(
                format!("{at}.url"),
                "https upstreams are not available in this version",
            )
        }
        _ => return err(format!("{at}.url"), "an upstream URL starts with http://"),
    }
    if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
        return err(format!("{at}.url"), "an upstream URL has no path or query");
    }
    if let Some(p) = &u.protocol {
        if p != "h1" {
            return err(
                format!("{at}.protocol"),
                "only h1 upstreams are available in this version",
            );
        }
    }
    if u.ca_file.is_some() || u.sni.is_some() || u.dangerous_skip_verify {
        return err(at, "ca_file, sni and dangerous_skip_verify apply to https upstreams, which are not available in this version");
    }
    let host = uri.host().unwrap_or_default();
    let port = uri.port_u16().unwrap_or(80);
    let address = resolve(host.trim_matches(['[', ']']), port).ok_or_else(|| CompileError {
        path: format!("{at}.url"),
        message: format!("cannot resolve {host:?}"),
    })?;
    if u.connect_timeout.0.is_zero() || u.read_timeout.0.is_zero() {
        return err(at, "timeouts must be above zero");
    }
    Ok(Upstream {
        name: name.to_string(),
        address,
        connect_timeout: u.connect_timeout.0,
        read_timeout: u.read_timeout.0,
    })
}

/// Resolve an upstream host once, at load.
#[cfg(not(fuzzing))]
fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    (host, port).to_socket_addrs().ok()?.next()
}

/// Under the fuzzer only IP literals resolve: fuzzed host names must not become DNS queries.
#[cfg(fuzzing)]
fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    host.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, port))
}

fn compile_issuer(
    name: &str,
    i: &raw::RawIssuer,
    base: &Path,
) -> Result<(IssuerRules, KeyPlan), CompileError> {
    let at = format!("issuers.{name}");
    if i.issuer.trim().is_empty() {
        return err(
            format!("{at}.issuer"),
            "the issuer (exact iss value) is required",
        );
    }
    if i.audiences.is_empty() || i.audiences.iter().any(|a| a.is_empty()) {
        return err(
            format!("{at}.audiences"),
            "audiences is required and must list at least one audience",
        );
    }
    let names = i.algorithms.clone().unwrap_or_else(|| vec!["RS256".into()]);
    if names.is_empty() {
        return err(format!("{at}.algorithms"), "list at least one algorithm");
    }
    let mut algorithms = Vec::new();
    for (n, a) in names.iter().enumerate() {
        if a.eq_ignore_ascii_case("none") {
            return err(
                format!("{at}.algorithms[{n}]"),
                "alg none is never accepted",
            );
        }
        let alg: Algorithm = a.parse().or_else(|_| {
            err(
                format!("{at}.algorithms[{n}]"),
                format!("unknown algorithm {a:?}"),
            )
        })?;
        algorithms.push(alg);
    }
    let wants_hmac = algorithms
        .iter()
        .any(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512));
    let wants_keys = algorithms
        .iter()
        .any(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512));
    let hmac = match &i.hmac_secret_env {
        Some(var) => {
            let secret = std::env::var(var).map_err(|_| CompileError {
                path: format!("{at}.hmac_secret_env"),
                message: format!("environment variable {var} is not set"),
            })?;
            if secret.len() < 32 {
                return err(
                    format!("{at}.hmac_secret_env"),
                    "the HMAC secret must be at least 32 bytes",
                );
            }
            Some(HmacSecret::new(secret.as_bytes()))
        }
        None => None,
    };
    if wants_hmac && hmac.is_none() {
        return err(
            format!("{at}.algorithms"),
            "HS256/384/512 need hmac_secret_env: HMAC never uses JWKS keys",
        );
    }

    let sources = [
        i.discovery,
        i.jwks_uri.is_some(),
        i.jwks_file.is_some(),
        i.jwks.is_some(),
    ];
    let count = sources.iter().filter(|s| **s).count();
    if count > 1 {
        return err(
            at,
            "choose one key source: discovery, jwks_uri, jwks_file or jwks",
        );
    }
    if count == 0 && wants_keys {
        return err(
            at,
            "a key source is needed: discovery: true, jwks_uri, jwks_file or jwks",
        );
    }
    let check_url = |field: &str, url: &str| -> Result<(), CompileError> {
        if url.starts_with("https://") || (i.allow_http && url.starts_with("http://")) {
            Ok(())
        } else if url.starts_with("http://") {
            err(
                format!("{at}.{field}"),
                "http:// key URLs need allow_http: true",
            )
        } else {
            err(format!("{at}.{field}"), "a key URL starts with https://")
        }
    };
    let limits = FetchLimits::default();
    let mut inline = None;
    let source = if i.discovery {
        check_url("issuer", &i.issuer)?;
        Some(KeySource::Discovery {
            issuer: i.issuer.clone(),
        })
    } else if let Some(uri) = &i.jwks_uri {
        check_url("jwks_uri", uri)?;
        Some(KeySource::JwksUri(uri.clone()))
    } else if let Some(file) = &i.jwks_file {
        let path = if Path::new(file).is_absolute() {
            PathBuf::from(file)
        } else {
            base.join(file)
        };
        let body = std::fs::read(&path).map_err(|e| CompileError {
            path: format!("{at}.jwks_file"),
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        KeySet::parse(&body, limits.max_keys).map_err(|e| CompileError {
            path: format!("{at}.jwks_file"),
            message: e.to_string(),
        })?;
        Some(KeySource::File(path))
    } else if let Some(jwks) = &i.jwks {
        let body = serde_json::to_vec(jwks).unwrap_or_default();
        KeySet::parse(&body, limits.max_keys).map_err(|e| CompileError {
            path: format!("{at}.jwks"),
            message: e.to_string(),
        })?;
        inline = Some(body);
        None
    } else {
        None
    };

    let scope_claims = i
        .scope_claims
        .clone()
        .unwrap_or_else(|| vec!["scope".into(), "scp".into(), "permissions".into()])
        .iter()
        .enumerate()
        .map(|(n, c)| {
            ClaimRef::parse(c).map_err(|m| CompileError {
                path: format!("{at}.scope_claims[{n}]"),
                message: m,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let refresh_interval = i.refresh_interval.map_or(Duration::from_secs(600), |d| d.0);
    let refetch_cooldown = i.refetch_cooldown.map_or(Duration::from_secs(30), |d| d.0);
    if refresh_interval.is_zero() {
        return err(format!("{at}.refresh_interval"), "must be above zero");
    }
    let rules = IssuerRules {
        name: name.to_string(),
        issuer: i.issuer.clone(),
        audiences: i.audiences.clone(),
        algorithms,
        scope_claims,
        leeway: i.leeway.map_or(Duration::from_secs(30), |d| d.0),
        max_token_lifetime: i.max_token_lifetime.map(|d| d.0),
        required_typ: i.required_typ.clone(),
        hmac,
    };
    let plan = KeyPlan {
        settings: KeySettings {
            source,
            allow_http: i.allow_http,
            refresh_interval,
            refetch_cooldown,
            max_stale: i.max_stale.map(|d| d.0),
            limits,
        },
        inline,
        hmac_only: !wants_keys,
    };
    Ok((rules, plan))
}

fn compile_route(
    at: &str,
    r: &raw::RawRoute,
    upstreams: &HashMap<String, usize>,
    default_upstream: Option<usize>,
    issuers: &HashMap<String, usize>,
) -> Result<Route, CompileError> {
    let path = PathPattern::parse(&r.matcher.path).map_err(|m| CompileError {
        path: format!("{at}.match.path"),
        message: m,
    })?;
    let host = HostMatch::parse(r.matcher.host.as_deref()).map_err(|m| CompileError {
        path: format!("{at}.match.host"),
        message: m,
    })?;
    let methods = match &r.matcher.methods {
        None => None,
        Some(list) if list.is_empty() => {
            return err(
                format!("{at}.match.methods"),
                "list at least one method, or leave methods out",
            )
        }
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(n, m)| {
                    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                        return err(
                            format!("{at}.match.methods[{n}]"),
                            format!("{m:?} is not an upper-case HTTP method"),
                        );
                    }
                    Method::from_bytes(m.as_bytes())
                        .or_else(|_| err(format!("{at}.match.methods[{n}]"), "not an HTTP method"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let auth = match r.auth.unwrap_or(RawAuth::Required) {
        RawAuth::Required => Auth::Required,
        RawAuth::Optional => Auth::Optional,
        RawAuth::None => Auth::None,
    };
    if auth == Auth::None && (r.scopes.is_some() || !r.claims.is_empty() || r.issuers.is_some()) {
        return err(at, "a route with auth: none cannot have scopes, claims or issuers: they would never be checked");
    }
    if auth != Auth::None && issuers.is_empty() {
        return err(
            format!("{at}.auth"),
            "this route needs a token but no issuer is configured",
        );
    }
    let route_issuers = match &r.issuers {
        None => None,
        Some(list) if list.is_empty() => {
            return err(
                format!("{at}.issuers"),
                "list at least one issuer, or leave issuers out",
            )
        }
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(n, name)| {
                    issuers.get(name).copied().ok_or_else(|| CompileError {
                        path: format!("{at}.issuers[{n}]"),
                        message: format!("unknown issuer {name:?}"),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let scopes = match &r.scopes {
        None => ScopeRule::Nothing,
        Some(RawScopes::AllOfList(list)) => {
            ScopeRule::AllOf(scope_list(&format!("{at}.scopes"), list)?)
        }
        Some(RawScopes::Rule(rule)) => match (&rule.any_of, &rule.all_of) {
            (Some(any), None) => ScopeRule::AnyOf(scope_list(&format!("{at}.scopes.any_of"), any)?),
            (None, Some(all)) => ScopeRule::AllOf(scope_list(&format!("{at}.scopes.all_of"), all)?),
            _ => {
                return err(
                    format!("{at}.scopes"),
                    "write exactly one of any_of or all_of",
                )
            }
        },
    };
    let claims = compile_claims(at, &r.claims)?;
    let upstream = match &r.upstream {
        Some(name) => *upstreams.get(name).ok_or_else(|| CompileError {
            path: format!("{at}.upstream"),
            message: format!("unknown upstream {name:?}"),
        })?,
        None => default_upstream.ok_or_else(|| CompileError {
            path: format!("{at}.upstream"),
            message: "no upstream: name one here or set the top-level upstream".into(),
        })?,
    };
    Ok(Route {
        name: r.name.clone(),
        host,
        methods,
        path,
        auth,
        issuers: route_issuers,
        scopes,
        claims,
        upstream,
    })
}

fn scope_list(path: &str, list: &[String]) -> Result<Vec<String>, CompileError> {
    if list.is_empty() {
        return err(path, "list at least one scope");
    }
    for (n, s) in list.iter().enumerate() {
        if s.is_empty() || s.contains(char::is_whitespace) || s.contains('"') || s.contains('\\') {
            return err(
                format!("{path}[{n}]"),
                "a scope is one word without spaces or quotes",
            );
        }
    }
    Ok(list.to_vec())
}

fn compile_claims(
    at: &str,
    claims: &BTreeMap<String, RawClaimRule>,
) -> Result<Vec<ClaimRule>, CompileError> {
    let mut out = Vec::new();
    for (name, rule) in claims {
        let path = format!("{at}.claims.{name}");
        let claim = ClaimRef::parse(name).map_err(|m| CompileError {
            path: path.clone(),
            message: m,
        })?;
        let expect = match rule {
            RawClaimRule::Bool(b) => Expect::Bool(*b),
            RawClaimRule::OneOf(values) if values.is_empty() => {
                return err(path, "list at least one allowed value")
            }
            RawClaimRule::OneOf(values) => {
                if values
                    .iter()
                    .any(|v| v.is_object() || v.is_array() || v.is_null())
                {
                    return err(path, "allowed values are strings, numbers or booleans");
                }
                Expect::OneOf(values.clone())
            }
        };
        out.push(ClaimRule { claim, expect });
    }
    Ok(out)
}

fn header_name(path: &str, name: &str) -> Result<HeaderName, CompileError> {
    let h = HeaderName::from_bytes(name.as_bytes())
        .or_else(|_| err(path, format!("{name:?} is not a header name")))?;
    if RESERVED_HEADERS.contains(&h.as_str()) {
        return err(path, format!("{name} is managed by the gateway itself"));
    }
    Ok(h)
}

fn compile_identity(i: &raw::RawIdentity) -> Result<IdentityPlan, CompileError> {
    let strip_prefix = i.strip_prefix.to_ascii_lowercase();
    if !strip_prefix.is_empty() && HeaderName::from_bytes(strip_prefix.as_bytes()).is_err() {
        return err("identity.strip_prefix", "not the start of a header name");
    }
    let mut headers = Vec::new();
    for (name, claim) in &i.headers {
        let path = format!("identity.headers.{name}");
        let h = header_name(&path, name)?;
        let source = if claim == "scope" {
            Source::Scopes
        } else {
            Source::Claim(ClaimRef::parse(claim).map_err(|m| CompileError {
                path: path.clone(),
                message: m,
            })?)
        };
        headers.push((h, source));
    }
    let claims_header = match &i.claims_header {
        Some(name) => Some(header_name("identity.claims_header", name)?),
        None => None,
    };
    Ok(IdentityPlan {
        strip_prefix,
        headers,
        claims_header,
        forward_token: i.forward_token,
    })
}
