//! Caller authentication (`--callers-file`): a call of ours needs
//! `authorization: Bearer <token>` of a known caller holding the method's
//! scope, or it is refused before any handler runs. The caller goes into the
//! request's extensions (handlers check its subaccounts) and its name into
//! the response's (for the log line). Health and reflection stay open.

use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use super::{BoxFuture, method_of};
use crate::auth::{Caller, Callers};
use crate::grpc::status;

/// The caller's name, put in the response's extensions for the log line.
#[derive(Clone)]
pub struct CallerName(pub Arc<Caller>);

/// Without callers every call passes as before.
#[derive(Clone)]
pub struct AuthenticateLayer {
    callers: Option<Arc<Callers>>,
}

impl AuthenticateLayer {
    pub fn new(callers: Option<Arc<Callers>>) -> Self {
        AuthenticateLayer { callers }
    }
}

impl<S> Layer<S> for AuthenticateLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            callers: self.callers.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authenticate<S> {
    inner: S,
    callers: Option<Arc<Callers>>,
}

impl<S, B, R> Service<http::Request<B>> for Authenticate<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let scope = method_of(request.uri().path()).and_then(|method| method.scope);
        let (Some(callers), Some(scope)) = (&self.callers, scope) else {
            return Box::pin(self.inner.call(request));
        };
        let token = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(caller) = token.and_then(|token| callers.identify(token)) else {
            return refuse(status::unauthenticated());
        };
        if !caller.may(scope) {
            return refuse(status::scope_not_granted(&caller.name, scope.as_str()));
        }
        request.extensions_mut().insert(caller.clone());
        let call = self.inner.call(request);
        Box::pin(async move {
            let mut answer = call.await;
            if let Ok(response) = &mut answer {
                response.extensions_mut().insert(CallerName(caller));
            }
            answer
        })
    }
}

fn refuse<R: Default + Send + 'static, E: Send + 'static>(
    status: tonic::Status,
) -> BoxFuture<Result<http::Response<R>, E>> {
    Box::pin(std::future::ready(Ok(status.into_http())))
}
