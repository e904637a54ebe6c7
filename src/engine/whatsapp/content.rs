//! What a WhatsApp message says, for the webhook: its kind and text (or
//! caption, or button/list reply), location, contact cards, poll, the
//! quoted message, the forwarded flag, and which media to download; or,
//! for an edit, a delete for everyone or a reaction, which message it is
//! about. Protocol-only messages (key shares, sender key distribution) have
//! no user content and are not forwarded.

use whatsapp_rust::wacore::proto_helpers::MessageExt;
use whatsapp_rust::waproto::whatsapp as wa;

use crate::engine::backend::{ContactCard, ContentKind, Location, Poll, Quoted};

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

/// A message's content.
#[derive(Debug, Clone, Default)]
pub struct Content {
    pub kind: ContentKind,
    pub text: String,
    pub caption: Option<String>,
    pub media: Option<MediaRef>,
    pub location: Option<Location>,
    pub contacts: Vec<ContactCard>,
    pub poll: Option<Poll>,
    pub quoted: Option<Quoted>,
    pub forwarded: bool,
}

/// What an incoming message is.
#[derive(Debug, Clone)]
pub enum Extracted {
    Message(Box<Content>),
    /// `target`'s new text.
    Edited {
        target: String,
        text: String,
    },
    /// `author` (a JID) when the key names someone else's message: a
    /// group admin's delete, to be checked against the group's admins.
    Revoked {
        target: String,
        author: Option<String>,
    },
    /// An empty emoji takes the reaction back.
    Reaction {
        target: String,
        emoji: String,
    },
}

/// `None` for protocol-only messages; `unknown_kind` names the message in
/// the `[unsupported: …]` marker when nothing here understands it.
pub fn extract(message: &wa::Message, unknown_kind: &str) -> Option<Extracted> {
    let base = message.get_base_message();
    if let Some(done) = action_on_a_message(base) {
        return done;
    }
    let context = context_info(base);
    let content = Content {
        quoted: context.and_then(quoted),
        forwarded: context.is_some_and(|c| c.is_forwarded == Some(true)),
        ..content_of(base, unknown_kind)?
    };
    Some(Extracted::Message(Box::new(content)))
}

/// Edits, deletes for everyone and reactions; `Some(None)` for the other
/// protocol messages, which nobody reads.
fn action_on_a_message(base: &wa::Message) -> Option<Option<Extracted>> {
    use wa::message::protocol_message::Type;
    if let Some(m) = base.reaction_message.as_option() {
        let target = m.key.as_option().and_then(|k| k.id.clone())?;
        let emoji = m.text.clone().unwrap_or_default();
        return Some(Some(Extracted::Reaction { target, emoji }));
    }
    let m = base.protocol_message.as_option()?;
    // Only a sender's own message can be edited by them, or deleted unless
    // they are a group's admin: the key says "mine" (WhatsApp's server does
    // not check; phones do). A delete naming another author (`participant`)
    // is passed on only once the caller checked the sender is an admin.
    let key = m.key.as_option();
    if m.r#type == Some(Type::REVOKE)
        && let Some(key) = key.filter(|k| k.from_me != Some(true))
    {
        return Some(match (key.id.clone(), key.participant.clone()) {
            (Some(target), Some(author)) => Some(Extracted::Revoked {
                target,
                author: Some(author),
            }),
            _ => None,
        });
    }
    let target = key
        .filter(|k| k.from_me == Some(true))
        .and_then(|k| k.id.clone());
    Some(match (m.r#type, target) {
        (Some(Type::MESSAGE_EDIT), Some(target)) => {
            let edited = m.edited_message.as_option();
            let text = edited
                .and_then(|e| e.text_content().or_else(|| e.get_caption()))
                .unwrap_or_default()
                .to_string();
            Some(Extracted::Edited { target, text })
        }
        (Some(Type::REVOKE), Some(target)) => Some(Extracted::Revoked {
            target,
            author: None,
        }),
        _ => None,
    })
}

/// The kind, text and kind-specific fields of a message that is not an
/// action on another one.
fn content_of(base: &wa::Message, unknown_kind: &str) -> Option<Content> {
    let of = |kind: ContentKind, text: String| Content {
        kind,
        text,
        ..Content::default()
    };
    if let Some(text) = base.text_content() {
        return Some(of(ContentKind::Text, text.to_string()));
    }
    if let Some(media) = media_content(base) {
        return Some(media);
    }
    if let Some((kind, text)) = reply_text(base) {
        return Some(of(kind, text));
    }
    if let Some(located) = location_content(base) {
        return Some(located);
    }
    if let Some(cards) = contact_content(base) {
        return Some(cards);
    }
    if let Some(poll) = poll_of(base) {
        return Some(Content {
            text: format!("[poll: {}]", poll.name),
            poll: Some(poll),
            ..of(ContentKind::Poll, String::new())
        });
    }
    if base.sender_key_distribution_message.is_set()
        || base
            .fast_ratchet_key_sender_key_distribution_message
            .is_set()
        || *base == wa::Message::default()
        || only_context_info(base)
    {
        return None;
    }
    let name = field_name(base)
        .or_else(|| Some(unknown_kind.to_string()).filter(|k| !k.is_empty()))
        .unwrap_or_else(|| "message".to_string());
    Some(of(ContentKind::Unknown, format!("[unsupported: {name}]")))
}

