//! `upstreams:` and the top-level `upstream:`: each URL checked and its host resolved once, at
//! load; an `https` upstream's server name, CA bundle (read now) and verification.

use super::{err, CompileError, Compiling};
use crate::config::defaults;
use crate::config::raw::{RawConfig, RawUpstream};
use pingora::protocols::tls::CaType;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
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
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub protocol: Protocol,
    /// `https` upstreams: how the connection is verified.
    pub tls: Option<UpstreamTls>,
}

/// How the gateway verifies an `https` upstream.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// Sent as SNI and verified against the certificate: `sni`, or the url's host.
    pub sni: String,
    /// `ca_file`'s CAs, parsed at load; `None`: the system's roots.
    pub ca: Option<Arc<CaType>>,
    /// `dangerous_skip_verify: true` turns this off.
    pub verify: bool,
    /// Keeps pooled connections of this upstream (and these settings) apart from any other's.
    pub pool_key: u64,
}

/// The compiled upstreams and how routes name them.
pub(super) struct Upstreams {
    pub list: Vec<Upstream>,
    /// Name → index into `list`.
    pub index: HashMap<String, usize>,
    /// The upstream of routes that name none: the top-level `upstream`, or the only one.
    pub default: Option<usize>,
}

pub(super) fn compile(
    raw: &RawConfig,
    base: &Path,
    ctx: &mut Compiling,
) -> Result<Upstreams, CompileError> {
    if raw.upstreams.is_empty() {
        return err("upstreams", "at least one upstream is needed");
    }
    let mut list = Vec::new();
    let mut index = HashMap::new();
    for (name, u) in &raw.upstreams {
        index.insert(name.clone(), list.len());
        list.push(upstream(name, u, base, ctx)?);
    }
    let default = match &raw.upstream {
        Some(name) => Some(*index.get(name).ok_or_else(|| CompileError {
            path: "upstream".into(),
            message: super::unknown("upstream", name, index.keys()),
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

fn upstream(
    name: &str,
    u: &RawUpstream,
    base: &Path,
    ctx: &mut Compiling,
) -> Result<Upstream, CompileError> {
    let at = format!("upstreams.{name}");
    let uri: http::Uri = u
        .url
        .parse()
        .or_else(|_| err(format!("{at}.url"), format!("{:?} is not a URL", u.url)))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return err(
                format!("{at}.url"),
                "an upstream URL starts with http:// or https://",
            )
        }
    };
    if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
        return err(format!("{at}.url"), "an upstream URL has no path or query");
    }
    let protocol = match u.protocol.as_deref().unwrap_or(defaults::PROTOCOL) {
        "h1" => Protocol::H1,
        "h2" if https => Protocol::H2,
        "h2" => {
            return err(
                format!("{at}.protocol"),
                "h2 is negotiated through TLS (ALPN): it needs an https:// url",
            )
        }
        "h2c" if !https => Protocol::H2c,
        "h2c" => {
            return err(
                format!("{at}.protocol"),
                "h2c is HTTP/2 over cleartext: an https:// upstream speaks h2",
            )
        }
        other => {
            return err(
                format!("{at}.protocol"),
                format!("{other:?} is not a protocol: write h1, h2c or h2"),
            )
        }
    };
    if !https {
        for (key, set) in [
            ("ca_file", u.ca_file.is_some()),
            ("sni", u.sni.is_some()),
            ("dangerous_skip_verify", u.dangerous_skip_verify),
        ] {
            if set {
                return err(
                    format!("{at}.{key}"),
                    "applies to https:// upstreams only (this url is http://)",
                );
            }
        }
    }
    let host = uri.host().unwrap_or_default();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
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
    let tls = if https {
        Some(upstream_tls(&at, u, bare, base)?)
    } else {
        None
    };
    Ok(Upstream {
        name: name.to_string(),
        address,
        connect_timeout: u.connect_timeout.0,
        read_timeout: u.read_timeout.0,
        protocol,
        tls,
    })
}

/// The server name, CA bundle and verification of an `https` upstream.
fn upstream_tls(
    at: &str,
    u: &RawUpstream,
    host: &str,
    base: &Path,
) -> Result<UpstreamTls, CompileError> {
    let sni = match &u.sni {
        Some(s)
            if s.trim().is_empty()
                || rustls::pki_types::ServerName::try_from(s.as_str()).is_err() =>
        {
            return err(format!("{at}.sni"), format!("{s:?} is not a host name"))
        }
        Some(s) => s.clone(),
        None => host.to_string(),
    };
    let ca = match &u.ca_file {
        Some(path) if path.trim().is_empty() => {
            return err(format!("{at}.ca_file"), "must not be empty")
        }
        Some(path) => {
            let roots =
                crate::tls::pem::load_roots(&base.join(path)).map_err(|message| CompileError {
                    path: format!("{at}.ca_file"),
                    message,
                })?;
            Some(crate::tls::pem::upstream_roots(&roots))
        }
        None => None,
    };
    let pool_key = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (at, &sni, &u.ca_file, u.dangerous_skip_verify, &u.protocol).hash(&mut h);
        if let Some(ca) = &ca {
            for c in ca.iter() {
                c.borrow_raw_cert().hash(&mut h);
            }
        }
        h.finish()
    };
    Ok(UpstreamTls {
        sni,
        ca,
        verify: !u.dangerous_skip_verify,
        pool_key,
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
