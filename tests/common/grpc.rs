//! A real gRPC upstream built with tonic, over h2c: the standard health service (unary
//! `Check`, server-streaming `Watch`) and server reflection v1 (bidi `ServerReflectionInfo`),
//! from the generated code tonic-health and tonic-reflection ship. The metadata of every health
//! call is recorded, so a test sees what the gateway forwarded.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tonic::metadata::MetadataMap;
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

pub struct GrpcUpstream {
    pub addr: SocketAddr,
    /// Sets what `Check` and `Watch` answer.
    pub reporter: HealthReporter,
    /// The metadata of every health call, in order.
    pub seen: Arc<Mutex<Vec<MetadataMap>>>,
}

impl GrpcUpstream {
    /// The metadata of the last health call.
    pub fn last(&self) -> MetadataMap {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a call reached the upstream")
    }

    pub fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// Start the gRPC upstream on port 0 (HTTP/2 only: tonic's server refuses HTTP/1.1).
pub async fn start_grpc() -> GrpcUpstream {
    let reporter = HealthReporter::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let health = HealthServer::with_interceptor(
        HealthService::from_health_reporter(reporter.clone()),
        move |req: tonic::Request<()>| {
            record.lock().unwrap().push(req.metadata().clone());
            Ok(req)
        },
    );
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("reflection service");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(reflection)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    GrpcUpstream {
        addr,
        reporter,
        seen,
    }
}
