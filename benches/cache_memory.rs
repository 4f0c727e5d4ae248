//! What the verified-token cache costs in memory: fills an `Authenticator` with COUNT distinct
//! tokens shaped like `benches/load.sh`'s (the same claims, identity headers and scope rule;
//! HS256 so that minting 100,000 of them takes a second, which changes nothing in an entry)
//! and prints the live heap (counted by a wrapper around mimalloc, the gateway's allocator)
//! and RSS (`/proc/self/statm`) before and after, per cached token.
//!
//! `cargo bench --bench cache_memory -- [COUNT]` (default 100000). `CLAIM_BYTES=N` pads each
//! token's `email` (an identity header) by N bytes: large-claim tokens, for the cache's byte
//! bound.

#[path = "support/ready.rs"]
mod ready;
use jsonwebtoken::Algorithm;
use portcullis::demo::keys::{now, SigningKey};
use portcullis::metrics::Metrics;
use portcullis::token::Authenticator;
use ready::ready;
use serde_json::json;
use std::alloc::{GlobalAlloc, Layout};
use std::path::Path;
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static BLOCKS: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_add(1, Ordering::Relaxed);
        mimalloc::MiMalloc.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_sub(1, Ordering::Relaxed);
        mimalloc::MiMalloc.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        mimalloc::MiMalloc.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const SECRET: &str = "bench-secret-0123456789abcdef-0123456789";
const ENV: &str = "PORTCULLIS_BENCH_HMAC_SECRET";

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn main() {
    let count: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map_or(100_000, |a| a.parse().expect("COUNT is a number"));
    std::env::set_var(ENV, SECRET);
    let issuer = "https://idp.bench.example/";
    let audience = "api://bench";
    let yaml = format!(
        "listen: 127.0.0.1:0\nupstreams:\n  app: {{ url: \"http://127.0.0.1:1\" }}\nupstream: app\n\
         identity:\n  headers:\n    x-auth-subject: sub\n    x-auth-email: email\n    x-auth-scopes: scope\n\
         routes:\n  - name: pass\n    match: {{ path: /pass/** }}\n    auth: none\n\
         \x20 - name: api\n    match: {{ path: /api/** }}\n    scopes: [read:orders]\n\
         issuers:\n  load:\n    issuer: \"{issuer}\"\n    audiences: [\"{audience}\"]\n    \
         algorithms: [HS256]\n    hmac_secret_env: {ENV}\n\
         limits:\n  token_cache_entries: {count}\n"
    );
    let policy = portcullis::config::from_str(&yaml, "bench", Path::new(".")).expect("policy");
    let keys = portcullis::live::key_store(&policy);
    let metrics = Metrics::new();
    let rules = portcullis::engine::token_rules(&policy);
    let key = SigningKey::hmac("hs", Algorithm::HS256, SECRET.as_bytes());
    let t = now();
    let pad = "x".repeat(
        std::env::var("CLAIM_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    // The load script's claims, so the tokens are 766 bytes long as RS256 and the entries the same.
    let tokens: Vec<String> = (0..count)
        .map(|i| {
            key.mint(&json!({
                "iss": issuer, "sub": format!("user-{i:06}"), "aud": audience,
                "iat": t - 60, "nbf": t - 60, "exp": t + 86_400,
                "email": format!("user-{i:06}{pad}@example.com"),
                "scope": "read:orders write:orders openid profile", "azp": "load-client",
                "jti": format!("{i:06}-{t}-0123456789abcdef"),
            }))
        })
        .collect();
    let auth = Authenticator::new(count as u64);
    // One token first, so lazily built statics are not counted per entry.
    ready(auth.authenticate(&tokens[0], &rules, &keys, &metrics)).expect("valid");
    let (heap0, blocks0, rss0) = (
        LIVE.load(Ordering::Relaxed),
        BLOCKS.load(Ordering::Relaxed),
        rss_bytes(),
    );
    let started = std::time::Instant::now();
    // Twice over: a cache may admit a token on its second use only.
    for _ in 0..2 {
        for token in &tokens {
            ready(auth.authenticate(token, &rules, &keys, &metrics)).expect("valid");
        }
    }
    let elapsed = started.elapsed();
    // A hit on every token, as the load test's requests do: first use of the cached value may
    // allocate (a `Bytes` promoted to shared).
    for token in &tokens {
        let id = ready(auth.authenticate(token, &rules, &keys, &metrics)).expect("valid");
        // As the proxy does: the identity headers it sets upstream.
        if let Ok(headers) = &id.headers {
            for (name, value) in headers.iter(&policy.identity, &id.scopes) {
                std::hint::black_box((name, value));
            }
        }
    }
    let entries = auth.cached_entries();
    let (heap1, blocks1, rss1) = (
        LIVE.load(Ordering::Relaxed),
        BLOCKS.load(Ordering::Relaxed),
        rss_bytes(),
    );
    let mib = |b: f64| b / (1024.0 * 1024.0);
    let per = |d: f64| d / entries.max(1) as f64;
    println!(
        "tokens {count}, token length {} bytes, cached entries {entries}, fill {:.2} s",
        tokens[0].len(),
        elapsed.as_secs_f64()
    );
    println!(
        "live heap: {:.1} MiB -> {:.1} MiB: {:.0} bytes, {:.2} blocks per entry",
        mib(heap0 as f64),
        mib(heap1 as f64),
        per((heap1 - heap0) as f64),
        per((blocks1 - blocks0) as f64)
    );
    println!(
        "RSS: {:.1} MiB -> {:.1} MiB: {:.0} bytes per entry (the tokens themselves: {:.1} MiB)",
        mib(rss0 as f64),
        mib(rss1 as f64),
        per(rss1 as f64 - rss0 as f64),
        mib(tokens.iter().map(|t| t.capacity()).sum::<usize>() as f64)
    );
    drop(tokens);
    if std::env::var_os("MOKA_ALONE").is_some() {
        moka_alone(count);
    }
}

/// moka alone, configured as the gateway had it, holding `Arc<u64>`: its own cost per entry.
#[allow(dead_code)]
fn moka_alone(count: usize) {
    struct Exp;
    impl moka::Expiry<[u8; 32], std::sync::Arc<u64>> for Exp {
        fn expire_after_create(
            &self,
            _: &[u8; 32],
            _: &std::sync::Arc<u64>,
            _: std::time::Instant,
        ) -> Option<std::time::Duration> {
            Some(std::time::Duration::from_secs(3600))
        }
    }
    let cache = moka::sync::Cache::builder()
        .max_capacity(count as u64)
        .expire_after(Exp)
        .support_invalidation_closures()
        .build();
    let heap0 = LIVE.load(Ordering::Relaxed);
    for i in 0..count {
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&(i as u64).to_le_bytes());
        cache.insert(k, std::sync::Arc::new(i as u64));
    }
    cache.run_pending_tasks();
    println!(
        "moka alone ({} entries of Arc<u64>): {:.0} bytes per entry",
        cache.entry_count(),
        (LIVE.load(Ordering::Relaxed) - heap0) as f64 / count as f64
    );
}
