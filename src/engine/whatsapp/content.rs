//! What a WhatsApp message says, for the webhook: its text (or caption, or
//! button/list reply), a marker for media, the quoted message, and which
//! media to download. Protocol-only messages (key shares, revokes, sender
//! key distribution) have no user content and are not forwarded.

use whatsapp_rust::wacore::proto_helpers::MessageExt;
use whatsapp_rust::waproto::whatsapp as wa;

/// Media to download, with what the webhook says about it.
#[derive(Debug, Clone)]
pub enum MediaRef {
    Image(Box<wa::message::ImageMessage>),
    Video(Box<wa::message::VideoMessage>),
    Audio(Box<wa::message::AudioMessage>),
    Document(Box<wa::message::DocumentMessage>),
    Sticker(Box<wa::message::StickerMessage>),
}

impl MediaRef {
    pub fn mimetype(&self) -> String {
        let mimetype = match self {
            MediaRef::Image(m) => m.mimetype.clone(),
            MediaRef::Video(m) => m.mimetype.clone(),
            MediaRef::Audio(m) => m.mimetype.clone(),
            MediaRef::Document(m) => m.mimetype.clone(),
            MediaRef::Sticker(m) => m.mimetype.clone(),
        };
        mimetype.unwrap_or_else(|| "application/octet-stream".to_string())
    }

    pub fn filename(&self) -> Option<String> {
        match self {
            MediaRef::Document(m) => m.file_name.clone(),
            _ => None,
        }
    }

