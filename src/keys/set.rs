//! One issuer's parsed key set. Keys are parsed once, when the set is loaded; a JWK that cannot
//! safely verify anything (`use: enc`, unsupported `kty` or curve, RSA under 2048 bits, an `alg`
//! that contradicts its `kty`) is skipped with a warning instead of failing the whole set.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use std::collections::HashMap;
use std::sync::Arc;

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// The kind of public key, which fixes the algorithms it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyFamily {
    /// The family a token `alg` needs; `None` for HMAC (never a JWKS key).
    pub fn for_alg(alg: Algorithm) -> Option<KeyFamily> {
        use Algorithm::*;
        match alg {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Some(KeyFamily::Rsa),
            ES256 => Some(KeyFamily::EcP256),
            ES384 => Some(KeyFamily::EcP384),
            EdDSA => Some(KeyFamily::Ed25519),
            _ => None,
        }
    }
}

/// A verification key, parsed and checked.
pub struct VerifyKey {
    /// Fingerprint of the key material: the same key keeps its id across refreshes, so cached
    /// tokens survive a refresh that keeps their key and die with one that drops it.
    pub id: u64,
    pub kid: Option<String>,
    pub family: KeyFamily,
    /// The JWK's own `alg`, when it names one.
    pub alg: Option<Algorithm>,
    pub key: PublicKey,
}

/// Public key material parsed once, when the set is loaded: an aws-lc key for each algorithm
/// the key may verify (an RSA JWK without `alg` serves RS256/384/512 and PS256/384/512), so a
/// verification neither parses key material nor allocates.
pub struct PublicKey {
    parsed: Vec<(Algorithm, ParsedPublicKey)>,
}

impl PublicKey {
    /// Parse `key` (from `DecodingKey::from_jwk`) for every algorithm of `family` that the
    /// JWK's `alg` allows. RSA keys take aws-lc's 2048-8192-bit parameters, as jsonwebtoken's.
    fn parse(key: &DecodingKey, family: KeyFamily, alg: Option<Algorithm>) -> Result<Self, String> {
        use Algorithm::*;
        let algs: &[Algorithm] = match family {
            KeyFamily::Rsa => &[RS256, RS384, RS512, PS256, PS384, PS512],
            KeyFamily::EcP256 => &[ES256],
            KeyFamily::EcP384 => &[ES384],
            KeyFamily::Ed25519 => &[EdDSA],
        };
        let mut parsed = Vec::new();
        for &a in algs.iter().filter(|&&a| alg.is_none_or(|want| want == a)) {
            let key = match (key.kind(), a) {
                (DecodingKeyKind::RsaModulusExponent { n, e }, _) => {
                    RsaPublicKeyComponents { n, e }.to_parsed_public_key(rsa_params(a))
                }
                (DecodingKeyKind::SecretOrDer(bytes), ES256) => {
                    ParsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, bytes)
                }
                (DecodingKeyKind::SecretOrDer(bytes), ES384) => {
                    ParsedPublicKey::new(&sig::ECDSA_P384_SHA384_FIXED, bytes)
                }
                (DecodingKeyKind::SecretOrDer(bytes), EdDSA) => {
                    ParsedPublicKey::new(&sig::ED25519, bytes)
                }
                _ => return Err("unusable key material".into()),
            }
            .map_err(|e| format!("unusable key material ({e})"))?;
            parsed.push((a, key));
        }
        if parsed.is_empty() {
            return Err("unusable key material".into());
        }
        Ok(PublicKey { parsed })
    }

    /// Does `signature` sign `message` under `alg` with this key? False for an algorithm the
    /// key was not parsed for.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        self.parsed
            .iter()
            .find(|(a, _)| *a == alg)
            .is_some_and(|(_, key)| key.verify_sig(message, signature).is_ok())
    }
}

fn rsa_params(alg: Algorithm) -> &'static sig::RsaParameters {
    match alg {
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => &sig::RSA_PKCS1_2048_8192_SHA256,
    }
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("alg", &self.alg)
            .finish()
    }
}

