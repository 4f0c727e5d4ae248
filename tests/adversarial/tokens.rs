//! Table 1: tokens. Forged, malformed and confused JWTs against an issuer with JWKS keys and
//! one with inline keys and HMAC; only configured keys verify, and no token makes the gateway
//! fetch keys from where it points.
use super::common::*;
use super::table::*;

use base64::Engine;
use jsonwebtoken::Algorithm;
use portcullis::demo::issuer::Issuer;
use portcullis::demo::keys::{b64, jwks, SigningKey};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// `iss` of the second issuer of the token table: inline keys, HMAC allowed, trailing slash.
const MIXED: &str = "https://mixed.example/";
/// Its HMAC secret (at least 32 bytes).
const SECRET: &str = "adversarial-corpus-hmac-secret-0123456789";

/// The JSON text of `claims` with `member` (e.g. `"sub":"admin"`) appended verbatim.
fn with_member(claims: &Value, member: &str) -> Vec<u8> {
    let text = claims.to_string();
    format!("{},{member}}}", &text[..text.len() - 1]).into_bytes()
}

/// `header.payload` of base64url JSON, unsigned.
fn unsigned(header: &Value, claims: &[u8]) -> String {
    format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims))
}

/// `token` with its signature replaced by these bytes.
fn resigned(token: &str, sig: &[u8]) -> String {
    let (input, _) = token.rsplit_once('.').expect("compact JWS");
    format!("{input}.{}", b64(sig))
}

fn signature(token: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment(token, 2))
        .expect("base64url signature")
}

/// The same token with its base64url segments in the standard alphabet (`+`, `/`).
fn standard_alphabet(token: &str) -> String {
    token.replace('-', "+").replace('_', "/")
}

