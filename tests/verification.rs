//! JWT verification (docs/behaviour.md, "Verification") against the real gateway: accepted algorithms, registered
//! claims and leeway, issuer and audience rules, header rules (`alg`, `none`, `crit`, `typ`),
//! key confusion, signature and key checks, kid-miss refetch and rotation, malformed and
//! oversized tokens, HMAC issuers, route-narrowed issuers, and an unreachable issuer.
mod common;
use common::*;

use base64::Engine;
use jsonwebtoken::Algorithm;
use portcullis::demo::keys::{b64, jwks, SigningKey};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The `refetch_cooldown` of issuer `main` in the standard config, plus a margin.
const PAST_COOLDOWN: Duration = Duration::from_millis(1300);

/// The JOSE header `SigningKey::mint` writes, for tweaking.
fn header_of(key: &SigningKey) -> Value {
    json!({"alg": format!("{:?}", key.alg), "typ": "JWT", "kid": key.kid})
}

/// A copy of `token` whose signature has one byte flipped (still valid base64url).
fn flip_signature_byte(token: &str) -> String {
    let (signed, sig) = token.rsplit_once('.').expect("compact JWS");
    let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .expect("base64url signature");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    format!("{signed}.{}", b64(&bytes))
}

/// An issuer block `name` for `iss` with these keys inline, audience `AUD` and these algorithms.
fn inline_issuer(name: &str, iss: &str, keys: &[&SigningKey], algs: &[&str]) -> IssuerBlock {
    IssuerBlock::new(name, iss)
        .jwks(jwks(keys))
        .audiences(&[AUD])
        .algorithms(algs)
}

