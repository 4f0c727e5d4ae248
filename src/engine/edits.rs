//! The header edits of an allowed request: what of the incoming headers goes (identity headers
//! in any spelling, token carriers, headers only a trusted proxy may send) and what the gateway
//! sets (identity, the client subject, `X-Forwarded-*`, `X-Request-Id`). The lists it reads are
//! `forwarding`'s; `forwarding::apply` carries the edits out, in the server and in `explain`
//! alike.

use super::RequestHead;
use crate::config::Policy;
use crate::forwarding::{
    Edit, CLIENT_HEADERS, DPOP_HEADER, GATEWAY_HEADERS, OVERRIDE_HEADERS, X_FORWARDED_FOR,
    X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REQUEST_ID,
};
use crate::identity;
use crate::token::extract;
use crate::token::Identity;
use http::{header, HeaderValue};
use std::net::IpAddr;

/// What happens to the places a token can come in (Authorization, the token cookie, the token
/// query parameter) before forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Carriers {
    /// `forward_token: true` on a route that verified the token: the carrier it came in is
    /// kept (with its `DPoP` proof, for a DPoP token); the others go as with `RemoveBearer`.
    Keep(extract::Source),
    /// The token cookie and parameter, the `DPoP` proof, and `Authorization` only if it is a
    /// Bearer or DPoP credential (`auth: none`: other schemes are the upstream's own business).
    RemoveBearer,
    /// The token cookie and parameter, and `Authorization` whatever its scheme.
    RemoveAll,
}

impl Carriers {
    pub(super) fn keeps(self, source: extract::Source) -> bool {
        self == Carriers::Keep(source)
    }
}

/// Every header change of an allowed request, in the order they apply: incoming identity
/// headers (and the client subject header) removed, token carriers removed (unless
/// `forward_token`), identity headers and the verified client subject set,
/// `X-Forwarded-*` replaced or extended, `X-Request-Id` set.
pub(super) fn edits(
    policy: &Policy,
    head: &RequestHead,
    carriers: Carriers,
    identity: Option<&Identity>,
    authority: Option<&str>,
    request_id: &HeaderValue,
) -> Vec<Edit> {
    let incoming = head.headers;
    let trusted = head
        .peer
        .is_some_and(|ip| policy.trusted_proxies.iter().any(|n| n.contains(&ip)));
    let subject_header = policy
        .tls
        .as_ref()
        .and_then(|t| t.client_subject_header.as_ref());
    // Room for what a request usually gets: a few removals, the identity headers, the four
    // `X-Forwarded-*` and `X-Request-Id`.
    let mut out: Vec<Edit> = Vec::with_capacity(8 + policy.identity.headers.len());
    out.extend(
        incoming
            .keys()
            // Most names are on no list: the sieve tells them by first byte and length.
            .filter(|name| policy.strip_sieve.may_name(name.as_str()))
            .filter(|name| {
                // One spelling per header for every list: `_` read as `-`, as CGI-style upstreams do.
                let spelled = identity::dashed(name);
                let underscored = matches!(spelled, std::borrow::Cow::Owned(_));
                let n = spelled.as_ref();
                policy.identity.strips_dashed(n)
                    || foreign(n, underscored, trusted, policy)
                    || subject_header
                        .into_iter()
                        .chain(&policy.pending_subject_header)
                        .any(|h| n == h.as_str())
            })
            .map(|name| Edit::Remove(name.clone())),
    );

    let bearer_only = carriers != Carriers::RemoveAll;
    if !carriers.keeps(extract::Source::Dpop) && incoming.contains_key(&DPOP_HEADER) {
        // A proof is the client's credential for this request, not the upstream's business.
        out.push(Edit::Remove(DPOP_HEADER));
    }
    if !carriers.keeps(extract::Source::Header) && !carriers.keeps(extract::Source::Dpop) {
        let authorization = incoming.get_all(header::AUTHORIZATION).iter();
        if !bearer_only || authorization.into_iter().any(extract::is_access_token) {
            out.push(Edit::Remove(header::AUTHORIZATION));
        }
    }
    if let Some(name) = &policy.token_sources.cookie {
        if !carriers.keeps(extract::Source::Cookie) && incoming.contains_key(header::COOKIE) {
            // As bytes: a cookie header need not be ASCII, and other cookies stay as sent.
            let kept: Vec<Vec<u8>> = incoming
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| extract::cookie_without(v.as_bytes(), name))
                .collect();
            out.push(Edit::Remove(header::COOKIE));
            if !kept.is_empty() {
                out.extend(
                    HeaderValue::from_bytes(&kept.join(&b"; "[..]))
                        .ok()
                        .map(|v| Edit::Set(header::COOKIE, v)),
                );
            }
        }
    }
    if let Some(identity) = identity {
        if let Ok(headers) = &identity.headers {
            out.extend(
                headers
                    .iter(&policy.identity, &identity.scopes)
                    .map(|(n, v)| Edit::Set(n.clone(), v)),
            );
        }
    }
    if let (Some(name), Some(subject)) = (subject_header, head.client_subject) {
        out.extend(header_value(subject.to_string()).map(|v| Edit::Set(name.clone(), v)));
    }

    // The host the request was routed by goes upstream: an absolute-form request without a
    // `Host` header gets its authority as `Host`.
    let host = match (incoming.get(header::HOST), authority) {
        (Some(h), _) => Some(h.clone()),
        (None, Some(a)) => {
            let v = HeaderValue::from_str(a).ok();
            if let Some(v) = &v {
                out.push(Edit::Set(header::HOST, v.clone()));
            }
            v
        }
        (None, None) => None,
    };

    // X-Forwarded-*: replaced unless the peer is a trusted proxy.
    let proto = HeaderValue::from_static(if head.tls { "https" } else { "http" });
    if trusted {
        let peer = head.peer.map(|ip| ip.to_string()).unwrap_or_default();
        let prior: Vec<&str> = incoming
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let mut chain = prior.join(", ");
        if !chain.is_empty() {
            chain.push_str(", ");
        }
        chain.push_str(&peer);
        out.extend(header_value(chain).map(|v| Edit::Set(X_FORWARDED_FOR, v)));
        if !incoming.contains_key(&X_FORWARDED_PROTO) {
            out.push(Edit::Set(X_FORWARDED_PROTO, proto));
        }
    } else {
        let peer = head
            .peer
            .map_or(Some(HeaderValue::from_static("")), ip_value);
        out.extend(peer.map(|v| Edit::Set(X_FORWARDED_FOR, v)));
        out.push(Edit::Set(X_FORWARDED_PROTO, proto));
    }
    // `Set` replaces every value: an untrusted peer's `X-Forwarded-Host` goes either way.
    match host {
        Some(host) if !trusted || !incoming.contains_key(&X_FORWARDED_HOST) => {
            out.push(Edit::Set(X_FORWARDED_HOST, host));
        }
        None if !trusted => out.push(Edit::Remove(X_FORWARDED_HOST)),
        _ => {}
    }
    out.push(Edit::Set(X_REQUEST_ID, request_id.clone()));
    out
}

