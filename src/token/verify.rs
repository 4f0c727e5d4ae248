//! JWT verification (docs/behaviour.md): parse the token, check the header against the
//! issuer's rules, check the signature with a given key, check the registered claims. Pure:
//! the key lookup (and any refetch) belongs to the caller.

use crate::claims::ClaimRef;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;
use std::time::Duration;

/// Why a token is refused: 401 `invalid_token`, with this fixed description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    TooLarge,
    Malformed,
    UnknownIssuer,
    IssuerNotAccepted,
    AlgorithmNotAllowed,
    CriticalHeader,
    WrongType,
    UnknownKey,
    /// No `kid`, and the issuer publishes too many keys of the token's algorithm to try each.
    KidRequired,
    KeyMismatch,
    BadSignature,
    MissingExpiry,
    Expired,
    NotYetValid,
    IssuedInFuture,
    LifetimeTooLong,
    WrongAudience,
    UnsafeClaim,
    /// `cnf` that is not an object, or a thumbprint in it that is not a base64url SHA-256.
    BadConfirmation,
    /// A DPoP-bound token (`cnf.jkt`) presented as `Bearer`.
    BoundTokenAsBearer,
    /// The `DPoP` scheme with a token that is not DPoP-bound.
    NotDpopBound,
    /// A certificate-bound token (`cnf."x5t#S256"`) on a connection without that client
    /// certificate.
    CertificateMismatch,
    /// A route with `sender_constraint: required` and a token bound to nothing.
    Unbound,
}

impl VerifyError {
    /// The precise reason label of metrics and logs. A closed set: one label per variant.
    pub fn label(self) -> &'static str {
        use VerifyError::*;
        match self {
            TooLarge => "token_too_large",
            Malformed => "malformed_token",
            UnknownIssuer => "wrong_issuer",
            IssuerNotAccepted => "issuer_not_accepted",
            AlgorithmNotAllowed => "algorithm_not_allowed",
            CriticalHeader => "critical_header",
            WrongType => "wrong_type",
            UnknownKey => "unknown_kid",
            KidRequired => "kid_required",
            KeyMismatch => "key_mismatch",
            BadSignature => "bad_signature",
            MissingExpiry => "missing_expiry",
            Expired => "expired",
            NotYetValid => "not_yet_valid",
            IssuedInFuture => "issued_in_future",
            LifetimeTooLong => "lifetime_too_long",
            WrongAudience => "wrong_audience",
            UnsafeClaim => "unsafe_claim",
            BadConfirmation => "bad_confirmation",
            BoundTokenAsBearer => "bound_token_as_bearer",
            NotDpopBound => "not_dpop_bound",
            CertificateMismatch => "certificate_mismatch",
            Unbound => "unbound_token",
        }
    }

    pub fn description(self) -> &'static str {
        use VerifyError::*;
        match self {
            TooLarge => "token too large",
            Malformed => "malformed token",
            UnknownIssuer => "unknown issuer",
            IssuerNotAccepted => "issuer not accepted on this route",
            AlgorithmNotAllowed => "algorithm not allowed",
            CriticalHeader => "unsupported critical header",
            WrongType => "unexpected token type",
            UnknownKey => "unknown signing key",
            KidRequired => "token must name its signing key",
            KeyMismatch => "signing key does not fit the algorithm",
            BadSignature => "invalid signature",
            MissingExpiry => "token has no valid expiry",
            Expired => "token expired",
            NotYetValid => "token not yet valid",
            IssuedInFuture => "token issued in the future",
            LifetimeTooLong => "token lifetime too long",
            WrongAudience => "audience not allowed",
            UnsafeClaim => "claim cannot be sent as a header",
            BadConfirmation => "unreadable token binding",
            BoundTokenAsBearer => "DPoP-bound token must use the DPoP scheme",
            NotDpopBound => "token is not DPoP-bound",
            CertificateMismatch => "token is bound to another client certificate",
            Unbound => "sender-constrained token required",
        }
    }
}

/// The verification rules of one issuer, compiled from its config block.
pub struct IssuerRules {
    pub name: String,
    /// Exact `iss`.
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub scope_claims: Vec<ClaimRef>,
    pub leeway: Duration,
    pub max_token_lifetime: Option<Duration>,
    pub required_typ: Option<String>,
    /// The HS256/384/512 secret; HMAC tokens verify only with it.
    pub hmac: Option<HmacSecret>,
}

impl fmt::Debug for IssuerRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerRules")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("algorithms", &self.algorithms)
            .field("hmac", &self.hmac.as_ref().map(|_| "<secret>"))
            .finish()
    }
}

/// The JOSE header fields the gateway acts on. `jku`, `x5u`, `jwk` and `x5c` are ignored on
/// purpose: keys come only from the configured source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoseHeader {
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
    pub crit: bool,
}

/// A token split and decoded, not yet trusted.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub header: JoseHeader,
    pub claims: Value,
    /// `header.payload`, the signed bytes.
    pub signing_input: &'a str,
    /// base64url signature.
    pub signature: &'a str,
}

