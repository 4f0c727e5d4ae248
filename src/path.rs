//! Request-target parsing and path canonicalisation (docs/behaviour.md). Pure: the canonical
//! path they return is both the path routes are matched against and the path sent upstream.

use std::fmt;

/// Why a request target was refused. Every variant answers 400 `bad_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not origin-form (`/…`) or absolute-form (`http://host/…`): `*`, authority-form, garbage.
    UnsupportedTarget,
    /// `%2F`: an encoded slash would let `/a%2Fb` be one segment here and two upstream.
    EncodedSlash,
    /// `\` or `%5C`: some servers treat it as a separator.
    Backslash,
    /// NUL or another control character, raw or encoded.
    ControlCharacter,
    /// `;` or `%3B`: path parameters are read differently by different servers.
    PathParameter,
    /// `#` or `%23`: a fragment never belongs in a request.
    Fragment,
    /// `%` not followed by two hex digits, a raw byte outside ASCII, or bytes that do not
    /// decode to UTF-8 (overlong forms such as `%C0%AE`).
    BadEncoding,
    /// `..` that climbs above `/`.
    AboveRoot,
    /// `%25` followed by two hex digits (`%252e`): an upstream that decodes twice would see
    /// another path than the one authorised.
    DoubleEncoding,
    /// An encoded character that Unicode normalisation (NFKC) or a "best fit" code page turns
    /// into `/`, `\` or `.`: fullwidth `／` `．` `＼`, division slash `∕`, one dot leader `․`…
    LookAlike,
}

impl PathError {
    /// The fixed `error_description`; it never echoes input.
    pub fn description(self) -> &'static str {
        match self {
            PathError::UnsupportedTarget => "unsupported request target",
            PathError::EncodedSlash => "encoded slash in path",
            PathError::Backslash => "backslash in path",
            PathError::ControlCharacter => "control character in path",
            PathError::PathParameter => "path parameter in path",
            PathError::Fragment => "fragment in path",
            PathError::BadEncoding => "bad percent-encoding in path",
            PathError::AboveRoot => "path climbs above root",
            PathError::DoubleEncoding => "double-encoded path",
            PathError::LookAlike => "look-alike of a path separator in path",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// A request target split into its parts. `path` is canonical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// Authority of an absolute-form target (`GET http://host/x`), if any.
    pub authority: Option<&'a str>,
    /// Canonical path: always starts with `/`.
    pub path: String,
    /// Query string without the `?`, forwarded unchanged (bar a token parameter).
    pub query: Option<&'a str>,
}

/// Split a raw request target and canonicalise its path.
pub fn parse_target(raw: &[u8]) -> Result<Target<'_>, PathError> {
    let raw = std::str::from_utf8(raw).map_err(|_| PathError::BadEncoding)?;
    let (authority, rest) = split_absolute_form(raw)?;
    let (path, query) = match rest.find('?') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    if query.is_some_and(|q| q.bytes().any(|b| b == b'#' || b < 0x20 || b == 0x7f)) {
        return Err(PathError::Fragment);
    }
    let path = if path.is_empty() && authority.is_some() {
        "/"
    } else {
        path
    };
    Ok(Target {
        authority,
        path: canonicalise(path)?,
        query,
    })
}

