//! The one error table: every denial the gateway can make (`Deny`), the conversions from each
//! pipeline stage's error into it, its status, `error` code and precise reason label, and what
//! the client sees (`reply`): JSON body `{"error", "error_description"}`, `Cache-Control:
//! no-store`, RFC 6750 `WWW-Authenticate`, and gRPC's own status for gRPC requests. Descriptions
//! are fixed strings, never input.

use crate::authz::Unmet;
use crate::identity::UnsafeClaim;
use crate::path::PathError;
use crate::token::dpop::ProofError;
use crate::token::extract::ExtractError;
use crate::token::verify::VerifyError;
use crate::token::AuthError;
use bytes::Bytes;
use http::HeaderValue;
use pingora::{ErrorSource, ErrorType};

/// The `realm` of every `WWW-Authenticate` challenge.
pub const REALM: &str = "portcullis";
/// The challenge of a request without a token on a route that needs one.
const MISSING_TOKEN_CHALLENGE: &str = "Bearer realm=\"portcullis\"";
/// `Retry-After` seconds on 503 `keys_unavailable` and `overloaded`.
pub const RETRY_AFTER_SECS: u32 = 5;

/// Why the gateway answers a request itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deny {
    /// 400: ambiguous target, bad host, several tokens, malformed Authorization.
    BadRequest(BadRequest),
    /// 401 without an error code: no token on a required route.
    MissingToken,
    /// 401 `invalid_token`, with the precise verification failure.
    InvalidToken(VerifyError),
    /// 403 `insufficient_scope`: the route's `scopes` rule is not met. Carries the route's
    /// scopes for the challenge.
    InsufficientScope(Option<String>),
    /// 403 `insufficient_scope`: one of the route's `claims` rules is not met. Answered exactly
    /// like a missing scope (same challenge); only the reason label differs.
    ClaimMismatch(Option<String>),
    /// 404 `no_route`.
    NoRoute,
    /// 502 `upstream_error`.
    UpstreamError,
    /// 503 `keys_unavailable`.
    KeysUnavailable,
    /// 504 `upstream_timeout`.
    UpstreamTimeout,
    /// A request over one of the `limits:` (408, 413, 414, 431, 503).
    Limit(Limit),
    /// 401 `invalid_dpop_proof` or `use_dpop_nonce`: a DPoP-bound token whose proof fails or
    /// lacks a current nonce.
    Proof(ProofDenial),
}

/// A refused DPoP proof, with what its `WWW-Authenticate: DPoP` challenge says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofDenial {
    pub error: ProofError,
    /// `dpop.algorithms`, space separated.
    pub algs: String,
    /// A fresh server nonce (`DPoP-Nonce`), with `use_dpop_nonce`.
    pub nonce: Option<String>,
}

/// Why a request is answered 400 `bad_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRequest {
    /// The request target or its path.
    Target(PathError),
    /// A `Host` or authority that is not a plain host and port, two `Host` headers, or an
    /// authority that names another host than `Host`.
    Host,
    /// A method that is not upper-case (`delete`): upstreams disagree on what it means.
    Method,
    /// Where the token is: several tokens, a malformed `Authorization`.
    Token(ExtractError),
    /// A request pingora refused to read (malformed framing, a body that broke off).
    Malformed,
    /// A decision-listener request that describes no request, describes it twice, or comes
    /// from outside `trusted_proxies`.
    Description,
}

impl BadRequest {
    fn description(self) -> &'static str {
        match self {
            BadRequest::Target(e) => e.description(),
            BadRequest::Host => "bad host",
            BadRequest::Method => "method must be upper-case",
            BadRequest::Token(e) => e.description(),
            BadRequest::Malformed => "bad request",
            BadRequest::Description => "no request description from a trusted proxy",
        }
    }
}

/// Which limit a request went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// 408 `request_timeout`: the body stalled longer than `client_body_timeout`.
    BodyTimeout,
    /// 413 `body_too_large`.
    Body,
    /// 414 `uri_too_long`.
    Target,
    /// 431 `headers_too_large`: too many headers, or too many header bytes.
    Headers,
    /// 503 `overloaded`: `max_in_flight` requests already being handled.
    Busy,
}

impl From<PathError> for Deny {
    fn from(e: PathError) -> Self {
        Deny::BadRequest(BadRequest::Target(e))
    }
}

impl From<ExtractError> for Deny {
    fn from(e: ExtractError) -> Self {
        Deny::BadRequest(BadRequest::Token(e))
    }
}

