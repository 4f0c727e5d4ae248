//! Tokens: find the request's token (`extract`), verify it (`verify`), and read its claims
//! (`claims`). `Authenticator` ties them to the live key sets and the verified-token cache.

mod cache;
pub mod dpop;
pub mod extract;
pub mod verify;

use crate::claims::{ScopeInterner, ScopeSet};
use crate::identity::{IdentityHeaders, IdentityPlan, UnsafeClaim};
use crate::keys::{KeyFamily, KeySet, KeyStore, Refetch, VerifyKey};
use crate::metrics::Metrics;
use cache::TokenCache;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use verify::{IssuerRules, VerifyError};

/// What verification needs of the policy, and no more: the issuers, the token size limit, and
/// what a verified token keeps for later (the claims route rules read, the identity headers,
/// the subject when it is logged).
#[derive(Clone, Copy)]
pub struct TokenRules<'a> {
    pub issuers: &'a [IssuerRules],
    /// Exact `iss` → index into `issuers`.
    pub issuer_by_iss: &'a HashMap<String, usize>,
    pub max_token_bytes: usize,
    pub identity: &'a IdentityPlan,
    /// Top-level claims that some route's `claims:` rule reads.
    pub keep_claims: &'a [String],
    /// Keep `sub` for the access log.
    pub keep_subject: bool,
}

/// What verified a token's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// The issuer's HMAC secret: it never leaves the key set.
    Secret,
    /// A key of the issuer's set, by fingerprint (`KeySet::ids`).
    Key(u64),
    /// Nothing: the signature was not checked (`dangerous_unsigned_identity`, for the offline
    /// tools only). Never cached.
    Unchecked,
}

/// Longest `kid` that may trigger a refetch.
pub const MAX_KID_BYTES: usize = 256;
/// The most keys a token without `kid` is tried against; an issuer that publishes more keys
/// of the token's algorithm must name the key.
pub const MAX_KIDLESS_KEYS: usize = 3;
/// The longest a request waits for a kid-miss refetch.
pub const REFETCH_WAIT: Duration = Duration::from_secs(3);

/// A verified token, as cached and as the rest of the pipeline uses it. Kept small: 100,000
/// cached tokens are 100,000 of these (120 bytes, plus the rendered header values when there
/// are any; the scope set is shared with other tokens of the same scopes).
#[derive(Debug, Clone)]
pub struct Identity {
    /// Index into `Policy::issuers`.
    pub issuer: usize,
    /// `IssuerKeys::id` of that issuer when the token was verified. A cached token is used
    /// only while the same index still holds the same issuer: a reload that moves or changes
    /// issuers cannot make it pass for another one.
    pub issuer_id: u64,
    /// What verified the signature.
    pub signer: Signer,
    /// When the token expires, on the monotonic clock.
    pub expires_at: Instant,
    /// The verified claims that route `claims:` rules read (`Policy::authz_claims`), no more;
    /// `None` when no rule reads any (see `claims()`).
    pub claims: Option<Box<Value>>,
    pub scopes: ScopeSet,
    /// Identity headers, rendered once per token (`IdentityHeaders::iter` with the policy's
    /// `identity` plan).
    pub headers: Result<IdentityHeaders, UnsafeClaim>,
    pub subject: Option<Box<str>>,
    /// What the token is bound to (`cnf`), if anything.
    pub binding: Option<Box<Binding>>,
}

/// A sender-constrained token's confirmation (`cnf`): the SHA-256 thumbprints it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// `cnf.jkt`: the RFC 7638 thumbprint of the client's DPoP key (RFC 9449).
    pub jkt: Option<[u8; 32]>,
    /// `cnf."x5t#S256"`: the SHA-256 of the client certificate's DER (RFC 8705).
    pub x5t: Option<[u8; 32]>,
}

