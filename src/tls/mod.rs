//! TLS: the files (`pem`: certificate pairs and CA bundles, read and checked the same way by
//! `check`, at start and on reload), the listener's settings for pingora (certificate
//! resolver, client certificate verifier, ALPN h2 and http/1.1, the client subject kept with
//! the connection), certificate hot reload, and the trust roots of `https` upstreams.
//!
//! The backend is rustls through pingora's `rustls` feature (docs/operations.md "TLS backend").

pub mod pem;
mod subject;

use crate::metrics::Metrics;
use crate::watch::{self, Trigger};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::{SslDigest, TlsRef};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::any::Any;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use pem::Pair;

/// The listener's TLS, as compiled: the files, and what they held when the config loaded.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    /// The pair `cert_file` and `key_file` held at load, checked.
    pub pair: Arc<Pair>,
    /// The client CAs `client_ca_file` held at load.
    pub client_cas: Option<Arc<pem::Roots>>,
    /// `tls.client_auth: optional`: a client may connect without a certificate.
    pub client_auth_optional: bool,
    /// `tls.client_subject_header`.
    pub client_subject_header: Option<http::HeaderName>,
}

/// The serving certificate: new handshakes get whatever it holds now, open connections keep
/// the one they were made with.
#[derive(Debug)]
pub struct Resolver {
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The listener's certificate files, re-read when they change.
pub struct Certificates {
    cert_file: PathBuf,
    key_file: PathBuf,
    resolver: Arc<Resolver>,
    metrics: Arc<Metrics>,
    /// The serial of the certificate serving, for the log; also serialises reloads.
    serving: Mutex<String>,
}

impl Certificates {
    /// Serve `tls.pair` (checked at load) until the files change.
    pub fn new(tls: &ListenerTls, metrics: Arc<Metrics>) -> Self {
        metrics.tls_certificate_expiry.set(tls.pair.not_after);
        tracing::info!(event = "tls_certificate", cert_file = %tls.cert_file.display(),
            subject = %tls.pair.subject, serial = %tls.pair.serial, not_after = tls.pair.not_after,
            client_certificates = tls.client_cas.is_some(), "listener certificate");
        Certificates {
            cert_file: tls.cert_file.clone(),
            key_file: tls.key_file.clone(),
            resolver: Arc::new(Resolver {
                current: ArcSwap::new(Arc::clone(&tls.pair.key)),
            }),
            metrics,
            serving: Mutex::new(tls.pair.serial.clone()),
        }
    }

    /// Read the pair again and serve it if it is whole and its key matches; otherwise keep the
    /// serving one and say why (never the key's bytes).
    pub fn reload(&self, trigger: Trigger) {
        let mut serving = self.serving.lock().unwrap_or_else(|p| p.into_inner());
        let result = match pem::load_pair(&self.cert_file, &self.key_file) {
            Ok(pair) if pair.key.cert == self.resolver.current.load().cert => "unchanged",
            Ok(pair) => {
                self.resolver.current.store(Arc::clone(&pair.key));
                self.metrics.tls_certificate_expiry.set(pair.not_after);
                tracing::info!(event = "tls_certificate_reload", result = "ok",
                    trigger = trigger.label(), cert_file = %self.cert_file.display(),
                    subject = %pair.subject, serial = %pair.serial, previous_serial = %serving,
                    not_after = pair.not_after, "certificate reloaded; new connections use it");
                *serving = pair.serial.clone();
                "ok"
            }
            Err(error) => {
                tracing::error!(event = "tls_certificate_reload", result = "invalid",
                    trigger = trigger.label(), cert_file = %self.cert_file.display(),
                    key_file = %self.key_file.display(), error = %error, serial = %serving,
                    "certificate refused; the current one keeps serving");
                "invalid"
            }
        };
        self.metrics
            .tls_certificate_reloads
            .with_label_values(&[result])
            .inc();
    }

    /// Re-read the pair when either file changes on disk (`watch`) and on SIGHUP.
    pub fn spawn(self: Arc<Self>, runtime: &tokio::runtime::Handle) -> std::io::Result<()> {
        watch::spawn(
            "portcullis-tls",
            vec![self.cert_file.clone(), self.key_file.clone()],
            runtime,
            move |trigger| self.reload(trigger),
        )
    }
}

/// The verified client certificate, kept with the connection (the TLS digest's extension) for
/// every request on it: its subject, and the SHA-256 of its DER (RFC 8705's `x5t#S256`).
#[derive(Debug)]
pub struct ClientCertificate {
    pub subject: Option<String>,
    pub sha256: [u8; 32],
}

/// Reads the client certificate once per connection, after the handshake verified it.
struct KeepSubject;

#[async_trait]
impl TlsAccept for KeepSubject {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        // Only a listener with `client_ca_file` asks for a certificate, and its verifier
        // refuses the handshake unless one chains to those CAs.
        let der = tls.peer_certificate_der()?;
        let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der)
            .as_ref()
            .try_into()
            .ok()?;
        Some(Arc::new(ClientCertificate {
            subject: subject::of_certificate(der),
            sha256,
        }))
    }
}

/// The subject a connection's client certificate was verified with, if any.
pub fn client_subject(digest: &SslDigest) -> Option<&str> {
    digest
        .extension
        .get::<ClientCertificate>()
        .and_then(|c| c.subject.as_deref())
}

/// The SHA-256 of the DER of the client certificate a connection was verified with, if any.
pub fn client_certificate_sha256(digest: &SslDigest) -> Option<&[u8; 32]> {
    digest
        .extension
        .get::<ClientCertificate>()
        .map(|c| &c.sha256)
}

/// pingora's listener settings for `tls`: the reloadable certificate, client certificates when
/// `client_ca_file` is set, ALPN h2 and http/1.1.
pub fn listener_settings(
    tls: &ListenerTls,
    certificates: &Certificates,
) -> std::io::Result<TlsSettings> {
    let mut settings = TlsSettings::with_callbacks(Box::new(KeepSubject))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    settings.set_cert_resolver(Arc::clone(&certificates.resolver) as Arc<dyn ResolvesServerCert>);
    if let Some(roots) = &tls.client_cas {
        settings.set_client_cert_verifier(
            pem::client_verifier(roots, tls.client_auth_optional).map_err(std::io::Error::other)?,
        );
    }
    settings.enable_h2();
    Ok(settings)
}