impl VerifyKey {
    /// May this key verify a token signed with `alg`? `kty` (and curve) and the JWK's `alg`
    /// must both agree with it.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        KeyFamily::for_alg(alg) == Some(self.family) && self.alg.is_none_or(|a| a == alg)
    }
}

/// Why a fetched document is not a usable key set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    #[error("not a JWKS document (a JSON object with a \"keys\" array)")]
    NotJwks,
    #[error("more than {0} keys")]
    TooManyKeys(usize),
    #[error("no usable signing key in the set")]
    NoUsableKey,
}

/// An issuer's keys, by `kid`.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Arc<VerifyKey>>,
    by_kid: HashMap<String, usize>,
}

impl KeySet {
    /// Parse a JWKS document. Returns the set and a warning per skipped key.
    pub fn parse(body: &[u8], max_keys: usize) -> Result<(KeySet, Vec<String>), KeySetError> {
        let doc: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| KeySetError::NotJwks)?;
        let Some(items) = doc.get("keys").and_then(|k| k.as_array()) else {
            return Err(KeySetError::NotJwks);
        };
        if items.len() > max_keys {
            return Err(KeySetError::TooManyKeys(max_keys));
        }
        let mut set = KeySet::default();
        let mut warnings = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match parse_key(item) {
                Ok(key) => set.insert(key),
                Err(why) => {
                    let kid = item.get("kid").and_then(|k| k.as_str()).unwrap_or("-");
                    warnings.push(format!("key {i} (kid {kid:.64}) skipped: {why}"));
                }
            }
        }
        if set.keys.is_empty() {
            return Err(KeySetError::NoUsableKey);
        }
        Ok((set, warnings))
    }

    fn insert(&mut self, key: VerifyKey) {
        if let Some(kid) = &key.kid {
            // The first key with a given kid wins; a duplicate kid cannot be told apart.
            if self.by_kid.contains_key(kid) {
                return;
            }
            self.by_kid.insert(kid.clone(), self.keys.len());
        }
        self.keys.push(Arc::new(key));
    }

    pub fn by_kid(&self, kid: &str) -> Option<&Arc<VerifyKey>> {
        self.by_kid.get(kid).map(|&i| &self.keys[i])
    }

    /// Keys that may verify `alg`, for tokens without a `kid`.
    pub fn candidates(&self, alg: Algorithm) -> impl Iterator<Item = &Arc<VerifyKey>> {
        self.keys.iter().filter(move |k| k.accepts(alg))
    }

    /// Fingerprints of the keys in the set.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.keys.iter().map(|k| k.id)
    }

    pub fn contains_id(&self, id: u64) -> bool {
        self.keys.iter().any(|k| k.id == id)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Parse one public JWK as a verification key, with the same rules as a key set's (for a DPoP
/// proof's `jwk` header, too).
pub fn parse_public_key(item: &serde_json::Value) -> Result<VerifyKey, String> {
    parse_key(item)
}

fn parse_key(item: &serde_json::Value) -> Result<VerifyKey, String> {
    let jwk: Jwk =
        serde_json::from_value(item.clone()).map_err(|_| "not a supported JWK".to_string())?;
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return Err("not a signing key (use is not sig)".into()),
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(
            a.to_string()
                .parse::<Algorithm>()
                .map_err(|_| format!("alg {a} is not a signature algorithm"))?,
        ),
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (family, material) = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = b64
                .decode(p.n.trim_end_matches('='))
                .map_err(|_| "bad RSA modulus")?;
            let bits = rsa_bits(&n);
            if bits < MIN_RSA_BITS {
                return Err(format!("RSA key of {bits} bits (at least {MIN_RSA_BITS})"));
            }
            (KeyFamily::Rsa, format!("RSA|{}|{}", p.n, p.e))
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let family = match p.curve {
                EllipticCurve::P256 => KeyFamily::EcP256,
                EllipticCurve::P384 => KeyFamily::EcP384,
                _ => return Err("unsupported EC curve".into()),
            };
            (family, format!("EC|{:?}|{}|{}", p.curve, p.x, p.y))
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            (KeyFamily::Ed25519, format!("OKP|{}", p.x))
        }
        AlgorithmParameters::OctetKeyPair(_) => return Err("unsupported OKP curve".into()),
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric keys are never taken from a JWKS".into())
        }
        _ => return Err("unsupported kty".into()),
    };
    if let Some(a) = alg {
        if KeyFamily::for_alg(a) != Some(family) {
            return Err(format!("alg {a:?} contradicts the key type"));
        }
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| "unusable key material".to_string())?;
    let key = PublicKey::parse(&key, family, alg)?;
    let kid = jwk.common.key_id.clone();
    let digest = digest::digest(
        &digest::SHA256,
        format!("{kid:?}|{alg:?}|{material}").as_bytes(),
    );
    let id = u64::from_be_bytes(digest.as_ref()[..8].try_into().expect("8 bytes"));
    Ok(VerifyKey {
        id,
        kid,
        family,
        alg,
        key,
    })
}

