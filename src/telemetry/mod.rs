//! OpenTelemetry tracing (`tracing:`): one server span per request (both listeners), a span per
//! key fetch, exported over OTLP/gRPC in batches off the request path. Owns the process's one
//! span pipeline (the exporter is built at start: its endpoint is restart-only), the sampler
//! (parent-based; `sample_ratio` for roots, changed by a reload) and the count of spans it
//! drops.
//!
//! With tracing off nothing here is built: `RequestSpan::start` is one load and one branch,
//! and the request path carries `None`. W3C `traceparent` / `tracestate` are then headers
//! like any other, forwarded as the client sent them.
//!
//! What a span holds is chosen here and nowhere else (`request.rs`): never a token, a header
//! value other than the host, a claim value or a query string.

mod export;
mod request;

pub use request::{RequestSpan, SpanEnd, SpanStart};

use opentelemetry::trace::{
    Link, SpanContext, SpanKind, TraceContextExt, TraceId, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{
    Sampler, SamplingDecision, SamplingResult, SdkTracer, SdkTracerProvider, ShouldSample,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// The span pipeline of the process, once `install` has built it. Process-wide rather than
/// per generation: the exporter and its queue outlive reloads, and key fetches (which belong
/// to no request) start spans from here too.
static PIPELINE: OnceLock<Pipeline> = OnceLock::new();

struct Pipeline {
    /// Keeps the span processor (and so the export queue) alive.
    _provider: SdkTracerProvider,
    flusher: export::Flusher,
    tracer: SdkTracer,
    /// `tracing.sample_ratio` as f64 bits.
    ratio: Arc<AtomicU64>,
}

/// What `install` builds the pipeline from (`tracing:` as compiled).
pub struct Settings<'a> {
    /// `None`: tracing off.
    pub otlp_endpoint: Option<&'a str>,
    pub sample_ratio: f64,
    pub service_name: &'a str,
}

/// Build the span pipeline for `settings`, when it names an endpoint: the OTLP/gRPC exporter
/// and its batching task on `runtime`; spans that cannot be queued or exported count in
/// `dropped`. Returns whether tracing is on. Once per process.
pub fn install(
    settings: Settings<'_>,
    dropped: prometheus::IntCounter,
    runtime: &tokio::runtime::Handle,
) -> Result<bool, String> {
    let Some(endpoint) = settings.otlp_endpoint else {
        return Ok(false);
    };
    let ratio = Arc::new(AtomicU64::new(settings.sample_ratio.to_bits()));
    let processor = export::start(endpoint, settings.service_name, dropped, runtime)?;
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor.batcher)
        .with_sampler(Sampling {
            ratio: Arc::clone(&ratio),
        })
        .with_resource(processor.resource)
        .build();
    let tracer = provider.tracer("portcullis");
    PIPELINE
        .set(Pipeline {
            _provider: provider,
            flusher: processor.flusher,
            tracer,
            ratio,
        })
        .map_err(|_| "the span pipeline is already installed".to_string())?;
    Ok(true)
}

/// At shutdown: send the spans still queued, waiting at most `wait` (a collector that does not
/// answer costs no more than that). Nothing with tracing off.
pub fn flush(wait: std::time::Duration) {
    if let Some(p) = PIPELINE.get() {
        p.flusher.flush(wait);
    }
}

/// A reload's `tracing.sample_ratio`: roots started from now on are sampled at this ratio.
pub fn set_sample_ratio(ratio: f64) {
    if let Some(p) = PIPELINE.get() {
        p.ratio.store(ratio.to_bits(), Ordering::Relaxed);
    }
}

/// Note on the span of the request being judged whether its token came from the verified-token
/// cache. Free with tracing off (one load and one branch).
#[inline]
pub fn note_token_cache(hit: bool) {
    if PIPELINE.get().is_some() {
        note_on_current(KeyValue::new(
            "portcullis.token_cache",
            if hit { "hit" } else { "miss" },
        ));
    }
}

#[cold]
fn note_on_current(attribute: KeyValue) {
    Context::map_current(|cx| {
        let span = cx.span();
        if span.is_recording() {
            span.set_attribute(attribute);
        }
    });
}

/// The request span whose judgement is running here, to be linked from the key fetch it
/// causes. `None` with tracing off or outside a request.
pub fn cause() -> Option<Cause> {
    PIPELINE.get()?;
    Context::map_current(|cx| {
        let sc = cx.span().span_context().clone();
        sc.is_valid().then_some(Cause(sc))
    })
}

/// The span of a request that asked for a key fetch.
#[derive(Debug, Clone)]
pub struct Cause(SpanContext);

/// The span of one JWKS fetch (a refresh, or a refetch for an unknown `kid`).
pub struct KeyFetch {
    cx: Context,
}

impl KeyFetch {
    /// A fetch for `issuer` begins; `cause` is the request whose unknown `kid` asked for it
    /// (linked, not a parent: the fetch serves every request waiting for it, and outlives
    /// them). `None` with tracing off.
    pub fn start(issuer: &str, cause: Option<Cause>) -> Option<KeyFetch> {
        let p = PIPELINE.get()?;
        let trigger = if cause.is_some() {
            "kid_miss"
        } else {
            "refresh"
        };
        let links = cause.map(|c| vec![Link::with_context(c.0)]);
        let mut builder = p
            .tracer
            .span_builder("jwks fetch")
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("portcullis.issuer", issuer.to_string()),
                KeyValue::new("portcullis.jwks.trigger", trigger),
            ]);
        if let Some(links) = links {
            builder = builder.with_links(links);
        }
        let span = builder.start_with_context(&p.tracer, &Context::new());
        Some(KeyFetch {
            cx: Context::new().with_span(span),
        })
    }

    /// The fetch ended with `result` (the `portcullis_jwks_refresh_total` result label).
    pub fn end(self, result: &'static str) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("portcullis.jwks.result", result));
        if !matches!(result, "ok" | "not_modified") {
            span.set_status(opentelemetry::trace::Status::error(result));
        }
        span.end();
    }
}

/// Parent-based sampling: a span with a parent (an incoming `traceparent`) is sampled when the
/// parent is; a root is sampled when a span it links to is (a key fetch caused by a sampled
/// request), else at the current `sample_ratio`, by trace id.
#[derive(Debug, Clone)]
struct Sampling {
    ratio: Arc<AtomicU64>,
}

impl ShouldSample for Sampling {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let from_parent = parent.and_then(|cx| {
            let sc = cx.span().span_context().clone();
            sc.is_valid().then_some(sc)
        });
        let (sampled, trace_state) = match from_parent {
            Some(sc) => (sc.is_sampled(), sc.trace_state().clone()),
            None => {
                let linked = links.iter().any(|l| l.span_context.is_sampled());
                let ratio = f64::from_bits(self.ratio.load(Ordering::Relaxed));
                let by_ratio = || {
                    Sampler::TraceIdRatioBased(ratio)
                        .should_sample(None, trace_id, name, kind, attributes, links)
                        .decision
                        == SamplingDecision::RecordAndSample
                };
                (linked || by_ratio(), Default::default())
            }
        };
        SamplingResult {
            decision: if sampled {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::Drop
            },
            attributes: Vec::new(),
            trace_state,
        }
    }
}
