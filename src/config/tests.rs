//! Every refusal the config compiler makes, through `config::from_str`: the key path, a piece
//! of the message, and a line and column inside the file that point at the key. Upstream URLs
//! are IP literals, so nothing here needs DNS.

use super::{from_str, ConfigError};
use std::path::Path;

/// A file that compiles. Each case below changes one thing in it.
const GOOD: &str = "\
listen: 127.0.0.1:0
admin_listen: null
upstreams:
  app:
    url: http://127.0.0.1:1
upstream: app
issuers:
  idp:
    issuer: https://idp.example/
    jwks_uri: https://idp.example/jwks
    audiences: [api]
routes:
  - name: health
    match: { path: /healthz }
    auth: none
  - name: orders
    match: { path: /api/orders/** }
    scopes: [read:orders]
identity:
  headers:
    x-auth-subject: sub
";

/// `GOOD` with each `(old, new)` replaced once; `old` must be in it.
fn edit(changes: &[(&str, &str)]) -> String {
    let mut text = GOOD.to_string();
    for (old, new) in changes {
        assert!(text.contains(old), "{old:?} is not in the file");
        text = text.replacen(old, new, 1);
    }
    text
}

/// `GOOD` with `more` added to the end.
fn add(more: &str) -> String {
    format!("{GOOD}{more}")
}

/// `GOOD` with `lines` added to the `orders` route.
fn on_route(lines: &str) -> String {
    edit(&[(
        "    scopes: [read:orders]\n",
        &format!("    scopes: [read:orders]\n{lines}"),
    )])
}

/// `GOOD` with `lines` added to the `idp` issuer.
fn on_issuer(lines: &str) -> String {
    edit(&[(
        "    audiences: [api]\n",
        &format!("    audiences: [api]\n{lines}"),
    )])
}

/// A directory with a `jwks_file` that is not a key set, for the cases that read one.
fn base_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("bad.json"), "{\"no\": \"keys\"}").expect("write");
    dir
}

/// Compile `text`, expect a refusal at `path` whose message holds `fragment`, and check that
/// the position is inside the file and, when the refused key is written, at that key.
fn refused(text: &str, base: &Path, path: &str, fragment: &str) {
    let (line, column, got_path, message) = match from_str(text, "t.yaml", base) {
        Ok(_) => panic!("accepted; expected a refusal at {path}:\n{text}"),
        Err(ConfigError::Invalid {
            file,
            line,
            column,
            path,
            message,
        }) => {
            assert_eq!(file, "t.yaml");
            (line, column, path, message)
        }
        Err(other) => panic!("{other}"),
    };
    let at = format!("t.yaml:{line}:{column}: {got_path}: {message}");
    assert_eq!(got_path, path, "{at}");
    assert!(message.contains(fragment), "{at}\nwanted {fragment:?}");
    let Some(text_line) = text.lines().nth(line.wrapping_sub(1)) else {
        panic!("line {line} is not in the file: {at}");
    };
    assert!(
        column >= 1 && column <= text_line.len() + 1,
        "column {column} is not on line {text_line:?}: {at}"
    );
    // When the path ends in a key that the file writes: that key (compile errors), or its
    // value (errors of the YAML types, such as a bad duration).
    let leaf = path.rsplit(['.', ']']).next().unwrap_or_default();
    if !leaf.is_empty() && text.contains(&format!("{leaf}:")) {
        let here = &text_line[column - 1..];
        let before = &text_line[..column - 1];
        assert!(
            here.starts_with(leaf) || before.contains(&format!("{leaf}:")),
            "{at}: position is not at {leaf:?} or its value but at {here:?}"
        );
    }
}

#[test]
fn the_base_file_compiles() {
    from_str(GOOD, "t.yaml", Path::new(".")).expect("GOOD compiles");
}

#[test]
fn shadow_mode_compiles_on_routes_that_decide_and_is_refused_on_public_ones() {
    let text = edit(&[(
        "    scopes: [read:orders]\n",
        "    scopes: [read:orders]\n    mode: shadow\n",
    )]);
    let policy = from_str(&text, "t.yaml", Path::new(".")).expect("compiles");
    let modes: Vec<_> = policy.routes.routes().iter().map(|r| r.mode).collect();
    assert_eq!(
        modes,
        [crate::route::Mode::Enforce, crate::route::Mode::Shadow]
    );
    refused(
        &edit(&[("    auth: none\n", "    auth: none\n    mode: shadow\n")]),
        Path::new("."),
        "routes[0].mode",
        "has no decision to watch",
    );
    refused(
        &edit(&[("    auth: none\n", "    auth: none\n    mode: dry-run\n")]),
        Path::new("."),
        "routes[0].mode",
        "unknown variant",
    );
}

#[test]
fn kept_override_headers_compile_to_lower_case() {
    let policy = from_str(
        &add("keep_override_headers: [X-HTTP-Method-Override]\n"),
        "t.yaml",
        Path::new("."),
    )
    .expect("compiles");
    assert_eq!(policy.keep_override_headers, ["x-http-method-override"]);
}

#[test]
fn listeners_tls_token_sources_and_trusted_proxies_are_checked() {
    let cases = [
        (
            edit(&[("listen: 127.0.0.1:0", "listen: 8080")]),
            "listen",
            "is not an address like 0.0.0.0:8080",
        ),
        (
            edit(&[("admin_listen: null", "admin_listen: localhost")]),
            "admin_listen",
            "is not an address",
        ),
        (
            add("tls: { cert_file: a.pem }\n"),
            "tls",
            "missing field `key_file`",
        ),
        (
            add("token_sources:\n  cookie: \" \"\n"),
            "token_sources.cookie",
            "must not be empty",
        ),
        (
            add("token_sources:\n  query: \"\"\n"),
            "token_sources.query",
            "must not be empty",
        ),
        (
            add("trusted_proxies: [10.0.0.0/8, 10.0.0.0/99]\n"),
            "trusted_proxies[1]",
            "is not an IP address or CIDR",
        ),
        (
            add("keep_override_headers: [X-HTTP-Method-Override, X-Forwarded-For]\n"),
            "keep_override_headers[1]",
            "is not a method or URL override header",
        ),
    ];
    for (text, path, fragment) in cases {
        refused(&text, Path::new("."), path, fragment);
    }
}

#[test]
fn upstream_refusals_name_the_upstream_key() {
    let cases = [
        (
            edit(&[(
                "  app:\n    url: http://127.0.0.1:1\nupstream: app\n",
                "  {}\n",
            )]),
            "upstreams",
            "at least one upstream is needed",
        ),
        (
            edit(&[("upstream: app", "upstream: ghost")]),
            "upstream",
            "unknown upstream \"ghost\"",
        ),
        (
            edit(&[("url: http://127.0.0.1:1", "url: \"not a url\"")]),
            "upstreams.app.url",
            "is not a URL",
        ),
        (
            edit(&[("url: http://127.0.0.1:1", "url: ftp://127.0.0.1:1")]),
            "upstreams.app.url",
            "starts with http:// or https://",
        ),
        (
            edit(&[("url: http://127.0.0.1:1", "url: http://127.0.0.1:1/api")]),
            "upstreams.app.url",
            "has no path or query",
        ),
        (
            edit(&[(
                "url: http://127.0.0.1:1\n",
                "url: http://127.0.0.1:1\n    protocol: h2\n",
            )]),
            "upstreams.app.protocol",
            "needs an https:// url",
        ),
        (
            edit(&[(
                "url: http://127.0.0.1:1\n",
                "url: https://127.0.0.1:1\n    protocol: h2c\n",
            )]),
            "upstreams.app.protocol",
            "h2c is HTTP/2 over cleartext",
        ),
        (
            edit(&[(
                "url: http://127.0.0.1:1\n",
                "url: https://127.0.0.1:1\n    protocol: h3\n",
            )]),
            "upstreams.app.protocol",
            "\"h3\" is not a protocol: write h1, h2c or h2",
        ),
        (
            edit(&[(
                "url: http://127.0.0.1:1\n",
                "url: https://127.0.0.1:1\n    sni: \"not a host!\"\n",
            )]),
            "upstreams.app.sni",
            "is not a host name",
        ),
        (
            edit(&[(
                "url: http://127.0.0.1:1\n",
                "url: https://127.0.0.1:1\n    ca_file: missing-ca.pem\n",
            )]),
            "upstreams.app.ca_file",
            "cannot read",
        ),
        (
            edit(&[(
                "url: http://127.0.0.1:1\n",
                "url: http://127.0.0.1:1\n    dangerous_skip_verify: true\n",
            )]),
            "upstreams.app.dangerous_skip_verify",
            "applies to https:// upstreams only",
        ),
        (
            edit(&[(
                "url: http://127.0.0.1:1\n",
                "url: http://127.0.0.1:1\n    sni: app.internal\n",
            )]),
            "upstreams.app.sni",
            "applies to https:// upstreams only",
        ),
        (
            edit(&[(
                "url: http://127.0.0.1:1\n",
                "url: http://127.0.0.1:1\n    read_timeout: 0s\n",
            )]),
            "upstreams.app",
            "timeouts must be above zero",
        ),
        (
            edit(&[(
                "url: http://127.0.0.1:1\n",
                "url: http://127.0.0.1:1\n    connect_timeout: soon\n",
            )]),
            "upstreams.app.connect_timeout",
            "invalid duration \"soon\"",
        ),
    ];
    for (text, path, fragment) in cases {
        refused(&text, Path::new("."), path, fragment);
    }
}

#[test]
fn issuer_refusals_name_the_issuer_key() {
    std::env::set_var("PORTCULLIS_CONFIG_TEST_SHORT_SECRET", "too short");
    let http_issuer = "    issuer: http://idp.example/\n    discovery: true\n";
    let twin = edit(&[(
        "routes:\n",
        "  twin:\n    issuer: https://idp.example/\n    jwks_uri: https://idp.example/jwks\n    audiences: [api]\nroutes:\n",
    )]);
    let cases = [
        (
            twin,
            "issuers.twin.issuer",
            "two issuers have the same issuer value",
        ),
        (
            edit(&[("issuer: https://idp.example/", "issuer: \" \"")]),
            "issuers.idp.issuer",
            "the issuer (exact iss value) is required",
        ),
        (
            edit(&[("    audiences: [api]\n", "    audiences: []\n")]),
            "issuers.idp.audiences",
            "audiences is required",
        ),
        (
            edit(&[("    audiences: [api]\n", "")]),
            "issuers.idp.audiences",
            "audiences is required",
        ),
        (
            on_issuer("    algorithms: []\n"),
            "issuers.idp.algorithms",
            "list at least one algorithm",
        ),
        (
            on_issuer("    algorithms: [RS256, none]\n"),
            "issuers.idp.algorithms[1]",
            "alg none is never accepted",
        ),
        (
            on_issuer("    algorithms: [RS257]\n"),
            "issuers.idp.algorithms[0]",
            "unknown algorithm \"RS257\"",
        ),
        (
            on_issuer("    algorithms: [RS256, HS256]\n"),
            "issuers.idp.algorithms",
            "need hmac_secret_env",
        ),
        (
            on_issuer("    hmac_secret_env: PORTCULLIS_CONFIG_TEST_NEVER_SET\n"),
            "issuers.idp.hmac_secret_env",
            "environment variable PORTCULLIS_CONFIG_TEST_NEVER_SET is not set",
        ),
        (
            on_issuer("    hmac_secret_env: PORTCULLIS_CONFIG_TEST_SHORT_SECRET\n"),
            "issuers.idp.hmac_secret_env",
            "at least 32 bytes",
        ),
        (
            on_issuer("    discovery: true\n"),
            "issuers.idp",
            "choose one key source",
        ),
        (
            edit(&[("    jwks_uri: https://idp.example/jwks\n", "")]),
            "issuers.idp",
            "a key source is needed",
        ),
        (
            edit(&[("jwks_uri: https://", "jwks_uri: http://")]),
            "issuers.idp.jwks_uri",
            "http:// key URLs need allow_http: true",
        ),
        (
            edit(&[(
                "    issuer: https://idp.example/\n    jwks_uri: https://idp.example/jwks\n",
                http_issuer,
            )]),
            "issuers.idp.issuer",
            "http:// key URLs need allow_http: true",
        ),
        (
            edit(&[("jwks_uri: https://", "jwks_uri: file://")]),
            "issuers.idp.jwks_uri",
            "a key URL starts with https://",
        ),
        (
            edit(&[(
                "jwks_uri: https://idp.example/jwks",
                "jwks_file: missing.json",
            )]),
            "issuers.idp.jwks_file",
            "cannot read",
        ),
        (
            edit(&[("jwks_uri: https://idp.example/jwks", "jwks_file: bad.json")]),
            "issuers.idp.jwks_file",
            "not a JWKS document",
        ),
        (
            edit(&[(
                "jwks_uri: https://idp.example/jwks",
                "jwks: { keys: [{ kty: oct, k: AAAA }] }",
            )]),
            "issuers.idp.jwks",
            "no usable signing key",
        ),
        (
            edit(&[("jwks_uri: https://idp.example/jwks", "jwks: [1, 2]")]),
            "issuers.idp.jwks",
            "not a JWKS document",
        ),
        (
            on_issuer("    scope_claims: [scope, \"/a~2\"]\n"),
            "issuers.idp.scope_claims[1]",
            "is not a JSON Pointer",
        ),
        (
            on_issuer("    scope_claims: [\"\"]\n"),
            "issuers.idp.scope_claims[0]",
            "a claim name is not empty",
        ),
        (
            on_issuer("    refresh_interval: 0s\n"),
            "issuers.idp.refresh_interval",
            "must be above zero",
        ),
        (
            on_issuer("    leeway: soon\n"),
            "issuers.idp.leeway",
            "invalid duration \"soon\": write it like 30s, 10m or 24h",
        ),
        (
            on_issuer("    max_stale: 7 parsecs\n"),
            "issuers.idp.max_stale",
            "invalid duration",
        ),
    ];
    let dir = base_dir();
    for (text, path, fragment) in cases {
        refused(&text, dir.path(), path, fragment);
    }
}

#[test]
fn route_refusals_name_the_route_key() {
    let cases = [
        (
            edit(&[("name: orders", "name: \" \"")]),
            "routes[1].name",
            "a route name is not empty",
        ),
        (
            edit(&[("name: orders", "name: health")]),
            "routes[1].name",
            "duplicate route name \"health\": routes[0] has it already",
        ),
        (
            edit(&[(
                "  - name: health\n    match: { path: /healthz }\n    auth: none\n  - name: orders\n    match: { path: /api/orders/** }\n    scopes: [read:orders]\n",
                "  []\n",
            )]),
            "routes",
            "at least one route is needed",
        ),
        (
            edit(&[("path: /api/orders/**", "path: /api/**/orders")]),
            "routes[1].match.path",
            "** may only be the last segment",
        ),
        (
            edit(&[("path: /api/orders/**", "path: /api//orders")]),
            "routes[1].match.path",
            "must be canonical",
        ),
        (
            edit(&[(
                "path: /api/orders/** }",
                "path: /api/orders/**, host: \"a.*.example\" }",
            )]),
            "routes[1].match.host",
            "a host is a DNS name",
        ),
        (
            edit(&[(
                "path: /api/orders/** }",
                "path: /api/orders/**, methods: [] }",
            )]),
            "routes[1].match.methods",
            "list at least one method",
        ),
        (
            edit(&[(
                "path: /api/orders/** }",
                "path: /api/orders/**, methods: [GET, get] }",
            )]),
            "routes[1].match.methods[1]",
            "\"get\" is not an upper-case HTTP method",
        ),
        (
            edit(&[("    auth: none\n", "    auth: none\n    scopes: [a]\n")]),
            "routes[0]",
            "auth: none cannot have scopes, claims or issuers",
        ),
        (
            edit(&[("    auth: none\n", "    auth: none\n    issuers: [idp]\n")]),
            "routes[0]",
            "auth: none cannot have scopes, claims or issuers",
        ),
        (
            on_route("    auth: optional\n"),
            "routes[1].scopes",
            "auth: optional cannot have scopes or claims",
        ),
        (
            edit(&[(
                "    scopes: [read:orders]\n",
                "    auth: optional\n    claims: { email_verified: true }\n",
            )]),
            "routes[1].claims",
            "auth: optional cannot have scopes or claims",
        ),
        (
            edit(&[
                (
                    "issuers:\n  idp:\n    issuer: https://idp.example/\n    jwks_uri: https://idp.example/jwks\n    audiences: [api]\n",
                    "",
                ),
                ("    scopes: [read:orders]\n", "    auth: required\n"),
            ]),
            "routes[1].auth",
            "no issuer is configured",
        ),
        (
            on_route("    issuers: []\n"),
            "routes[1].issuers",
            "list at least one issuer",
        ),
        (
            on_route("    issuers: [idp, okta]\n"),
            "routes[1].issuers[1]",
            "unknown issuer \"okta\"",
        ),
        (
            edit(&[("scopes: [read:orders]", "scopes: []")]),
            "routes[1].scopes",
            "list at least one scope",
        ),
        (
            edit(&[("scopes: [read:orders]", "scopes: [\"read orders\"]")]),
            "routes[1].scopes[0]",
            "holds a space, and no token can carry it",
        ),
        (
            edit(&[("scopes: [read:orders]", "scopes: { any_of: [a, \"b\\\"\"] }")]),
            "routes[1].scopes.any_of[1]",
            "a scope is one word",
        ),
        (
            edit(&[("scopes: [read:orders]", "scopes: { all_of: [] }")]),
            "routes[1].scopes.all_of",
            "list at least one scope",
        ),
        (
            edit(&[(
                "scopes: [read:orders]",
                "scopes: { any_of: [a], all_of: [b] }",
            )]),
            "routes[1].scopes",
            "write exactly one of any_of or all_of",
        ),
        (
            on_route("    claims: { \"/org~2id\": [acme] }\n"),
            "routes[1].claims./org~2id",
            "is not a JSON Pointer",
        ),
        (
            on_route("    claims: { org: [] }\n"),
            "routes[1].claims.org",
            "list at least one allowed value",
        ),
        (
            on_route("    claims: { org: [acme, { a: 1 }] }\n"),
            "routes[1].claims.org",
            "allowed values are strings, numbers or booleans",
        ),
        (
            on_route("    upstream: ghost\n"),
            "routes[1].upstream",
            "unknown upstream \"ghost\"",
        ),
        (
            edit(&[(
                "    url: http://127.0.0.1:1\nupstream: app\n",
                "    url: http://127.0.0.1:1\n  other:\n    url: http://127.0.0.1:2\n",
            )]),
            "routes[0].upstream",
            "no upstream: name one here or set the top-level upstream",
        ),
        (
            on_route("    auth: sometimes\n"),
            "routes[1].auth",
            "unknown variant `sometimes`",
        ),
        (
            on_route("    scope: [a]\n"),
            "routes[1].scope",
            "unknown field `scope`",
        ),
    ];
    for (text, path, fragment) in cases {
        refused(&text, Path::new("."), path, fragment);
    }
}