    pub fn size(&self) -> Option<u64> {
        match self {
            MediaRef::Image(m) => m.file_length,
            MediaRef::Video(m) => m.file_length,
            MediaRef::Audio(m) => m.file_length,
            MediaRef::Document(m) => m.file_length,
            MediaRef::Sticker(m) => m.file_length,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Content {
    pub text: String,
    pub media: Option<MediaRef>,
    pub reply_to: Option<(String, Option<String>)>,
}

/// `None` for protocol-only messages; `unknown_kind` names the message in
/// the `[unsupported: …]` marker when nothing here understands it.
pub fn extract(message: &wa::Message, unknown_kind: &str) -> Option<Content> {
    let base = message.get_base_message();
    let reply_to = reply_of(base);
    let content = |text: String, media: Option<MediaRef>| {
        Some(Content {
            text,
            media,
            reply_to: reply_to.clone(),
        })
    };
    if let Some(text) = base.text_content() {
        return content(text.to_string(), None);
    }
    let caption = |c: &Option<String>, marker: &str| {
        c.clone()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| marker.to_string())
    };
    if let Some(m) = base.image_message.as_option() {
        return content(
            caption(&m.caption, "[image]"),
            Some(MediaRef::Image(Box::new(m.clone()))),
        );
    }
    if let Some(m) = base.video_message.as_option() {
        return content(
            caption(&m.caption, "[video]"),
            Some(MediaRef::Video(Box::new(m.clone()))),
        );
    }
    if let Some(m) = base.audio_message.as_option() {
        let marker = if m.ptt == Some(true) {
            "[voice note]"
        } else {
            "[audio]"
        };
        return content(
            marker.to_string(),
            Some(MediaRef::Audio(Box::new(m.clone()))),
        );
    }
    if let Some(m) = base.document_message.as_option() {
        let marker = format!(
            "[document: {}]",
            m.file_name.as_deref().unwrap_or("unnamed")
        );
        return content(
            caption(&m.caption, &marker),
            Some(MediaRef::Document(Box::new(m.clone()))),
        );
    }
    if let Some(m) = base.sticker_message.as_option() {
        return content(
            "[sticker]".to_string(),
            Some(MediaRef::Sticker(Box::new(m.clone()))),
        );
    }
    if let Some(text) = reply_text(base) {
        return content(text, None);
    }
    if let Some(m) = base.location_message.as_option() {
        let text = format!(
            "[location: {}, {}]",
            m.degrees_latitude.unwrap_or_default(),
            m.degrees_longitude.unwrap_or_default()
        );
        return content(text, None);
    }
    if let Some(m) = base.contact_message.as_option() {
        return content(
            format!("[contact: {}]", m.display_name.as_deref().unwrap_or("")),
            None,
        );
    }
    if let Some(m) = base.reaction_message.as_option() {
        return content(
            format!("[reaction: {}]", m.text.as_deref().unwrap_or("")),
            None,
        );
    }
    if base.protocol_message.is_set()
        || base.sender_key_distribution_message.is_set()
        || base
            .fast_ratchet_key_sender_key_distribution_message
            .is_set()
        || *base == wa::Message::default()
        || only_context_info(base)
    {
        return None;
    }
    content(format!("[unsupported: {unknown_kind}]"), None)
}

/// Button, list and template replies: what the customer tapped.
fn reply_text(base: &wa::Message) -> Option<String> {
    if let Some(m) = base.buttons_response_message.as_option() {
        use wa::__buffa::oneof::message::buttons_response_message::Response;
        let shown = match &m.response {
            Some(Response::SelectedDisplayText(text)) => Some(text.clone()),
            _ => None,
        };
        return shown.or_else(|| m.selected_button_id.clone());
    }
    if let Some(m) = base.template_button_reply_message.as_option() {
        return m
            .selected_display_text
            .clone()
            .or_else(|| m.selected_id.clone());
    }
    if let Some(m) = base.list_response_message.as_option() {
        return m.title.clone().or_else(|| {
            m.single_select_reply
                .as_option()
                .and_then(|r| r.selected_row_id.clone())
        });
    }
    None
}

/// A message that carries only its context info (e.g. a sender key share
/// companion) has nothing for a person to read.
fn only_context_info(base: &wa::Message) -> bool {
    let stripped = wa::Message {
        message_context_info: Default::default(),
        ..base.clone()
    };
    stripped == wa::Message::default()
}

/// The quoted message of a reply: its id and its text when it has one.
fn reply_of(base: &wa::Message) -> Option<(String, Option<String>)> {
    let contexts = [
        base.extended_text_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
        base.image_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
        base.video_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
        base.document_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
        base.audio_message
            .as_option()
            .and_then(|m| m.context_info.as_option()),
    ];
    let context = contexts
        .into_iter()
        .flatten()
        .find(|c| c.stanza_id.is_some())?;
    let quoted_text = context.quoted_message.as_option().and_then(|q| {
        q.text_content()
            .or_else(|| q.get_caption())
            .map(str::to_string)
    });
    Some((context.stanza_id.clone()?, quoted_text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_rust::buffa;

    fn text(message: wa::Message) -> Option<String> {
        extract(&message, "x").map(|c| c.text)
    }

    #[test]
    fn plain_and_extended_text() {
        let plain = wa::Message {
            conversation: Some("hello".into()),
            ..Default::default()
        };
        assert_eq!(text(plain).as_deref(), Some("hello"));
    }

    #[test]
    fn a_reply_fills_reply_to() {
        let message = wa::Message {
            extended_text_message: buffa::MessageField::some(wa::message::ExtendedTextMessage {
                text: Some("yes".into()),
                context_info: buffa::MessageField::some(wa::ContextInfo {
                    stanza_id: Some("Q1".into()),
                    quoted_message: buffa::MessageField::some(wa::Message {
                        conversation: Some("ready?".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let content = extract(&message, "x").unwrap();
        assert_eq!(content.reply_to, Some(("Q1".into(), Some("ready?".into()))));
    }

    #[test]
    fn media_gets_caption_or_marker() {
        let image = wa::Message {
            image_message: buffa::MessageField::some(wa::message::ImageMessage {
                mimetype: Some("image/jpeg".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let content = extract(&image, "x").unwrap();
        assert_eq!(content.text, "[image]");
        assert_eq!(content.media.unwrap().mimetype(), "image/jpeg");
        let document = wa::Message {
            document_message: buffa::MessageField::some(wa::message::DocumentMessage {
                file_name: Some("invoice.pdf".into()),
                caption: Some("March".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let content = extract(&document, "x").unwrap();
        assert_eq!(content.text, "March");
        assert_eq!(
            content.media.unwrap().filename().as_deref(),
            Some("invoice.pdf")
        );
    }

    #[test]
    fn button_replies_and_unknown_kinds() {
        let button = wa::Message {
            buttons_response_message: buffa::MessageField::some(wa::message::ButtonsResponseMessage {
                response: Some(wa::__buffa::oneof::message::buttons_response_message::Response::SelectedDisplayText(
                    "Confirm order".into(),
                )),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(text(button).as_deref(), Some("Confirm order"));
        let poll = wa::Message {
            poll_creation_message: buffa::MessageField::some(wa::message::PollCreationMessage {
                name: Some("Lunch?".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(extract(&poll, "poll").unwrap().text, "[unsupported: poll]");
    }

    #[test]
    fn protocol_only_messages_are_not_forwarded() {
        let share = wa::Message {
            protocol_message: buffa::MessageField::some(Default::default()),
            ..Default::default()
        };
        assert!(extract(&share, "x").is_none());
        assert!(extract(&wa::Message::default(), "x").is_none());
    }
}
