//! Key lifecycle (docs/behaviour.md, "Keys") against the real gateway and the fault-injecting
//! issuer of `common::faulty_issuer`: a flood of random kids, an issuer answering 500, garbage, oversized bodies,
//! slowly or not at all, start-up with the issuer down, one broken issuer beside a healthy one,
//! discovery naming another issuer, mixed and oversized key sets, ETag revalidation and
//! `max-age`, `max_stale`, over-long kids, and keys bound to their issuer.
mod common;
use common::*;

use jsonwebtoken::Algorithm;
use portcullis::demo::keys::{b64, jwks, SigningKey};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `refetch_cooldown` these tests configure (1 s), plus a margin.
const PAST_COOLDOWN: Duration = Duration::from_millis(1300);
const REFRESH: &str = "portcullis_jwks_refresh_total";
const KEYS: &str = "portcullis_jwks_keys";
const KID_REFETCH: &str = "portcullis_jwks_kid_miss_refetch_total";
const KID_SUPPRESSED: &str = "portcullis_jwks_kid_miss_suppressed_total";
const SINCE_GOOD: &str = "portcullis_jwks_seconds_since_last_good_refresh";

// ---------------------------------------------------------------------------------------------
// Config, tokens, metrics

/// A gateway in front of `echo` with these issuer blocks and one required-auth route.
fn gateway_config(echo: SocketAddr, issuers: impl IntoIterator<Item = IssuerBlock>) -> String {
    let config = Config::new()
        .upstream("echo", &format!("http://{echo}"))
        .default_upstream("echo")
        .identity_header("x-auth-subject", "sub")
        .route(Route::new("api", "/api/**"));
    issuers
        .into_iter()
        .fold(config, |config, issuer| config.issuer(issuer))
        .yaml()
}

/// The value of one series on `/metrics` (`None` if the series does not exist).
async fn metric_opt(gw: &Gateway, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let r = gw.admin_get("/metrics").await;
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body).expect("UTF-8 metrics");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            if metric != name {
                return None;
            }
            let pairs: Vec<(&str, &str)> = rest
                .strip_suffix('}')?
                .split(',')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k, v.trim_matches('"')))
                .collect();
            if labels.iter().all(|l| pairs.contains(l)) {
                value.parse().ok()
            } else {
                None
            }
        })
}

/// A counter's value (0 while the series does not exist yet).
async fn metric(gw: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_opt(gw, name, labels).await.unwrap_or(0.0)
}

/// `portcullis_jwks_refresh_total` for this issuer and result.
async fn refreshes(gw: &Gateway, issuer: &str, result: &str) -> f64 {
    metric(gw, REFRESH, &[("issuer", issuer), ("result", result)]).await
}

