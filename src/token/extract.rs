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
    /// A token cookie or parameter that upstream parsers would read differently: a token
    /// parameter in a pair with a `;`, a token cookie name after a `,` or a space.
    AmbiguousCarrier,
}

impl ExtractError {
    pub fn description(self) -> &'static str {
        match self {
            ExtractError::SeveralTokens => "more than one token in request",
            ExtractError::MalformedAuthorization => "malformed authorization header",
            ExtractError::SeveralProofs => "more than one DPoP proof in request",
            ExtractError::AmbiguousCarrier => "ambiguous token cookie or query parameter",
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
        if let Some((source, token)) = access_credential(value)? {
            take(token.to_string(), source)?;
        }
    }
    if headers.get_all(header::AUTHORIZATION).iter().count() > 1 {
        return Err(ExtractError::SeveralTokens);
    }

    if let Some(name) = &sources.cookie {
        if cookie_allowed(method, headers, &sources.cookie_origins) {
            for token in cookie_values(headers, name)? {
                take(token, Source::Cookie)?;
            }
        }
    }

    if let (Some(name), Some(query)) = (&sources.query, query) {
        for value in query_values(query, name)? {
            take(value, Source::Query)?;
        }
    }
    Ok(found)
}

/// Does this `Authorization` value present an access token (`Bearer` or `DPoP`), well-formed
/// or not? A value that is not text counts as one (fail closed).
pub fn is_access_token(value: &http::HeaderValue) -> bool {
    !matches!(access_credential(value), Ok(None))
}

/// The access token of an `Authorization` value: a `Bearer` or `DPoP` credential (`None` for
/// another scheme). One pass over the bytes: a well-formed credential is ASCII by the token68
/// rule, so it needs no separate text check; any other value must be text.
fn access_credential(value: &http::HeaderValue) -> Result<Option<(Source, &str)>, ExtractError> {
    let bytes = value.as_bytes();
    let (scheme, rest) = match bytes.iter().position(|&b| b == b' ') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &b""[..]),
    };
    let source = if scheme.eq_ignore_ascii_case(b"bearer") {
        Source::Header
    } else if scheme.eq_ignore_ascii_case(b"dpop") {
        Source::Dpop
    } else {
        value
            .to_str()
            .map_err(|_| ExtractError::MalformedAuthorization)?;
        let looks_like = |ours: &[u8]| {
            scheme.len() >= ours.len() && scheme[..ours.len()].eq_ignore_ascii_case(ours)
        };
        if looks_like(b"bearer") || looks_like(b"dpop") {
            // `Bearer\tx`, `DPoP:x`: looks like ours, but malformed.
            return Err(ExtractError::MalformedAuthorization);
        }
        return Ok(None);
    };
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let token = &rest[start..];
    if !is_token68(token) {
        return Err(ExtractError::MalformedAuthorization);
    }
    // token68 is ASCII.
    let token = std::str::from_utf8(token).map_err(|_| ExtractError::MalformedAuthorization)?;
    Ok(Some((source, token)))
}

/// A byte of RFC 7235 token68 before its `=` padding: `ALPHA / DIGIT / "-" / "." / "_" / "~" /
/// "+" / "/"`. Comparisons rather than a table, so that a chunk of them compiles to vector
/// instructions.
fn token68_byte(b: u8) -> bool {
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    // `+`, `-`, `.`, `/`: 0x2b and 0x2d..=0x2f.
    let punct = b == b'+' || b.wrapping_sub(b'-') < 3;
    letter | digit | punct | (b == b'_') | (b == b'~')
}

/// RFC 7235 token68: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(s: &[u8]) -> bool {
    let padding = s.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &s[..s.len() - padding];
    // 32 bytes at a time without a branch per byte: a token is hundreds of bytes long.
    let mut chunks = body.chunks_exact(32);
    let whole = chunks.by_ref().all(|c| {
        let mut bad = 0u8;
        for &b in c {
            bad |= u8::from(!token68_byte(b));
        }
        bad == 0
    });
    !body.is_empty() && whole && chunks.remainder().iter().all(|&b| token68_byte(b))
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

/// How some upstream may read a parameter or cookie name `raw`, for comparing with the token's:
/// percent-decoded with `+` as a space (every query parser; PHP for cookie names too), cut at a
/// NUL, spaces and tabs at either end dropped, an array suffix (`name[]`, `name[k]`) cut (PHP,
/// Node's `qs`), `.`, space and an unmatched `[` read as `_` (PHP), ASCII case folded
/// (ASP.NET). Wider than any one parser on purpose: a near miss is refused, not forwarded.
fn loose_name(raw: &[u8]) -> Vec<u8> {
    let mut name = percent_decode_bytes(raw);
    if let Some(nul) = name.iter().position(|&b| b == 0) {
        name.truncate(nul);
    }
    let start = name.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let end = name.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    let mut name = match (start, end) {
        (Some(s), Some(e)) => name[s..=e].to_vec(),
        _ => return Vec::new(),
    };
    if let Some(open) = name.iter().position(|&b| b == b'[') {
        if open > 0 && name[open..].contains(&b']') {
            name.truncate(open);
        }
    }
    for b in &mut name {
        *b = match *b {
            b'.' | b' ' | b'[' => b'_',
            other => other.to_ascii_lowercase(),
        };
    }
    name
}

