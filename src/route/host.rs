//! The host condition of a route (any, exact, `*.suffix`) and the normal form of a request's
//! `Host` or authority it is matched against.

/// Host condition of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Any,
    /// Exact host name, lower-case, without port.
    Exact(String),
    /// `*.example.com`: stored as `.example.com`; matches any name ending so, not the bare domain.
    Suffix(String),
}

impl HostMatch {
    pub fn parse(host: Option<&str>) -> Result<Self, String> {
        let Some(host) = host else {
            return Ok(HostMatch::Any);
        };
        let host = host.to_ascii_lowercase();
        let name = host.strip_prefix("*.").unwrap_or(&host);
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err("a host is a DNS name or *.domain (no port, no other wildcard)".into());
        }
        Ok(if host.starts_with("*.") {
            HostMatch::Suffix(host[1..].to_string())
        } else {
            HostMatch::Exact(host)
        })
    }

    /// `host` is the request's host, lower-case, port removed.
    pub fn matches(&self, host: Option<&str>) -> bool {
        match (self, host) {
            (HostMatch::Any, _) => true,
            (HostMatch::Exact(want), Some(h)) => want == h,
            (HostMatch::Suffix(suffix), Some(h)) => h.len() > suffix.len() && h.ends_with(suffix),
            _ => false,
        }
    }
}

/// Normalise a `Host` header or authority for matching: lower-case, port and trailing dot
/// removed. `None` for anything but a plain host (a DNS name, an IPv4 address or a bracketed
/// IPv6 address) with an optional port of 1 to 5 digits: `a.com:x`, `a.com:1:2`, `a.com:` and
/// `evil.com:x.example.com` are refused, since upstreams and other proxies read them as other
/// hosts than the one matched here.
pub fn normalise_host(raw: &str) -> Option<String> {
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let end = rest.find(']')?;
        let literal = &rest[..end];
        if literal.is_empty()
            || !literal
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        {
            return None;
        }
        let after = &rest[end + 1..];
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (&raw[..end + 2], port)
    } else {
        match raw.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (raw, None),
        }
    };
    if port.is_some_and(|p| !(1..=5).contains(&p.len()) || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    if host.starts_with('[') {
        return Some(host.to_ascii_lowercase());
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return None;
    }
    Some(host.to_ascii_lowercase())
}
