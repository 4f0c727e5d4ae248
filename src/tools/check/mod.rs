//! `portcullis check`: what a config that compiles may still get wrong. Pure over the compiled
//! `Policy` (the same one `run` serves) and the file's text, which gives each finding its line:
//!
//! - a route that can never match, because routes declared before it match every request it
//!   would (same or wider host, methods and path pattern; `HEAD` follows `GET`), or some of
//!   the methods it lists never reach it;
//! - a route that forwards requests without a verified token (`auth: none`, `auth: optional`
//!   or `mode: shadow`) and matches some requests of an enforcing route declared after it that
//!   needs a token: those requests are served without one;
//! - an issuer that no reachable route accepts;
//! - an `https` upstream whose certificate is not verified (`dangerous_skip_verify`);
//! - a listener certificate (`tls.cert_file`) past its not-after;
//! - a decision listener that believes any address (`trusted_proxies` holding a `/0`);
//! - browsers' CORS preflights answered 401 (`cors_preflight: authenticate`) where the config
//!   shows browsers call it: a token cookie, or a protected route that lists `OPTIONS`.
//!
//! A route that never matches, and a public route that reaches past the protected route it
//! overlaps (or swallows it), fail `check` by default: the config loads, but does not do what
//! it says. A public exception inside a wider protected route (`/healthz` before `/**`) and
//! the rest are warnings, which fail it only under `--strict`.
//!
//! Scopes with a space are not a warning: the compiler refuses them (no token can carry one).
//! An upstream used by one route only is fine.

mod output;
mod relations;

pub use relations::Relation;

use crate::config::{self, Compiled, ConfigError, Options, Policy, Skipped};
use crate::route::{allows_method, Auth, Mode, Route};
use http::Method;
use serde_json::{json, Value};
use std::path::Path;

/// One warning: the route (or issuer) it is about and where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The route's name; `None` for a finding about an issuer.
    pub route: Option<String>,
    /// Key path: `routes[2]`, `issuers.backup`.
    pub path: String,
    pub line: usize,
    pub message: String,
    /// Fails `check` without `--strict`: a route that can never match, or a protected route
    /// whose requests are served without a token.
    pub fails: bool,
}

