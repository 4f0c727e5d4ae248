//! The compiled route table: (host, method, canonical path) → route. Routes are tried in file
//! order and the first match wins. Pure: no I/O, no tokens.
//!
//! `pattern`: the path pattern language (`*`, trailing `**`); `host`: the host condition and
//! the request host's normal form; `trie`: the matcher that finds the first match without
//! trying every route. This file: the route model and the table.

mod host;
mod pattern;
mod trie;

pub use host::{normalise_host, HostMatch};
pub use pattern::{PathPattern, Segment};

use crate::authz::{ClaimRule, ScopeRule};
use http::Method;
use trie::Matcher;

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

/// Does a route's `methods:` list allow `method`? No list allows every method; `HEAD` follows
/// the rules of `GET`, since most frameworks answer it with the GET handler.
pub fn allows_method(methods: Option<&[Method]>, method: &Method) -> bool {
    methods
        .is_none_or(|m| m.contains(method) || (*method == Method::HEAD && m.contains(&Method::GET)))
}

#[cfg(test)]
mod tests;
