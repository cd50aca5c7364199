//! verif8.v1.VerificationService: validate → call 8x8 → map the answer.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use sha2::{Digest, Sha256};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::layers::InFlightSlot;
use super::resend_hints::ResendHints;
use super::watch_quota::WatchQuota;
use super::{convert, deadline, status, validate, watch_stream};
use crate::auth::Caller;
use crate::http_listener::callbacks::CallbackTokens;
use crate::idempotency::{Claim, IdempotencyStore};
use crate::pb::v1 as pb;
use crate::pb::v1::verification_service_server::VerificationService;
use crate::protection::{Number, Protection};
use crate::telemetry::metrics;
use crate::upstream::{CallPolicy, Channel, SessionInfo, SessionStatus, UpstreamClient};
use crate::watch::{Hub, SessionKey, Source};

/// What protects the account, decided before anything reaches 8x8.
pub struct Guards {
    pub protection: Arc<Protection>,
    /// Subaccounts the operator named; empty: any (8x8 decides).
    pub configured_subaccounts: HashSet<String>,
    pub max_watch_streams_per_caller: usize,
}

#[derive(Clone)]
pub struct VerificationApi {
    upstream: UpstreamClient,
    default_subaccount: Option<String>,
    resend_hints: Arc<ResendHints>,
    hub: Hub,
    /// Set with a public URL: callback hints for sessions without their own callback_url.
    callbacks: Option<Arc<CallbackTokens>>,
    idempotency: Arc<dyn IdempotencyStore>,
    protection: Arc<Protection>,
    /// Subaccounts the operator named (keys file, default, callers); when
    /// any are named, no other gets state or reaches 8x8 through us.
    configured: Option<HashSet<String>>,
    watch_quota: Arc<WatchQuota>,
}

impl VerificationApi {
    pub fn new(
        upstream: UpstreamClient,
        default_subaccount: Option<String>,
        hub: Hub,
        callbacks: Option<Arc<CallbackTokens>>,
        idempotency: Arc<dyn IdempotencyStore>,
        guards: Guards,
    ) -> Arc<Self> {
        let configured = guards.configured_subaccounts;
        Arc::new(VerificationApi {
            upstream,
            default_subaccount,
            resend_hints: Arc::default(),
            hub,
            callbacks,
            idempotency,
            protection: guards.protection,
            configured: (!configured.is_empty()).then_some(configured),
            watch_quota: WatchQuota::new(guards.max_watch_streams_per_caller),
        })
    }

    /// Write-through: watchers of this session hear about it at once.
    fn publish(&self, subaccount: &str, session: &SessionInfo, source: Source) {
        if session.status == SessionStatus::Verified {
            metrics::verified(&session.session_id);
        }
        let key = SessionKey {
            subaccount: subaccount.to_owned(),
            session_id: session.session_id.clone(),
        };
        self.hub.publish(&key, session, source);
    }

    /// The subaccount must be one the operator configured, and (with
    /// `--callers-file`) one the caller holds.
    fn admit(&self, caller: Option<&Caller>, subaccount: &str) -> Result<(), Status> {
        if let Some(configured) = &self.configured
            && !configured.contains(subaccount)
        {
            return Err(status::subaccount_not_configured(subaccount));
        }
        match caller {
            Some(caller) if !caller.may_use(subaccount) => {
                Err(status::subaccount_not_allowed(&caller.name, subaccount))
            }
            _ => Ok(()),
        }
    }

    fn default_subaccount(&self) -> Option<&str> {
        self.default_subaccount.as_deref()
    }

