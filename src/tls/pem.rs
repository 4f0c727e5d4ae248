//! PEM files: a certificate chain with its private key (the listener's pair), and CA bundles
//! (client CAs, an upstream's `ca_file`). Read and checked the same way by `check`, at start and
//! on every reload; errors name the file and what is wrong with it, never the key's bytes.

use pingora::protocols::tls::CaType;
use pingora::utils::tls::WrappedX509;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use std::path::Path;
use std::sync::Arc;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The crypto provider pingora's rustls backend installs (`ring`): keys are loaded and client
/// certificates verified with the same one the handshakes use.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and its private key, checked to belong together.
pub struct Pair {
    pub key: Arc<CertifiedKey>,
    /// The leaf's not-after, Unix seconds.
    pub not_after: i64,
    /// The leaf's serial number, hex.
    pub serial: String,
    /// The leaf's subject (RFC 4514).
    pub subject: String,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("subject", &self.subject)
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Every certificate of a PEM file, each checked to parse as X.509; at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    for (i, cert) in certs.iter().enumerate() {
        X509Certificate::from_der(cert).map_err(|e| {
            format!(
                "{}: certificate {} does not parse: {e}",
                path.display(),
                i + 1
            )
        })?;
    }
    Ok(certs)
}

/// Why a pair was refused, and which of its files is to blame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairError {
    /// The key file (unreadable, no key, or a key that is not the certificate's); otherwise
    /// the certificate file.
    pub in_key_file: bool,
    pub message: String,
}

impl std::fmt::Display for PairError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Read `cert_file` (chain, leaf first) and `key_file`, and check that the key is the leaf's.
pub fn load_pair(cert_file: &Path, key_file: &Path) -> Result<Pair, PairError> {
    let in_cert = |message| PairError {
        in_key_file: false,
        message,
    };
    let in_key = |message| PairError {
        in_key_file: true,
        message,
    };
    let chain = certificates(cert_file).map_err(in_cert)?;
    let key_text = read(key_file).map_err(in_key)?;
    // The parse error of a key file could quote it: say only what it is not.
    let key = PrivateKeyDer::from_pem_slice(&key_text).map_err(|_| {
        in_key(format!(
            "{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
            key_file.display()
        ))
    })?;
    let (_, leaf) = X509Certificate::from_der(&chain[0]).map_err(|e| {
        in_cert(format!(
            "{}: certificate does not parse: {e}",
            cert_file.display()
        ))
    })?;
    let not_after = leaf.validity().not_after.timestamp();
    let serial = leaf.raw_serial_as_string();
    let subject = super::subject::rfc4514(leaf.subject());
    let signing = provider().key_provider.load_private_key(key).map_err(|_| {
        in_key(format!(
            "{}: the private key cannot be used (unsupported type)",
            key_file.display()
        ))
    })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| {
        in_key(format!(
            "the private key in {} does not match the certificate in {}",
            key_file.display(),
            cert_file.display()
        ))
    })?;
    Ok(Pair {
        key: Arc::new(certified),
        not_after,
        serial,
        subject,
    })
}

/// A CA bundle: `client_ca_file`, an upstream's `ca_file`.
#[derive(Debug)]
pub struct Roots {
    pub certs: Vec<CertificateDer<'static>>,
    store: Arc<RootCertStore>,
}

/// Read a PEM CA bundle; every certificate in it must be usable as a trust anchor.
pub fn load_roots(path: &Path) -> Result<Roots, String> {
    let certs = certificates(path)?;
    let mut store = RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        store.add(cert.clone()).map_err(|e| {
            format!(
                "{}: certificate {} is not a usable CA: {e}",
                path.display(),
                i + 1
            )
        })?;
    }
    Ok(Roots {
        certs,
        store: Arc::new(store),
    })
}

/// A verifier of client certificates chaining to `roots`: one is required, or with `optional`
/// a client may present none (one it presents must still chain to `roots`).
pub fn client_verifier(
    roots: &Roots,
    optional: bool,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots.store), provider());
    let builder = if optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder
        .build()
        .map_err(|e| format!("client certificate verifier: {e}"))
}

/// `roots` as pingora's per-peer CA list (parsed once, at load).
pub fn upstream_roots(roots: &Roots) -> Arc<CaType> {
    roots
        .certs
        .iter()
        .map(|c| {
            WrappedX509::new(c.to_vec(), |der: &Vec<u8>| {
                // Parsed by `load_roots` already.
                X509Certificate::from_der(der)
                    .map(|(_, c)| c)
                    .unwrap_or_else(|_| unreachable!())
            })
        })
        .collect::<Vec<_>>()
        .into()
}
