//! TLS on both sides of the gateway under test: a client that shows what was negotiated (ALPN,
//! the server's certificate) and speaks HTTP/1.1 or HTTP/2 over it, and an echo upstream behind
//! TLS that says which HTTP version reached it.
use super::pki::{Ca, Leaf};
use super::Response;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The response header the TLS echo upstream sets to the request's HTTP version.
pub const VERSION_HEADER: &str = "x-upstream-version";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS connection to `addr` as `name`, trusting `ca`, offering `alpn`, presenting `client`.
pub async fn connect(
    addr: SocketAddr,
    name: &str,
    ca: &Ca,
    client: Option<&Leaf>,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        Some(leaf) => builder
            .with_client_auth_cert(vec![leaf.der.clone()], leaf.key_der())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // TLS 1.3: a client certificate the server refuses shows on the first read, not here.
    connector
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
}

/// The negotiated ALPN protocol and the server's leaf certificate.
pub fn negotiated(
    tls: &TlsStream<TcpStream>,
) -> (Option<Vec<u8>>, Option<CertificateDer<'static>>) {
    let (_, conn) = tls.get_ref();
    (
        conn.alpn_protocol().map(<[u8]>::to_vec),
        conn.peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.clone().into_owned()),
    )
}

/// One HTTP connection over TLS, HTTP/1.1 or HTTP/2 as ALPN chose.
pub enum Client {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Client {
    pub async fn over(tls: TlsStream<TcpStream>) -> hyper::Result<Client> {
        let h2 = negotiated(&tls).0.as_deref() == Some(b"h2");
        let io = TokioIo::new(tls);
        if h2 {
            let (send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Ok(Client::H2(send))
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            Ok(Client::H1(send))
        }
    }

    /// `GET https://gateway.test<path>` with `headers`; the connection stays open.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> hyper::Result<Response> {
        let mut req = http::Request::get(format!("https://gateway.test{path}"));
        if let Client::H1(_) = self {
            req = req.header("host", "gateway.test");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::new())).unwrap();
        let resp = match self {
            Client::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Client::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        let body = resp.into_body().collect().await?.to_bytes().to_vec();
        Ok(Response {
            request: format!("GET {path}"),
            status,
            headers,
            body,
        })
    }
}

/// The echo upstream behind TLS with `leaf` (ALPN h2 and http/1.1); each response says the
/// HTTP version of the request in `x-upstream-version`.
pub async fn start_tls_echo(leaf: &Leaf) -> SocketAddr {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der.clone()], leaf.key_der())
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let service = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let version = format!("{:?}", req.version());
                        let mut resp = portcullis::demo::echo::echo(req).await;
                        resp.headers_mut()
                            .insert(VERSION_HEADER, version.parse().unwrap());
                        Ok::<_, std::convert::Infallible>(resp)
                    },
                );
                let io = TokioIo::new(tls);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    addr
}
