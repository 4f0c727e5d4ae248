//! Getting spans to the collector without making a request wait: a bounded queue that a
//! finished span is put on or, when full, dropped from (and counted); a task on the control
//! runtime that sends the queue in batches over OTLP/gRPC, each export bounded in time (a batch
//! that fails or times out is dropped, and counted, rather than retried: the queue keeps
//! moving). The SDK's own batch processor is not used because it does not say how many spans
//! it dropped.

use opentelemetry::Context;
use opentelemetry_otlp::{RetryPolicy, WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;
use std::time::Duration;
use tokio::sync::mpsc;

/// Spans waiting for export; more are dropped. (The SDK's default queue size.)
const QUEUE: usize = 2048;
/// Most spans in one export request. (The SDK's default.)
const MAX_BATCH: usize = 512;
/// How long a batch waits to fill before it is sent anyway.
const BATCH_DELAY: Duration = Duration::from_secs(1);
/// The longest one export may take, connecting included; a batch still unsent then is dropped.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The span processor `install` registers, the resource the spans describe, and the handle
/// that flushes the queue at shutdown.
pub(super) struct Started {
    pub batcher: Batcher,
    pub resource: Resource,
    pub flusher: Flusher,
}

/// Asks the export task to send what is queued now (`flush`).
#[derive(Debug)]
pub(super) struct Flusher(mpsc::Sender<std::sync::mpsc::SyncSender<()>>);

impl Flusher {
    /// Send every span queued now, waiting at most `wait` for it (from a thread outside the
    /// runtime: the shutdown's).
    pub fn flush(&self, wait: Duration) {
        let (done, finished) = std::sync::mpsc::sync_channel(1);
        if self.0.try_send(done).is_ok() {
            let _ = finished.recv_timeout(wait);
        }
    }
}

/// Build the OTLP/gRPC exporter for `endpoint` and start its export task on `runtime`.
pub(super) fn start(
    endpoint: &str,
    service_name: &str,
    dropped: prometheus::IntCounter,
    runtime: &tokio::runtime::Handle,
) -> Result<Started, String> {
    // tonic's channel starts its connection worker on the runtime current at build time.
    let _entered = runtime.enter();
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .with_retry_policy(RetryPolicy::disabled())
        .build()
        .map_err(|e| format!("tracing.otlp_endpoint: {e}"))?;
    let resource = Resource::builder()
        .with_service_name(service_name.to_string())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    exporter.set_resource(&resource);
    let (queue, spans) = mpsc::channel(QUEUE);
    let (flusher, flushes) = mpsc::channel(1);
    runtime.spawn(send_batches(exporter, spans, flushes, dropped.clone()));
    Ok(Started {
        batcher: Batcher { queue, dropped },
        resource,
        flusher: Flusher(flusher),
    })
}

/// Puts each finished, sampled span on the export queue, or drops and counts it.
#[derive(Debug)]
pub(super) struct Batcher {
    queue: mpsc::Sender<SpanData>,
    dropped: prometheus::IntCounter,
}

impl SpanProcessor for Batcher {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.queue.try_send(span).is_err() {
            self.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Send the queue in batches until the process ends; on a flush request, send everything queued
/// at once, then answer it.
async fn send_batches<E: SpanExporter>(
    exporter: E,
    mut spans: mpsc::Receiver<SpanData>,
    mut flushes: mpsc::Receiver<std::sync::mpsc::SyncSender<()>>,
    dropped: prometheus::IntCounter,
) {
    let mut failing = false;
    loop {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut flush = None;
        tokio::select! {
            n = spans.recv_many(&mut batch, MAX_BATCH) => if n == 0 { return },
            Some(done) = flushes.recv() => flush = Some(done),
        }
        if flush.is_none() {
            // Wait for a fuller batch, unless a flush asks for it now.
            let deadline = tokio::time::Instant::now() + BATCH_DELAY;
            while batch.len() < MAX_BATCH && flush.is_none() {
                let room = MAX_BATCH - batch.len();
                tokio::select! {
                    n = tokio::time::timeout_at(deadline, spans.recv_many(&mut batch, room)) => {
                        if !matches!(n, Ok(1..)) { break; }
                    }
                    Some(done) = flushes.recv() => flush = Some(done),
                }
            }
        }
        loop {
            if flush.is_some() {
                while batch.len() < MAX_BATCH {
                    match spans.try_recv() {
                        Ok(span) => batch.push(span),
                        Err(_) => break,
                    }
                }
            }
            if batch.is_empty() {
                break;
            }
            let spans_sent = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
            failing = export(&exporter, spans_sent, &dropped, failing).await;
            if flush.is_none() {
                break;
            }
        }
        if let Some(done) = flush {
            let _ = done.try_send(());
        }
    }
}

/// Send one batch; a batch that fails or times out is dropped and counted. Returns whether
/// export is failing now (logged once per outage, at its start and its end).
async fn export<E: SpanExporter>(
    exporter: &E,
    batch: Vec<SpanData>,
    dropped: &prometheus::IntCounter,
    failing: bool,
) -> bool {
    let count = batch.len() as u64;
    let error = match tokio::time::timeout(EXPORT_TIMEOUT, exporter.export(batch)).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("timed out".to_string()),
    };
    match error {
        None => {
            if failing {
                tracing::info!(
                    event = "span_export",
                    result = "ok",
                    "span export works again"
                );
            }
            false
        }
        Some(error) => {
            dropped.inc_by(count);
            if !failing {
                tracing::warn!(event = "span_export", result = "failed", %error, spans = count,
                    "span export failed: spans are dropped (portcullis_tracing_spans_dropped_total) until the collector answers");
            }
            true
        }
    }
}
