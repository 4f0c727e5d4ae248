//! `dpop:`: the proof algorithms (asymmetric only), the `iat` window, nonces and their shared
//! secret, the replay cache size.

use super::{err, CompileError, Compiling};
use crate::config::defaults;
use crate::config::raw::RawDpop;
use crate::token::dpop::DpopRules;
use jsonwebtoken::Algorithm;

/// Shortest nonce secret accepted, in bytes.
const MIN_SECRET_BYTES: usize = 32;

/// The rules, and the nonce secret when one is configured (read from its environment variable
/// now: a config that loads is one whose secret is there).
pub(super) fn compile(
    raw: &RawDpop,
    ctx: &mut Compiling,
) -> Result<(DpopRules, Option<Vec<u8>>), CompileError> {
    let names: Vec<&str> = match &raw.algorithms {
        Some(list) => list.iter().map(String::as_str).collect(),
        None => defaults::DPOP_ALGORITHMS.to_vec(),
    };
    if names.is_empty() {
        return err("dpop.algorithms", "list at least one algorithm");
    }
    let mut algorithms = Vec::new();
    for (n, a) in names.iter().enumerate() {
        let at = format!("dpop.algorithms[{n}]");
        let alg: Algorithm = a
            .parse()
            .or_else(|_| err(&at, format!("unknown algorithm {a:?}")))?;
        if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return err(
                &at,
                "a DPoP proof is signed with the client's private key: HMAC is never accepted",
            );
        }
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    let max_age = raw.max_age.map_or(defaults::DPOP_MAX_AGE, |d| d.0);
    if max_age.is_zero() || max_age.as_secs() > 3600 {
        return err("dpop.max_age", "must be between 1s and 1h");
    }
    let replay_cache_entries = raw
        .replay_cache_entries
        .unwrap_or(defaults::DPOP_REPLAY_CACHE_ENTRIES);
    if replay_cache_entries == 0 {
        return err(
            "dpop.replay_cache_entries",
            "must be at least 1: without a replay cache a stolen proof could be replayed",
        );
    }
    let secret = match &raw.nonce_secret_env {
        Some(var) if ctx.offline && std::env::var_os(var).is_none() => {
            ctx.skip(
                "dpop.nonce_secret_env",
                format!("environment variable {var} is not set here (offline)"),
            );
            None
        }
        Some(var) => {
            let secret = std::env::var(var).map_err(|_| CompileError {
                path: "dpop.nonce_secret_env".into(),
                message: format!("environment variable {var} is not set"),
            })?;
            if secret.len() < MIN_SECRET_BYTES {
                return err(
                    "dpop.nonce_secret_env",
                    format!("the nonce secret must be at least {MIN_SECRET_BYTES} bytes"),
                );
            }
            Some(secret.into_bytes())
        }
        None => None,
    };
    let algs = algorithms
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(" ");
    Ok((
        DpopRules {
            algorithms,
            algs,
            max_age,
            nonce: raw.nonce,
            replay_cache_entries,
            nonce_secret_env: raw.nonce_secret_env.clone(),
        },
        secret,
    ))
}
