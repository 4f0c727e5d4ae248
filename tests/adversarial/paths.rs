//! Table 3: paths and request targets, judged and forwarded in one canonical form.
use super::table::*;

use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_judged_and_forwarded_in_one_canonical_form() {
    let r = rig(|config| config).await;
    let token = r.issuer.token(json!({"scope": "read:orders"}));
    let auth = format!("Bearer {token}");
    let reader = |target: &str| user(target, &token).and("x-auth-scopes", is("read:orders"));
    let with_token = |target: &str| get(target, &[("Authorization", &auth)]);
    let line = |request_line: &[u8]| {
        raw(&[
            request_line,
            b"\r\nHost: gateway.test\r\nConnection: close\r\n\r\n",
        ])
    };
    let missing = || Want::Deny(401, "missing_token");
    let t = vec![
        // Dot segments: resolved inside `/`, 400 above it, judged after resolution.
        case(
            "dotdot_resolved_inside_root",
            with_token("/api/x/../orders/1"),
            reader("/api/orders/1"),
        ),
        case(
            "dotdot_out_of_an_optional_route",
            get("/opt/../api/orders/1", &[]),
            missing(),
        ),
        case(
            "dotdot_out_of_a_public_route",
            get("/healthz/../api/orders/1", &[]),
            missing(),
        ),
        case("dotdot_above_root", get("/../etc/passwd", &[]), bad()),
        case(
            "dotdot_above_root_from_deeper",
            with_token("/api/../../etc/passwd"),
            bad(),
        ),
        case(
            "encoded_dotdot_out_of_an_optional_route",
            get("/opt/%2e%2e/api/orders/1", &[]),
            missing(),
        ),
        case(
            "upper_case_encoded_dotdot",
            with_token("/api/orders/%2E%2E/orders/1"),
            reader("/api/orders/1"),
        ),
        case(
            "half_encoded_dotdot",
            get("/opt/.%2e/api/orders/1", &[]),
            missing(),
        ),
        case(
            "encoded_dotdot_above_root",
            get("/%2e%2e/%2e%2e/etc/passwd", &[]),
            bad(),
        ),
        case(
            "encoded_single_dot",
            with_token("/api/orders/%2e/1"),
            reader("/api/orders/1"),
        ),
        case(
            "trailing_dotdot_keeps_a_trailing_slash",
            get("/opt/x/..", &[]),
            anonymous("/opt/"),
        ),
        case(
            "double_encoded_dotdot_is_refused",
            with_token("/api/orders/%252e%252e/1"),
            bad(),
        ),
        case(
            "double_encoded_slash_is_refused",
            get("/opt/a%252F..%252Fapi", &[]),
            bad(),
        ),
        case(
            "a_literal_percent_sign_passes",
            get("/opt/100%25", &[]),
            anonymous("/opt/100%25"),
        ),
        case(
            "fullwidth_dots_are_refused",
            get("/opt/%EF%BC%8E%EF%BC%8E/api/orders/1", &[]),
            bad(),
        ),
        case(
            "fullwidth_solidus_is_refused",
            get("/opt/..%EF%BC%8Fapi/orders/1", &[]),
            bad(),
        ),
        case(
            "division_slash_is_refused",
            get("/opt/a%E2%88%95b", &[]),
            bad(),
        ),
        case(
            "one_dot_leaders_are_refused",
            get("/opt/%E2%80%A4%E2%80%A4/api", &[]),
            bad(),
        ),
        case(
            "other_non_ascii_passes_encoded",
            get("/opt/caf%C3%A9", &[]),
            anonymous("/opt/caf%C3%A9"),
        ),
        // Separators in disguise.
        case(
            "encoded_slash",
            with_token("/api/orders/1%2F..%2F..%2Fadmin"),
            bad(),
        ),
        case(
            "lower_case_encoded_slash",
            get("/opt%2f..%2fapi/orders/1", &[]),
            bad(),
        ),
        case(
            "encoded_backslash",
            with_token("/api/orders/1%5C..%5Cadmin"),
            bad(),
        ),
        case(
            "lower_case_encoded_backslash",
            get("/opt/..%5capi/orders/1", &[]),
            bad(),
        ),
        case("raw_backslash", get("/opt/..\\api/orders/1", &[]), bad()),
        case(
            "semicolon_path_parameter",
            with_token("/api/orders/1;jsessionid=x"),
            bad(),
        ),
        case(
            "semicolon_before_dotdot",
            get("/healthz;/../api/orders/1", &[]),
            bad(),
        ),
        case(
            "encoded_semicolon",
            get("/opt%3B/../api/orders/1", &[]),
            bad(),
        ),
        case("encoded_fragment", with_token("/api/orders/1%23x"), bad()),
        case(
            "raw_fragment_is_dropped_with_everything_after_it",
            get("/opt/page#/../../api/orders/1", &[]),
            anonymous("/opt/page"),
        ),
        case(
            "raw_fragment_on_a_public_route",
            get("/healthz#frag", &[]),
            anonymous("/healthz"),
        ),
        case(
            "repeated_slashes_are_merged",
            with_token("//api//orders//1"),
            reader("/api/orders/1"),
        ),
        case(
            "leading_double_slash_on_a_public_route",
            get("//healthz", &[]),
            anonymous("/healthz"),
        ),
        case(
            "repeated_slashes_then_dotdot",
            get("///opt/..//api/orders/1", &[]),
            missing(),
        ),
        // Encodings that decode to something else elsewhere.
        case(
            "overlong_utf8_dots",
            with_token("/api/orders/%C0%AE%C0%AE/1"),
            bad(),
        ),
        case(
            "overlong_utf8_slash",
            get("/opt/%C0%AF../api/orders/1", &[]),
            bad(),
        ),
        case(
            "three_byte_overlong_dot",
            get("/opt/%E0%80%AE%E0%80%AE/api", &[]),
            bad(),
        ),
        case("encoded_invalid_utf8_byte", get("/opt/%FF", &[]), bad()),
        case("encoded_nul", with_token("/api/orders/1%00.json"), bad()),
        case(
            "encoded_crlf",
            get("/opt/x%0d%0aX-Injected:%201", &[]),
            bad(),
        ),
        case("encoded_del", get("/opt/x%7F", &[]), bad()),
        case("bad_escape", get("/opt/%zz", &[]), bad()),
        case("truncated_escape", get("/opt/x%2", &[]), bad()),
        case(
            "lower_case_reserved_escape_is_normalised",
            with_token("/api/orders/a%3fb"),
            reader("/api/orders/a%3Fb"),
        ),
        // pingora percent-encodes a request line httparse refuses (controls, space, `<>"`) and
        // parses it again, so these reach the gateway as `%00` and `%20`: still 400 (behaviour.md).
        case("raw_nul_in_path", line(b"GET /opt/a\x00b HTTP/1.1"), bad()),
        // pingora re-encodes a raw space before the gateway sees it; that one spelling is
        // matched and forwarded (docs/behaviour.md).
        case(
            "raw_space_in_path",
            line(b"GET /opt/a b HTTP/1.1"),
            anonymous("/opt/a%20b"),
        ),
        case(
            "raw_non_ascii_in_path",
            line(b"GET /opt/\xc3\xa9 HTTP/1.1"),
            bad(),
        ),
        case(
            "path_segments_compare_case_sensitively",
            get("/API/orders/1", &[]),
            Want::Deny(404, "no_route"),
        ),
        case(
            "trailing_slash_does_not_match_a_literal_route",
            get("/healthz/", &[]),
            Want::Deny(404, "no_route"),
        ),
        case(
            "query_is_forwarded_unchanged",
            get("/healthz?next=..%2F..%2Fadmin&x=%00&y=/../z", &[]),
            anonymous("/healthz?next=..%2F..%2Fadmin&x=%00&y=/../z"),
        ),
        // Request-target forms.
        case(
            "absolute_form_target",
            get(
                "http://gateway.test/api/orders/1",
                &[("Authorization", &auth)],
            ),
            reader("/api/orders/1"),
        ),
        case(
            "absolute_form_target_with_dotdot",
            get("http://gateway.test/opt/../api/orders/1", &[]),
            missing(),
        ),
        case(
            "absolute_form_to_a_host_route",
            get(
                "http://admin.example.com/admin/x",
                &[("Host", "admin.example.com"), ("Authorization", &auth)],
            ),
            user("/admin/x", &token),
        ),
        case(
            "absolute_form_host_differs_from_host_header",
            get(
                "http://admin.example.com/admin/x",
                &[("Authorization", &auth)],
            ),
            Want::ParserRefused,
        ),
        case(
            "absolute_form_host_differs_only_in_case",
            get(
                "http://ADMIN.example.com/admin/x",
                &[("Host", "admin.example.com"), ("Authorization", &auth)],
            ),
            Want::ParserRefused,
        ),
        case(
            "absolute_form_with_userinfo",
            get(
                "http://evil@gateway.test/healthz",
                &[("Host", "evil@gateway.test")],
            ),
            Want::ParserRefused,
        ),
        case(
            "absolute_form_with_another_scheme",
            get("ftp://gateway.test/healthz", &[]),
            bad(),
        ),
        case(
            "two_host_headers",
            get(
                "/admin/x",
                &[
                    ("Host", "admin.example.com"),
                    ("Host", "gateway.test"),
                    ("Authorization", &auth),
                ],
            ),
            Want::ParserRefused,
        ),
        case(
            "connect_authority_form",
            request("CONNECT", "gateway.test:443", &[]),
            Want::ConnectRefused,
        ),
        case("options_asterisk", request("OPTIONS", "*", &[]), bad()),
        case("get_asterisk", get("*", &[]), bad()),
        case(
            "relative_target_without_leading_slash",
            get("api/orders/1", &[]),
            bad(),
        ),
    ];
    r.run("paths", t).await;
}