/// The binding of verified `claims`: `None` without `cnf` or with a `cnf` naming neither
/// `jkt` nor `x5t#S256`; a `cnf` that is not an object, or a thumbprint that is not a
/// base64url SHA-256, is refused (a binding the gateway cannot read is never ignored).
pub fn binding(claims: &Value) -> Result<Option<Box<Binding>>, VerifyError> {
    let Some(cnf) = claims.get("cnf") else {
        return Ok(None);
    };
    let cnf = cnf.as_object().ok_or(VerifyError::BadConfirmation)?;
    let thumb = |name: &str| -> Result<Option<[u8; 32]>, VerifyError> {
        match cnf.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .and_then(dpop::decode_sha256)
                .map(Some)
                .ok_or(VerifyError::BadConfirmation),
        }
    };
    let binding = Binding {
        jkt: thumb("jkt")?,
        x5t: thumb("x5t#S256")?,
    };
    Ok((binding.jkt.is_some() || binding.x5t.is_some()).then(|| Box::new(binding)))
}

impl Identity {
    /// What the entry holds besides its fixed size, as the cache counts it: the rendered
    /// identity headers, the kept claims (as JSON text) and the subject.
    pub fn held_bytes(&self) -> usize {
        let headers = self.headers.as_ref().map_or(0, IdentityHeaders::byte_len);
        let claims = self
            .claims
            .as_deref()
            .map_or(0, |c| serde_json::to_vec(c).map_or(usize::MAX, |v| v.len()));
        let subject = self.subject.as_deref().map_or(0, str::len);
        headers.saturating_add(claims).saturating_add(subject)
    }

    /// The verified claims that route `claims:` rules read, as an object.
    pub fn claims(&self) -> &Value {
        static NONE: LazyLock<Value> = LazyLock::new(|| Value::Object(Default::default()));
        self.claims.as_deref().unwrap_or(&NONE)
    }
}

/// Verification failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// 401 `invalid_token`.
    Invalid(VerifyError),
    /// 503 `keys_unavailable`: the issuer has never had usable keys.
    KeysUnavailable,
}

impl From<VerifyError> for AuthError {
    fn from(e: VerifyError) -> Self {
        AuthError::Invalid(e)
    }
}

/// Verifies tokens, with a bounded cache of verified ones keyed by a secret-keyed digest of the
/// whole token (`cache`: admitted on a token's second verification).
pub struct Authenticator {
    cache: Option<TokenCache>,
    scopes: ScopeInterner,
}

/// Now, in Unix seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

impl Authenticator {
    /// `cache_entries` 0 turns the cache off.
    pub fn new(cache_entries: u64) -> Self {
        let cache = (cache_entries > 0)
            .then(|| TokenCache::new(usize::try_from(cache_entries).unwrap_or(usize::MAX)));
        Authenticator {
            cache,
            scopes: ScopeInterner::default(),
        }
    }

    /// Drop cached tokens of the issuer with this `IssuerKeys::id` whose key is not in `set`
    /// (called when a set is replaced).
    pub fn forget_removed_keys(&self, issuer_id: u64, set: &KeySet) {
        let Some(cache) = &self.cache else {
            return;
        };
        let kept: Vec<u64> = set.ids().collect();
        cache.remove_if(|v| {
            v.issuer_id == issuer_id && matches!(v.signer, Signer::Key(id) if !kept.contains(&id))
        });
    }