    /// StartVerification, answered from the idempotency store when the
    /// caller sent a request_id it used before.
    async fn start(
        self: &Arc<Self>,
        request: pb::StartVerificationRequest,
        deadline: Option<Duration>,
        slot: Option<InFlightSlot>,
        caller: Option<&Caller>,
    ) -> Result<pb::StartVerificationResponse, Status> {
        let (subaccount, body) = validate::start_request(&request, self.default_subaccount())?;
        self.admit(caller, &subaccount)?;
        let key = (!request.request_id.is_empty())
            .then(|| format!("{subaccount}/{}", request.request_id));
        if let Some(key) = &key {
            let claim = self
                .idempotency
                .claim(key, fingerprint(&subaccount, &request));
            // A duplicate waits for the first, and Redis may be slow: neither
            // keeps the caller past its deadline.
            let claim = match deadline {
                Some(deadline) => tokio::time::timeout(deadline, claim)
                    .await
                    .map_err(|_| status::request_id_pending())?,
                None => claim.await,
            };
            match claim {
                Claim::Replay(answer) => {
                    return pb::StartVerificationResponse::decode(answer.as_slice()).map_err(
                        |_| status::internal("the stored answer of this request_id is unreadable"),
                    );
                }
                Claim::Mismatch => return Err(status::request_id_reused()),
                Claim::Unavailable => return Err(status::idempotency_store_unavailable()),
                Claim::Proceed => {}
            }
        }
        // In its own task: a caller that gives up doesn't cancel a start
        // that may already have reached 8x8 (its answer is kept for a retry
        // with the same request_id), and the call's in-flight slot stays
        // taken until the POST ends.
        let api = self.clone();
        let caller = caller.map(|caller| caller.name.clone());
        let started = tokio::spawn(
            async move {
                let number = Number::parse(&body.destination, body.country.as_deref());
                let admitted = api
                    .protection
                    .admit_start(
                        body.channel.unwrap_or(Channel::Sms),
                        &number,
                        body.client_ip.as_deref(),
                        caller.as_deref(),
                    )
                    .await;
                let answer = match admitted {
                    Ok(()) => api.send_start(subaccount, body, number, deadline).await,
                    Err(refusal) => Err(status::refused(&refusal)),
                };
                if let Some(key) = key {
                    let encoded = answer.as_ref().ok().map(Message::encode_to_vec);
                    api.idempotency.finish(&key, encoded).await;
                }
                drop(slot);
                answer
            }
            .in_current_span(),
        );
        started
            .await
            .unwrap_or_else(|_| Err(status::internal("the start task failed")))
    }

    async fn send_start(
        &self,
        subaccount: String,
        mut body: crate::upstream::StartRequest,
        number: Number,
        deadline: Option<Duration>,
    ) -> Result<pb::StartVerificationResponse, Status> {
        let hint_key = format!(
            "{}|{}",
            body.country.as_deref().unwrap_or(""),
            body.destination
        );
        // A caller's own callback_url passes through; otherwise point 8x8 at us.
        let callback_token = match (&self.callbacks, &body.callback_url) {
            (Some(callbacks), None) => {
                let (token, url) = callbacks.issue();
                body.callback_url = Some(url);
                Some(token)
            }
            _ => None,
        };
        match self.upstream.start(&subaccount, &body, deadline).await {
            Ok(session) => {
                if let Some(retry_after) = session.retry_after {
                    self.resend_hints
                        .remember(&subaccount, &hint_key, retry_after);
                }
                if let (Some(callbacks), Some(token)) = (&self.callbacks, callback_token) {
                    let key = SessionKey {
                        subaccount: subaccount.clone(),
                        session_id: session.session_id.clone(),
                    };
                    callbacks.bind(token, key).await;
                }
                let channel = body.channel.unwrap_or(Channel::Sms);
                metrics::started(&session.session_id, channel.as_str());
                self.protection
                    .started(&subaccount, &session.session_id, &number)
                    .await;
                self.publish(&subaccount, &session, Source::Start);
                Ok(pb::StartVerificationResponse {
                    session: Some(convert::session(&subaccount, &session)),
                })
            }
            Err(error) if error.outcome_unknown() => Err(status::start_outcome_unknown(&error)),
            Err(error) => {
                let hint = self.resend_hints.wait_for(&subaccount, &hint_key);
                Err(status::from_upstream(&error, hint))
            }
        }
    }

    async fn get(
        &self,
        request: pb::GetSessionRequest,
        deadline: Option<Duration>,
        caller: Option<&Caller>,
    ) -> Result<pb::GetSessionResponse, Status> {
        let subaccount = validate::session_ref(
            &request.subaccount_id,
            &request.session_id,
            self.default_subaccount(),
        )?;
        self.admit(caller, &subaccount)?;
        let session = self
            .upstream
            .get_session(
                &subaccount,
                &request.session_id,
                CallPolicy::retried(deadline),
            )
            .await
            .map_err(|e| status::from_upstream(&e, None))?;
        self.publish(&subaccount, &session, Source::Poll);
        Ok(pb::GetSessionResponse {
            session: Some(convert::session(&subaccount, &session)),
        })
    }

    async fn check(
        &self,
        request: pb::CheckCodeRequest,
        deadline: Option<Duration>,
        caller: Option<&Caller>,
    ) -> Result<pb::CheckCodeResponse, Status> {
        let subaccount = validate::check_code_request(&request, self.default_subaccount())?;
        self.admit(caller, &subaccount)?;
        self.protection
            .admit_check(&subaccount, &request.session_id)
            .await
            .map_err(|refusal| status::refused(&refusal))?;
        let session = self
            .upstream
            .check_code(&subaccount, &request.session_id, &request.code, deadline)
            .await
            .map_err(|e| status::from_upstream(&e, None))?;
        let verified = session.status == SessionStatus::Verified;
        let destination = Number::parse(&session.destination, None);
        self.protection.checked(&destination, verified).await;
        self.publish(&subaccount, &session, Source::CheckCode);
        Ok(pb::CheckCodeResponse {
            session: Some(convert::session(&subaccount, &session)),
        })
    }