/// Values of the query parameters some upstream reads as `name` (`loose_name`), decoded.
/// Parameters are split on `&`, and also on `;` (older CGI parsers): a `&`-separated pair
/// holding a token parameter and a `;` reads differently to the two kinds, so it is refused.
fn query_values(query: &str, name: &str) -> Result<Vec<String>, ExtractError> {
    let want = loose_name(name.as_bytes());
    let mut out = Vec::new();
    for pair in query.split('&') {
        let pieces = pair.split(';').count();
        for piece in pair.split(';') {
            let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
            if loose_name(k.as_bytes()) == want {
                if pieces > 1 {
                    return Err(ExtractError::AmbiguousCarrier);
                }
                out.push(percent_decode(v));
            }
        }
    }
    Ok(out)
}

/// The query with every parameter some upstream reads as `name` removed (the whole
/// `&`-separated pair around a `;`-separated one); `None` when nothing is left.
pub fn query_without(query: &str, name: &str) -> Option<String> {
    let want = loose_name(name.as_bytes());
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            !pair.split(';').any(|piece| {
                let k = piece.split_once('=').map_or(piece, |(k, _)| k);
                loose_name(k.as_bytes()) == want
            })
        })
        .collect();
    let joined = kept.join("&");
    (!joined.is_empty()).then_some(joined)
}

/// Bytes that end a cookie name for some parser: `=`, the `;` every parser splits on, the `,`
/// of old (RFC 2965) ones, and the whitespace Python's `http.cookies` splits on.
fn ends_cookie_name(b: u8) -> bool {
    matches!(b, b'=' | b';' | b',' | b' ' | b'\t')
}

/// The token cookies of one `Cookie` header value, read as bytes (a value need not be ASCII):
/// each `;`-separated cookie whose name some upstream reads as the token's (`loose_name`), as
/// `(offset of the cookie, value)`. A token name followed by `=` anywhere
/// else a parser could start a cookie (after `,` or whitespace, inside another cookie's value)
/// is refused: parsers disagree on what it is.
fn cookie_carriers(value: &[u8], want: &[u8]) -> Result<Vec<(usize, String)>, ExtractError> {
    let mut carriers = Vec::new();
    let mut at = 0;
    for piece in value.split(|&b| b == b';') {
        let end = at + piece.len();
        let lead = piece
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t'))
            .unwrap_or(piece.len());
        let (k, v) = match piece.iter().position(|&b| b == b'=') {
            Some(eq) => (&piece[..eq], &piece[eq + 1..]),
            None => (piece, &[][..]),
        };
        if !piece[lead..].is_empty() && loose_name(k) == want {
            let v = trim_bytes(v);
            let v = match v {
                [b'"', inner @ .., b'"'] => inner,
                _ => v,
            };
            carriers.push((at + lead, String::from_utf8_lossy(v).into_owned()));
        }
        at = end + 1;
    }
    for start in 0..value.len() {
        if ends_cookie_name(value[start]) || (start > 0 && !ends_cookie_name(value[start - 1])) {
            continue;
        }
        let run = value[start..]
            .iter()
            .position(|&b| ends_cookie_name(b))
            .map_or(value.len(), |n| start + n);
        let after = trim_bytes_start(&value[run..]);
        if after.first() == Some(&b'=')
            && loose_name(&value[start..run]) == want
            && !carriers.iter().any(|(s, _)| *s == start)
        {
            return Err(ExtractError::AmbiguousCarrier);
        }
    }
    Ok(carriers)
}

fn trim_bytes_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
    &b[n..]
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let b = trim_bytes_start(b);
    let n = b
        .iter()
        .rev()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count();
    &b[..b.len() - n]
}

/// Values of every cookie some upstream reads as `name`, across all `Cookie` headers.
fn cookie_values(headers: &HeaderMap, name: &str) -> Result<Vec<String>, ExtractError> {
    let want = loose_name(name.as_bytes());
    let mut out = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        out.extend(
            cookie_carriers(value.as_bytes(), &want)?
                .into_iter()
                .map(|(_, v)| v),
        );
    }
    Ok(out)
}

