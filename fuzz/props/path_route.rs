//! Target `path_route`: canonical path + route match + the target forwarded upstream.
use super::builder::Route;
use super::{fixture_config, remote_issuer};
use http::Method;
use pingora::http::RequestHeader;
use portcullis::config::Policy;
use portcullis::engine::{self, RequestHead};
use portcullis::path::{canonicalise, parse_target};
use std::path::Path;
use std::sync::OnceLock;

/// The route fixture: every kind of pattern (literal, `*`, `**`, escaped, `~`), methods, an
/// exact host and a wildcard host, and each `auth` mode.
fn route_config() -> String {
    fixture_config()
        .issuer(remote_issuer())
        .route(
            Route::new("health", "/healthz")
                .methods(&["GET"])
                .auth("none"),
        )
        .route(Route::new("root", "/").auth("none"))
        .route(
            Route::new("orders-read", "/api/orders/**")
                .methods(&["GET", "HEAD"])
                .scopes("[read:orders]"),
        )
        .route(
            Route::new("orders-admin", "/api/orders/**")
                .methods(&["DELETE"])
                .host("admin.example.com"),
        )
        .route(Route::new("profile", "/users/*/profile"))
        .route(Route::new("files", "/files/*/raw/**"))
        .route(Route::new("spaced", "/a%20b/**"))
        .route(Route::new("tilde", "/~user/*"))
        .route(Route::new("tenant", "/tenant/**").host("*.example.com"))
        .route(Route::new("public", "/public/**").auth("optional"))
        .route(Route::new("admin", "/admin/**"))
        .yaml()
}

fn route_policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        portcullis::config::from_str(&route_config(), "fuzz", Path::new("."))
            .expect("route fixture config compiles")
    })
}

const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE",
];
/// `Host` header values: plain, with a port, and the spellings other servers read as another
/// host (a port that is not 1-5 digits).
const HOSTS: [Option<&str>; 8] = [
    None,
    Some("api.example.com"),
    Some("Admin.Example.com:8443"),
    Some("x.admin.example.com"),
    Some("admin.example.com:x"),
    Some("a.com:1:2"),
    Some("evil.com:x.admin.example.com"),
    Some("[::1]:80"),
];

/// Input: byte 0 picks the method (low 3 bits; bit 6 writes it in lower case) and the `Host`
/// header (bits 3 to 5); the rest is the raw request target.
pub fn path_route(data: &[u8]) {
    let Some((&sel, raw)) = data.split_first() else {
        return;
    };
    let name = METHODS[sel as usize % 8];
    let name = if sel & 0x40 != 0 {
        name.to_ascii_lowercase()
    } else {
        name.to_string()
    };
    let method = Method::from_bytes(name.as_bytes()).expect("method");
    check_path(raw, &method, HOSTS[(sel as usize >> 3) % HOSTS.len()]);
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The shape of a canonical path (docs/behaviour.md, "Paths").
fn assert_canonical_shape(path: &str) {
    assert!(
        path.starts_with('/'),
        "canonical path {path:?} does not start with /"
    );
    for bad in ["//", "/./", "/../"] {
        assert!(!path.contains(bad), "canonical path {path:?} holds {bad:?}");
    }
    assert!(
        !path.ends_with("/.") && !path.ends_with("/.."),
        "canonical path {path:?} ends in a dot segment"
    );
    let upper = path.to_ascii_uppercase();
    for bad in ["%2F", "%5C", "%3B", "%23", "%00"] {
        assert!(!upper.contains(bad), "canonical path {path:?} holds {bad}");
    }
    let bytes = path.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        assert!(
            (0x21..0x7f).contains(&b) && !matches!(b, b'\\' | b';' | b'#' | b'?'),
            "canonical path {path:?} holds byte {b:#04x}"
        );
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .unwrap_or_else(|| panic!("cut escape in {path:?}"));
            assert!(
                hex.iter()
                    .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h)),
                "escape in {path:?} is not two upper-case hex digits"
            );
            let v = u8::from_str_radix(std::str::from_utf8(hex).expect("ascii"), 16).expect("hex");
            assert!(
                !is_unreserved(v),
                "canonical path {path:?} escapes unreserved {v:#04x}"
            );
        }
    }
    // What a lenient upstream sees after decoding every escape: the same segments, no dot
    // segments, no separators or control bytes smuggled in, valid UTF-8.
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let v =
                u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap(), 16).unwrap();
            decoded.push(v);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(decoded)
        .unwrap_or_else(|_| panic!("canonical path {path:?} decodes to invalid UTF-8"));
    assert_eq!(
        decoded.matches('/').count(),
        path.matches('/').count(),
        "canonical path {path:?} decodes to other segments"
    );
    for seg in decoded.split('/').skip(1) {
        assert!(
            seg != "." && seg != "..",
            "canonical path {path:?} decodes to a dot segment"
        );
        assert!(
            !seg.bytes()
                .any(|b| b < 0x20 || b == 0x7f || matches!(b, b'\\' | b';' | b'#')),
            "canonical path {path:?} decodes to {seg:?}"
        );
    }
}

