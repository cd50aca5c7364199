//! Sends each gRPC call to its service by the path's first segment
//! (`/verif8.v1.VerificationService/GetSession` goes to
//! `verif8.v1.VerificationService`). tonic's own router is axum's: path
//! matching, URL-parameter and matched-path extensions, and the request and
//! response bodies boxed again on the way in and out cost ~6k instructions
//! per call (callgrind, BENCHMARKS.md), where a gRPC path needs one string
//! comparison.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use tonic::body::Body;
use tonic::server::NamedService;
use tower::Service;
use tower::util::BoxCloneSyncService;

type BoxedService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

#[derive(Clone, Default)]
pub struct GrpcRouter {
    services: Arc<Vec<(&'static str, BoxedService)>>,
}

impl GrpcRouter {
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        Arc::make_mut(&mut self.services).push((S::NAME, BoxCloneSyncService::new(service)));
        self
    }

    fn service_for(&self, path: &str) -> Option<&BoxedService> {
        let name = path.strip_prefix('/')?.split('/').next()?;
        self.services
            .iter()
            .find(|(service, _)| *service == name)
            .map(|(_, service)| service)
    }
}

impl Service<Request<Body>> for GrpcRouter {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        match self.service_for(request.uri().path()) {
            // tonic's generated servers are always ready, so the copy is
            // called without a poll_ready of its own.
            Some(service) => service.clone().call(request),
            None => Box::pin(async { Ok(unimplemented()) }),
        }
    }
}

/// What tonic answers for a service it doesn't serve: HTTP 200 with
/// grpc-status UNIMPLEMENTED in the headers.
fn unimplemented() -> Response<Body> {
    let (parts, ()) = tonic::Status::unimplemented("")
        .into_http::<()>()
        .into_parts();
    Response::from_parts(parts, Body::empty())
}