    /// `who`: the caller's name, or else its address, for its turns at the
    /// poll budget. Only named callers have a quota of streams: behind a
    /// sidecar every anonymous caller has the same address.
    async fn watch(
        &self,
        request: pb::WatchSessionRequest,
        caller: Option<&Caller>,
        who: String,
    ) -> Result<WatchStream, Status> {
        let subaccount = validate::watch_request(&request, self.default_subaccount())?;
        self.admit(caller, &subaccount)?;
        let heartbeat = request
            .heartbeat_interval
            .and_then(|d| Duration::try_from(d).ok());
        let quota = match caller {
            Some(caller) => Some(
                self.watch_quota
                    .admit(caller.name.clone())
                    .ok_or_else(status::caller_watch_quota_reached)?,
            ),
            None => None,
        };
        let slot = self
            .hub
            .admit()
            .ok_or_else(status::too_many_watch_streams)?;
        let key = SessionKey {
            subaccount: subaccount.clone(),
            session_id: request.session_id,
        };
        let mut state = self.hub.subscribe(key, &who);
        let snapshot = watch_stream::first_observation(&mut state).await?;
        Ok(Box::pin(watch_stream::stream(
            state,
            snapshot,
            subaccount,
            heartbeat,
            (slot, quota),
        )))
    }

    async fn coverage(
        &self,
        request: pb::CheckSmaCoverageRequest,
        deadline: Option<Duration>,
        caller: Option<&Caller>,
    ) -> Result<pb::CheckSmaCoverageResponse, Status> {
        let (subaccount, body) =
            validate::sma_coverage_request(&request, self.default_subaccount())?;
        self.admit(caller, &subaccount)?;
        let available = self
            .upstream
            .sma_coverage(&subaccount, &body, CallPolicy::retried(deadline))
            .await
            .map_err(|e| status::from_upstream(&e, None))?;
        Ok(pb::CheckSmaCoverageResponse { available })
    }
}

/// The caller the authentication layer identified, if callers are configured.
fn caller_of<T>(request: &Request<T>) -> Option<Arc<Caller>> {
    request.extensions().get::<Arc<Caller>>().cloned()
}

/// Hash of everything a StartVerification asks for, request_id aside.
fn fingerprint(subaccount: &str, request: &pb::StartVerificationRequest) -> [u8; 32] {
    let mut payload = request.clone();
    payload.request_id.clear();
    payload.subaccount_id = subaccount.to_owned();
    Sha256::digest(payload.encode_to_vec()).into()
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchSessionResponse, Status>> + Send>>;

#[tonic::async_trait]
impl VerificationService for Arc<VerificationApi> {
    async fn start_verification(
        &self,
        request: Request<pb::StartVerificationRequest>,
    ) -> Result<Response<pb::StartVerificationResponse>, Status> {
        let deadline = deadline::from_metadata(request.metadata());
        let slot = request.extensions().get::<InFlightSlot>().cloned();
        let caller = caller_of(&request);
        let answer = self
            .start(request.into_inner(), deadline, slot, caller.as_deref())
            .await?;
        Ok(Response::new(answer))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        let deadline = deadline::from_metadata(request.metadata());
        let caller = caller_of(&request);
        let answer = self
            .get(request.into_inner(), deadline, caller.as_deref())
            .await?;
        Ok(Response::new(answer))
    }

    async fn check_code(
        &self,
        request: Request<pb::CheckCodeRequest>,
    ) -> Result<Response<pb::CheckCodeResponse>, Status> {
        let deadline = deadline::from_metadata(request.metadata());
        let caller = caller_of(&request);
        let answer = self
            .check(request.into_inner(), deadline, caller.as_deref())
            .await?;
        Ok(Response::new(answer))
    }

    async fn check_sma_coverage(
        &self,
        request: Request<pb::CheckSmaCoverageRequest>,
    ) -> Result<Response<pb::CheckSmaCoverageResponse>, Status> {
        let deadline = deadline::from_metadata(request.metadata());
        let caller = caller_of(&request);
        let answer = self
            .coverage(request.into_inner(), deadline, caller.as_deref())
            .await?;
        Ok(Response::new(answer))
    }

    type WatchSessionStream = WatchStream;

    async fn watch_session(
        &self,
        request: Request<pb::WatchSessionRequest>,
    ) -> Result<Response<Self::WatchSessionStream>, Status> {
        let caller = caller_of(&request);
        let who = match (&caller, request.remote_addr()) {
            (Some(caller), _) => caller.name.clone(),
            (None, Some(peer)) => peer.ip().to_string(),
            (None, None) => String::new(),
        };
        let stream = self
            .watch(request.into_inner(), caller.as_deref(), who)
            .await?;
        Ok(Response::new(stream))
    }
}
