//! The demo issuer: OIDC discovery and a JWKS served over plain HTTP on loopback. Its key set
//! can be replaced while it runs, and it counts the fetches it answers.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// A running issuer.
pub struct Issuer {
    pub addr: SocketAddr,
    jwks: Arc<RwLock<Value>>,
    fetches: Arc<AtomicUsize>,
}

impl Issuer {
    /// Start serving `jwks` on `127.0.0.1:0` on the current tokio runtime.
    pub async fn start(jwks: Value) -> std::io::Result<Issuer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(RwLock::new(jwks));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (jwks, count) = (Arc::clone(&state), Arc::clone(&fetches));
        let issuer = format!("http://{addr}");
        tokio::spawn(crate::http1::serve(listener, move |req| {
            let (jwks, count, issuer) = (Arc::clone(&jwks), Arc::clone(&count), issuer.clone());
            async move {
                let body = match req.uri().path() {
                    "/.well-known/openid-configuration" => {
                        json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks.json")})
                    }
                    "/jwks.json" => {
                        count.fetch_add(1, Ordering::SeqCst);
                        jwks.read().unwrap_or_else(|p| p.into_inner()).clone()
                    }
                    _ => {
                        return Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::new()))
                            .expect("static response");
                    }
                };
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body.to_string())))
                    .expect("static response")
            }
        }));
        Ok(Issuer {
            addr,
            jwks: state,
            fetches,
        })
    }

    /// The issuer URL, which is also the `iss` of its tokens.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serve another key set from now on.
    pub fn set_jwks(&self, jwks: Value) {
        *self.jwks.write().unwrap_or_else(|p| p.into_inner()) = jwks;
    }

    /// JWKS fetches answered so far.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}
