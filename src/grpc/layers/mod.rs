//! Tower layers around tonic's router for what every call of ours shares:
//! the log line and metrics, and the in-flight limit.

mod in_flight;
mod rpc_log;

pub use in_flight::{InFlightLimitLayer, InFlightSlot};
pub use rpc_log::RpcLogLayer;

use crate::pb::v1::sandbox_service_server::SERVICE_NAME as SANDBOX;
use crate::pb::v1::verification_service_server::SERVICE_NAME as VERIFICATION;

/// One of our methods, and whether it counts against `--max-in-flight`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Method {
    name: &'static str,
    limited: bool,
}

const fn unary(name: &'static str) -> Method {
    Method {
        name,
        limited: true,
    }
}

const METHODS: [(&str, Method); 6] = [
    (VERIFICATION, unary("StartVerification")),
    (VERIFICATION, unary("GetSession")),
    (VERIFICATION, unary("CheckCode")),
    (VERIFICATION, unary("CheckSmaCoverage")),
    // A stream lives for minutes; `--max-watch-streams` bounds those.
    (
        VERIFICATION,
        Method {
            name: "WatchSession",
            limited: false,
        },
    ),
    // The sandbox's own inspection, never sent upstream.
    (
        SANDBOX,
        Method {
            name: "ListMessages",
            limited: false,
        },
    ),
];

/// Which of our methods a request path names, with a `'static` name: the
/// path is the caller's, so it never becomes a label itself. Health and
/// reflection are not ours.
fn method_of(path: &str) -> Option<Method> {
    let (service, name) = path.strip_prefix('/')?.split_once('/')?;
    METHODS
        .into_iter()
        .find(|(known_service, known)| *known_service == service && known.name == name)
        .map(|(_, method)| method)
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
