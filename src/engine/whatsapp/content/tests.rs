use super::*;
use whatsapp_rust::buffa::MessageField;

fn message_of(content: Extracted) -> Content {
    match content {
        Extracted::Message(content) => *content,
        other => panic!("expected a message, got {other:?}"),
    }
}

fn content(message: wa::Message) -> Content {
    message_of(extract(&message, "x").expect("forwarded"))
}

fn key(id: &str) -> MessageField<wa::MessageKey> {
    MessageField::some(wa::MessageKey {
        id: Some(id.into()),
        remote_jid: Some("15550001111@s.whatsapp.net".into()),
        from_me: Some(true),
        ..Default::default()
    })
}

#[test]
fn plain_text_is_text() {
    let plain = content(wa::Message {
        conversation: Some("hello".into()),
        ..Default::default()
    });
    assert_eq!(
        (plain.kind, plain.text.as_str()),
        (ContentKind::Text, "hello")
    );
    assert_eq!(plain.quoted, None);
    assert!(!plain.forwarded);
}

#[test]
fn a_reply_names_the_quoted_message_and_a_forward_says_so() {
    let reply = content(wa::Message {
        extended_text_message: MessageField::some(wa::message::ExtendedTextMessage {
            text: Some("yes".into()),
            context_info: MessageField::some(wa::ContextInfo {
                stanza_id: Some("Q1".into()),
                participant: Some("15550001111@s.whatsapp.net".into()),
                quoted_message: MessageField::some(wa::Message {
                    conversation: Some("ready?".into()),
                    ..Default::default()
                }),
                is_forwarded: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(
        reply.quoted,
        Some(Quoted {
            id: "Q1".into(),
            text: Some("ready?".into()),
            participant: Some("15550001111@s.whatsapp.net".into()),
        })
    );
    assert!(reply.forwarded);
}

#[test]
fn media_gets_its_kind_and_caption_or_a_marker() {
    let image = content(wa::Message {
        image_message: MessageField::some(wa::message::ImageMessage {
            mimetype: Some("image/jpeg".into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(
        (image.kind, image.text.as_str()),
        (ContentKind::Image, "[image]")
    );
    assert_eq!(image.caption, None);
    assert_eq!(image.media.unwrap().mimetype(), "image/jpeg");
    let document = content(wa::Message {
        document_message: MessageField::some(wa::message::DocumentMessage {
            file_name: Some("invoice.pdf".into()),
            caption: Some("March".into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(document.kind, ContentKind::Document);
    assert_eq!(
        (document.text.as_str(), document.caption.as_deref()),
        ("March", Some("March"))
    );
    assert_eq!(
        document.media.unwrap().filename().as_deref(),
        Some("invoice.pdf")
    );
    let round = content(wa::Message {
        ptv_message: MessageField::some(wa::message::VideoMessage {
            mimetype: Some("video/mp4".into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(
        (round.kind, round.text.as_str()),
        (ContentKind::Video, "[video note]")
    );
    let voice = content(wa::Message {
        audio_message: MessageField::some(wa::message::AudioMessage {
            ptt: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(
        (voice.kind, voice.text.as_str()),
        (ContentKind::Voice, "[voice note]")
    );
}

#[test]
fn a_location_keeps_its_coordinates_name_and_address() {
    let place = content(wa::Message {
        location_message: MessageField::some(wa::message::LocationMessage {
            degrees_latitude: Some(12.9716),
            degrees_longitude: Some(77.5946),
            name: Some("Warehouse".into()),
            address: Some("MG Road 1".into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(place.kind, ContentKind::Location);
    assert_eq!(place.text, "[location: Warehouse, 12.9716, 77.5946]");
    let location = place.location.unwrap();
    assert_eq!((location.latitude, location.longitude), (12.9716, 77.5946));
    assert_eq!(location.address.as_deref(), Some("MG Road 1"));
    let live = content(wa::Message {
        live_location_message: MessageField::some(wa::message::LiveLocationMessage {
            degrees_latitude: Some(1.5),
            degrees_longitude: Some(-2.25),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(
        (live.kind, live.text.as_str()),
        (ContentKind::LiveLocation, "[location: 1.5, -2.25]")
    );
}

#[test]
fn contact_cards_carry_the_vcard_and_its_numbers() {
    let vcard = "BEGIN:VCARD\nVERSION:3.0\nFN:Ravi\nitem1.TEL;type=CELL;waid=919812345678:+91 98123 45678\nTEL;type=WORK:+44 20 7946 0000\nEND:VCARD";
    let one = wa::message::ContactMessage {
        display_name: Some("Ravi".into()),
        vcard: Some(vcard.into()),
        ..Default::default()
    };
    let single = content(wa::Message {
        contact_message: MessageField::some(one.clone()),
        ..Default::default()
    });
    assert_eq!(
        (single.kind, single.text.as_str()),
        (ContentKind::Contact, "[contact: Ravi]")
    );
    assert_eq!(single.contacts[0].numbers, ["919812345678", "442079460000"]);
    assert_eq!(single.contacts[0].vcard, vcard);
    let several = content(wa::Message {
        contacts_array_message: MessageField::some(wa::message::ContactsArrayMessage {
            contacts: vec![
                one,
                wa::message::ContactMessage {
                    display_name: Some("Mira".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(
        (several.kind, several.text.as_str()),
        (ContentKind::Contacts, "[contacts: Ravi, Mira]")
    );
    assert_eq!(several.contacts.len(), 2);
    assert!(several.contacts[1].numbers.is_empty());
}

#[test]
fn polls_and_replies_to_buttons_and_lists_have_their_kinds() {
    let poll = content(wa::Message {
        poll_creation_message_v3: MessageField::some(wa::message::PollCreationMessage {
            name: Some("Lunch?".into()),
            options: ["Pizza", "Salad"]
                .map(|o| wa::message::poll_creation_message::Option {
                    option_name: Some(o.into()),
                    ..Default::default()
                })
                .to_vec(),
            selectable_options_count: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(
        (poll.kind, poll.text.as_str()),
        (ContentKind::Poll, "[poll: Lunch?]")
    );
    assert_eq!(poll.poll.unwrap().options, ["Pizza", "Salad"]);
    let button = content(wa::Message {
        buttons_response_message: MessageField::some(wa::message::ButtonsResponseMessage {
            response: Some(wa::__buffa::oneof::message::buttons_response_message::Response::SelectedDisplayText(
                "Confirm order".into(),
            )),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(
        (button.kind, button.text.as_str()),
        (ContentKind::ButtonsReply, "Confirm order")
    );
    let list = content(wa::Message {
        list_response_message: MessageField::some(wa::message::ListResponseMessage {
            title: Some("Large".into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(
        (list.kind, list.text.as_str()),
        (ContentKind::ListReply, "Large")
    );
}

#[test]
fn an_unknown_kind_arrives_as_unknown_with_its_name() {
    // Phones put context info beside nearly everything: it is not the kind.
    let event = wa::Message {
        message_context_info: MessageField::some(wa::MessageContextInfo {
            message_secret: Some(vec![1; 32]),
            ..Default::default()
        }),
        poll_update_message: MessageField::some(wa::message::PollUpdateMessage {
            sender_timestamp_ms: Some(1_764_000_000_000),
            ..Default::default()
        }),
        ..Default::default()
    };
    let unknown = message_of(extract(&event, "text").expect("never dropped"));
    assert_eq!(unknown.text, "[unsupported: poll_update_message]");
    let event = wa::Message {
        event_message: MessageField::some(wa::message::EventMessage {
            name: Some("Launch".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    // Named after its field: the stanza's own type is often just "text".
    let unknown = message_of(extract(&event, "text").expect("never dropped"));
    assert_eq!(unknown.kind, ContentKind::Unknown);
    assert_eq!(unknown.text, "[unsupported: event_message]");
}

#[test]
fn edits_deletes_and_reactions_name_their_message() {
    use wa::message::protocol_message::Type;
    let protocol = |kind: Type, edited: Option<&str>| wa::Message {
        protocol_message: MessageField::some(wa::message::ProtocolMessage {
            key: key("M1"),
            r#type: Some(kind),
            edited_message: match edited {
                Some(text) => MessageField::some(wa::Message {
                    conversation: Some(text.into()),
                    ..Default::default()
                }),
                None => MessageField::none(),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    // Someone else's message (a forged key) is neither edited nor deleted.
    let forged = wa::Message {
        protocol_message: MessageField::some(wa::message::ProtocolMessage {
            key: MessageField::some(wa::MessageKey {
                id: Some("M1".into()),
                from_me: Some(false),
                ..Default::default()
            }),
            r#type: Some(Type::MESSAGE_EDIT),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(extract(&forged, "x").is_none());
    match extract(&protocol(Type::MESSAGE_EDIT, Some("2 boxes, not 3")), "x") {
        Some(Extracted::Edited { target, text }) => {
            assert_eq!((target.as_str(), text.as_str()), ("M1", "2 boxes, not 3"))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        extract(&protocol(Type::REVOKE, None), "x"),
        Some(Extracted::Revoked { target, author: None }) if target == "M1"
    ));
    // Another's message deleted (a group admin's delete) names its author,
    // for the caller to check the sender is an admin; without an author it
    // is nobody's delete.
    let others = |participant: Option<&str>| wa::Message {
        protocol_message: MessageField::some(wa::message::ProtocolMessage {
            key: MessageField::some(wa::MessageKey {
                id: Some("M1".into()),
                from_me: Some(false),
                participant: participant.map(str::to_string),
                ..Default::default()
            }),
            r#type: Some(Type::REVOKE),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(matches!(
        extract(&others(Some("100000000000001@lid")), "x"),
        Some(Extracted::Revoked { target, author: Some(author) })
            if target == "M1" && author == "100000000000001@lid"
    ));
    assert!(extract(&others(None), "x").is_none());
    let reaction = |emoji: &str| wa::Message {
        reaction_message: MessageField::some(wa::message::ReactionMessage {
            key: key("M1"),
            text: Some(emoji.into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(matches!(
        extract(&reaction("👍"), "x"),
        Some(Extracted::Reaction { target, emoji }) if target == "M1" && emoji == "👍"
    ));
    assert!(matches!(
        extract(&reaction(""), "x"),
        Some(Extracted::Reaction { emoji, .. }) if emoji.is_empty()
    ));
}

#[test]
fn protocol_only_messages_are_not_forwarded() {
    let share = wa::Message {
        protocol_message: MessageField::some(Default::default()),
        ..Default::default()
    };
    assert!(extract(&share, "x").is_none());
    assert!(extract(&wa::Message::default(), "x").is_none());
}

#[test]
fn a_list_reply_names_the_list_it_answers() {
    let reply = content(wa::Message {
        list_response_message: MessageField::some(wa::message::ListResponseMessage {
            title: Some("Large".into()),
            context_info: MessageField::some(wa::ContextInfo {
                stanza_id: Some("MENU-1".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_eq!(reply.kind, ContentKind::ListReply);
    assert_eq!(reply.quoted.map(|q| q.id).as_deref(), Some("MENU-1"));
}