/// The peer's address as a header value. IPv4, by far the most common, is written by hand:
/// `Ipv4Addr`'s `Display` goes through the formatting machinery, ten times the instructions.
fn ip_value(ip: IpAddr) -> Option<HeaderValue> {
    let IpAddr::V4(v4) = ip else {
        return header_value(ip.to_string());
    };
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        let digits = [octet / 100, octet / 10 % 10, octet % 10];
        let skip = if octet >= 100 {
            0
        } else if octet >= 10 {
            1
        } else {
            2
        };
        for d in &digits[skip..] {
            text[len] = b'0' + d;
            len += 1;
        }
    }
    HeaderValue::from_bytes(&text[..len]).ok()
}

/// Must this incoming header go, besides the identity headers? An override header not kept by
/// the config, `Forwarded` and `X-Real-IP` from an untrusted peer, and `_` spellings of all of
/// these and of the headers the gateway sets.
/// `n` is the name with `_` read as `-`; `underscored` says it was spelled with one.
fn foreign(n: &str, underscored: bool, trusted: bool, policy: &Policy) -> bool {
    if OVERRIDE_HEADERS.contains(&n) {
        return underscored || !policy.keep_override_headers.iter().any(|k| k == n);
    }
    if CLIENT_HEADERS.contains(&n) {
        return underscored || !trusted;
    }
    underscored && GATEWAY_HEADERS.contains(&n)
}

/// A header value built by the gateway from values it already checked; `None` if it is not
/// one (then the header is left out rather than sent wrong).
fn header_value(text: String) -> Option<HeaderValue> {
    HeaderValue::try_from(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_address_is_written_as_display_writes_it() {
        let mut addresses: Vec<IpAddr> = ["0.0.0.0", "127.0.0.1", "10.0.9.99", "255.255.255.255"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        addresses.extend((0..=255u8).map(|b| IpAddr::from([b, 100 - b % 100, b / 10, 9])));
        addresses.push("2001:db8::1".parse().unwrap());
        for ip in addresses {
            assert_eq!(ip_value(ip).unwrap(), ip.to_string().as_str());
        }
    }
}
