//! Load shedding: at most `--max-in-flight` unary VerificationService calls
//! at once, the rest refused at once with RESOURCE_EXHAUSTED. WatchSession is
//! not counted (a stream lives for minutes; `--max-watch-streams` bounds
//! those), nor are the sandbox's ListMessages, health and reflection.

use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

use super::{BoxFuture, method_of};
use crate::grpc::status;
use crate::telemetry::metrics;

/// A call's place under the limit, in the request's extensions: a handler
/// whose work outlives its caller (a start already on its way to 8x8) keeps
/// a clone so the slot is held until that work ends.
#[derive(Clone)]
pub struct InFlightSlot(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

#[derive(Clone)]
pub struct InFlightLimitLayer {
    slots: Arc<Semaphore>,
}

impl InFlightLimitLayer {
    pub fn new(max_in_flight: usize) -> Self {
        InFlightLimitLayer {
            slots: Arc::new(Semaphore::new(max_in_flight)),
        }
    }
}

impl<S> Layer<S> for InFlightLimitLayer {
    type Service = InFlightLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InFlightLimit {
            inner,
            slots: self.slots.clone(),
        }
    }
}

#[derive(Clone)]
pub struct InFlightLimit<S> {
    inner: S,
    slots: Arc<Semaphore>,
}

impl<S, B, R> Service<http::Request<B>> for InFlightLimit<S>
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
        let limited = method_of(request.uri().path()).is_some_and(|method| method.limited);
        if !limited {
            return Box::pin(self.inner.call(request));
        }
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            metrics::shed();
            return Box::pin(std::future::ready(Ok(status::overloaded().into_http())));
        };
        let slot = InFlightSlot(Arc::new(permit));
        request.extensions_mut().insert(slot.clone());
        let call = self.inner.call(request);
        Box::pin(async move {
            let answer = call.await;
            drop(slot);
            answer
        })
    }
}