/// `raw` is the request target as the client sent it. The canonical-form properties hold for
/// any input; the forwarding ones are checked as the gateway meets the request: after
/// httparse (bytes 0x21..=0x7E and 0x80..) and pingora's `RequestHeader` accepted it, on
/// pingora's `raw_path()`, and forwarded through `RequestHeader::set_uri` as `proxy.rs` does.
pub fn check_path(raw: &[u8], method: &Method, host_header: Option<&str>) {
    let Ok(target) = parse_target(raw) else {
        return;
    };
    let path = target.path.as_str();
    assert_canonical_shape(path);
    assert_eq!(
        canonicalise(path).as_deref(),
        Ok(path),
        "canonical path is not a fixed point (raw {raw:?})"
    );
    if let Some(q) = target.query {
        assert!(
            !q.bytes().any(|b| b == b'#' || b < 0x20 || b == 0x7f),
            "query {q:?} holds a fragment or a control byte"
        );
    }

    let on_the_wire = raw.iter().all(|&b| (0x21..=0x7e).contains(&b) || b >= 0x80);
    let incoming = on_the_wire
        .then(|| RequestHeader::build(method.clone(), raw, None).ok())
        .flatten();
    let target = match &incoming {
        Some(req) => match parse_target(req.raw_path()) {
            Ok(t) => t,
            Err(_) => return,
        },
        None => target,
    };
    let path = target.path.as_str();

    // The engine's routing, as the server runs it.
    let mut headers = http::HeaderMap::new();
    if let Some(h) = host_header.and_then(|h| http::HeaderValue::from_str(h).ok()) {
        headers.insert(http::header::HOST, h);
    }
    let wire_target = incoming.as_ref().map_or(raw, |r| r.raw_path());
    let head = RequestHead {
        method,
        target: wire_target,
        headers: &headers,
        authority: None,
        peer: None,
        tls: false,
        client_subject: None,
        client_cert: None,
    };
    let policy = route_policy();
    let Ok(routed) = engine::route(policy, &head) else {
        return;
    };
    // What the upstream will execute is what was matched: an upper-case method (frameworks
    // that upper-case a method would otherwise run another route's handler)…
    assert!(
        !method.as_str().bytes().any(|b| b.is_ascii_lowercase()),
        "method {method} was routed, yet an upstream may read it as another method"
    );
    // …and the host an RFC 3986 parser reads from the `Host` that goes upstream.
    let forwarded_host = host_header
        .map(str::to_string)
        .or_else(|| target.authority.map(str::to_string));
    let host = routed.host.clone();
    match &forwarded_host {
        Some(h) => {
            let authority: http::uri::Authority = h.parse().unwrap_or_else(|e| {
                panic!(
                    "routed by host {host:?}, yet the forwarded Host {h:?} is no authority ({e})"
                )
            });
            let parsed = authority.host().to_ascii_lowercase();
            let parsed = parsed.strip_suffix('.').unwrap_or(&parsed);
            assert_eq!(
                host.as_deref(),
                Some(parsed),
                "routed by one host, the upstream reads another from Host {h:?}"
            );
            if let Some(port) = authority.port() {
                assert!((1..=5).contains(&port.as_str().len()));
            }
        }
        None => assert_eq!(host, None),
    }
    let table = &policy.routes;
    let index = routed.route;
    assert_eq!(table.find(host.as_deref(), method, path), Some(index));
    let routes = table.routes();
    assert!(routes[index].matches(host.as_deref(), method, path));
    assert!(
        !routes[..index]
            .iter()
            .any(|r| r.matches(host.as_deref(), method, path)),
        "an earlier route matches {path:?}"
    );

    // The target sent upstream, built as the proxy builds it.
    let forwarded = match target.query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    if let Some(req) = &incoming {
        let uri: http::Uri = forwarded.parse().unwrap_or_else(|e| {
            panic!(
                "route {:?} authorised {raw:?} but the forwarded target {forwarded:?} is not a \
                 URI ({e}): the proxy would answer 500",
                routes[index].name
            )
        });
        assert_eq!(uri.path(), path, "forwarded path is not the matched path");
        assert_eq!(uri.query(), target.query, "forwarded query changed");
        let mut upstream = req.clone();
        upstream.set_uri(uri);
        assert_eq!(
            upstream.raw_path(),
            forwarded.as_bytes(),
            "the request line sent upstream is not the canonical target"
        );
    }
    // The upstream's view: the forwarded target parses to the same path, query and route.
    let again = parse_target(forwarded.as_bytes()).unwrap_or_else(|e| {
        panic!("forwarded target {forwarded:?} is refused when parsed again ({e:?})")
    });
    assert_eq!(again.path, path, "forwarded path canonicalises differently");
    assert_eq!(
        again.query, target.query,
        "forwarded query parses differently"
    );
    assert_eq!(
        table.find(host.as_deref(), method, &again.path),
        Some(index),
        "the forwarded path matches another route"
    );
}
