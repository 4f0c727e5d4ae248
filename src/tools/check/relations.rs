//! Relations between route conditions, which only `check` asks about: does one path pattern
//! or host condition cover another (every request the second matches, the first matches too),
//! and is there a request both match (with an example of one)?

use crate::route::{HostMatch, PathPattern, Segment};

/// Cover and overlap between two conditions of one kind.
pub trait Relation {
    /// What an overlap is shown by: a path, or a host (`None`: any host will do).
    type Example;
    /// Does every request `other` matches also match `self`?
    fn covers(&self, other: &Self) -> bool;
    /// Is there a request both match? `Some` of one such request's part.
    fn overlap(&self, other: &Self) -> Option<Self::Example>;
}

impl Relation for PathPattern {
    type Example = String;

    /// Does every path this pattern's `other` matches also match `self`?
    fn covers(&self, other: &PathPattern) -> bool {
        let (a, b) = (self.segments(), other.segments());
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
        pairs_ok && (self.rest() || (a.len() == b.len() && !other.rest()))
    }

    /// Is there a path both patterns match? `Some` of one such path.
    fn overlap(&self, other: &PathPattern) -> Option<String> {
        let (a, b) = (self.segments(), other.segments());
        if (a.len() < b.len() && !self.rest()) || (b.len() < a.len() && !other.rest()) {
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

impl Relation for HostMatch {
    type Example = Option<String>;

    /// Does every request host `other` matches also match `self`?
    fn covers(&self, other: &HostMatch) -> bool {
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
    fn overlap(&self, other: &HostMatch) -> Option<Option<String>> {
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
