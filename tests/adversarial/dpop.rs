//! Table 7: DPoP proofs (RFC 9449 section 4.3). A token bound to the client's key, and one
//! case per check a forged, stolen or sloppy proof must fail; the normalisations the RFC asks
//! for (default port, scheme and host case) pass. Replay across HTTP/1.1 and HTTP/2
//! connections, and a flood that fills the replay cache, are tests of their own below.
use super::common::*;
use super::table::*;

use jsonwebtoken::Algorithm;
use portcullis::demo::keys::{b64, SigningKey};
use serde_json::{json, Value};

const TARGET: &str = "/api/orders/1";
const HTU: &str = "http://gateway.test/api/orders/1";
/// `dpop.max_age` (default) plus the standard issuer's leeway (default).
const WINDOW: i64 = 60 + 30;

fn bound(r: &Rig, key: &SigningKey) -> String {
    let mut claims = r.issuer.claims(json!({"scope": "read:orders"}));
    claims["cnf"] = json!({"jkt": key.jkt()});
    r.issuer.rs.mint(&claims)
}

fn dpop(target: &str, token: &str, proofs: &[&str]) -> Vec<u8> {
    let auth = format!("DPoP {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    headers.extend(proofs.iter().map(|p| ("DPoP", *p)));
    get(target, &headers)
}

/// A proof with this header and claims, signed by `signer`.
fn forged(signer: &SigningKey, header: Value, claims: Value) -> String {
    signer.mint_with_header(&header, &claims)
}

fn proof_claims(token: &str, extra: Value) -> Value {
    let mut c = json!({
        "jti": b64(&rand::random::<[u8; 16]>()),
        "htm": "GET",
        "htu": HTU,
        "iat": now(),
        "ath": b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref()),
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn invalid_proof() -> Want {
    Want::Deny(401, "invalid_dpop_proof")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_proof_check_refuses_its_forgery() {
    let r = rig(|config| config).await;
    let key = SigningKey::generate("client", Algorithm::ES256);
    let other = SigningKey::generate("other", Algorithm::ES256);
    let token = bound(&r, &key);
    let reader = user(TARGET, &token)
        .and("x-auth-scopes", is("read:orders"))
        .and("dpop", H::Absent);
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk()});
    let proof = |extra: Value| key.dpop_proof("GET", HTU, Some(&token), &extra);
    let mut t: Vec<Case> = Vec::new();

    t.push(case(
        "control_valid_proof",
        dpop(TARGET, &token, &[&proof(json!({}))]),
        reader.clone(),
    ));

    // The key: public only, and the one that signed.
    let mut private = key.public_jwk();
    private["d"] = json!(b64(&[7u8; 32]));
    t.push(case(
        "private_key_in_jwk",
        dpop(
            TARGET,
            &token,
            &[&forged(
                &key,
                json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private}),
                proof_claims(&token, json!({})),
            )],
        ),
        invalid_proof(),
    ));
    let unsigned = format!(
        "{}.{}.",
        b64(
            json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.public_jwk()})
                .to_string()
                .as_bytes()
        ),
        b64(proof_claims(&token, json!({})).to_string().as_bytes())
    );
    t.push(case(
        "alg_none",
        dpop(TARGET, &token, &[&unsigned]),
        invalid_proof(),
    ));
    let hmac = SigningKey::hmac("h", Algorithm::HS256, &key.public_key_bytes());
    t.push(case(
        "hs256_keyed_with_the_public_key",
        dpop(
            TARGET,
            &token,
            &[&forged(
                &hmac,
                json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": key.public_jwk()}),
                proof_claims(&token, json!({})),
            )],
        ),
        invalid_proof(),
    ));
    // An algorithm the client may well use, but not on `dpop.algorithms` (the default list).
    let es384 = SigningKey::generate("es384", Algorithm::ES384);
    let es384_token = bound(&r, &es384);
    t.push(case(
        "es384_not_on_dpop_algorithms",
        dpop(
            TARGET,
            &es384_token,
            &[&es384.dpop_proof("GET", HTU, Some(&es384_token), &json!({}))],
        ),
        invalid_proof(),
    ));
    t.push(case(
        "signed_by_another_key_than_its_jwk",
        dpop(
            TARGET,
            &token,
            &[&forged(
                &other,
                header.clone(),
                proof_claims(&token, json!({})),
            )],
        ),
        invalid_proof(),
    ));
    t.push(case(
        "another_key_whole_proof",
        dpop(
            TARGET,
            &token,
            &[&other.dpop_proof("GET", HTU, Some(&token), &json!({}))],
        ),
        invalid_proof(),
    ));
    t.push(case(
        "typ_jwt",
        dpop(
            TARGET,
            &token,
            &[&forged(
                &key,
                json!({"typ": "JWT", "alg": "ES256", "jwk": key.public_jwk()}),
                proof_claims(&token, json!({})),
            )],
        ),
        invalid_proof(),
    ));
    t.push(case(
        "the_access_token_itself_as_proof",
        dpop(TARGET, &token, &[&token]),
        invalid_proof(),
    ));

    // htm and htu.
    t.push(case(
        "htm_post_on_get",
        dpop(TARGET, &token, &[&proof(json!({"htm": "POST"}))]),
        invalid_proof(),
    ));
    t.push(case(
        "htu_with_query",
        dpop(
            "/api/orders/1?x=1",
            &token,
            &[&proof(json!({"htu": format!("{HTU}?x=1")}))],
        ),
        invalid_proof(),
    ));
    t.push(case(
        "htu_with_fragment",
        dpop(
            TARGET,
            &token,
            &[&proof(json!({"htu": format!("{HTU}#f")}))],
        ),
        invalid_proof(),
    ));
    t.push(case(
        "htu_https_on_a_cleartext_listener",
        dpop(
            TARGET,
            &token,
            &[&proof(json!({"htu": "https://gateway.test/api/orders/1"}))],
        ),
        invalid_proof(),
    ));
    t.push(case(
        "htu_other_host",
        dpop(
            TARGET,
            &token,
            &[&proof(json!({"htu": "http://evil.test/api/orders/1"}))],
        ),
        invalid_proof(),
    ));
    t.push(case(
        "htu_other_path",
        dpop(
            TARGET,
            &token,
            &[&proof(json!({"htu": "http://gateway.test/api/orders/2"}))],
        ),
        invalid_proof(),
    ));
    t.push(case(
        "htu_explicit_default_port_accepted",
        dpop(
            TARGET,
            &token,
            &[&proof(
                json!({"htu": "http://gateway.test:80/api/orders/1"}),
            )],
        ),
        reader.clone(),
    ));
    t.push(case(
        "htu_upper_case_scheme_and_host_accepted",
        dpop(
            TARGET,
            &token,
            &[&proof(json!({"htu": "HTTP://GATEWAY.Test/api/orders/1"}))],
        ),
        reader.clone(),
    ));
    t.push(case(
        "htu_other_port",
        dpop(
            TARGET,
            &token,
            &[&proof(
                json!({"htu": "http://gateway.test:8080/api/orders/1"}),
            )],
        ),
        invalid_proof(),
    ));

    // One proof, bound to this token.
    let a = proof(json!({}));
    let b = proof(json!({}));
    t.push(case(
        "two_dpop_headers",
        dpop(TARGET, &token, &[&a, &b]),
        bad(),
    ));
    t.push(case(
        "ath_of_another_token",
        dpop(
            TARGET,
            &token,
            &[&key.dpop_proof("GET", HTU, Some(&r.issuer.token(json!({}))), &json!({}))],
        ),
        invalid_proof(),
    ));
    t.push(case(
        "no_ath",
        dpop(TARGET, &token, &[&proof(json!({"ath": null}))]),
        invalid_proof(),
    ));
    t.push(case(
        "no_jti",
        dpop(TARGET, &token, &[&proof(json!({"jti": null}))]),
        invalid_proof(),
    ));

    // iat at the window's edges (5 s margins for a slow machine).
    t.push(case(
        "iat_just_inside_the_past_edge",
        dpop(
            TARGET,
            &token,
            &[&proof(json!({"iat": now() - WINDOW + 5}))],
        ),
        reader.clone(),
    ));
    t.push(case(
        "iat_just_past_the_past_edge",
        dpop(
            TARGET,
            &token,
            &[&proof(json!({"iat": now() - WINDOW - 5}))],
        ),
        invalid_proof(),
    ));
    t.push(case(
        "iat_just_inside_the_future_edge",
        dpop(
            TARGET,
            &token,
            &[&proof(json!({"iat": now() + WINDOW - 5}))],
        ),
        reader.clone(),
    ));
    t.push(case(
        "iat_just_past_the_future_edge",
        dpop(
            TARGET,
            &token,
            &[&proof(json!({"iat": now() + WINDOW + 5}))],
        ),
        invalid_proof(),
    ));
    t.push(case(
        "iat_as_string",
        dpop(TARGET, &token, &[&proof(json!({"iat": now().to_string()}))]),
        invalid_proof(),
    ));

    // Downgrades.
    t.push(case(
        "bound_token_as_bearer",
        bearer(TARGET, &token),
        refused(),
    ));
    t.push(case(
        "bound_token_as_bearer_with_a_valid_proof",
        get(
            TARGET,
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("DPoP", &proof(json!({}))),
            ],
        ),
        refused(),
    ));
    t.push(case(
        "bound_token_without_proof",
        dpop(TARGET, &token, &[]),
        invalid_proof(),
    ));
    r.run("dpop", t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_is_accepted_once_across_http1_and_http2_connections() {
    let r = rig(|config| config).await;
    let key = SigningKey::generate("client", Algorithm::ES256);
    let token = bound(&r, &key);
    let auth = format!("DPoP {token}");

    // First on HTTP/1.1, replayed over HTTP/2 (h2c).
    let proof = key.dpop_proof("GET", HTU, Some(&token), &json!({}));
    let first = exchange(r.gw.addr, &dpop(TARGET, &token, &[&proof]))
        .await
        .unwrap();
    assert_eq!(first.status, 200, "{}", lossy(&first.body));
    let replay = h2_request(
        r.gw.addr,
        "GET",
        TARGET,
        "gateway.test",
        &[("authorization", &auth), ("dpop", &proof)],
        b"",
    )
    .await;
    assert_denied(&replay.response, 401, "invalid_dpop_proof");

    // First on HTTP/2, replayed over HTTP/1.1.
    let proof = key.dpop_proof("GET", HTU, Some(&token), &json!({}));
    let first = h2_request(
        r.gw.addr,
        "GET",
        TARGET,
        "gateway.test",
        &[("authorization", &auth), ("dpop", &proof)],
        b"",
    )
    .await;
    assert_eq!(first.response.status, 200);
    let replay = exchange(r.gw.addr, &dpop(TARGET, &token, &[&proof]))
        .await
        .unwrap();
    assert_denied(&replay, 401, "invalid_dpop_proof");
    r.gw.wait_log("\"reason\":\"dpop_replay\"").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_fresh_proofs_cannot_evict_a_jti_to_replay_it() {
    const ENTRIES: usize = 8;
    let r =
        rig(|config| config.set("dpop", &format!("{{ replay_cache_entries: {ENTRIES} }}"))).await;
    let key = SigningKey::generate("client", Algorithm::ES256);
    let token = bound(&r, &key);
    let victim = key.dpop_proof("GET", HTU, Some(&token), &json!({}));
    let ok = exchange(r.gw.addr, &dpop(TARGET, &token, &[&victim]))
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    // Fill the cache, then flood it: every proof beyond its size is refused, none evicts.
    let mut refused_full = 0;
    for _ in 0..ENTRIES * 3 {
        let fresh = key.dpop_proof("GET", HTU, Some(&token), &json!({}));
        let resp = exchange(r.gw.addr, &dpop(TARGET, &token, &[&fresh]))
            .await
            .unwrap();
        if resp.status != 200 {
            assert_denied(&resp, 401, "invalid_dpop_proof");
            refused_full += 1;
        }
    }
    assert_eq!(refused_full, ENTRIES * 3 - (ENTRIES - 1));
    let replay = exchange(r.gw.addr, &dpop(TARGET, &token, &[&victim]))
        .await
        .unwrap();
    assert_denied(&replay, 401, "invalid_dpop_proof");
    assert_eq!(
        replay.json()["error_description"],
        "DPoP proof replayed",
        "the flood made the gateway forget the first proof"
    );
    r.gw.wait_log("\"reason\":\"dpop_replay_cache_full\"").await;
}
