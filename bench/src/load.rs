//! The load generator's callers: one request of each kind, and the loop that times them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use reqwest::header::ACCEPT;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::BoxError;
use crate::client::{self, API_KEY, Client};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Path {
    Direct,
    Facade,
    /// grpc.health.v1.Health/Check through the facade: the gRPC hop alone, no upstream call.
    Health,
}

impl Path {
    pub fn name(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Facade => "facade",
            Path::Health => "health-check",
        }
    }

    /// Prefix of the path's figures in the JSON line.
    pub fn key(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Facade => "facade",
            Path::Health => "health_check",
        }
    }
}

/// One request of either kind.
#[derive(Clone)]
pub enum Caller {
    Direct {
        http: reqwest::Client,
        url: Arc<str>,
    },
    Facade {
        client: Client,
        session: Arc<str>,
    },
    Health {
        client: HealthClient<Channel>,
    },
}

impl Caller {
    /// A caller with a connection of its own, made on the runtime it will run on.
    pub async fn connect(
        path: Path,
        facade: SocketAddr,
        url: Arc<str>,
        session: Arc<str>,
    ) -> Result<Caller, BoxError> {
        Ok(match path {
            Path::Direct => Caller::Direct {
                http: reqwest::Client::builder().tcp_nodelay(true).build()?,
                url,
            },
            Path::Facade => Caller::Facade {
                client: Client::new(client::channels(facade, 1).await?.remove(0)),
                session,
            },
            Path::Health => Caller::Health {
                client: HealthClient::new(client::channels(facade, 1).await?.remove(0)),
            },
        })
    }

    async fn call(&mut self) -> bool {
        match self {
            Caller::Direct { http, url } => {
                let sent = http
                    .get(&**url)
                    .bearer_auth(API_KEY)
                    .header(ACCEPT, "application/json")
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().is_success() => {
                        response.bytes().await.is_ok()
                    }
                    _ => false,
                }
            }
            Caller::Facade { client, session } => client
                .get_session(client::get_request(session))
                .await
                .is_ok(),
            Caller::Health { client } => client
                .check(HealthCheckRequest {
                    service: client::SERVICE.to_owned(),
                })
                .await
                .is_ok(),
        }
    }
}

/// Latencies (µs) of the requests completed inside the window, and errors.
pub type Samples = (Vec<f64>, u64);

/// Calls until `end`; keeps what completed between `start` and `end`.
pub async fn drive(mut caller: Caller, start: Instant, end: Instant) -> Samples {
    let mut latencies = Vec::new();
    let mut errors = 0u64;
    loop {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        let ok = caller.call().await;
        let done = Instant::now();
        if done >= start && done <= end {
            if ok {
                latencies.push((done - sent).as_secs_f64() * 1e6);
            } else {
                errors += 1;
            }
        }
    }
    (latencies, errors)
}