/// Split a compact JWS and decode header and payload. Both must be JSON objects without
/// duplicate keys; the three segments unpadded base64url.
pub fn parse(token: &str) -> Result<Parsed<'_>, VerifyError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Malformed);
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(VerifyError::Malformed);
    }
    let header = decode_object(h)?;
    let claims = decode_object(p)?;
    let field = |name: &str| -> Result<Option<String>, VerifyError> {
        match header.get(name) {
            None => Ok(None),
            Some(Value::String(v)) => Ok(Some(v.clone())),
            Some(_) => Err(VerifyError::Malformed),
        }
    };
    let header = JoseHeader {
        alg: field("alg")?.ok_or(VerifyError::Malformed)?,
        kid: field("kid")?,
        typ: field("typ")?,
        crit: header.contains_key("crit"),
    };
    Ok(Parsed {
        header,
        claims: Value::Object(claims),
        signing_input: &token[..h.len() + 1 + p.len()],
        signature: s,
    })
}

pub(crate) fn decode_object(segment: &str) -> Result<Map<String, Value>, VerifyError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| VerifyError::Malformed)?;
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let value = <StrictValue as de::Deserialize>::deserialize(&mut de)
        .map_err(|_| VerifyError::Malformed)?;
    de.end().map_err(|_| VerifyError::Malformed)?;
    match value.0 {
        Value::Object(map) => Ok(map),
        _ => Err(VerifyError::Malformed),
    }
}

/// The unverified `iss`, used only to pick the issuer block.
pub fn unverified_issuer<'a>(parsed: &'a Parsed<'_>) -> Result<&'a str, VerifyError> {
    parsed
        .claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(VerifyError::UnknownIssuer)
}

/// Header rules: `alg` on the issuer's allow-list (never `none`), no `crit`, the required `typ`.
pub fn check_header(header: &JoseHeader, rules: &IssuerRules) -> Result<Algorithm, VerifyError> {
    let alg: Algorithm = header
        .alg
        .parse()
        .map_err(|_| VerifyError::AlgorithmNotAllowed)?;
    if !rules.algorithms.contains(&alg) {
        return Err(VerifyError::AlgorithmNotAllowed);
    }
    if header.crit {
        return Err(VerifyError::CriticalHeader);
    }
    if let Some(want) = &rules.required_typ {
        let typ = header.typ.as_deref().unwrap_or("");
        let typ = typ.strip_prefix("application/").unwrap_or(typ);
        if !typ.eq_ignore_ascii_case(want) {
            return Err(VerifyError::WrongType);
        }
    }
    Ok(alg)
}

/// Longest signature accepted, in bytes: an RSA-8192 signature. Longer input is refused before
/// it is decoded.
pub const MAX_SIGNATURE_BYTES: usize = 1024;
/// `MAX_SIGNATURE_BYTES` as unpadded base64url.
const MAX_SIGNATURE_B64: usize = (MAX_SIGNATURE_BYTES * 4).div_ceil(3);

/// Key material that can check a signature: a JWKS key parsed at load
/// (`keys::set::PublicKey`) or an issuer's HMAC secret (`HmacSecret`).
pub trait SignatureKey {
    /// Does `signature` (raw bytes) sign `message` under `alg`?
    fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool;
}

impl SignatureKey for crate::keys::set::PublicKey {
    fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        crate::keys::set::PublicKey::verify(self, alg, message, signature)
    }
}

/// An issuer's HMAC secret, its aws-lc keys built once at load. HMAC tokens verify only with
/// it, never with a JWKS key.
pub struct HmacSecret {
    hs256: aws_lc_rs::hmac::Key,
    hs384: aws_lc_rs::hmac::Key,
    hs512: aws_lc_rs::hmac::Key,
}

impl HmacSecret {
    pub fn new(secret: &[u8]) -> Self {
        use aws_lc_rs::hmac::{Key, HMAC_SHA256, HMAC_SHA384, HMAC_SHA512};
        HmacSecret {
            hs256: Key::new(HMAC_SHA256, secret),
            hs384: Key::new(HMAC_SHA384, secret),
            hs512: Key::new(HMAC_SHA512, secret),
        }
    }
}

impl SignatureKey for HmacSecret {
    fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        let key = match alg {
            Algorithm::HS256 => &self.hs256,
            Algorithm::HS384 => &self.hs384,
            Algorithm::HS512 => &self.hs512,
            _ => return false,
        };
        // Constant-time comparison.
        aws_lc_rs::hmac::verify(key, message, signature).is_ok()
    }
}