/// Every warning about `policy`, in file order of the route or issuer. `text` is the file the
/// policy was compiled from.
pub fn lint(policy: &Policy, text: &str) -> Vec<Finding> {
    let routes = policy.routes.routes();
    let route_line = |i: usize| line(text, &format!("routes[{i}]"));
    let mut out = Vec::new();
    // For each route that can never match: the earlier routes that take all its requests.
    let mut dead: Vec<Option<Vec<usize>>> = vec![None; routes.len()];

    for (j, later) in routes.iter().enumerate() {
        let earlier = &routes[..j];
        match shadowed_by(earlier, later) {
            Shadow::Whole(by) => {
                dead[j] = Some(by.clone());
                out.push(Finding {
                    fails: true,
                    route: Some(later.name.clone()),
                    path: format!("routes[{j}]"),
                    line: route_line(j),
                    message: format!(
                        "never matches: {} declared before it {} every request it would \
                         (routes are tried in file order, the first match wins)",
                        names(routes, &by, &route_line),
                        if by.len() == 1 { "matches" } else { "match" },
                    ),
                });
            }
            Shadow::Methods(lost) => {
                for (method, by) in lost {
                    out.push(Finding {
                        fails: false,
                        route: Some(later.name.clone()),
                        path: format!("routes[{j}]"),
                        line: route_line(j),
                        message: format!(
                            "its {method} requests never reach it: {} declared before it \
                             takes them",
                            names(routes, &[by], &route_line)
                        ),
                    });
                }
            }
            Shadow::None => {}
        }
    }

    for (i, public) in routes.iter().enumerate() {
        let Some(why) = forwards_without_a_token(public) else {
            continue;
        };
        for (j, protected) in routes.iter().enumerate().skip(i + 1) {
            if forwards_without_a_token(protected).is_some() {
                continue;
            }
            // A route that never matches is about this one only if this one covers it.
            if dead[j].as_ref().is_some_and(|by| !by.contains(&i)) {
                continue;
            }
            if let Some(example) = overlap(public, protected) {
                out.push(Finding {
                    // A public exception carved out of a wider protected route (`/healthz`
                    // before `/**`) is the usual first-match idiom: a warning. A public route
                    // that reaches past the protected one, or swallows it, fails.
                    fails: !covers(protected, public),
                    route: Some(public.name.clone()),
                    path: format!("routes[{i}]"),
                    line: route_line(i),
                    message: format!(
                        "{why}, declared before {} (auth: {}), which it overlaps: its \
                         requests such as {example} are served without a token",
                        names(routes, &[j], &route_line),
                        auth_label(protected.auth),
                    ),
                });
            }
        }
    }

    for (k, issuer) in policy.issuers.iter().enumerate() {
        let used = routes
            .iter()
            .zip(&dead)
            .any(|(r, dead)| dead.is_none() && r.auth != Auth::None && r.accepts_issuer(k));
        if !used {
            out.push(elsewhere(
                text,
                format!("issuers.{}", issuer.name),
                format!(
                    "issuer {:?} is accepted by no route that can match: tokens it signs \
                     are refused everywhere (routes' issuers: lists name other issuers, or \
                     no route takes a token)",
                    issuer.name
                ),
            ));
        }
    }
    for u in policy.upstreams.iter() {
        if u.tls.as_ref().is_some_and(|t| !t.verify) {
            out.push(elsewhere(
                text,
                format!("upstreams.{}.dangerous_skip_verify", u.name),
                format!(
                    "upstream {:?} is reached over TLS without verifying its certificate: \
                     anyone on the path can impersonate it (give it a ca_file instead)",
                    u.name
                ),
            ));
        }
    }
    if policy.decision_listen.is_some() {
        if let Some(i) = policy
            .trusted_proxies
            .iter()
            .position(|n| n.prefix_len() == 0)
        {
            out.push(elsewhere(
                text,
                format!("trusted_proxies[{i}]"),
                format!(
                    "{} trusts every address: anyone who reaches decision_listen can describe \
                     a request of their choosing and read the answer (list the ingresses' \
                     addresses instead)",
                    policy.trusted_proxies[i]
                ),
            ));
        }
    }
    if let Some(finding) = preflights_refused(policy, &dead, &route_line) {
        out.push(finding);
    }
    if let Some(tls) = &policy.tls {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if tls.pair.not_after < now {
            out.push(elsewhere(
                text,
                "tls.cert_file".into(),
                format!(
                    "the certificate ({}) expired at Unix time {}: clients will refuse it",
                    tls.pair.subject, tls.pair.not_after
                ),
            ));
        }
    }
    out.sort_by_key(|f| f.line);
    out
}

/// With `cors_preflight: authenticate`, a preflight (an `OPTIONS` without credentials) to a
/// route that needs a token is answered 401, and the browser never sends the real request.
/// Said only where the config shows browsers call it (a token cookie, or a protected route
/// that lists `OPTIONS` itself): an API that no browser calls needs no preflight.
fn preflights_refused(
    policy: &Policy,
    dead: &[Option<Vec<usize>>],
    line: &impl Fn(usize) -> usize,
) -> Option<Finding> {
    if policy.forward_preflights {
        return None;
    }
    let cookie = policy.token_sources.cookie.is_some();
    let refused: Vec<usize> = policy
        .routes
        .routes()
        .iter()
        .enumerate()
        .filter(|(i, r)| dead[*i].is_none() && r.auth == Auth::Required && r.mode == Mode::Enforce)
        .filter(|(_, r)| {
            let lists_options = r
                .methods
                .as_ref()
                .is_some_and(|m| m.contains(&Method::OPTIONS));
            lists_options || (cookie && allows_method(r.methods.as_deref(), &Method::OPTIONS))
        })
        .map(|(i, _)| i)
        .collect();
    let first = *refused.first()?;
    let routes = policy.routes.routes();
    Some(Finding {
        fails: false,
        route: Some(routes[first].name.clone()),
        path: format!("routes[{first}]"),
        line: line(first),
        message: format!(
            "browsers send a CORS preflight (OPTIONS, without credentials) before a \
             cross-origin call; with cors_preflight: authenticate, {} {} it 401 and the \
             browser never sends the real request (cors_preflight: forward sends preflights \
             to the route's upstream without a token)",
            names(routes, &refused, line),
            if refused.len() == 1 {
                "answers"
            } else {
                "answer"
            },
        ),
    })
}

