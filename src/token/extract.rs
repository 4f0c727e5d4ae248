//! The one token of a request (docs/behaviour.md): `Authorization: Bearer`, or a cookie or query
//! parameter where the config enables them. Pure over the request's method, headers and query.

use http::{header, HeaderMap, Method};

/// Where the token came from; the same place is cleaned before forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `Authorization: Bearer`.
    Header,
    /// `Authorization: DPoP` (RFC 9449): the token must be DPoP-bound and come with a proof.
    Dpop,
    Cookie,
    Query,
}

/// A token found in the request (not yet decoded in any way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub token: String,
    pub source: Source,
}

/// Answered 400 `bad_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtractError {
    /// Two Authorization headers, header and cookie, two cookies, …
    SeveralTokens,
    /// `Bearer` without a token, a tab, characters outside token68, a non-text header.
    MalformedAuthorization,
    /// More than one `DPoP` proof header.
    SeveralProofs,
}

impl ExtractError {
    pub fn description(self) -> &'static str {
        match self {
            ExtractError::SeveralTokens => "more than one token in request",
            ExtractError::MalformedAuthorization => "malformed authorization header",
            ExtractError::SeveralProofs => "more than one DPoP proof in request",
        }
    }
}

/// The compiled `token_sources:` block.
#[derive(Debug, Clone, Default)]
pub struct TokenSources {
    pub cookie: Option<String>,
    pub query: Option<String>,
    /// Origins whose cross-site unsafe requests may use the cookie.
    pub cookie_origins: Vec<String>,
}

/// Find the request's token. `Ok(None)`: no token at all.
pub fn extract(
    method: &Method,
    headers: &HeaderMap,
    query: Option<&str>,
    sources: &TokenSources,
) -> Result<Option<Found>, ExtractError> {
    let mut found: Option<Found> = None;
    let mut take = |token: String, source: Source| {
        if found.is_some() {
            return Err(ExtractError::SeveralTokens);
        }
        found = Some(Found { token, source });
        Ok(())
    };

    for value in headers.get_all(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| ExtractError::MalformedAuthorization)?;
        if let Some(token) = bearer(value)? {
            take(token.to_string(), Source::Header)?;
        } else if let Some(token) = credential(value, "dpop")? {
            take(token.to_string(), Source::Dpop)?;
        }
    }
    if headers.get_all(header::AUTHORIZATION).iter().count() > 1 {
        return Err(ExtractError::SeveralTokens);
    }

    if let Some(name) = &sources.cookie {
        if cookie_allowed(method, headers, &sources.cookie_origins) {
            for token in cookie_values(headers, name) {
                take(token.to_string(), Source::Cookie)?;
            }
        }
    }

    if let (Some(name), Some(query)) = (&sources.query, query) {
        for value in query_values(query, name) {
            take(value, Source::Query)?;
        }
    }
    Ok(found)
}

/// Does this `Authorization` value present a Bearer credential, well-formed or not? A value
/// that is not text counts as one (fail closed).
pub fn is_bearer(value: &http::HeaderValue) -> bool {
    value
        .to_str()
        .map_or(true, |v| !matches!(bearer(v), Ok(None)))
}

/// Does this `Authorization` value present an access token (`Bearer` or `DPoP`), well-formed
/// or not? A value that is not text counts as one (fail closed).
pub fn is_access_token(value: &http::HeaderValue) -> bool {
    is_bearer(value)
        || value
            .to_str()
            .map_or(true, |v| !matches!(credential(v, "dpop"), Ok(None)))
}

/// The token of a `Bearer` credential; `None` for another scheme (no bearer token presented).
fn bearer(value: &str) -> Result<Option<&str>, ExtractError> {
    credential(value, "bearer")
}

/// The token68 of a credential of `scheme` (lower case); `None` for another scheme.
fn credential<'a>(value: &'a str, scheme_wanted: &str) -> Result<Option<&'a str>, ExtractError> {
    let (scheme, rest) = match value.split_once(' ') {
        Some(parts) => parts,
        None => (value, ""),
    };
    if !scheme.eq_ignore_ascii_case(scheme_wanted) {
        let n = scheme_wanted.len();
        if scheme.len() >= n
            && scheme.is_char_boundary(n)
            && scheme[..n].eq_ignore_ascii_case(scheme_wanted)
        {
            // `Bearer\tx`, `DPoP:x`: looks like ours, but malformed.
            return Err(ExtractError::MalformedAuthorization);
        }
        return Ok(None);
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() || !is_token68(token) {
        return Err(ExtractError::MalformedAuthorization);
    }
    Ok(Some(token))
}

