//! The compiled route table: (host, method, canonical path) → route. Routes are tried in file
//! order and the first match wins. Pure: no I/O, no tokens.

use crate::authz::{ClaimRule, ScopeRule};
use http::Method;

/// `auth:` of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// A valid token is needed (the default).
    Required,
    /// No token: forwarded anonymously. A token: it must be valid.
    Optional,
    /// No token is read; identity headers are still stripped.
    None,
}

/// `mode:` of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Decisions are enforced (the default).
    Enforce,
    /// Evaluated in full, forwarded whatever the decision; a denial it would have made is
    /// logged and counted.
    Shadow,
}

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: exactly one non-empty segment.
    One,
}

/// A compiled path pattern: literal segments, `*`, and an optional trailing `**`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<Segment>,
    /// Ends in `**`: zero or more further segments.
    rest: bool,
}

impl PathPattern {
    /// Compile a pattern such as `/api/orders/*/items/**`.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let Some(body) = pattern.strip_prefix('/') else {
            return Err("a path pattern starts with /".into());
        };
        if crate::path::canonicalise(pattern).map_err(|e| e.to_string())? != pattern {
            return Err("a path pattern must be canonical (no //, . or .., escapes upper-case, unreserved characters unescaped)".into());
        }
        let mut segments = Vec::new();
        let mut rest = false;
        let parts: Vec<&str> = if body.is_empty() {
            Vec::new()
        } else {
            body.split('/').collect()
        };
        for (i, part) in parts.iter().enumerate() {
            match *part {
                "**" if i + 1 == parts.len() => rest = true,
                "**" => return Err("** may only be the last segment".into()),
                "*" => segments.push(Segment::One),
                p if p.contains('*') => {
                    return Err("* and ** must be whole segments".into());
                }
                p => segments.push(Segment::Literal(p.to_string())),
            }
        }
        Ok(PathPattern { segments, rest })
    }

    /// Does the canonical `path` match? Segment boundaries are respected: `/api/orders/**`
    /// matches `/api/orders` and `/api/orders/7`, never `/api/ordersX`.
    pub fn matches(&self, path: &str) -> bool {
        let body = &path[1.min(path.len())..];
        let mut parts = if body.is_empty() {
            None
        } else {
            Some(body.split('/'))
        }
        .into_iter()
        .flatten();
        for seg in &self.segments {
            let Some(part) = parts.next() else {
                return false;
            };
            match seg {
                Segment::Literal(lit) if lit == part => {}
                Segment::One if !part.is_empty() => {}
                _ => return false,
            }
        }
        self.rest || parts.next().is_none()
    }
}

/// Pattern relations, for `portcullis check` (`lint`): whether one route can hide another.
impl PathPattern {
    /// Does every path this pattern's `other` matches also match `self`?
    pub fn covers(&self, other: &PathPattern) -> bool {
        let (a, b) = (&self.segments, &other.segments);
        if a.len() > b.len() {
            // `other` matches a path of exactly `b.len()` segments, which `self` cannot.
            return false;
        }
        let pairs_ok = a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Segment::One, Segment::One) => true,
            (Segment::One, Segment::Literal(l)) => !l.is_empty(),
            (Segment::Literal(l), Segment::Literal(m)) => l == m,
            (Segment::Literal(_), Segment::One) => false,
        });
        pairs_ok && (self.rest || (a.len() == b.len() && !other.rest))
    }

    /// Is there a path both patterns match? `Some` of one such path.
    pub fn overlap(&self, other: &PathPattern) -> Option<String> {
        let (a, b) = (&self.segments, &other.segments);
        if (a.len() < b.len() && !self.rest) || (b.len() < a.len() && !other.rest) {
            return None;
        }
        let mut path = String::new();
        for i in 0..a.len().max(b.len()) {
            let segment = match (a.get(i), b.get(i)) {
                (Some(Segment::Literal(l)), Some(Segment::Literal(m))) if l == m => l.as_str(),
                (Some(Segment::Literal(l)), Some(Segment::One))
                | (Some(Segment::One), Some(Segment::Literal(l)))
                    if !l.is_empty() =>
                {
                    l.as_str()
                }
                (Some(Segment::Literal(l)), None) | (None, Some(Segment::Literal(l))) => l.as_str(),
                (Some(Segment::One), Some(Segment::One))
                | (Some(Segment::One), None)
                | (None, Some(Segment::One)) => "x",
                _ => return None,
            };
            path.push('/');
            path.push_str(segment);
        }
        if path.is_empty() {
            path.push('/');
        }
        Some(path)
    }
}

/// Host condition of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Any,
    /// Exact host name, lower-case, without port.
    Exact(String),
    /// `*.example.com`: stored as `.example.com`; matches any name ending so, not the bare domain.
    Suffix(String),
}

