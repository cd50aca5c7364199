//! The watch engine across replicas (`--redis-url`). A watched session has
//! one poller in the cluster: the replica holding its lease. The holder
//! stores each observation beside the lease and publishes it; every replica
//! applies what others publish to its own watchers, as if it were local.
//! While Redis can't be reached each replica polls for itself.

use std::sync::Weak;
use std::time::Duration;

use tokio::sync::mpsc;

use super::state::{Observation, SessionKey, Shared, apply};
use crate::cluster::{Cluster, Lease};
use crate::telemetry::metrics;

/// A lease not renewed for this long passes to another replica.
const LEASE_TTL: Duration = Duration::from_secs(3);
/// How often the holder renews its leases and followers try to take them.
pub(super) const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How long the last observation of a session stays readable in Redis.
const LATEST_TTL: Duration = Duration::from_secs(15 * 60);

/// Who polls a session, as far as this replica can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// This replica holds the lease, or no Redis is configured.
    Poller,
    /// Another replica polls; its observations arrive here.
    Follower,
    /// Redis can't be reached: poll locally for now.
    Alone,
}

impl Role {
    pub fn polls(self) -> bool {
        self != Role::Follower
    }
}

/// What replicas publish: an observation, or (without one) a callback hint
/// for the lease holder.
#[derive(serde::Serialize, serde::Deserialize)]
struct Message {
    from: String,
    subaccount: String,
    session_id: String,
    observation: Option<Observation>,
}

/// Takes or renews the session's lease; a follower gets what the holder
/// last stored.
pub(super) async fn role(cluster: &Cluster, key: &SessionKey) -> (Role, Option<Observation>) {
    match cluster
        .hold_or_follow(&lease_key(key), &latest_key(key), LEASE_TTL)
        .await
    {
        Ok(Lease::Held { fresh }) => {
            if fresh {
                metrics::lease_change("taken");
            }
            (Role::Poller, None)
        }
        Ok(Lease::Follower(latest)) => (
            Role::Follower,
            latest
                .and_then(|bytes| serde_json::from_slice::<Message>(&bytes).ok())
                .and_then(|message| message.observation),
        ),
        Err(error) => {
            tracing::debug!(%error, "lease unavailable; polling locally");
            (Role::Alone, None)
        }
    }
}

/// Gives the lease up (the last local watcher left, or shutdown).
pub(super) async fn release(cluster: &Cluster, key: &SessionKey) {
    if let Ok(true) = cluster.release(&lease_key(key)).await {
        metrics::lease_change("released");
    }
}

/// Tells every replica watching the session what this one learnt, and
/// keeps the message for followers that missed it or start watching later.
pub(super) async fn share(cluster: &Cluster, key: &SessionKey, observation: &Observation) {
    let message = message(cluster, key, Some(observation.clone()));
    if let Err(error) = cluster
        .share_while_leased(
            &lease_key(key),
            &latest_key(key),
            message.clone(),
            LATEST_TTL,
            message,
        )
        .await
    {
        tracing::debug!(%error, "could not share an observation");
    }
}

/// Asks the session's lease holder, wherever it is, to poll now.
pub(super) async fn nudge(cluster: &Cluster, key: &SessionKey) {
    if let Err(error) = cluster.publish(message(cluster, key, None)).await {
        tracing::debug!(%error, "could not pass a callback hint on");
    }
}

fn message(cluster: &Cluster, key: &SessionKey, observation: Option<Observation>) -> Vec<u8> {
    let message = Message {
        from: cluster.replica().to_owned(),
        subaccount: key.subaccount.clone(),
        session_id: key.session_id.clone(),
        observation,
    };
    serde_json::to_vec(&message).unwrap_or_default()
}

/// Applies what other replicas publish to this replica's watched sessions.
pub(super) async fn listen(
    shared: Weak<Shared>,
    replica: String,
    mut messages: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    while let Some(bytes) = messages.recv().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let Ok(message) = serde_json::from_slice::<Message>(&bytes) else {
            tracing::debug!("unreadable message from another replica");
            continue;
        };
        if message.from == replica {
            continue;
        }
        let key = SessionKey {
            subaccount: message.subaccount,
            session_id: message.session_id,
        };
        let Some(entry) = shared.lock().get(&key).cloned() else {
            continue;
        };
        match message.observation {
            Some(observation) => {
                entry
                    .writes
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                apply(&entry, observation);
            }
            None => entry.nudge.notify_one(),
        }
    }
}

fn lease_key(key: &SessionKey) -> String {
    format!("verif8:lease:{}:{}", key.subaccount, key.session_id)
}

fn latest_key(key: &SessionKey) -> String {
    format!("verif8:latest:{}:{}", key.subaccount, key.session_id)
}
