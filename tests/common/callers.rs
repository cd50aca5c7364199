//! Two callers for tests of `--callers-file`: billing may do everything on
//! the test subaccount, the dashboard may only read (also another one).

use sha2::{Digest, Sha256};
use tonic::metadata::MetadataValue;
use verif8_grpc::auth::Callers;

use super::{SUBACCOUNT, pb};

pub const FULL: &str = "token-of-billing";
pub const READER: &str = "token-of-dashboard";

pub fn callers() -> Callers {
    let hash = |token: &str| hex::encode(Sha256::digest(token.as_bytes()));
    Callers::parse(&format!(
        r#"
[[caller]]
name = "billing"
token_sha256 = "{}"
subaccounts = ["{SUBACCOUNT}"]
scopes = ["start", "check", "read"]

[[caller]]
name = "dashboard"
token_sha256 = "{}"
subaccounts = ["{SUBACCOUNT}", "other_verif8"]
scopes = ["read"]
"#,
        hash(FULL),
        hash(READER)
    ))
    .unwrap()
}

pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = MetadataValue::try_from(format!("Bearer {token}")).unwrap();
    request.metadata_mut().insert("authorization", value);
    request
}

pub fn start(destination: &str) -> pb::StartVerificationRequest {
    pb::StartVerificationRequest {
        destination: destination.into(),
        ..Default::default()
    }
}
