//! The floor of "every token new" for `benches/instructions.sh` (not a measurement by itself):
//! COUNT RSA-2048 PKCS#1 v1.5 SHA-256 verifications of the load benchmark's token with aws-lc,
//! the key parsed once, as the gateway's key store holds it. Run under callgrind twice with two
//! counts, the difference of the totals over the difference of the counts is one verification
//! (the message's SHA-256 included), without the program's start-up.
//!
//! `cargo bench --bench rsa_verify -- WORK_DIR COUNT` (WORK_DIR: `jwks.json` and `token.txt`
//! from `benches/mint.rs`)

use aws_lc_rs::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
use base64::Engine;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [dir, count] = args.as_slice() else {
        // `cargo bench` runs every bench target: this one has nothing to measure by itself.
        eprintln!("rsa_verify: usage: cargo bench --bench rsa_verify -- WORK_DIR COUNT");
        return;
    };
    let count: usize = count.parse().expect("COUNT is a number");
    let dir = std::path::Path::new(dir);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("jwks.json")).expect("read jwks.json"))
            .expect("jwks.json is JSON");
    let field = |name: &str| {
        b64.decode(jwks["keys"][0][name].as_str().expect("an RSA JWK"))
            .expect("base64url")
    };
    let (n, e) = (field("n"), field("e"));
    let key = RsaPublicKeyComponents { n: &n, e: &e }
        .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
        .expect("an RSA-2048 key");
    let token = std::fs::read_to_string(dir.join("token.txt")).expect("read token.txt");
    let token = token.trim();
    let (message, signature) = token.rsplit_once('.').expect("a JWS");
    let signature = b64.decode(signature).expect("base64url signature");
    for _ in 0..count {
        key.verify_sig(std::hint::black_box(message.as_bytes()), &signature)
            .expect("the token's signature verifies");
    }
}
