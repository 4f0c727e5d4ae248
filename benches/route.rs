//! Route matching (`RouteTable::find`) at 10, 1,000 and 10,000 routes, for requests that match
//! the first route, the last one, a wildcard-host one, and none.
//!
//! `cargo bench --bench route`

mod support;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::Method;
use portcullis::authz::ScopeRule;
use portcullis::route::{Auth, HostMatch, Mode, PathPattern, Route, RouteTable};
use std::hint::black_box;

fn table(n: usize) -> RouteTable {
    let routes = support::routes(n)
        .into_iter()
        .enumerate()
        .map(|(i, s)| Route {
            name: format!("r{i}"),
            host: HostMatch::parse(s.host.as_deref()).expect("host"),
            methods: s
                .methods
                .map(|m| m.iter().map(|m| m.parse().expect("method")).collect()),
            path: PathPattern::parse(&s.path).expect("pattern"),
            auth: Auth::Required,
            issuers: None,
            scopes: ScopeRule::Nothing,
            claims: Vec::new(),
            upstream: 0,
            mode: Mode::Enforce,
            sender_constrained: false,
        })
        .collect();
    RouteTable::new(routes)
}

fn bench_routes(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_find");
    for n in [10, 1_000, 10_000] {
        let t = table(n);
        for (label, host, method, path) in support::requests(n) {
            let method: Method = method.parse().unwrap();
            let expected = t
                .routes()
                .iter()
                .position(|r| r.matches(host.as_deref(), &method, &path));
            assert_eq!(
                t.find(host.as_deref(), &method, &path),
                expected,
                "{label} at {n}"
            );
            group.bench_function(BenchmarkId::new(format!("compiled/{label}"), n), |b| {
                b.iter(|| {
                    t.find(
                        black_box(host.as_deref()),
                        black_box(&method),
                        black_box(&path),
                    )
                })
            });
            // The matcher this one replaced: every route tried in file order.
            group.bench_function(BenchmarkId::new(format!("linear_scan/{label}"), n), |b| {
                b.iter(|| {
                    let (host, path) = (black_box(host.as_deref()), black_box(&path));
                    t.routes()
                        .iter()
                        .position(|r| r.matches(host, &method, path))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_routes);
criterion_main!(benches);