#[test]
fn identity_refusals_name_the_identity_key() {
    let cases = [
        (
            add("  strip_prefix: \"x auth \"\n"),
            "identity.strip_prefix",
            "not the start of a header name",
        ),
        (
            edit(&[("x-auth-subject: sub", "\"x auth subject\": sub")]),
            "identity.headers.x auth subject",
            "is not a header name",
        ),
        (
            edit(&[("x-auth-subject: sub", "X-Forwarded-For: sub")]),
            "identity.headers.X-Forwarded-For",
            "X-Forwarded-For is managed by the gateway itself",
        ),
        (
            edit(&[("x-auth-subject: sub", "authorization: sub")]),
            "identity.headers.authorization",
            "managed by the gateway itself",
        ),
        (
            edit(&[("x-auth-subject: sub", "x-auth-subject: \"\"")]),
            "identity.headers.x-auth-subject",
            "a claim name is not empty",
        ),
        (
            add("  claims_header: x-request-id\n"),
            "identity.claims_header",
            "managed by the gateway itself",
        ),
        (
            add("  claims_header: \"x claims\"\n"),
            "identity.claims_header",
            "is not a header name",
        ),
        (
            add("  forward: true\n"),
            "identity.forward",
            "unknown field `forward`",
        ),
    ];
    for (text, path, fragment) in cases {
        refused(&text, Path::new("."), path, fragment);
    }
}