    /// Tokens in the cache (expired ones until swept): an atomic read, no lock.
    pub fn cached_entries(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.len() as u64)
    }

    /// Bytes the cached tokens hold besides their fixed size (`Identity::held_bytes`).
    pub fn cached_bytes(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.bytes() as u64)
    }

    /// Verify `token` against the issuers and the live keys.
    pub async fn authenticate(
        &self,
        token: &str,
        policy: &TokenRules<'_>,
        keys: &KeyStore,
        metrics: &Metrics,
    ) -> Result<Arc<Identity>, AuthError> {
        if token.len() > policy.max_token_bytes {
            return Err(VerifyError::TooLarge.into());
        }
        let digest = self.cache.as_ref().map(|c| c.key(token));
        if let (Some(cache), Some(digest)) = (&self.cache, &digest) {
            if let Some(hit) = cache.get(digest) {
                if hit.expires_at > Instant::now()
                    && keys.is(hit.issuer, hit.issuer_id)
                    && key_still_present(&hit, keys)
                {
                    metrics.token_cache_hit.inc();
                    crate::telemetry::note_token_cache(true);
                    return Ok(hit);
                }
                cache.invalidate(digest);
            }
            metrics.token_cache_miss.inc();
            crate::telemetry::note_token_cache(false);
        }
        let started = Instant::now();
        let result = self.verify_uncached(token, policy, keys, metrics).await;
        metrics
            .verify_seconds
            .observe(started.elapsed().as_secs_f64());
        let identity = Arc::new(result?);
        if let (Some(cache), Some(digest)) = (&self.cache, digest) {
            if identity.expires_at > Instant::now() {
                cache.admit(digest, &identity);
            }
        }
        Ok(identity)
    }

    async fn verify_uncached(
        &self,
        token: &str,
        policy: &TokenRules<'_>,
        keys: &KeyStore,
        metrics: &Metrics,
    ) -> Result<Identity, AuthError> {
        let parsed = verify::parse(token)?;
        let iss = verify::unverified_issuer(&parsed)?;
        let index = *policy
            .issuer_by_iss
            .get(iss)
            .ok_or(VerifyError::UnknownIssuer)?;
        let rules = &policy.issuers[index];
        let alg = verify::check_header(&parsed.header, rules)?;

        let signer = if let Some(secret) = rules
            .hmac
            .as_ref()
            .filter(|_| KeyFamily::for_alg(alg).is_none())
        {
            verify::check_signature(&parsed, secret, alg)?;
            Signer::Secret
        } else {
            let key = find_key(&parsed, alg, index, keys, metrics).await?;
            verify::check_signature(&parsed, &key.key, alg)?;
            Signer::Key(key.id)
        };

        let now = unix_now();
        let exp = verify::check_claims(&parsed.claims, rules, now)?;
        let bound = binding(&parsed.claims)?;
        let scopes = self.scopes.from_claims(&parsed.claims, &rules.scope_claims);
        Ok(identity(
            parsed.claims,
            bound,
            scopes,
            index,
            keys.issuer(index).id(),
            signer,
            exp - now,
            policy,
        ))
    }
}

/// The identity of claims that passed `check_claims` (issuer `index`, expiring in `lifetime`
/// seconds):
/// the scope set, the identity headers, and the claims route rules read.
#[allow(clippy::too_many_arguments)]
fn identity(
    claims: Value,
    binding: Option<Box<Binding>>,
    scopes: ScopeSet,
    index: usize,
    issuer_id: u64,
    signer: Signer,
    lifetime: f64,
    policy: &TokenRules<'_>,
) -> Identity {
    let headers = policy.identity.render(&claims, &scopes);
    let subject = policy
        .keep_subject
        .then(|| claims.get("sub").and_then(Value::as_str).map(Box::from))
        .flatten();
    let ttl = Duration::try_from_secs_f64(lifetime.max(0.0)).unwrap_or(Duration::MAX);
    let expires_at = Instant::now()
        .checked_add(ttl)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86400 * 365));
    Identity {
        issuer: index,
        issuer_id,
        signer,
        expires_at,
        claims: keep_only(claims, policy.keep_claims),
        scopes,
        headers,
        subject,
        binding,
    }
}

/// DANGEROUS: the identity of `claims` whose signature was NOT checked. Every other rule of
/// verification holds (the issuer picked by `iss`, `exp`, `nbf`, `iat`, lifetime, audience),
/// and the identity is built exactly as for a verified token. For `portcullis explain` and
/// `portcullis test`, which run offline without the issuer's keys; the gateway never calls
/// it.
pub fn dangerous_unsigned_identity(
    claims: Value,
    policy: &TokenRules<'_>,
) -> Result<Identity, AuthError> {
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(VerifyError::UnknownIssuer)?;
    let index = *policy
        .issuer_by_iss
        .get(iss)
        .ok_or(VerifyError::UnknownIssuer)?;
    let now = unix_now();
    let exp = verify::check_claims(&claims, &policy.issuers[index], now)?;
    // Never cached, so no key state to tie it to: issuer id 0; no interning either.
    let bound = binding(&claims)?;
    let scopes = ScopeSet::from_claims(&claims, &policy.issuers[index].scope_claims);
    Ok(identity(
        claims,
        bound,
        scopes,
        index,
        0,
        Signer::Unchecked,
        exp - now,
        policy,
    ))
}

