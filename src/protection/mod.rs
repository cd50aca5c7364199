//! Protecting the account: what may be sent, how often and where, decided
//! before anything reaches 8x8. Send limits per destination, client IP and
//! caller; failed code checks per destination across re-sends; countries
//! per channel. With Redis the counts are shared by all replicas.

mod counter;
mod countries;
mod number;
mod rate;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

pub use counter::{Counter, Mode};
pub use countries::CountryRules;
pub use number::Number;
pub use rate::Rate;

use sha2::{Digest, Sha256};

use crate::cluster::Cluster;
use crate::upstream::Channel;

/// What a send limit counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKey {
    Destination,
    ClientIp,
    Caller,
}

impl LimitKey {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKey::Destination => "destination",
            LimitKey::ClientIp => "client_ip",
            LimitKey::Caller => "caller",
        }
    }
}

/// `--send-limit KEY=COUNT/WINDOW`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimit {
    pub key: LimitKey,
    pub rate: Rate,
}

impl std::str::FromStr for SendLimit {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (key, rate) = text.split_once('=').ok_or_else(|| {
            format!("{text:?}: expected KEY=COUNT/WINDOW, e.g. destination=5/10m")
        })?;
        let key = match key.trim() {
            "destination" => LimitKey::Destination,
            "client_ip" => LimitKey::ClientIp,
            "caller" => LimitKey::Caller,
            other => {
                return Err(format!(
                    "{text:?}: {other:?} is not destination, client_ip or caller"
                ));
            }
        };
        Ok(SendLimit {
            key,
            rate: rate.parse()?,
        })
    }
}

/// The limits' default: at most 5 sends to one number in 10 minutes.
pub const DEFAULT_DESTINATION_LIMIT: SendLimit = SendLimit {
    key: LimitKey::Destination,
    rate: Rate {
        count: 5,
        window: Duration::from_secs(600),
    },
};

#[derive(Debug, Clone)]
pub struct ProtectionConfig {
    pub send_limits: Vec<SendLimit>,
    pub failed_check_limit: Rate,
    /// Numbers no limit applies to (test phones, monitoring), in E.164 as
    /// [`Number`] writes it.
    pub safe_destinations: HashSet<String>,
    /// Count and log, refuse nothing.
    pub shadow: bool,
    pub countries: Arc<CountryRules>,
}

impl Default for ProtectionConfig {
    fn default() -> Self {
        ProtectionConfig {
            send_limits: vec![DEFAULT_DESTINATION_LIMIT],
            failed_check_limit: Rate {
                count: 10,
                window: Duration::from_secs(3600),
            },
            safe_destinations: HashSet::new(),
            shadow: false,
            countries: Arc::default(),
        }
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    SendLimit {
        key: LimitKey,
        rate: Rate,
        retry_after: Duration,
    },
    FailedChecks {
        retry_after: Duration,
    },
    Country {
        channel: Channel,
        country: Option<String>,
    },
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::SendLimit { .. } => "SEND_LIMIT_REACHED",
            Refusal::FailedChecks { .. } => "TOO_MANY_FAILED_CHECKS",
            Refusal::Country { .. } => "DESTINATION_COUNTRY_NOT_ALLOWED",
        }
    }
}

pub struct Protection {
    config: ProtectionConfig,
    counter: Counter,
    cluster: Option<Arc<Cluster>>,
    /// Destination of each session started here, for CheckCode's check of
    /// the failed-check limit before 8x8 is asked.
    destinations: moka::sync::Cache<String, String>,
}

/// Sessions live at most two hours (8x8's longest code validity).
const SESSION_LIFETIME: Duration = Duration::from_secs(7200);
const REMEMBERED_SESSIONS: u64 = 1_000_000;

impl Protection {
    pub fn new(config: ProtectionConfig, cluster: Option<Arc<Cluster>>) -> Self {
        let longest = config
            .send_limits
            .iter()
            .map(|limit| limit.rate.window)
            .chain([config.failed_check_limit.window])
            .max()
            .unwrap_or(Duration::from_secs(1));
        Protection {
            counter: Counter::new(longest, cluster.clone()),
            cluster,
            destinations: moka::sync::Cache::builder()
                .max_capacity(REMEMBERED_SESSIONS)
                .time_to_live(SESSION_LIFETIME)
                .build(),
            config,
        }
    }

