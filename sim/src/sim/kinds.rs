//! The messages a customer's phone sends besides plain text, as
//! `waproto::whatsapp::Message` values for `Simulator::send_message` (or
//! `send_group_message`): an edit, a delete for everyone, a reaction, a
//! location, contact cards, a poll, a reply quoting a message, a forwarded
//! text. Each is built in the shape WhatsApp's own clients put on the wire,
//! so what the client under test decrypts is what a real phone would send.
//!
//! A message about another one names it by a `MessageKey` seen from the
//! sender's side: `remote_jid` is the chat as the sender's phone knows it
//! (for a person writing to the business: the business's account, see
//! `Simulator::account_jid`; in a group: the group), `from_me` says whether
//! the sender wrote the target themselves.

use waproto::buffa::MessageField;
use waproto::whatsapp as wa;

/// The key naming message `id` in `chat_jid`, seen from the sender's side.
pub fn key(chat_jid: &str, id: &str, from_me: bool) -> wa::MessageKey {
    wa::MessageKey {
        remote_jid: Some(chat_jid.to_string()),
        from_me: Some(from_me),
        id: Some(id.to_string()),
        participant: None,
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The sender changes the text of their message `target_id`: a
/// `protocolMessage` of type `MESSAGE_EDIT` carrying the new text, as WhatsApp
/// Web sends it (only one's own messages can be edited, hence `from_me`).
pub fn edit(target_id: &str, chat_jid: &str, new_text: &str) -> wa::Message {
    use wa::message::protocol_message::Type;
    wa::Message {
        protocol_message: MessageField::some(wa::message::ProtocolMessage {
            key: MessageField::some(key(chat_jid, target_id, true)),
            r#type: Some(Type::MESSAGE_EDIT),
            edited_message: MessageField::some(text(new_text)),
            timestamp_ms: Some(now_ms()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The sender deletes their message `target_id` for everyone: a
/// `protocolMessage` of type `REVOKE` naming it.
pub fn revoke(target_id: &str, chat_jid: &str) -> wa::Message {
    use wa::message::protocol_message::Type;
    wa::Message {
        protocol_message: MessageField::some(wa::message::ProtocolMessage {
            key: MessageField::some(key(chat_jid, target_id, true)),
            r#type: Some(Type::REVOKE),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A group's admin deletes `author_jid`'s message `target_id` for everyone:
/// a `REVOKE` whose key names the author, not the sender.
pub fn admin_revoke(target_id: &str, group_jid: &str, author_jid: &str) -> wa::Message {
    use wa::message::protocol_message::Type;
    wa::Message {
        protocol_message: MessageField::some(wa::message::ProtocolMessage {
            key: MessageField::some(wa::MessageKey {
                participant: Some(author_jid.to_string()),
                ..key(group_jid, target_id, false)
            }),
            r#type: Some(Type::REVOKE),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The sender reacts to the message `target` names with `emoji`; an empty
/// emoji takes their reaction back, as WhatsApp does.
pub fn reaction(target: wa::MessageKey, emoji: &str) -> wa::Message {
    wa::Message {
        reaction_message: MessageField::some(wa::message::ReactionMessage {
            key: MessageField::some(target),
            text: Some(emoji.to_string()),
            sender_timestamp_ms: Some(now_ms()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A pinned location, with the place's name and address if the sender
/// picked one.
pub fn location(
    latitude: f64,
    longitude: f64,
    name: Option<&str>,
    address: Option<&str>,
) -> wa::Message {
    wa::Message {
        location_message: MessageField::some(wa::message::LocationMessage {
            degrees_latitude: Some(latitude),
            degrees_longitude: Some(longitude),
            name: name.map(str::to_string),
            address: address.map(str::to_string),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The first message of a shared live location (its later updates are not
/// simulated), with the sender's caption if any.
pub fn live_location(latitude: f64, longitude: f64, caption: Option<&str>) -> wa::Message {
    wa::Message {
        live_location_message: MessageField::some(wa::message::LiveLocationMessage {
            degrees_latitude: Some(latitude),
            degrees_longitude: Some(longitude),
            caption: caption.map(str::to_string),
            sequence_number: Some(0),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One contact card (a vCard, see `vcard`) shown as `display_name`.
pub fn contact(display_name: &str, vcard: &str) -> wa::Message {
    wa::Message {
        contact_message: MessageField::some(card(display_name, vcard)),
        ..Default::default()
    }
}

/// Several contact cards in one message (`contactsArrayMessage`): `cards`
/// are (name, vCard) pairs, `display_name` what the chat shows for them
/// (WhatsApp says e.g. "Ben and 1 other contact").
pub fn contacts<N: AsRef<str>, V: AsRef<str>>(display_name: &str, cards: &[(N, V)]) -> wa::Message {
    wa::Message {
        contacts_array_message: MessageField::some(wa::message::ContactsArrayMessage {
            display_name: Some(display_name.to_string()),
            contacts: cards
                .iter()
                .map(|(name, vcard)| card(name.as_ref(), vcard.as_ref()))
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn card(display_name: &str, vcard: &str) -> wa::message::ContactMessage {
    wa::message::ContactMessage {
        display_name: Some(display_name.to_string()),
        vcard: Some(vcard.to_string()),
        ..Default::default()
    }
}

/// The vCard a phone shares for `name` whose WhatsApp number is `phone`
/// (digits; anything else in it is dropped): `waid` is how WhatsApp marks
/// the number as one of its users.
pub fn vcard(name: &str, phone: &str) -> String {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    format!("BEGIN:VCARD\nVERSION:3.0\nFN:{name}\nTEL;type=CELL;waid={digits}:+{digits}\nEND:VCARD")
}

/// A single-choice poll. WhatsApp Web (and whatsapp-rust's own poll
/// sender) put a single-choice poll in `pollCreationMessageV3`, which
/// whatsapp-rust's message helpers read beside the older versions.
pub fn poll<O: AsRef<str>>(name: &str, options: &[O]) -> wa::Message {
    wa::Message {
        poll_creation_message_v3: MessageField::some(wa::message::PollCreationMessage {
            name: Some(name.to_string()),
            options: options
                .iter()
                .map(|option| wa::message::poll_creation_message::Option {
                    option_name: Some(option.as_ref().to_string()),
                    option_hash: None,
                })
                .collect(),
            selectable_options_count: Some(1),
            poll_content_type: Some(wa::message::PollContentType::TEXT),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A reply: `text` quoting message `quoted_id`, written by
/// `quoted_participant_jid`, whose text (if given) the phone copies into
/// the quote as WhatsApp does.
pub fn quoted_text(
    text: &str,
    quoted_id: &str,
    quoted_participant_jid: &str,
    quoted_text: Option<&str>,
) -> wa::Message {
    with_context(
        self::text(text),
        quote(quoted_id, quoted_participant_jid, quoted_text),
    )
}

/// `text` forwarded from another chat (once: WhatsApp counts forwards and
/// shows "forwarded many times" from 5 on).
pub fn forwarded_text(text: &str) -> wa::Message {
    with_context(self::text(text), forwarded())
}

/// The context of a reply quoting message `quoted_id` by
/// `participant_jid` (with its text, if given).
pub fn quote(quoted_id: &str, participant_jid: &str, quoted_text: Option<&str>) -> wa::ContextInfo {
    wa::ContextInfo {
        stanza_id: Some(quoted_id.to_string()),
        participant: Some(participant_jid.to_string()),
        quoted_message: match quoted_text {
            Some(quoted) => MessageField::some(text(quoted)),
            None => MessageField::none(),
        },
        ..Default::default()
    }
}

/// The context of a message forwarded once.
pub fn forwarded() -> wa::ContextInfo {
    wa::ContextInfo {
        is_forwarded: Some(true),
        forwarding_score: Some(1),
        ..Default::default()
    }
}

/// `message` with `context` (a quote, the forwarded mark) attached where
/// WhatsApp puts it: plain text becomes an `extendedTextMessage`, as a
/// phone sends any text with a context; the other kinds here carry it
/// themselves. A message of another kind is returned unchanged.
pub fn with_context(mut message: wa::Message, context: wa::ContextInfo) -> wa::Message {
    if let Some(text) = message.conversation.take() {
        message.extended_text_message = MessageField::some(wa::message::ExtendedTextMessage {
            text: Some(text),
            context_info: MessageField::some(context),
            ..Default::default()
        });
        return message;
    }
    macro_rules! attach {
        ($($field:ident),*) => {
            $(
                if let Some(m) = message.$field.as_option_mut() {
                    m.context_info = MessageField::some(context);
                    return message;
                }
            )*
        };
    }
    attach!(
        extended_text_message,
        document_message,
        location_message,
        live_location_message,
        contact_message,
        contacts_array_message,
        poll_creation_message,
        poll_creation_message_v3
    );
    message
}

/// Plain text, as a phone sends it without a context.
pub fn text(text: &str) -> wa::Message {
    wa::Message {
        conversation: Some(text.to_string()),
        ..Default::default()
    }
}
