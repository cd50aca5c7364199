//! Redis, for what several replicas share (`--redis-url`): the crate's
//! connection manager for commands (it reconnects by itself), a pub/sub
//! connection that subscribes again after each reconnect, a bounded time for
//! every command, and whether Redis answers.
//! It knows keys, scripts and bytes; what they mean belongs to the callers
//! (idempotency, the watch engine, callback hints).

mod scripts;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redis::RedisError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;

use crate::telemetry::metrics;

pub use scripts::Lease;

/// What other replicas published, as it arrives.
pub type Messages = mpsc::UnboundedReceiver<Vec<u8>>;

/// The one pub/sub channel replicas talk on.
const CHANNEL: &str = "verif8:events";
/// How often Redis is pinged to tell whether it is up.
const PING_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

pub struct Cluster {
    redis: ConnectionManager,
    /// This process's name in leases and messages.
    replica: String,
    /// Longest wait for one command.
    timeout: Duration,
    up: watch::Sender<bool>,
    subscribed: AtomicBool,
}

impl Cluster {
    /// Prepares the connection without waiting for Redis: a replica starts
    /// with Redis down and connects when it comes back. Only a malformed URL
    /// is an error. Messages other replicas publish arrive on the receiver.
    pub fn connect(url: &str, timeout: Duration) -> Result<(Arc<Cluster>, Messages), String> {
        let client = redis::Client::open(url).map_err(|e| format!("--redis-url: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let redis = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| format!("--redis-url: {e}"))?;
        let cluster = Arc::new(Cluster {
            redis,
            replica: uuid::Uuid::new_v4().simple().to_string(),
            timeout,
            up: watch::Sender::new(false),
            subscribed: AtomicBool::new(false),
        });
        let (messages, received) = mpsc::unbounded_channel();
        tokio::spawn(subscribe(Arc::downgrade(&cluster), client, messages));
        tokio::spawn(monitor(Arc::downgrade(&cluster)));
        Ok((cluster, received))
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Whether Redis answers, and each change of it, for health reporting.
    pub fn up_changes(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    /// Runs one command on the shared connection, bounded in time and counted.
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T, ClusterError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let started = Instant::now();
        let answer = match tokio::time::timeout(self.timeout, op(self.redis.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(ClusterError::Redis(error)),
            Err(_) => Err(ClusterError::Timeout(self.timeout)),
        };
        metrics::redis_call(answer.is_ok(), started.elapsed());
        answer
    }

    /// Sends `payload` to every replica (this one too: callers skip their own).
    pub async fn publish(&self, payload: Vec<u8>) -> Result<(), ClusterError> {
        self.call(|mut redis| async move {
            redis::cmd("PUBLISH")
                .arg(CHANNEL)
                .arg(payload)
                .query_async::<()>(&mut redis)
                .await
        })
        .await?;
        metrics::cluster_message("sent");
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ClusterError> {
        self.call(|mut redis| async move {
            redis::cmd("GET")
                .arg(key)
                .query_async::<Option<Vec<u8>>>(&mut redis)
                .await
        })
        .await
    }

    pub async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), ClusterError> {
        self.call(|mut redis| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .query_async::<()>(&mut redis)
                .await
        })
        .await
    }
}

/// Keeps a pub/sub connection of its own subscribed to the replicas' channel
/// (a subscribed connection can't run commands), connecting again whenever
/// it drops, and hands each message on.
async fn subscribe(
    cluster: Weak<Cluster>,
    client: redis::Client,
    messages: mpsc::UnboundedSender<Vec<u8>>,
) {
    loop {
        let Some(timeout) = cluster.upgrade().map(|cluster| cluster.timeout) else {
            return;
        };
        let connected = tokio::time::timeout(timeout, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            Ok::<_, RedisError>(pubsub)
        })
        .await;
        if let Ok(Ok(mut pubsub)) = connected {
            set_subscribed(&cluster, true);
            let mut stream = pubsub.on_message();
            while let Some(message) = stream.next().await {
                metrics::cluster_message("received");
                if messages.send(message.get_payload_bytes().to_vec()).is_err() {
                    return;
                }
            }
            set_subscribed(&cluster, false);
        }
        tokio::time::sleep(PING_EVERY).await;
    }
}

fn set_subscribed(cluster: &Weak<Cluster>, subscribed: bool) {
    if let Some(cluster) = cluster.upgrade() {
        cluster.subscribed.store(subscribed, Ordering::Release);
    }
}

/// Pings Redis every second: keeps `up` true while it answers and the
/// subscription stands, and logs each change.
async fn monitor(cluster: Weak<Cluster>) {
    let mut interval = tokio::time::interval(PING_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported = None;
    loop {
        interval.tick().await;
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        let ping =
            cluster
                .call(|mut redis| async move {
                    redis::cmd("PING").query_async::<String>(&mut redis).await
                })
                .await;
        let up = ping.is_ok() && cluster.subscribed.load(Ordering::Acquire);
        cluster.up.send_replace(up);
        metrics::redis_up(up);
        if reported != Some(up) {
            reported = Some(up);
            match ping {
                Ok(_) if up => {
                    tracing::info!("redis answers: state is shared with the other replicas")
                }
                Ok(_) => tracing::warn!("redis answers but the subscription failed; retrying"),
                Err(error) => tracing::warn!(
                    %error,
                    "redis unreachable: starts with a request_id are refused and watches poll locally until it answers; retrying every second"
                ),
            }
        }
    }
}
