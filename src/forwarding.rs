//! Forwarding policy: the header lists that decide what of an incoming request the upstream
//! may see besides what the gateway itself sets (read by the engine's header edits, and by
//! `config`, which refuses to keep what must always go), the edit a decision makes to a header,
//! and the one function that carries edits out, on the upstream request in the server and on a
//! header map in `explain`.

use http::{HeaderMap, HeaderName, HeaderValue};

/// One change to the request's headers before it goes upstream. Applied in order; `Set`
/// replaces every value of the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    Remove(HeaderName),
    Set(HeaderName, HeaderValue),
}

/// Headers a request's edits can be carried out on.
pub trait Headers {
    type Error;
    fn remove(&mut self, name: &HeaderName);
    fn set(&mut self, name: HeaderName, value: HeaderValue) -> Result<(), Self::Error>;
}

impl Headers for HeaderMap {
    type Error = std::convert::Infallible;

    fn remove(&mut self, name: &HeaderName) {
        HeaderMap::remove(self, name);
    }

    fn set(&mut self, name: HeaderName, value: HeaderValue) -> Result<(), Self::Error> {
        self.insert(name, value);
        Ok(())
    }
}

/// The static text of a header the gateway sets on every request, for a writer that would
/// otherwise copy the name (pingora's `insert_header`).
pub fn static_name(name: &HeaderName) -> Option<&'static str> {
    GATEWAY_HEADERS.into_iter().find(|n| *n == name.as_str())
}

/// A quick test that an incoming header name cannot be on any list of names to remove: the
/// first byte and the length of every name a policy may remove (and every length from a
/// prefix's on, for the prefix's first byte), built once per policy. A name it passes still
/// goes through the lists; one it refuses cannot be on them. `_` and `-` are alike (a name
/// is compared with `_` read as `-`, which keeps its length).
#[derive(Debug, Clone, Default)]
pub struct NameSieve {
    first: [u64; 4],
    lengths: u128,
}

impl NameSieve {
    /// The sieve of `names` (lower case) and of every name starting with `prefix` (when not
    /// empty).
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>, prefix: &str) -> Self {
        let mut sieve = NameSieve::default();
        for name in names {
            if sieve.first_byte(name.as_bytes()) {
                sieve.lengths |= 1 << name.len().min(127);
            }
        }
        if sieve.first_byte(prefix.as_bytes()) {
            sieve.lengths |= u128::MAX << prefix.len().min(127);
        }
        sieve
    }

    fn first_byte(&mut self, name: &[u8]) -> bool {
        let Some(&b) = name.first() else {
            return false;
        };
        for b in [b, if b == b'-' { b'_' } else { b }] {
            self.first[usize::from(b / 64)] |= 1 << (b % 64);
        }
        true
    }

    /// Might `name` be on one of the lists?
    pub fn may_name(&self, name: &str) -> bool {
        let Some(&b) = name.as_bytes().first() else {
            return false;
        };
        self.first[usize::from(b / 64)] & 1 << (b % 64) != 0
            && self.lengths & 1 << name.len().min(127) != 0
    }
}

/// Carry out `edits`, in order: what the upstream request's headers become.
pub fn apply<H: Headers>(headers: &mut H, edits: &[Edit]) -> Result<(), H::Error> {
    for edit in edits {
        match edit {
            Edit::Remove(name) => headers.remove(name),
            Edit::Set(name, value) => headers.set(name.clone(), value.clone())?,
        }
    }
    Ok(())
}

/// The header of a DPoP proof (RFC 9449): the client's credential for one request, never
/// forwarded unless its token is (`forward_token`).
pub const DPOP: &str = "dpop";
/// `DPOP` as a header name, and the names of the headers the gateway sets: constants, so that
/// a lookup hashes the name without parsing it first.
pub const DPOP_HEADER: HeaderName = HeaderName::from_static(DPOP);
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Headers that make some frameworks run another method or path than the request line's:
/// removed from every request unless `keep_override_headers` names them.
pub const OVERRIDE_HEADERS: [&str; 5] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
];

/// Headers that tell the upstream who the client is besides `X-Forwarded-*`: kept only from
/// a peer in `trusted_proxies`.
pub const CLIENT_HEADERS: [&str; 2] = ["forwarded", "x-real-ip"];

/// Headers the gateway sets itself: a spelling with `_` in place of `-` is removed, since
/// CGI-style upstreams read `X_Forwarded_For` as `X-Forwarded-For`.
pub const GATEWAY_HEADERS: [&str; 4] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sieve_passes_every_listed_name_in_either_spelling() {
        let sieve = NameSieve::new(["x-auth-subject", "forwarded", "-odd"], "x-user-");
        for name in [
            "x-auth-subject",
            "x_auth_subject",
            "forwarded",
            "-odd",
            "_odd",
            "x-user-",
            "x-user-anything-at-all",
            "x_user_roles",
        ] {
            assert!(sieve.may_name(name), "{name}");
        }
        // Another first byte, or a length no listed name has.
        for name in ["host", "user-agent", "accept", "cookie", "x-s", ""] {
            assert!(!sieve.may_name(name), "{name}");
        }
        // Without a prefix, nothing longer than the longest name passes.
        let exact = NameSieve::new(["x-auth-subject"], "");
        assert!(!exact.may_name("x-auth-subject-and-more"));
        assert!(!NameSieve::default().may_name("x-auth-subject"));
    }
}
