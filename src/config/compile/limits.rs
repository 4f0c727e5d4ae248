//! `limits:` and `server:`: the bounds on what a client may send and hold, and the process
//! settings (worker threads, SIGTERM drain budget).

use super::{err, CompileError};
use crate::config::defaults;
use crate::config::raw::{RawLimits, RawServer};
use std::time::Duration;

/// The compiled `limits:` block.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longer tokens are refused before decoding.
    pub max_token_bytes: usize,
    /// Verified-token cache size; 0 disables the cache.
    pub token_cache_entries: u64,
    pub max_header_count: usize,
    pub max_header_bytes: usize,
    /// SETTINGS_MAX_CONCURRENT_STREAMS of client HTTP/2 connections.
    pub h2_max_concurrent_streams: u32,
    pub max_target_bytes: usize,
    /// `None`: no limit.
    pub max_body_bytes: Option<u64>,
    pub max_in_flight: usize,
    pub client_body_timeout: Duration,
    pub client_idle_timeout: Duration,
}

impl Limits {
    /// SETTINGS_MAX_HEADER_LIST_SIZE of client HTTP/2 connections, derived from the limits the
    /// engine checks (there is no separate knob): HTTP/2 counts the pseudo-headers too, and 32
    /// more bytes for every field (RFC 9113 section 6.5.2), so this is `max_header_bytes` plus
    /// `max_target_bytes` (`:path`) plus 32 per field plus room for `:method`, `:scheme` and
    /// `:authority`. A request within the engine's limits is never refused by the transport
    /// first, and one over them gets the engine's 431 with the gateway's body; a header block
    /// far over them is refused by the HTTP/2 layer (431, no body) before it is decoded whole.
    pub fn h2_max_header_list_size(&self) -> u32 {
        let fields = self.max_header_count.saturating_add(H2_PSEUDO_HEADERS);
        let size = self
            .max_header_bytes
            .saturating_add(self.max_target_bytes)
            .saturating_add(fields.saturating_mul(32))
            .saturating_add(H2_PSEUDO_ROOM);
        u32::try_from(size).unwrap_or(u32::MAX)
    }
}

/// `:method`, `:scheme`, `:authority`, `:path`, `:protocol`.
const H2_PSEUDO_HEADERS: usize = 5;
/// Bytes allowed for the names and values of `:method`, `:scheme`, `:authority`, `:protocol`.
const H2_PSEUDO_ROOM: usize = 1024;

/// The compiled `server:` block.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// pingora worker threads.
    pub threads: usize,
    /// SIGTERM drain budget.
    pub shutdown_grace: Duration,
    /// After SIGTERM, keep accepting and serving this long (`/readyz` 503) before the drain;
    /// part of `shutdown_grace`, never more.
    pub shutdown_delay: Duration,
}

pub(super) fn limits(l: &RawLimits) -> Result<Limits, CompileError> {
    let positive = |path: &str, v: Option<usize>, default: usize| -> Result<usize, CompileError> {
        match v.unwrap_or(default) {
            0 => err(format!("limits.{path}"), "must be above zero"),
            v => Ok(v),
        }
    };
    let max_token_bytes = l.max_token_bytes.unwrap_or(defaults::MAX_TOKEN_BYTES);
    if !(64..=65536).contains(&max_token_bytes) {
        return err("limits.max_token_bytes", "must be between 64 and 65536");
    }
    let body_timeout = l
        .client_body_timeout
        .map_or(defaults::CLIENT_BODY_TIMEOUT, |d| d.0);
    if body_timeout.is_zero() {
        return err("limits.client_body_timeout", "must be above zero");
    }
    let idle_timeout = l
        .client_idle_timeout
        .map_or(defaults::CLIENT_IDLE_TIMEOUT, |d| d.0);
    if idle_timeout.as_secs() == 0 {
        return err("limits.client_idle_timeout", "must be at least 1s");
    }
    Ok(Limits {
        max_token_bytes,
        token_cache_entries: l
            .token_cache_entries
            .unwrap_or(defaults::TOKEN_CACHE_ENTRIES),
        max_header_count: positive(
            "max_header_count",
            l.max_header_count,
            defaults::MAX_HEADER_COUNT,
        )?,
        max_header_bytes: positive(
            "max_header_bytes",
            l.max_header_bytes,
            defaults::MAX_HEADER_BYTES,
        )?,
        h2_max_concurrent_streams: match l
            .h2_max_concurrent_streams
            .unwrap_or(defaults::H2_MAX_CONCURRENT_STREAMS)
        {
            0 => return err("limits.h2_max_concurrent_streams", "must be above zero"),
            n => n,
        },
        max_target_bytes: positive(
            "max_target_bytes",
            l.max_target_bytes,
            defaults::MAX_TARGET_BYTES,
        )?,
        max_body_bytes: l.max_body_bytes,
        max_in_flight: positive("max_in_flight", l.max_in_flight, defaults::MAX_IN_FLIGHT)?,
        client_body_timeout: body_timeout,
        client_idle_timeout: idle_timeout,
    })
}

pub(super) fn server(s: &RawServer) -> Result<ServerSettings, CompileError> {
    let threads = s.threads.unwrap_or(defaults::THREADS);
    if !(1..=256).contains(&threads) {
        return err("server.threads", "must be between 1 and 256");
    }
    let shutdown_grace = s.shutdown_grace.map_or(defaults::SHUTDOWN_GRACE, |d| d.0);
    let shutdown_delay = s.shutdown_delay.map_or(defaults::SHUTDOWN_DELAY, |d| d.0);
    if shutdown_delay > shutdown_grace {
        return err(
            "server.shutdown_delay",
            format!(
                "{} is longer than server.shutdown_grace ({}): the delay is spent inside the \
                 drain budget",
                humantime::format_duration(shutdown_delay),
                humantime::format_duration(shutdown_grace)
            ),
        );
    }
    Ok(ServerSettings {
        threads,
        shutdown_grace,
        shutdown_delay,
    })
}