/// The token with the unused low bits of its signature's last character set: a second spelling
/// of the same signature bytes if the decoder ignores them.
fn noncanonical_signature(token: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = *token.as_bytes().last().expect("non-empty token");
    let index = ALPHABET.iter().position(|&c| c == last).expect("base64url");
    assert_eq!(
        index & 0b1111,
        0,
        "an RS256 signature ends in 4 unused bits"
    );
    let mut out = token[..token.len() - 1].to_string();
    out.push(ALPHABET[index | 1] as char);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_attacks_are_refused_and_only_configured_keys_verify() {
    let mut issuer = TestIssuer::start().await;
    // The attacker's key reuses the kid of the real RSA key; its JWKS is served where `jku` /
    // `x5u` headers point, and the site counts every fetch.
    let attacker = SigningKey::generate("rs", Algorithm::RS256);
    let evil = SigningKey::generate("evil", Algorithm::RS256);
    let attacker_site = Issuer::start(jwks(&[&attacker, &evil]))
        .await
        .expect("attacker site");
    let jku = format!("{}/jwks.json", attacker_site.url());
    // Issuer `mixed`: RSA and EC keys inline, HMAC allowed with its own secret.
    let mx_rs = SigningKey::generate("mx-rs", Algorithm::RS256);
    let mx_es = SigningKey::generate("mx-es", Algorithm::ES256);
    let mixed_issuer = IssuerBlock::new("mixed", MIXED)
        .jwks(jwks(&[&mx_rs, &mx_es]))
        .audiences(&[AUD])
        .algorithms(&["RS256", "ES256", "HS256", "HS384", "HS512"])
        .hmac_secret_env("PORTCULLIS_ADVERSARIAL_SECRET");
    let (echo, hits) = start_counting_echo().await;
    let gw = start_gateway_env(
        &standard_config(&issuer.url(), echo)
            .issuer(mixed_issuer)
            .yaml(),
        &[("PORTCULLIS_ADVERSARIAL_SECRET", SECRET)],
    );
    gw.wait_ready().await;

    let main = issuer.claims(json!({}));
    let mixed = claims_for(MIXED, json!({}));
    // Real signatures under the wrong algorithm for the key's JWK `alg`: RSA-PSS by the key
    // published for RS256, and PKCS#1 v1.5 by the key published for PS256.
    issuer.rs.alg = Algorithm::PS256;
    let ps_by_rs_key = issuer
        .rs
        .mint_with_header(&json!({"alg": "PS256", "kid": "rs"}), &main);
    issuer.rs.alg = Algorithm::RS256;
    issuer.ps.alg = Algorithm::RS256;
    let rs_by_ps_key = issuer
        .ps
        .mint_with_header(&json!({"alg": "RS256", "kid": "ps"}), &main);
    issuer.ps.alg = Algorithm::PS256;
    let issuer = issuer;
    let (rs, es, ed) = (&issuer.rs, &issuer.es, &issuer.ed);
    let hdr = |alg: &str, kid: &str| json!({"alg": alg, "typ": "JWT", "kid": kid});
    let with = |extra: Value| rs.mint(&issuer.claims(extra));

    let ok = rs.mint(&main);
    let mut t: Vec<Case> = Vec::new();

    // Controls: the same gateway accepts what it should, so every refusal below means something.
    t.push(case(
        "control_valid_rs256",
        bearer("/api/x", &ok),
        user("/api/x", &ok),
    ));
    let es_ok = es.mint(&main);
    t.push(case(
        "control_valid_es256",
        bearer("/api/x", &es_ok),
        user("/api/x", &es_ok),
    ));
    let ed_ok = ed.mint(&main);
    t.push(case(
        "control_valid_eddsa",
        bearer("/api/x", &ed_ok),
        user("/api/x", &ed_ok),
    ));
    let hs_ok = SigningKey::hmac("h", Algorithm::HS256, SECRET.as_bytes()).mint(&mixed);
    t.push(case(
        "control_hs256_with_the_configured_secret",
        bearer("/api/x", &hs_ok),
        user("/api/x", &hs_ok),
    ));
    let mx_ok = mx_rs.mint(&mixed);
    t.push(case(
        "control_iss_with_its_exact_trailing_slash",
        bearer("/api/x", &mx_ok),
        user("/api/x", &mx_ok),
    ));

    // alg none, in every casing, with an empty signature and with a real RSA signature.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let input = unsigned(
            &json!({"alg": alg, "typ": "JWT"}),
            main.to_string().as_bytes(),
        );
        t.push(
            case(
                format!("alg_{alg}_with_empty_signature"),
                bearer("/api/x", &format!("{input}.")),
                refused(),
            )
            .quick(),
        );
        let input = unsigned(&hdr(alg, "rs"), main.to_string().as_bytes());
        let signed = format!("{input}.{}", b64(&rs.sign(input.as_bytes())));
        t.push(
            case(
                format!("alg_{alg}_with_kid_and_real_rsa_signature"),
                bearer("/api/x", &signed),
                refused(),
            )
            .quick(),
        );
    }

    // Key confusion: HMAC keyed with a public key, on an issuer that allows HMAC (with its own
    // secret) and on one that does not.
    for (kind, key) in [("rsa", &mx_rs), ("ec", &mx_es)] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let forged = SigningKey::hmac(&key.kid, alg, &key.public_key_bytes()).mint(&mixed);
            t.push(case(
                format!("{alg:?}_signed_with_the_{kind}_public_key").to_lowercase(),
                bearer("/api/x", &forged),
                refused(),
            ));
        }
    }
    let n = mx_rs.jwk()["n"].as_str().unwrap_or_default().to_string();
    let forged = SigningKey::hmac("mx-rs", Algorithm::HS256, n.as_bytes()).mint(&mixed);
    t.push(case(
        "hs256_signed_with_the_rsa_jwk_modulus_text",
        bearer("/api/x", &forged),
        refused(),
    ));
    let forged = SigningKey::hmac("rs", Algorithm::HS256, &rs.public_key_bytes()).mint(&main);
    t.push(
        case(
            "hs256_signed_with_the_rsa_public_key_on_an_issuer_without_hmac",
            bearer("/api/x", &forged),
            refused(),
        )
        .quick(),
    );

    // alg / kty / JWK alg disagreements.
    for (name, key, alg, kid) in [
        ("es256_token_under_the_kid_of_an_rsa_key", es, "ES256", "rs"),
        ("rs256_token_under_the_kid_of_an_ec_key", rs, "RS256", "es"),
        ("eddsa_token_under_the_kid_of_an_ec_key", ed, "EdDSA", "es"),
        (
            "es256_token_under_the_kid_of_an_ed25519_key",
            es,
            "ES256",
            "ed",
        ),
    ] {
        let token = key.mint_with_header(&hdr(alg, kid), &main);
        t.push(case(name, bearer("/api/x", &token), refused()));
    }
    t.push(case(
        "ps256_signed_by_the_key_published_for_rs256",
        bearer("/api/x", &ps_by_rs_key),
        refused(),
    ));
    t.push(case(
        "rs256_signed_by_the_key_published_for_ps256",
        bearer("/api/x", &rs_by_ps_key),
        refused(),
    ));
    for (name, header) in [
        ("alg_in_lower_case", json!({"alg": "rs256", "kid": "rs"})),
        (
            "alg_with_trailing_space",
            json!({"alg": "RS256 ", "kid": "rs"}),
        ),
        ("alg_as_array", json!({"alg": ["RS256"], "kid": "rs"})),
        ("alg_missing", json!({"kid": "rs"})),
        ("alg_null", json!({"alg": null, "kid": "rs"})),
    ] {
        let token = rs.mint_with_header(&header, &main);
        t.push(case(name, bearer("/api/x", &token), refused()).quick());
    }

    // crit: nothing the gateway understands, so always refused.
    for (name, header) in [
        (
            "crit_naming_exp",
            json!({"alg": "RS256", "kid": "rs", "crit": ["exp"], "exp": 1}),
        ),
        (
            "crit_empty_array",
            json!({"alg": "RS256", "kid": "rs", "crit": []}),
        ),
        (
            "crit_b64_false",
            json!({"alg": "RS256", "kid": "rs", "b64": false, "crit": ["b64"]}),
        ),
    ] {
        let token = rs.mint_with_header(&header, &main);
        t.push(case(name, bearer("/api/x", &token), refused()));
    }

    // Keys named or embedded in the token are never used (RFC 8725 3.10).
    let refusals = [
        (
            "jwk_header_with_attacker_key_and_real_kid",
            json!({"alg": "RS256", "kid": "rs", "jwk": attacker.jwk()}),
        ),
        (
            "jwk_header_with_attacker_key_and_no_kid",
            json!({"alg": "RS256", "jwk": attacker.jwk()}),
        ),
        (
            "jku_header_to_attacker_jwks_with_real_kid",
            json!({"alg": "RS256", "kid": "rs", "jku": jku}),
        ),
        (
            "x5u_header_to_attacker_with_real_kid",
            json!({"alg": "RS256", "kid": "rs", "x5u": jku}),
        ),
        (
            "x5c_header_with_attacker_chain",
            json!({"alg": "RS256", "kid": "rs", "x5c": [base64::engine::general_purpose::STANDARD.encode(b"attacker certificate")]}),
        ),
    ];
    for (name, header) in refusals {
        let token = attacker.mint_with_header(&header, &main);
        t.push(case(name, bearer("/api/x", &token), refused()));
    }
    let token = evil.mint_with_header(&json!({"alg": "RS256", "kid": "evil", "jku": jku}), &main);
    t.push(case(
        "jku_header_with_a_kid_only_the_attacker_publishes",
        bearer("/api/x", &token),
        refused(),
    ));
    let token = attacker.mint_with_header(&json!({"alg": "RS256", "kid": jku}), &main);
    t.push(case(
        "kid_is_the_url_of_attacker_jwks",
        bearer("/api/x", &token),
        refused(),
    ));
    for (name, header) in [
        (
            "valid_token_with_harmless_jku",
            json!({"alg": "RS256", "kid": "rs", "jku": jku}),
        ),
        (
            "valid_token_with_harmless_x5u",
            json!({"alg": "RS256", "kid": "rs", "x5u": jku}),
        ),
        (
            "valid_token_with_attacker_jwk_embedded",
            json!({"alg": "RS256", "kid": "rs", "jwk": attacker.jwk()}),
        ),
        (
            "valid_token_with_unknown_header_parameters",
            json!({"alg": "RS256", "kid": "rs", "zip": "DEF", "foo": {"bar": [1]}}),
        ),
    ] {
        let token = rs.mint_with_header(&header, &main);
        t.push(case(name, bearer("/api/x", &token), user("/api/x", &token)));
    }

    // kid: lookups are exact map lookups, never paths, queries or C strings.
    for (name, kid) in [
        ("kid_path_traversal", "../../etc/passwd"),
        ("kid_absolute_path", "/dev/null"),
        ("kid_percent_encoded_traversal", "..%2F..%2Fetc%2Fpasswd"),
        ("kid_sql_injection", "' OR 1=1 --"),
        ("kid_real_followed_by_nul", "rs\u{0}"),
        ("kid_real_followed_by_nul_and_junk", "rs\u{0}../../x"),
        ("kid_nul_only", "\u{0}"),
        ("kid_empty", ""),
        ("kid_real_with_trailing_space", "rs "),
        ("kid_real_in_upper_case", "RS"),
        ("kid_with_crlf", "rs\r\nX-Injected: 1"),
    ] {
        let token = rs.mint_with_header(&hdr("RS256", kid), &main);
        t.push(case(name, bearer("/api/x", &token), refused()));
    }
    for (name, kid) in [
        ("kid_as_number", json!(7)),
        ("kid_as_nosql_object", json!({"$ne": null})),
        ("kid_null", Value::Null),
    ] {
        let token = rs.mint_with_header(&json!({"alg": "RS256", "kid": kid}), &main);
        t.push(case(name, bearer("/api/x", &token), refused()).quick());
    }
    for (name, len) in [
        ("kid_of_10_kib", 10 * 1024),
        ("kid_of_5_kib", 5 * 1024),
        ("kid_of_300_bytes", 300),
    ] {
        let token = rs.mint_with_header(&hdr("RS256", &"k".repeat(len)), &main);
        t.push(case(name, bearer("/api/x", &token), refused()).quick());
    }

    // Segments and their encoding.
    let (h, p) = (segment(&ok, 0), segment(&ok, 1));
    for (name, token) in [
        ("one_segment", h.to_string()),
        ("two_segments", format!("{h}.{p}")),
        ("four_segments", format!("{ok}.e30")),
        ("five_segments_jwe_shape", format!("{h}.{p}.aaaa.bbbb.cccc")),
        ("empty_header_segment", format!(".{p}.{}", segment(&ok, 2))),
        ("empty_payload_segment", format!("{h}..{}", segment(&ok, 2))),
        ("empty_signature_segment", format!("{h}.{p}.")),
        ("all_segments_empty", "..".to_string()),
        ("only_dots", ".....".to_string()),
        (
            "header_of_impossible_base64_length",
            format!("A.{p}.{}", segment(&ok, 2)),
        ),
        ("padded_signature", format!("{ok}==")),
    ] {
        t.push(case(name, bearer("/api/x", &token), refused()).quick());
    }
    // Find a valid token whose standard-alphabet spelling differs.
    let std_token = (0..50)
        .map(|i| standard_alphabet(&with(json!({"jti": format!("std-{i}")}))))
        .find(|s| s.contains(['+', '/']))
        .expect("a token with - or _");
    t.push(case(
        "standard_base64_alphabet",
        bearer("/api/x", &std_token),
        refused(),
    ));
    t.push(case(
        "signature_with_noncanonical_trailing_bits",
        bearer("/api/x", &noncanonical_signature(&ok)),
        refused(),
    ));
    // `=` inside the credential is outside RFC 7235 token68: a malformed header, not a token.
    t.push(case(
        "padding_inside_the_token",
        bearer("/api/x", &format!("{h}=.{p}.{}", segment(&ok, 2))),
        bad(),
    ));
    t.push(case(
        "space_inside_the_token",
        bearer("/api/x", &format!("{h}. {p}.{}", segment(&ok, 2))),
        bad(),
    ));
    t.push(case(
        "tab_inside_the_token",
        bearer("/api/x", &format!("{h}.\t{p}.{}", segment(&ok, 2))),
        bad(),
    ));
    t.push(case(
        "token_folded_over_two_lines",
        raw(&[
            b"GET /api/x HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Bearer ",
            h.as_bytes(),
            b".\r\n ",
            p.as_bytes(),
            b".",
            segment(&ok, 2).as_bytes(),
            b"\r\nConnection: close\r\n\r\n",
        ]),
        Want::ParserRefused,
    ));
    let pretty = rs.mint_raw(
        b"{\n  \"alg\": \"RS256\",\n  \"kid\": \"rs\"\n}",
        main.to_string().as_bytes(),
    );
    t.push(case(
        "pretty_printed_header_json",
        bearer("/api/x", &pretty),
        user("/api/x", &pretty),
    ));
    let main_text = main.to_string();
    for (name, header, payload) in [
        (
            "utf8_bom_before_header_json",
            "\u{feff}{\"alg\":\"RS256\",\"kid\":\"rs\"}".to_string(),
            main_text.clone(),
        ),
        (
            "json_comment_in_header",
            "{\"alg\":\"RS256\",/* x */\"kid\":\"rs\"}".to_string(),
            main_text.clone(),
        ),
        (
            "single_quoted_header_json",
            "{'alg':'RS256','kid':'rs'}".to_string(),
            main_text.clone(),
        ),
        (
            "trailing_garbage_after_payload_json",
            "{\"alg\":\"RS256\",\"kid\":\"rs\"}".to_string(),
            format!("{main_text}x"),
        ),
        (
            "two_json_objects_in_payload",
            "{\"alg\":\"RS256\",\"kid\":\"rs\"}".to_string(),
            format!("{main_text}{main_text}"),
        ),
        (
            "lone_surrogate_escape_in_sub",
            "{\"alg\":\"RS256\",\"kid\":\"rs\"}".to_string(),
            String::from_utf8(with_member(
                &issuer.claims(json!({"sub": null})),
                "\"sub\":\"\\ud800\"",
            ))
            .unwrap(),
        ),
        (
            "claim_nested_2000_levels_deep",
            "{\"alg\":\"RS256\",\"kid\":\"rs\"}".to_string(),
            String::from_utf8(with_member(
                &main,
                &format!("\"deep\":{}{}", "[".repeat(2000), "]".repeat(2000)),
            ))
            .unwrap(),
        ),
    ] {
        let token = rs.mint_raw(header.as_bytes(), payload.as_bytes());
        t.push(case(name, bearer("/api/x", &token), refused()));
    }
    let mut invalid_utf8 = with_member(&issuer.claims(json!({"sub": null})), "\"sub\":\"user-1\"");
    let at = invalid_utf8.len() - 3;
    invalid_utf8.insert(at, 0xff);
    let token = rs.mint_raw(br#"{"alg":"RS256","kid":"rs"}"#, &invalid_utf8);
    t.push(case(
        "invalid_utf8_in_payload_string",
        bearer("/api/x", &token),
        refused(),
    ));

    // Duplicate keys: two readers could pick different values.
    let rs_header = br#"{"alg":"RS256","kid":"rs""#;
    for (name, header, payload) in [
        (
            "duplicate_alg_in_header",
            [&rs_header[..], br#","alg":"none"}"#].concat(),
            main_text.clone().into_bytes(),
        ),
        (
            "duplicate_kid_in_header",
            br#"{"alg":"RS256","kid":"nope","kid":"rs"}"#.to_vec(),
            main_text.clone().into_bytes(),
        ),
        (
            "duplicate_sub_in_payload",
            [&rs_header[..], b"}"].concat(),
            with_member(&main, "\"sub\":\"admin\""),
        ),
        (
            "duplicate_exp_in_payload",
            [&rs_header[..], b"}"].concat(),
            with_member(&main, "\"exp\":1"),
        ),
        (
            "duplicate_iss_in_payload",
            [&rs_header[..], b"}"].concat(),
            with_member(&main, "\"iss\":\"https://evil.example/\""),
        ),
        (
            "duplicate_aud_in_payload",
            [&rs_header[..], b"}"].concat(),
            with_member(&main, "\"aud\":\"api://nobody\""),
        ),
        (
            "duplicate_key_in_a_nested_object",
            [&rs_header[..], b"}"].concat(),
            with_member(&main, "\"org\":{\"id\":\"a\",\"id\":\"b\"}"),
        ),
        (
            "duplicate_sub_spelled_with_a_unicode_escape",
            [&rs_header[..], b"}"].concat(),
            with_member(&main, "\"s\\u0075b\":\"admin\""),
        ),
    ] {
        let token = rs.mint_raw(&header, &payload);
        t.push(case(name, bearer("/api/x", &token), refused()));
    }
    let token = with(json!({"Sub": "admin"}));
    t.push(case(
        "keys_differing_only_in_case_are_not_duplicates",
        bearer("/api/x", &token),
        user("/api/x", &token),
    ));

    // Header and payload must be JSON objects.
    for (name, payload) in [
        ("payload_is_an_array", "[{\"sub\":\"user-1\"}]"),
        ("payload_is_a_string", "\"user-1\""),
        ("payload_is_a_number", "12345"),
        ("payload_is_null", "null"),
        ("payload_is_true", "true"),
        ("payload_is_an_empty_object", "{}"),
    ] {
        let token = rs.mint_raw(br#"{"alg":"RS256","kid":"rs"}"#, payload.as_bytes());
        t.push(case(name, bearer("/api/x", &token), refused()));
    }
    for (name, header) in [
        ("header_is_an_array", "[\"RS256\"]"),
        ("header_is_a_string", "\"RS256\""),
    ] {
        let token = rs.mint_raw(header.as_bytes(), main_text.as_bytes());
        t.push(case(name, bearer("/api/x", &token), refused()).quick());
    }

    // Times: NumericDate may be fractional; anything else is no valid time.
    let now = now();
    for (name, extra, pass) in [
        (
            "exp_as_numeric_string",
            json!({"exp": (now + 3600).to_string()}),
            false,
        ),
        ("exp_huge_1e300", json!({"exp": 1e300}), true),
        ("exp_u64_max", json!({"exp": u64::MAX}), true),
        (
            "exp_float_in_the_future",
            json!({"exp": now as f64 + 3600.5}),
            true,
        ),
        (
            "exp_float_in_the_past",
            json!({"exp": now as f64 - 3600.5}),
            false,
        ),
        ("exp_negative", json!({"exp": -1}), false),
        ("exp_zero", json!({"exp": 0}), false),
        ("exp_i64_min", json!({"exp": i64::MIN}), false),
        ("exp_negative_huge", json!({"exp": -1e300}), false),
        ("exp_true", json!({"exp": true}), false),
        ("exp_as_array", json!({"exp": [now + 3600]}), false),
        ("exp_as_object", json!({"exp": {"$gt": 0}}), false),
        ("exp_missing", json!({"exp": null}), false),
        (
            "nbf_float_in_the_past",
            json!({"nbf": now as f64 - 10.25}),
            true,
        ),
        ("nbf_huge_1e300", json!({"nbf": 1e300}), false),
        ("nbf_as_string", json!({"nbf": "0"}), false),
        ("iat_negative", json!({"iat": -1}), true),
        ("iat_huge_1e300", json!({"iat": 1e300}), false),
        ("iat_as_string", json!({"iat": now.to_string()}), false),
    ] {
        let token = with(extra);
        let want = if pass {
            user("/api/x", &token)
        } else {
            refused()
        };
        t.push(case(name, bearer("/api/x", &token), want));
    }
    let huge = with(json!({"exp": 1e300, "jti": "again"}));
    t.push(case(
        "exp_huge_1e300_first_use",
        bearer("/api/x", &huge),
        user("/api/x", &huge),
    ));
    t.push(case(
        "exp_huge_1e300_again_from_the_token_cache",
        bearer("/api/x", &huge),
        user("/api/x", &huge),
    ));
    let token = rs.mint_raw(
        br#"{"alg":"RS256","kid":"rs"}"#,
        &with_member(&issuer.claims(json!({"exp": null})), "\"exp\":1e400"),
    );
    t.push(case(
        "exp_beyond_f64_range_1e400",
        bearer("/api/x", &token),
        refused(),
    ));
    let null_nbf = with(json!({"nbf": Value::Null}));
    t.push(case(
        "nbf_null_is_absent",
        bearer("/api/x", &null_nbf),
        user("/api/x", &null_nbf),
    ));

    // aud: a string or an array that holds an accepted audience; nothing else.
    for (name, aud, pass) in [
        ("aud_as_string", json!(AUD), true),
        (
            "aud_as_array_holding_an_accepted_audience",
            json!(["api://nobody", AUD]),
            true,
        ),
        (
            "aud_as_array_without_an_accepted_audience",
            json!(["api://nobody"]),
            false,
        ),
        ("aud_as_number", json!(42), false),
        ("aud_as_object", json!({"aud": AUD}), false),
        ("aud_as_nested_array", json!([[AUD]]), false),
        ("aud_empty_array", json!([]), false),
        ("aud_empty_string", json!(""), false),
        ("aud_in_upper_case", json!(AUD.to_uppercase()), false),
        ("aud_with_trailing_slash", json!(format!("{AUD}/")), false),
        ("aud_with_trailing_space", json!(format!("{AUD} ")), false),
        ("aud_as_a_prefix", json!(&AUD[..AUD.len() - 1]), false),
        (
            "aud_space_separated_string",
            json!(format!("{AUD} api://nobody")),
            false,
        ),
        ("aud_true", json!(true), false),
    ] {
        let token = with(json!({"aud": aud}));
        let want = if pass {
            user("/api/x", &token)
        } else {
            refused()
        };
        t.push(case(name, bearer("/api/x", &token), want));
    }
    let token = with(json!({"aud": null}));
    t.push(case("aud_missing", bearer("/api/x", &token), refused()));

    // iss: exact string equality, trailing slash included.
    let main_iss = issuer.url();
    for (name, iss) in [
        (
            "iss_with_an_added_trailing_slash",
            json!(format!("{main_iss}/")),
        ),
        ("iss_in_upper_case", json!(main_iss.to_uppercase())),
        ("iss_with_trailing_space", json!(format!("{main_iss} "))),
        ("iss_as_array", json!([main_iss])),
        ("iss_as_number", json!(1)),
        ("iss_missing", Value::Null),
    ] {
        let token = with(json!({"iss": iss}));
        t.push(case(name, bearer("/api/x", &token), refused()));
    }
    for (name, iss) in [
        ("iss_without_its_trailing_slash", "https://mixed.example"),
        (
            "iss_with_a_doubled_trailing_slash",
            "https://mixed.example//",
        ),
        ("iss_with_upper_case_host", "https://MIXED.example/"),
    ] {
        let token = mx_rs.mint(&claims_for(iss, json!({})));
        t.push(case(name, bearer("/api/x", &token), refused()));
    }
    let token = rs.mint(&mixed);
    t.push(case(
        "iss_of_one_issuer_signed_by_another_issuers_key",
        bearer("/api/x", &token),
        refused(),
    ));
    let token = mx_rs.mint(&main);
    t.push(case(
        "iss_of_main_signed_by_the_mixed_issuers_key",
        bearer("/api/x", &token),
        refused(),
    ));

    // Nested tokens: a JWT is never unwrapped.
    let cty = json!({"alg": "RS256", "kid": "rs", "cty": "JWT"});
    let token = rs.mint_raw(cty.to_string().as_bytes(), json!(ok).to_string().as_bytes());
    t.push(case(
        "nested_jwt_as_a_json_string_payload",
        bearer("/api/x", &token),
        refused(),
    ));
    let token = rs.mint_raw(cty.to_string().as_bytes(), ok.as_bytes());
    t.push(case(
        "nested_jwt_as_the_raw_payload",
        bearer("/api/x", &token),
        refused(),
    ));
    let token = format!(
        "{}.",
        unsigned(&json!({"alg": "none", "cty": "JWT"}), ok.as_bytes())
    );
    t.push(
        case(
            "nested_jwt_inside_an_alg_none_wrapper",
            bearer("/api/x", &token),
            refused(),
        )
        .quick(),
    );
    let token = attacker.mint_raw(cty.to_string().as_bytes(), ok.as_bytes());
    t.push(case(
        "nested_jwt_inside_an_attacker_signed_wrapper",
        bearer("/api/x", &token),
        refused(),
    ));

    // Signatures of the wrong size or shape (HAProxy's 21.8k-character ECDSA overflow).
    let es_sig = signature(&es_ok);
    let rs_sig = signature(&ok);
    let ed_sig = signature(&ed_ok);
    let random: Vec<u8> = (0..5250).map(|_| rand::random::<u8>()).collect();
    for (name, token) in [
        (
            "es256_signature_of_21800_characters",
            format!(
                "{}.{}",
                &es_ok[..es_ok.rfind('.').unwrap()],
                "A".repeat(21_800)
            ),
        ),
        (
            "es256_signature_of_7000_characters",
            resigned(&es_ok, &random),
        ),
        (
            "es256_all_zero_signature_psychic",
            resigned(&es_ok, &[0u8; 64]),
        ),
        ("es256_signature_truncated", resigned(&es_ok, &es_sig[..63])),
        (
            "es256_signature_doubled",
            resigned(&es_ok, &[es_sig.clone(), es_sig.clone()].concat()),
        ),
        (
            "rs256_signature_doubled",
            resigned(&ok, &[rs_sig.clone(), rs_sig.clone()].concat()),
        ),
        (
            "rs256_signature_with_a_leading_zero_byte",
            resigned(&ok, &[&[0u8][..], &rs_sig].concat()),
        ),
        ("rs256_one_byte_signature", resigned(&ok, &[1])),
        (
            "eddsa_signature_doubled",
            resigned(&ed_ok, &[ed_sig.clone(), ed_sig].concat()),
        ),
        (
            "signature_of_another_valid_token",
            resigned(&ok, &signature(&with(json!({"jti": "other"})))),
        ),
        (
            "payload_swapped_under_a_valid_signature",
            format!(
                "{h}.{}.{}",
                b64(issuer
                    .claims(json!({"sub": "admin"}))
                    .to_string()
                    .as_bytes()),
                segment(&ok, 2)
            ),
        ),
    ] {
        t.push(case(name, bearer("/api/x", &token), refused()).quick());
    }

    let fetches = || issuer.server.fetches();
    run_table("tokens", &gw, &hits, &fetches, t).await;

    // A flood of distinct oversized kids: all refused at once, none fetches keys.
    let before = issuer.server.fetches();
    let upstream_before = hits.load(Ordering::SeqCst);
    let started = Instant::now();
    let mut flood = Vec::new();
    for i in 0..30 {
        let kid = format!("{i:04}{}", "x".repeat(1000));
        let token = rs.mint_with_header(&hdr("RS256", &kid), &main);
        let addr = gw.addr;
        flood.push(tokio::spawn(async move {
            exchange(addr, &bearer("/api/x", &token)).await
        }));
    }
    for task in flood {
        let r = task
            .await
            .expect("flood task")
            .expect("flood request answered");
        assert_denied(&r, 401, "invalid_token");
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "kid flood took {:?}",
        started.elapsed()
    );
    assert_eq!(issuer.server.fetches(), before, "kid flood fetched keys");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        upstream_before,
        "the kid flood reached the upstream"
    );
    assert_eq!(
        attacker_site.fetches(),
        0,
        "the gateway fetched keys from a URL named in a token"
    );
}
