//! Token minting for `benches/load.sh` (not a measurement): one RSA-2048 key, its JWKS and
//! SubjectPublicKeyInfo PEM (for HAProxy's `jwt_verify`), one token, and COUNT distinct tokens
//! (each with its own `sub` and `jti`), all valid for 24 hours. Also prints the gateway config
//! of the load benchmark, written with the tests' config builder.
//!
//! `cargo bench --bench mint -- OUTDIR COUNT ISSUER AUDIENCE`
//! `cargo bench --bench mint -- config LISTEN ADMIN UPSTREAM H2C_UPSTREAM JWKS_FILE ISSUER AUDIENCE`

#[path = "../tests/common/config.rs"]
mod config;

use aws_lc_rs::encoding::AsDer;
use config::{Config, IssuerBlock, Route};
use jsonwebtoken::Algorithm;
use portcullis::demo::keys::{jwks, now, SigningKey};
use serde_json::json;
use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if let [mode, listen, admin, upstream, h2c_upstream, jwks_file, issuer, audience] =
        args.as_slice()
    {
        if mode == "config" {
            print!(
                "{}",
                load_config(
                    listen,
                    admin,
                    upstream,
                    h2c_upstream,
                    jwks_file,
                    issuer,
                    audience
                )
            );
            return;
        }
    }
    let [dir, count, issuer, audience] = args.as_slice() else {
        // `cargo bench` runs every bench target: this one has nothing to measure.
        eprintln!("mint: usage: cargo bench --bench mint -- OUTDIR COUNT ISSUER AUDIENCE");
        eprintln!("       cargo bench --bench mint -- config LISTEN ADMIN UPSTREAM H2C_UPSTREAM JWKS_FILE ISSUER AUDIENCE");
        return;
    };
    let count: usize = count.parse().expect("COUNT is a number");
    let dir = std::path::Path::new(dir);
    std::fs::create_dir_all(dir).expect("create OUTDIR");

    let key = SigningKey::generate("load-rs256", Algorithm::RS256);
    std::fs::write(dir.join("jwks.json"), jwks(&[&key]).to_string()).expect("write jwks");
    let spki = spki_der(&key);
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}-----END PUBLIC KEY-----\n",
        base64_lines(&spki)
    );
    std::fs::write(dir.join("pubkey.pem"), pem).expect("write pem");

    let t = now();
    let claims = |i: usize| {
        json!({
            "iss": issuer, "sub": format!("user-{i:06}"), "aud": audience,
            "iat": t - 60, "nbf": t - 60, "exp": t + 86_400,
            "email": format!("user-{i:06}@example.com"),
            "scope": "read:orders write:orders openid profile", "azp": "load-client",
            "jti": format!("{i:06}-{t}-0123456789abcdef"),
        })
    };
    std::fs::write(dir.join("token.txt"), key.mint(&claims(usize::MAX)) + "\n")
        .expect("write token");

    // RSA signing is the slow part: two threads, one per core.
    let threads = 2;
    let parts: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                let (key, claims) = (&key, &claims);
                s.spawn(move || {
                    (w..count)
                        .step_by(threads)
                        .map(|i| key.mint(&claims(i)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(dir.join("tokens.txt")).expect("create tokens.txt"),
    );
    for i in 0..count {
        writeln!(out, "{}", parts[i % threads][i / threads]).expect("write token");
    }
    out.flush().expect("flush tokens.txt");
}

/// The gateway under load: a pass-through route and a `read:orders` route in front of the
/// upstream, a `read:orders` gRPC route (`/grpc.health.v1.Health/*`) in front of the h2c
/// upstream, the minted key's issuer, a token cache that holds every minted token, one thread.
fn load_config(
    listen: &str,
    admin: &str,
    upstream: &str,
    h2c_upstream: &str,
    jwks_file: &str,
    issuer: &str,
    audience: &str,
) -> String {
    Config::new()
        .listen(listen)
        .admin_listen(admin)
        .upstream("nginx", &format!("http://{upstream}"))
        .upstream_with(
            "nginx_h2c",
            &format!("http://{h2c_upstream}"),
            "protocol: h2c",
        )
        .default_upstream("nginx")
        .issuer(
            IssuerBlock::new("load", issuer)
                .jwks_file(jwks_file)
                .audiences(&[audience])
                .algorithms(&["RS256"]),
        )
        .identity_header("x-auth-subject", "sub")
        .identity_header("x-auth-email", "email")
        .identity_header("x-auth-scopes", "scope")
        .route(Route::new("pass", "/pass/**").auth("none"))
        .route(Route::new("api", "/api/**").scopes("[read:orders]"))
        .route(
            Route::new("grpc", "/grpc.health.v1.Health/*")
                .scopes("[read:orders]")
                .set("upstream", "nginx_h2c"),
        )
        .limit("token_cache_entries", "100000")
        .server("threads", "1")
        .server("shutdown_grace", "1s")
        .yaml()
}

/// The key's SubjectPublicKeyInfo DER, rebuilt from its JWK (n, e).
fn spki_der(key: &SigningKey) -> Vec<u8> {
    use base64::Engine;
    let jwk = key.jwk();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let n = b64.decode(jwk["n"].as_str().unwrap()).unwrap();
    let e = b64.decode(jwk["e"].as_str().unwrap()).unwrap();
    let parsed = aws_lc_rs::signature::RsaPublicKeyComponents { n: &n, e: &e }
        .to_parsed_public_key(&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256)
        .expect("valid RSA key");
    parsed.as_der().expect("DER").as_ref().to_vec()
}

fn base64_lines(der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    text.as_bytes()
        .chunks(64)
        .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
        .collect()
}