fn rsa_bits(modulus: &[u8]) -> usize {
    let m = match modulus.iter().position(|&b| b != 0) {
        Some(i) => &modulus[i..],
        None => return 0,
    };
    m.len() * 8 - m[0].leading_zeros() as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::keys::{jwks, SigningKey};
    use crate::token::verify::{check_signature, parse, VerifyError};
    use serde_json::json;

    fn set_of(keys: &[&SigningKey]) -> KeySet {
        KeySet::parse(jwks(keys).to_string().as_bytes(), 10)
            .unwrap()
            .0
    }

    #[test]
    fn parsed_keys_verify_their_own_algorithm_only() {
        for alg in [
            Algorithm::RS256,
            Algorithm::PS384,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ] {
            let signer = SigningKey::generate("k", alg);
            let set = set_of(&[&signer]);
            let key = set.by_kid("k").unwrap();
            let token = signer.mint(&json!({"sub": "a"}));
            let parsed = parse(&token).unwrap();
            assert_eq!(check_signature(&parsed, &key.key, alg), Ok(()), "{alg:?}");
            // The JWK names its alg: the key was parsed for that one alone.
            let other = if alg == Algorithm::RS256 {
                Algorithm::PS256
            } else {
                Algorithm::RS256
            };
            assert_eq!(
                check_signature(&parsed, &key.key, other),
                Err(VerifyError::BadSignature)
            );
            let tampered = token.replacen(".ey", ".eyA", 1);
            if let Ok(p) = parse(&tampered) {
                assert!(check_signature(&p, &key.key, alg).is_err());
            }
        }
    }

    #[test]
    fn an_rsa_key_without_alg_serves_every_rsa_algorithm() {
        let rs = SigningKey::generate("k", Algorithm::RS256);
        let mut jwk = rs.jwk();
        jwk.as_object_mut().unwrap().remove("alg");
        let body = json!({"keys": [jwk]}).to_string();
        let (set, _) = KeySet::parse(body.as_bytes(), 10).unwrap();
        let key = set.by_kid("k").unwrap();
        let token = rs.mint(&json!({"sub": "a"}));
        let parsed = parse(&token).unwrap();
        assert_eq!(check_signature(&parsed, &key.key, Algorithm::RS256), Ok(()));
        assert!(key.accepts(Algorithm::PS512));
        assert_eq!(
            check_signature(&parsed, &key.key, Algorithm::PS256),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn oversized_or_malformed_signatures_are_refused_before_verifying() {
        let signer = SigningKey::generate("k", Algorithm::ES256);
        let set = set_of(&[&signer]);
        let key = &set.by_kid("k").unwrap().key;
        let token = signer.mint(&json!({"sub": "a"}));
        let input = token.rsplit_once('.').unwrap().0;
        for sig in [
            "A".repeat(1367),
            "A".repeat(5),
            "AA=A".into(),
            "AA+A".into(),
        ] {
            let forged = format!("{input}.{sig}");
            let parsed = parse(&forged).unwrap();
            assert_eq!(
                check_signature(&parsed, key, Algorithm::ES256),
                Err(VerifyError::BadSignature),
                "{sig:.8}"
            );
        }
    }
}
