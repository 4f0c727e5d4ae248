//! `tracing:`: where spans go (the collector's OTLP/gRPC endpoint), how many roots are sampled,
//! and the service name they carry.

use super::{err, CompileError};
use crate::config::defaults;
use crate::config::raw::RawTracing;

/// The compiled `tracing:` block.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// `http://host:port` of the OTLP/gRPC collector; `None`: tracing off.
    pub otlp_endpoint: Option<String>,
    /// Share of root requests (no sampled or unsampled parent) that are sampled, in [0, 1].
    pub sample_ratio: f64,
    pub service_name: String,
}

pub fn compile(raw: &RawTracing) -> Result<TracingSettings, CompileError> {
    let otlp_endpoint = match &raw.otlp_endpoint {
        Some(url) => Some(endpoint(url)?),
        None => None,
    };
    let sample_ratio = raw.sample_ratio.unwrap_or(defaults::SAMPLE_RATIO);
    if !(0.0..=1.0).contains(&sample_ratio) {
        return err(
            "tracing.sample_ratio",
            format!(
                "{sample_ratio} is not a share between 0 and 1 (0.01 samples 1 request in 100)"
            ),
        );
    }
    let service_name = raw
        .service_name
        .clone()
        .unwrap_or_else(|| defaults::SERVICE_NAME.to_string());
    if service_name.trim().is_empty() {
        return err("tracing.service_name", "must not be empty");
    }
    Ok(TracingSettings {
        otlp_endpoint,
        sample_ratio,
        service_name,
    })
}

/// An `http://host:port` URL, without path, query or credentials.
fn endpoint(url: &str) -> Result<String, CompileError> {
    let path = "tracing.otlp_endpoint";
    let parsed: http::Uri = match url.trim().parse() {
        Ok(u) => u,
        Err(_) => {
            return err(
                path,
                format!("{url:?} is not a URL like http://127.0.0.1:4317"),
            )
        }
    };
    match parsed.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return err(
                path,
                "https collectors are not supported: send to a collector agent over http:// on \
                 the node or in the pod (it can forward over TLS)",
            )
        }
        _ => {
            return err(
                path,
                format!("{url:?} is not a URL like http://127.0.0.1:4317"),
            )
        }
    }
    let Some(authority) = parsed.authority() else {
        return err(path, format!("{url:?} names no host"));
    };
    if authority.as_str().contains('@') {
        return err(path, "must not carry credentials");
    }
    if authority.port_u16().is_none() {
        return err(
            path,
            format!("{url:?} names no port (OTLP/gRPC is usually 4317)"),
        );
    }
    if parsed.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return err(
            path,
            "must be http://host:port alone: OTLP/gRPC has no path of its own",
        );
    }
    Ok(format!("http://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_endpoint(url: &str) -> Result<TracingSettings, CompileError> {
        compile(&RawTracing {
            otlp_endpoint: Some(url.to_string()),
            ..RawTracing::default()
        })
    }

    #[test]
    fn an_http_host_and_port_is_the_endpoint() {
        let s = with_endpoint("http://otel-collector.observability:4317").unwrap();
        assert_eq!(
            s.otlp_endpoint.as_deref(),
            Some("http://otel-collector.observability:4317")
        );
        assert_eq!(
            with_endpoint("http://127.0.0.1:4317/")
                .unwrap()
                .otlp_endpoint
                .as_deref(),
            Some("http://127.0.0.1:4317")
        );
        assert_eq!(s.sample_ratio, 1.0);
        assert_eq!(s.service_name, "portcullis");
    }

    #[test]
    fn other_endpoints_are_refused() {
        for bad in [
            "127.0.0.1:4317",
            "https://collector:4317",
            "grpc://collector:4317",
            "http://collector",
            "http://user:pw@collector:4317",
            "http://collector:4317/v1/traces",
            "http://collector:4317/?x=1",
            "not a url",
            "",
        ] {
            let e = with_endpoint(bad).unwrap_err();
            assert_eq!(e.path, "tracing.otlp_endpoint", "{bad}");
        }
    }

    #[test]
    fn the_ratio_is_a_share() {
        for ok in [0.0, 0.01, 1.0] {
            let raw = RawTracing {
                sample_ratio: Some(ok),
                ..RawTracing::default()
            };
            assert_eq!(compile(&raw).unwrap().sample_ratio, ok);
        }
        for bad in [-0.1, 1.5, f64::NAN] {
            let raw = RawTracing {
                sample_ratio: Some(bad),
                ..RawTracing::default()
            };
            assert_eq!(compile(&raw).unwrap_err().path, "tracing.sample_ratio");
        }
    }
}