impl HostMatch {
    pub fn parse(host: Option<&str>) -> Result<Self, String> {
        let Some(host) = host else {
            return Ok(HostMatch::Any);
        };
        let host = host.to_ascii_lowercase();
        let name = host.strip_prefix("*.").unwrap_or(&host);
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err("a host is a DNS name or *.domain (no port, no other wildcard)".into());
        }
        Ok(if host.starts_with("*.") {
            HostMatch::Suffix(host[1..].to_string())
        } else {
            HostMatch::Exact(host)
        })
    }

    /// `host` is the request's host, lower-case, port removed.
    pub fn matches(&self, host: Option<&str>) -> bool {
        match (self, host) {
            (HostMatch::Any, _) => true,
            (HostMatch::Exact(want), Some(h)) => want == h,
            (HostMatch::Suffix(suffix), Some(h)) => h.len() > suffix.len() && h.ends_with(suffix),
            _ => false,
        }
    }
}

/// Host relations, for `portcullis check` (`lint`).
impl HostMatch {
    /// Does every request host `other` matches also match `self`?
    pub fn covers(&self, other: &HostMatch) -> bool {
        match (self, other) {
            (HostMatch::Any, _) => true,
            (HostMatch::Exact(a), HostMatch::Exact(b)) => a == b,
            (HostMatch::Suffix(_), HostMatch::Exact(h)) => self.matches(Some(h)),
            (HostMatch::Suffix(s), HostMatch::Suffix(t)) => t.ends_with(s.as_str()),
            _ => false,
        }
    }

    /// Is there a request host both match? `Some(None)` when any host (or none) will do,
    /// `Some(Some(host))` for one such host.
    pub fn overlap(&self, other: &HostMatch) -> Option<Option<String>> {
        let example = |h: &HostMatch| match h {
            HostMatch::Any => None,
            HostMatch::Exact(e) => Some(e.clone()),
            HostMatch::Suffix(s) => Some(format!("x{s}")),
        };
        match (self, other) {
            (HostMatch::Any, h) | (h, HostMatch::Any) => Some(example(h)),
            (HostMatch::Exact(a), HostMatch::Exact(b)) => (a == b).then(|| Some(a.clone())),
            (HostMatch::Suffix(_), HostMatch::Exact(h))
            | (HostMatch::Exact(h), HostMatch::Suffix(_)) => {
                (self.matches(Some(h)) && other.matches(Some(h))).then(|| Some(h.clone()))
            }
            (HostMatch::Suffix(s), HostMatch::Suffix(t)) => {
                let longer = if s.len() >= t.len() { s } else { t };
                (s.ends_with(t.as_str()) || t.ends_with(s.as_str()))
                    .then(|| Some(format!("x{longer}")))
            }
        }
    }
}

/// Why a route did not match a request: the first of its conditions that failed, checked in
/// the order host, method, path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    Host,
    Method,
    Path,
}

impl Miss {
    pub fn label(self) -> &'static str {
        match self {
            Miss::Host => "host",
            Miss::Method => "method",
            Miss::Path => "path",
        }
    }
}

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub host: HostMatch,
    /// `None`: every method.
    pub methods: Option<Vec<Method>>,
    pub path: PathPattern,
    pub auth: Auth,
    /// Indexes into `Policy::issuers`; `None`: every issuer.
    pub issuers: Option<Vec<usize>>,
    pub scopes: ScopeRule,
    pub claims: Vec<ClaimRule>,
    /// Index into `Policy::upstreams`.
    pub upstream: usize,
    pub mode: Mode,
    /// `sender_constraint: required`: tokens bound to nothing are refused.
    pub sender_constrained: bool,
}

impl Route {
    pub fn matches(&self, host: Option<&str>, method: &Method, path: &str) -> bool {
        self.host.matches(host)
            && allows_method(self.methods.as_deref(), method)
            && self.path.matches(path)
    }

    /// `None` when the route matches, else the first condition that failed; agrees with
    /// `matches` (for `portcullis explain`).
    pub fn miss(&self, host: Option<&str>, method: &Method, path: &str) -> Option<Miss> {
        if !self.host.matches(host) {
            Some(Miss::Host)
        } else if !allows_method(self.methods.as_deref(), method) {
            Some(Miss::Method)
        } else if !self.path.matches(path) {
            Some(Miss::Path)
        } else {
            None
        }
    }

    /// The methods this route matches: its list, with `HEAD` when it lists `GET`; `None` for
    /// every method.
    pub fn matched_methods(&self) -> Option<Vec<Method>> {
        let list = self.methods.as_ref()?;
        let mut out = list.clone();
        if out.contains(&Method::GET) && !out.contains(&Method::HEAD) {
            out.push(Method::HEAD);
        }
        Some(out)
    }

