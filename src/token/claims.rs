//! Verified claims as the rest of the pipeline sees them: claim lookup by name or JSON Pointer,
//! and the merged scope set.

use serde_json::Value;

/// Where a claim lives: a top-level name verbatim, or a JSON Pointer (RFC 6901) when the name
/// starts with `/` (`/https:~1~1example.com~1roles`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimRef {
    Name(String),
    Pointer(String),
}

impl ClaimRef {
    pub fn parse(name: &str) -> Result<Self, String> {
        if name.is_empty() {
            return Err("a claim name is not empty".into());
        }
        if name.starts_with('/') {
            // RFC 6901: `~` must be followed by 0 or 1.
            let mut chars = name.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                    return Err(format!(
                        "{name:?} is not a JSON Pointer: ~ must be ~0 or ~1"
                    ));
                }
            }
            Ok(ClaimRef::Pointer(name.to_string()))
        } else {
            Ok(ClaimRef::Name(name.to_string()))
        }
    }

    /// The top-level claim this reference reads (a pointer's first segment, unescaped).
    pub fn top_level(&self) -> String {
        match self {
            ClaimRef::Name(n) => n.clone(),
            ClaimRef::Pointer(p) => p[1..]
                .split('/')
                .next()
                .unwrap_or_default()
                .replace("~1", "/")
                .replace("~0", "~"),
        }
    }

    /// The claim's value; `None` when absent or `null`.
    pub fn lookup<'a>(&self, claims: &'a Value) -> Option<&'a Value> {
        let v = match self {
            ClaimRef::Name(n) => claims.get(n),
            ClaimRef::Pointer(p) => claims.pointer(p),
        }?;
        (!v.is_null()).then_some(v)
    }
}

/// The union of a token's scope claims, sorted and deduplicated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(Vec<String>);

impl ScopeSet {
    /// Merge `scope_claims`: a space-delimited string (`scope`, Okta's `scp` string) or an array
    /// of strings (`scp`, Auth0's `permissions`). Other shapes add nothing. An array element is
    /// one scope, never split: an element holding whitespace (a group named `"not admin"`) is
    /// no scope at all, so it can match no rule.
    pub fn from_claims(claims: &Value, scope_claims: &[ClaimRef]) -> Self {
        let mut scopes: Vec<String> = Vec::new();
        for claim in scope_claims {
            match claim.lookup(claims) {
                Some(Value::String(s)) => {
                    scopes.extend(s.split_ascii_whitespace().map(str::to_string))
                }
                Some(Value::Array(items)) => scopes.extend(
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
                        .map(str::to_string),
                ),
                _ => {}
            }
        }
        scopes.sort_unstable();
        scopes.dedup();
        ScopeSet(scopes)
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.binary_search_by(|s| s.as_str().cmp(scope)).is_ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Space-separated, for the scopes identity header.
    pub fn joined(&self) -> String {
        self.0.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::{ClaimRef, ScopeSet};
    use serde_json::json;

    #[test]
    fn an_array_element_is_one_scope_and_only_strings_are_split() {
        let refs: Vec<ClaimRef> = ["scope", "permissions"]
            .iter()
            .map(|n| ClaimRef::parse(n).unwrap())
            .collect();
        let set = ScopeSet::from_claims(
            &json!({"scope": "a  b", "permissions": ["not admin", "c", "", " d"]}),
            &refs,
        );
        assert_eq!(set.joined(), "a b c");
        assert!(!set.contains("admin"));
        assert!(!set.contains("not"));
        assert!(!set.contains("not admin"));
    }

    #[test]
    fn a_pointer_reads_its_unescaped_first_segment() {
        let top = |n: &str| ClaimRef::parse(n).unwrap().top_level();
        assert_eq!(top("org_id"), "org_id");
        assert_eq!(top("/org/id"), "org");
        assert_eq!(
            top("/https:~1~1example.com~1roles"),
            "https://example.com/roles"
        );
        assert_eq!(top("/a~0b/c"), "a~b");
    }
}
