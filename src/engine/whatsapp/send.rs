//! Outgoing messages: text as a plain conversation message, media uploaded
//! first and then sent as the matching message type with its caption.

use std::sync::Arc;

use whatsapp_rust::prelude::Client;
use whatsapp_rust::upload::UploadOptions;
use whatsapp_rust::wacore::download::MediaType;
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::{Jid, buffa};

use crate::engine::backend::{MediaKind, Outgoing, OutgoingMedia, Sent};

pub async fn send(client: &Arc<Client>, message: Outgoing) -> Result<Sent, String> {
    let to: Jid = message
        .to
        .parse()
        .map_err(|e| format!("invalid receiver {}: {e}", message.to))?;
    let body = match message.media {
        None => wa::Message {
            conversation: Some(message.text),
            ..Default::default()
        },
        Some(media) => media_message(client, media, message.text).await?,
    };
    let sent = client
        .send_message(&to, body)
        .await
        .map_err(|e| format!("send failed: {e}"))?;
    Ok(Sent {
        id: sent.message_id,
        timestamp: chrono::Utc::now().timestamp(),
    })
}

async fn media_message(
    client: &Arc<Client>,
    media: OutgoingMedia,
    caption: String,
) -> Result<wa::Message, String> {
    let media_type = match media.kind {
        MediaKind::Image => MediaType::Image,
        MediaKind::Video => MediaType::Video,
        MediaKind::Audio | MediaKind::VoiceNote => MediaType::Audio,
        MediaKind::Document => MediaType::Document,
    };
    let up = client
        .upload(media.data, media_type, UploadOptions::default())
        .await
        .map_err(|e| format!("media upload failed: {e}"))?;
    let caption = Some(caption).filter(|c| !c.is_empty());
    let mimetype = Some(media.mimetype);
    // Every media message type carries the same upload fields.
    macro_rules! uploaded {
        ($kind:ident { $($field:ident: $value:expr),* $(,)? }) => {
            wa::message::$kind {
                url: Some(up.url),
                direct_path: Some(up.direct_path),
                media_key: Some(up.media_key.to_vec()),
                file_enc_sha256: Some(up.file_enc_sha256.to_vec()),
                file_sha256: Some(up.file_sha256.to_vec()),
                file_length: Some(up.file_length),
                media_key_timestamp: Some(up.media_key_timestamp),
                mimetype,
                $($field: $value,)*
                ..Default::default()
            }
        };
    }
    let mut message = wa::Message::default();
    match media.kind {
        MediaKind::Image => {
            message.image_message =
                buffa::MessageField::some(uploaded!(ImageMessage { caption: caption }))
        }
        MediaKind::Video => {
            message.video_message = buffa::MessageField::some(uploaded!(VideoMessage {
                caption: caption,
                streaming_sidecar: up.streaming_sidecar,
            }))
        }
        MediaKind::Audio | MediaKind::VoiceNote => {
            message.audio_message = buffa::MessageField::some(uploaded!(AudioMessage {
                ptt: Some(media.kind == MediaKind::VoiceNote),
                streaming_sidecar: up.streaming_sidecar,
            }))
        }
        MediaKind::Document => {
            message.document_message = buffa::MessageField::some(uploaded!(DocumentMessage {
                caption: caption,
                file_name: media.filename,
            }))
        }
    }
    Ok(message)
}
