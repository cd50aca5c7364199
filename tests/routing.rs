//! Every service on the gRPC port is reachable by its name, and a call to a
//! service or method that isn't served ends UNIMPLEMENTED.

mod common;

use http::uri::PathAndQuery;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};
use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as V1AlphaClient;
use tonic_reflection::pb::v1alpha::{
    ServerReflectionRequest as V1AlphaRequest, server_reflection_request as v1alpha_request,
    server_reflection_response as v1alpha_response,
};

async fn channel(harness: &common::Harness) -> Channel {
    Channel::from_shared(format!("http://{}", harness.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// An empty-message unary call to `path`, whatever is or isn't behind it.
async fn call_path(channel: Channel, path: &'static str) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    grpc.unary::<(), (), _>(
        tonic::Request::new(()),
        PathAndQuery::from_static(path),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .expect_err("nothing serves this path")
}

#[tokio::test]
async fn health_and_both_reflection_versions_answer_on_the_grpc_port() {
    let harness = common::start().await;
    let channel = channel(&harness).await;

    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "verif8.v1.VerificationService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);

    let list = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::iter([list]))
        .await
        .unwrap()
        .into_inner();
    let Some(Ok(ServerReflectionResponse {
        message_response: Some(MessageResponse::ListServicesResponse(listed)),
        ..
    })) = answers.next().await
    else {
        panic!("reflection v1 did not list services");
    };
    let mut names: Vec<_> = listed.service.into_iter().map(|s| s.name).collect();
    names.sort();
    // Exactly what is served: no SandboxService without a sandbox.
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "verif8.v1.VerificationService",
        ]
    );

    let list = V1AlphaRequest {
        host: String::new(),
        message_request: Some(v1alpha_request::MessageRequest::ListServices(String::new())),
    };
    let mut answers = V1AlphaClient::new(channel)
        .server_reflection_info(tokio_stream::iter([list]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    let Some(v1alpha_response::MessageResponse::ListServicesResponse(listed)) =
        answer.message_response
    else {
        panic!("reflection v1alpha did not list services");
    };
    let mut names: Vec<_> = listed.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
            "verif8.v1.VerificationService",
        ]
    );
}

#[tokio::test]
async fn unknown_services_and_methods_are_unimplemented() {
    let harness = common::start().await;
    let channel = channel(&harness).await;

    let no_service = call_path(channel.clone(), "/verif8.v1.NoSuchService/GetSession").await;
    assert_eq!(no_service.code(), Code::Unimplemented);
    let no_method = call_path(channel.clone(), "/verif8.v1.VerificationService/NoSuchRpc").await;
    assert_eq!(no_method.code(), Code::Unimplemented);
    // Not in sandbox-less mode: the sandbox's service is only served with a sandbox.
    let sandbox = call_path(channel, "/verif8.v1.SandboxService/ListMessages").await;
    assert_eq!(sandbox.code(), Code::Unimplemented);

    assert!(
        harness.upstream_requests().await.is_empty(),
        "nothing reached 8x8"
    );
}
