//! A tool of `benches/load.sh` (not a measurement): an OTLP/gRPC trace collector that accepts
//! every export and keeps only a count of the spans, so that the tracing part measures the
//! gateway's export against a peer that answers at once. Writes the count to COUNT_FILE after
//! every export.
//!
//! `cargo bench --bench otlp_sink -- LISTEN_ADDR COUNT_FILE`

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

struct Sink {
    spans: Arc<AtomicU64>,
    file: String,
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let n: usize = request
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        let total = self.spans.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        let _ = std::fs::write(&self.file, format!("{total}\n"));
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [listen, file] = args.as_slice() else {
        // `cargo bench` runs every bench target: this one has nothing to measure by itself.
        eprintln!("otlp_sink: usage: cargo bench --bench otlp_sink -- LISTEN COUNT_FILE");
        return;
    };
    let addr: std::net::SocketAddr = listen.parse().expect("LISTEN is an address");
    let _ = std::fs::write(file, "0\n");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Sink {
                spans: Arc::new(AtomicU64::new(0)),
                file: file.clone(),
            }))
            .serve(addr)
            .await
            .expect("serve");
    });
}
