//! Validate the raw config and compile it into the runtime `Policy`. Everything a request needs
//! is decided here, once; a config that compiles is a config that works, and `portcullis check`
//! runs this. One file per part of the config: `upstreams`, `issuers` (rules and key plans),
//! `routes`, `identity`, `tls` (the listener's), `limits` (with `server:`), `dpop` and `telemetry` (`tracing:`); this file holds the `Policy`, the
//! listeners, token sources and trusted proxies, and the order the parts compile in.

mod dpop;
mod identity;
mod issuers;
mod limits;
mod routes;
mod telemetry;
mod tls;
mod upstreams;

pub use issuers::KeyPlan;
pub use limits::{Limits, ServerSettings};
pub use telemetry::TracingSettings;
pub use upstreams::{Protocol, Upstream, UpstreamTls};

use super::raw::RawConfig;
use crate::forwarding::{NameSieve, CLIENT_HEADERS, GATEWAY_HEADERS, OVERRIDE_HEADERS};
use crate::identity::IdentityPlan;
use crate::route::RouteTable;
use crate::token::dpop::{DpopRules, Guard};
use crate::token::extract::TokenSources;
use crate::token::verify::IssuerRules;
use http::HeaderName;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// Something an offline compile did not check, before it is given a line.
#[derive(Debug)]
pub struct Skip {
    pub path: String,
    pub message: String,
}

/// What the parts of the compile share: whether it runs offline (`super::Options`), and what
/// it skipped because of it.
#[derive(Debug, Default)]
pub(super) struct Compiling {
    pub offline: bool,
    pub skipped: Vec<Skip>,
}