/// A finding about something else than a route (an issuer, an upstream, the certificate),
/// at the line of `path`.
fn elsewhere(text: &str, path: String, message: String) -> Finding {
    Finding {
        fails: false,
        route: None,
        line: line(text, &path),
        path,
        message,
    }
}

enum Shadow {
    None,
    /// Earlier routes (indexes) that together match every request of the route.
    Whole(Vec<usize>),
    /// Methods the route lists whose requests an earlier route (index) takes.
    Methods(Vec<(Method, usize)>),
}

/// Does one earlier route match every request of `later` that uses `method` (`None`: any
/// method)?
fn covering(earlier: &[Route], later: &Route, method: Option<&Method>) -> Option<usize> {
    earlier.iter().position(|e| {
        let methods_ok = match method {
            Some(m) => allows_method(e.methods.as_deref(), m),
            None => e.methods.is_none(),
        };
        methods_ok && e.host.covers(&later.host) && e.path.covers(&later.path)
    })
}

fn shadowed_by(earlier: &[Route], later: &Route) -> Shadow {
    let Some(methods) = later.matched_methods() else {
        return match covering(earlier, later, None) {
            Some(by) => Shadow::Whole(vec![by]),
            None => Shadow::None,
        };
    };
    let by: Vec<Option<usize>> = methods
        .iter()
        .map(|m| covering(earlier, later, Some(m)))
        .collect();
    if by.iter().all(Option::is_some) {
        let mut all: Vec<usize> = by.into_iter().flatten().collect();
        all.sort_unstable();
        all.dedup();
        return Shadow::Whole(all);
    }
    // Only the methods the route lists: an implied HEAD is not worth a warning of its own.
    let listed = later.methods.as_deref().unwrap_or_default();
    let lost: Vec<(Method, usize)> = methods
        .into_iter()
        .zip(by)
        .filter(|(m, _)| listed.contains(m))
        .filter_map(|(m, by)| by.map(|by| (m, by)))
        .collect();
    if lost.is_empty() {
        Shadow::None
    } else {
        Shadow::Methods(lost)
    }
}

/// Does `a` match every request `b` does (host, path and methods)?
fn covers(a: &Route, b: &Route) -> bool {
    let methods = match b.matched_methods() {
        None => a.methods.is_none(),
        Some(list) => list.iter().all(|m| allows_method(a.methods.as_deref(), m)),
    };
    methods && a.host.covers(&b.host) && a.path.covers(&b.path)
}

/// A request both routes match, written `METHOD host/path`, if there is one.
fn overlap(a: &Route, b: &Route) -> Option<String> {
    let method = match (a.matched_methods(), b.matched_methods()) {
        (None, None) => Method::GET,
        (Some(list), None) | (None, Some(list)) => list.first()?.clone(),
        (Some(x), Some(y)) => x.into_iter().find(|m| y.contains(m))?,
    };
    let host = a.host.overlap(&b.host)?;
    let path = a.path.overlap(&b.path)?;
    Some(match host {
        Some(h) => format!("{method} {h}{path}"),
        None => format!("{method} {path}"),
    })
}

/// Why a route forwards requests that carry no verified token, if it does: `auth: none`,
/// `auth: optional` (a request without a token is forwarded), or `mode: shadow` (every request
/// is forwarded, whatever the decision).
fn forwards_without_a_token(route: &Route) -> Option<&'static str> {
    match (route.auth, route.mode) {
        (Auth::None, _) => Some("auth: none"),
        (Auth::Optional, _) => Some("auth: optional (forwards a request without a token)"),
        (Auth::Required, Mode::Shadow) => {
            Some("mode: shadow (forwards every request, whatever the decision)")
        }
        (Auth::Required, Mode::Enforce) => None,
    }
}

fn auth_label(auth: Auth) -> &'static str {
    match auth {
        Auth::Required => "required",
        Auth::Optional => "optional",
        Auth::None => "none",
    }
}

/// `route "a" (line 3)` or `routes "a" (line 3) and "b" (line 7)`.
fn names(routes: &[Route], indexes: &[usize], line: &impl Fn(usize) -> usize) -> String {
    let each: Vec<String> = indexes
        .iter()
        .map(|&i| format!("{:?} (line {})", routes[i].name, line(i)))
        .collect();
    match each.as_slice() {
        [one] => format!("route {one}"),
        [rest @ .., last] => format!("routes {} and {last}", rest.join(", ")),
        [] => String::new(),
    }
}