/// Incoming names are compared with `_` read as `-`, configured ones as written: a configured
/// `x_user_id` would never strip a spoofed `X-User-Id` or `x_user_id`, so it is refused.
#[test]
fn identity_header_names_with_underscores_are_refused() {
    let fragment = "identity header names use '-' not '_'";
    refused(
        &edit(&[("x-auth-subject: sub", "x_user_id: sub")]),
        Path::new("."),
        "identity.headers.x_user_id",
        fragment,
    );
    refused(
        &add("  claims_header: X_Auth_Claims\n"),
        Path::new("."),
        "identity.claims_header",
        fragment,
    );
    refused(
        &add("  strip_prefix: x_auth_\n"),
        Path::new("."),
        "identity.strip_prefix",
        fragment,
    );
    let Err(e) = from_str(&add("  strip_prefix: x_auth_\n"), "t.yaml", Path::new(".")) else {
        panic!("accepted");
    };
    assert!(e.to_string().contains("(write \"x-auth-\")"), "{e}");
}

/// Without a token an `auth: optional` route forwards anonymously, so rules a token would have
/// had to meet would be skipped by sending none.
#[test]
fn optional_auth_with_scopes_or_claims_is_refused_and_without_them_compiles() {
    refused(
        &on_route("    auth: optional\n"),
        Path::new("."),
        "routes[1].scopes",
        "a request without a token would pass without meeting them",
    );
    refused(
        &edit(&[(
            "    scopes: [read:orders]\n",
            "    auth: optional\n    claims: { org: [acme] }\n",
        )]),
        Path::new("."),
        "routes[1].claims",
        "use auth: required",
    );
    let narrowed = edit(&[(
        "    scopes: [read:orders]\n",
        "    auth: optional\n    issuers: [idp]\n",
    )]);
    from_str(&narrowed, "t.yaml", Path::new(".")).expect("optional with issuers compiles");
}

