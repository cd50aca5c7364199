//! Callback hints. With a public URL configured, each StartVerification
//! without its own callback_url gets 8x8's callbackUrl pointed at an
//! unguessable per-session path here. A POST there only prompts an immediate
//! poll of that session: 8x8 documents no payload schema and no signature,
//! so the body is never read. With Redis the tokens are kept there too, so
//! the hint may reach any replica.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use url::Url;

use crate::cluster::Cluster;
use crate::watch::{Hub, SessionKey};

/// Tokens outlive the session's longest possible validity (7200 s) plus a margin.
const TOKEN_TTL: Duration = Duration::from_secs(7200 + 600);
const MAX_TOKENS: u64 = 200_000;

pub struct CallbackTokens {
    public_url: Url,
    /// Bounded; the least used go first when full.
    sessions: moka::sync::Cache<String, SessionKey>,
    cluster: Option<Arc<Cluster>>,
}

impl CallbackTokens {
    pub fn new(public_url: Url, cluster: Option<Arc<Cluster>>) -> Self {
        CallbackTokens {
            public_url,
            sessions: moka::sync::Cache::builder()
                .max_capacity(MAX_TOKENS)
                .time_to_live(TOKEN_TTL)
                .build(),
            cluster,
        }
    }

    /// A fresh token (122 random bits) and the callback URL that carries it.
    pub fn issue(&self) -> (String, String) {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut url = self.public_url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(["callbacks", &token]);
        }
        (token, url.to_string())
    }

    /// Binds a token to the session 8x8 answered with.
    pub async fn bind(&self, token: String, key: SessionKey) {
        if let Some(cluster) = &self.cluster {
            let value = format!("{}\n{}", key.subaccount, key.session_id).into_bytes();
            if let Err(error) = cluster.set(&redis_key(&token), value, TOKEN_TTL).await {
                tracing::debug!(%error, "callback token kept on this replica only");
            }
        }
        self.sessions.insert(token, key);
    }

    async fn resolve(&self, token: &str) -> Option<SessionKey> {
        if let Some(key) = self.sessions.get(token) {
            return Some(key);
        }
        let stored = self.cluster.as_ref()?.get(&redis_key(token)).await.ok()??;
        let text = String::from_utf8(stored).ok()?;
        let (subaccount, session_id) = text.split_once('\n')?;
        Some(SessionKey {
            subaccount: subaccount.to_owned(),
            session_id: session_id.to_owned(),
        })
    }
}

fn redis_key(token: &str) -> String {
    format!("verif8:callback:{token}")
}

#[derive(Clone)]
struct Hints {
    tokens: Arc<CallbackTokens>,
    hub: Hub,
}

/// `POST /callbacks/{token}`: always 204, whether or not the token is known,
/// so the endpoint tells a prober nothing.
pub fn router(tokens: Arc<CallbackTokens>, hub: Hub) -> Router {
    Router::new()
        .route("/callbacks/{token}", post(hint))
        .with_state(Hints { tokens, hub })
}

async fn hint(State(hints): State<Hints>, Path(token): Path<String>) -> StatusCode {
    if let Some(key) = hints.tokens.resolve(&token).await {
        let watched = hints.hub.nudge(&key);
        tracing::debug!(watched, "callback hint");
    }
    StatusCode::NO_CONTENT
}