/// The claims a cached token needs later: those route `claims:` rules read. The rest (often
/// most of a token) is dropped, so a cache of 100,000 tokens stays small.
fn keep_only(claims: Value, names: &[String]) -> Option<Box<Value>> {
    if names.is_empty() {
        return None;
    }
    let Value::Object(mut all) = claims else {
        return None;
    };
    let kept = names
        .iter()
        .filter_map(|n| all.remove_entry(n))
        .collect::<serde_json::Map<_, _>>();
    (!kept.is_empty()).then(|| Box::new(Value::Object(kept)))
}

/// The key of a token without `kid`: tried against each key of its algorithm, but only when
/// the issuer publishes at most `MAX_KIDLESS_KEYS` of them, so that one request costs a few
/// signature checks at most, and the answer does not depend on the order of the keys.
fn kidless_key(
    parsed: &verify::Parsed<'_>,
    alg: jsonwebtoken::Algorithm,
    set: &KeySet,
    issuer: &str,
    metrics: &Metrics,
) -> Result<Arc<VerifyKey>, AuthError> {
    let count = |result: &str| metrics.kidless.with_label_values(&[issuer, result]).inc();
    let candidates: Vec<&Arc<VerifyKey>> = set.candidates(alg).collect();
    if candidates.is_empty() {
        count("no_key");
        return Err(VerifyError::UnknownKey.into());
    }
    if candidates.len() > MAX_KIDLESS_KEYS {
        count("kid_required");
        return Err(VerifyError::KidRequired.into());
    }
    match candidates
        .into_iter()
        .find(|k| verify::check_signature(parsed, &k.key, alg).is_ok())
    {
        Some(key) => {
            count("verified");
            Ok(Arc::clone(key))
        }
        None => {
            count("bad_signature");
            Err(VerifyError::BadSignature.into())
        }
    }
}

/// A cached token stays valid only while the key that verified it is still in its issuer's set.
fn key_still_present(identity: &Identity, keys: &KeyStore) -> bool {
    match identity.signer {
        Signer::Secret => true,
        Signer::Unchecked => false,
        Signer::Key(id) => keys
            .issuer(identity.issuer)
            .current()
            .is_some_and(|set| set.contains_id(id)),
    }
}

/// The key for this token: by `kid` (refetching once on a miss), or for a token without `kid`
/// the first key whose signature checks.
async fn find_key(
    parsed: &verify::Parsed<'_>,
    alg: jsonwebtoken::Algorithm,
    issuer: usize,
    keys: &KeyStore,
    metrics: &Metrics,
) -> Result<Arc<VerifyKey>, AuthError> {
    if KeyFamily::for_alg(alg).is_none() {
        // An HMAC alg on an issuer without a secret never reaches the key set.
        return Err(VerifyError::AlgorithmNotAllowed.into());
    }
    let live = keys.issuer(issuer);
    let set = match live.current() {
        Some(set) => set,
        None => {
            // Wait for the first fetch if one is running (or start one, cooldown allowing).
            live.refetch(REFETCH_WAIT, metrics).await;
            live.current().ok_or(AuthError::KeysUnavailable)?
        }
    };
    let Some(kid) = parsed.header.kid.as_deref() else {
        return kidless_key(parsed, alg, &set, &live.name, metrics);
    };
    let key = match set.by_kid(kid) {
        Some(key) => Arc::clone(key),
        None => {
            // A kid no IdP would issue, or one a fresh set just lacked: no fetch, no wait.
            if kid.len() > MAX_KID_BYTES || live.known_missing(kid) {
                return Err(VerifyError::UnknownKey.into());
            }
            let outcome = live.refetch(REFETCH_WAIT, metrics).await;
            // Whatever the outcome, another request's fetch may have landed meanwhile.
            let fresh = live.current().ok_or(AuthError::KeysUnavailable)?;
            let Some(key) = fresh.by_kid(kid).cloned() else {
                if outcome == Refetch::Done {
                    live.mark_missing(kid);
                }
                return Err(VerifyError::UnknownKey.into());
            };
            key
        }
    };
    if !key.accepts(alg) {
        return Err(VerifyError::KeyMismatch.into());
    }
    Ok(key)
}