/// RFC 7235 token68: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// A cookie counts on safe methods, and on unsafe ones only from an allowed `Origin` (XSRF).
fn cookie_allowed(method: &Method, headers: &HeaderMap, origins: &[String]) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| origins.iter().any(|allowed| allowed == o))
}

/// Values of every cookie called `name`, across all `Cookie` headers.
pub fn cookie_values<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
}

/// The `Cookie` header with cookie `name` removed; `None` when nothing is left.
pub fn cookie_without(value: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = value
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| pair.split_once('=').map_or(pair.trim(), |(k, _)| k.trim()) != name)
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// Percent-decoded values of every query parameter called `name`.
fn query_values(query: &str, name: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| percent_decode(v))
        })
        .collect()
}

/// The query with parameter `name` removed; `None` when nothing is left.
pub fn query_without(query: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) != name)
        .collect();
    let joined = kept.join("&");
    (!joined.is_empty()).then_some(joined)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16)),
                bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if b == b'+' { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn run(
        method: Method,
        pairs: &[(&str, &str)],
        query: Option<&str>,
    ) -> Result<Option<Found>, ExtractError> {
        let sources = TokenSources {
            cookie: Some("session".into()),
            query: Some("access_token".into()),
            cookie_origins: vec!["https://app.example.com".into()],
        };
        extract(&method, &headers(pairs), query, &sources)
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in [
            "Bearer abc.def.ghi",
            "bearer abc.def.ghi",
            "BEARER   abc.def.ghi",
        ] {
            let f = run(Method::GET, &[("authorization", v)], None)
                .unwrap()
                .unwrap();
            assert_eq!(f.token, "abc.def.ghi");
        }
    }

    #[test]
    fn malformed_and_several_tokens_are_errors() {
        use ExtractError::*;
        assert_eq!(
            run(Method::GET, &[("authorization", "Bearer")], None),
            Err(MalformedAuthorization)
        );
        assert_eq!(
            run(Method::GET, &[("authorization", "Bearer\tabc")], None),
            Err(MalformedAuthorization)
        );
        assert_eq!(
            run(Method::GET, &[("authorization", "Bearer a b")], None),
            Err(MalformedAuthorization)
        );
        assert_eq!(
            run(
                Method::GET,
                &[("authorization", "Bearer a"), ("authorization", "Bearer b")],
                None
            ),
            Err(SeveralTokens)
        );
        assert_eq!(
            run(
                Method::GET,
                &[("authorization", "Bearer a"), ("cookie", "session=b")],
                None
            ),
            Err(SeveralTokens)
        );
        assert_eq!(
            run(Method::GET, &[], Some("access_token=a&access_token=b")),
            Err(SeveralTokens)
        );
        assert_eq!(
            run(
                Method::GET,
                &[("authorization", "Basic dXNlcjpwdw==")],
                None
            ),
            Ok(None)
        );
    }

    #[test]
    fn the_dpop_scheme_is_a_token_of_its_own_source() {
        for v in ["DPoP abc.def.ghi", "dpop abc.def.ghi", "DPOP  abc.def.ghi"] {
            let f = run(Method::GET, &[("authorization", v)], None)
                .unwrap()
                .unwrap();
            assert_eq!((f.token.as_str(), f.source), ("abc.def.ghi", Source::Dpop));
        }
        assert_eq!(
            run(Method::GET, &[("authorization", "DPoP")], None),
            Err(ExtractError::MalformedAuthorization)
        );
        assert_eq!(
            run(
                Method::GET,
                &[("authorization", "DPoP a"), ("cookie", "session=b")],
                None
            ),
            Err(ExtractError::SeveralTokens)
        );
    }

    #[test]
    fn cookie_on_unsafe_method_needs_an_allowed_origin() {
        let c = ("cookie", "a=1; session=tok");
        assert!(run(Method::GET, &[c], None).unwrap().is_some());
        assert_eq!(run(Method::POST, &[c], None), Ok(None));
        assert_eq!(
            run(Method::POST, &[c, ("origin", "https://evil.example")], None),
            Ok(None)
        );
        assert!(run(
            Method::POST,
            &[c, ("origin", "https://app.example.com")],
            None
        )
        .unwrap()
        .is_some());
    }

    #[test]
    fn token_parameters_and_cookies_can_be_removed() {
        assert_eq!(
            query_without("a=1&access_token=x&b=2", "access_token").as_deref(),
            Some("a=1&b=2")
        );
        assert_eq!(query_without("access_token=x", "access_token"), None);
        assert_eq!(
            cookie_without("a=1; session=tok; b=2", "session").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(cookie_without("session=tok", "session"), None);
    }
}
