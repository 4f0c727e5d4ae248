//! `upstreams:` and the top-level `upstream:`: each URL checked and its host resolved once, at
//! load.

use super::{err, CompileError, Ctx};
use crate::config::defaults;
use crate::config::raw::{RawConfig, RawUpstream};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// The HTTP version spoken to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    H1,
    H2c,
    H2,
}

/// A compiled upstream.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    /// Resolved once at load.
    pub address: SocketAddr,
    pub protocol: Protocol,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

/// The compiled upstreams and how routes name them.
pub(super) struct Upstreams {
    pub list: Vec<Upstream>,
    /// Name → index into `list`.
    pub index: HashMap<String, usize>,
    /// The upstream of routes that name none: the top-level `upstream`, or the only one.
    pub default: Option<usize>,
}

pub(super) fn compile(raw: &RawConfig, ctx: &mut Ctx) -> Result<Upstreams, CompileError> {
    if raw.upstreams.is_empty() {
        return err("upstreams", "at least one upstream is needed");
    }
    let mut list = Vec::new();
    let mut index = HashMap::new();
    for (name, u) in &raw.upstreams {
        index.insert(name.clone(), list.len());
        list.push(upstream(name, u, ctx)?);
    }
    let default = match &raw.upstream {
        Some(name) => Some(*index.get(name).ok_or_else(|| CompileError {
            path: "upstream".into(),
            message: format!("unknown upstream {name:?}"),
        })?),
        None if list.len() == 1 => Some(0),
        None => None,
    };
    Ok(Upstreams {
        list,
        index,
        default,
    })
}

fn upstream(name: &str, u: &RawUpstream, ctx: &mut Ctx) -> Result<Upstream, CompileError> {
    let at = format!("upstreams.{name}");
    let uri: http::Uri = u
        .url
        .parse()
        .or_else(|_| err(format!("{at}.url"), format!("{:?} is not a URL", u.url)))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return err(
                format!("{at}.url"),
                "https upstreams are not available in this version",
            )
        }
        _ => return err(format!("{at}.url"), "an upstream URL starts with http://"),
    }
    if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
        return err(format!("{at}.url"), "an upstream URL has no path or query");
    }
    let protocol = match u.protocol.as_deref().unwrap_or(defaults::PROTOCOL) {
        "h1" => Protocol::H1,
        "h2c" => Protocol::H2c,
        "h2" => {
            return err(
                format!("{at}.protocol"),
                "h2 needs an https url (write h2c for HTTP/2 over cleartext)",
            )
        }
        other => {
            return err(
                format!("{at}.protocol"),
                format!("unknown protocol {other:?}: write h1 or h2c"),
            )
        }
    };
    if u.ca_file.is_some() || u.sni.is_some() || u.dangerous_skip_verify {
        return err(at, "ca_file, sni and dangerous_skip_verify apply to https upstreams, which are not available in this version");
    }
    let host = uri.host().unwrap_or_default();
    let port = uri.port_u16().unwrap_or(80);
    let bare = host.trim_matches(['[', ']']);
    let address = match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) if ctx.offline => {
            // Never connected to offline: a placeholder keeps the policy whole.
            ctx.skip(
                format!("{at}.url"),
                format!("host name {host:?} not resolved (offline); run resolves it at start"),
            );
            SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), port)
        }
        Err(_) => resolve(bare, port).ok_or_else(|| CompileError {
            path: format!("{at}.url"),
            message: format!("cannot resolve {host:?}"),
        })?,
    };
    if u.connect_timeout.0.is_zero() || u.read_timeout.0.is_zero() {
        return err(at, "timeouts must be above zero");
    }
    Ok(Upstream {
        name: name.to_string(),
        address,
        protocol,
        connect_timeout: u.connect_timeout.0,
        read_timeout: u.read_timeout.0,
    })
}

/// Resolve an upstream host once, at load.
#[cfg(not(fuzzing))]
fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    (host, port).to_socket_addrs().ok()?.next()
}

/// Under the fuzzer only IP literals resolve: fuzzed host names must not become DNS queries.
#[cfg(fuzzing)]
fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    host.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, port))
}