    /// Before a StartVerification: the country, the failed checks and the
    /// send limits, in that order; a send that passes is counted.
    pub async fn admit_start(
        &self,
        channel: Channel,
        destination: &Number,
        client_ip: Option<&str>,
        caller: Option<&str>,
    ) -> Result<(), Refusal> {
        if let Some(country) = self.config.countries.refuses(channel, destination) {
            return self.refuse(Refusal::Country {
                channel,
                country: country.map(|id| id.as_ref().to_owned()),
            });
        }
        if self.is_safe(destination) {
            return Ok(());
        }
        let destination = pseudonym(&destination.e164);
        self.check_failed(&destination).await?;
        let client_ip = client_ip.map(pseudonym);
        let mut buckets = Vec::new();
        let mut keys = Vec::new();
        for limit in &self.config.send_limits {
            let value = match limit.key {
                LimitKey::Destination => Some(destination.as_str()),
                LimitKey::ClientIp => client_ip.as_deref(),
                LimitKey::Caller => caller,
            };
            if let Some(value) = value {
                buckets.push((format!("{}:{value}", limit.key.as_str()), limit.rate));
                keys.push(*limit);
            }
        }
        match self
            .counter
            .count(&buckets, Mode::Take, self.config.shadow)
            .await
        {
            None => Ok(()),
            Some((full, retry_after)) => self.refuse(Refusal::SendLimit {
                key: keys[full].key,
                rate: keys[full].rate,
                retry_after,
            }),
        }
    }

    /// A session started: remember where it went (in Redis too, for
    /// CheckCode calls that reach another replica). Safe destinations are
    /// never checked, so they aren't remembered.
    pub async fn started(&self, subaccount: &str, session_id: &str, destination: &Number) {
        if self.is_safe(destination) {
            return;
        }
        let destination = pseudonym(&destination.e164);
        let destination = destination.as_str();
        let key = session_key(subaccount, session_id);
        if let Some(cluster) = &self.cluster {
            let stored = cluster
                .set(
                    &redis_key(&key),
                    destination.as_bytes().to_vec(),
                    SESSION_LIFETIME,
                )
                .await;
            if let Err(error) = stored {
                tracing::debug!(%error, "session destination kept on this replica only");
            }
        }
        self.destinations.insert(key, destination.to_owned());
    }

    /// Before a CheckCode: refused if the session's destination (when known)
    /// has failed too many checks.
    pub async fn admit_check(&self, subaccount: &str, session_id: &str) -> Result<(), Refusal> {
        let key = session_key(subaccount, session_id);
        let mut destination = self.destinations.get(&key);
        if destination.is_none()
            && let Some(cluster) = &self.cluster
            && let Ok(Some(stored)) = cluster.get(&redis_key(&key)).await
        {
            destination = String::from_utf8(stored).ok();
        }
        match destination {
            Some(destination) => self.check_failed(&destination).await,
            None => Ok(()),
        }
    }

    /// After a CheckCode: a wrong code counts against its destination,
    /// whichever session (re-send) it was for.
    pub async fn checked(&self, destination: &Number, verified: bool) {
        if verified || self.is_safe(destination) {
            return;
        }
        let bucket = [failed_bucket(
            &pseudonym(&destination.e164),
            self.config.failed_check_limit,
        )];
        self.counter.count(&bucket, Mode::Add, false).await;
    }

    fn is_safe(&self, destination: &Number) -> bool {
        self.config.safe_destinations.contains(&destination.e164)
    }

    /// `destination`: its pseudonym.
    async fn check_failed(&self, destination: &str) -> Result<(), Refusal> {
        let bucket = [failed_bucket(destination, self.config.failed_check_limit)];
        match self.counter.count(&bucket, Mode::Peek, false).await {
            Some((_, retry_after)) => self.refuse(Refusal::FailedChecks { retry_after }),
            None => Ok(()),
        }
    }

    /// In shadow mode a refusal is only logged.
    fn refuse(&self, refusal: Refusal) -> Result<(), Refusal> {
        if self.config.shadow {
            tracing::info!(reason = refusal.reason(), "would refuse (--limits-shadow)");
            return Ok(());
        }
        Err(refusal)
    }
}

/// What stands for a phone number or an IP in counters and Redis keys, so
/// neither shows there in full. Not a secret: a number can be hashed again
/// to find its entry.
fn pseudonym(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    hex::encode(&digest[..16])
}

fn failed_bucket(destination: &str, rate: Rate) -> (String, Rate) {
    (format!("failed_checks:{destination}"), rate)
}

fn session_key(subaccount: &str, session_id: &str) -> String {
    format!("{subaccount}:{session_id}")
}

fn redis_key(session_key: &str) -> String {
    format!("verif8:destination:{session_key}")
}