impl Compiling {
    pub fn skip(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.skipped.push(Skip {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// A compile error before it is given a file position.
#[derive(Debug)]
pub struct CompileError {
    /// The key path, as `ConfigError::Invalid` shows it (`routes[2].scopes`).
    pub path: String,
    pub message: String,
}

/// `unknown issuer "crop": did you mean "corp"?`, or, with no name close enough, the names
/// there are: `unknown upstream "x" (upstreams: orders, billing)`.
fn unknown<'a>(kind: &str, name: &str, known: impl IntoIterator<Item = &'a String>) -> String {
    let mut known: Vec<&String> = known.into_iter().collect();
    known.sort();
    let close = known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, k)| *d <= (k.chars().count() / 3).max(1))
        .min();
    match close {
        Some((_, k)) => format!("unknown {kind} {name:?}: did you mean {k:?}?"),
        None if known.is_empty() => format!("unknown {kind} {name:?} (there are none)"),
        None => {
            let list: Vec<&str> = known.iter().map(|k| k.as_str()).collect();
            format!("unknown {kind} {name:?} ({kind}s: {})", list.join(", "))
        }
    }
}

/// Levenshtein distance, with a swap of two neighbours counted as one edit (`crop`/`corp`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

fn err<T>(path: impl Into<String>, message: impl Into<String>) -> Result<T, CompileError> {
    Err(CompileError {
        path: path.into(),
        message: message.into(),
    })
}

/// The compiled runtime policy. Nothing in it is a serde type.
#[derive(Debug)]
pub struct Policy {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    /// The forward-auth listener; `None`: off.
    pub decision_listen: Option<SocketAddr>,
    /// `cors_preflight: forward`: preflights are routed as the method they ask about and
    /// forwarded without a token.
    pub forward_preflights: bool,
    /// TLS on `listen`; `None`: plain HTTP.
    pub tls: Option<crate::tls::ListenerTls>,
    pub routes: RouteTable,
    pub upstreams: Vec<Upstream>,
    pub issuers: Vec<IssuerRules>,
    /// Exact `iss` → index into `issuers`.
    pub issuer_by_iss: HashMap<String, usize>,
    /// Indexed like `issuers`.
    pub keys: Vec<KeyPlan>,
    pub identity: IdentityPlan,
    pub token_sources: TokenSources,
    pub trusted_proxies: Vec<IpNet>,
    /// Override headers forwarded anyway, lower-case; every other one is removed.
    pub keep_override_headers: Vec<String>,
    pub limits: Limits,
    pub server: ServerSettings,
    pub log_subject: bool,
    /// Top-level claims that some route's `claims:` rule reads: the only claims a cached
    /// token keeps (identity headers are rendered at verification).
    pub authz_claims: Vec<String>,
    /// `dpop:`.
    pub dpop: DpopRules,
    /// The DPoP replay cache and nonce key: the one piece of request-path state in a policy,
    /// handed from generation to generation by a reload while `dpop` keeps its cache size and
    /// nonce secret (`reload`), so that a reload never forgets a `jti`.
    pub dpop_guard: Arc<Guard>,
    /// The client subject header a reloaded file asked for while the listener keeps the one it
    /// started with (`live`): never set until the restart, but stripped from every request
    /// meanwhile, so that an upstream already told to trust it never sees a client's. `None`
    /// from a compile.
    pub pending_subject_header: Option<HeaderName>,
    /// Which incoming header names need looking at for removal (`strip_sieve`): refreshed
    /// whenever a name it covers changes.
    pub strip_sieve: NameSieve,
    /// `tracing:`; the endpoint and service name are read at start only (`live::Pinned`).
    pub tracing: TracingSettings,
}

/// The sieve of every incoming header name `policy` may remove: identity headers (and the
/// strip prefix), the claims header, the override and client headers, the `_` spellings of the
/// gateway's own headers, the client subject header (pinned and pending).
pub fn strip_sieve(policy: &Policy) -> NameSieve {
    let identity = &policy.identity;
    let subject = policy
        .tls
        .as_ref()
        .and_then(|t| t.client_subject_header.as_ref());
    let names = identity
        .headers
        .iter()
        .map(|(n, _)| n)
        .chain(&identity.claims_header)
        .chain(subject)
        .chain(&policy.pending_subject_header)
        .map(HeaderName::as_str)
        .chain(OVERRIDE_HEADERS)
        .chain(CLIENT_HEADERS)
        .chain(GATEWAY_HEADERS);
    NameSieve::new(names, &identity.strip_prefix)
}

/// Compile a deserialised config; also returns what an offline compile skipped. Relative
/// `jwks_file` paths are taken from `base`.
pub fn compile_with(
    raw: RawConfig,
    base: &Path,
    options: super::Options,
) -> Result<(Policy, Vec<Skip>), CompileError> {
    let mut ctx = Compiling {
        offline: options.offline,
        skipped: Vec::new(),
    };
    let listen = parse_addr("listen", &raw.listen)?;
    let admin_listen = match &raw.admin_listen {
        Some(a) => Some(parse_addr("admin_listen", a)?),
        None => None,
    };
    let decision_listen = match &raw.decision_listen {
        Some(a) => Some(parse_addr("decision_listen", a)?),
        None => None,
    };
    if decision_listen.is_some() && raw.trusted_proxies.is_empty() {
        return err(
            "decision_listen",
            "needs trusted_proxies: the addresses of the ingresses whose descriptions of a \
             request are believed (every other caller is answered 400)",
        );
    }
    let tls = tls::compile(&raw.tls, base)?;
    let upstreams = upstreams::compile(&raw, base, &mut ctx)?;
    let issuers = issuers::compile(&raw.issuers, base, &mut ctx)?;
    let routes = routes::compile(&raw.routes, &upstreams, &issuers)?;
    let authz_claims = routes::authz_claims(&routes);
    let identity = identity::compile(&raw.identity)?;
    if let Some(h) = tls.as_ref().and_then(|t| t.client_subject_header.as_ref()) {
        let claims = identity.headers.iter().map(|(n, _)| n);
        if claims
            .chain(identity.claims_header.as_ref())
            .any(|n| n == h)
        {
            return err(
                "tls.client_subject_header",
                format!("{h} is also an identity header: one header, one source"),
            );
        }
    }
    let token_sources = TokenSources {
        cookie: non_empty("token_sources.cookie", &raw.token_sources.cookie)?,
        query: non_empty("token_sources.query", &raw.token_sources.query)?,
        cookie_origins: raw.token_sources.cookie_origins.clone(),
    };
    let trusted_proxies = trusted_proxies(&raw.trusted_proxies)?;
    let keep_override_headers = keep_override_headers(&raw.keep_override_headers)?;
    let limits = limits::limits(&raw.limits)?;
    let server = limits::server(&raw.server)?;
    let (dpop, secret) = dpop::compile(&raw.dpop, &mut ctx)?;
    let dpop_guard = Arc::new(Guard::new(dpop.replay_cache_entries, secret.as_deref()));
    let tracing = telemetry::compile(&raw.tracing)?;
    let mut policy = Policy {
        listen,
        admin_listen,
        decision_listen,
        forward_preflights: raw.cors_preflight == super::raw::RawCorsPreflight::Forward,
        tls,
        routes: RouteTable::new(routes),
        upstreams: upstreams.list,
        issuers: issuers.rules,
        issuer_by_iss: issuers.by_iss,
        keys: issuers.keys,
        identity,
        token_sources,
        trusted_proxies,
        keep_override_headers,
        limits,
        server,
        log_subject: raw.log_subject,
        authz_claims,
        dpop,
        dpop_guard,
        pending_subject_header: None,
        tracing,
        strip_sieve: NameSieve::default(),
    };
    policy.strip_sieve = strip_sieve(&policy);
    Ok((policy, ctx.skipped))
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

fn keep_override_headers(list: &[String]) -> Result<Vec<String>, CompileError> {
    list.iter()
        .enumerate()
        .map(|(i, name)| {
            let lower = name.to_ascii_lowercase();
            if crate::forwarding::OVERRIDE_HEADERS.contains(&lower.as_str()) {
                Ok(lower)
            } else {
                err(
                    format!("keep_override_headers[{i}]"),
                    format!(
                        "{name:?} is not a method or URL override header (one of {})",
                        crate::forwarding::OVERRIDE_HEADERS.join(", ")
                    ),
                )
            }
        })
        .collect()
}

fn trusted_proxies(list: &[String]) -> Result<Vec<IpNet>, CompileError> {
    list.iter()
        .enumerate()
        .map(|(i, cidr)| {
            cidr.parse::<IpNet>()
                .or_else(|_| cidr.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| CompileError {
                    path: format!("trusted_proxies[{i}]"),
                    message: format!("{cidr:?} is not an IP address or CIDR"),
                })
        })
        .collect()
}
