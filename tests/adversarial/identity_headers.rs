//! Table 4: identity and forwarding headers sent by the client never reach the upstream.
use super::table::*;

use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sent_identity_and_forwarding_headers_never_reach_the_upstream() {
    let r = rig(|config| config).await;
    let token = r.issuer.token(json!({"email": "u@example.com"}));
    let auth = format!("Bearer {token}");
    // What the upstream must see for this token on a protected route: only verified values.
    let verified = |target: &str| {
        let mut want = user(target, &token).and("x-auth-email", is("u@example.com"));
        for name in [
            "x-auth-scopes",
            "x-auth-roles",
            "x-user-org",
            "x-auth-admin",
        ] {
            want = want.and(name, H::Absent);
        }
        want
    };
    let spoof = |target: &str, headers: &[(&str, &str)], with_token: bool| {
        let mut all = headers.to_vec();
        if with_token {
            all.push(("Authorization", &auth));
        }
        get(target, &all)
    };
    let mut t: Vec<Case> = Vec::new();

    for name in [
        "X-Auth-Subject",
        "x-auth-subject",
        "X-AUTH-SUBJECT",
        "x-AuTh-SuBjEcT",
    ] {
        t.push(case(
            format!("subject_spoofed_as_{name}"),
            spoof("/api/x", &[(name, "admin")], true),
            verified("/api/x"),
        ));
    }
    t.push(case(
        "subject_spoofed_twice",
        spoof(
            "/api/x",
            &[("X-Auth-Subject", "admin"), ("x-auth-subject", "root")],
            true,
        ),
        verified("/api/x"),
    ));
    t.push(case(
        "subject_spoofed_on_a_public_route",
        spoof("/healthz", &[("X-Auth-Subject", "admin")], false),
        anonymous("/healthz"),
    ));
    t.push(case(
        "subject_spoofed_on_an_optional_route_without_token",
        spoof("/opt/x", &[("X-Auth-Subject", "admin")], false),
        anonymous("/opt/x"),
    ));
    t.push(case(
        "subject_spoofed_on_an_optional_route_with_token",
        spoof("/opt/x", &[("X-Auth-Subject", "admin")], true),
        verified("/opt/x"),
    ));
    t.push(case(
        "email_spoofed_is_replaced",
        spoof("/api/x", &[("X-Auth-Email", "boss@example.com")], true),
        verified("/api/x"),
    ));
    t.push(case(
        "roles_spoofed_for_a_token_without_roles",
        spoof("/api/x", &[("X-Auth-Roles", "admin")], true),
        verified("/api/x"),
    ));
    t.push(case(
        "scopes_spoofed_for_a_token_without_scopes",
        spoof("/api/x", &[("X-Auth-Scopes", "admin read:orders")], true),
        verified("/api/x"),
    ));
    t.push(case(
        "unprefixed_managed_header_spoofed_in_upper_case",
        spoof("/api/x", &[("X-USER-ORG", "evil-corp")], true),
        verified("/api/x"),
    ));
    t.push(case(
        "unprefixed_managed_header_spoofed_twice_on_a_public_route",
        spoof(
            "/healthz",
            &[("x-user-org", "a"), ("X-User-Org", "b")],
            false,
        ),
        anonymous("/healthz"),
    ));
    t.push(case(
        "claims_header_spoofed",
        spoof("/api/x", &[("X-Auth-Claims", "eyJzdWIiOiJhZG1pbiJ9")], true),
        verified("/api/x"),
    ));
    t.push(case(
        "claims_header_spoofed_on_a_public_route",
        spoof(
            "/healthz",
            &[("X-Auth-Claims", "eyJzdWIiOiJhZG1pbiJ9")],
            false,
        ),
        anonymous("/healthz"),
    ));
    t.push(case(
        "unmanaged_header_with_the_strip_prefix",
        spoof("/api/x", &[("X-Auth-Admin", "true")], true),
        verified("/api/x"),
    ));
    t.push(case(
        "prefixed_header_in_upper_case_on_a_public_route",
        spoof("/healthz", &[("X-AUTH-ADMIN", "true")], false),
        anonymous("/healthz"),
    ));
    t.push(case(
        "header_named_exactly_the_prefix",
        spoof("/healthz", &[("X-Auth-", "1")], false),
        anonymous("/healthz").and("x-auth-", H::Absent),
    ));
    t.push(case(
        "names_that_only_resemble_the_prefix_are_kept",
        spoof(
            "/healthz",
            &[("X-Auth", "kept"), ("X-Authx-Subject", "kept")],
            false,
        ),
        anonymous("/healthz")
            .and("x-auth", is("kept"))
            .and("x-authx-subject", is("kept")),
    ));
    t.push(case(
        "identity_header_with_space_before_colon",
        raw(&[
            b"GET /healthz HTTP/1.1\r\nHost: gateway.test\r\nX-Auth-Subject : admin\r\nConnection: close\r\n\r\n",
        ]),
        Want::ParserRefused,
    ));
    t.push(case(
        "identity_header_hidden_in_a_folded_line",
        raw(&[
            b"GET /healthz HTTP/1.1\r\nHost: gateway.test\r\nX-Note: a\r\n X-Auth-Subject: admin\r\nConnection: close\r\n\r\n",
        ]),
        Want::ParserRefused,
    ));
    t.push(case(
        "connection_header_naming_the_identity_headers",
        raw(&[
            b"GET /api/x HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: ",
            auth.as_bytes(),
            b"\r\nConnection: close, X-Auth-Subject, X-Auth-Claims\r\n\r\n",
        ]),
        verified("/api/x"),
    ));
    // pingora refuses a Connection header that nominates Host or X-Forwarded-*: fail closed.
    t.push(case(
        "connection_header_naming_x_forwarded_for",
        raw(&[
            b"GET /healthz HTTP/1.1\r\nHost: gateway.test\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close, X-Forwarded-For\r\n\r\n",
        ]),
        bad(),
    ));

    // X-Forwarded-* from a peer that is not in trusted_proxies (none are in this config).
    t.push(case(
        "forwarded_for_spoofed",
        spoof("/healthz", &[("X-Forwarded-For", "203.0.113.9")], false),
        anonymous("/healthz").and("x-forwarded-for", is("127.0.0.1")),
    ));
    t.push(case(
        "forwarded_for_spoofed_twice_in_upper_case",
        spoof(
            "/api/x",
            &[
                ("X-FORWARDED-FOR", "203.0.113.9"),
                ("x-forwarded-for", "10.0.0.1, 10.0.0.2"),
            ],
            true,
        ),
        verified("/api/x").and("x-forwarded-for", is("127.0.0.1")),
    ));
    t.push(case(
        "forwarded_proto_spoofed",
        spoof("/healthz", &[("X-Forwarded-Proto", "https")], false),
        anonymous("/healthz").and("x-forwarded-proto", is("http")),
    ));
    t.push(case(
        "forwarded_host_spoofed",
        spoof("/api/x", &[("X-Forwarded-Host", "admin.example.com")], true),
        verified("/api/x").and("x-forwarded-host", is("gateway.test")),
    ));
    t.push(case(
        "request_id_too_long_is_replaced",
        spoof("/healthz", &[("X-Request-Id", &"r".repeat(200))], false),
        anonymous("/healthz").and("x-request-id", H::GeneratedId),
    ));
    t.push(case(
        "request_id_with_a_space_is_replaced",
        spoof("/healthz", &[("X-Request-Id", "a b")], false),
        anonymous("/healthz").and("x-request-id", H::GeneratedId),
    ));
    t.push(case(
        "request_id_with_non_ascii_is_replaced",
        raw(&[b"GET /healthz HTTP/1.1\r\nHost: gateway.test\r\nX-Request-Id: r\xc3\xa9q\r\nConnection: close\r\n\r\n"]),
        anonymous("/healthz").and("x-request-id", H::GeneratedId),
    ));
    r.run("identity headers", t).await;
}
