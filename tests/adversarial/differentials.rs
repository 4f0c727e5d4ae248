//! Table 6: what the gateway authorised is what the upstream executes. Requests an ordinary
//! upstream (nginx, Go's net/http, Werkzeug, Express, Spring) would read differently from the
//! gateway: another host, another method, another path, another client, another identity.
use super::common::Route;
use super::table::*;

use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_an_upstream_would_read_otherwise_are_refused_or_cleaned() {
    let r = rig(|config| {
        config
            .set("token_sources", "{ cookie: session, query: access_token }")
            .route_first(
                Route::new("get-only", "/getonly/**")
                    .methods(&["GET"])
                    .scopes("[read:orders]"),
            )
    })
    .await;
    let token = r.issuer.token(json!({"scope": "read:orders"}));
    let auth = format!("Bearer {token}");
    let reader = |target: &str| user(target, &token).and("x-auth-scopes", is("read:orders"));
    let admin = |target: &str| user(target, &token).and("x-auth-scopes", is("read:orders"));
    let no_scope = r.issuer.token(json!({}));
    let no_scope_auth = format!("Bearer {no_scope}");
    let with_host = |host: &str| {
        get(
            "/admin/x",
            &[("Host", host), ("Authorization", auth.as_str())],
        )
    };
    let array_scope = |scopes: serde_json::Value| {
        let t = r.issuer.token(json!({ "scp": scopes }));
        get(
            "/api/orders/1",
            &[("Authorization", &format!("Bearer {t}"))],
        )
    };
    let t = vec![
        // Hosts: a port that is not 1-5 digits names another host to nginx or Go.
        case(
            "host_port_not_numeric",
            with_host("admin.example.com:x"),
            bad(),
        )
        .quick(),
        case("host_with_two_ports", with_host("a.com:1:2"), bad()).quick(),
        case(
            "host_port_smuggles_a_name",
            with_host("evil.com:x.admin.example.com"),
            bad(),
        )
        .quick(),
        case("host_empty_port", with_host("admin.example.com:"), bad()).quick(),
        case(
            "host_port_of_six_digits",
            with_host("admin.example.com:123456"),
            bad(),
        )
        .quick(),
        case(
            "host_with_a_port_routes_by_its_name",
            with_host("admin.example.com:8443"),
            admin("/admin/x").and("host", is("admin.example.com:8443")),
        ),
        case(
            "absolute_form_without_host_sends_the_authority_as_host",
            raw(&[
                b"GET http://admin.example.com/admin/x HTTP/1.1\r\nAuthorization: ",
                auth.as_bytes(),
                b"\r\nConnection: close\r\n\r\n",
            ]),
            admin("/admin/x").and("host", is("admin.example.com")),
        ),
        // Methods: `delete` is not `DELETE` to the route table, but is to many frameworks.
        case(
            "lower_case_delete",
            request("delete", "/api/orders/1", &[("Authorization", &auth)]),
            bad(),
        )
        .quick(),
        case(
            "mixed_case_get",
            request("Get", "/getonly/1", &[("Authorization", &auth)]),
            bad(),
        )
        .quick(),
        case(
            "head_is_held_to_the_rules_of_get",
            request(
                "HEAD",
                "/getonly/1",
                &[("Authorization", no_scope_auth.as_str())],
            ),
            Want::DenyHead(403, "error=\"insufficient_scope\", scope=\"read:orders\""),
        ),
        case(
            "head_without_a_token_needs_one_like_get",
            request("HEAD", "/getonly/1", &[]),
            Want::DenyHead(401, "Bearer realm=\"portcullis\""),
        ),
        // Override headers: middleware that honours them runs another method or path.
        case(
            "method_and_url_override_headers_are_removed",
            get(
                "/api/orders/1",
                &[
                    ("Authorization", &auth),
                    ("X-HTTP-Method-Override", "DELETE"),
                    ("X-HTTP-Method", "DELETE"),
                    ("X-Method-Override", "DELETE"),
                    ("X-Original-URL", "/admin/x"),
                    ("X-Rewrite-URL", "/admin/x"),
                    ("X_HTTP_Method_Override", "DELETE"),
                ],
            ),
            reader("/api/orders/1")
                .and("x-http-method-override", H::Absent)
                .and("x-http-method", H::Absent)
                .and("x-method-override", H::Absent)
                .and("x-original-url", H::Absent)
                .and("x-rewrite-url", H::Absent)
                .and("x_http_method_override", H::Absent),
        ),
        case(
            "override_headers_are_removed_on_public_routes_too",
            get("/healthz", &[("X-Original-URL", "/api/orders/1")]),
            anonymous("/healthz").and("x-original-url", H::Absent),
        ),
        // Who the client is: only trusted proxies may say.
        case(
            "forwarded_and_x_real_ip_from_an_untrusted_peer_are_removed",
            get(
                "/healthz",
                &[
                    (
                        "Forwarded",
                        "for=6.6.6.6;host=admin.example.com;proto=https",
                    ),
                    ("X-Real-IP", "6.6.6.6"),
                    ("X_Real_IP", "6.6.6.6"),
                    ("X_Forwarded_For", "6.6.6.6"),
                    ("X_Forwarded_Host", "admin.example.com"),
                ],
            ),
            anonymous("/healthz")
                .and("forwarded", H::Absent)
                .and("x-real-ip", H::Absent)
                .and("x_real_ip", H::Absent)
                .and("x_forwarded_for", H::Absent)
                .and("x_forwarded_host", H::Absent)
                .and("x-forwarded-for", is("127.0.0.1")),
        ),
        // Scopes: an array element is one scope.
        case(
            "array_scope_element_with_a_space_grants_nothing",
            array_scope(json!(["not read:orders"])),
            Want::Deny(403, "insufficient_scope"),
        ),
        case(
            "array_scope_element_is_one_scope",
            array_scope(json!(["read:orders", "other"])),
            Want::Pass {
                method: "GET",
                target: "/api/orders/1".into(),
                headers: vec![("x-auth-scopes", is("other read:orders"))],
            },
        ),
        // Tokens the gateway did not verify never go upstream.
        case(
            "bearer_token_on_a_public_route_is_not_forwarded",
            get("/healthz", &[("Authorization", "Bearer not-even-a-jwt")]),
            anonymous("/healthz").and("authorization", H::Absent),
        ),
        case(
            "token_cookie_and_parameter_on_a_public_route_are_not_forwarded",
            get(
                "/healthz?access_token=abc&x=1",
                &[("Cookie", "a=1; session=abc")],
            ),
            anonymous("/healthz?x=1").and("cookie", is("a=1")),
        ),
        case(
            "basic_credentials_on_a_public_route_are_the_upstreams",
            get("/healthz", &[("Authorization", "Basic dTpw")]),
            anonymous("/healthz").and("authorization", is("Basic dTpw")),
        ),
    ];
    r.run("differentials", t).await;
}

