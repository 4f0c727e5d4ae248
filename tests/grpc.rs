//! gRPC through the gateway (docs/behaviour.md, "HTTP/2 and gRPC"), as a real tonic client sees
//! it, to a real tonic server over h2c: calls with a valid token go through with identity
//! metadata, denials are gRPC statuses in the Trailers-Only form, and unary, server-streaming
//! and bidi calls stream with their trailers.
mod common;
use common::*;
use serde_json::json;
use std::net::SocketAddr;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

const CHECK: &str = "/grpc.health.v1.Health/Check";

/// The standard policy, and in front of it routes to the gRPC upstream (`protocol: h2c`):
/// `Check` needs scope `health:read`, the rest of the health service `health:watch`, and
/// reflection v1 a valid token; `/dead.Service/*` is public, to an upstream nobody listens
/// on. Nothing routes reflection v1alpha.
async fn grpc_setup() -> (Setup, GrpcUpstream) {
    let grpc = start_grpc().await;
    let url = format!("http://{}", grpc.addr);
    let dead = format!("http://{}", dead_port());
    let s = setup_with(|c, _| {
        c.upstream_with("grpc", &url, "protocol: h2c")
            .upstream_with("dead", &dead, "protocol: h2c")
            .route_first(
                Route::new("dead", "/dead.Service/*")
                    .auth("none")
                    .set("upstream", "dead"),
            )
            .route_first(
                Route::new("reflection", "/grpc.reflection.v1.ServerReflection/*")
                    .set("upstream", "grpc"),
            )
            .route_first(
                Route::new("health-watch", "/grpc.health.v1.Health/*")
                    .scopes("[health:watch]")
                    .set("upstream", "grpc"),
            )
            .route_first(
                Route::new("health-check", CHECK)
                    .scopes("[health:read]")
                    .set("upstream", "grpc"),
            )
    })
    .await;
    (s, grpc)
}

async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to the gateway")
}

/// `msg` with `authorization: Bearer <token>` when there is a token.
fn call<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token {
        let value = format!("Bearer {t}").parse().unwrap();
        r.metadata_mut().insert("authorization", value);
    }
    r
}

