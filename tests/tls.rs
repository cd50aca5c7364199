//! TLS and mTLS on the gRPC listener (`--tls-cert`, `--tls-key`,
//! `--tls-client-ca`), with certificates made for the test.

mod common;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        server: leaf("localhost"),
        client: leaf("billing.internal"),
        ca: ca.pem(),
    }
}

async fn health(channel: Channel) -> Result<(), tonic::Status> {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|_| ())
}

fn client_tls(pki: &Pki) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost")
}

#[tokio::test]
async fn mtls_admits_only_callers_with_a_certificate_from_the_ca() {
    let pki = pki();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&pki.server.0, &pki.server.1))
        .client_ca_root(Certificate::from_pem(&pki.ca));
    let h = common::start_with(move |options, _| options.tls = Some(tls)).await;
    let url = format!("https://localhost:{}", h.grpc_addr.port());

    let with_cert = Channel::from_shared(url.clone())
        .unwrap()
        .tls_config(client_tls(&pki).identity(Identity::from_pem(&pki.client.0, &pki.client.1)))
        .unwrap()
        .connect()
        .await
        .expect("a client with a certificate connects");
    health(with_cert).await.expect("and is served");

    let without_cert = Channel::from_shared(url)
        .unwrap()
        .tls_config(client_tls(&pki))
        .unwrap()
        .connect()
        .await;
    let refused = match without_cert {
        Err(_) => true,
        Ok(channel) => health(channel).await.is_err(),
    };
    assert!(refused, "a client without a certificate is not served");

    let plaintext = Channel::from_shared(format!("http://{}", h.grpc_addr))
        .unwrap()
        .connect()
        .await;
    let refused = match plaintext {
        Err(_) => true,
        Ok(channel) => health(channel).await.is_err(),
    };
    assert!(refused, "plaintext is not served on a TLS listener");
}

#[tokio::test]
async fn tls_without_a_client_ca_serves_any_client() {
    let pki = pki();
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(&pki.server.0, &pki.server.1));
    let h = common::start_with(move |options, _| options.tls = Some(tls)).await;
    let channel = Channel::from_shared(format!("https://localhost:{}", h.grpc_addr.port()))
        .unwrap()
        .tls_config(client_tls(&pki))
        .unwrap()
        .connect()
        .await
        .unwrap();
    health(channel).await.expect("served over TLS");
}