impl From<VerifyError> for Deny {
    fn from(e: VerifyError) -> Self {
        Deny::InvalidToken(e)
    }
}

impl From<AuthError> for Deny {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Invalid(v) => Deny::InvalidToken(v),
            AuthError::KeysUnavailable => Deny::KeysUnavailable,
        }
    }
}

impl From<UnsafeClaim> for Deny {
    fn from(_: UnsafeClaim) -> Self {
        Deny::InvalidToken(VerifyError::UnsafeClaim)
    }
}

impl From<Unmet> for Deny {
    fn from(u: Unmet) -> Self {
        match u {
            Unmet::Scopes(challenge) => Deny::InsufficientScope(challenge),
            Unmet::Claim(challenge) => Deny::ClaimMismatch(challenge),
        }
    }
}

impl From<Limit> for Deny {
    fn from(l: Limit) -> Self {
        Deny::Limit(l)
    }
}

impl Deny {
    pub fn status(&self) -> u16 {
        match self {
            Deny::BadRequest(_) => 400,
            Deny::MissingToken | Deny::InvalidToken(_) | Deny::Proof(_) => 401,
            Deny::InsufficientScope(_) | Deny::ClaimMismatch(_) => 403,
            Deny::NoRoute => 404,
            Deny::UpstreamError => 502,
            Deny::KeysUnavailable => 503,
            Deny::UpstreamTimeout => 504,
            Deny::Limit(Limit::BodyTimeout) => 408,
            Deny::Limit(Limit::Body) => 413,
            Deny::Limit(Limit::Target) => 414,
            Deny::Limit(Limit::Headers) => 431,
            Deny::Limit(Limit::Busy) => 503,
        }
    }

    /// The `error` code of the body (RFC 6750 where it has one). Also the `decision` label of
    /// the request metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Deny::BadRequest(_) => "bad_request",
            Deny::MissingToken => "missing_token",
            Deny::InvalidToken(_) => "invalid_token",
            Deny::Proof(p) => p.error.code(),
            Deny::InsufficientScope(_) | Deny::ClaimMismatch(_) => "insufficient_scope",
            Deny::NoRoute => "no_route",
            Deny::UpstreamError => "upstream_error",
            Deny::KeysUnavailable => "keys_unavailable",
            Deny::UpstreamTimeout => "upstream_timeout",
            Deny::Limit(Limit::BodyTimeout) => "request_timeout",
            Deny::Limit(Limit::Body) => "body_too_large",
            Deny::Limit(Limit::Target) => "uri_too_long",
            Deny::Limit(Limit::Headers) => "headers_too_large",
            Deny::Limit(Limit::Busy) => "overloaded",
        }
    }

    /// The precise reason, one of a closed set of labels: `expired`, `bad_signature`,
    /// `unknown_kid`, `wrong_audience`, `claim_mismatch`… Logged with every request.
    pub fn reason(&self) -> &'static str {
        match self {
            Deny::MissingToken => "no_token",
            Deny::InvalidToken(v) => v.label(),
            Deny::Proof(p) => p.error.label(),
            Deny::ClaimMismatch(_) => "claim_mismatch",
            other => other.code(),
        }
    }

    pub fn description(&self) -> &'static str {
        match self {
            Deny::BadRequest(b) => b.description(),
            Deny::InvalidToken(v) => v.description(),
            Deny::Proof(p) => p.error.description(),
            Deny::MissingToken => "bearer token required",
            Deny::InsufficientScope(_) | Deny::ClaimMismatch(_) => {
                "token lacks a required scope or claim"
            }
            Deny::NoRoute => "no route for this request",
            Deny::UpstreamError => "upstream unavailable",
            Deny::KeysUnavailable => "signing keys not available yet",
            Deny::UpstreamTimeout => "upstream timed out",
            Deny::Limit(Limit::BodyTimeout) => "request body timed out",
            Deny::Limit(Limit::Body) => "request body too large",
            Deny::Limit(Limit::Target) => "request target too long",
            Deny::Limit(Limit::Headers) => "request headers too large",
            Deny::Limit(Limit::Busy) => "too many requests in flight",
        }
    }

    /// The gRPC status a gRPC client gets for this denial (the `grpc-status` of the reply).
    /// Every denial has one, so a gRPC client always reads the gateway's code and message
    /// rather than guessing one from an HTTP status.
    pub fn grpc_status(&self) -> u8 {
        match self {
            // INVALID_ARGUMENT: the request itself is wrong (target, host, token placement).
            Deny::BadRequest(_) => 3,
            // DEADLINE_EXCEEDED: not UNAVAILABLE, which clients retry, and a call that timed
            // out upstream may have run there.
            Deny::Limit(Limit::BodyTimeout) | Deny::UpstreamTimeout => 4,
            Deny::InsufficientScope(_) | Deny::ClaimMismatch(_) => 7,
            // RESOURCE_EXHAUSTED, as gRPC servers answer a message over their size limit.
            Deny::Limit(Limit::Body | Limit::Target | Limit::Headers) => 8,
            Deny::NoRoute => 12,
            // UNAVAILABLE: transient, worth a retry after a while.
            Deny::KeysUnavailable | Deny::UpstreamError | Deny::Limit(Limit::Busy) => 14,
            Deny::MissingToken | Deny::InvalidToken(_) | Deny::Proof(_) => 16,
        }
    }
}

