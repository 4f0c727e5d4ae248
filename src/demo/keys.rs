//! Signing keys for the demo issuer and the test suite: generated at start, published as a
//! JWKS, and used to mint compact JWTs (RS256/384/512, PS256/384/512, ES256, ES384, EdDSA,
//! HS256). The gateway itself never signs anything; `run` never uses this module.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents,
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
};
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

enum Material {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Hmac(Vec<u8>),
}

/// One signing key with its `kid` and `alg`.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    material: Material,
}

/// base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    /// Generate a fresh key for `alg` (RSA keys are 2048 bits).
    pub fn generate(kid: &str, alg: Algorithm) -> Self {
        use Algorithm::*;
        let material = match alg {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => {
                Material::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation"))
            }
            ES256 => Material::Ec(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key"),
            ),
            ES384 => Material::Ec(
                EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).expect("P-384 key"),
            ),
            EdDSA => Material::Ed(Ed25519KeyPair::generate().expect("Ed25519 key")),
            _ => Material::Hmac(rand::random::<[u8; 32]>().to_vec()),
        };
        SigningKey {
            kid: kid.to_string(),
            alg,
            material,
        }
    }

    /// A key from a PKCS#8 PEM private key (`openssl genpkey`): EC P-256 (ES256), P-384
    /// (ES384), Ed25519 (EdDSA) or RSA (RS256).
    pub fn from_pkcs8_pem(kid: &str, pem: &[u8]) -> Result<Self, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::PrivatePkcs8KeyDer;
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem)
            .map_err(|e| format!("not a PKCS#8 PEM private key: {e}"))?;
        let der = der.secret_pkcs8_der();
        let (alg, material) =
            if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
                (Algorithm::ES256, Material::Ec(k))
            } else if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, der) {
                (Algorithm::ES384, Material::Ec(k))
            } else if let Ok(k) = Ed25519KeyPair::from_pkcs8(der) {
                (Algorithm::EdDSA, Material::Ed(k))
            } else if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
                (Algorithm::RS256, Material::Rsa(k))
            } else {
                return Err("not an EC P-256, P-384, Ed25519 or RSA private key".into());
            };
        Ok(SigningKey {
            kid: kid.to_string(),
            alg,
            material,
        })
    }

    /// The private key as PKCS#8 PEM, for keys generated here (`None` for RSA and HMAC keys,
    /// which aws-lc does not export).
    pub fn pkcs8_pem(&self) -> Option<String> {
        let der = match &self.material {
            Material::Ec(k) => k.to_pkcs8v1().ok()?.as_ref().to_vec(),
            Material::Ed(k) => k.to_pkcs8().ok()?.as_ref().to_vec(),
            _ => return None,
        };
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect();
        Some(format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        ))
    }

    /// An HMAC key with a given secret.
    pub fn hmac(kid: &str, alg: Algorithm, secret: &[u8]) -> Self {
        SigningKey {
            kid: kid.to_string(),
            alg,
            material: Material::Hmac(secret.to_vec()),
        }
    }

    /// The public JWK (`kid`, `alg`, `use: sig`). HMAC keys have none.
    pub fn jwk(&self) -> Value {
        let alg = format!("{:?}", self.alg);
        match &self.material {
            Material::Rsa(k) => {
                let c = RsaPublicKeyComponents::<Vec<u8>>::from(k.public_key());
                json!({"kty": "RSA", "kid": self.kid, "alg": alg, "use": "sig", "n": b64(&c.n), "e": b64(&c.e)})
            }
            Material::Ec(k) => {
                let point = k.public_key().as_ref();
                let (x, y) = point[1..].split_at((point.len() - 1) / 2);
                let crv = if self.alg == Algorithm::ES256 {
                    "P-256"
                } else {
                    "P-384"
                };
                json!({"kty": "EC", "kid": self.kid, "alg": alg, "use": "sig", "crv": crv, "x": b64(x), "y": b64(y)})
            }
            Material::Ed(k) => {
                json!({"kty": "OKP", "kid": self.kid, "alg": alg, "use": "sig", "crv": "Ed25519", "x": b64(k.public_key().as_ref())})
            }
            Material::Hmac(_) => Value::Null,
        }
    }

    /// The RSA public key as raw `n`, `e` (for tests that re-use it as an HMAC secret, the
    /// classic key-confusion attack).
    pub fn public_key_bytes(&self) -> Vec<u8> {
        match &self.material {
            Material::Rsa(k) => k.public_key().as_ref().to_vec(),
            Material::Ec(k) => k.public_key().as_ref().to_vec(),
            Material::Ed(k) => k.public_key().as_ref().to_vec(),
            Material::Hmac(s) => s.clone(),
        }
    }

    /// Sign `input` with this key's algorithm.
    pub fn sign(&self, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.material {
            Material::Rsa(k) => {
                let padding: &dyn signature::RsaEncoding = match self.alg {
                    Algorithm::RS256 => &signature::RSA_PKCS1_SHA256,
                    Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
                    Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
                    Algorithm::PS256 => &signature::RSA_PSS_SHA256,
                    Algorithm::PS384 => &signature::RSA_PSS_SHA384,
                    _ => &signature::RSA_PSS_SHA512,
                };
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(padding, &rng, input, &mut sig).expect("RSA signing");
                sig
            }
            Material::Ec(k) => k
                .sign(&rng, input)
                .expect("ECDSA signing")
                .as_ref()
                .to_vec(),
            Material::Ed(k) => k.sign(input).as_ref().to_vec(),
            Material::Hmac(secret) => {
                let alg = match self.alg {
                    Algorithm::HS384 => aws_lc_rs::hmac::HMAC_SHA384,
                    Algorithm::HS512 => aws_lc_rs::hmac::HMAC_SHA512,
                    _ => aws_lc_rs::hmac::HMAC_SHA256,
                };
                aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(alg, secret), input)
                    .as_ref()
                    .to_vec()
            }
        }
    }

    /// A compact JWT with header `{"alg", "typ": "JWT", "kid"}` and these claims.
    pub fn mint(&self, claims: &Value) -> String {
        let header = json!({"alg": format!("{:?}", self.alg), "typ": "JWT", "kid": self.kid});
        self.mint_with_header(&header, claims)
    }

    /// A compact JWT with exactly this header and these claims, signed by this key.
    pub fn mint_with_header(&self, header: &Value, claims: &Value) -> String {
        self.mint_raw(header.to_string().as_bytes(), claims.to_string().as_bytes())
    }

    /// The public JWK as a DPoP proof carries it: the key's members only (no `kid`, `alg`,
    /// `use`).
    pub fn public_jwk(&self) -> Value {
        let mut jwk = self.jwk();
        if let Some(o) = jwk.as_object_mut() {
            for member in ["kid", "alg", "use"] {
                o.remove(member);
            }
        }
        jwk
    }

    /// The RFC 7638 thumbprint of the public key, base64url: a DPoP-bound token's `cnf.jkt`.
    pub fn jkt(&self) -> String {
        let jwk = self.public_jwk();
        let members: &[&str] = match jwk["kty"].as_str() {
            Some("RSA") => &["e", "kty", "n"],
            Some("EC") => &["crv", "kty", "x", "y"],
            _ => &["crv", "kty", "x"],
        };
        let canonical = members
            .iter()
            .map(|m| format!("{:?}:{}", m, jwk[*m]))
            .collect::<Vec<_>>()
            .join(",");
        b64(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            format!("{{{canonical}}}").as_bytes(),
        )
        .as_ref())
    }

    /// A DPoP proof (RFC 9449) signed by this key: header `typ: dpop+jwt`, this key's `alg`
    /// and public `jwk`; claims `jti` (random), `htm`, `htu`, `iat` now and, with an access
    /// token, its `ath`; then `extra` merged in (`null` removes a claim).
    pub fn dpop_proof(&self, htm: &str, htu: &str, token: Option<&str>, extra: &Value) -> String {
        let mut claims = json!({
            "jti": b64(&rand::random::<[u8; 16]>()),
            "htm": htm,
            "htu": htu,
            "iat": now(),
        });
        if let Some(token) = token {
            claims["ath"] = b64(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                token.as_bytes(),
            )
            .as_ref())
            .into();
        }
        if let (Some(c), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                if v.is_null() {
                    c.remove(k);
                } else {
                    c.insert(k.clone(), v.clone());
                }
            }
        }
        let header = json!({
            "typ": "dpop+jwt",
            "alg": format!("{:?}", self.alg),
            "jwk": self.public_jwk(),
        });
        self.mint_with_header(&header, &claims)
    }

    /// A compact JWT from raw header and payload bytes (for malformed-JSON cases).
    pub fn mint_raw(&self, header: &[u8], payload: &[u8]) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let sig = self.sign(input.as_bytes());
        format!("{input}.{}", b64(&sig))
    }
}

/// A JWKS document of these keys' public halves.
pub fn jwks(keys: &[&SigningKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk()).filter(|j| !j.is_null()).collect::<Vec<_>>()})
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
