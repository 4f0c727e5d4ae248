use super::*;
use crate::tools::check::Relation;

fn pat(p: &str) -> PathPattern {
    PathPattern::parse(p).unwrap()
}

#[test]
fn double_star_stops_at_segment_boundary() {
    let p = pat("/api/orders/**");
    assert!(p.matches("/api/orders"));
    assert!(p.matches("/api/orders/"));
    assert!(p.matches("/api/orders/7/items"));
    assert!(!p.matches("/api/ordersX"));
    assert!(!p.matches("/api"));
}

#[test]
fn single_star_is_exactly_one_segment() {
    let p = pat("/users/*/profile");
    assert!(p.matches("/users/42/profile"));
    assert!(!p.matches("/users/profile"));
    assert!(!p.matches("/users/1/2/profile"));
    assert!(!pat("/users/*").matches("/users/"));
}

#[test]
fn literal_patterns_are_exact() {
    assert!(pat("/").matches("/"));
    assert!(!pat("/").matches("/x"));
    assert!(pat("/healthz").matches("/healthz"));
    assert!(!pat("/healthz").matches("/healthz/"));
    assert!(!pat("/healthz").matches("/Healthz"));
    assert!(pat("/**").matches("/anything/at/all"));
}

#[test]
fn bad_patterns_are_refused() {
    for p in ["api", "/a/**/b", "/a*", "/a/../b", "//a"] {
        assert!(PathPattern::parse(p).is_err(), "{p}");
    }
}

#[test]
fn host_wildcard_needs_a_label() {
    let h = HostMatch::parse(Some("*.example.com")).unwrap();
    assert!(h.matches(Some("api.example.com")));
    assert!(!h.matches(Some("example.com")));
    assert!(!h.matches(Some("evilexample.com")));
    assert!(!h.matches(None));
    assert_eq!(
        normalise_host("API.Example.com:8443").as_deref(),
        Some("api.example.com")
    );
    assert_eq!(normalise_host("[::1]:80").as_deref(), Some("[::1]"));
}

#[test]
fn a_host_is_a_name_or_address_with_at_most_a_numeric_port() {
    for (raw, want) in [
        ("admin.example.com", Some("admin.example.com")),
        ("admin.example.com.", Some("admin.example.com")),
        ("admin.example.com:443", Some("admin.example.com")),
        ("admin.example.com:65535", Some("admin.example.com")),
        ("10.0.0.1:80", Some("10.0.0.1")),
        ("[2001:DB8::1]", Some("[2001:db8::1]")),
        ("[::1]:8080", Some("[::1]")),
    ] {
        assert_eq!(normalise_host(raw).as_deref(), want, "{raw}");
    }
    for bad in [
        "admin.example.com:x",
        "a.com:1:2",
        "evil.com:x.example.com",
        "a.com:",
        "a.com:123456",
        ":80",
        "",
        "[::1]x",
        "[::1]:",
        "[]:80",
        "[::1:80",
        "a b.com",
        "a.com ",
        " a.com",
        "a.com/x",
        "user@a.com",
    ] {
        assert_eq!(normalise_host(bad), None, "{bad:?}");
    }
}

#[test]
fn head_follows_the_rules_of_get() {
    let get = [Method::GET];
    assert!(allows_method(Some(&get), &Method::HEAD));
    assert!(!allows_method(Some(&[Method::HEAD]), &Method::GET));
    assert!(!allows_method(Some(&[Method::POST]), &Method::HEAD));
    assert!(allows_method(None, &Method::DELETE));
    let table = RouteTable::new(vec![
        route(
            HostMatch::Any,
            Some(vec![Method::GET]),
            PathPattern::parse("/a").unwrap(),
        ),
        route(HostMatch::Any, None, PathPattern::parse("/a").unwrap()),
    ]);
    assert_eq!(table.find(None, &Method::HEAD, "/a"), Some(0));
    assert_eq!(table.find(None, &Method::POST, "/a"), Some(1));
}

/// A small deterministic generator (xorshift64*), so a failure always reproduces.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const SEGMENTS: &[&str] = &["a", "b", "api", "v1", "x"];
const HOSTS: &[&str] = &[
    "api.example.com",
    "example.com",
    "a.api.example.com",
    "other.org",
    ".example.com",
    "x.y.example.com",
];

fn route(host: HostMatch, methods: Option<Vec<Method>>, path: PathPattern) -> Route {
    Route {
        name: String::new(),
        host,
        methods,
        path,
        auth: Auth::Required,
        issuers: None,
        scopes: ScopeRule::Nothing,
        claims: Vec::new(),
        upstream: 0,
        mode: Mode::Enforce,
        sender_constrained: false,
    }
}

fn random_route(rng: &mut Rng) -> Route {
    loop {
        let mut pattern = String::new();
        for _ in 0..rng.below(4) {
            pattern.push('/');
            pattern.push_str(if rng.below(3) == 0 {
                "*"
            } else {
                rng.pick(SEGMENTS)
            });
        }
        match rng.below(4) {
            0 => pattern.push_str("/**"),
            1 => pattern.push('/'),
            _ if pattern.is_empty() => pattern.push('/'),
            _ => {}
        }
        let Ok(path) = PathPattern::parse(&pattern) else {
            continue;
        };
        let host = match rng.below(5) {
            0 | 1 => None,
            2 => Some("*.example.com"),
            3 => Some("*.api.example.com"),
            _ => Some(rng.pick(HOSTS).trim_start_matches('.')),
        };
        let methods = match rng.below(3) {
            0 => None,
            1 => Some(vec![Method::GET]),
            _ => Some(vec![Method::POST, Method::DELETE]),
        };
        return route(HostMatch::parse(host).unwrap(), methods, path);
    }
}