/// The denial for an error pingora reports while reading the request or proxying it: a body
/// over `max_body_bytes` (413), a stalled body (408), a request pingora could not read (400),
/// an upstream that timed out (504) or failed in any other way (502). `None` when the client's
/// own connection broke: there is no one to answer.
pub fn deny_for_proxy_error(source: &ErrorSource, etype: &ErrorType) -> Option<Deny> {
    use ErrorType::*;
    Some(match (source, etype) {
        (ErrorSource::Downstream, ReadError | WriteError | ConnectionClosed) => return None,
        (_, HTTPStatus(413)) => Deny::Limit(Limit::Body),
        (ErrorSource::Downstream, ReadTimedout) => Deny::Limit(Limit::BodyTimeout),
        (_, HTTPStatus(400)) | (ErrorSource::Downstream, _) => {
            Deny::BadRequest(BadRequest::Malformed)
        }
        (_, ConnectTimedout | TLSHandshakeTimedout | ReadTimedout | WriteTimedout) => {
            Deny::UpstreamTimeout
        }
        _ => Deny::UpstreamError,
    })
}

/// Does the request want gRPC's own status (`content-type: application/grpc…`)?
pub fn wants_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// A response the gateway writes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, HeaderValue)>,
    pub body: Bytes,
    /// gRPC's Trailers-Only form: over HTTP/2 the head is the whole response (one HEADERS
    /// frame that ends the stream, no DATA frame, no `Content-Length`).
    pub trailers_only: bool,
}

/// A header value the gateway writes from its own text (descriptions, the configured scopes);
/// left out, rather than sent wrong, if it is not one.
fn text_value(text: String) -> Option<HeaderValue> {
    HeaderValue::try_from(text).ok()
}

/// `{"error":…,"error_description":…}`. The texts are the gateway's own: written as they are
/// when they need no JSON escape (all of them today), through serde_json otherwise.
fn json_body(code: &str, description: &str) -> Vec<u8> {
    let plain = |s: &str| s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    if plain(code) && plain(description) {
        let mut body = Vec::with_capacity(40 + code.len() + description.len());
        body.extend_from_slice(b"{\"error\":\"");
        body.extend_from_slice(code.as_bytes());
        body.extend_from_slice(b"\",\"error_description\":\"");
        body.extend_from_slice(description.as_bytes());
        body.extend_from_slice(b"\"}");
        return body;
    }
    serde_json::to_vec(&serde_json::json!({"error": code, "error_description": description}))
        .unwrap_or_default()
}