/// Check the signature of `parsed` with `key` under `alg`. The signature is decoded onto the
/// stack, and only up to `MAX_SIGNATURE_BYTES`.
pub fn check_signature<K: SignatureKey + ?Sized>(
    parsed: &Parsed<'_>,
    key: &K,
    alg: Algorithm,
) -> Result<(), VerifyError> {
    if parsed.signature.len() > MAX_SIGNATURE_B64 {
        return Err(VerifyError::BadSignature);
    }
    let mut buf = [0u8; MAX_SIGNATURE_B64.div_ceil(4) * 3];
    let len = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode_slice(parsed.signature, &mut buf)
        .map_err(|_| VerifyError::BadSignature)?;
    if key.verify(alg, parsed.signing_input.as_bytes(), &buf[..len]) {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

/// Registered-claim rules at time `now` (Unix seconds). Returns `exp`.
pub fn check_claims(claims: &Value, rules: &IssuerRules, now: f64) -> Result<f64, VerifyError> {
    let leeway = rules.leeway.as_secs_f64();
    let time = |name: &str| -> Result<Option<f64>, VerifyError> {
        match claims.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|v| v.is_finite())
                .map(Some)
                .ok_or(VerifyError::Malformed),
            Some(_) => Err(VerifyError::Malformed),
        }
    };
    let exp = match claims.get("exp") {
        Some(Value::Number(_)) => time("exp").map_err(|_| VerifyError::MissingExpiry)?,
        _ => None,
    }
    .ok_or(VerifyError::MissingExpiry)?;
    if exp + leeway <= now {
        return Err(VerifyError::Expired);
    }
    if let Some(nbf) = time("nbf")? {
        if nbf > now + leeway {
            return Err(VerifyError::NotYetValid);
        }
    }
    let iat = time("iat")?;
    if let Some(iat) = iat {
        if iat > now + leeway {
            return Err(VerifyError::IssuedInFuture);
        }
    }
    if let Some(max) = rules.max_token_lifetime {
        // Without `iat` the lifetime cannot be shown to be short enough.
        let iat = iat.ok_or(VerifyError::LifetimeTooLong)?;
        if exp - iat > max.as_secs_f64() {
            return Err(VerifyError::LifetimeTooLong);
        }
    }
    if claims.get("iss").and_then(Value::as_str) != Some(rules.issuer.as_str()) {
        return Err(VerifyError::UnknownIssuer);
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => rules.audiences.iter().any(|w| w == a),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .any(|a| rules.audiences.iter().any(|w| w == a)),
        _ => false,
    };
    if !aud_ok {
        return Err(VerifyError::WrongAudience);
    }
    Ok(exp)
}

/// A JSON value whose objects, at any depth, must not repeat a key: `{"sub":"a","sub":"b"}`
/// is refused rather than read one way here and another way upstream.
struct StrictValue(Value);

impl<'de> de::Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(v) = map.next_value()?;
            if out.insert(key, v).is_some() {
                return Err(de::Error::custom("duplicate key"));
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn segments_must_be_three_objects_without_duplicate_keys() {
        let h = b64(r#"{"alg":"RS256","kid":"k"}"#);
        let p = b64(r#"{"iss":"i"}"#);
        assert!(parse(&format!("{h}.{p}.c2ln")).is_ok());
        assert_eq!(
            parse(&format!("{h}.{p}")).unwrap_err(),
            VerifyError::Malformed
        );
        assert_eq!(
            parse(&format!("{h}.{p}.c2ln.x")).unwrap_err(),
            VerifyError::Malformed
        );
        assert_eq!(
            parse(&format!("{h}.{p}.")).unwrap_err(),
            VerifyError::Malformed
        );
        let dup = b64(r#"{"iss":"i","iss":"j"}"#);
        assert_eq!(
            parse(&format!("{h}.{dup}.c2ln")).unwrap_err(),
            VerifyError::Malformed
        );
        let arr = b64("[1]");
        assert_eq!(
            parse(&format!("{h}.{arr}.c2ln")).unwrap_err(),
            VerifyError::Malformed
        );
        assert_eq!(
            parse(&format!("{h}=.{p}.c2ln")).unwrap_err(),
            VerifyError::Malformed
        );
        let kid_num = b64(r#"{"alg":"RS256","kid":7}"#);
        assert_eq!(
            parse(&format!("{kid_num}.{p}.c2ln")).unwrap_err(),
            VerifyError::Malformed
        );
    }

    #[test]
    fn a_token_expires_at_exactly_exp_plus_the_leeway() {
        let rules = |leeway: u64| IssuerRules {
            name: "main".into(),
            issuer: "https://issuer.example/".into(),
            audiences: vec!["api".into()],
            algorithms: Vec::new(),
            scope_claims: Vec::new(),
            leeway: Duration::from_secs(leeway),
            max_token_lifetime: None,
            required_typ: None,
            hmac: None,
        };
        let claims = serde_json::json!({
            "iss": "https://issuer.example/", "aud": "api", "exp": 1_000_000,
        });
        for leeway in [0, 30] {
            let last = 1_000_000.0 + leeway as f64;
            assert_eq!(
                check_claims(&claims, &rules(leeway), last - 0.001),
                Ok(1_000_000.0),
                "leeway {leeway}: valid until the last instant"
            );
            assert_eq!(
                check_claims(&claims, &rules(leeway), last),
                Err(VerifyError::Expired),
                "leeway {leeway}: expired at exp + leeway exactly"
            );
            assert_eq!(
                check_claims(&claims, &rules(leeway), last + 1.0),
                Err(VerifyError::Expired)
            );
        }
    }
}