/// The line of the key (or sequence item) at `path`.
fn line(text: &str, path: &str) -> usize {
    config::locate::locate(text, path).map_or(1, |(line, _)| line)
}

/// The outcome of `portcullis check` on one file.
#[derive(Debug)]
pub struct Report {
    pub file: String,
    /// `(routes, issuers, upstreams)` of a config that compiled.
    pub counts: Option<(usize, usize, usize)>,
    /// The refusal of a config that does not compile (the compiler stops at the first).
    pub error: Option<ReportError>,
    pub warnings: Vec<Finding>,
    pub skipped: Vec<Skipped>,
}

/// A refusal, with the route it is in when there is one.
#[derive(Debug)]
pub struct ReportError {
    pub error: ConfigError,
    pub route: Option<String>,
}

/// Run `check` on a file: compile it offline (`config::Options`), then lint the policy.
pub fn check(path: &Path) -> Report {
    let file = path.display().to_string();
    let mut report = Report {
        file: file.clone(),
        counts: None,
        error: None,
        warnings: Vec::new(),
        skipped: Vec::new(),
    };
    let text = match config::read(path) {
        Ok(text) => text,
        Err(error) => {
            report.error = Some(ReportError { error, route: None });
            return report;
        }
    };
    match config::compile_file(path, &text, Options { offline: true }) {
        Ok(Compiled { policy, skipped }) => {
            report.counts = Some((
                policy.routes.routes().len(),
                policy.issuers.len(),
                policy.upstreams.len(),
            ));
            report.warnings = lint(&policy, &text);
            report.skipped = skipped;
        }
        Err(error) => {
            let route = match &error {
                ConfigError::Invalid { path, .. } => route_name(&text, path),
                ConfigError::Read { .. } => None,
            };
            report.error = Some(ReportError { error, route });
        }
    }
    report
}

/// The `name` of the route a key path (`routes[3].scopes[0]`) is in, read from the YAML.
fn route_name(text: &str, path: &str) -> Option<String> {
    let index: usize = path
        .strip_prefix("routes[")?
        .split(']')
        .next()?
        .parse()
        .ok()?;
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).ok()?;
    doc.get("routes")?
        .get(index)?
        .get("name")?
        .as_str()
        .map(str::to_string)
}

/// `1 route`, `2 routes`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

