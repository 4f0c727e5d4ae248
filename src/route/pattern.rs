//! Path patterns: literal segments, `*` (exactly one segment) and a trailing `**` (zero or
//! more segments), compiled once and matched against canonical paths.

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Segment {
    Literal(String),
    /// `*`: exactly one non-empty segment.
    One,
}

/// A compiled path pattern: literal segments, `*`, and an optional trailing `**`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    pub(super) segments: Vec<Segment>,
    /// Ends in `**`: zero or more further segments.
    pub(super) rest: bool,
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
