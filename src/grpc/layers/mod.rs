//! Tower layers around tonic's router for what every call of ours shares:
//! the log line and metrics, caller authentication, and the in-flight limit.

mod authenticate;
mod in_flight;
mod rpc_log;

pub use authenticate::{AuthenticateLayer, CallerName};
pub use in_flight::{InFlightLimitLayer, InFlightSlot};
pub use rpc_log::RpcLogLayer;

use crate::auth::Scope;

use crate::pb::v1::sandbox_service_server::SERVICE_NAME as SANDBOX;
use crate::pb::v1::verification_service_server::SERVICE_NAME as VERIFICATION;

/// One of our methods: whether it counts against `--max-in-flight`, and
/// the scope a caller needs for it (None: open to anyone who reaches us).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Method {
    name: &'static str,
    limited: bool,
    scope: Option<Scope>,
}

const fn unary(name: &'static str, scope: Scope) -> Method {
    Method {
        name,
        limited: true,
        scope: Some(scope),
    }
}

const METHODS: [(&str, Method); 6] = [
    (VERIFICATION, unary("StartVerification", Scope::Start)),
    (VERIFICATION, unary("GetSession", Scope::Read)),
    (VERIFICATION, unary("CheckCode", Scope::Check)),
    (VERIFICATION, unary("CheckSmaCoverage", Scope::Read)),
    // A stream lives for minutes; `--max-watch-streams` bounds those.
    (
        VERIFICATION,
        Method {
            name: "WatchSession",
            limited: false,
            scope: Some(Scope::Read),
        },
    ),
    // The sandbox's own inspection (sandbox mode only), never sent upstream.
    (
        SANDBOX,
        Method {
            name: "ListMessages",
            limited: false,
            scope: None,
        },
    ),
];

/// Which of our methods a request path names, with a `'static` name: the
/// path is the caller's, so it never becomes a label itself. Health and
/// reflection are not ours.
fn method_of(path: &str) -> Option<Method> {
    service_and_method(path).map(|(_, method)| method)
}

/// The same, with the service's full name beside the method.
fn service_and_method(path: &str) -> Option<(&'static str, Method)> {
    let (service, name) = path.strip_prefix('/')?.split_once('/')?;
    METHODS
        .into_iter()
        .find(|(known_service, known)| *known_service == service && known.name == name)
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

#[cfg(test)]
mod tests {
    use super::method_of;

    #[test]
    fn names_only_our_methods() {
        let get = method_of("/verif8.v1.VerificationService/GetSession").unwrap();
        assert_eq!((get.name, get.limited), ("GetSession", true));
        let watch = method_of("/verif8.v1.VerificationService/WatchSession").unwrap();
        assert_eq!((watch.name, watch.limited), ("WatchSession", false));
        let listing = method_of("/verif8.v1.SandboxService/ListMessages").unwrap();
        assert_eq!((listing.name, listing.limited), ("ListMessages", false));
        for other in [
            "/grpc.health.v1.Health/Check",
            "/verif8.v1.VerificationService/Nope",
            "/verif8.v1.VerificationService/GetSession/x",
            "/verif8.v1.SandboxService/GetSession",
            "/verif8.v1.VerificationServiceX/GetSession",
            "",
        ] {
            assert_eq!(method_of(other), None, "{other}");
        }
    }
}
