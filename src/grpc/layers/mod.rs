//! Tower layers around tonic's router for what every call of ours shares:
//! the log line and metrics, and the in-flight limit.

mod in_flight;
mod rpc_log;

pub use in_flight::{InFlightLimitLayer, InFlightSlot};
pub use rpc_log::RpcLogLayer;

use crate::pb::v1::sandbox_service_server::SERVICE_NAME as SANDBOX;
use crate::pb::v1::verification_service_server::SERVICE_NAME as VERIFICATION;

const METHODS: [(&str, &str); 6] = [
    (VERIFICATION, "StartVerification"),
    (VERIFICATION, "GetSession"),
    (VERIFICATION, "CheckCode"),
    (VERIFICATION, "CheckSmaCoverage"),
    (VERIFICATION, "WatchSession"),
    (SANDBOX, "ListMessages"),
];

/// Which of our methods a request path names, as a `'static` name: the path
/// is the caller's, so it never becomes a label itself. Health and
/// reflection are not ours.
fn method_of(path: &str) -> Option<&'static str> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    METHODS
        .into_iter()
        .find(|known| *known == (service, method))
        .map(|(_, name)| name)
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

#[cfg(test)]
mod tests {
    use super::method_of;

    #[test]
    fn names_only_our_methods() {
        assert_eq!(
            method_of("/verif8.v1.VerificationService/GetSession"),
            Some("GetSession")
        );
        assert_eq!(
            method_of("/verif8.v1.SandboxService/ListMessages"),
            Some("ListMessages")
        );
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