fn random_request(rng: &mut Rng) -> (Option<&'static str>, Method, String) {
    let mut path = String::new();
    for _ in 0..rng.below(5) {
        path.push('/');
        // Empty segments too: `find` must agree with the scan on any input.
        path.push_str(if rng.below(8) == 0 {
            ""
        } else {
            rng.pick(SEGMENTS)
        });
    }
    if path.is_empty() || rng.below(6) == 0 {
        path.push('/');
    }
    let host = (rng.below(5) != 0).then(|| rng.pick(HOSTS));
    let method = [Method::GET, Method::POST, Method::PUT][rng.below(3)].clone();
    (host, method, path)
}

#[test]
fn compiled_matcher_agrees_with_a_scan_in_file_order() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut matched = 0;
    for _ in 0..400 {
        let count = 1 + rng.below(40);
        let table = RouteTable::new((0..count).map(|_| random_route(&mut rng)).collect());
        for _ in 0..200 {
            let (host, method, path) = random_request(&mut rng);
            let scan = table
                .routes()
                .iter()
                .position(|r| r.matches(host, &method, &path));
            assert_eq!(
                table.find(host, &method, &path),
                scan,
                "{host:?} {method} {path} in {:#?}",
                table.routes()
            );
            matched += usize::from(scan.is_some());
        }
    }
    // The generator must exercise matches, not only misses.
    assert!(matched > 10_000, "{matched}");
}

#[test]
fn covers_and_overlap_agree_with_matching() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (mut covered, mut overlapping) = (0, 0);
    for _ in 0..3000 {
        let (a, b) = (random_route(&mut rng), random_route(&mut rng));
        let paths: Vec<String> = (0..60).map(|_| random_request(&mut rng).2).collect();
        if a.path.covers(&b.path) {
            covered += 1;
            for p in paths.iter().filter(|p| b.path.matches(p)) {
                assert!(a.path.matches(p), "{a:?} covers {b:?} but not {p}");
            }
        }
        match a.path.overlap(&b.path) {
            Some(p) => {
                overlapping += 1;
                assert!(a.path.matches(&p) && b.path.matches(&p), "{p} {a:?} {b:?}");
            }
            None => assert!(!paths.iter().any(|p| a.path.matches(p) && b.path.matches(p))),
        }
        for host in HOSTS.iter().map(|h| Some(*h)).chain([None]) {
            if a.host.covers(&b.host) && b.host.matches(host) {
                assert!(a.host.matches(host), "{:?} {:?} {host:?}", a.host, b.host);
            }
            if a.host.matches(host) && b.host.matches(host) {
                assert!(
                    a.host.overlap(&b.host).is_some(),
                    "{:?} {:?}",
                    a.host,
                    b.host
                );
            }
        }
        if let Some(h) = a.host.overlap(&b.host) {
            assert!(a.host.matches(h.as_deref()) && b.host.matches(h.as_deref()));
        }
    }
    assert!(
        covered > 100 && overlapping > 300,
        "{covered} {overlapping}"
    );
    assert!(pat("/api/**").covers(&pat("/api/orders/*")));
    assert!(!pat("/api/*").covers(&pat("/api/**")));
    assert!(pat("/**").covers(&pat("/")));
    assert!(!pat("/a/*").covers(&pat("/a/")));
}

#[test]
fn a_miss_names_the_first_condition_that_failed() {
    let r = route(
        HostMatch::parse(Some("a.example.com")).unwrap(),
        Some(vec![Method::GET]),
        pat("/a/**"),
    );
    assert_eq!(
        r.miss(Some("b.example.com"), &Method::GET, "/a"),
        Some(Miss::Host)
    );
    assert_eq!(
        r.miss(Some("a.example.com"), &Method::POST, "/a"),
        Some(Miss::Method)
    );
    assert_eq!(
        r.miss(Some("a.example.com"), &Method::HEAD, "/b"),
        Some(Miss::Path)
    );
    assert_eq!(r.miss(Some("a.example.com"), &Method::HEAD, "/a/b"), None);
}

#[test]
fn first_route_in_file_order_wins_across_hosts_and_wildcards() {
    let table = RouteTable::new(vec![
        route(HostMatch::Any, Some(vec![Method::POST]), pat("/api/**")),
        route(
            HostMatch::parse(Some("*.example.com")).unwrap(),
            None,
            pat("/api/*/x"),
        ),
        route(
            HostMatch::parse(Some("a.example.com")).unwrap(),
            None,
            pat("/api/v1/x"),
        ),
        route(HostMatch::Any, None, pat("/api/v1/**")),
    ]);
    let get = Method::GET;
    assert_eq!(
        table.find(Some("a.example.com"), &get, "/api/v1/x"),
        Some(1)
    );
    assert_eq!(table.find(Some("example.com"), &get, "/api/v1/x"), Some(3));
    assert_eq!(table.find(None, &get, "/api/v1"), Some(3));
    assert_eq!(table.find(None, &Method::POST, "/api/v1"), Some(0));
    assert_eq!(table.find(None, &get, "/api"), None);
    assert_eq!(table.find(Some("a.example.com"), &get, "/api//x"), None);
    assert_eq!(RouteTable::default().find(None, &get, "/"), None);
}