#[test]
fn limit_and_server_refusals_name_the_key() {
    let cases = [
        (
            add("limits:\n  max_token_bytes: 10\n"),
            "limits.max_token_bytes",
            "must be between 64 and 65536",
        ),
        (
            add("limits:\n  max_header_count: 0\n"),
            "limits.max_header_count",
            "must be above zero",
        ),
        (
            add("limits:\n  max_header_bytes: 0\n"),
            "limits.max_header_bytes",
            "must be above zero",
        ),
        (
            add("limits:\n  max_target_bytes: 0\n"),
            "limits.max_target_bytes",
            "must be above zero",
        ),
        (
            add("limits:\n  h2_max_concurrent_streams: 0\n"),
            "limits.h2_max_concurrent_streams",
            "must be above zero",
        ),
        (
            add("limits:\n  max_in_flight: 0\n"),
            "limits.max_in_flight",
            "must be above zero",
        ),
        (
            add("limits:\n  client_body_timeout: 0s\n"),
            "limits.client_body_timeout",
            "must be above zero",
        ),
        (
            add("limits:\n  client_idle_timeout: 500ms\n"),
            "limits.client_idle_timeout",
            "must be at least 1s",
        ),
        (
            add("limits:\n  client_idle_timeout: a minute\n"),
            "limits.client_idle_timeout",
            "invalid duration",
        ),
        (
            add("limits:\n  max_body_bytes: -1\n"),
            "limits.max_body_bytes",
            "expected u64",
        ),
        (
            add("server:\n  threads: 0\n"),
            "server.threads",
            "must be between 1 and 256",
        ),
        (
            add("server:\n  threads: 257\n"),
            "server.threads",
            "must be between 1 and 256",
        ),
        (
            add("server:\n  shutdown_grace: forever\n"),
            "server.shutdown_grace",
            "invalid duration",
        ),
    ];
    for (text, path, fragment) in cases {
        refused(&text, Path::new("."), path, fragment);
    }
}

