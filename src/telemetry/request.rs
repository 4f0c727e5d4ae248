//! The server span of one request: started from the request head (a child of a valid incoming
//! `traceparent`), carried in the request's state, named in the upstream's `traceparent` and
//! the access log, ended with the outcome. The attributes are these and no others:
//!
//! - at start: `http.request.method` (`_OTHER` for a method outside RFC 9110 and PATCH),
//!   `server.address` and `server.port` (the request's host), `network.protocol.version`,
//!   `portcullis.listener` (`proxy` or `decision`);
//! - during the judgement: `portcullis.token_cache` (`hit` or `miss`);
//! - at the end: `url.path` (the canonical path, never the query), `http.route` (the route's
//!   name), `http.response.status_code`, `portcullis.decision`, `portcullis.reason`,
//!   `portcullis.shadow_reason`, `portcullis.issuer` (the issuer's config name).

use super::PIPELINE;
use crate::forwarding::Headers;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Version};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, TraceFlags, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// One request's span (sampled or not: an unsampled one still has ids to pass on). Boxed, so
/// that the request state carries one word for it, `None` with tracing off.
pub struct RequestSpan(Box<Span>);

struct Span {
    cx: Context,
    /// `00-<trace id>-<span id>-<flags>`: this span, as the upstream's `traceparent`.
    traceparent: [u8; 55],
    /// Whether the request came with a valid parent; if not, a `tracestate` it sent belongs to
    /// no trace and is not forwarded.
    has_parent: bool,
    /// `http.request.method`, the start of the span's name.
    method: &'static str,
}

/// How a request ended, for its span.
pub struct SpanEnd<'a> {
    pub route: Option<&'a str>,
    /// The canonical path; empty when the target had none.
    pub path: &'a str,
    /// 0 when no response was sent.
    pub status: u16,
    pub decision: &'static str,
    pub reason: &'static str,
    pub shadow_reason: Option<&'static str>,
    /// The issuer's config name, when a token was verified.
    pub issuer: Option<&'a str>,
}

/// The request head, as a span starts from it.
pub struct SpanStart<'a> {
    /// `None` when the request described none (a decision request without a description).
    pub method: Option<&'a Method>,
    pub headers: &'a HeaderMap,
    pub version: Version,
    /// HTTP/2's `:authority`; else the `Host` header is read.
    pub authority: Option<&'a str>,
    /// `proxy` or `decision`.
    pub listener: &'static str,
}

