//! Identity headers (docs/behaviour.md): which incoming headers are stripped, and the header values
//! set from verified claims. Pure over header names and claim values.

use crate::token::claims::{ClaimRef, ScopeSet};
use base64::Engine;
use http::{HeaderName, HeaderValue};
use serde_json::Value;

/// Longest identity header value the gateway will emit.
pub const MAX_HEADER_VALUE_BYTES: usize = 8192;

/// Where one identity header takes its value from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The claim named `scope`: the merged scope set of all `scope_claims`, space separated.
    Scopes,
    Claim(ClaimRef),
}

/// The compiled `identity:` block.
#[derive(Debug, Clone)]
pub struct IdentityPlan {
    /// Lower-case prefix; every incoming header that starts with it is removed.
    pub strip_prefix: String,
    /// Headers set from claims, in config order.
    pub headers: Vec<(HeaderName, Source)>,
    /// Header carrying base64url JSON of all verified claims.
    pub claims_header: Option<HeaderName>,
    /// Keep the token upstream.
    pub forward_token: bool,
}

/// A header name as CGI-style upstreams (PHP, WSGI) read it: `_` and `-` alike. Borrowed when
/// the name has no `_`.
pub fn dashed(name: &HeaderName) -> std::borrow::Cow<'_, str> {
    let raw = name.as_str();
    if raw.contains('_') {
        std::borrow::Cow::Owned(raw.replace('_', "-"))
    } else {
        std::borrow::Cow::Borrowed(raw)
    }
}

/// A claim could not be carried in a header: the request fails with 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsafeClaim;

impl IdentityPlan {
    /// Must this incoming header be removed? True for every managed header and every header
    /// with the strip prefix, whatever its casing (`name` from `http` is already lower-case).
    /// `X_Auth_Subject` counts as `x-auth-subject`: CGI-style upstreams (PHP, WSGI) read
    /// `_` and `-` alike.
    pub fn strips(&self, name: &HeaderName) -> bool {
        let n = dashed(name);
        let n = n.as_ref();
        (!self.strip_prefix.is_empty() && n.starts_with(&self.strip_prefix))
            || self.headers.iter().any(|(h, _)| h.as_str() == n)
            || self.claims_header.as_ref().is_some_and(|h| h.as_str() == n)
    }

    /// The identity headers for a verified token. An absent claim sends no header.
    pub fn values(
        &self,
        claims: &Value,
        scopes: &ScopeSet,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, UnsafeClaim> {
        let mut out = Vec::with_capacity(self.headers.len() + 1);
        for (name, source) in &self.headers {
            let text = match source {
                Source::Scopes if scopes.is_empty() => continue,
                Source::Scopes => scopes.joined(),
                Source::Claim(c) => match c.lookup(claims).and_then(render) {
                    Some(t) => t,
                    None => continue,
                },
            };
            out.push((name.clone(), header_value(&text)?));
        }
        if let Some(name) = &self.claims_header {
            let json = serde_json::to_vec(claims).map_err(|_| UnsafeClaim)?;
            let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
            out.push((name.clone(), header_value(&encoded)?));
        }
        Ok(out)
    }
}

/// Strings as they are, arrays joined by one space, numbers and booleans as JSON text, objects
/// as compact JSON. `None` for values that would make an empty header.
pub fn render(value: &Value) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(render)
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    (!text.is_empty()).then_some(text)
}

/// A header value only if every character is safe: no control character, ASCII (CR, LF, NUL,
/// TAB, DEL…) or Unicode C1 (NEL U+0085…), and not over `MAX_HEADER_VALUE_BYTES`.
pub fn header_value(text: &str) -> Result<HeaderValue, UnsafeClaim> {
    if text.len() > MAX_HEADER_VALUE_BYTES || text.chars().any(char::is_control) {
        return Err(UnsafeClaim);
    }
    HeaderValue::from_str(text).map_err(|_| UnsafeClaim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan() -> IdentityPlan {
        IdentityPlan {
            strip_prefix: "x-auth-".into(),
            headers: vec![
                (
                    HeaderName::from_static("x-user"),
                    Source::Claim(ClaimRef::parse("sub").unwrap()),
                ),
                (
                    HeaderName::from_static("x-auth-roles"),
                    Source::Claim(ClaimRef::parse("/r/roles").unwrap()),
                ),
                (HeaderName::from_static("x-auth-scopes"), Source::Scopes),
            ],
            claims_header: None,
            forward_token: false,
        }
    }

    #[test]
    fn managed_and_prefixed_headers_are_stripped() {
        let p = plan();
        assert!(p.strips(&HeaderName::from_static("x-user")));
        assert!(p.strips(&HeaderName::from_static("x-auth-anything")));
        assert!(!p.strips(&HeaderName::from_static("x-other")));
        assert!(p.strips(&HeaderName::from_static("x_auth_subject")));
        assert!(p.strips(&HeaderName::from_static("x_user")));
    }

    #[test]
    fn values_render_and_skip_absent_claims() {
        let p = plan();
        let claims = json!({"sub": "u1", "r": {"roles": ["a", 2, true]}});
        let v = p.values(&claims, &ScopeSet::default()).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].1, "a 2 true");
        assert_eq!(render(&json!({"k": 1})).as_deref(), Some("{\"k\":1}"));
    }

    #[test]
    fn control_characters_fail_closed() {
        for bad in ["a\r\nx-injected: 1", "a\0", "tab\there", "del\x7f"] {
            assert_eq!(header_value(bad), Err(UnsafeClaim), "{bad:?}");
        }
        assert!(header_value(&"a".repeat(MAX_HEADER_VALUE_BYTES + 1)).is_err());
        assert!(header_value("José").is_ok());
        assert_eq!(header_value("a\u{85}b"), Err(UnsafeClaim));
    }
}