/// An inline key set is parsed once, at load, and the compiled plan holds it; a key it skips is
/// kept as a warning.
#[test]
fn an_inline_jwks_is_parsed_at_load_and_held_by_the_key_plan() {
    // The ES256 public key of RFC 7515 appendix A.3, and a key the gateway never uses.
    let jwks = "{ keys: [\
        { kty: EC, crv: P-256, kid: es, alg: ES256, \
          x: f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU, \
          y: x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0 }, \
        { kty: oct, kid: shared, k: AAAA } ] }";
    let text = edit(&[
        (
            "jwks_uri: https://idp.example/jwks",
            &format!("jwks: {jwks}"),
        ),
        (
            "    audiences: [api]\n",
            "    audiences: [api]\n    algorithms: [ES256]\n",
        ),
    ]);
    let policy = from_str(&text, "t.yaml", Path::new(".")).expect("compiles");
    let plan = &policy.keys[0];
    assert!(plan.settings.source.is_none());
    assert!(plan.inline.as_ref().is_some_and(|set| set.len() == 1));
    assert_eq!(plan.skipped.len(), 1, "{:?}", plan.skipped);
    let store = crate::live::key_store(&policy);
    assert!(store.issuer(0).current().is_some() && store.ready());
}

/// A CA, a server pair signed by it, a second key, and files that are not what they claim, in
/// a directory a config names them from.
fn pki_dir() -> tempfile::TempDir {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["gateway.test".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("ca.pem", &ca.pem());
    write("server.crt", &cert.pem());
    write("server.key", &key.serialize_pem());
    write("other.key", &KeyPair::generate().unwrap().serialize_pem());
    write("garbage.pem", "not a certificate\n");
    write(
        "broken.crt",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    dir
}

#[test]
fn tls_files_are_read_and_checked_at_load() {
    let dir = pki_dir();
    let tls = |body: &str| add(&format!("tls:\n{body}"));
    let pair = "  cert_file: server.crt\n  key_file: server.key\n";
    let compiles = [
        tls(pair),
        tls(&format!(
            "{pair}  client_ca_file: ca.pem\n  client_subject_header: x-client-subject\n"
        )),
        edit(&[(
            "url: http://127.0.0.1:1\n",
            "url: https://127.0.0.1:1\n    ca_file: ca.pem\n    sni: app.internal\n    protocol: h2\n",
        )]),
    ];
    for text in compiles {
        if let Err(e) = from_str(&text, "t.yaml", dir.path()) {
            panic!("{e}\n{text}");
        }
    }
    let cases = [
        (
            tls("  cert_file: missing.crt\n  key_file: server.key\n"),
            "tls.cert_file",
            "cannot read",
        ),
        (
            tls("  cert_file: garbage.pem\n  key_file: server.key\n"),
            "tls.cert_file",
            "holds no PEM certificate",
        ),
        (
            tls("  cert_file: broken.crt\n  key_file: server.key\n"),
            "tls.cert_file",
            "does not parse",
        ),
        (
            tls("  cert_file: server.crt\n  key_file: garbage.pem\n"),
            "tls.key_file",
            "holds no PEM private key",
        ),
        (
            tls("  cert_file: server.crt\n  key_file: other.key\n"),
            "tls.key_file",
            "does not match the certificate",
        ),
        (
            tls("  cert_file: \"\"\n  key_file: server.key\n"),
            "tls.cert_file",
            "must not be empty",
        ),
        (
            tls(&format!("{pair}  client_ca_file: missing-ca.pem\n")),
            "tls.client_ca_file",
            "cannot read",
        ),
        (
            tls(&format!("{pair}  client_ca_file: garbage.pem\n")),
            "tls.client_ca_file",
            "holds no PEM certificate",
        ),
        (
            tls(&format!(
                "{pair}  client_subject_header: x-client-subject\n"
            )),
            "tls.client_subject_header",
            "needs tls.client_ca_file",
        ),
        (
            tls(&format!(
                "{pair}  client_ca_file: ca.pem\n  client_subject_header: x_client_subject\n"
            )),
            "tls.client_subject_header",
            "use '-' not '_'",
        ),
        (
            tls(&format!(
                "{pair}  client_ca_file: ca.pem\n  client_subject_header: x-forwarded-for\n"
            )),
            "tls.client_subject_header",
            "managed by the gateway itself",
        ),
        (
            tls(&format!(
                "{pair}  client_ca_file: ca.pem\n  client_subject_header: x-auth-subject\n"
            )),
            "tls.client_subject_header",
            "also an identity header",
        ),
        (
            edit(&[(
                "url: http://127.0.0.1:1\n",
                "url: https://127.0.0.1:1\n    ca_file: garbage.pem\n",
            )]),
            "upstreams.app.ca_file",
            "holds no PEM certificate",
        ),
    ];
    for (text, path, fragment) in cases {
        refused(&text, dir.path(), path, fragment);
    }
}

/// A misspelt issuer or upstream name gets the closest name there is; a name close to none
/// lists them; a duplicate route name points at the route that has it first.
#[test]
fn unknown_names_suggest_the_closest_known_one() {
    let base = base_dir();
    refused(
        &on_route("    issuers: [ipd]\n"),
        base.path(),
        "routes[1].issuers[0]",
        "unknown issuer \"ipd\": did you mean \"idp\"?",
    );
    refused(
        &on_route("    issuers: [okta]\n"),
        base.path(),
        "routes[1].issuers[0]",
        "unknown issuer \"okta\" (issuers: idp)",
    );
    refused(
        &edit(&[("upstream: app", "upstream: ap")]),
        base.path(),
        "upstream",
        "unknown upstream \"ap\": did you mean \"app\"?",
    );
    refused(
        &on_route("    upstream: apps\n"),
        base.path(),
        "routes[1].upstream",
        "unknown upstream \"apps\": did you mean \"app\"?",
    );
}
