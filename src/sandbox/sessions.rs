//! Verification sessions and 8x8's documented state machine.
//!
//! WAITING is the only non-final status. A WAITING session past `expiresAt` becomes EXPIRED
//! (persisted the first time anyone looks). A right code in time → VERIFIED; the 5th wrong code →
//! FAILED. Re-requesting a destination with a WAITING session re-sends on the same session
//! (same code unless `resetSession`), extending validity, unless inside `resendingInterval`.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::codes;
use super::wire::{Channel, CodeType};

/// Wrong codes after which a session is FAILED for good.
pub const MAX_ATTEMPTS: u8 = 5;

/// Sessions kept; the oldest-created is forgotten beyond this (then answered 404, as 8x8 does
/// for sessions it no longer knows), so long benchmarks cannot grow memory without bound.
pub const CAPACITY: usize = 200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Waiting,
    Verified,
    Failed,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Waiting => "WAITING",
            Status::Verified => "VERIFIED",
            Status::Failed => "FAILED",
            Status::Expired => "EXPIRED",
        }
    }
}

/// A validated verification request, ready for the state machine.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub subaccount: String,
    /// International digits without `+`.
    pub destination: String,
    pub channel: Channel,
    pub brand: Option<String>,
    pub template: Option<String>,
    pub code_type: CodeType,
    pub code_length: usize,
    pub validity: Duration,
    pub resend_interval: Duration,
    pub reset_session: bool,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub subaccount: String,
    /// International digits without `+`.
    pub destination: String,
    pub channel: Channel,
    /// None for SMA: nothing is sent, so there is no code to type.
    code: Option<String>,
    pub status: Status,
    pub attempt: u8,
    pub expires_at: DateTime<Utc>,
    pub retry_after: DateTime<Utc>,
}

impl Session {
    /// Applies expiry as of `now`; final statuses never change.
    fn refresh(&mut self, now: DateTime<Utc>) {
        if self.status == Status::Waiting && now >= self.expires_at {
            self.status = Status::Expired;
        }
    }
}

/// A message the sandbox "delivers" as a result of a start or re-send.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub channel: Channel,
    pub text: String,
    pub code: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// Re-send inside `resendingInterval` (8x8: HTTP 403, code 1400).
    ResendTooSoon { retry_after: DateTime<Utc> },
}

/// Every session, plus the latest session per (subaccount, destination).
#[derive(Debug)]
pub struct SessionStore {
    sessions: HashMap<String, Session>,
    latest: HashMap<(String, String), String>,
    /// Session ids in creation order, for eviction beyond `capacity`.
    created: VecDeque<String>,
    capacity: usize,
}

impl Default for SessionStore {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl SessionStore {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            sessions: HashMap::new(),
            latest: HashMap::new(),
            created: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Forgets the oldest sessions until there is room for one more.
    fn make_room(&mut self) {
        while self.sessions.len() >= self.capacity {
            let Some(id) = self.created.pop_front() else {
                break;
            };
            if let Some(old) = self.sessions.remove(&id) {
                let key = (old.subaccount, old.destination);
                if self.latest.get(&key) == Some(&id) {
                    self.latest.remove(&key);
                }
            }
        }
    }

    /// Starts a session, or re-sends on the destination's WAITING one.
    pub fn start(
        &mut self,
        req: StartRequest,
        now: DateTime<Utc>,
    ) -> Result<(Session, Option<Delivery>), StartError> {
        let key = (req.subaccount.clone(), req.destination.clone());
        let mut existing = self
            .latest
            .get(&key)
            .and_then(|id| self.sessions.get_mut(id));
        if let Some(session) = existing.as_deref_mut() {
            session.refresh(now);
        }
        let existing = existing.filter(|s| s.status == Status::Waiting);
        let session = match existing {
            Some(session) => {
                if now < session.retry_after {
                    return Err(StartError::ResendTooSoon {
                        retry_after: session.retry_after,
                    });
                }
                if req.reset_session {
                    // Dropping the code makes the delivery below generate a fresh one.
                    session.code = None;
                    session.attempt = 0;
                }
                session.channel = req.channel;
                session.expires_at = now + req.validity;
                session.retry_after = now + req.resend_interval;
                session
            }
            None => {
                self.make_room();
                let id = Uuid::new_v4().simple().to_string();
                let session = Session {
                    id: id.clone(),
                    subaccount: req.subaccount.clone(),
                    destination: req.destination.clone(),
                    channel: req.channel,
                    code: None,
                    status: Status::Waiting,
                    attempt: 0,
                    expires_at: now + req.validity,
                    retry_after: now + req.resend_interval,
                };
                self.latest.insert(key, id.clone());
                self.created.push_back(id.clone());
                self.sessions.entry(id).or_insert(session)
            }
        };
        let delivery = if req.channel == Channel::Sma {
            None
        } else {
            let code = session
                .code
                .get_or_insert_with(|| codes::generate(req.code_type, req.code_length))
                .clone();
            // The template is only honoured for sms and call, per 8x8's docs.
            let template = match req.channel {
                Channel::Sms | Channel::Call => req.template.as_deref(),
                _ => None,
            };
            Some(Delivery {
                channel: req.channel,
                text: codes::render(template, req.brand.as_deref(), &code),
                code,
            })
        };
        Ok((session.clone(), delivery))
    }

    /// Reads a session without changing anything but expiry.
    pub fn get(&mut self, subaccount: &str, id: &str, now: DateTime<Utc>) -> Option<Session> {
        let session = self.find(subaccount, id)?;
        session.refresh(now);
        Some(session.clone())
    }

    /// A validation attempt with a user-supplied code.
    pub fn attempt(
        &mut self,
        subaccount: &str,
        id: &str,
        code: &str,
        now: DateTime<Utc>,
    ) -> Option<Session> {
        let session = self.find(subaccount, id)?;
        session.refresh(now);
        if session.status == Status::Waiting {
            if session.code.as_deref() == Some(code) {
                session.status = Status::Verified;
            } else {
                session.attempt = session.attempt.saturating_add(1);
                if session.attempt >= MAX_ATTEMPTS {
                    session.status = Status::Failed;
                }
            }
        }
        Some(session.clone())
    }

    /// The device opened an SMA verification URL. None: unknown session; Some(verified).
    pub fn sma_visit(&mut self, id: &str, now: DateTime<Utc>) -> Option<bool> {
        let session = self.sessions.get_mut(&canonical_id(id))?;
        session.refresh(now);
        if session.channel == Channel::Sma && session.status == Status::Waiting {
            session.status = Status::Verified;
            Some(true)
        } else {
            Some(false)
        }
    }

    fn find(&mut self, subaccount: &str, id: &str) -> Option<&mut Session> {
        self.sessions
            .get_mut(&canonical_id(id))
            .filter(|s| s.subaccount == subaccount)
    }
}

/// 8x8 has shown session ids both as 32 hex chars and as dashed UUIDs; accept either.
fn canonical_id(id: &str) -> String {
    id.chars()
        .filter(|c| *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests;
