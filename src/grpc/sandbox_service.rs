//! verif8.v1.SandboxService: the embedded sandbox's outbox, so a developer
//! can read the code a real phone would have received.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert;
use crate::pb::v1 as pb;
use crate::pb::v1::sandbox_service_server::SandboxService;
use crate::sandbox::RunningSandbox;

pub struct SandboxApi {
    sandbox: Arc<RunningSandbox>,
}

impl SandboxApi {
    pub fn new(sandbox: Arc<RunningSandbox>) -> Self {
        SandboxApi { sandbox }
    }
}

fn channel(name: &str) -> pb::Channel {
    match name {
        "sms" => pb::Channel::Sms,
        "call" => pb::Channel::Call,
        "whatsapp" => pb::Channel::Whatsapp,
        "viber" => pb::Channel::Viber,
        "sma" => pb::Channel::Sma,
        _ => pb::Channel::Unspecified,
    }
}

#[tonic::async_trait]
impl SandboxService for SandboxApi {
    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        let request = request.into_inner();
        let session_id = Some(request.session_id.as_str()).filter(|s| !s.is_empty());
        let destination = Some(request.destination.as_str()).filter(|s| !s.is_empty());
        let messages = self
            .sandbox
            .messages(session_id, destination)
            .into_iter()
            .map(|message| pb::SandboxMessage {
                session_id: message.session_id,
                destination: message.destination,
                channel: channel(&message.channel) as i32,
                text: message.text,
                code: message.code,
                sent_at: Some(convert::timestamp(message.sent_at)),
            })
            .collect();
        Ok(Response::new(pb::ListMessagesResponse { messages }))
    }
}
