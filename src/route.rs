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
}

impl Route {
    pub fn matches(&self, host: Option<&str>, method: &Method, path: &str) -> bool {
        self.host.matches(host)
            && self.methods.as_ref().is_none_or(|m| m.contains(method))
            && self.path.matches(path)
    }

    pub fn accepts_issuer(&self, issuer: usize) -> bool {
        self.issuers
            .as_ref()
            .is_none_or(|list| list.contains(&issuer))
    }
}

/// Routes in file order.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> Self {
        RouteTable { routes }
    }

    /// The index of the first route that matches.
    pub fn find(&self, host: Option<&str>, method: &Method, path: &str) -> Option<usize> {
        self.routes
            .iter()
            .position(|r| r.matches(host, method, path))
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

/// Normalise a `Host` header or authority for matching: lower-case, port and trailing dot
/// removed. `None` for a value that is not a plausible host.
pub fn normalise_host(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let host = if let Some(v6) = raw.strip_prefix('[') {
        let end = v6.find(']')?;
        &raw[..end + 2]
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                raw
            }
        })
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty()
        || !host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'[' | b']' | b':')
        })
    {
        return None;
    }
    Some(host.to_ascii_lowercase())
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
}
