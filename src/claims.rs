//! Verified claims as the rest of the pipeline sees them: claim lookup by name or JSON Pointer,
//! and the merged scope set.

use http::HeaderValue;
use serde_json::Value;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

/// Longest identity header value the gateway will emit.
pub const MAX_HEADER_VALUE_BYTES: usize = 8192;

/// A claim could not be carried in a header: the request fails with 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsafeClaim;

/// A header value only if every character is safe: no control character, ASCII (CR, LF, NUL,
/// TAB, DEL…) or Unicode C1 (NEL U+0085…), and not over `MAX_HEADER_VALUE_BYTES`.
pub fn header_value(text: &str) -> Result<HeaderValue, UnsafeClaim> {
    if text.len() > MAX_HEADER_VALUE_BYTES || text.chars().any(char::is_control) {
        return Err(UnsafeClaim);
    }
    HeaderValue::from_str(text).map_err(|_| UnsafeClaim)
}

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

/// The union of a token's scope claims, sorted and deduplicated. Shared: tokens with the same
/// scopes hold one set (`ScopeInterner`), with its scopes header value rendered once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(Option<Arc<Scopes>>);

#[derive(Debug, PartialEq, Eq)]
struct Scopes {
    words: Box<[Box<str>]>,
    joined: Box<str>,
    /// `joined` as a header value; `None` when it cannot be one (`header_value`).
    header: Option<HeaderValue>,
}

/// The scopes named by `scope_claims`, borrowed from the claims, sorted and deduplicated.
fn scope_words<'a>(claims: &'a Value, scope_claims: &[ClaimRef]) -> Vec<&'a str> {
    let mut scopes: Vec<&str> = Vec::new();
    for claim in scope_claims {
        match claim.lookup(claims) {
            Some(Value::String(s)) => scopes.extend(s.split_ascii_whitespace()),
            Some(Value::Array(items)) => scopes.extend(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace)),
            ),
            _ => {}
        }
    }
    scopes.sort_unstable();
    scopes.dedup();
    scopes
}

impl ScopeSet {
    fn build(words: &[&str]) -> Self {
        if words.is_empty() {
            return ScopeSet(None);
        }
        let joined = words.join(" ");
        let header = header_value(&joined).ok();
        ScopeSet(Some(Arc::new(Scopes {
            words: words.iter().map(|&w| w.into()).collect(),
            joined: joined.into(),
            header,
        })))
    }

    /// Merge `scope_claims`: a space-delimited string (`scope`, Okta's `scp` string) or an array
    /// of strings (`scp`, Auth0's `permissions`). Other shapes add nothing. An array element is
    /// one scope, never split: an element holding whitespace (a group named `"not admin"`) is
    /// no scope at all, so it can match no rule.
    pub fn from_claims(claims: &Value, scope_claims: &[ClaimRef]) -> Self {
        Self::build(&scope_words(claims, scope_claims))
    }

    fn words(&self) -> &[Box<str>] {
        self.0.as_ref().map_or(&[], |s| &s.words)
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.words().binary_search_by(|s| (**s).cmp(scope)).is_ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Space-separated, for the scopes identity header.
    pub fn joined(&self) -> String {
        self.as_str().to_string()
    }

    pub fn as_str(&self) -> &str {
        self.0.as_ref().map_or("", |s| &s.joined)
    }

    /// The scopes identity header's value; `None` when the set is empty or cannot be sent.
    pub fn header_value(&self) -> Option<&HeaderValue> {
        self.0.as_ref().and_then(|s| s.header.as_ref())
    }
}

/// Shares one `ScopeSet` between the tokens that carry the same scopes: a direct-mapped table
/// of `SLOTS` recent sets, so its memory is bounded whatever the tokens hold. A set not in the
/// table (new, or pushed out by another with the same hash) is built and takes the slot.
pub struct ScopeInterner {
    table: Mutex<Box<[ScopeSet]>>,
}

const SLOTS: usize = 256;

impl Default for ScopeInterner {
    fn default() -> Self {
        ScopeInterner {
            table: Mutex::new(vec![ScopeSet::default(); SLOTS].into_boxed_slice()),
        }
    }
}

impl ScopeInterner {
    /// `ScopeSet::from_claims`, shared with earlier tokens of the same scopes.
    pub fn from_claims(&self, claims: &Value, scope_claims: &[ClaimRef]) -> ScopeSet {
        let words = scope_words(claims, scope_claims);
        if words.is_empty() {
            return ScopeSet(None);
        }
        let mut hasher = std::hash::DefaultHasher::new();
        words.hash(&mut hasher);
        let slot = hasher.finish() as usize % SLOTS;
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let same = table[slot]
            .words()
            .iter()
            .map(|w| &**w)
            .eq(words.iter().copied());
        if !same {
            table[slot] = ScopeSet::build(&words);
        }
        table[slot].clone()
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