/// Found by the differential oracle (tests/oracle.rs): token carriers that Python, PHP, Node or
/// Rust upstreams read as the token while the gateway read them as something else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carriers_an_upstream_parser_reads_as_the_token_are_the_token_or_removed() {
    let r =
        rig(|config| config.set("token_sources", "{ cookie: session, query: access_token }")).await;
    let token = r.issuer.token(json!({"scope": "read:orders"}));
    let auth = format!("Bearer {token}");
    let reader = |target: &str| user(target, &token).and("x-auth-scopes", is("read:orders"));
    let public = |query: &str| get(&format!("/healthz?{query}&x=1"), &[]);
    let cookie_line = |value: &[u8]| {
        raw(&[
            b"GET /opt/x HTTP/1.1\r\nHost: gateway.test\r\nCookie: ",
            value,
            b"\r\nConnection: close\r\n\r\n",
        ])
    };
    let mut t = vec![
        // Every query parser decodes names: `%61ccess_token` is `access_token`.
        case(
            "query_name_percent_encoded_is_the_token",
            get(&format!("/api/orders/1?%61ccess_token={token}"), &[]),
            reader("/api/orders/1"),
        ),
        case(
            "query_name_percent_encoded_beside_a_bearer_is_two_tokens",
            get(
                "/api/orders/1?access%5Ftoken=forged",
                &[("Authorization", &auth)],
            ),
            bad(),
        )
        .quick(),
        case(
            "query_token_in_a_pair_with_a_semicolon_is_refused",
            get(&format!("/api/orders/1?a=1;access_token={token}"), &[]),
            bad(),
        )
        .quick(),
        case(
            "query_token_before_a_semicolon_is_refused",
            get(&format!("/api/orders/1?access_token={token};a=1"), &[]),
            bad(),
        )
        .quick(),
    ];
    // On a public route, every spelling an upstream reads as the token parameter is removed.
    for (name, query) in [
        (
            "query_name_percent_encoded_on_a_public_route",
            "%61ccess_token=forged",
        ),
        (
            "query_name_php_dot_on_a_public_route",
            "access.token=forged",
        ),
        (
            "query_name_php_plus_on_a_public_route",
            "access+token=forged",
        ),
        (
            "query_name_php_space_on_a_public_route",
            "access%20token=forged",
        ),
        (
            "query_name_php_bracket_on_a_public_route",
            "access[token=forged",
        ),
        (
            "query_name_array_on_a_public_route",
            "access_token[]=forged",
        ),
        (
            "query_name_indexed_array_on_a_public_route",
            "access_token[0]=forged",
        ),
        (
            "query_name_upper_case_on_a_public_route",
            "ACCESS_TOKEN=forged",
        ),
        (
            "query_name_leading_space_on_a_public_route",
            "+access_token=forged",
        ),
        (
            "query_name_nul_suffix_on_a_public_route",
            "access_token%00x=forged",
        ),
        (
            "query_token_after_a_semicolon_on_a_public_route",
            "a=1;access_token=forged",
        ),
    ] {
        t.push(case(name, public(query), anonymous("/healthz?x=1")));
    }
    t.extend([
        // A cookie header that is not ASCII is still read (it was skipped, then forwarded).
        case(
            "cookie_header_not_ascii_is_still_read",
            cookie_line(b"session=a.b.c; x=\xe9"),
            Want::Deny(401, "invalid_token"),
        ),
        case(
            "cookie_header_with_obs_text_beside_a_bearer_is_two_tokens",
            raw(&[
                b"GET /api/orders/1 HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: ",
                auth.as_bytes(),
                b"\r\nCookie: x=\xff\xfe; session=forged\r\nConnection: close\r\n\r\n",
            ]),
            bad(),
        )
        .quick(),
        // PHP decodes cookie names; ASP.NET folds their case.
        case(
            "cookie_name_percent_encoded_is_the_token",
            get(
                "/api/orders/1",
                &[("Cookie", &format!("theme=dark; %73ession={token}"))],
            ),
            reader("/api/orders/1").and("cookie", is("theme=dark")),
        ),
        case(
            "cookie_name_upper_case_is_the_token",
            get("/api/orders/1", &[("Cookie", &format!("Session={token}"))]),
            reader("/api/orders/1").and("cookie", H::Absent),
        ),
        // Python's http.cookies starts a cookie after whitespace; RFC 2965 parsers after `,`.
        case(
            "cookie_after_whitespace_is_refused",
            cookie_line(b"theme=dark session=forged"),
            bad(),
        )
        .quick(),
        case(
            "cookie_after_a_comma_is_refused",
            cookie_line(b"theme=dark,session=forged"),
            bad(),
        )
        .quick(),
        case(
            "cookie_after_whitespace_on_a_public_route_is_removed",
            get(
                "/healthz",
                &[("Cookie", "theme=dark; a=1 session=forged; b=2")],
            ),
            anonymous("/healthz").and("cookie", is("theme=dark; b=2")),
        ),
        // No black-box test sent an identity header spelled with `_` before.
        case(
            "identity_header_spelled_with_underscores_is_removed",
            get(
                "/healthz",
                &[("x_auth_subject", "forged"), ("X_Auth_Claims", "forged")],
            ),
            anonymous("/healthz")
                .and("x_auth_subject", H::Absent)
                .and("x_auth_claims", H::Absent),
        ),
    ]);
    r.run("oracle findings", t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxies_keep_their_headers_and_named_override_headers_stay() {
    let r = rig(|config| {
        config
            .set("trusted_proxies", "[127.0.0.1]")
            .set("keep_override_headers", "[X-HTTP-Method-Override]")
    })
    .await;
    let t = vec![
        case(
            "forwarded_and_x_real_ip_from_a_trusted_proxy_are_kept",
            get(
                "/healthz",
                &[("Forwarded", "for=192.0.2.1"), ("X-Real-IP", "192.0.2.1")],
            ),
            anonymous("/healthz")
                .and("forwarded", is("for=192.0.2.1"))
                .and("x-real-ip", is("192.0.2.1")),
        ),
        case(
            "underscore_spellings_go_even_from_a_trusted_proxy",
            get("/healthz", &[("X_Real_IP", "6.6.6.6")]),
            anonymous("/healthz").and("x_real_ip", H::Absent),
        ),
        case(
            "a_named_override_header_is_kept_in_its_own_spelling_only",
            request(
                "POST",
                "/healthz",
                &[
                    ("X-HTTP-Method-Override", "PATCH"),
                    ("X_HTTP_Method_Override", "DELETE"),
                    ("X-Original-URL", "/admin"),
                ],
            ),
            anonymous("/healthz")
                .method("POST")
                .and("x-http-method-override", is("PATCH"))
                .and("x_http_method_override", H::Absent)
                .and("x-original-url", H::Absent),
        ),
    ];
    r.run("trusted", t).await;
}