fn split_absolute_form(raw: &str) -> Result<(Option<&str>, &str), PathError> {
    if raw.starts_with('/') {
        return Ok((None, raw));
    }
    let lower = raw.get(..8).unwrap_or(raw).to_ascii_lowercase();
    let after_scheme = if lower.starts_with("http://") {
        &raw[7..]
    } else if lower.starts_with("https://") {
        &raw[8..]
    } else {
        return Err(PathError::UnsupportedTarget);
    };
    let end = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
    let authority = &after_scheme[..end];
    if authority.is_empty() || authority.contains('@') {
        return Err(PathError::UnsupportedTarget);
    }
    Ok((Some(authority), &after_scheme[end..]))
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Classify one byte, raw or decoded, that may not appear in a path.
fn forbidden(b: u8) -> Option<PathError> {
    match b {
        b'/' => Some(PathError::EncodedSlash),
        b'\\' => Some(PathError::Backslash),
        b';' => Some(PathError::PathParameter),
        b'#' => Some(PathError::Fragment),
        0..=0x1f | 0x7f => Some(PathError::ControlCharacter),
        _ => None,
    }
}

/// Characters that NFKC normalisation (or a Windows "best fit" mapping) turns into `/`, `\\`
/// or `.`, or that render as them: the path separators an upstream might see after the gateway
/// has matched the path without them.
fn is_look_alike(c: char) -> bool {
    matches!(
        c,
        '\u{FF0F}' // FULLWIDTH SOLIDUS
            | '\u{FF0E}' // FULLWIDTH FULL STOP
            | '\u{FF3C}' // FULLWIDTH REVERSE SOLIDUS
            | '\u{FE52}' // SMALL FULL STOP
            | '\u{FE68}' // SMALL REVERSE SOLIDUS
            | '\u{2024}' // ONE DOT LEADER
            | '\u{2025}' // TWO DOT LEADER
            | '\u{2215}' // DIVISION SLASH
            | '\u{2216}' // SET MINUS
            | '\u{2044}' // FRACTION SLASH
            | '\u{29F8}' // BIG SOLIDUS
            | '\u{29F9}' // BIG REVERSE SOLIDUS
            | '\u{3002}' // IDEOGRAPHIC FULL STOP
            | '\u{FF61}' // HALFWIDTH IDEOGRAPHIC FULL STOP
    )
}

/// Path bytes that stand for themselves: printable ASCII but for `%` (an escape), `\\`, `;`
/// and `#` (refused), and `?` (which ends the path before it gets here).
const PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        table[b] = !matches!(b as u8, b'%' | b'\\' | b';' | b'#' | b'?');
        b += 1;
    }
    table
};

/// Is `path` (starting with `/`) already what `canonicalise` makes of it? Plain bytes only, no
/// empty segment but a last one (a trailing `/`), no `.` or `..` segment: most requests, checked
/// in one pass instead of rebuilt.
fn is_canonical(path: &[u8]) -> bool {
    let mut segment_start = 1;
    for (i, &b) in path.iter().enumerate().skip(1) {
        if b == b'/' {
            if matches!(&path[segment_start..i], b"" | b"." | b"..") {
                return false;
            }
            segment_start = i + 1;
        } else if !PLAIN[usize::from(b)] {
            return false;
        }
    }
    !matches!(&path[segment_start..], b"." | b"..")
}

/// Canonicalise an origin-form path: decode unreserved escapes, upper-case the others, refuse
/// the ambiguous encodings, merge `//`, resolve `.` and `..`.
pub fn canonicalise(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::UnsupportedTarget);
    }
    if is_canonical(bytes) {
        return Ok(path.to_string());
    }
    rebuild(path)
}

