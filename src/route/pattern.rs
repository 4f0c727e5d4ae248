//! Path patterns: literal segments, `*` (exactly one segment) and a trailing `**` (zero or
//! more segments), compiled once and matched against canonical paths.

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
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
    /// The segments before any trailing `**`.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether the pattern ends in `**`.
    pub fn rest(&self) -> bool {
        self.rest
    }

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