    pub fn accepts_issuer(&self, issuer: usize) -> bool {
        self.issuers
            .as_ref()
            .is_none_or(|list| list.contains(&issuer))
    }
}

/// Routes in file order, compiled into a matcher that finds the first match without trying
/// every route.
///
/// Routes are grouped by host condition (one exact name, one `*.suffix`, or any host); each
/// group is a trie over path segments whose edges are literal segments (binary-searched) and
/// `*`, with the routes that end at a node (and those whose `**` starts there) listed in file
/// order. A lookup walks the request host's groups and the path's segments once, keeps the
/// lowest matching route index found so far, and skips every subtree whose lowest route index
/// cannot beat it. The result is always the one a scan in file order would give.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    matcher: Matcher,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> Self {
        let matcher = Matcher::build(&routes);
        RouteTable { routes, matcher }
    }

    /// The index of the first route, in file order, that matches.
    pub fn find(&self, host: Option<&str>, method: &Method, path: &str) -> Option<usize> {
        self.matcher.find(&self.routes, host, method, path)
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

/// Sentinel for "no route found yet": higher than any route index.
const NONE: u32 = u32::MAX;

#[derive(Debug, Default)]
struct Node {
    /// Literal segment edges, sorted by segment.
    literals: Vec<(Box<str>, u32)>,
    /// The `*` edge.
    one: Option<u32>,
    /// Routes whose pattern ends here, ascending.
    exact: Vec<u32>,
    /// Routes whose pattern ends here in `**`, ascending.
    rest: Vec<u32>,
    /// Lowest route index in this subtree (`NONE` if empty).
    min: u32,
}

#[derive(Debug, Default)]
struct Matcher {
    nodes: Vec<Node>,
    /// Root node of the routes for each exact host, sorted by host.
    exact_hosts: Vec<(Box<str>, u32)>,
    /// Root node of the routes for each `*.suffix` (stored as `.suffix`), sorted by suffix.
    suffix_hosts: Vec<(Box<str>, u32)>,
    /// Root node of the routes without a host condition.
    any_host: Option<u32>,
}

impl Matcher {
    fn build(routes: &[Route]) -> Self {
        let mut m = Matcher::default();
        let mut exact = std::collections::BTreeMap::<&str, u32>::new();
        let mut suffix = std::collections::BTreeMap::<&str, u32>::new();
        for (index, route) in routes.iter().enumerate() {
            let index = u32::try_from(index).expect("fewer than 2^32 routes");
            let existing = match &route.host {
                HostMatch::Any => m.any_host,
                HostMatch::Exact(h) => exact.get(h.as_str()).copied(),
                HostMatch::Suffix(s) => suffix.get(s.as_str()).copied(),
            };
            let root = match existing {
                Some(root) => root,
                None => {
                    let root = m.new_node();
                    match &route.host {
                        HostMatch::Any => m.any_host = Some(root),
                        HostMatch::Exact(h) => {
                            exact.insert(h, root);
                        }
                        HostMatch::Suffix(s) => {
                            suffix.insert(s, root);
                        }
                    }
                    root
                }
            };
            m.insert(root, &route.path, index);
        }
        m.exact_hosts = exact.into_iter().map(|(h, r)| (h.into(), r)).collect();
        m.suffix_hosts = suffix.into_iter().map(|(h, r)| (h.into(), r)).collect();
        for root in m.roots() {
            m.compute_min(root);
        }
        m
    }

    fn new_node(&mut self) -> u32 {
        self.nodes.push(Node::default());
        u32::try_from(self.nodes.len() - 1).expect("fewer than 2^32 nodes")
    }

    fn roots(&self) -> Vec<u32> {
        let hosts = self.exact_hosts.iter().chain(&self.suffix_hosts);
        hosts.map(|&(_, r)| r).chain(self.any_host).collect()
    }

    fn insert(&mut self, root: u32, pattern: &PathPattern, index: u32) {
        let mut node = root;
        for seg in &pattern.segments {
            node = match seg {
                Segment::One => match self.nodes[node as usize].one {
                    Some(next) => next,
                    None => {
                        let next = self.new_node();
                        self.nodes[node as usize].one = Some(next);
                        next
                    }
                },
                Segment::Literal(lit) => {
                    let at = self.nodes[node as usize]
                        .literals
                        .binary_search_by(|(l, _)| (**l).cmp(lit.as_str()));
                    match at {
                        Ok(i) => self.nodes[node as usize].literals[i].1,
                        Err(i) => {
                            let next = self.new_node();
                            self.nodes[node as usize]
                                .literals
                                .insert(i, (lit.as_str().into(), next));
                            next
                        }
                    }
                }
            };
        }
        let node = &mut self.nodes[node as usize];
        // Routes are inserted in file order, so each list stays ascending.
        if pattern.rest {
            node.rest.push(index);
        } else {
            node.exact.push(index);
        }
    }

    fn compute_min(&mut self, node: u32) -> u32 {
        let n = &self.nodes[node as usize];
        let children: Vec<u32> = n.literals.iter().map(|&(_, c)| c).chain(n.one).collect();
        let mut min = n.exact.first().copied().unwrap_or(NONE);
        min = min.min(n.rest.first().copied().unwrap_or(NONE));
        for child in children {
            min = min.min(self.compute_min(child));
        }
        self.nodes[node as usize].min = min;
        min
    }

    fn find(
        &self,
        routes: &[Route],
        host: Option<&str>,
        method: &Method,
        path: &str,
    ) -> Option<usize> {
        // Segments after the leading `/`, split as `PathPattern::matches` splits them: `/` has
        // none, `/a/` has "a" and "".
        let body = &path[1.min(path.len())..];
        let segments = (!body.is_empty()).then_some(body);
        let mut search = Search {
            nodes: &self.nodes,
            routes,
            method,
            best: NONE,
        };
        if let Some(host) = host {
            if let Some(root) = lookup(&self.exact_hosts, host) {
                search.walk(root, segments);
            }
            // `*.example.com` matches a name that ends in `.example.com` and has at least one
            // more character before it: try each `.` after the first byte.
            if !self.suffix_hosts.is_empty() {
                for (i, _) in host.match_indices('.').filter(|&(i, _)| i > 0) {
                    if let Some(root) = lookup(&self.suffix_hosts, &host[i..]) {
                        search.walk(root, segments);
                    }
                }
            }
        }
        if let Some(root) = self.any_host {
            search.walk(root, segments);
        }
        (search.best != NONE).then_some(search.best as usize)
    }
}

fn lookup(sorted: &[(Box<str>, u32)], key: &str) -> Option<u32> {
    sorted
        .binary_search_by(|(k, _)| (**k).cmp(key))
        .ok()
        .map(|i| sorted[i].1)
}

struct Search<'a> {
    nodes: &'a [Node],
    routes: &'a [Route],
    method: &'a Method,
    best: u32,
}

