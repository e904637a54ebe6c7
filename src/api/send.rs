//! `POST /sessions/send`: the old bridge's send, text or base64 media.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState};
use crate::engine::backend::{MediaKind, Outgoing, OutgoingMedia};
use crate::paths::SessionId;

/// Base64 media makes these bodies large; everything else stays small.
pub const SEND_BODY_LIMIT: usize = 96 * 1024 * 1024;
/// Sends whose bodies are read at once: at most this many × the limit.
pub const CONCURRENT_SENDS: usize = 4;

/// Lets a send read its body only in its turn, so that many concurrent media
/// sends wait instead of holding `SEND_BODY_LIMIT` each in memory.
pub async fn one_of_few(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<super::ApiState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let _turn = state.send_slots.acquire().await.expect("never closed");
    next.run(request).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendRequest {
    session_id: Option<String>,
    receiver: Option<String>,
    message: Option<String>,
    media: Option<MediaRequest>,
}

#[derive(Debug, Deserialize)]
pub struct MediaRequest {
    data: String,
    mimetype: Option<String>,
    filename: Option<String>,
}

/// The old bridge's receiver rules: `@` → as is; contains `-` or longer than
/// 15 digits → a group; otherwise digits (spaces and `+` stripped) → a user.
pub fn receiver_jid(receiver: &str) -> Result<String, String> {
    let trimmed = receiver.trim();
    if trimmed.contains('@') {
        return Ok(trimmed.to_string());
    }
    let digits: String = trimmed
        .chars()
        .filter(|c| !matches!(c, ' ' | '+'))
        .collect();
    let valid = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(format!(
            "receiver \"{receiver}\" is not a phone number, group id or JID"
        ));
    }
    if digits.contains('-') || digits.len() > 15 {
        Ok(format!("{digits}@g.us"))
    } else {
        Ok(format!("{digits}@s.whatsapp.net"))
    }
}

pub async fn send(
    State(state): State<Arc<ApiState>>,
    body: Result<Json<SendRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(request) = body?;
    let (Some(raw_id), Some(receiver)) = (request.session_id, request.receiver) else {
        return Err(ApiError::bad_request("sessionId and receiver are required"));
    };
    let id = SessionId::parse(&raw_id)?;
    let to = receiver_jid(&receiver).map_err(ApiError::bad_request)?;
    let text = request.message.unwrap_or_default();
    let media = match request.media {
        None if text.is_empty() => {
            return Err(ApiError::bad_request("message or media is required"));
        }
        None => None,
        Some(media) => {
            let data = base64::engine::general_purpose::STANDARD
                .decode(media.data.trim())
                .map_err(|e| ApiError::bad_request(format!("media.data is not base64: {e}")))?;
            let mimetype = media
                .mimetype
                .unwrap_or_else(|| "application/octet-stream".to_string());
            Some(OutgoingMedia {
                data,
                kind: MediaKind::for_mimetype(&mimetype),
                mimetype,
                filename: media.filename,
            })
        }
    };
    let sent = state.engine.send(&id, Outgoing { to, text, media }).await?;
    Ok(Json(json!({
        "status": "sent",
        "messageId": sent.id,
        "timestamp": sent.timestamp,
    })))
}

#[cfg(test)]
mod tests {
    use super::receiver_jid;

    #[test]
    fn receivers_like_the_old_bridge() {
        assert_eq!(
            receiver_jid("+91 90751 67132").unwrap(),
            "919075167132@s.whatsapp.net"
        );
        assert_eq!(
            receiver_jid("120363999999999999").unwrap(),
            "120363999999999999@g.us"
        );
        assert_eq!(
            receiver_jid("15551234567-1612345678").unwrap(),
            "15551234567-1612345678@g.us"
        );
        assert_eq!(receiver_jid("123@lid").unwrap(), "123@lid");
        assert!(receiver_jid("call me").is_err());
        assert!(receiver_jid("").is_err());
    }
}