impl RequestSpan {
    /// The span of a request that begins now, from the head `head` describes; `None` with
    /// tracing off (and then `head` is not even called).
    #[inline]
    pub fn start<'a>(head: impl FnOnce() -> SpanStart<'a>) -> Option<RequestSpan> {
        let pipeline = PIPELINE.get()?;
        Some(Self::begin(&pipeline.tracer, head()))
    }

    fn begin(tracer: &opentelemetry_sdk::trace::SdkTracer, head: SpanStart<'_>) -> RequestSpan {
        let parent = parent_context(head.headers);
        let has_parent = parent.span().span_context().is_valid();
        // Without a method the span is named `HTTP`, as the semantic conventions say.
        let method = head.method.map_or("HTTP", method_label);
        let mut span = tracer
            .span_builder(method)
            .with_kind(SpanKind::Server)
            .start_with_context(tracer, &parent);
        // An unsampled span records nothing: its attributes are not even built.
        if span.is_recording() {
            span.set_attributes(start_attributes(&head, method));
        }
        let cx = parent.with_span(span);
        let traceparent = {
            let span = cx.span();
            let sc = span.span_context();
            let mut bytes = *b"00-00000000000000000000000000000000-0000000000000000-00";
            hex_into(&mut bytes[3..35], &sc.trace_id().to_bytes());
            hex_into(&mut bytes[36..52], &sc.span_id().to_bytes());
            hex_into(
                &mut bytes[53..55],
                &[(sc.trace_flags() & TraceFlags::SAMPLED).to_u8()],
            );
            bytes
        };
        RequestSpan(Box::new(Span {
            cx,
            traceparent,
            has_parent,
            method,
        }))
    }

    /// The trace id, 32 lower-case hex digits.
    pub fn trace_id(&self) -> &str {
        std::str::from_utf8(&self.0.traceparent[3..35]).unwrap_or_default()
    }

    /// This span's id, 16 lower-case hex digits.
    pub fn span_id(&self) -> &str {
        std::str::from_utf8(&self.0.traceparent[36..52]).unwrap_or_default()
    }

    /// Run `judgement` with `span` (if any) current: what it does (the token cache lookup, a
    /// key refetch it asks for) is told to that span. One future type either way, so that
    /// the request's state does not hold two versions of the judgement.
    #[inline]
    pub fn within<F: Future>(span: Option<&RequestSpan>, judgement: F) -> Traced<'_, F> {
        Traced {
            judgement,
            span: span.map(|s| &s.0.cx),
        }
    }

    /// The upstream request's trace context: a `traceparent` naming this span; the client's
    /// `tracestate` goes on with it, unless the request came without a valid parent.
    pub fn propagate<H: Headers>(&self, headers: &mut H) -> Result<(), H::Error> {
        if !self.0.has_parent {
            headers.remove(&TRACESTATE);
        }
        let value = HeaderValue::from_bytes(&self.0.traceparent)
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        headers.set(TRACEPARENT, value)
    }

    /// The request ended: its outcome on the span, and the span ended (sent, if sampled).
    pub fn end(&self, end: SpanEnd<'_>) {
        let span = self.0.cx.span();
        if !span.is_recording() {
            return;
        }
        if let Some(route) = end.route {
            span.update_name(format!("{} {route}", self.0.method));
            span.set_attribute(KeyValue::new("http.route", route.to_string()));
        }
        if !end.path.is_empty() {
            span.set_attribute(KeyValue::new("url.path", end.path.to_string()));
        }
        if end.status != 0 {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(end.status),
            ));
        }
        span.set_attribute(KeyValue::new("portcullis.decision", end.decision));
        span.set_attribute(KeyValue::new("portcullis.reason", end.reason));
        if let Some(shadow) = end.shadow_reason {
            span.set_attribute(KeyValue::new("portcullis.shadow_reason", shadow));
        }
        if let Some(issuer) = end.issuer {
            span.set_attribute(KeyValue::new("portcullis.issuer", issuer.to_string()));
        }
        // A server span is an error when the server failed (5xx), not when it refused.
        if end.status >= 500 || end.status == 0 {
            span.set_status(Status::error(end.reason));
        }
        span.end();
    }
}

pin_project_lite::pin_project! {
    /// A future polled with a request span current (`RequestSpan::within`), or as it is.
    pub struct Traced<'a, F> {
        #[pin]
        judgement: F,
        span: Option<&'a Context>,
    }
}

impl<F: Future> Future for Traced<'_, F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _current = this.span.map(|span| span.clone().attach());
        this.judgement.poll(cx)
    }
}

/// The attributes a span gets at its start.
fn start_attributes(head: &SpanStart<'_>, method: &'static str) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(5);
    if head.method.is_some() {
        attributes.push(KeyValue::new("http.request.method", method));
    }
    attributes.push(KeyValue::new("portcullis.listener", head.listener));
    attributes.push(KeyValue::new(
        "network.protocol.version",
        protocol_version(head.version),
    ));
    let host = head.authority.or_else(|| {
        head.headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    if let Some(authority) = host.and_then(|h| h.parse::<http::uri::Authority>().ok()) {
        attributes.push(KeyValue::new(
            "server.address",
            authority.host().to_string(),
        ));
        if let Some(port) = authority.port_u16() {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
    }
    attributes
}

/// `bytes` as lower-case hex into `out` (twice as long).
fn hex_into(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

/// The incoming trace context: a valid, single `traceparent` (and its `tracestate`), else none.
fn parent_context(headers: &HeaderMap) -> Context {
    let mut all = headers.get_all(&TRACEPARENT).iter();
    if all.next().is_none() || all.next().is_some() {
        // None, or two: W3C Trace Context treats two as invalid.
        return Context::new();
    }
    TraceContextPropagator::new().extract_with_context(&Context::new(), &Carrier(headers))
}

/// A header map read as W3C Trace Context.
struct Carrier<'a>(&'a HeaderMap);

impl Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        // Several `tracestate` fields are one list (RFC 9110 section 5.3); read the first.
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// `http.request.method`: the method when it is a standard one, else `_OTHER` (OpenTelemetry's
/// semantic conventions; a client-made method name is not recorded).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

/// `network.protocol.version`.
fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}