/// A `Cookie` header value (as bytes: it need not be ASCII) with every cookie some upstream
/// reads as `name` removed, and every `;`-separated part where one hides; `None` when nothing
/// is left.
pub fn cookie_without(value: &[u8], name: &str) -> Option<Vec<u8>> {
    let want = loose_name(name.as_bytes());
    let kept: Vec<&[u8]> = value
        .split(|&b| b == b';')
        .map(trim_bytes)
        .filter(|piece| !piece.is_empty())
        .filter(|piece| matches!(cookie_carriers(piece, &want), Ok(c) if c.is_empty()))
        .collect();
    (!kept.is_empty()).then(|| kept.join(&b"; "[..]))
}

fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&percent_decode_bytes(s.as_bytes())).into_owned()
}

fn percent_decode_bytes(bytes: &[u8]) -> Vec<u8> {
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token68_bytes_are_the_rfc_7235_set() {
        for b in 0..=255u8 {
            let want = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(token68_byte(b), want, "byte {b:#04x}");
        }
    }

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
        extract(&method, &headers(pairs), query, &sources())
    }

    fn sources() -> TokenSources {
        TokenSources {
            cookie: Some("session".into()),
            query: Some("access_token".into()),
            cookie_origins: vec!["https://app.example.com".into()],
        }
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
            cookie_without(b"a=1; session=tok; b=2", "session").as_deref(),
            Some(&b"a=1; b=2"[..])
        );
        assert_eq!(cookie_without(b"session=tok", "session"), None);
    }

    #[test]
    fn a_query_parameter_is_the_token_under_every_name_an_upstream_reads_as_it() {
        use ExtractError::*;
        let token = |q: &str| run(Method::GET, &[], Some(q)).map(|f| f.map(|f| f.token));
        for q in [
            "access_token=T",
            "%61ccess_token=T",
            "access%5Ftoken=T",
            "access.token=T",
            "access+token=T",
            "access%20token=T",
            "access_token[]=T",
            "access_token[0]=T",
            "access[token=T",
            "Access_Token=T",
            "+access_token=T",
            "access_token%00x=T",
            "x=1&access_token=T",
        ] {
            assert_eq!(token(q), Ok(Some("T".into())), "{q}");
        }
        for q in [
            "access_tokens=T",
            "xaccess_token=T",
            "access-token=T",
            "a=access_token",
        ] {
            assert_eq!(token(q), Ok(None), "{q}");
        }
        assert_eq!(token("access_token=T&%61ccess_token=U"), Err(SeveralTokens));
        assert_eq!(
            token("access_token[]=T&access_token[]=T"),
            Err(SeveralTokens)
        );
        assert_eq!(token("a=1;access_token=T"), Err(AmbiguousCarrier));
        assert_eq!(token("access_token=T;a=1"), Err(AmbiguousCarrier));
        assert_eq!(token("a=1;b=2&access_token=T"), Ok(Some("T".into())));
    }

    #[test]
    fn every_query_parameter_read_as_the_token_is_removed() {
        let q = "a=1&%61ccess_token=x&access.token=y&access_token[]=z&b=2;access_token=w&c=3";
        assert_eq!(query_without(q, "access_token").as_deref(), Some("a=1&c=3"));
    }

    #[test]
    fn a_cookie_header_is_read_as_bytes_and_cookie_names_as_upstreams_read_them() {
        use ExtractError::*;
        let token = |c: &[u8]| {
            let mut h = HeaderMap::new();
            h.append(header::COOKIE, http::HeaderValue::from_bytes(c).unwrap());
            extract(&Method::GET, &h, None, &sources()).map(|f| f.map(|f| f.token))
        };
        for c in [
            &b"session=T"[..],
            b"session=T; x=\xe9",
            b"x=\xe9\xff; session=T",
            b"session=\"T\"",
            b"%73ession=T",
            b"Session=T",
            b"session[]=T",
            b"a=1;session=T",
            b"a=1;\tsession = T ",
        ] {
            assert_eq!(token(c), Ok(Some("T".into())), "{}", c.escape_ascii());
        }
        for c in [&b"sessions=T"[..], b"my_session=T", b"a=session"] {
            assert_eq!(token(c), Ok(None), "{}", c.escape_ascii());
        }
        assert_eq!(token(b"session=T; se%73sion=U"), Err(SeveralTokens));
        // Python's http.cookies splits on whitespace, RFC 2965 parsers on `,`.
        for c in [
            &b"a=1 session=T"[..],
            b"a=1,session=T",
            b"a=\"x session=T\"",
        ] {
            assert_eq!(token(c), Err(AmbiguousCarrier), "{}", c.escape_ascii());
        }
    }

    #[test]
    fn every_cookie_read_as_the_token_is_removed_and_the_rest_kept_as_bytes() {
        assert_eq!(
            cookie_without(
                b"a=\xe9; session=T; %73ession=U; b=1 session=V; c=2",
                "session"
            ),
            Some(b"a=\xe9; c=2".to_vec())
        );
        assert_eq!(cookie_without(b"Session=T", "session"), None);
    }
}
