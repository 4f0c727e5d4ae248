//! Identity headers (docs/behaviour.md): which incoming headers are stripped, and the header values
//! set from verified claims. Pure over header names and claim values.

pub use crate::claims::{header_value, UnsafeClaim, MAX_HEADER_VALUE_BYTES};
use crate::claims::{ClaimRef, ScopeSet};
use base64::Engine;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde_json::Value;

/// Where one identity header takes its value from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The claim named `scope`: the merged scope set of all `scope_claims`, space separated.
    Scopes,
    Claim(ClaimRef),
}

/// The compiled `identity:` block.
#[derive(Debug, Clone, PartialEq)]
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

impl IdentityPlan {
    /// Must this incoming header be removed? True for every managed header and every header
    /// with the strip prefix, whatever its casing (`name` from `http` is already lower-case).
    /// `X_Auth_Subject` counts as `x-auth-subject`: CGI-style upstreams (PHP, WSGI) read
    /// `_` and `-` alike.
    pub fn strips(&self, name: &HeaderName) -> bool {
        self.strips_dashed(&dashed(name))
    }

    /// `strips` for a name already spelled with `-` for `_` (`dashed`).
    pub fn strips_dashed(&self, n: &str) -> bool {
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
        let rendered = self.render(claims, scopes)?;
        Ok(rendered
            .iter(self, scopes)
            .map(|(n, v)| (n.clone(), v))
            .collect())
    }

    /// How many values `IdentityHeaders` holds for this plan: its headers, then `claims_header`.
    fn slots(&self) -> usize {
        self.headers.len() + usize::from(self.claims_header.is_some())
    }

    /// The identity header values of a verified token, rendered once into one buffer. Fails
    /// if any value is unsafe (`header_value`).
    pub fn render(
        &self,
        claims: &Value,
        scopes: &ScopeSet,
    ) -> Result<IdentityHeaders, UnsafeClaim> {
        let slots = self.slots();
        let mut buf = Vec::with_capacity(4 * slots + 128);
        buf.resize(4 * slots, 0);
        for (i, (_, source)) in self.headers.iter().enumerate() {
            match source {
                // Not copied: the interned set holds its own header value.
                Source::Scopes => {
                    if !scopes.is_empty() && scopes.header_value().is_none() {
                        return Err(UnsafeClaim);
                    }
                }
                Source::Claim(c) => {
                    if let Some(value) = c.lookup(claims) {
                        let start = buf.len();
                        render_into(value, &mut buf);
                        check_value(&buf[start..])?;
                    }
                }
            }
            let end = buf.len() as u32;
            buf[4 * i..4 * i + 4].copy_from_slice(&end.to_le_bytes());
        }
        if self.claims_header.is_some() {
            let json = serde_json::to_vec(claims).map_err(|_| UnsafeClaim)?;
            let start = buf.len();
            let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            buf.resize(
                start + base64::encoded_len(json.len(), false).unwrap_or(0),
                0,
            );
            let n = engine
                .encode_slice(&json, &mut buf[start..])
                .map_err(|_| UnsafeClaim)?;
            buf.truncate(start + n);
            check_value(&buf[start..])?;
            let end = buf.len() as u32;
            buf[4 * (slots - 1)..4 * slots].copy_from_slice(&end.to_le_bytes());
        }
        Ok(IdentityHeaders {
            buf: if buf.len() > 4 * slots {
                // Exactly as long as its content.
                Bytes::copy_from_slice(&buf)
            } else {
                Bytes::new()
            },
        })
    }
}

/// A verified token's identity header values, rendered once (`IdentityPlan::render`) and sent
/// on every request with that token without copying: one buffer of one `u32` end offset per
/// value slot of the plan (its headers, then `claims_header`), then the values; an empty range
/// is a header not sent, and a buffer with no values is empty (no allocation). The scopes
/// header is not in it: the interned `ScopeSet` holds that value. Read with the plan it was
/// rendered with (a token cache is replaced when the `identity` block changes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityHeaders {
    buf: Bytes,
}

impl IdentityHeaders {
    /// The rendered values and their index, in bytes.
    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }

    fn slot(&self, slots: usize, i: usize) -> Option<HeaderValue> {
        if self.buf.is_empty() {
            return None;
        }
        let end_at = |i: usize| {
            let b = &self.buf[4 * i..4 * i + 4];
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
        };
        let start = if i == 0 { 4 * slots } else { end_at(i - 1) };
        let end = end_at(i);
        (end > start)
            .then(|| HeaderValue::from_maybe_shared(self.buf.slice(start..end)).ok())
            .flatten()
    }

    /// The headers to set upstream, in plan order. `plan` and `scopes` must be those it was
    /// rendered with.
    pub fn iter<'a>(
        &'a self,
        plan: &'a IdentityPlan,
        scopes: &'a ScopeSet,
    ) -> impl Iterator<Item = (&'a HeaderName, HeaderValue)> + 'a {
        let slots = plan.slots();
        debug_assert!(self.buf.is_empty() || self.buf.len() >= 4 * slots);
        let headers = plan
            .headers
            .iter()
            .enumerate()
            .filter_map(move |(i, (name, source))| match source {
                Source::Scopes => scopes.header_value().map(|v| (name, v.clone())),
                Source::Claim(_) => self.slot(slots, i).map(|v| (name, v)),
            });
        let claims = plan
            .claims_header
            .as_ref()
            .and_then(move |name| self.slot(slots, slots - 1).map(|v| (name, v)));
        headers.chain(claims)
    }
}

/// `render`, appended to `out`: nothing for values that would make an empty header.
fn render_into(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => {}
        Value::String(s) => out.extend_from_slice(s.as_bytes()),
        Value::Array(items) => {
            let start = out.len();
            for item in items {
                let before = out.len();
                if before > start {
                    out.push(b' ');
                }
                let mark = out.len();
                render_into(item, out);
                if out.len() == mark {
                    // Nothing rendered: no separator either.
                    out.truncate(before);
                }
            }
        }
        other => serde_json::to_writer(&mut *out, other).expect("a Value serialises"),
    }
}

/// The same test as `header_value`, on rendered bytes (valid UTF-8: rendered from strings).
fn check_value(text: &[u8]) -> Result<(), UnsafeClaim> {
    let text = std::str::from_utf8(text).map_err(|_| UnsafeClaim)?;
    if text.len() > MAX_HEADER_VALUE_BYTES || text.chars().any(char::is_control) {
        return Err(UnsafeClaim);
    }
    Ok(())
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
