//! Config compile time (`config::from_str`: YAML parse, validation, route table, key parse) for
//! a 10,000-route file.
//!
//! `cargo bench --bench config`

mod support;

use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::Algorithm;
use portcullis::demo::keys::{jwks, SigningKey};
use std::hint::black_box;
use std::path::Path;

fn bench_compile(c: &mut Criterion) {
    let key = SigningKey::generate("k", Algorithm::RS256);
    let jwks = jwks(&[&key]).to_string();
    let mut group = c.benchmark_group("config_compile");
    group.sample_size(10);
    for n in [10, 10_000] {
        let yaml = support::config_yaml(n, &jwks);
        let policy = portcullis::config::from_str(&yaml, "bench", Path::new(".")).expect("valid");
        assert_eq!(policy.routes.routes().len(), n);
        group.bench_function(format!("routes_{n}"), |b| {
            b.iter(|| portcullis::config::from_str(black_box(&yaml), "bench", Path::new(".")))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_compile);
criterion_main!(benches);
