//! Table 2: Authorization headers and cookies. Ambiguous or malformed credentials are refused.
use super::table::*;

use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_or_malformed_credentials_are_refused() {
    let r = rig(|config| config.set("token_sources", "{ cookie: session }")).await;
    let token = r.issuer.token(json!({"scope": "read:orders"}));
    let other = r
        .issuer
        .token(json!({"scope": "read:orders", "jti": "other"}));
    let target = "/api/orders/1";
    let reader = user(target, &token).and("x-auth-scopes", is("read:orders"));
    let auth = format!("Bearer {token}");
    let with_auth = |value: &str| get(target, &[("Authorization", value)]);
    let auth_line = |value: &[u8]| {
        raw(&[
            b"GET /api/orders/1 HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: ",
            value,
            b"\r\nConnection: close\r\n\r\n",
        ])
    };
    let mut t: Vec<Case> = Vec::new();

    t.push(case("control_bearer", with_auth(&auth), reader.clone()));
    let cookie = format!("theme=dark; session={token}");
    t.push(case(
        "control_cookie_token_is_removed_upstream",
        get(target, &[("Cookie", &cookie)]),
        user(target, &token).and("cookie", is("theme=dark")),
    ));

    // More than one token.
    t.push(case(
        "two_authorization_headers_same_token",
        get(
            target,
            &[("Authorization", &auth), ("Authorization", &auth)],
        ),
        bad(),
    ));
    t.push(case(
        "two_authorization_headers_different_tokens",
        get(
            target,
            &[
                ("Authorization", &auth),
                ("Authorization", &format!("Bearer {other}")),
            ],
        ),
        bad(),
    ));
    t.push(case(
        "authorization_bearer_and_authorization_basic",
        get(
            target,
            &[
                ("Authorization", &auth),
                ("Authorization", "Basic dXNlcjpwdw=="),
            ],
        ),
        bad(),
    ));
    t.push(case(
        "two_authorization_headers_differently_cased",
        get(
            target,
            &[("authorization", &auth), ("AUTHORIZATION", &auth)],
        ),
        bad(),
    ));
    t.push(case(
        "authorization_and_token_cookie",
        get(
            target,
            &[
                ("Authorization", &auth),
                ("Cookie", &format!("session={other}")),
            ],
        ),
        bad(),
    ));
    t.push(case(
        "token_cookie_twice_in_one_header",
        get(
            target,
            &[("Cookie", &format!("session={token}; session={other}"))],
        ),
        bad(),
    ));
    t.push(case(
        "token_cookie_in_two_cookie_headers",
        get(
            target,
            &[
                ("Cookie", &format!("session={token}")),
                ("Cookie", &format!("session={other}")),
            ],
        ),
        bad(),
    ));
    // On an unsafe method from a foreign origin the cookie is no token (XSRF), so the header
    // token stands alone; the token cookie still never reaches the upstream.
    t.push(case(
        "bearer_plus_ignored_token_cookie_on_cross_site_post",
        request(
            "POST",
            "/api/x",
            &[
                ("Authorization", &auth),
                ("Cookie", &format!("session={other}")),
                ("Origin", "https://evil.example"),
                ("Content-Length", "0"),
            ],
        ),
        user("/api/x", &token)
            .method("POST")
            .and("cookie", H::Absent),
    ));

    // The Bearer credential's own syntax.
    t.push(case("bearer_without_token", with_auth("Bearer"), bad()));
    t.push(case(
        "bearer_followed_by_spaces_only",
        with_auth("Bearer    "),
        bad(),
    ));
    t.push(case(
        "bearer_with_only_padding",
        with_auth("Bearer ="),
        bad(),
    ));
    t.push(case(
        "bearer_with_extra_spaces_before_the_token",
        with_auth(&format!("Bearer     {token}")),
        reader.clone(),
    ));
    t.push(case(
        "spaces_around_the_whole_value",
        with_auth(&format!("   Bearer {token}   ")),
        reader.clone(),
    ));
    t.push(case(
        "tab_between_scheme_and_token",
        with_auth(&format!("Bearer\t{token}")),
        bad(),
    ));
    t.push(case(
        "lower_case_scheme",
        with_auth(&format!("bearer {token}")),
        reader.clone(),
    ));
    t.push(case(
        "upper_case_scheme",
        with_auth(&format!("BEARER {token}")),
        reader.clone(),
    ));
    t.push(case(
        "mixed_case_scheme",
        with_auth(&format!("bEaReR {token}")),
        reader.clone(),
    ));
    t.push(case(
        "upper_case_header_name",
        get(target, &[("AUTHORIZATION", &auth)]),
        reader.clone(),
    ));
    t.push(case(
        "colon_after_scheme",
        with_auth(&format!("Bearer:{token}")),
        bad(),
    ));
    t.push(case(
        "no_space_after_scheme",
        with_auth(&format!("Bearer{token}")),
        bad(),
    ));
    t.push(case(
        "two_tokens_in_one_header",
        with_auth(&format!("Bearer {token} {other}")),
        bad(),
    ));
    t.push(case(
        "two_credentials_comma_separated",
        with_auth(&format!("Bearer {token}, Bearer {other}")),
        bad(),
    ));
    t.push(case(
        "quoted_token",
        with_auth(&format!("Bearer \"{token}\"")),
        bad(),
    ));
    t.push(case(
        "non_ascii_byte_after_the_token",
        auth_line(&[format!("Bearer {token}").as_bytes(), b"\xff"].concat()),
        bad(),
    ));
    t.push(case(
        "utf8_letter_inside_the_token",
        auth_line(
            &[
                b"Bearer ",
                segment(&token, 0).as_bytes(),
                "é.".as_bytes(),
                segment(&token, 1).as_bytes(),
                b".",
                segment(&token, 2).as_bytes(),
            ]
            .concat(),
        ),
        bad(),
    ));
    t.push(case(
        "non_ascii_byte_in_the_scheme",
        auth_line(&[b"B\xe9arer ", token.as_bytes()].concat()),
        bad(),
    ));
    t.push(case(
        "nul_byte_in_authorization",
        auth_line(&[b"Bearer \x00", token.as_bytes()].concat()),
        Want::ParserRefused,
    ));
    t.push(case(
        "bare_cr_in_authorization",
        auth_line(&[b"Bearer \r", token.as_bytes()].concat()),
        Want::ParserRefused,
    ));

    // Other schemes and places are no bearer token.
    t.push(case(
        "basic_scheme_is_no_token",
        with_auth("Basic dXNlcjpwdw=="),
        Want::Deny(401, "missing_token"),
    ));
    t.push(case(
        "token_scheme_is_no_token",
        with_auth(&format!("Token {token}")),
        Want::Deny(401, "missing_token"),
    ));
    t.push(case(
        "proxy_authorization_is_no_token",
        get(target, &[("Proxy-Authorization", &auth)]),
        Want::Deny(401, "missing_token"),
    ));
    t.push(case(
        "query_token_when_query_tokens_are_off",
        get(&format!("{target}?access_token={token}"), &[]),
        Want::Deny(401, "missing_token"),
    ));
    t.push(case(
        "cookie_of_another_name_is_no_token",
        get(target, &[("Cookie", &format!("sessions={token}"))]),
        Want::Deny(401, "missing_token"),
    ));
    t.push(case(
        "token_over_max_token_bytes",
        with_auth(&format!(
            "Bearer {}.{}.{}",
            "a".repeat(4000),
            "b".repeat(4000),
            "c".repeat(400)
        )),
        refused(),
    ));
    // A public route does not read or touch the Authorization header.
    t.push(case(
        "a_bearer_token_on_a_public_route_is_never_forwarded_unverified",
        get("/healthz", &[("Authorization", "Bearer not-even-a-jwt")]),
        anonymous("/healthz").and("authorization", H::Absent),
    ));
    r.run("credentials", t).await;
}
