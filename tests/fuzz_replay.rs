//! Replays the committed fuzz corpora through the fuzz properties, on stable Rust and without
//! libFuzzer: every input under `fuzz/corpus/<target>/` (minimised fuzzer finds) and
//! `fuzz/seeds/<target>/` (hand-written seeds and regressions) runs through the same
//! `fuzz/props/` function as the fuzzer, and any panic is a failure.
//!
//! `cargo test --test fuzz_replay`. `cargo test --test fuzz_replay -- --ignored write_seeds`
//! rewrites the hand-written seeds.

#[path = "../fuzz/props/mod.rs"]
mod props;

use serde_json::{json, Value};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// A fuzz target's property function: panics on a violation.
type Property = fn(&[u8]);

const TARGETS: [(&str, Property); 5] = [
    ("token", props::token),
    ("path_route", props::path_route),
    ("config", props::config),
    ("identity", props::identity),
    ("dpop", props::dpop),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["corpus", "seeds"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("corpus entry").path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// One test for all five targets: the token fixture sets an environment variable, which must
/// not race with another thread's DNS lookup (config compile resolves upstream hosts).
#[test]
fn committed_corpora_hold_every_property() {
    let mut failures = Vec::new();
    for (target, run) in TARGETS {
        let files = inputs(target);
        assert!(!files.is_empty(), "no corpus for fuzz target {target}");
        for file in &files {
            let data = std::fs::read(file).expect("read corpus file");
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| run(&data))) {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{target}: {}: {why}", file.display()));
            }
        }
        eprintln!("fuzz target {target}: {} inputs replayed", files.len());
    }
    // The properties of verified tokens are only exercised if the valid seeds verify.
    let mut verified = 0;
    for file in inputs("token") {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let valid = name.starts_with("valid-") || name.ends_with("-valid");
        let data = std::fs::read(&file).expect("read corpus file");
        let verifies = props::token_verifies(&data);
        verified += usize::from(verifies);
        if valid && !verifies {
            failures.push(format!(
                "token: {}: a valid seed no longer verifies",
                file.display()
            ));
        }
    }
    eprintln!("fuzz target token: {verified} inputs verify");
    // Likewise the DPoP seeds named valid-* (made by a real signer, see fuzz/README.md).
    for file in inputs("dpop") {
        let valid = file
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("valid-"));
        let data = std::fs::read(&file).expect("read corpus file");
        if valid != props::dpop_accepts(&data) {
            failures.push(format!(
                "dpop: {}: valid-* seeds must pass every check, others must not",
                file.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} corpus inputs violate a property:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Hand-written seeds.

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = fuzz_dir().join("seeds").join(target);
    std::fs::create_dir_all(&dir).expect("seed dir");
    std::fs::write(dir.join(name), data).expect("write seed");
}

/// A raw-mode `token` input.
fn raw_token(name: &str, token: &str) {
    let mut data = vec![0u8];
    data.extend_from_slice(token.as_bytes());
    write("token", name, &data);
}

/// A signed-mode `token` input: signer index, then header 0xFF payload (or payload alone).
fn signed_token(name: &str, signer: u8, header: Option<&[u8]>, payload: &[u8]) {
    let mut data = vec![1u8, signer];
    if let Some(h) = header {
        data.extend_from_slice(h);
        data.push(0xff);
    }
    data.extend_from_slice(payload);
    write("token", name, &data);
}

fn good_claims(iss: &str) -> Value {
    json!({
        "iss": iss, "sub": "user-1", "aud": props::AUD, "exp": props::FAR_EXP,
        "iat": 1_700_000_000, "nbf": 1_700_000_000, "scope": "read:orders write:orders",
        "email": "user-1@example.com", "https://example.com/roles": ["admin", "ops"],
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().expect("object").remove(key);
    claims
}

fn token_seeds() {
    use props::{default_header, mint, HMAC_ISS, MAIN_ISS, SIGNERS};
    let main = good_claims(MAIN_ISS);
    let mint_json = |signer: usize, header: &Value, claims: &Value| {
        mint(
            &SIGNERS[signer],
            header.to_string().as_bytes(),
            claims.to_string().as_bytes(),
        )
    };
    let default = |signer: usize| -> Value {
        serde_json::from_slice(&default_header(&SIGNERS[signer])).expect("header")
    };
    let rs = |claims: &Value| mint_json(0, &default(0), claims);

    // Tokens that verify.
    raw_token("valid-rs256", &rs(&main));
    raw_token("valid-es256", &mint_json(2, &default(2), &main));
    raw_token("valid-eddsa", &mint_json(3, &default(3), &main));
    raw_token("valid-eddsa-no-kid", &mint_json(6, &default(6), &main));
    raw_token(
        "valid-hs256-at-jwt",
        &mint_json(4, &default(4), &good_claims(HMAC_ISS)),
    );
    raw_token(
        "valid-aud-array",
        &rs(&with(
            main.clone(),
            "aud",
            json!(["https://other.example", props::AUD]),
        )),
    );
    raw_token(
        "valid-jku-x5u-jwk-ignored",
        &mint_json(
            0,
            &json!({"alg": "RS256", "kid": "rs", "jku": "https://evil.example/jwks",
                    "x5u": "https://evil.example/cert", "jwk": {"kty": "oct", "k": "AAAA"}}),
            &main,
        ),
    );
    raw_token(
        "valid-crlf-claim",
        &rs(&with(main.clone(), "sub", json!("a\r\nx-injected: 1"))),
    );
    raw_token(
        "valid-nested-token-as-sub",
        &rs(&with(main.clone(), "sub", json!(rs(&main)))),
    );
    raw_token(
        "valid-float-exp",
        &rs(&with(main.clone(), "exp", json!(4.1e9))),
    );

    // Tokens that must not verify.
    let b64 =
        |s: &str| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, s);
    let body = b64(&main.to_string());
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = b64(&json!({"alg": alg, "typ": "JWT"}).to_string());
        raw_token(&format!("alg-{alg}-empty-sig"), &format!("{h}.{body}."));
        raw_token(&format!("alg-{alg}-sig"), &format!("{h}.{body}.c2ln"));
    }
    raw_token(
        "hs256-keyed-with-rsa-public-key",
        &mint_json(5, &default(5), &main),
    );
    raw_token("ps256-under-rs256-jwk", &mint_json(1, &default(1), &main));
    raw_token("es256-under-ed25519-kid", &mint_json(7, &default(7), &main));
    raw_token(
        "crit-header",
        &mint_json(
            0,
            &json!({"alg": "RS256", "kid": "rs", "crit": ["exp"]}),
            &main,
        ),
    );
    for (name, kid) in [
        ("kid-path-traversal", json!("../../../../etc/passwd")),
        ("kid-sql", json!("' OR '1'='1' --")),
        ("kid-nul", json!("rs\u{0}")),
        ("kid-empty", json!("")),
        ("kid-huge", json!("k".repeat(300))),
        ("kid-number", json!(7)),
    ] {
        raw_token(
            name,
            &mint_json(0, &json!({"alg": "RS256", "kid": kid}), &main),
        );
    }
    let valid = rs(&main);
    let parts: Vec<&str> = valid.split('.').collect();
    raw_token("two-segments", &format!("{}.{}", parts[0], parts[1]));
    raw_token("four-segments", &format!("{valid}.{}", parts[2]));
    raw_token("padded-signature", &format!("{valid}=="));
    raw_token(
        "space-inside",
        &format!("{} .{}.{}", parts[0], parts[1], parts[2]),
    );
    raw_token("leading-space", &format!(" {valid}"));
    raw_token(
        "standard-base64-alphabet",
        &valid.replace('-', "+").replace('_', "/"),
    );
    raw_token("empty", "");
    raw_token("dots", "..");
    let h = default_header(&SIGNERS[0]);
    let dup = format!(
        r#"{{"iss":"{MAIN_ISS}","iss":"https://evil.example/","aud":"{}","exp":{}}}"#,
        props::AUD,
        props::FAR_EXP
    );
    signed_token("duplicate-iss", 0, Some(&h), dup.as_bytes());
    signed_token(
        "duplicate-header-alg",
        0,
        Some(br#"{"alg":"RS256","alg":"none","kid":"rs"}"#),
        main.to_string().as_bytes(),
    );
    for (name, payload) in [
        ("payload-array", "[1,2]"),
        ("payload-string", "\"claims\""),
        ("payload-null", "null"),
        ("payload-trailing-garbage", "{}x"),
        ("payload-bom", "\u{feff}{}"),
    ] {
        signed_token(name, 0, None, payload.as_bytes());
    }
    for (name, exp) in [
        ("exp-string", json!("4102444800")),
        ("exp-huge", json!(1e300)),
        ("exp-negative", json!(-1)),
        ("exp-u64-max", json!(u64::MAX)),
        ("exp-i64-min", json!(i64::MIN)),
        ("exp-past", json!(1_000_000_000)),
        ("exp-null", Value::Null),
        ("exp-bool", json!(true)),
    ] {
        signed_token(
            name,
            0,
            None,
            with(main.clone(), "exp", exp).to_string().as_bytes(),
        );
    }
    signed_token(
        "exp-missing",
        0,
        None,
        without(main.clone(), "exp").to_string().as_bytes(),
    );
    signed_token(
        "exp-overflow-literal",
        0,
        None,
        format!(
            r#"{{"iss":"{MAIN_ISS}","aud":"{}","exp":1e400}}"#,
            props::AUD
        )
        .as_bytes(),
    );
    signed_token(
        "nbf-future",
        0,
        None,
        with(main.clone(), "nbf", json!(props::FAR_EXP))
            .to_string()
            .as_bytes(),
    );
    signed_token(
        "iat-future",
        0,
        None,
        with(main.clone(), "iat", json!(props::FAR_EXP))
            .to_string()
            .as_bytes(),
    );
    signed_token(
        "iat-string",
        0,
        None,
        with(main.clone(), "iat", json!("0")).to_string().as_bytes(),
    );
    for (name, aud) in [
        ("aud-garbage-object", json!({"aud": props::AUD})),
        ("aud-numbers", json!([1, 2])),
        ("aud-other", json!("https://other.example")),
        ("aud-nested-array", json!([[props::AUD]])),
    ] {
        signed_token(
            name,
            0,
            None,
            with(main.clone(), "aud", aud).to_string().as_bytes(),
        );
    }
    signed_token(
        "aud-missing",
        0,
        None,
        without(main.clone(), "aud").to_string().as_bytes(),
    );
    signed_token(
        "iss-no-trailing-slash",
        0,
        None,
        with(main.clone(), "iss", json!("https://issuer.fuzz.example"))
            .to_string()
            .as_bytes(),
    );
    signed_token(
        "iss-extra-trailing-slash",
        0,
        None,
        with(main.clone(), "iss", json!("https://issuer.fuzz.example//"))
            .to_string()
            .as_bytes(),
    );
    signed_token(
        "iss-upper-case",
        0,
        None,
        with(main.clone(), "iss", json!("HTTPS://issuer.fuzz.example/"))
            .to_string()
            .as_bytes(),
    );
    signed_token(
        "iss-number",
        0,
        None,
        with(main.clone(), "iss", json!(1)).to_string().as_bytes(),
    );
    let hmac = good_claims(HMAC_ISS);
    signed_token(
        "hs256-typ-jwt",
        4,
        Some(br#"{"alg":"HS256","typ":"JWT"}"#),
        hmac.to_string().as_bytes(),
    );
    signed_token(
        "hs256-typ-application-at-jwt",
        4,
        Some(br#"{"alg":"HS256","typ":"application/AT+JWT"}"#),
        hmac.to_string().as_bytes(),
    );
    signed_token(
        "hs256-no-iat",
        4,
        None,
        without(hmac.clone(), "iat").to_string().as_bytes(),
    );
    signed_token(
        "hs256-lifetime-too-long",
        4,
        None,
        with(hmac.clone(), "iat", json!(0)).to_string().as_bytes(),
    );
    signed_token("hs256-on-rsa-issuer", 4, None, main.to_string().as_bytes());
    for (signer, iss) in [
        (0, MAIN_ISS),
        (2, MAIN_ISS),
        (3, MAIN_ISS),
        (4, HMAC_ISS),
        (6, MAIN_ISS),
    ] {
        signed_token(
            &format!("signed-{signer}-valid"),
            signer as u8,
            None,
            good_claims(iss).to_string().as_bytes(),
        );
    }
    // HAProxy's heap overflow came from a 21.8k-character ECDSA signature.
    let es = mint_json(2, &default(2), &main);
    let (signed, _) = es.rsplit_once('.').expect("three segments");
    raw_token(
        "oversized-signature-21k",
        &format!("{signed}.{}", "A".repeat(21_800)),
    );
    raw_token(
        "oversized-signature-7k",
        &format!("{signed}.{}", "A".repeat(7_000)),
    );
}

fn path_seeds() {
    // Selector byte: method index (GET 0, HEAD 1, POST 2, PUT 3, DELETE 4) | host index << 3.
    let cases: &[(&str, u8, &str)] = &[
        ("root", 0, "/"),
        ("healthz", 0, "/healthz"),
        ("orders", 0, "/api/orders/7"),
        ("orders-bare", 0, "/api/orders"),
        ("orders-x", 0, "/api/ordersX"),
        ("orders-delete-admin-host", 4 | 2 << 3, "/api/orders/7"),
        ("climb-to-admin", 0, "/public/../admin/x"),
        ("climb-above-root", 0, "/a/b/../../.."),
        ("encoded-dots", 0, "/%2e%2e/x"),
        ("encoded-dots-inside", 0, "/public/%2e%2E/admin"),
        ("unreserved-escape", 0, "/%61pi/orders/1"),
        ("encoded-slash", 0, "/public/a%2Fb"),
        ("encoded-slash-lower", 0, "/public/a%2fb"),
        ("encoded-backslash", 0, "/public/a%5Cb"),
        ("backslash", 0, "/public/a\\b"),
        ("path-parameter", 0, "/public/a;jsessionid=1"),
        ("encoded-semicolon", 0, "/public/a%3Bx"),
        ("encoded-hash", 0, "/public/a%23x"),
        ("fragment", 0, "/public/a#x"),
        ("double-slashes", 0, "//api//orders//1"),
        ("dot-segments", 0, "/api/./orders/./1/."),
        ("overlong-utf8", 0, "/%C0%AE%C0%AE/"),
        ("encoded-nul", 0, "/public/%00"),
        ("raw-nul", 0, "/public/\u{0}"),
        ("utf8-escaped", 0, "/public/%E2%82%AC"),
        ("utf8-raw", 0, "/public/\u{e9}"),
        (
            "absolute-form",
            0,
            "http://api.example.com/api/orders/1?x=1",
        ),
        (
            "absolute-form-upper",
            4 | 2 << 3,
            "HTTPS://Admin.Example.com:443/api/orders/1",
        ),
        (
            "absolute-form-host-differs",
            4 | 1 << 3,
            "http://admin.example.com/api/orders/1",
        ),
        ("absolute-form-userinfo", 0, "http://user@api.example.com/"),
        ("absolute-form-no-path", 0, "http://api.example.com?x"),
        ("asterisk", 5, "*"),
        ("authority-form", 0, "example.com:443"),
        ("single-star", 0, "/users/42/profile"),
        ("single-star-empty", 0, "/users//profile"),
        ("files", 0, "/files/x/raw/a/b?c=d&e"),
        ("escaped-space-route", 0, "/a%20b/c"),
        ("tilde", 0, "/~user/x"),
        ("tilde-escaped", 0, "/%7Euser/x"),
        ("wildcard-host", 3 << 3, "/tenant/x"),
        ("query-fragment", 0, "/public?token=a#b"),
        ("query-escapes", 0, "/api/orders/1?q=%2F..%2F&r=;"),
        ("query-utf8", 0, "/public/?q=\u{e9}"),
        ("query-empty", 0, "/public?"),
        ("angle-brackets", 0, "/public/a<b>"),
        ("double-quote", 0, "/public/a\"b"),
        ("braces", 0, "/public/{x}"),
        ("pipe-caret-backtick", 0, "/public/a|b^c`d"),
        ("percent-cut", 0, "/public/a%2"),
        ("percent-bad-hex", 0, "/public/a%zz"),
    ];
    for (name, sel, target) in cases {
        let mut data = vec![*sel];
        data.extend_from_slice(target.as_bytes());
        write("path_route", name, &data);
    }
}

fn config_seeds() {
    let example = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml"))
        .expect("config.example.yaml");
    write("config", "example", &example);
    write("config", "token-fixture", props::token_config().as_bytes());
    let base = "listen: 127.0.0.1:0\nupstreams:\n  app: { url: \"http://127.0.0.1:1\" }\n\
                issuers:\n  main:\n    issuer: https://i.example/\n    jwks_uri: https://i.example/jwks\n    audiences: [a]\n\
                routes:\n  - name: all\n    match: { path: /** }\n";
    write("config", "minimal", base.as_bytes());
    let cases: &[(&str, &str)] = &[
        ("empty", ""),
        ("not-a-map", "- 1\n- 2\n"),
        ("unknown-key", "listen: 127.0.0.1:0\nlisten_typo: 1\n"),
        ("tab-indent", "listen: 127.0.0.1:0\nupstreams:\n\tapp: x\n"),
        ("bad-duration", "issuers:\n  a:\n    leeway: 30 parsecs\n"),
        (
            "alg-none",
            "issuers:\n  a:\n    issuer: x\n    audiences: [a]\n    algorithms: [none]\n",
        ),
        (
            "anchors",
            "upstreams: &u\n  app: { url: \"http://127.0.0.1:1\" }\nx: *u\n",
        ),
        (
            "deep-nesting",
            &format!("{}1{}", "[".repeat(200), "]".repeat(200)),
        ),
        ("crlf", "listen: 127.0.0.1:0\r\nupstreams: 7\r\n"),
        ("lone-cr", "listen: 127.0.0.1:0\rupstreams: 7\r"),
        (
            "unicode-line-separator",
            "listen: 127.0.0.1:0\u{2028}upstreams: 7\n",
        ),
        (
            "duplicate-key",
            "listen: 127.0.0.1:0\nlisten: 127.0.0.1:1\n",
        ),
        (
            "http-jwks-without-allow-http",
            &base.replace("https://i.example/jwks", "http://i.example/jwks"),
        ),
        (
            "duplicate-route-names",
            &format!("{base}  - name: all\n    match: {{ path: / }}\n"),
        ),
        (
            "unknown-upstream",
            &format!("{base}    upstream: nowhere\n"),
        ),
        (
            "unresolvable-upstream",
            &base.replace("127.0.0.1:1", "no-such-host.invalid:1"),
        ),
        (
            "hmac-env-missing",
            &base.replace(
                "    jwks_uri: https://i.example/jwks\n",
                "    hmac_secret_env: PORTCULLIS_FUZZ_UNSET\n    algorithms: [HS256]\n",
            ),
        ),
        (
            "jwks-inline-bad",
            &base.replace(
                "jwks_uri: https://i.example/jwks",
                "jwks: { keys: [ { kty: RSA, n: AQAB, e: AQAB } ] }",
            ),
        ),
        (
            "jwks-file-relative",
            &base.replace("jwks_uri: https://i.example/jwks", "jwks_file: jwks.json"),
        ),
        ("pattern-not-canonical", &base.replace("/**", "/a/../b")),
        (
            "reserved-identity-header",
            &format!("{base}identity:\n  headers:\n    authorization: sub\n"),
        ),
        (
            "bad-pointer",
            &format!("{base}identity:\n  headers:\n    x-auth-x: /a~2\n"),
        ),
        (
            "tls-set",
            &format!("{base}tls: {{ cert_file: a, key_file: b }}\n"),
        ),
    ];
    for (name, text) in cases {
        write("config", name, text.as_bytes());
    }
}

fn identity_seeds() {
    let full = json!({
        "sub": "u1", "email": "u1@example.com", "scope": "read:orders write:orders",
        "scp": ["a", "b"], "permissions": ["p:1"], "ext": {"scopes": "x y"},
        "https://example.com/roles": ["admin", "ops"], "org": {"id": 7}, "groups": ["g1", "g2"],
        "": "empty-key", "a~b/c": "tilde", "name": "Jos\u{e9}", "admin": true,
    });
    let cases: Vec<(&str, Value)> = vec![
        ("full", full.clone()),
        ("crlf-sub", json!({"sub": "a\r\nx-injected: 1"})),
        (
            "lf-in-role",
            json!({"https://example.com/roles": ["ok", "bad\nrole"]}),
        ),
        ("nul-email", json!({"email": "a\u{0}b"})),
        ("tab-name", json!({"name": "a\tb"})),
        ("del-name", json!({"name": "a\u{7f}"})),
        ("crlf-in-scope", json!({"scope": "a\r\nb"})),
        ("scope-vertical-tab", json!({"scope": "a\u{b}b"})),
        ("crlf-nested-object", json!({"org": {"id": {"x": "\r\n"}}})),
        ("max-length", json!({"sub": "a".repeat(8192)})),
        ("over-length", json!({"sub": "a".repeat(8193)})),
        (
            "nulls-and-empties",
            json!({"sub": null, "email": "", "https://example.com/roles": [null, "", []], "groups": [null]}),
        ),
        (
            "nested-arrays",
            json!({"https://example.com/roles": [["a", ["b"]], {"c": 1}, 2, false]}),
        ),
        (
            "numbers",
            json!({"sub": 1.5e300, "email": -0.0, "name": 18446744073709551615u64, "admin": false}),
        ),
        ("line-separator", json!({"sub": "a\u{2028}b\u{85}"})),
        ("not-an-object", json!(["sub", "u1"])),
        ("string-claims", json!("sub")),
        ("empty-object", json!({})),
    ];
    for (name, claims) in &cases {
        for sel in [0u8, 1] {
            let mut data = vec![sel];
            data.extend_from_slice(claims.to_string().as_bytes());
            write("identity", &format!("{name}-{sel}"), &data);
        }
    }
    write(
        "identity",
        "duplicate-keys-0",
        b"\0{\"sub\":\"a\",\"sub\":\"b\\r\\n\"}",
    );
}

/// Rewrite `fuzz/seeds/`. Not part of the normal run: the seeds are committed.
#[test]
#[ignore]
fn write_seeds() {
    token_seeds();
    path_seeds();
    config_seeds();
    identity_seeds();
}
