//! TLS, black-box: the real gateway with certificates from a test CA made at test time. The
//! listener over HTTP/1.1 and HTTP/2 (ALPN), its certificate replaced on disk while
//! connections are open, client certificates and the subject header, `https` upstreams
//! (verified, refused, unverified on purpose, HTTP/2), and `check` on bad files.
mod common;
use common::pki::{Ca, Leaf, LEAF_NOT_AFTER};
use common::tls::{connect, negotiated, start_tls_echo, Client, VERSION_HEADER};
use common::*;
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A gateway whose listener serves `leaf` from files in `dir`, with `tls_extra` added to the
/// `tls:` block, in front of the echo upstream (the standard test policy).
struct TlsGateway {
    gw: Gateway,
    issuer: TestIssuer,
    dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

async fn tls_gateway(leaf: &Leaf, tls_extra: &str) -> TlsGateway {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = leaf.write(dir.path(), "server");
    tls_gateway_with(dir, cert, key, tls_extra).await
}

async fn tls_gateway_with(
    dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    tls_extra: &str,
) -> TlsGateway {
    let issuer = TestIssuer::start().await;
    let echo = start_echo().await;
    let config = standard_config(&issuer.url(), echo).set(
        "tls",
        &format!(
            "{{ cert_file: {:?}, key_file: {:?}{tls_extra} }}",
            cert.display().to_string(),
            key.display().to_string()
        ),
    );
    let path = dir.path().join("portcullis.yaml");
    std::fs::write(&path, config.yaml()).unwrap();
    let gw = start_gateway_at(&path, &[]);
    gw.wait_ready().await;
    TlsGateway {
        gw,
        issuer,
        dir,
        cert,
        key,
    }
}

/// The server certificate a new connection is given.
async fn served(gw: &Gateway, ca: &Ca) -> Vec<u8> {
    let tls = connect(gw.addr, "gateway.test", ca, None, &[b"http/1.1"])
        .await
        .expect("TLS handshake");
    negotiated(&tls).1.expect("a server certificate").to_vec()
}

/// Wait (at most 10 s) until new connections are given `leaf`.
async fn wait_served(gw: &Gateway, ca: &Ca, leaf: &Leaf) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while served(gw, ca).await != leaf.der.to_vec() {
        assert!(
            Instant::now() < deadline,
            "new connections never got the new certificate"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Wait (at most 10 s) until `series` is above `floor`.
async fn wait_above(gw: &Gateway, series: &str, floor: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = gw.metric(series).await;
        if got > floor {
            return got;
        }
        assert!(Instant::now() < deadline, "{series} stayed at {got}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_listener_serves_http1_and_h2_through_alpn_with_identity_and_https_proto() {
    let ca = Ca::new("Test CA");
    let leaf = ca.server("gateway-1", &["gateway.test"]);
    let t = tls_gateway(&leaf, "").await;
    let token = t.issuer.token(json!({"scope": "read:orders"}));
    let auth = format!("Bearer {token}");
    for (offered, want) in [
        (&[&b"h2"[..], b"http/1.1"][..], &b"h2"[..]),
        (&[&b"http/1.1"[..]][..], &b"http/1.1"[..]),
    ] {
        let tls = connect(t.gw.addr, "gateway.test", &ca, None, offered)
            .await
            .unwrap();
        let (alpn, cert) = negotiated(&tls);
        assert_eq!(alpn.as_deref(), Some(want));
        assert_eq!(cert.unwrap().to_vec(), leaf.der.to_vec());
        let mut client = Client::over(tls).await.unwrap();
        let echo = client
            .get(
                "/api/orders/7",
                &[("authorization", &auth), ("x-forwarded-proto", "http")],
            )
            .await
            .unwrap()
            .echo();
        assert_eq!(echo.target, "/api/orders/7");
        assert_eq!(echo.header("x-forwarded-proto"), Some("https"));
        assert_eq!(echo.header("x-auth-subject"), Some("user-1"));
        assert!(!echo.has("authorization"));
        // A denial is the gateway's own answer, over either protocol.
        let denied = client.get("/api/orders/7", &[]).await.unwrap();
        assert_eq!(
            denied.status,
            401,
            "{}",
            String::from_utf8_lossy(&denied.body)
        );
    }
    assert_eq!(
        t.gw.metric("portcullis_tls_certificate_expiry_timestamp_seconds")
            .await,
        LEAF_NOT_AFTER as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_replaced_on_disk_serves_new_connections_while_open_ones_carry_on() {
    let ca = Ca::new("Test CA");
    let first = ca.server("gateway-1", &["gateway.test"]);
    let t = tls_gateway(&first, "").await;
    let ok = r#"portcullis_tls_certificate_reloads_total{result="ok"}"#;
    let invalid = r#"portcullis_tls_certificate_reloads_total{result="invalid"}"#;

    // Connection A, kept alive across every change below.
    let a = connect(t.gw.addr, "gateway.test", &ca, None, &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(negotiated(&a).1.unwrap().to_vec(), first.der.to_vec());
    let mut a = Client::over(a).await.unwrap();
    assert_eq!(a.get("/healthz", &[]).await.unwrap().status, 200);

    // In place: the key first, then the certificate (a reload between the two is refused and
    // the old pair keeps serving).
    let second = ca.server("gateway-2", &["gateway.test"]);
    std::fs::write(&t.key, &second.key_pem).unwrap();
    std::fs::write(&t.cert, &second.cert_pem).unwrap();
    wait_served(&t.gw, &ca, &second).await;
    wait_above(&t.gw, ok, 0.0).await;
    assert_eq!(a.get("/healthz", &[]).await.unwrap().status, 200);

    // A broken pair: the certificate of a third, the key still the second's.
    let before = t.gw.metric(invalid).await;
    let third = ca.server("gateway-3", &["gateway.test"]);
    std::fs::write(&t.cert, &third.cert_pem).unwrap();
    wait_above(&t.gw, invalid, before).await;
    assert_eq!(served(&t.gw, &ca).await, second.der.to_vec());
    assert_eq!(a.get("/healthz", &[]).await.unwrap().status, 200);
    let logs =
        t.gw.wait_log("certificate refused; the current one keeps serving")
            .await;
    assert!(logs.contains("does not match the certificate"), "{logs}");
    assert!(!logs.contains("PRIVATE KEY"), "a key reached the log");
    assert!(!logs.contains(second.key_pem.lines().nth(1).unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_volume_symlink_swap_is_seen_like_the_kubelet_makes_it() {
    let ca = Ca::new("Test CA");
    let first = ca.server("gateway-1", &["gateway.test"]);
    // What a mounted Secret looks like: tls.crt -> ..data/tls.crt, ..data -> ..v1.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let version = |n: usize, leaf: &Leaf| {
        let v = path.join(format!("..v{n}"));
        std::fs::create_dir(&v).unwrap();
        leaf.write(&v, "tls");
        v
    };
    version(1, &first);
    std::os::unix::fs::symlink("..v1", dir.path().join("..data")).unwrap();
    for f in ["tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(format!("..data/{f}"), dir.path().join(f)).unwrap();
    }
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let t = tls_gateway_with(dir, cert, key, "").await;
    assert_eq!(served(&t.gw, &ca).await, first.der.to_vec());
    let a = connect(t.gw.addr, "gateway.test", &ca, None, &[b"h2"])
        .await
        .unwrap();
    let mut a = Client::over(a).await.unwrap();

    let second = ca.server("gateway-2", &["gateway.test"]);
    version(2, &second);
    std::os::unix::fs::symlink("..v2", path.join("..data_tmp")).unwrap();
    std::fs::rename(path.join("..data_tmp"), path.join("..data")).unwrap();
    std::fs::remove_dir_all(path.join("..v1")).unwrap();
    wait_served(&t.gw, &ca, &second).await;
    assert_eq!(a.get("/healthz", &[]).await.unwrap().status, 200);
}

/// The subject of the client certificate `alice` (RFC 4514: most specific name first).
const ALICE: &str = "CN=alice,O=Portcullis Tests";

/// A TLS gateway whose client certificates come from a CA of their own, with `tls_extra`
/// added after `client_ca_file`: the server CA, the client CA, the gateway (and the CA file's
/// directory, kept alive).
async fn mtls_gateway(tls_extra: &str) -> (Ca, Ca, TlsGateway, tempfile::TempDir) {
    let ca = Ca::new("Test CA");
    let leaf = ca.server("gateway-1", &["gateway.test"]);
    let clients = Ca::new("Client CA");
    let dir_ca = tempfile::tempdir().unwrap();
    let ca_file = clients.write(&dir_ca.path().join("clients.pem"));
    let t = tls_gateway(
        &leaf,
        &format!(
            ", client_ca_file: {:?}{tls_extra}",
            ca_file.display().to_string()
        ),
    )
    .await;
    (ca, clients, t, dir_ca)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_and_their_verified_subject_replaces_any_sent() {
    let (ca, clients, t, _dir_ca) = mtls_gateway(", client_subject_header: x-client-subject").await;

    // Without a certificate, or with one from another CA: no request gets through.
    let stranger = Ca::new("Other CA").client("mallory");
    for presented in [None, Some(&stranger)] {
        let refused = async {
            let tls = connect(t.gw.addr, "gateway.test", &ca, presented, &[b"http/1.1"]).await?;
            let mut client = Client::over(tls).await.map_err(std::io::Error::other)?;
            client
                .get("/healthz", &[])
                .await
                .map_err(std::io::Error::other)
        }
        .await;
        assert!(
            refused.is_err(),
            "{presented:?} got {refused:?}",
            presented = presented.map(|_| "a foreign certificate")
        );
    }

    let alice = clients.client("alice");
    let tls = connect(
        t.gw.addr,
        "gateway.test",
        &ca,
        Some(&alice),
        &[b"h2", b"http/1.1"],
    )
    .await
    .unwrap();
    let mut client = Client::over(tls).await.unwrap();
    // On a public route, spoofed in both spellings: only the verified subject arrives.
    let echo = client
        .get(
            "/healthz",
            &[
                ("x-client-subject", "CN=admin"),
                ("x_client_subject", "CN=root"),
            ],
        )
        .await
        .unwrap()
        .echo();
    assert_eq!(echo.header("x-client-subject"), Some(ALICE));
    assert!(!echo.has("x_client_subject"));
    assert_eq!(echo.header("x-forwarded-proto"), Some("https"));
    // And on every request of the connection, authenticated ones too.
    let token = t.issuer.token(json!({}));
    let echo = client
        .get("/api/x", &[("authorization", &format!("Bearer {token}"))])
        .await
        .unwrap()
        .echo();
    assert_eq!(echo.header("x-client-subject"), Some(ALICE));
    drop(t.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_verified_refused_on_a_wrong_name_and_spoken_to_over_h2() {
    let ca = Ca::new("Upstream CA");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write(&dir.path().join("upstream-ca.pem"));
    let good = start_tls_echo(&ca.server("localhost", &["localhost"])).await;
    let wrong = start_tls_echo(&ca.server("elsewhere", &["elsewhere.example"])).await;
    let ca_file = ca_file.display().to_string();
    let https = |addr: std::net::SocketAddr| format!("https://localhost:{}", addr.port());
    let config = Config::new()
        .upstream_with("good", &https(good), &format!("ca_file: {ca_file:?}"))
        .upstream_with("wrong", &https(wrong), &format!("ca_file: {ca_file:?}"))
        .upstream_with("skipped", &https(wrong), "dangerous_skip_verify: true")
        .upstream_with(
            "h2",
            &https(good),
            &format!("ca_file: {ca_file:?}, protocol: h2"),
        );
    let config = ["good", "wrong", "skipped", "h2"]
        .into_iter()
        .fold(config, |config, name| {
            config.route(
                Route::new(name, &format!("/{name}/**"))
                    .auth("none")
                    .set("upstream", name),
            )
        });
    let gw = start_gateway(&config.yaml());

    let r = gw.get("/good/x", &[]).await;
    assert_eq!(r.header(VERSION_HEADER), Some("HTTP/1.1"));
    assert_eq!(r.echo().target, "/good/x");

    let r = gw.get("/wrong/x", &[]).await;
    check_denied(&r, 502, "upstream_error").unwrap();
    // The log says why: pingora's error line carries rustls' reason.
    gw.wait_log("certificate not valid for name").await;

    let r = gw.get("/skipped/x", &[]).await;
    assert_eq!(r.echo().target, "/skipped/x");
    gw.wait_log("certificate is NOT verified").await;

    let r = gw.get("/h2/x", &[]).await;
    assert_eq!(r.header(VERSION_HEADER), Some("HTTP/2.0"));
    // HTTP/2 carries scheme and authority beside the path: the request's own host.
    assert_eq!(r.echo().target, "https://gateway.test/h2/x");
}

#[test]
fn check_refuses_certificate_files_that_do_not_serve_naming_the_key() {
    let ca = Ca::new("Test CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = ca.server("a", &["gateway.test"]).write(dir.path(), "a");
    let (_, other_key) = ca.server("b", &["gateway.test"]).write(dir.path(), "b");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not PEM\n").unwrap();
    let echo = "127.0.0.1:9";
    let base = Config::new()
        .upstream("echo", &format!("http://{echo}"))
        .route(Route::new("all", "/**").auth("none"));
    for (tls, key, says) in [
        (
            format!("{{ cert_file: {garbage:?}, key_file: {other_key:?} }}"),
            "tls.cert_file",
            "holds no PEM certificate",
        ),
        (
            format!("{{ cert_file: {cert:?}, key_file: {other_key:?} }}"),
            "tls.key_file",
            "does not match the certificate",
        ),
    ] {
        let (ok, text) = check_config(&base.clone().set("tls", &tls).yaml());
        assert!(!ok, "{text}");
        assert!(text.contains(key) && text.contains(says), "{text}");
        assert!(!text.contains("PRIVATE KEY"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_reload_that_changes_tls_keeps_the_listener_and_applies_the_subject_header() {
    let ca = Ca::new("Test CA");
    let first = ca.server("gateway-1", &["gateway.test"]);
    let t = tls_gateway(&first, "").await;
    let clients = Ca::new("Client CA");
    let ca_file = clients.write(&t.dir.path().join("clients.pem"));
    // Other certificate files and client certificates on: a restart's business.
    let (cert, key) = ca
        .server("gateway-2", &["gateway.test"])
        .write(t.dir.path(), "other");
    let config = standard_config(&t.issuer.url(), start_echo().await).set(
        "tls",
        &format!(
            "{{ cert_file: {:?}, key_file: {:?}, client_ca_file: {:?}, client_subject_header: x-client-subject }}",
            cert.display().to_string(),
            key.display().to_string(),
            ca_file.display().to_string()
        ),
    );
    std::fs::write(t.dir.path().join("portcullis.yaml"), config.yaml()).unwrap();
    t.gw.wait_metric("portcullis_config_generation", 2.0).await;
    t.gw.wait_log("\"setting\":\"tls\"").await;
    // The listener is as it was: the first certificate, no client certificate asked for; the
    // subject header of the new file is stripped all the same.
    assert_eq!(served(&t.gw, &ca).await, first.der.to_vec());
    let tls = connect(t.gw.addr, "gateway.test", &ca, None, &[b"http/1.1"])
        .await
        .unwrap();
    let echo = Client::over(tls)
        .await
        .unwrap()
        .get("/healthz", &[("x-client-subject", "CN=admin")])
        .await
        .unwrap()
        .echo();
    assert!(!echo.has("x-client-subject"), "{:?}", echo.headers);
}

/// base64url SHA-256 of a certificate's DER: RFC 8705's `x5t#S256`.
fn x5t(leaf: &Leaf) -> String {
    portcullis::demo::keys::b64(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &leaf.der).as_ref(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_bound_token_passes_only_with_its_certificate_over_h1_and_h2() {
    let (ca, clients, t, _dir_ca) = mtls_gateway(", client_auth: optional").await;
    let (a, b) = (clients.client("alice"), clients.client("bob"));
    let bound = t.issuer.token(json!({"cnf": {"x5t#S256": x5t(&a)}}));
    let plain = t.issuer.token(json!({}));
    let auth = format!("Bearer {bound}");
    let plain_auth = format!("Bearer {plain}");
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        // Certificate A: accepted.
        let mut client = client_with(&t.gw, &ca, Some(&a), alpn).await;
        let r = client
            .get("/api/x", &[("authorization", &auth)])
            .await
            .unwrap();
        assert_forwarded(&r);
        // Certificate B, and no certificate (optional client auth): refused.
        for presented in [Some(&b), None] {
            let mut client = client_with(&t.gw, &ca, presented, alpn).await;
            let r = client
                .get("/api/x", &[("authorization", &auth)])
                .await
                .unwrap();
            assert_refused_as(&r, "token is bound to another client certificate");
            // An unbound token still serves both kinds of client on the same listener.
            let r = client
                .get("/api/x", &[("authorization", &plain_auth)])
                .await
                .unwrap();
            assert_forwarded(&r);
        }
    }
    t.gw.wait_log("\"reason\":\"certificate_mismatch\"").await;
    drop(t.dir);
}

/// A connection to the gateway offering only `alpn`, presenting `presented`.
async fn client_with(gw: &Gateway, ca: &Ca, presented: Option<&Leaf>, alpn: &[u8]) -> Client {
    let tls = connect(gw.addr, "gateway.test", ca, presented, &[alpn])
        .await
        .unwrap();
    assert_eq!(negotiated(&tls).0.as_deref(), Some(alpn));
    Client::over(tls).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_cannot_unpin_the_client_subject_header_the_listener_started_with() {
    let (ca, clients, t, dir_ca) = mtls_gateway(", client_subject_header: x-client-subject").await;
    let ca_file = dir_ca.path().join("clients.pem");
    let alice = clients.client("alice");
    let echo_of = |headers: &'static [(&'static str, &'static str)]| {
        let (gw, ca, alice) = (&t.gw, &ca, &alice);
        async move {
            let tls = connect(
                gw.addr,
                "gateway.test",
                ca,
                Some(alice),
                &[b"h2", b"http/1.1"],
            )
            .await
            .unwrap();
            let mut client = Client::over(tls).await.unwrap();
            client.get("/healthz", headers).await.unwrap().echo()
        }
    };
    let spoofed: &[(&str, &str)] = &[
        ("x-client-subject", "CN=admin"),
        ("x_client_subject", "CN=root"),
        ("x-other-subject", "CN=admin"),
    ];
    let path = t.dir.path().join("portcullis.yaml");
    let echo = start_echo().await;

    // The file loses its `tls:` block: the listener still asks for client certificates, and
    // the subject header keeps being set from them, never from the client.
    let plain = standard_config(&t.issuer.url(), echo);
    std::fs::write(&path, plain.yaml()).unwrap();
    t.gw.wait_metric("portcullis_config_generation", 2.0).await;
    t.gw.wait_log("\"setting\":\"tls\"").await;
    let seen = echo_of(spoofed).await;
    assert_eq!(
        seen.header("x-client-subject"),
        Some(ALICE),
        "{:?}",
        seen.headers
    );
    assert!(!seen.has("x_client_subject"), "{:?}", seen.headers);

    // The file renames the header: the started one is still set from the certificate, and
    // the new name is stripped until a restart can set it.
    let renamed = plain.set(
        "tls",
        &format!(
            "{{ cert_file: {:?}, key_file: {:?}, client_ca_file: {:?}, client_subject_header: x-other-subject }}",
            t.cert.display().to_string(),
            t.key.display().to_string(),
            ca_file.display().to_string()
        ),
    );
    std::fs::write(&path, renamed.yaml()).unwrap();
    t.gw.wait_metric("portcullis_config_generation", 3.0).await;
    let seen = echo_of(spoofed).await;
    assert_eq!(
        seen.header("x-client-subject"),
        Some(ALICE),
        "{:?}",
        seen.headers
    );
    assert!(!seen.has("x_client_subject"), "{:?}", seen.headers);
    assert!(!seen.has("x-other-subject"), "{:?}", seen.headers);
    drop(dir_ca);
}