impl Report {
    /// 0: clean or warnings only; 1: the config does not load; 2: it loads, but has a finding
    /// that fails (a route that never matches, a protected route's requests served without a
    /// token), or warnings under `--strict`.
    pub fn exit_code(&self, strict: bool) -> u8 {
        if self.error.is_some() {
            1
        } else if self.warnings.iter().any(|w| w.fails || strict) {
            2
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "\
listen: 127.0.0.1:0
upstreams:
  app: { url: http://127.0.0.1:1 }
issuers:
  main:
    issuer: https://main.example/
    jwks_uri: https://main.example/jwks
    audiences: [api]
routes:
";

    fn findings(routes: &str) -> Vec<Finding> {
        let text = format!("{HEAD}{routes}");
        let policy = config::from_str(&text, "t.yaml", Path::new(".")).expect("compiles");
        lint(&policy, &text)
    }

    #[test]
    fn a_decision_listener_that_trusts_everyone_is_named() {
        let route = "  - name: api\n    match: { path: /api/** }\n";
        let text = format!(
            "{HEAD}{route}decision_listen: 127.0.0.1:8181\ntrusted_proxies: [10.0.0.0/8, 0.0.0.0/0]\n"
        );
        let policy = config::from_str(&text, "t.yaml", Path::new(".")).expect("compiles");
        let f = lint(&policy, &text);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].path, "trusted_proxies[1]");
        assert!(
            f[0].message.contains("trusts every address"),
            "{}",
            f[0].message
        );
        let text = format!(
            "{HEAD}{route}decision_listen: 127.0.0.1:8181\ntrusted_proxies: [10.0.0.0/8]\n"
        );
        let policy = config::from_str(&text, "t.yaml", Path::new(".")).expect("compiles");
        assert!(lint(&policy, &text).is_empty());
    }

    #[test]
    fn preflights_answered_401_are_named_only_where_browsers_call() {
        let lists_options =
            "  - name: spa-api\n    match: { path: /api/**, methods: [GET, OPTIONS] }\n";
        let f = findings(lists_options);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].route.as_deref(), Some("spa-api"));
        assert!(!f[0].fails);
        assert!(f[0].message.contains("CORS preflight"), "{}", f[0].message);
        // A token API that no browser shows signs of calling: no warning.
        assert!(findings("  - name: api\n    match: { path: /api/** }\n").is_empty());
        // Forwarding preflights answers it.
        let text = format!("{HEAD}{lists_options}cors_preflight: forward\n");
        let policy = config::from_str(&text, "t.yaml", Path::new(".")).expect("compiles");
        assert!(lint(&policy, &text).is_empty());
        // A token cookie means browsers: any protected route that takes OPTIONS is named.
        let text =
            format!("{HEAD}  - name: api\n    match: {{ path: /api/** }}\ntoken_sources: {{ cookie: at }}\n");
        let policy = config::from_str(&text, "t.yaml", Path::new(".")).expect("compiles");
        let f = lint(&policy, &text);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].message
                .contains("route \"api\" (line 10) answers it 401"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn a_route_covered_by_an_earlier_one_never_matches() {
        let f = findings(
            "  - name: all-api\n    match: { path: /api/** }\n  - name: orders\n    match: { path: /api/orders/*, methods: [GET], host: a.example.com }\n",
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].route.as_deref(), Some("orders"));
        assert_eq!(f[0].line, 12);
        assert!(f[0]
            .message
            .contains("never matches: route \"all-api\" (line 10)"));
    }

    #[test]
    fn head_follows_get_and_methods_can_be_covered_by_several_routes() {
        let f = findings(
            "  - name: get\n    match: { path: /a, methods: [GET] }\n  - name: post\n    match: { path: /a, methods: [POST] }\n  - name: both\n    match: { path: /a, methods: [HEAD, POST] }\n",
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0]
            .message
            .contains("routes \"get\" (line 10) and \"post\" (line 12)"));
        // HEAD alone does not cover GET.
        let f = findings(
            "  - name: head\n    match: { path: /a, methods: [HEAD] }\n  - name: get\n    match: { path: /a, methods: [GET] }\n",
        );
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn a_method_taken_by_an_earlier_route_is_named() {
        let f = findings(
            "  - name: read\n    match: { path: /a/**, methods: [GET] }\n  - name: rw\n    match: { path: /a/b, methods: [GET, POST] }\n",
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].message.starts_with("its GET requests never reach it"),
            "{f:?}"
        );
    }

    #[test]
    fn narrower_or_disjoint_earlier_routes_are_fine() {
        let f = findings(
            "  - name: one\n    match: { path: /api/orders/* }\n  - name: host\n    match: { path: /api/**, host: \"*.example.com\" }\n  - name: all\n    match: { path: /api/** }\n",
        );
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn a_public_route_before_an_overlapping_protected_one_is_named() {
        let f = findings(
            "  - name: docs\n    match: { path: /api/*/docs }\n    auth: none\n  - name: orders\n    match: { path: /api/orders/**, methods: [GET] }\n",
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].route.as_deref(), Some("docs"));
        assert!(
            f[0].message
                .contains("GET /api/orders/docs are served without a token"),
            "{f:?}"
        );
        // After the protected route, it only gets what that one does not match.
        let f = findings(
            "  - name: orders\n    match: { path: /api/orders/** }\n  - name: docs\n    match: { path: /api/*/docs }\n    auth: none\n",
        );
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn optional_and_shadow_routes_forward_without_a_token_too() {
        for (extra, why) in [
            ("    auth: optional\n", "auth: optional"),
            ("    mode: shadow\n", "mode: shadow"),
            ("    auth: optional\n    mode: shadow\n", "auth: optional"),
        ] {
            let f = findings(&format!(
                "  - name: docs\n    match: {{ path: /api/*/docs }}\n{extra}  - name: orders\n    match: {{ path: /api/orders/**, methods: [GET] }}\n"
            ));
            assert_eq!(f.len(), 1, "{extra}: {f:?}");
            assert_eq!(f[0].route.as_deref(), Some("docs"));
            assert!(f[0].fails, "{f:?}");
            assert!(f[0].message.starts_with(why), "{f:?}");
            assert!(
                f[0].message
                    .contains("GET /api/orders/docs are served without a token"),
                "{f:?}"
            );
        }
        // An enforcing route after an optional one is no finding if they do not overlap, and a
        // public route after a shadow one is not "protected".
        let f = findings(
            "  - name: opt\n    match: { path: /public/** }\n    auth: optional\n  - name: shadowed\n    match: { path: /new/** }\n    mode: shadow\n  - name: open\n    match: { path: /new/** }\n    auth: none\n",
        );
        assert!(
            f.iter().all(|f| !f.message.contains("without a token")),
            "{f:?}"
        );
    }

    #[test]
    fn a_public_catch_all_first_fails_and_names_the_protected_routes_it_opens() {
        let f = findings(
            "  - name: everything\n    match: { path: /** }\n    auth: none\n  - name: orders\n    match: { path: /api/orders/** }\n    scopes: [read:orders]\n",
        );
        let opened: Vec<_> = f
            .iter()
            .filter(|f| f.message.contains("served without a token"))
            .collect();
        assert_eq!(opened.len(), 1, "{f:?}");
        assert_eq!(opened[0].route.as_deref(), Some("everything"));
        assert!(opened[0].fails);
        let dead: Vec<_> = f
            .iter()
            .filter(|f| f.message.starts_with("never matches"))
            .collect();
        assert_eq!(dead.len(), 1, "{f:?}");
        assert!(dead[0].fails);
    }

    #[test]
    fn a_public_exception_inside_a_wider_protected_route_is_only_a_warning() {
        let f = findings(
            "  - name: health\n    match: { path: /healthz, methods: [GET] }\n    auth: none\n  - name: api\n    match: { path: /** }\n",
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(!f[0].fails, "{f:?}");
    }

    #[test]
    fn only_unreachable_or_opened_routes_fail_without_strict() {
        let f = findings(
            "  - name: read\n    match: { path: /a/**, methods: [GET] }\n  - name: rw\n    match: { path: /a/b, methods: [GET, POST] }\n",
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            !f[0].fails,
            "a method lost to an earlier route is a warning"
        );
        let f = findings(
            "  - name: all-api\n    match: { path: /api/** }\n  - name: orders\n    match: { path: /api/orders/* }\n",
        );
        assert!(f[0].fails, "a route that never matches fails");
    }

    #[test]
    fn an_issuer_no_route_accepts_is_named() {
        let text = HEAD.replace(
            "routes:\n",
            "  spare:\n    issuer: https://spare.example/\n    jwks_uri: https://spare.example/jwks\n    audiences: [api]\nroutes:\n  - name: a\n    match: { path: /a }\n    issuers: [main]\n",
        );
        let policy = config::from_str(&text, "t.yaml", Path::new(".")).unwrap();
        let f = lint(&policy, &text);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].path, "issuers.spare");
        assert_eq!(f[0].line, 9);
    }

    #[test]
    fn an_unverified_https_upstream_is_named() {
        let text =
            "upstreams:\n  app:\n    url: https://127.0.0.1:1\n    dangerous_skip_verify: true\n\
                    routes:\n  - name: all\n    match: { path: /** }\n    auth: none\n";
        let policy = config::from_str(text, "t.yaml", Path::new(".")).unwrap();
        let found = lint(&policy, text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, "upstreams.app.dangerous_skip_verify");
        assert_eq!(found[0].line, 4);
    }

    #[test]
    fn an_expired_listener_certificate_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["gateway.test".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(1999, 1, 1);
        params.not_after = rcgen::date_time_ymd(2000, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("tls.crt"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("tls.key"), key.serialize_pem()).unwrap();
        let text = "upstreams:\n  app: { url: http://127.0.0.1:1 }\n\
                    routes:\n  - name: all\n    match: { path: /** }\n    auth: none\n\
                    tls:\n  cert_file: tls.crt\n  key_file: tls.key\n";
        let policy = config::from_str(text, "t.yaml", dir.path()).unwrap();
        let found = lint(&policy, text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].path.as_str(), found[0].line),
            ("tls.cert_file", 8)
        );
        assert!(found[0].message.contains("expired at Unix time 946684800"));
    }

    #[test]
    fn the_example_config_is_clean() {
        let text = include_str!("../../../config.example.yaml");
        let compiled = config::from_str_with(
            text,
            "config.example.yaml",
            Path::new("."),
            Options { offline: true },
        )
        .unwrap();
        assert_eq!(lint(&compiled.policy, text), []);
    }
}