/// Wait until the refresh counter for (issuer, result) exceeds `above`.
async fn wait_refresh_above(
    gw: &Gateway,
    issuer: &str,
    result: &str,
    above: f64,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        let now = refreshes(gw, issuer, result).await;
        if now > above {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{REFRESH}{{issuer={issuer:?},result={result:?}}} stayed at {now} for {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Echo upstream and a ready gateway with these issuer blocks.
async fn ready_gateway(issuers: impl IntoIterator<Item = IssuerBlock>) -> Gateway {
    let echo = start_echo().await;
    let gw = start_gateway(&gateway_config(echo, issuers));
    gw.wait_ready().await;
    gw
}

/// Send `GET /api/x` with each token, at most `concurrency` at a time; replies in token order.
async fn burst(gw: &Gateway, tokens: Vec<String>, concurrency: usize) -> Vec<Response> {
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for token in tokens {
        let (addr, permits) = (gw.addr, Arc::clone(&permits));
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore");
            get_bearer_at(addr, "/api/x", &token).await
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("burst request"));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Kid floods

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_a_thousand_random_kids_costs_at_most_one_fetch_and_valid_tokens_keep_working() {
    let issuer = FaultyIssuer::start().await;
    // A 30 s cooldown (the default) so the whole burst falls inside one cooldown.
    let gw = ready_gateway([issuer.jwks_uri_block("main").set("refetch_cooldown", "30s")]).await;
    let labels = [("issuer", "main")];
    let fetches_before = issuer.fetches();
    let suppressed_before = metric(&gw, KID_SUPPRESSED, &labels).await;
    let refetch_before = metric(&gw, KID_REFETCH, &labels).await;

    // 900 random kids with 100 valid, never-seen tokens mixed in (every tenth request).
    let tokens: Vec<String> = (0..1000)
        .map(|n| {
            if n % 10 == 5 {
                issuer.ed_token()
            } else {
                issuer.unknown_kid_token()
            }
        })
        .collect();
    let replies = burst(&gw, tokens, 50).await;
    for (n, r) in replies.iter().enumerate() {
        if n % 10 == 5 {
            assert_forwarded(r);
        } else {
            assert_refused_as(r, "unknown signing key");
        }
    }

    let fetches = issuer.fetches() - fetches_before;
    assert!(
        fetches <= 1,
        "{fetches} JWKS fetches for 900 random kids in one cooldown (at most one)"
    );
    // The first miss after start-up may refetch (start-up fetches do not start the cooldown).
    assert_eq!(
        metric(&gw, KID_REFETCH, &labels).await - refetch_before,
        fetches as f64
    );
    // Of the 900 misses, at most 50 were in flight with the one refetch; all the rest were
    // turned away by the cooldown.
    let suppressed = metric(&gw, KID_SUPPRESSED, &labels).await - suppressed_before;
    assert!(
        suppressed >= 850.0,
        "{KID_SUPPRESSED} rose by {suppressed}, expected at least 850"
    );

    assert_forwarded(&gw.get_bearer("/api/x", &issuer.token()).await);
    assert_eq!(issuer.fetches() - fetches_before, fetches);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kid_longer_than_256_bytes_never_triggers_a_fetch() {
    let issuer = FaultyIssuer::start().await;
    let gw = ready_gateway([issuer.jwks_uri_block("main")]).await;
    let labels = [("issuer", "main")];
    tokio::time::sleep(PAST_COOLDOWN).await;
    let before = issuer.fetches();
    let refetch_before = metric(&gw, KID_REFETCH, &labels).await;

    let long = with_kid(&issuer.ed, &"k".repeat(257), &issuer.url());
    assert_refused_as(&gw.get_bearer("/api/x", &long).await, "unknown signing key");
    assert_eq!(
        issuer.fetches(),
        before,
        "a 257-byte kid fetched the key set"
    );
    assert_eq!(metric(&gw, KID_REFETCH, &labels).await, refetch_before);

    // The cooldown had passed: an ordinary unknown kid does refetch.
    let r = gw.get_bearer("/api/x", &issuer.unknown_kid_token()).await;
    assert_refused_as(&r, "unknown signing key");
    assert_eq!(issuer.fetches(), before + 1);
    assert_eq!(
        metric(&gw, KID_REFETCH, &labels).await,
        refetch_before + 1.0
    );
}

// ---------------------------------------------------------------------------------------------
// Outages: last-known-good keys

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_answering_500_garbage_oversized_or_refusing_leaves_valid_tokens_working() {
    let issuer = FaultyIssuer::start().await;
    let gw = ready_gateway([issuer.jwks_uri_block("main")]).await;
    let cached = issuer.token();
    // Twice: a token is cached on its second verification.
    assert_forwarded(&gw.get_bearer("/api/x", &cached).await);
    assert_forwarded(&gw.get_bearer("/api/x", &cached).await);

    // Adjacent faults have different results, so a retry of the previous fault still in flight
    // when the fault changes cannot be taken for this one.
    for (fault, result) in [
        (Fault::Status500, "http_error"),
        (Fault::Garbage, "invalid"),
        (Fault::Oversized, "too_large"),
        (Fault::Refuse, "http_error"),
        (Fault::OversizedChunked, "too_large"),
    ] {
        issuer.set_fault(fault).await;
        let before = refreshes(&gw, "main", result).await;
        tokio::time::sleep(PAST_COOLDOWN).await;
        // A kid miss asks for a refetch, which meets the fault.
        let r = gw.get_bearer("/api/x", &issuer.unknown_kid_token()).await;
        assert_refused_as(&r, "unknown signing key");
        wait_refresh_above(&gw, "main", result, before, Duration::from_secs(5)).await;

        // A token never seen before verifies with the last good keys, and so does a cached one.
        assert_forwarded(&gw.get_bearer("/api/x", &issuer.token()).await);
        assert_forwarded(&gw.get_bearer("/api/x", &issuer.ed_token()).await);
        assert_forwarded(&gw.get_bearer("/api/x", &cached).await);
        assert_eq!(
            gw.admin_get("/readyz").await.status,
            200,
            "not ready during {fault:?}"
        );
        assert_eq!(
            metric_opt(&gw, KEYS, &[("issuer", "main")]).await,
            Some(2.0),
            "key count during {fault:?}"
        );
    }
    assert_eq!(
        refreshes(&gw, "main", "ok").await,
        1.0,
        "only the start-up fetch was good"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_issuer_bounds_the_kid_miss_wait_and_valid_tokens_keep_working() {
    let issuer = FaultyIssuer::start().await;
    let gw = ready_gateway([issuer.jwks_uri_block("main")]).await;
    let timeouts_before = refreshes(&gw, "main", "timeout").await;
    issuer.set_fault(Fault::Slow).await;
    tokio::time::sleep(PAST_COOLDOWN).await;

    let started = Instant::now();
    let probe = issuer.unknown_kid_token();
    let addr = gw.addr;
    let miss = tokio::spawn(async move {
        let r = get_bearer_at(addr, "/api/x", &probe).await;
        (r, started.elapsed())
    });
    // While the kid-miss request waits on the hanging fetch, known keys answer at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let t = Instant::now();
        assert_forwarded(&gw.get_bearer("/api/x", &issuer.token()).await);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "a valid token took {:?} while the issuer hung",
            t.elapsed()
        );
    }
    let (r, waited) = miss.await.expect("kid-miss request");
    assert_refused_as(&r, "unknown signing key");
    assert!(
        waited < Duration::from_millis(4500),
        "the kid-miss request waited {waited:?} (bounded wait is 3 s)"
    );
    assert_eq!(
        issuer.fetches(),
        2,
        "start-up fetch and the hanging refetch"
    );

    // The hanging fetch is cut by the 10 s total timeout and counted as such.
    wait_refresh_above(
        &gw,
        "main",
        "timeout",
        timeouts_before,
        Duration::from_secs(12),
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "the fetch timed out after only {:?}",
        started.elapsed()
    );
    assert_forwarded(&gw.get_bearer("/api/x", &issuer.ed_token()).await);
    assert_eq!(gw.admin_get("/readyz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_with_the_issuer_down_gives_503_then_200_once_it_is_up_without_restart() {
    let issuer = FaultyIssuer::start_with(Fault::Refuse).await;
    let echo = start_echo().await;
    let gw = start_gateway(&gateway_config(echo, [issuer.jwks_uri_block("main")]));

    let token = issuer.token();
    assert_denied(
        &gw.get_bearer("/api/x", &token).await,
        503,
        "keys_unavailable",
    );
    assert_eq!(gw.admin_get("/readyz").await.status, 503);
    // Let the back-off retry a couple of times against the closed port.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_denied(
        &gw.get_bearer("/api/x", &issuer.token()).await,
        503,
        "keys_unavailable",
    );
    assert_eq!(gw.admin_get("/readyz").await.status, 503);
    assert!(refreshes(&gw, "main", "http_error").await >= 2.0);
    assert_eq!(
        metric_opt(&gw, SINCE_GOOD, &[("issuer", "main")]).await,
        Some(-1.0),
        "never had a good refresh"
    );
    assert_eq!(issuer.fetches(), 0);

    // The issuer comes up on the same port; the back-off (1 s, 2 s, 4 s …) finds it without any
    // request asking.
    issuer.set_fault(Fault::None).await;
    let up = Instant::now();
    while gw.admin_get("/readyz").await.status != 200 {
        assert!(
            up.elapsed() < Duration::from_secs(10),
            "not ready 10 s after the issuer came up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_forwarded(&gw.get_bearer("/api/x", &token).await);
    assert_forwarded(&gw.get_bearer("/api/x", &issuer.ed_token()).await);
    assert_eq!(
        metric_opt(&gw, KEYS, &[("issuer", "main")]).await,
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_broken_issuer_does_not_hold_up_the_rotation_of_a_healthy_one() {
    let healthy = FaultyIssuer::start().await;
    let broken = FaultyIssuer::start().await;
    let gw = ready_gateway([
        healthy.jwks_uri_block("healthy"),
        broken.jwks_uri_block("broken"),
    ])
    .await;

    for (n, fault) in [Fault::Refuse, Fault::Status500, Fault::Slow]
        .into_iter()
        .enumerate()
    {
        broken.set_fault(fault).await;
        tokio::time::sleep(PAST_COOLDOWN).await;
        // The broken issuer is asked to refetch (and, when slow, keeps that fetch hanging).
        let addr = gw.addr;
        let probe = broken.unknown_kid_token();
        let broken_miss = tokio::spawn(async move { get_bearer_at(addr, "/api/x", &probe).await });
        tokio::time::sleep(Duration::from_millis(200)).await;

        // The healthy issuer rotates in a new key: its first token is accepted at once.
        let fresh = SigningKey::generate(&format!("rotated-{n}"), Algorithm::EdDSA);
        healthy.set_jwks(jwks(&[&healthy.rs, &healthy.ed, &fresh]));
        let before = healthy.fetches();
        let t = Instant::now();
        let r = gw
            .get_bearer("/api/x", &fresh.mint(&unique_claims(&healthy.url())))
            .await;
        assert_forwarded(&r);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "rotation took {:?} while the other issuer was {fault:?}",
            t.elapsed()
        );
        assert_eq!(healthy.fetches() - before, 1);

        // The broken issuer's last good keys still serve; its unknown kid is refused.
        assert_forwarded(&gw.get_bearer("/api/x", &broken.token()).await);
        assert_refused_as(
            &broken_miss.await.expect("broken kid miss"),
            "unknown signing key",
        );
    }
    assert!(refreshes(&gw, "broken", "http_error").await >= 2.0);
    assert_eq!(refreshes(&gw, "broken", "ok").await, 1.0);
    assert_eq!(refreshes(&gw, "healthy", "ok").await, 4.0);
    assert_eq!(gw.admin_get("/readyz").await.status, 200);
}

// ---------------------------------------------------------------------------------------------
// Discovery and key-set content

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_naming_another_issuer_is_refused_until_it_names_ours() {
    for other in [Some("https://login.example.com/"), None] {
        let issuer = FaultyIssuer::start().await;
        // `None`: our own URL with a trailing slash, which is not an exact match.
        let named = other.map_or_else(|| format!("{}/", issuer.url()), str::to_string);
        issuer.set_discovery_issuer(&named);
        let echo = start_echo().await;
        let gw = start_gateway(&gateway_config(echo, [issuer.discovery_block("main")]));

        // Start-up fetch and back-off retries at about 1 s and 3 s: never ready.
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(3500) {
            assert_eq!(
                gw.admin_get("/readyz").await.status,
                503,
                "ready with a discovery document naming {named:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_denied(
            &gw.get_bearer("/api/x", &issuer.token()).await,
            503,
            "keys_unavailable",
        );
        assert!(issuer.discovery_requests() >= 2);
        assert_eq!(
            issuer.fetches(),
            0,
            "the jwks_uri of a document naming {named:?} was fetched"
        );
        assert!(refreshes(&gw, "main", "invalid").await >= 2.0);

        // Once the document names our issuer exactly, the gateway gets ready without restart.
        issuer.set_discovery_issuer(&issuer.url());
        tokio::time::sleep(PAST_COOLDOWN).await;
        assert_forwarded(&gw.get_bearer("/api/x", &issuer.token()).await);
        assert_eq!(gw.admin_get("/readyz").await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_mixing_bad_keys_with_good_ones_loads_only_the_good_ones() {
    let issuer = FaultyIssuer::start().await;
    let enc = SigningKey::generate("enc", Algorithm::RS256);
    let mut enc_jwk = enc.jwk();
    enc_jwk["use"] = json!("enc");
    let rsa_as_es = SigningKey::generate("rsa-as-es256", Algorithm::RS256);
    let mut rsa_as_es_jwk = rsa_as_es.jwk();
    rsa_as_es_jwk["alg"] = json!("ES256");
    let ed_as_rs = SigningKey::generate("ed-as-rs256", Algorithm::EdDSA);
    let mut ed_as_rs_jwk = ed_as_rs.jwk();
    ed_as_rs_jwk["alg"] = json!("RS256");
    let mut short_modulus = vec![0xc5u8; 128];
    short_modulus[127] |= 1;
    let bad = [
        enc_jwk,
        json!({"kty": "RSA", "kid": "rsa-1024", "alg": "RS256", "use": "sig",
               "n": b64(&short_modulus), "e": "AQAB"}),
        json!({"kty": "oct", "kid": "oct", "alg": "HS256", "k": b64(b"a shared secret, never from a JWKS")}),
        json!({"kty": "EC", "kid": "p521", "crv": "P-521", "x": b64(&[1; 66]), "y": b64(&[2; 66])}),
        json!({"kty": "XYZ", "kid": "xyz"}),
        rsa_as_es_jwk,
        ed_as_rs_jwk,
    ];
    let mut keys = vec![bad[0].clone(), issuer.rs.jwk()];
    keys.extend(bad[1..4].iter().cloned());
    keys.push(issuer.ed.jwk());
    keys.extend(bad[4..].iter().cloned());
    issuer.set_jwks(json!({ "keys": keys }));

    let gw = ready_gateway([issuer.jwks_uri_block("main")]).await;
    assert_eq!(
        metric_opt(&gw, KEYS, &[("issuer", "main")]).await,
        Some(2.0),
        "only rs and ed are usable"
    );
    assert_forwarded(&gw.get_bearer("/api/x", &issuer.token()).await);
    assert_forwarded(&gw.get_bearer("/api/x", &issuer.ed_token()).await);

    let url = issuer.url();
    let refused = [
        ("use: enc", enc.mint(&unique_claims(&url))),
        ("RSA 1024", with_kid(&issuer.rs, "rsa-1024", &url)),
        ("kty oct", with_kid(&issuer.rs, "oct", &url)),
        ("crv P-521", with_kid(&issuer.rs, "p521", &url)),
        ("kty XYZ", with_kid(&issuer.rs, "xyz", &url)),
        (
            "RSA key with alg ES256",
            rsa_as_es.mint(&unique_claims(&url)),
        ),
        (
            "Ed25519 key with alg RS256",
            ed_as_rs.mint(&unique_claims(&url)),
        ),
    ];
    for (what, token) in refused {
        let r = gw.get_bearer("/api/x", &token).await;
        assert_eq!(
            r.status,
            401,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_refused_as(&r, "unknown signing key");
    }
    // The good keys still serve after all those misses.
    assert_forwarded(&gw.get_bearer("/api/x", &issuer.token()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_of_more_than_100_keys_is_refused_and_the_last_good_keys_keep_serving() {
    let issuer = FaultyIssuer::start().await;
    let gw = ready_gateway([issuer.jwks_uri_block("main")]).await;
    let bulk: Vec<SigningKey> = (0..101)
        .map(|n| SigningKey::generate(&format!("bulk-{n}"), Algorithm::EdDSA))
        .collect();
    let all: Vec<&SigningKey> = bulk.iter().collect();

    issuer.set_jwks(jwks(&all));
    let invalid_before = refreshes(&gw, "main", "invalid").await;
    tokio::time::sleep(PAST_COOLDOWN).await;
    let r = gw
        .get_bearer("/api/x", &bulk[0].mint(&unique_claims(&issuer.url())))
        .await;
    assert_refused_as(&r, "unknown signing key");
    wait_refresh_above(
        &gw,
        "main",
        "invalid",
        invalid_before,
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(
        metric_opt(&gw, KEYS, &[("issuer", "main")]).await,
        Some(2.0)
    );
    assert_forwarded(&gw.get_bearer("/api/x", &issuer.token()).await);
    assert_eq!(gw.admin_get("/readyz").await.status, 200);

    // Exactly 100 keys is within the cap: loaded, and the old keys are gone.
    issuer.set_jwks(jwks(&all[..100]));
    tokio::time::sleep(PAST_COOLDOWN).await;
    let r = gw
        .get_bearer("/api/x", &bulk[99].mint(&unique_claims(&issuer.url())))
        .await;
    assert_forwarded(&r);
    assert_eq!(
        metric_opt(&gw, KEYS, &[("issuer", "main")]).await,
        Some(100.0)
    );
    assert_refused_as(
        &gw.get_bearer("/api/x", &issuer.token()).await,
        "unknown signing key",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_key_set_is_revalidated_with_its_etag_and_a_long_max_age_does_not_block_rotation(
) {
    let issuer = FaultyIssuer::start().await;
    issuer.set_etag("\"v1\"");
    issuer.set_max_age(86400);
    let gw = ready_gateway([issuer.discovery_block("main")]).await;
    assert_eq!(refreshes(&gw, "main", "ok").await, 1.0);
    let cached = issuer.token();
    // Twice: a token is cached on its second verification.
    assert_forwarded(&gw.get_bearer("/api/x", &cached).await);
    assert_forwarded(&gw.get_bearer("/api/x", &cached).await);

    tokio::time::sleep(PAST_COOLDOWN).await;
    let r = gw.get_bearer("/api/x", &issuer.unknown_kid_token()).await;
    assert_refused_as(&r, "unknown signing key");
    wait_refresh_above(&gw, "main", "not_modified", 0.0, Duration::from_secs(3)).await;
    assert_eq!(
        issuer.not_modified(),
        1,
        "If-None-Match: \"v1\" answered 304"
    );
    assert_eq!(refreshes(&gw, "main", "not_modified").await, 1.0);
    assert_eq!(refreshes(&gw, "main", "ok").await, 1.0);
    // The 304 kept the keys.
    assert_eq!(
        metric_opt(&gw, KEYS, &[("issuer", "main")]).await,
        Some(2.0)
    );
    assert_forwarded(&gw.get_bearer("/api/x", &issuer.token()).await);
    assert_forwarded(&gw.get_bearer("/api/x", &cached).await);
    assert_eq!(gw.admin_get("/readyz").await.status, 200);

    // A rotation under a new ETag is picked up on first use, a day-long max-age notwithstanding.
    let fresh = SigningKey::generate("rs-2", Algorithm::RS256);
    issuer.set_jwks(jwks(&[&issuer.rs, &issuer.ed, &fresh]));
    issuer.set_etag("\"v2\"");
    tokio::time::sleep(PAST_COOLDOWN).await;
    assert_forwarded(
        &gw.get_bearer("/api/x", &fresh.mint(&unique_claims(&issuer.url())))
            .await,
    );
    assert_eq!(refreshes(&gw, "main", "ok").await, 2.0);
    assert_eq!(issuer.not_modified(), 1);
    assert_eq!(
        metric_opt(&gw, KEYS, &[("issuer", "main")]).await,
        Some(3.0)
    );
}

// ---------------------------------------------------------------------------------------------
// max_stale

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_dropped_after_max_stale_without_a_good_refresh_and_come_back_with_the_issuer() {
    let issuer = FaultyIssuer::start().await;
    let gw = ready_gateway([issuer.jwks_uri_block("main").set("max_stale", "2s")]).await;
    issuer.set_fault(Fault::Status500).await;
    // No failed fetch yet: the keys still serve.
    assert_forwarded(&gw.get_bearer("/api/x", &issuer.token()).await);

    // Kid misses make the gateway retry (alongside its back-off) until the keys are 2 s old.
    let failing = Instant::now();
    let dropped = loop {
        assert!(
            failing.elapsed() < Duration::from_secs(8),
            "keys still served 8 s into a failure with max_stale: 2s"
        );
        tokio::time::sleep(PAST_COOLDOWN).await;
        let _ = gw.get_bearer("/api/x", &issuer.unknown_kid_token()).await;
        let r = gw.get_bearer("/api/x", &issuer.token()).await;
        if r.status != 200 {
            break r;
        }
    };
    assert_denied(&dropped, 503, "keys_unavailable");
    assert_eq!(gw.admin_get("/readyz").await.status, 503);
    assert_eq!(
        metric_opt(&gw, KEYS, &[("issuer", "main")]).await,
        Some(0.0)
    );
    assert!(metric(&gw, SINCE_GOOD, &[("issuer", "main")]).await >= 2.0);

    // The issuer recovers: a request for the keyless issuer asks for a refetch, and the keys
    // come back without a restart.
    issuer.set_fault(Fault::None).await;
    let up = Instant::now();
    loop {
        let r = gw.get_bearer("/api/x", &issuer.token()).await;
        if r.status == 200 {
            assert_forwarded(&r);
            break;
        }
        assert_denied(&r, 503, "keys_unavailable");
        assert!(
            up.elapsed() < Duration::from_secs(5),
            "keys not back 5 s after the issuer recovered"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(gw.admin_get("/readyz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_not_dropped_before_max_stale_has_passed() {
    let issuer = FaultyIssuer::start().await;
    let gw = ready_gateway([issuer.jwks_uri_block("main").set("max_stale", "2s")]).await;
    // A good refresh late in a wall-clock second (the first kid miss after start-up refetches)…
    sleep_until_subsecond(Duration::from_millis(850)).await;
    let refreshed = Instant::now();
    let r = gw.get_bearer("/api/x", &issuer.unknown_kid_token()).await;
    assert_refused_as(&r, "unknown signing key");
    assert_eq!(refreshes(&gw, "main", "ok").await, 2.0);

    // …then a failed attempt 1.3 s later, early in the second after next: the keys are 1.3 s
    // old, not 2 s, and must keep serving.
    issuer.set_fault(Fault::Status500).await;
    tokio::time::sleep_until((refreshed + PAST_COOLDOWN).into()).await;
    let r = gw.get_bearer("/api/x", &issuer.unknown_kid_token()).await;
    let stale = refreshed.elapsed();
    assert_eq!(refreshes(&gw, "main", "http_error").await, 1.0);
    assert_eq!(
        r.status,
        401,
        "a failed refresh at most {stale:?} after the last good one dropped the keys \
         (max_stale: 2s): {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_refused_as(&r, "unknown signing key");
    let r = gw.get_bearer("/api/x", &issuer.token()).await;
    assert_eq!(
        r.status,
        200,
        "keys dropped when at most {stale:?} old, with max_stale: 2s: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_forwarded(&r);
}

/// Sleep until the wall clock is `at` past a whole second.
async fn sleep_until_subsecond(at: Duration) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    let into = Duration::from_nanos(u64::from(now.subsec_nanos()));
    let wait = if into <= at {
        at - into
    } else {
        Duration::from_secs(1) - into + at
    };
    tokio::time::sleep(wait).await;
}

// ---------------------------------------------------------------------------------------------
// Keys bound to their issuer

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_issuer_a_never_verifies_a_token_claiming_issuer_b() {
    let a = FaultyIssuer::start().await;
    let b = FaultyIssuer::start().await;
    let shared_a = SigningKey::generate("shared", Algorithm::RS256);
    let shared_b = SigningKey::generate("shared", Algorithm::RS256);
    let only_a = SigningKey::generate("only-a", Algorithm::RS256);
    a.set_jwks(jwks(&[&a.rs, &shared_a, &only_a]));
    b.set_jwks(jwks(&[&b.rs, &shared_b]));
    let gw = ready_gateway([a.jwks_uri_block("a"), b.jwks_uri_block("b")]).await;

    // Each issuer's own key verifies its own tokens.
    assert_forwarded(
        &gw.get_bearer("/api/x", &shared_a.mint(&unique_claims(&a.url())))
            .await,
    );
    assert_forwarded(
        &gw.get_bearer("/api/x", &shared_b.mint(&unique_claims(&b.url())))
            .await,
    );

    // Same kid, issuer B claimed, signed with A's key: checked against B's key, so refused.
    let forged = shared_a.mint(&unique_claims(&b.url()));
    assert_refused_as(&gw.get_bearer("/api/x", &forged).await, "invalid signature");
    // A kid only A publishes, issuer B claimed: B's set lacks it, even after a refetch.
    tokio::time::sleep(PAST_COOLDOWN).await;
    let before = b.fetches();
    let forged = only_a.mint(&unique_claims(&b.url()));
    assert_refused_as(
        &gw.get_bearer("/api/x", &forged).await,
        "unknown signing key",
    );
    assert_eq!(b.fetches() - before, 1, "B refetched its own set");
    // And A's tokens signed with B's key are refused the same way.
    let forged = shared_b.mint(&unique_claims(&a.url()));
    assert_refused_as(&gw.get_bearer("/api/x", &forged).await, "invalid signature");
    let forged = b.rs.mint(&unique_claims(&a.url()));
    assert_refused_as(&gw.get_bearer("/api/x", &forged).await, "invalid signature");
}