/// The protobuf field a message nobody here understands is in (e.g.
/// `eventMessage`): the stanza's own type is often just `text`.
fn field_name(base: &wa::Message) -> Option<String> {
    let serde_json::Value::Object(fields) = serde_json::to_value(base).ok()? else {
        return None;
    };
    let set = |value: &serde_json::Value| match value {
        serde_json::Value::Null => false,
        serde_json::Value::Array(items) => !items.is_empty(),
        serde_json::Value::Object(fields) => !fields.is_empty(),
        _ => true,
    };
    fields
        .into_iter()
        .find(|(name, value)| name != "message_context_info" && set(value))
        .map(|(name, _)| name)
}

/// Image, video, audio, document, sticker: the text is the caption or a
/// marker such as `[image]`.
fn media_content(base: &wa::Message) -> Option<Content> {
    let captioned = |kind, caption: &Option<String>, marker: String, media| {
        let caption = caption.clone().filter(|c| !c.is_empty());
        Some(Content {
            kind,
            text: caption.clone().unwrap_or(marker),
            caption,
            media: Some(media),
            ..Content::default()
        })
    };
    if let Some(m) = base.image_message.as_option() {
        let media = MediaRef::Image(Box::new(m.clone()));
        return captioned(ContentKind::Image, &m.caption, "[image]".into(), media);
    }
    if let Some(m) = base.video_message.as_option() {
        let media = MediaRef::Video(Box::new(m.clone()));
        return captioned(ContentKind::Video, &m.caption, "[video]".into(), media);
    }
    if let Some(m) = base.ptv_message.as_option() {
        // A round video note.
        let media = MediaRef::Video(Box::new(m.clone()));
        return captioned(ContentKind::Video, &None, "[video note]".into(), media);
    }
    if let Some(m) = base.audio_message.as_option() {
        let (kind, marker) = if m.ptt == Some(true) {
            (ContentKind::Voice, "[voice note]")
        } else {
            (ContentKind::Audio, "[audio]")
        };
        let media = MediaRef::Audio(Box::new(m.clone()));
        return captioned(kind, &None, marker.into(), media);
    }
    if let Some(m) = base.document_message.as_option() {
        let marker = format!(
            "[document: {}]",
            m.file_name.as_deref().unwrap_or("unnamed")
        );
        let media = MediaRef::Document(Box::new(m.clone()));
        return captioned(ContentKind::Document, &m.caption, marker, media);
    }
    if let Some(m) = base.sticker_message.as_option() {
        let media = MediaRef::Sticker(Box::new(m.clone()));
        return captioned(ContentKind::Sticker, &None, "[sticker]".into(), media);
    }
    None
}

/// A shared place, or a live location (its latest position).
fn location_content(base: &wa::Message) -> Option<Content> {
    let (kind, location) = if let Some(m) = base.location_message.as_option() {
        let kind = if m.is_live == Some(true) {
            ContentKind::LiveLocation
        } else {
            ContentKind::Location
        };
        let location = Location {
            latitude: m.degrees_latitude.unwrap_or_default(),
            longitude: m.degrees_longitude.unwrap_or_default(),
            name: m.name.clone().filter(|n| !n.is_empty()),
            address: m.address.clone().filter(|a| !a.is_empty()),
        };
        (kind, location)
    } else {
        let m = base.live_location_message.as_option()?;
        let location = Location {
            latitude: m.degrees_latitude.unwrap_or_default(),
            longitude: m.degrees_longitude.unwrap_or_default(),
            name: m.caption.clone().filter(|c| !c.is_empty()),
            address: None,
        };
        (ContentKind::LiveLocation, location)
    };
    let place = location
        .name
        .as_ref()
        .map(|name| format!("{name}, "))
        .unwrap_or_default();
    Some(Content {
        kind,
        text: format!(
            "[location: {place}{}, {}]",
            location.latitude, location.longitude
        ),
        location: Some(location),
        ..Content::default()
    })
}

