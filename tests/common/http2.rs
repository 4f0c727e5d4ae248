//! HTTP/2 clients for the gateway: `h2_request`, the `h2` crate's client with prior knowledge
//! (what any h2c client sends), and `raw_h2_request`, which writes the frames by hand so that a
//! test can send what RFC 9113 forbids and no client library would (a `connection` header, an
//! upper-case name, no `:path`).
use super::Response;
use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What an HTTP/2 client received.
#[derive(Debug)]
pub struct H2Reply {
    /// Status, headers and body, as the HTTP/1.1 helpers give them.
    pub response: Response,
    /// The HEADERS frame ended the stream: no DATA frame, no trailers (gRPC's Trailers-Only).
    pub head_only: bool,
    /// The trailers, when the response had some.
    pub trailers: Vec<(String, String)>,
}

impl H2Reply {
    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// One request over a new HTTP/2 connection (prior knowledge, no TLS) to `addr`, with
/// `:authority` `authority`, these headers and `body`.
pub async fn h2_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    authority: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> H2Reply {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("h2 ready");
    let mut request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(format!("http://{authority}{path}"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request.body(()).expect("request");
    let description = format!("h2 {method} {path} :authority {authority} {headers:?}");
    let (response, mut send) = client
        .send_request(request, body.is_empty())
        .expect("send request");
    if !body.is_empty() {
        send.send_data(Bytes::copy_from_slice(body), true)
            .expect("send body");
    }
    let response = response.await.expect("response");
    let (parts, mut recv) = response.into_parts();
    let head_only = recv.is_end_stream();
    let mut data = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.expect("body");
        let _ = recv.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = recv
        .trailers()
        .await
        .expect("trailers")
        .map(|t| pairs(&t))
        .unwrap_or_default();
    H2Reply {
        response: Response {
            request: description,
            status: parts.status.as_u16(),
            headers: pairs(&parts.headers),
            body: data,
        },
        head_only,
        trailers,
    }
}

/// How the gateway answered a hand-written HTTP/2 request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawOutcome {
    /// RST_STREAM with this error code.
    Reset(u32),
    /// GOAWAY with this error code.
    GoAway(u32),
    /// A response HEADERS frame; the status when it is one HPACK's static table names
    /// (200, 204, 206, 304, 400, 404, 500), else `None`.
    Answered(Option<u16>),
    /// The connection closed without a word.
    Closed,
}

/// Send the connection preface, empty SETTINGS, and one HEADERS frame (stream 1, END_STREAM,
/// END_HEADERS) holding `fields` exactly as given (HPACK literals, never indexed, no Huffman),
/// then read frames until the stream is answered, reset or the connection ends.
pub async fn raw_h2_request(addr: SocketAddr, fields: &[(&str, &str)]) -> RawOutcome {
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0x00); // literal header field without indexing, new name
        hpack_string(&mut block, name.as_bytes());
        hpack_string(&mut block, value.as_bytes());
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut out, 0x4, 0, 0, &[]); // SETTINGS
    frame(&mut out, 0x1, 0x1 | 0x4, 1, &block); // HEADERS, END_STREAM | END_HEADERS
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(&out).await.expect("write frames");
    loop {
        let mut head = [0u8; 9];
        if tcp.read_exact(&mut head).await.is_err() {
            return RawOutcome::Closed;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        if tcp.read_exact(&mut payload).await.is_err() {
            return RawOutcome::Closed;
        }
        match kind {
            0x4 if flags & 0x1 == 0 => {
                // Acknowledge the server's SETTINGS, as a client must.
                let mut ack = Vec::new();
                frame(&mut ack, 0x4, 0x1, 0, &[]);
                let _ = tcp.write_all(&ack).await;
            }
            0x3 if stream == 1 => {
                return RawOutcome::Reset(u32::from_be_bytes(payload[..4].try_into().unwrap()))
            }
            0x7 => {
                return RawOutcome::GoAway(u32::from_be_bytes(payload[4..8].try_into().unwrap()))
            }
            0x1 if stream == 1 => {
                let status = match payload.first() {
                    Some(0x88) => Some(200),
                    Some(0x89) => Some(204),
                    Some(0x8a) => Some(206),
                    Some(0x8b) => Some(304),
                    Some(0x8c) => Some(400),
                    Some(0x8d) => Some(404),
                    Some(0x8e) => Some(500),
                    _ => None,
                };
                return RawOutcome::Answered(status);
            }
            _ => {}
        }
    }
}

/// An HPACK string literal, not Huffman-coded, its length a 7-bit prefixed integer.
fn hpack_string(out: &mut Vec<u8>, s: &[u8]) {
    let mut len = s.len();
    if len < 127 {
        out.push(len as u8);
    } else {
        out.push(127);
        len -= 127;
        while len >= 128 {
            out.push((len % 128) as u8 | 0x80);
            len /= 128;
        }
        out.push(len as u8);
    }
    out.extend_from_slice(s);
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}