/// Build the reply for `deny`. `grpc`: the request's content-type is `application/grpc…`;
/// then every denial is a gRPC status (`Deny::grpc_status`) with the same fixed description
/// as `grpc-message`, HTTP status 200, in the Trailers-Only form.
pub fn reply(deny: &Deny, grpc: bool) -> Reply {
    let retry_after = matches!(deny, Deny::KeysUnavailable | Deny::Limit(Limit::Busy))
        .then(|| ("retry-after", HeaderValue::from(RETRY_AFTER_SECS)));
    if grpc {
        let mut headers = vec![
            ("content-type", HeaderValue::from_static("application/grpc")),
            (
                "grpc-status",
                HeaderValue::from(u16::from(deny.grpc_status())),
            ),
        ];
        headers.extend(
            text_value(deny.description().replace(' ', "%20")).map(|v| ("grpc-message", v)),
        );
        headers.push(("cache-control", HeaderValue::from_static("no-store")));
        headers.extend(retry_after);
        return Reply {
            status: 200,
            headers,
            body: Bytes::new(),
            trailers_only: true,
        };
    }
    let body = json_body(deny.code(), deny.description());
    let mut headers = Vec::with_capacity(4);
    headers.push(("content-type", HeaderValue::from_static("application/json")));
    headers.push(("cache-control", HeaderValue::from_static("no-store")));
    let challenge = match deny {
        Deny::MissingToken => Some(HeaderValue::from_static(MISSING_TOKEN_CHALLENGE)),
        Deny::InvalidToken(v) => text_value(format!(
            "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
            v.description()
        )),
        Deny::InsufficientScope(scope) | Deny::ClaimMismatch(scope) => text_value(match scope {
            Some(s) => {
                format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{s}\"")
            }
            None => format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\""),
        }),
        Deny::Proof(p) => text_value(format!(
            "DPoP algs=\"{}\", error=\"{}\", error_description=\"{}\"",
            p.algs,
            p.error.code(),
            p.error.description()
        )),
        _ => None,
    };
    headers.extend(challenge.map(|v| ("www-authenticate", v)));
    if let Deny::Proof(ProofDenial {
        nonce: Some(nonce), ..
    }) = deny
    {
        headers.extend(text_value(nonce.clone()).map(|v| ("dpop-nonce", v)));
    }
    headers.extend(retry_after);
    Reply {
        status: deny.status(),
        headers,
        body: Bytes::from(body),
        trailers_only: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_body_is_what_serde_json_writes() {
        for (code, description) in [
            ("invalid_token", "token expired"),
            ("bad_request", "a \"quoted\" \\ text\nwith a newline"),
            ("", ""),
        ] {
            let want: serde_json::Value =
                serde_json::json!({"error": code, "error_description": description});
            let got: serde_json::Value =
                serde_json::from_slice(&json_body(code, description)).expect("the body is JSON");
            assert_eq!(got, want);
        }
        assert_eq!(
            json_body("no_route", "no route"),
            serde_json::to_vec(
                &serde_json::json!({"error": "no_route", "error_description": "no route"})
            )
            .unwrap()
        );
    }

    #[test]
    fn the_missing_token_challenge_names_the_realm() {
        assert_eq!(MISSING_TOKEN_CHALLENGE, format!("Bearer realm=\"{REALM}\""));
    }

    #[test]
    fn every_denial_maps_to_its_status_code_and_reason() {
        let table = [
            (
                Deny::BadRequest(BadRequest::Host),
                400,
                "bad_request",
                "bad_request",
            ),
            (Deny::MissingToken, 401, "missing_token", "no_token"),
            (
                Deny::InvalidToken(VerifyError::Expired),
                401,
                "invalid_token",
                "expired",
            ),
            (
                Deny::InsufficientScope(None),
                403,
                "insufficient_scope",
                "insufficient_scope",
            ),
            (
                Deny::ClaimMismatch(None),
                403,
                "insufficient_scope",
                "claim_mismatch",
            ),
            (Deny::NoRoute, 404, "no_route", "no_route"),
            (Deny::UpstreamError, 502, "upstream_error", "upstream_error"),
            (
                Deny::KeysUnavailable,
                503,
                "keys_unavailable",
                "keys_unavailable",
            ),
            (
                Deny::UpstreamTimeout,
                504,
                "upstream_timeout",
                "upstream_timeout",
            ),
            (
                Deny::Limit(Limit::BodyTimeout),
                408,
                "request_timeout",
                "request_timeout",
            ),
            (
                Deny::Limit(Limit::Body),
                413,
                "body_too_large",
                "body_too_large",
            ),
            (
                Deny::Limit(Limit::Target),
                414,
                "uri_too_long",
                "uri_too_long",
            ),
            (
                Deny::Limit(Limit::Headers),
                431,
                "headers_too_large",
                "headers_too_large",
            ),
            (Deny::Limit(Limit::Busy), 503, "overloaded", "overloaded"),
        ];
        for (deny, status, code, reason) in table {
            assert_eq!(
                (deny.status(), deny.code(), deny.reason()),
                (status, code, reason)
            );
            let r = reply(&deny, false);
            assert_eq!(r.status, status);
            assert!(r
                .headers
                .contains(&("cache-control", HeaderValue::from_static("no-store"))));
        }
    }

    #[test]
    fn stage_errors_convert_to_their_denial() {
        assert_eq!(
            Deny::from(PathError::EncodedSlash),
            Deny::BadRequest(BadRequest::Target(PathError::EncodedSlash))
        );
        assert_eq!(
            Deny::from(ExtractError::SeveralTokens).description(),
            "more than one token in request"
        );
        assert_eq!(
            Deny::from(AuthError::KeysUnavailable),
            Deny::KeysUnavailable
        );
        assert_eq!(
            Deny::from(AuthError::Invalid(VerifyError::BadSignature)).reason(),
            "bad_signature"
        );
        assert_eq!(Deny::from(UnsafeClaim).reason(), "unsafe_claim");
        assert_eq!(
            Deny::from(Unmet::Claim(Some("a".into()))),
            Deny::ClaimMismatch(Some("a".into()))
        );
    }

    #[test]
    fn a_claim_mismatch_is_answered_like_a_missing_scope() {
        let scope = reply(&Deny::InsufficientScope(Some("a b".into())), false);
        let claim = reply(&Deny::ClaimMismatch(Some("a b".into())), false);
        assert_eq!(scope, claim);
    }

    #[test]
    fn proxy_errors_map_to_one_denial_each() {
        use ErrorSource::{Downstream, Internal, Upstream};
        let table = [
            (
                Downstream,
                ErrorType::HTTPStatus(413),
                Deny::Limit(Limit::Body),
            ),
            (
                Internal,
                ErrorType::HTTPStatus(413),
                Deny::Limit(Limit::Body),
            ),
            (
                Downstream,
                ErrorType::ReadTimedout,
                Deny::Limit(Limit::BodyTimeout),
            ),
            (
                Downstream,
                ErrorType::InvalidHTTPHeader,
                Deny::BadRequest(BadRequest::Malformed),
            ),
            (
                Internal,
                ErrorType::HTTPStatus(400),
                Deny::BadRequest(BadRequest::Malformed),
            ),
            (Upstream, ErrorType::ConnectTimedout, Deny::UpstreamTimeout),
            (Upstream, ErrorType::ReadTimedout, Deny::UpstreamTimeout),
            (Upstream, ErrorType::WriteTimedout, Deny::UpstreamTimeout),
            (Upstream, ErrorType::ConnectRefused, Deny::UpstreamError),
            // An https upstream's certificate refused (wrong name, unknown CA, expired).
            (
                Upstream,
                ErrorType::TLSHandshakeFailure,
                Deny::UpstreamError,
            ),
            (Upstream, ErrorType::InvalidCert, Deny::UpstreamError),
            (
                Upstream,
                ErrorType::TLSHandshakeTimedout,
                Deny::UpstreamTimeout,
            ),
            (Upstream, ErrorType::ConnectionClosed, Deny::UpstreamError),
            (Internal, ErrorType::InternalError, Deny::UpstreamError),
        ];
        for (source, etype, want) in table {
            assert_eq!(
                deny_for_proxy_error(&source, &etype),
                Some(want),
                "{source:?} {etype:?}"
            );
        }
        for gone in [
            ErrorType::ReadError,
            ErrorType::WriteError,
            ErrorType::ConnectionClosed,
        ] {
            assert_eq!(deny_for_proxy_error(&Downstream, &gone), None);
            assert_eq!(
                deny_for_proxy_error(&Upstream, &gone),
                Some(Deny::UpstreamError)
            );
        }
    }

    #[test]
    fn grpc_requests_get_grpc_status_in_the_trailers_only_form() {
        let table = [
            (Deny::BadRequest(BadRequest::Host), 3),
            (Deny::MissingToken, 16),
            (Deny::InvalidToken(VerifyError::Expired), 16),
            (Deny::InsufficientScope(None), 7),
            (Deny::ClaimMismatch(None), 7),
            (Deny::NoRoute, 12),
            (Deny::UpstreamError, 14),
            (Deny::KeysUnavailable, 14),
            (Deny::UpstreamTimeout, 4),
            (Deny::Limit(Limit::BodyTimeout), 4),
            (Deny::Limit(Limit::Body), 8),
            (Deny::Limit(Limit::Target), 8),
            (Deny::Limit(Limit::Headers), 8),
            (Deny::Limit(Limit::Busy), 14),
        ];
        for (deny, code) in table {
            let r = reply(&deny, true);
            assert_eq!((r.status, r.trailers_only), (200, true), "{deny:?}");
            assert!(r.body.is_empty());
            assert!(
                r.headers
                    .contains(&("grpc-status", HeaderValue::from(code))),
                "{deny:?}"
            );
            let message = deny.description().replace(' ', "%20");
            let message = HeaderValue::try_from(message).unwrap();
            assert!(r.headers.contains(&("grpc-message", message)), "{deny:?}");
        }
        assert!(!reply(&Deny::NoRoute, false).trailers_only);
    }
}