/// `canonicalise` the long way: every byte read, the path rebuilt.
fn rebuild(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    // `normalised` keeps reserved escapes; `decoded` is every escape decoded, used only to
    // check that the bytes a lenient upstream would see are valid UTF-8.
    let mut normalised = Vec::with_capacity(bytes.len());
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadEncoding);
            };
            let v = hi << 4 | lo;
            if let Some(e) = forbidden(v) {
                return Err(e);
            }
            let next_is_escape = bytes
                .get(i + 3)
                .copied()
                .is_some_and(|b| hex_value(b).is_some())
                && bytes
                    .get(i + 4)
                    .copied()
                    .is_some_and(|b| hex_value(b).is_some());
            if v == b'%' && next_is_escape {
                return Err(PathError::DoubleEncoding);
            }
            if is_unreserved(v) {
                normalised.push(v);
            } else {
                normalised.extend_from_slice(format!("%{v:02X}").as_bytes());
            }
            decoded.push(v);
            i += 3;
            continue;
        }
        if b != b'/' {
            if let Some(e) = forbidden(b) {
                return Err(e);
            }
        }
        if b >= 0x80 || b == b' ' {
            return Err(PathError::BadEncoding);
        }
        normalised.push(b);
        decoded.push(b);
        i += 1;
    }
    let Ok(decoded) = std::str::from_utf8(&decoded) else {
        return Err(PathError::BadEncoding);
    };
    if decoded.chars().any(is_look_alike) {
        return Err(PathError::LookAlike);
    }
    // Only ASCII was pushed to `normalised`.
    let normalised = String::from_utf8(normalised).map_err(|_| PathError::BadEncoding)?;

    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for seg in normalised.split('/').skip(1) {
        trailing_slash = false;
        match seg {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = true;
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(normalised.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass check agrees with the long way: every path it calls canonical is rebuilt
    /// unchanged, and every path the long way leaves unchanged (bar `%` escapes, which it
    /// upper-cases or decodes) is called canonical. All paths of up to five bytes over an
    /// alphabet of the interesting ones.
    #[test]
    fn the_canonical_check_agrees_with_rebuilding() {
        let alphabet = [
            b'a', b'/', b'.', b'%', b'2', b'e', b'\\', b';', b'#', b' ', 0x80, b'~',
        ];
        let mut paths = vec![b"/".to_vec()];
        let mut frontier = paths.clone();
        for _ in 0..5 {
            let mut next = Vec::new();
            for p in &frontier {
                for &b in &alphabet {
                    let mut q = p.clone();
                    q.push(b);
                    next.push(q);
                }
            }
            paths.extend(next.iter().cloned());
            frontier = next;
        }
        let mut fast = 0;
        for p in &paths {
            let Ok(text) = std::str::from_utf8(p) else {
                continue;
            };
            let rebuilt = rebuild(text);
            if is_canonical(p) {
                fast += 1;
                assert_eq!(rebuilt.as_deref(), Ok(text), "{text:?}");
            } else if !p.contains(&b'%') {
                assert_ne!(rebuilt.as_deref(), Ok(text), "{text:?} is canonical");
            }
        }
        assert!(fast > 1000, "only {fast} paths took the one-pass check");
    }

    #[test]
    fn canonical_forms() {
        let cases = [
            ("/", "/"),
            ("//a///b", "/a/b"),
            ("/a/./b/", "/a/b/"),
            ("/public/../admin", "/admin"),
            ("/a/%2e%2E/b", "/b"),
            ("/%61pi/orders", "/api/orders"),
            ("/a%20b", "/a%20b"),
            ("/a%3fb", "/a%3Fb"),
            ("/a/..", "/"),
            ("/a/b/..", "/a/"),
            // A literal percent sign not followed by an escape is fine.
            ("/100%25", "/100%25"),
            ("/100%25off", "/100%25off"),
            // Other non-ASCII stays encoded, as it came.
            ("/caf%C3%A9", "/caf%C3%A9"),
        ];
        for (input, want) in cases {
            assert_eq!(canonicalise(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn ambiguous_encodings_are_refused() {
        let cases = [
            ("/a%2Fb", PathError::EncodedSlash),
            ("/a%2fb", PathError::EncodedSlash),
            ("/a\\b", PathError::Backslash),
            ("/a%5Cb", PathError::Backslash),
            ("/a%00", PathError::ControlCharacter),
            ("/a;jsessionid=1", PathError::PathParameter),
            ("/a%3Bx", PathError::PathParameter),
            ("/a%23x", PathError::Fragment),
            ("/..", PathError::AboveRoot),
            ("/a/../../b", PathError::AboveRoot),
            ("/%2e%2e/x", PathError::AboveRoot),
            ("/a%zz", PathError::BadEncoding),
            ("/a%2", PathError::BadEncoding),
            ("/%C0%AE%C0%AE/", PathError::BadEncoding),
            ("/a/%252e%252e/admin", PathError::DoubleEncoding),
            ("/a/%252F", PathError::DoubleEncoding),
            ("/%EF%BC%8E%EF%BC%8E/admin", PathError::LookAlike),
            ("/a%EF%BC%8Fb", PathError::LookAlike),
            ("/a%E2%88%95b", PathError::LookAlike),
            ("/a%E2%80%A4%E2%80%A4/b", PathError::LookAlike),
        ];
        for (input, want) in cases {
            assert_eq!(canonicalise(input), Err(want), "{input}");
        }
    }

    #[test]
    fn absolute_form_targets_give_their_authority() {
        let t = parse_target(b"http://api.example.com/a/../b?x=1").unwrap();
        assert_eq!(t.authority, Some("api.example.com"));
        assert_eq!(t.path, "/b");
        assert_eq!(t.query, Some("x=1"));
        assert_eq!(parse_target(b"*"), Err(PathError::UnsupportedTarget));
        assert_eq!(
            parse_target(b"example.com:443"),
            Err(PathError::UnsupportedTarget)
        );
    }
}
