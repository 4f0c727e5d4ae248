//! `issuers:`: each block's verification rules (audiences, algorithms, HMAC secret, scope
//! claims, clock leeway) and its key plan (where keys come from, an inline set already parsed).

use super::{err, CompileError, Compiling};
use crate::claims::ClaimRef;
use crate::config::defaults;
use crate::config::raw::RawIssuer;
use crate::keys::fetch::FetchLimits;
use crate::keys::{KeySet, KeySettings, KeySource};
use crate::token::verify::{HmacSecret, IssuerRules};
use jsonwebtoken::Algorithm;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How an issuer's key store starts.
#[derive(Debug, Clone)]
pub struct KeyPlan {
    pub settings: KeySettings,
    /// The inline `jwks`, parsed at load (an unusable one is a config error).
    pub inline: Option<Arc<KeySet>>,
    /// One line per key of the inline set that was skipped (unsupported or too weak), to log
    /// when the key store is built.
    pub skipped: Vec<String>,
    /// Only HMAC algorithms, with a secret: no key set needed.
    pub hmac_only: bool,
}

/// The compiled issuers, indexed alike.
pub(super) struct Issuers {
    pub rules: Vec<IssuerRules>,
    pub keys: Vec<KeyPlan>,
    /// Exact `iss` → index.
    pub by_iss: HashMap<String, usize>,
    /// Block name → index, for routes' `issuers:`.
    pub by_name: HashMap<String, usize>,
}

pub(super) fn compile(
    raw: &BTreeMap<String, RawIssuer>,
    base: &Path,
    ctx: &mut Compiling,
) -> Result<Issuers, CompileError> {
    let mut out = Issuers {
        rules: Vec::new(),
        keys: Vec::new(),
        by_iss: HashMap::new(),
        by_name: HashMap::new(),
    };
    for (name, i) in raw {
        let (rules, plan) = issuer(name, i, base, ctx)?;
        if out
            .by_iss
            .insert(rules.issuer.clone(), out.rules.len())
            .is_some()
        {
            return err(
                format!("issuers.{name}.issuer"),
                "two issuers have the same issuer value",
            );
        }
        out.by_name.insert(name.clone(), out.rules.len());
        out.rules.push(rules);
        out.keys.push(plan);
    }
    Ok(out)
}

fn is_hmac(a: &Algorithm) -> bool {
    matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn issuer(
    name: &str,
    i: &RawIssuer,
    base: &Path,
    ctx: &mut Compiling,
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
    let algorithms = algorithms(&at, i.algorithms.as_deref())?;
    let wants_hmac = algorithms.iter().any(is_hmac);
    let wants_keys = algorithms.iter().any(|a| !is_hmac(a));
    let hmac = match &i.hmac_secret_env {
        Some(var) if ctx.offline && std::env::var_os(var).is_none() => {
            ctx.skip(
                format!("{at}.hmac_secret_env"),
                format!(
                    "environment variable {var} is not set here (offline): HMAC signatures of \
                     this issuer are not checked"
                ),
            );
            None
        }
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
    if wants_hmac && i.hmac_secret_env.is_none() {
        return err(
            format!("{at}.algorithms"),
            "HS256/384/512 need hmac_secret_env: HMAC never uses JWKS keys",
        );
    }
    let keys = key_plan(&at, i, base, wants_keys, ctx)?;

    let scope_claims = match &i.scope_claims {
        Some(list) => list.clone(),
        None => defaults::SCOPE_CLAIMS
            .iter()
            .map(|c| c.to_string())
            .collect(),
    }
    .iter()
    .enumerate()
    .map(|(n, c)| {
        ClaimRef::parse(c).map_err(|m| CompileError {
            path: format!("{at}.scope_claims[{n}]"),
            message: m,
        })
    })
    .collect::<Result<Vec<_>, _>>()?;
    let rules = IssuerRules {
        name: name.to_string(),
        issuer: i.issuer.clone(),
        audiences: i.audiences.clone(),
        algorithms,
        scope_claims,
        leeway: i.leeway.map_or(defaults::LEEWAY, |d| d.0),
        max_token_lifetime: i.max_token_lifetime.map(|d| d.0),
        required_typ: i.required_typ.clone(),
        hmac,
    };
    Ok((rules, keys))
}

fn algorithms(at: &str, names: Option<&[String]>) -> Result<Vec<Algorithm>, CompileError> {
    let names: Vec<&str> = match names {
        Some(list) => list.iter().map(String::as_str).collect(),
        None => defaults::ALGORITHMS.to_vec(),
    };
    if names.is_empty() {
        return err(format!("{at}.algorithms"), "list at least one algorithm");
    }
    let mut out = Vec::new();
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
        out.push(alg);
    }
    Ok(out)
}

/// Where the issuer's keys come from. A `jwks_file` is read and parsed now, so a broken one
/// stops the load, and again at every refresh; an inline `jwks` is parsed once, here.
fn key_plan(
    at: &str,
    i: &RawIssuer,
    base: &Path,
    wants_keys: bool,
    ctx: &mut Compiling,
) -> Result<KeyPlan, CompileError> {
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
    let parse = |field: &str, body: &[u8]| {
        KeySet::parse(body, limits.max_keys).map_err(|e| CompileError {
            path: format!("{at}.{field}"),
            message: e.to_string(),
        })
    };
    let mut inline = None;
    let mut skipped = Vec::new();
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
        if ctx.offline && !path.exists() {
            ctx.skip(
                format!("{at}.jwks_file"),
                format!(
                    "{} not read: it does not exist here (offline)",
                    path.display()
                ),
            );
        } else {
            let body = std::fs::read(&path).map_err(|e| CompileError {
                path: format!("{at}.jwks_file"),
                message: format!("cannot read {}: {e}", path.display()),
            })?;
            parse("jwks_file", &body)?;
        }
        Some(KeySource::File(path))
    } else if let Some(jwks) = &i.jwks {
        let body = serde_json::to_vec(jwks).map_err(|e| CompileError {
            path: format!("{at}.jwks"),
            message: e.to_string(),
        })?;
        let (set, warnings) = parse("jwks", &body)?;
        inline = Some(Arc::new(set));
        skipped = warnings;
        None
    } else {
        None
    };

    let refresh_interval = i
        .refresh_interval
        .map_or(defaults::REFRESH_INTERVAL, |d| d.0);
    if refresh_interval.is_zero() {
        return err(format!("{at}.refresh_interval"), "must be above zero");
    }
    Ok(KeyPlan {
        settings: KeySettings {
            source,
            allow_http: i.allow_http,
            refresh_interval,
            refetch_cooldown: i
                .refetch_cooldown
                .map_or(defaults::REFETCH_COOLDOWN, |d| d.0),
            max_stale: i.max_stale.map(|d| d.0),
            limits,
        },
        inline,
        skipped,
        hmac_only: !wants_keys,
    })
}
