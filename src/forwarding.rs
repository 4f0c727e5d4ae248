//! Forwarding policy: the header lists that decide what of an incoming request the upstream
//! may see besides what the gateway itself sets. Pure data, read by the engine's header edits
//! and by `config` (which refuses to keep what must always go).

/// Headers that make some frameworks run another method or path than the request line's:
/// removed from every request unless `keep_override_headers` names them.
pub const OVERRIDE_HEADERS: [&str; 5] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
];

/// Headers that tell the upstream who the client is besides `X-Forwarded-*`: kept only from
/// a peer in `trusted_proxies`.
pub const CLIENT_HEADERS: [&str; 2] = ["forwarded", "x-real-ip"];

/// Headers the gateway sets itself: a spelling with `_` in place of `-` is removed, since
/// CGI-style upstreams read `X_Forwarded_For` as `X-Forwarded-For`.
pub const GATEWAY_HEADERS: [&str; 4] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
];
