//! The route matcher: per host condition, a trie over path segments that finds the route a
//! scan in file order would find, without trying every route (`RouteTable`).

use super::pattern::{PathPattern, Segment};
use super::{allows_method, HostMatch, Route};
use http::Method;

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
pub(super) struct Matcher {
    nodes: Vec<Node>,
    /// Root node of the routes for each exact host, sorted by host.
    exact_hosts: Vec<(Box<str>, u32)>,
    /// Root node of the routes for each `*.suffix` (stored as `.suffix`), sorted by suffix.
    suffix_hosts: Vec<(Box<str>, u32)>,
    /// Root node of the routes without a host condition.
    any_host: Option<u32>,
}

impl Matcher {
    pub(super) fn build(routes: &[Route]) -> Self {
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

    pub(super) fn find(
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
