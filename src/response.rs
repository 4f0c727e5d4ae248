//! The one place that maps a denial to what the client sees (SPEC section 2): status, JSON body
//! `{"error", "error_description"}`, `Cache-Control: no-store`, RFC 6750 `WWW-Authenticate`,
//! and gRPC's own status for gRPC requests. Descriptions are fixed strings, never input.

use bytes::Bytes;

/// The `realm` of every `WWW-Authenticate` challenge.
pub const REALM: &str = "portcullis";
/// `Retry-After` seconds on 503 `keys_unavailable`.
pub const RETRY_AFTER_SECS: u32 = 5;

/// Why the gateway answers a request itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deny {
    /// 400: ambiguous path, several tokens, malformed Authorization.
    BadRequest(&'static str),
    /// 401 without an error code: no token on a required route.
    MissingToken,
    /// 401 `invalid_token`.
    InvalidToken(&'static str),
    /// 403 `insufficient_scope`, with the route's scopes for the challenge.
    InsufficientScope(Option<String>),
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

impl Deny {
    pub fn status(&self) -> u16 {
        match self {
            Deny::BadRequest(_) => 400,
            Deny::MissingToken | Deny::InvalidToken(_) => 401,
            Deny::InsufficientScope(_) => 403,
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

    /// The `error` code of the body; also the decision label in metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Deny::BadRequest(_) => "bad_request",
            Deny::MissingToken => "missing_token",
            Deny::InvalidToken(_) => "invalid_token",
            Deny::InsufficientScope(_) => "insufficient_scope",
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

    pub fn description(&self) -> &'static str {
        match self {
            Deny::BadRequest(d) | Deny::InvalidToken(d) => d,
            Deny::MissingToken => "bearer token required",
            Deny::InsufficientScope(_) => "token lacks a required scope or claim",
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

    /// gRPC status code for the denials gRPC has its own terms for.
    fn grpc_status(&self) -> Option<u8> {
        match self {
            Deny::MissingToken | Deny::InvalidToken(_) => Some(16),
            Deny::InsufficientScope(_) => Some(7),
            Deny::KeysUnavailable => Some(14),
            Deny::NoRoute => Some(12),
            _ => None,
        }
    }
}

/// A response the gateway writes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

/// Build the reply for `deny`. `grpc`: the request's content-type is `application/grpc…`.
pub fn reply(deny: &Deny, grpc: bool) -> Reply {
    if grpc {
        if let Some(code) = deny.grpc_status() {
            return Reply {
                status: 200,
                headers: vec![
                    ("content-type", "application/grpc".into()),
                    ("grpc-status", code.to_string()),
                    ("grpc-message", deny.description().replace(' ', "%20")),
                    ("cache-control", "no-store".into()),
                ],
                body: Bytes::new(),
            };
        }
    }
    let body = serde_json::json!({"error": deny.code(), "error_description": deny.description()})
        .to_string();
    let mut headers = vec![
        ("content-type", "application/json".to_string()),
        ("cache-control", "no-store".to_string()),
    ];
    match deny {
        Deny::MissingToken => {
            headers.push(("www-authenticate", format!("Bearer realm=\"{REALM}\"")))
        }
        Deny::InvalidToken(d) => headers.push((
            "www-authenticate",
            format!("Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{d}\""),
        )),
        Deny::InsufficientScope(scope) => headers.push((
            "www-authenticate",
            match scope {
                Some(s) => {
                    format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{s}\"")
                }
                None => format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\""),
            },
        )),
        Deny::KeysUnavailable | Deny::Limit(Limit::Busy) => {
            headers.push(("retry-after", RETRY_AFTER_SECS.to_string()))
        }
        _ => {}
    }
    Reply {
        status: deny.status(),
        headers,
        body: Bytes::from(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_denial_maps_to_its_status_and_code() {
        let table = [
            (Deny::BadRequest("x"), 400, "bad_request"),
            (Deny::MissingToken, 401, "missing_token"),
            (Deny::InvalidToken("x"), 401, "invalid_token"),
            (Deny::InsufficientScope(None), 403, "insufficient_scope"),
            (Deny::NoRoute, 404, "no_route"),
            (Deny::UpstreamError, 502, "upstream_error"),
            (Deny::KeysUnavailable, 503, "keys_unavailable"),
            (Deny::UpstreamTimeout, 504, "upstream_timeout"),
            (Deny::Limit(Limit::BodyTimeout), 408, "request_timeout"),
            (Deny::Limit(Limit::Body), 413, "body_too_large"),
            (Deny::Limit(Limit::Target), 414, "uri_too_long"),
            (Deny::Limit(Limit::Headers), 431, "headers_too_large"),
            (Deny::Limit(Limit::Busy), 503, "overloaded"),
        ];
        for (deny, status, code) in table {
            assert_eq!((deny.status(), deny.code()), (status, code));
            let r = reply(&deny, false);
            assert_eq!(r.status, status);
            assert!(r.headers.contains(&("cache-control", "no-store".into())));
        }
    }

    #[test]
    fn grpc_requests_get_grpc_status() {
        let r = reply(&Deny::InsufficientScope(None), true);
        assert_eq!(r.status, 200);
        assert!(r.headers.contains(&("grpc-status", "7".into())));
        assert_eq!(reply(&Deny::BadRequest("x"), true).status, 400);
    }
}