// ---------------------------------------------------------------------------------------------
// Algorithms and signatures

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_ps256_es256_and_eddsa_tokens_are_all_accepted() {
    let s = setup().await;
    let i = &s.issuer;
    for key in [&i.rs, &i.ps, &i.es, &i.ed] {
        let token = key.mint(&i.claims(json!({})));
        let r = s.gw.get_bearer("/api/things", &token).await;
        assert_eq!(r.status, 200, "{:?} refused: {:?}", key.alg, r.body);
        let echo = r.echo();
        assert_eq!(echo.target, "/api/things");
        assert_eq!(echo.header("x-auth-subject"), Some("user-1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_algorithm_outside_the_allow_list_is_refused() {
    let s = setup().await;
    let claims = s.issuer.claims(json!({}));

    // ES384 with a key the gateway has never seen.
    let es384 = SigningKey::generate("es384", Algorithm::ES384);
    let r = s.gw.get_bearer("/api/x", &es384.mint(&claims)).await;
    assert_refused_as(&r, "algorithm not allowed");

    // RS384 claiming the kid of the published RS256 key: the allow-list comes first.
    let rs384 = SigningKey::generate("rs", Algorithm::RS384);
    let r = s.gw.get_bearer("/api/x", &rs384.mint(&claims)).await;
    assert_refused_as(&r, "algorithm not allowed");

    // An alg nobody has heard of.
    let token = s
        .issuer
        .rs
        .mint_with_header(&json!({"alg": "RS999", "kid": "rs"}), &claims);
    let r = s.gw.get_bearer("/api/x", &token).await;
    assert_refused_as(&r, "algorithm not allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alg_none_is_refused_in_every_casing_with_or_without_a_signature() {
    let s = setup().await;
    let claims = s.issuer.claims(json!({})).to_string();
    for alg in ["none", "None", "NONE", "nOnE"] {
        for kid in [None, Some("rs")] {
            let mut header = json!({"alg": alg, "typ": "JWT"});
            if let Some(kid) = kid {
                header["kid"] = json!(kid);
            }
            let unsigned = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(claims.as_bytes())
            );

            // Empty signature: refused, whether as malformed or as a forbidden alg.
            let r = s.gw.get_bearer("/api/x", &format!("{unsigned}.")).await;
            assert_denied(&r, 401, "invalid_token");
            let why = description(&r);
            assert!(
                why == "malformed token" || why == "algorithm not allowed",
                "alg {alg}, empty signature: {why}"
            );

            // Arbitrary signature bytes, and the RS256 key's real signature over the input.
            let real = b64(&s.issuer.rs.sign(unsigned.as_bytes()));
            for sig in ["c2lnbmF0dXJl".to_string(), real] {
                let r =
                    s.gw.get_bearer("/api/x", &format!("{unsigned}.{sig}"))
                        .await;
                assert_refused_as(&r, "algorithm not allowed");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_signed_with_the_rsa_public_key_is_refused() {
    // Key confusion: the attacker knows the public key and uses it as an HMAC secret. `mixed`
    // allows RS256 and HS256 (with its own secret): HMAC must never use the JWKS key there
    // either.
    let secret = "a-secret-of-at-least-32-bytes-for-mixed!";
    let mixed_iss = "https://mixed.example/";
    let issuer = TestIssuer::start().await;
    let echo = start_echo().await;
    let mixed = inline_issuer("mixed", mixed_iss, &[&issuer.rs], &["RS256", "HS256"])
        .hmac_secret_env("PORTCULLIS_TEST_MIXED_SECRET");
    let gw = start_gateway_env(
        &standard_config(&issuer.url(), echo).issuer(mixed).yaml(),
        &[("PORTCULLIS_TEST_MIXED_SECRET", secret)],
    );
    gw.wait_ready().await;

    let public_der = issuer.rs.public_key_bytes();
    let public_jwk = issuer.rs.jwk().to_string().into_bytes();
    for material in [&public_der, &public_jwk] {
        let forged = SigningKey::hmac("rs", Algorithm::HS256, material);

        // Issuer `main` does not allow HS256 at all.
        let token = forged.mint(&issuer.claims(json!({})));
        let r = gw.get_bearer("/api/x", &token).await;
        assert_refused_as(&r, "algorithm not allowed");

        // Issuer `mixed` allows HS256, but only with its configured secret.
        let token = forged.mint(&issuer.claims(json!({"iss": mixed_iss})));
        let r = gw.get_bearer("/api/x", &token).await;
        assert_refused_as(&r, "invalid signature");
    }

    // The control cases: the mixed issuer does accept its secret and its RSA key.
    let good = SigningKey::hmac("h", Algorithm::HS256, secret.as_bytes());
    let r = gw
        .get_bearer(
            "/api/x",
            &good.mint(&issuer.claims(json!({"iss": mixed_iss}))),
        )
        .await;
    assert_forwarded(&r);
    let r = gw
        .get_bearer(
            "/api/x",
            &issuer.rs.mint(&issuer.claims(json!({"iss": mixed_iss}))),
        )
        .await;
    assert_forwarded(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crit_header_is_refused() {
    let s = setup().await;
    let claims = s.issuer.claims(json!({}));
    for crit in [json!(["exp"]), json!(["b64"]), json!([])] {
        let mut header = header_of(&s.issuer.rs);
        header["crit"] = crit.clone();
        if crit == json!(["b64"]) {
            header["b64"] = json!(true);
        }
        let token = s.issuer.rs.mint_with_header(&header, &claims);
        let r = s.gw.get_bearer("/api/x", &token).await;
        assert_refused_as(&r, "unsupported critical header");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signature_is_refused() {
    let s = setup().await;
    let i = &s.issuer;
    let claims = i.claims(json!({}));

    // One flipped bit in the signature, for every key type.
    for key in [&i.rs, &i.ps, &i.es, &i.ed] {
        let token = flip_signature_byte(&key.mint(&claims));
        let r = s.gw.get_bearer("/api/x", &token).await;
        assert_refused_as(&r, "invalid signature");
    }

    // Another key of the same type claiming a published kid.
    for (kid, alg) in [
        ("rs", Algorithm::RS256),
        ("es", Algorithm::ES256),
        ("ed", Algorithm::EdDSA),
    ] {
        let impostor = SigningKey::generate(kid, alg);
        let r = s.gw.get_bearer("/api/x", &impostor.mint(&claims)).await;
        assert_refused_as(&r, "invalid signature");
    }

    // Claims changed after signing.
    let token = i.rs.mint(&claims);
    let (_, rest) = token.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let header = b64(header_of(&i.rs).to_string().as_bytes());
    let tampered = i.claims(json!({"sub": "admin"})).to_string();
    let token = format!("{header}.{}.{sig}", b64(tampered.as_bytes()));
    let r = s.gw.get_bearer("/api/x", &token).await;
    assert_refused_as(&r, "invalid signature");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_whose_type_does_not_fit_the_alg_is_refused() {
    let s = setup().await;
    let i = &s.issuer;
    let claims = i.claims(json!({}));

    // ES256 signed by the EC key, but naming the RSA key's kid.
    let token =
        i.es.mint_with_header(&json!({"alg": "ES256", "typ": "JWT", "kid": "rs"}), &claims);
    let r = s.gw.get_bearer("/api/x", &token).await;
    assert_refused_as(&r, "signing key does not fit the algorithm");

    // EdDSA naming the EC key.
    let token =
        i.ed.mint_with_header(&json!({"alg": "EdDSA", "typ": "JWT", "kid": "es"}), &claims);
    let r = s.gw.get_bearer("/api/x", &token).await;
    assert_refused_as(&r, "signing key does not fit the algorithm");

    // RS256 naming the Ed25519 key.
    let token =
        i.rs.mint_with_header(&json!({"alg": "RS256", "typ": "JWT", "kid": "ed"}), &claims);
    let r = s.gw.get_bearer("/api/x", &token).await;
    assert_refused_as(&r, "signing key does not fit the algorithm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwk_whose_alg_or_use_disagrees_with_the_token_is_refused() {
    let issuer = TestIssuer::start().await;
    // An RSA key published for PS256 only, and one published for encryption.
    let ps_only = SigningKey::generate("ps-only", Algorithm::RS256);
    let mut ps_only_jwk = ps_only.jwk();
    ps_only_jwk["alg"] = json!("PS256");
    let enc = SigningKey::generate("enc", Algorithm::RS256);
    let mut enc_jwk = enc.jwk();
    enc_jwk["use"] = json!("enc");
    let mut set = jwks(&[&issuer.rs, &issuer.ps, &issuer.es, &issuer.ed]);
    set["keys"]
        .as_array_mut()
        .unwrap()
        .extend([ps_only_jwk, enc_jwk]);
    issuer.server.set_jwks(set);
    let echo = start_echo().await;
    let gw = start_gateway(&standard_config(&issuer.url(), echo).yaml());
    gw.wait_ready().await;
    let claims = issuer.claims(json!({}));

    // A valid RS256 signature, but the JWK says PS256.
    let r = gw.get_bearer("/api/x", &ps_only.mint(&claims)).await;
    assert_refused_as(&r, "signing key does not fit the algorithm");

    // A valid RS256 signature by a key whose `use` is `enc`.
    let r = gw.get_bearer("/api/x", &enc.mint(&claims)).await;
    assert_denied(&r, 401, "invalid_token");
    let why = description(&r);
    assert!(
        why == "unknown signing key" || why == "signing key does not fit the algorithm",
        "use: enc key: {why}"
    );

    // The published signing keys still work next to them.
    assert_forwarded(&gw.get_bearer("/api/x", &issuer.rs.mint(&claims)).await);
}

// ---------------------------------------------------------------------------------------------
// Time claims

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused_beyond_the_leeway_and_accepted_within_it() {
    let s = setup().await;
    let t = now();
    let expired = s.issuer.token(json!({"iat": t - 3600, "exp": t - 60}));
    let r = s.gw.get_bearer("/api/x", &expired).await;
    assert_refused_as(&r, "token expired");

    let long_expired = s.issuer.token(json!({"iat": t - 7200, "exp": t - 3600}));
    let r = s.gw.get_bearer("/api/x", &long_expired).await;
    assert_refused_as(&r, "token expired");

    // Ten seconds past exp is inside the default 30 s leeway.
    let just_expired = s.issuer.token(json!({"iat": t - 3600, "exp": t - 10}));
    assert_forwarded(&s.gw.get_bearer("/api/x", &just_expired).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_not_yet_valid_is_refused_beyond_the_leeway() {
    let s = setup().await;
    let t = now();
    let r =
        s.gw.get_bearer("/api/x", &s.issuer.token(json!({"nbf": t + 120})))
            .await;
    assert_refused_as(&r, "token not yet valid");

    // Ten seconds of clock skew is inside the leeway.
    let r =
        s.gw.get_bearer("/api/x", &s.issuer.token(json!({"nbf": t + 10})))
            .await;
    assert_forwarded(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_issued_in_the_future_is_refused_beyond_the_leeway() {
    let s = setup().await;
    let t = now();
    let r =
        s.gw.get_bearer("/api/x", &s.issuer.token(json!({"iat": t + 120})))
            .await;
    assert_refused_as(&r, "token issued in the future");

    let r =
        s.gw.get_bearer("/api/x", &s.issuer.token(json!({"iat": t + 10})))
            .await;
    assert_forwarded(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_a_numeric_exp_is_refused() {
    let s = setup().await;
    let far = now() + 3600;
    let cases = [
        json!({"exp": null}),
        json!({"exp": "soon"}),
        json!({"exp": far.to_string()}),
        json!({"exp": true}),
        json!({"exp": [far]}),
        json!({"exp": {"at": far}}),
    ];
    for extra in cases {
        let r =
            s.gw.get_bearer("/api/x", &s.issuer.token(extra.clone()))
                .await;
        assert_refused_as(&r, "token has no valid expiry");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_numeric_nbf_or_iat_is_refused() {
    let s = setup().await;
    let t = now();
    for extra in [
        json!({"nbf": (t - 10).to_string()}),
        json!({"iat": "yesterday"}),
    ] {
        let r =
            s.gw.get_bearer("/api/x", &s.issuer.token(extra.clone()))
                .await;
        assert_denied(&r, 401, "invalid_token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_living_longer_than_max_token_lifetime_is_refused() {
    let iss = "https://short-lived.example/";
    let s = setup_with(|config, i| {
        config.issuer(
            inline_issuer("short", iss, &[&i.rs], &["RS256"]).set("max_token_lifetime", "1h"),
        )
    })
    .await;
    let t = now();
    let long = s
        .issuer
        .token(json!({"iss": iss, "iat": t - 60, "exp": t + 7200}));
    let r = s.gw.get_bearer("/api/x", &long).await;
    assert_refused_as(&r, "token lifetime too long");

    let short = s
        .issuer
        .token(json!({"iss": iss, "iat": t - 60, "exp": t + 1800}));
    assert_forwarded(&s.gw.get_bearer("/api/x", &short).await);

    // Issuer `main` has no limit: the long lifetime is fine there.
    let long_main = s.issuer.token(json!({"iat": t - 60, "exp": t + 7200}));
    assert_forwarded(&s.gw.get_bearer("/api/x", &long_main).await);
}

// ---------------------------------------------------------------------------------------------
// Issuer and audience

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_an_unknown_issuer_is_refused() {
    let s = setup().await;
    let url = s.issuer.url();
    for iss in [
        json!("https://evil.example/"),
        json!(format!("{url}/")),
        json!(url.to_uppercase()),
        json!(null),
        json!(7),
    ] {
        let r =
            s.gw.get_bearer("/api/x", &s.issuer.token(json!({"iss": iss.clone()})))
                .await;
        assert_eq!(r.status, 401, "iss {iss}");
        assert_refused_as(&r, "unknown issuer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_another_audience_is_refused() {
    let s = setup().await;
    for aud in [
        json!("api://nope"),
        json!("API://TEST"),
        json!(null),
        json!([]),
        json!(["api://nope", "api://else"]),
        json!(7),
    ] {
        let r =
            s.gw.get_bearer("/api/x", &s.issuer.token(json!({"aud": aud.clone()})))
                .await;
        assert_eq!(r.status, 401, "aud {aud}");
        assert_refused_as(&r, "audience not allowed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audience_array_holding_an_accepted_audience_is_accepted() {
    let s = setup().await;
    for aud in [
        json!(["api://nope", "api://test"]),
        json!(["api://other"]),
        json!("api://other"),
    ] {
        let r =
            s.gw.get_bearer("/api/x", &s.issuer.token(json!({"aud": aud.clone()})))
                .await;
        assert_eq!(
            r.status,
            200,
            "aud {aud}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        assert_forwarded(&r);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_narrowed_to_another_issuer_refuses_a_main_token() {
    let other_iss = "https://other.example/";
    let issuer = TestIssuer::start().await;
    let echo = start_echo().await;
    let other = SigningKey::generate("other-rs", Algorithm::RS256);
    let yaml = standard_config(&issuer.url(), echo)
        .issuer(inline_issuer("other", other_iss, &[&other], &["RS256"]))
        .route_first(Route::new("other-only", "/other-only/**").set("issuers", "[other]"))
        .yaml();
    let gw = start_gateway(&yaml);
    gw.wait_ready().await;

    let main_token = issuer.token(json!({}));
    let r = gw.get_bearer("/other-only/x", &main_token).await;
    assert_refused_as(&r, "issuer not accepted on this route");

    let other_token = other.mint(&issuer.claims(json!({"iss": other_iss})));
    assert_forwarded(&gw.get_bearer("/other-only/x", &other_token).await);

    // The same main token is fine on a route that does not narrow issuers (and, cached now,
    // still refused on the narrowed one).
    assert_forwarded(&gw.get_bearer("/api/x", &main_token).await);
    let r = gw.get_bearer("/other-only/x", &main_token).await;
    assert_refused_as(&r, "issuer not accepted on this route");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_typ_refuses_jwt_and_accepts_at_jwt() {
    let iss = "https://typed.example/";
    let s = setup_with(|config, i| {
        config
            .issuer(inline_issuer("typed", iss, &[&i.rs], &["RS256"]).set("required_typ", "at+jwt"))
    })
    .await;
    let claims = s.issuer.claims(json!({"iss": iss}));
    let with_typ = |typ: Option<&str>| {
        let mut header = json!({"alg": "RS256", "kid": "rs"});
        if let Some(typ) = typ {
            header["typ"] = json!(typ);
        }
        s.issuer.rs.mint_with_header(&header, &claims)
    };

    for typ in [Some("JWT"), None, Some("at+jwt+extra"), Some("")] {
        let r = s.gw.get_bearer("/api/x", &with_typ(typ)).await;
        assert_eq!(r.status, 401, "typ {typ:?}");
        assert_refused_as(&r, "unexpected token type");
    }
    assert_forwarded(&s.gw.get_bearer("/api/x", &with_typ(Some("at+jwt"))).await);

    // Issuer `main` has no required_typ: typ JWT is fine there.
    assert_forwarded(&s.gw.get_bearer("/api/x", &s.issuer.token(json!({}))).await);
}

// ---------------------------------------------------------------------------------------------
// HMAC

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hmac_issuer_accepts_its_secret_and_refuses_any_other() {
    let secret = "0123456789abcdef0123456789abcdef-hmac";
    let iss = "https://hmac.example/";
    let issuer = TestIssuer::start().await;
    let echo = start_echo().await;
    let shared = IssuerBlock::new("shared", iss)
        .audiences(&[AUD])
        .algorithms(&["HS256"])
        .hmac_secret_env("PORTCULLIS_TEST_HMAC_SECRET");
    let gw = start_gateway_env(
        &standard_config(&issuer.url(), echo).issuer(shared).yaml(),
        &[("PORTCULLIS_TEST_HMAC_SECRET", secret)],
    );
    gw.wait_ready().await;
    let claims = issuer.claims(json!({"iss": iss}));

    let good = SigningKey::hmac("h", Algorithm::HS256, secret.as_bytes());
    assert_forwarded(&gw.get_bearer("/api/x", &good.mint(&claims)).await);

    // The same claims under a wrong secret.
    let wrong = SigningKey::hmac(
        "h",
        Algorithm::HS256,
        b"another-secret-of-32-bytes-or-more!!",
    );
    let r = gw.get_bearer("/api/x", &wrong.mint(&claims)).await;
    assert_refused_as(&r, "invalid signature");

    // The right token with a tampered signature.
    let r = gw
        .get_bearer("/api/x", &flip_signature_byte(&good.mint(&claims)))
        .await;
    assert_refused_as(&r, "invalid signature");

    // The right secret under an alg the issuer does not list.
    let hs384 = SigningKey::hmac("h", Algorithm::HS384, secret.as_bytes());
    let r = gw.get_bearer("/api/x", &hs384.mint(&claims)).await;
    assert_refused_as(&r, "algorithm not allowed");

    // An RS256 token naming the HMAC issuer: that issuer has no keys and allows no RS256.
    let r = gw.get_bearer("/api/x", &issuer.rs.mint(&claims)).await;
    assert_refused_as(&r, "algorithm not allowed");
}

// ---------------------------------------------------------------------------------------------
// Key lifecycle: unknown kid, rotation, removal, last-known-good

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_is_refused_after_exactly_one_refetch() {
    let s = setup().await;
    // Let the start-up fetch's cooldown pass so the kid miss may refetch.
    tokio::time::sleep(PAST_COOLDOWN).await;
    let claims = s.issuer.claims(json!({}));
    let before = s.issuer.server.fetches();
    let started = Instant::now();

    let token = s.issuer.rs.mint_with_header(
        &json!({"alg": "RS256", "typ": "JWT", "kid": "no-such-key"}),
        &claims,
    );
    let r = s.gw.get_bearer("/api/x", &token).await;
    assert_refused_as(&r, "unknown signing key");
    let after_one = s.issuer.server.fetches();
    assert_eq!(
        after_one - before,
        1,
        "an unknown kid triggers exactly one refetch"
    );

    // A flood of random kids: concurrent misses share the fetch, later ones wait for the
    // 1 s cooldown.
    let mut flood = Vec::new();
    for n in 0..24 {
        let token = s.issuer.rs.mint_with_header(
            &json!({"alg": "RS256", "typ": "JWT", "kid": format!("random-{n}-{}", rand::random::<u64>())}),
            &claims,
        );
        let addr = s.gw.addr;
        flood.push(tokio::spawn(async move {
            get_bearer_at(addr, "/api/x", &token).await
        }));
    }
    for task in flood {
        let r = task.await.expect("flood request");
        assert_refused_as(&r, "unknown signing key");
    }
    let elapsed = started.elapsed();
    let flood_fetches = s.issuer.server.fetches() - after_one;
    // A fetch in the flood needs a full cooldown (1 s) after the previous fetch ended.
    let allowed = elapsed.as_secs_f64().floor() as usize;
    assert!(
        flood_fetches <= allowed,
        "{flood_fetches} fetches for the flood in {elapsed:?} (at most one per 1 s cooldown)"
    );

    // Known keys still verify after all that.
    assert_forwarded(&s.gw.get_bearer("/api/x", &s.issuer.token(json!({}))).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_in_key_is_accepted_on_its_first_request() {
    let s = setup().await;
    tokio::time::sleep(PAST_COOLDOWN).await;
    let i = &s.issuer;
    let fresh = SigningKey::generate("rs-2", Algorithm::RS256);
    i.server
        .set_jwks(jwks(&[&i.rs, &i.ps, &i.es, &i.ed, &fresh]));
    let before = i.server.fetches();

    let token = fresh.mint(&i.claims(json!({})));
    let r = s.gw.get_bearer("/api/x", &token).await;
    assert_eq!(
        r.status,
        200,
        "first request with the new kid: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_forwarded(&r);
    assert_eq!(i.server.fetches() - before, 1, "one kid-miss refetch");

    // The old key keeps working, and the new one needs no further fetch.
    assert_forwarded(&s.gw.get_bearer("/api/x", &i.token(json!({}))).await);
    assert_forwarded(
        &s.gw
            .get_bearer("/api/x", &fresh.mint(&i.claims(json!({"jti": "second"}))))
            .await,
    );
    assert_eq!(i.server.fetches() - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_with_a_new_kid_share_one_refetch_and_all_pass() {
    let s = setup().await;
    tokio::time::sleep(PAST_COOLDOWN).await;
    let i = &s.issuer;
    let fresh = SigningKey::generate("rs-3", Algorithm::RS256);
    i.server
        .set_jwks(jwks(&[&i.rs, &i.ps, &i.es, &i.ed, &fresh]));
    let before = i.server.fetches();

    let mut requests = Vec::new();
    for n in 0..16 {
        let token = fresh.mint(&i.claims(json!({"jti": format!("concurrent-{n}")})));
        let addr = s.gw.addr;
        requests.push(tokio::spawn(async move {
            get_bearer_at(addr, "/api/x", &token).await
        }));
    }
    for task in requests {
        let r = task.await.expect("request");
        assert_eq!(
            r.status,
            200,
            "a request racing the kid-miss refetch: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    assert_eq!(i.server.fetches() - before, 1, "one shared refetch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_removed_from_the_set_stops_verifying_cached_tokens_too() {
    let s = setup().await;
    let i = &s.issuer;
    let token = i.token(json!({}));
    // Verified twice, so now in the verified-token cache (a token is admitted on its second
    // verification).
    assert_forwarded(&s.gw.get_bearer("/api/x", &token).await);
    assert_forwarded(&s.gw.get_bearer("/api/x", &token).await);

    i.server.set_jwks(jwks(&[&i.ps, &i.es, &i.ed]));
    tokio::time::sleep(PAST_COOLDOWN).await;
    // A kid miss makes the gateway fetch the new set.
    let before = i.server.fetches();
    let probe = i.ps.mint_with_header(
        &json!({"alg": "PS256", "typ": "JWT", "kid": "probe"}),
        &i.claims(json!({})),
    );
    assert_refused_as(
        &s.gw.get_bearer("/api/x", &probe).await,
        "unknown signing key",
    );
    assert_eq!(i.server.fetches() - before, 1);

    let r = s.gw.get_bearer("/api/x", &token).await;
    assert_refused_as(&r, "unknown signing key");
    let r =
        s.gw.get_bearer("/api/x", &i.token(json!({"sub": "user-1"})))
            .await;
    assert_refused_as(&r, "unknown signing key");
    // The keys that stayed still verify.
    assert_forwarded(
        &s.gw
            .get_bearer("/api/x", &i.ps.mint(&i.claims(json!({}))))
            .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_key_set_response_keeps_the_last_good_keys() {
    let s = setup().await;
    let i = &s.issuer;
    for broken in [json!({"keys": []}), json!({"nope": 1}), json!([1, 2])] {
        i.server.set_jwks(broken.clone());
        // Kid misses ask for a refetch (at most once per cooldown; failed fetches are also
        // retried in the background): wait until the gateway has fetched the broken document.
        let before = i.server.fetches();
        let deadline = Instant::now() + Duration::from_secs(10);
        while i.server.fetches() == before {
            assert!(Instant::now() < deadline, "no refetch with {broken}");
            let probe = i.rs.mint_with_header(
                &json!({"alg": "RS256", "typ": "JWT", "kid": "probe"}),
                &i.claims(json!({})),
            );
            assert_refused_as(
                &s.gw.get_bearer("/api/x", &probe).await,
                "unknown signing key",
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // A token never seen before (not cached) still verifies with the last good keys.
        let fresh =
            i.es.mint(&i.claims(json!({"jti": rand::random::<u64>().to_string()})));
        assert_forwarded(&s.gw.get_bearer("/api/x", &fresh).await);
        assert_eq!(s.gw.admin_get("/readyz").await.status, 200);
    }
}

// ---------------------------------------------------------------------------------------------
// Malformed and oversized tokens

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_tokens_are_401_invalid_token_not_400() {
    let s = setup().await;
    let i = &s.issuer;
    let valid = i.token(json!({}));
    let (h, rest) = valid.split_once('.').unwrap();
    let (p, sig) = rest.split_once('.').unwrap();
    let header = header_of(&i.rs).to_string();
    let claims = i.claims(json!({})).to_string();
    let dup_sub = format!("{{\"sub\":\"a\",\"sub\":\"b\",{}", &claims[1..]);

    let cases: Vec<(&str, String)> = vec![
        ("one segment", h.to_string()),
        ("two segments", format!("{h}.{p}")),
        ("four segments", format!("{valid}.{sig}")),
        ("empty signature", format!("{h}.{p}.")),
        ("empty segments", "..".to_string()),
        ("bad base64 in header (+)", format!("{h}+.{p}.{sig}")),
        ("bad base64 in payload (~)", format!("{h}.{p}~.{sig}")),
        (
            "impossible base64 length",
            format!("{h}.{}.{sig}", &p[..(p.len() - 1) / 4 * 4 + 1]),
        ),
        (
            "header not JSON",
            i.rs.mint_raw(b"not json", claims.as_bytes()),
        ),
        (
            "header a JSON array",
            i.rs.mint_raw(b"[\"RS256\"]", claims.as_bytes()),
        ),
        (
            "header without alg",
            i.rs.mint_raw(br#"{"kid":"rs","typ":"JWT"}"#, claims.as_bytes()),
        ),
        (
            "payload a JSON array",
            i.rs.mint_raw(header.as_bytes(), b"[1,2,3]"),
        ),
        (
            "payload a JSON string",
            i.rs.mint_raw(header.as_bytes(), b"\"sub\""),
        ),
        (
            "payload not JSON",
            i.rs.mint_raw(header.as_bytes(), b"{\"iss\":"),
        ),
        (
            "payload with a duplicate claim",
            i.rs.mint_raw(header.as_bytes(), dup_sub.as_bytes()),
        ),
        ("not a JWT at all", "abcdef".to_string()),
    ];
    for (what, token) in cases {
        let r = s.gw.get_bearer("/api/x", &token).await;
        assert_eq!(
            r.status,
            401,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_denied(&r, 401, "invalid_token");
        assert_eq!(description(&r), "malformed token", "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_longer_than_max_token_bytes_is_refused_before_decoding() {
    let s = setup().await;
    let i = &s.issuer;
    let big = i.token(json!({"pad": "x".repeat(9000)}));
    assert!(big.len() > 8192);
    let r = s.gw.get_bearer("/api/x", &big).await;
    assert_refused_as(&r, "token too large");

    // Garbage that long is judged by its size, not its content.
    let r = s.gw.get_bearer("/api/x", &"a".repeat(8193)).await;
    assert_refused_as(&r, "token too large");

    // A valid token just under the limit still goes through.
    let near = (5000..7000)
        .map(|n| i.token(json!({"pad": "x".repeat(n)})))
        .take_while(|t| t.len() <= 8192)
        .last()
        .expect("a token under the limit");
    assert!(near.len() > 8150, "token of {} bytes", near.len());
    assert_forwarded(&s.gw.get_bearer("/api/x", &near).await);
}

// ---------------------------------------------------------------------------------------------
// Issuer without keys

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_issuer_gives_503_keys_unavailable_and_not_ready() {
    let echo = start_echo().await;
    let dead = dead_port();
    let iss = format!("http://{dead}");
    let yaml = Config::new()
        .upstream("echo", &format!("http://{echo}"))
        .default_upstream("echo")
        .issuer(
            IssuerBlock::new("down", &iss)
                .jwks_uri(&format!("http://{dead}/jwks.json"))
                .allow_http()
                .audiences(&[AUD])
                .algorithms(&["RS256"]),
        )
        .route(Route::new("health", "/healthz").auth("none"))
        .route(Route::new("api", "/api/**"))
        .yaml();
    let gw = start_gateway(&yaml);
    let key = SigningKey::generate("rs", Algorithm::RS256);
    let t = now();
    let claims = json!({"iss": iss, "aud": AUD, "sub": "user-1", "iat": t, "exp": t + 3600});

    let r = gw.get_bearer("/api/x", &key.mint(&claims)).await;
    assert_denied(&r, 503, "keys_unavailable");
    assert_eq!(gw.admin_get("/readyz").await.status, 503);

    // A token of no configured issuer is still a plain 401, and public routes still serve.
    let stranger = key.mint(&json!({"iss": "https://evil.example/", "aud": AUD, "exp": t + 3600}));
    assert_refused_as(&gw.get_bearer("/api/x", &stranger).await, "unknown issuer");
    assert_eq!(gw.get("/healthz", &[]).await.status, 200);

    // Still unavailable on a second try (after the back-off has retried at least once).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = gw.get_bearer("/api/x", &key.mint(&claims)).await;
    assert_denied(&r, 503, "keys_unavailable");
    assert_eq!(gw.admin_get("/readyz").await.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_cache_admits_a_token_on_its_second_verification_and_never_serves_it_after_exp() {
    let issuer = TestIssuer::start().await;
    let echo = start_echo().await;
    let config = Config::new()
        .upstream("echo", &format!("http://{echo}"))
        .default_upstream("echo")
        .issuer(
            IssuerBlock::new("main", &issuer.url())
                .discovery()
                .allow_http()
                .audiences(&[AUD])
                .algorithms(&["RS256"])
                .set("leeway", "0s"),
        )
        .identity_header("x-auth-subject", "sub")
        .route(Route::new("api", "/api/**"));
    let gw = start_gateway(&config.yaml());
    gw.wait_ready().await;
    let hit = r#"portcullis_token_cache_requests_total{result="hit"}"#;
    let miss = r#"portcullis_token_cache_requests_total{result="miss"}"#;
    // Out of the leeway window (none here) for a few seconds: cacheable.
    let exp = now() + 6;
    let token = issuer.token(json!({ "exp": exp }));

    assert_forwarded(&gw.get_bearer("/api/x", &token).await);
    assert_forwarded(&gw.get_bearer("/api/x", &token).await);
    assert_eq!(
        gw.metric(hit).await,
        0.0,
        "cached on its first verification"
    );
    assert_eq!(gw.metric(miss).await, 2.0);
    assert_forwarded(&gw.get_bearer("/api/x", &token).await);
    assert_eq!(
        gw.metric(hit).await,
        1.0,
        "not cached on its second verification"
    );
    assert_eq!(gw.metric("portcullis_token_cache_entries").await, 1.0);
    // It holds its rendered `x-auth-subject: user-1`.
    assert!(gw.metric("portcullis_token_cache_bytes").await > 0.0);

    // From the second `exp` on, the cached token is expired: refused, not served from the cache.
    while now() < exp {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_refused_as(&gw.get_bearer("/api/x", &token).await, "token expired");
}