fn check(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unary_call_with_a_valid_token_reaches_the_upstream_with_identity_metadata() {
    let (s, grpc) = grpc_setup().await;
    let token = s.issuer.token(json!({"scope": "health:read"}));
    let mut client = HealthClient::new(channel(s.gw.addr).await);
    let mut spoofed = call(check(""), Some(&token));
    spoofed
        .metadata_mut()
        .insert("x-auth-subject", "admin".parse().unwrap());
    let reply = client.check(spoofed).await.expect("Check");
    assert_eq!(reply.get_ref().status, ServingStatus::Serving as i32);
    let seen = grpc.last();
    assert_eq!(seen.get("x-auth-subject").unwrap(), "user-1");
    assert_eq!(seen.get("x-auth-scopes").unwrap(), "health:read");
    assert!(seen.get("authorization").is_none());
    assert!(seen.get("x-request-id").is_some());
    // An error the upstream answers (an unknown service) reaches the client as it was sent.
    let unknown = client
        .check(call(check("no.such.Service"), Some(&token)))
        .await;
    assert_eq!(unknown.unwrap_err().code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_are_grpc_statuses_a_tonic_client_understands() {
    let (s, grpc) = grpc_setup().await;
    let valid = s.issuer.token(json!({"scope": "health:read"}));
    let expired = s
        .issuer
        .token(json!({"scope": "health:read", "iat": now() - 7200, "exp": now() - 3600}));
    let no_scope = s.issuer.token(json!({"scope": "other"}));
    let mut client = HealthClient::new(channel(s.gw.addr).await);
    let cases = [
        (
            "no token",
            None,
            Code::Unauthenticated,
            "bearer token required",
        ),
        (
            "expired token",
            Some(&expired),
            Code::Unauthenticated,
            "token expired",
        ),
        (
            "missing scope",
            Some(&no_scope),
            Code::PermissionDenied,
            "token lacks a required scope or claim",
        ),
    ];
    for (name, token, code, message) in cases {
        let status = client
            .check(call(check(""), token.map(String::as_str)))
            .await
            .expect_err(name);
        assert_eq!(status.code(), code, "{name}: {status:?}");
        assert_eq!(status.message(), message, "{name}");
    }
    // No route: reflection v1alpha is not in the policy.
    let mut alpha =
        tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient::new(
            channel(s.gw.addr).await,
        );
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    // A streaming call's status comes at once (Trailers-Only) or, when the request stream was
    // still open at the denial, in the trailers after the head.
    let status = match alpha
        .server_reflection_info(call(tokio_stream::iter([request]), Some(&valid)))
        .await
    {
        Err(status) => status,
        Ok(response) => response.into_inner().message().await.expect_err("no route"),
    };
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert_eq!(status.message(), "no route for this request");
    assert_eq!(grpc.calls(), 0, "a denied call reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_denial_is_one_headers_frame_that_ends_the_stream() {
    let (s, _grpc) = grpc_setup().await;
    let grpc_headers = [("content-type", "application/grpc"), ("te", "trailers")];
    // No message: the request ends on its HEADERS frame, so the whole request is in when it is
    // denied (a request still sending gets the status in trailers: tests/answers.rs).
    let r = h2_request(s.gw.addr, "POST", CHECK, "gateway.test", &grpc_headers, b"").await;
    assert!(r.head_only, "a DATA frame or trailers followed: {r:?}");
    let head = &r.response;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("grpc-status"), Some("16"));
    assert_eq!(
        head.header("grpc-message"),
        Some("bearer%20token%20required")
    );
    assert_eq!(head.header("content-type"), Some("application/grpc"));
    assert!(head.header("content-length").is_none());
    assert!(head.header("x-request-id").is_some());
    assert!(head.body.is_empty());

    // The same request over HTTP/1.1 gets the same head, with an empty body.
    let h1 = request_at(s.gw.addr, "POST", CHECK, &grpc_headers, "").await;
    assert_eq!((h1.status, h1.header("grpc-status")), (200, Some("16")));
    assert!(h1.body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_s_other_denials_are_grpc_statuses_too() {
    let (s, _grpc) = grpc_setup().await;
    let grpc_headers = [
        ("content-type", "application/grpc+proto"),
        ("te", "trailers"),
    ];
    let cases = [
        ("/dead.Service/Call", "14", "upstream%20unavailable"),
        (
            "/grpc.health.v1.Health%2FCheck",
            "3",
            "encoded%20slash%20in%20path",
        ),
    ];
    for (path, code, message) in cases {
        let r = h2_request(s.gw.addr, "POST", path, "gateway.test", &grpc_headers, b"").await;
        assert!(r.head_only, "{path}: {r:?}");
        assert_eq!(r.response.status, 200, "{path}");
        assert_eq!(r.response.header("grpc-status"), Some(code), "{path}");
        assert_eq!(r.response.header("grpc-message"), Some(message), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_s_data_and_trailers_pass_through() {
    let (s, _grpc) = grpc_setup().await;
    let token = s.issuer.token(json!({"scope": "health:read"}));
    let auth = format!("Bearer {token}");
    let headers = [
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("authorization", auth.as_str()),
    ];
    let r = h2_request(
        s.gw.addr,
        "POST",
        CHECK,
        "gateway.test",
        &headers,
        &[0, 0, 0, 0, 0],
    )
    .await;
    assert!(!r.head_only);
    assert_eq!(r.response.status, 200);
    // One length-prefixed HealthCheckResponse { status: SERVING } (field 1, varint 1).
    assert_eq!(r.response.body, [0, 0, 0, 0, 2, 0x08, 0x01]);
    assert_eq!(
        r.trailer("grpc-status"),
        Some("0"),
        "trailers: {:?}",
        r.trailers
    );
}

/// The status of the next message of a Watch stream.
async fn next(stream: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>) -> i32 {
    stream
        .message()
        .await
        .expect("message")
        .expect("open")
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_streaming_watch_receives_every_status_change() {
    let (s, grpc) = grpc_setup().await;
    let token = s.issuer.token(json!({"scope": "health:watch"}));
    let mut client = HealthClient::new(channel(s.gw.addr).await);
    let mut stream = client
        .watch(call(check(""), Some(&token)))
        .await
        .expect("Watch")
        .into_inner();

    assert_eq!(next(&mut stream).await, ServingStatus::Serving as i32);
    grpc.reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    assert_eq!(next(&mut stream).await, ServingStatus::NotServing as i32);
    grpc.reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    assert_eq!(next(&mut stream).await, ServingStatus::Serving as i32);
    // Watch's scope is not Check's.
    let status = client
        .check(call(check(""), Some(&token)))
        .await
        .expect_err("Check without health:read");
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bidi_call_streams_both_ways() {
    let (s, _grpc) = grpc_setup().await;
    let token = s.issuer.token(json!({}));
    let mut client = ServerReflectionClient::new(channel(s.gw.addr).await);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let ask = |request| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    tx.send(ask(MessageRequest::ListServices(String::new())))
        .await
        .unwrap();
    let mut replies = client
        .server_reflection_info(call(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            Some(&token),
        ))
        .await
        .expect("ServerReflectionInfo")
        .into_inner();
    // The first answer arrives while the request stream is still open…
    let first = replies.message().await.expect("reply").expect("open");
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("not a service list: {first:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    // …and a second request, sent after it, gets its own.
    tx.send(ask(MessageRequest::FileContainingSymbol(
        "grpc.health.v1.Health".into(),
    )))
    .await
    .unwrap();
    let second = replies.message().await.expect("reply").expect("open");
    let Some(MessageResponse::FileDescriptorResponse(files)) = second.message_response else {
        panic!("not a file descriptor: {second:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    drop(tx);
    assert!(replies.message().await.expect("clean end").is_none());
}