impl Search<'_> {
    /// `segments`: what is left of the path, `None` when every segment has been consumed.
    fn walk(&mut self, node: u32, segments: Option<&str>) {
        let nodes = self.nodes;
        let n = &nodes[node as usize];
        if n.min >= self.best {
            return;
        }
        self.take_first(&n.rest);
        let Some(segments) = segments else {
            self.take_first(&n.exact);
            return;
        };
        let (segment, tail) = match segments.split_once('/') {
            Some((segment, tail)) => (segment, Some(tail)),
            None => (segments, None),
        };
        if let Some(child) = lookup(&n.literals, segment) {
            self.walk(child, tail);
        }
        if let Some(child) = n.one.filter(|_| !segment.is_empty()) {
            self.walk(child, tail);
        }
    }

    /// The first route of an ascending list that allows the method, if it beats the best.
    fn take_first(&mut self, list: &[u32]) {
        for &index in list {
            if index >= self.best {
                return;
            }
            let methods = self.routes[index as usize].methods.as_deref();
            if allows_method(methods, self.method) {
                self.best = index;
                return;
            }
        }
    }
}

/// Normalise a `Host` header or authority for matching: lower-case, port and trailing dot
/// removed. `None` for anything but a plain host (a DNS name, an IPv4 address or a bracketed
/// IPv6 address) with an optional port of 1 to 5 digits: `a.com:x`, `a.com:1:2`, `a.com:` and
/// `evil.com:x.example.com` are refused, since upstreams and other proxies read them as other
/// hosts than the one matched here.
pub fn normalise_host(raw: &str) -> Option<String> {
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let end = rest.find(']')?;
        let literal = &rest[..end];
        if literal.is_empty()
            || !literal
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        {
            return None;
        }
        let after = &rest[end + 1..];
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (&raw[..end + 2], port)
    } else {
        match raw.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (raw, None),
        }
    };
    if port.is_some_and(|p| !(1..=5).contains(&p.len()) || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    if host.starts_with('[') {
        return Some(host.to_ascii_lowercase());
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

/// Does a route's `methods:` list allow `method`? No list allows every method; `HEAD` follows
/// the rules of `GET`, since most frameworks answer it with the GET handler.
pub fn allows_method(methods: Option<&[Method]>, method: &Method) -> bool {
    methods
        .is_none_or(|m| m.contains(method) || (*method == Method::HEAD && m.contains(&Method::GET)))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
