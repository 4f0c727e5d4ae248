//! Table 5: claims carried into headers; a claim that cannot be a header fails closed.
use super::common::*;
use super::table::*;

use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_that_cannot_be_headers_fail_closed() {
    // Tokens here may exceed the default 8 KiB: the header value limit is what is under test.
    let r = rig(|config| config.limit("max_token_bytes", "65536")).await;
    let token = |extra: Value| r.issuer.token(extra);
    let long = "a".repeat(9000);
    let mut t: Vec<Case> = Vec::new();

    for (name, extra) in [
        (
            "sub_with_crlf_header_injection",
            json!({"sub": "user-1\r\nX-Injected: 1"}),
        ),
        ("sub_with_bare_lf", json!({"sub": "user-1\nX-Injected: 1"})),
        ("email_with_bare_cr", json!({"email": "a@b.c\rX"})),
        ("org_with_nul", json!({"org_id": "acme\u{0}"})),
        ("email_with_tab", json!({"email": "a@b.c\tx"})),
        ("email_with_del", json!({"email": "a@b.c\u{7f}"})),
        (
            "email_with_escape_sequence",
            json!({"email": "\u{1b}[31ma@b.c"}),
        ),
        (
            "email_with_c1_next_line_control",
            json!({"email": "a@b.c\u{85}X-Injected: 1"}),
        ),
        (
            "roles_element_with_crlf_via_json_pointer",
            json!({"https://example.com/roles": ["ok", "bad\r\nX-Injected: 1"]}),
        ),
        ("sub_over_8_kib", json!({"sub": long})),
        ("email_of_8193_bytes", json!({"email": "e".repeat(8193)})),
        (
            "unmapped_claim_over_8_kib_in_the_claims_header",
            json!({"bio": long}),
        ),
        ("object_claim_over_8_kib", json!({"org_id": {"name": long}})),
    ] {
        let tok = token(extra);
        t.push(case(name, bearer("/api/x", &tok), refused()));
    }
    let tok = token(json!({"sub": "user-1\r\nX-Injected: 1"}));
    t.push(case(
        "sub_with_crlf_on_an_optional_route",
        bearer("/opt/x", &tok),
        refused(),
    ));

    // What can be a header passes, rendered exactly.
    let tok = token(json!({"note": "a\r\nX-Injected: 1"}));
    t.push(case(
        "unmapped_claim_with_crlf_travels_only_base64_encoded",
        bearer("/api/x", &tok),
        user("/api/x", &tok).and("x-injected", H::Absent),
    ));
    let tok = token(json!({"org_id": {"name": "x\r\ny"}}));
    t.push(case(
        "object_claim_with_crlf_is_sent_as_escaped_json",
        bearer("/api/x", &tok),
        user("/api/x", &tok).and("x-user-org", is(r#"{"name":"x\r\ny"}"#)),
    ));
    let tok = token(json!({"email": "José@example.com"}));
    t.push(case(
        "non_ascii_claim_is_sent_as_utf8",
        bearer("/api/x", &tok),
        user("/api/x", &tok).and("x-auth-email", is("José@example.com")),
    ));
    let tok = token(json!({"email": "e".repeat(8000)}));
    t.push(case(
        "claim_just_under_8_kib_with_its_claims_header_over_it",
        bearer("/api/x", &tok),
        refused(),
    ));
    let tok = r
        .issuer
        .rs
        .mint(&claims_for(&r.issuer.url(), json!({"sub": 12345})));
    t.push(case(
        "numeric_sub_is_json_text",
        bearer("/api/x", &tok),
        Want::Pass {
            method: "GET",
            target: "/api/x".into(),
            headers: vec![("x-auth-subject", is("12345"))],
        },
    ));
    for (name, extra) in [
        ("empty_string_claim_sends_no_header", json!({"email": ""})),
        (
            "empty_array_claim_sends_no_header",
            json!({"https://example.com/roles": []}),
        ),
        (
            "null_claim_sends_no_header",
            json!({"org_id": Value::Null, "email": Value::Null}),
        ),
    ] {
        let tok = token(extra);
        t.push(case(
            name,
            bearer("/api/x", &tok),
            user("/api/x", &tok)
                .and("x-auth-email", H::Absent)
                .and("x-auth-roles", H::Absent)
                .and("x-user-org", H::Absent),
        ));
    }
    r.run("claims into headers", t).await;
}