/// One contact card, or several.
fn contact_content(base: &wa::Message) -> Option<Content> {
    let (kind, cards) = if let Some(m) = base.contact_message.as_option() {
        (ContentKind::Contact, vec![card(m)])
    } else {
        let m = base.contacts_array_message.as_option()?;
        (ContentKind::Contacts, m.contacts.iter().map(card).collect())
    };
    let names: Vec<&str> = cards.iter().filter_map(|c| c.name.as_deref()).collect();
    let label = if kind == ContentKind::Contact {
        "contact"
    } else {
        "contacts"
    };
    Some(Content {
        kind,
        text: format!("[{label}: {}]", names.join(", ")),
        contacts: cards,
        ..Content::default()
    })
}

fn card(m: &wa::message::ContactMessage) -> ContactCard {
    let vcard = m.vcard.clone().unwrap_or_default();
    ContactCard {
        name: m.display_name.clone().filter(|n| !n.is_empty()),
        numbers: vcard_numbers(&vcard),
        vcard,
    }
}

/// The phone numbers of a vCard's `TEL` lines, digits only: WhatsApp's
/// `waid` parameter when present (the number as WhatsApp knows it), else
/// the digits of the value.
fn vcard_numbers(vcard: &str) -> Vec<String> {
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    vcard
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            let mut parts = name.split(';');
            let field = parts.next()?;
            // Grouped properties look like `item1.TEL`.
            let field = field.rsplit('.').next().unwrap_or(field);
            if !field.eq_ignore_ascii_case("TEL") {
                return None;
            }
            let waid = parts.find_map(|p| {
                let (key, value) = p.split_once('=')?;
                key.eq_ignore_ascii_case("waid").then(|| digits(value))
            });
            Some(waid.unwrap_or_else(|| digits(value)))
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// A poll, whichever of WhatsApp's message versions carries it.
fn poll_of(base: &wa::Message) -> Option<Poll> {
    let m = [
        &base.poll_creation_message,
        &base.poll_creation_message_v2,
        &base.poll_creation_message_v3,
        &base.poll_creation_message_v5,
        &base.poll_creation_message_v6,
    ]
    .into_iter()
    .find_map(|field| field.as_option())?;
    Some(Poll {
        name: m.name.clone().unwrap_or_default(),
        options: m
            .options
            .iter()
            .filter_map(|o| o.option_name.clone())
            .collect(),
        selectable: m.selectable_options_count.unwrap_or_default(),
    })
}

/// Button, list and template replies: what the customer tapped.
fn reply_text(base: &wa::Message) -> Option<(ContentKind, String)> {
    if let Some(m) = base.buttons_response_message.as_option() {
        use wa::__buffa::oneof::message::buttons_response_message::Response;
        let shown = match &m.response {
            Some(Response::SelectedDisplayText(text)) => Some(text.clone()),
            _ => None,
        };
        let text = shown.or_else(|| m.selected_button_id.clone())?;
        return Some((ContentKind::ButtonsReply, text));
    }
    if let Some(m) = base.template_button_reply_message.as_option() {
        let text = m
            .selected_display_text
            .clone()
            .or_else(|| m.selected_id.clone())?;
        return Some((ContentKind::ButtonsReply, text));
    }
    if let Some(m) = base.list_response_message.as_option() {
        let text = m.title.clone().or_else(|| {
            m.single_select_reply
                .as_option()
                .and_then(|r| r.selected_row_id.clone())
        })?;
        return Some((ContentKind::ListReply, text));
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

/// The context info (reply, forwarding) of whichever content it carries.
fn context_info(base: &wa::Message) -> Option<&wa::ContextInfo> {
    macro_rules! context_of {
        ($($field:ident),*) => {
            [$(base.$field.as_option().and_then(|m| m.context_info.as_option())),*]
        };
    }
    let contexts = context_of!(
        extended_text_message,
        image_message,
        video_message,
        ptv_message,
        audio_message,
        document_message,
        sticker_message,
        location_message,
        live_location_message,
        contact_message,
        contacts_array_message,
        poll_creation_message,
        poll_creation_message_v2,
        poll_creation_message_v3,
        poll_creation_message_v5,
        poll_creation_message_v6,
        buttons_response_message,
        list_response_message,
        template_button_reply_message
    );
    contexts.into_iter().flatten().next()
}

/// The quoted message of a reply: its id, its text and who wrote it.
fn quoted(context: &wa::ContextInfo) -> Option<Quoted> {
    let text = context.quoted_message.as_option().and_then(|q| {
        q.text_content()
            .or_else(|| q.get_caption())
            .map(str::to_string)
    });
    Some(Quoted {
        id: context.stanza_id.clone()?,
        text,
        participant: context.participant.clone(),
    })
}

#[cfg(test)]
mod tests;
