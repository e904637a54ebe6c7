//! What customers do beyond writing text, through the engine's durability
//! point to a real webhook receiver: each content kind with its `type` and
//! fields, edits, deletes, reactions and calls as events of their own, an
//! unreadable notice and the message that replaces it. (From the real
//! client's side, with the simulator: e2e/tests/e2e/customer_actions.rs.)

use serde_json::json;

use crate::engine_messages::{WAIT, connected_engine};
use crate::support::incoming_message;
use crate::support::receiver::Receiver;
use wabridge::engine::backend::{
    Author, ContactCard, ContentKind, InboundEvent, IncomingMessage, Location, Poll, Quoted,
};
use wabridge::engine::phone::Lookups;
use wabridge::engine::{EngineEvent, LineAction, SenderNumber};

fn from_asha(id: &str, text: &str) -> IncomingMessage {
    let lookups = Lookups {
        sender: "260477250707536@lid",
        sender_alt: Some("919075167132@s.whatsapp.net"),
        ..Lookups::default()
    };
    incoming_message(id, lookups, text)
}

/// A notice for message `id`, which could not be decrypted.
fn notice(id: &str) -> IncomingMessage {
    IncomingMessage {
        unreadable: true,
        kind: ContentKind::Unknown,
        ..from_asha(id, "[unreadable: could not be decrypted]")
    }
}

/// The `messages.upsert` entries posted after "Connected", once `n` came.
async fn entries(receiver: &Receiver, n: usize) -> Vec<serde_json::Value> {
    let bodies = bodies(receiver, n).await;
    bodies
        .into_iter()
        .map(|b| b["messages"][0].clone())
        .collect()
}

/// Bodies of every post after the first (the "Connected" status).
async fn bodies(receiver: &Receiver, n: usize) -> Vec<serde_json::Value> {
    receiver.wait_for(n + 1, WAIT).await;
    receiver.received()[1..].iter().map(|r| r.json()).collect()
}

#[tokio::test]
async fn each_content_kind_arrives_with_its_type_and_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let (_engine, backend) = connected_engine(&tmp, &receiver).await;
    let location = IncomingMessage {
        kind: ContentKind::Location,
        location: Some(Location {
            latitude: 12.9716,
            longitude: 77.5946,
            name: Some("Warehouse".into()),
            address: Some("MG Road 1".into()),
        }),
        ..from_asha("LOC", "[location: Warehouse, 12.9716, 77.5946]")
    };
    let contacts = IncomingMessage {
        kind: ContentKind::Contacts,
        contacts: vec![
            ContactCard {
                name: Some("Ravi".into()),
                vcard: "BEGIN:VCARD\nFN:Ravi\nEND:VCARD".into(),
                numbers: vec!["919812345678".into()],
            },
            ContactCard {
                name: None,
                vcard: String::new(),
                numbers: vec![],
            },
        ],
        ..from_asha("CARDS", "[contacts: Ravi]")
    };
    let poll = IncomingMessage {
        kind: ContentKind::Poll,
        poll: Some(Poll {
            name: "Lunch?".into(),
            options: vec!["Pizza".into(), "Salad".into()],
            selectable: 1,
        }),
        ..from_asha("POLL", "[poll: Lunch?]")
    };
    let reply = IncomingMessage {
        quoted: Some(Quoted {
            id: "Q1".into(),
            text: Some("ready?".into()),
            participant: Some("260477250707536@lid".into()),
        }),
        forwarded: true,
        ..from_asha("REPLY", "yes")
    };
    let image = IncomingMessage {
        kind: ContentKind::Image,
        caption: Some("the crate".into()),
        ..from_asha("IMG", "the crate")
    };
    let unknown = IncomingMessage {
        kind: ContentKind::Unknown,
        ..from_asha("ODD", "[unsupported: event]")
    };
    backend
        .deliver("WA-1", &[location, contacts, poll, reply, image, unknown])
        .await
        .unwrap();
    let got = entries(&receiver, 6).await;
    assert_eq!(got[0]["type"], "location");
    assert_eq!(
        got[0]["location"],
        json!({"latitude": 12.9716, "longitude": 77.5946, "name": "Warehouse", "address": "MG Road 1"})
    );
    assert_eq!(got[1]["type"], "contacts");
    assert_eq!(
        got[1]["contacts"],
        json!([
            {"name": "Ravi", "numbers": ["919812345678"], "vcard": "BEGIN:VCARD\nFN:Ravi\nEND:VCARD"},
            {"name": null, "numbers": [], "vcard": ""}
        ])
    );
    assert_eq!(
        got[2]["poll"],
        json!({"name": "Lunch?", "options": ["Pizza", "Salad"], "selectableCount": 1})
    );
    // A reply keeps the old `replyTo` and adds who wrote the quoted message,
    // a LID named as one.
    assert_eq!(got[3].get("type"), None, "text needs no type");
    assert_eq!(
        got[3]["replyTo"],
        json!({"messageId": "Q1", "text": "ready?"})
    );
    assert_eq!(
        got[3]["quoted"],
        json!({"messageId": "Q1", "text": "ready?", "fromLid": "260477250707536"})
    );
    assert_eq!(got[3]["forwarded"], true);
    assert_eq!(
        (&got[4]["type"], &got[4]["caption"]),
        (&json!("image"), &json!("the crate"))
    );
    assert_eq!(
        (&got[5]["type"], &got[5]["text"]),
        (&json!("unknown"), &json!("[unsupported: event]"))
    );
}

#[tokio::test]
async fn edits_deletes_reactions_and_calls_are_events_of_their_own() {
    let tmp = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let (engine, backend) = connected_engine(&tmp, &receiver).await;
    let mut stream = engine.subscribe();
    let with = |id: &str, text: &str, event: InboundEvent| IncomingMessage {
        event,
        timestamp: 1_764_000_100,
        ..from_asha(id, text)
    };
    let target = || "ORDER-1".to_string();
    backend
        .deliver(
            "WA-1",
            &[
                from_asha("ORDER-1", "3 boxes"),
                with("E1", "2 boxes", InboundEvent::Edited { target: target() }),
                with(
                    "R1",
                    "👍",
                    InboundEvent::Reaction {
                        target: target(),
                        emoji: "👍".into(),
                    },
                ),
                with(
                    "R2",
                    "",
                    InboundEvent::Reaction {
                        target: target(),
                        emoji: String::new(),
                    },
                ),
                with(
                    "D1",
                    "",
                    InboundEvent::Revoked {
                        target: target(),
                        author: None,
                    },
                ),
                with(
                    "CALL-9",
                    "",
                    InboundEvent::Call {
                        video: true,
                        rejected: true,
                    },
                ),
                // Asha, a group's admin, deletes Ben's message (his number
                // known), then Chen's (only his LID).
                with(
                    "D2",
                    "",
                    InboundEvent::Revoked {
                        target: "BEN-1".into(),
                        author: Some(Author {
                            jid: "100000000000002@lid".into(),
                            number: Some("447700900123".into()),
                        }),
                    },
                ),
                with(
                    "D3",
                    "",
                    InboundEvent::Revoked {
                        target: "CHEN-1".into(),
                        author: Some(Author {
                            jid: "100000000000003@lid".into(),
                            number: None,
                        }),
                    },
                ),
            ],
        )
        .await
        .unwrap();
    let got = bodies(&receiver, 8).await;
    let person = json!({
        "sessionId": "WA-1", "from": "919075167132", "fromLid": "260477250707536",
        "fromResolved": true, "pushName": "Asha",
    });
    let with_person = |fields: serde_json::Value| {
        let mut body = person.clone();
        body.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        body
    };
    assert_eq!(got[0]["event"], "messages.upsert");
    assert_eq!(
        got[1],
        with_person(
            json!({"event": "message.edited", "messageId": "ORDER-1", "text": "2 boxes", "editedAt": 1_764_000_100})
        )
    );
    assert_eq!(
        got[2],
        with_person(
            json!({"event": "message.reaction", "messageId": "ORDER-1", "emoji": "👍", "removed": false, "timestamp": 1_764_000_100})
        )
    );
    assert_eq!(
        (&got[3]["emoji"], &got[3]["removed"]),
        (&json!(""), &json!(true))
    );
    assert_eq!(
        got[4],
        with_person(
            json!({"event": "message.revoked", "messageId": "ORDER-1", "by": "919075167132", "revokedAt": 1_764_000_100})
        )
    );
    assert_eq!(
        got[5],
        with_person(
            json!({"event": "call.received", "callId": "CALL-9", "video": true, "rejected": true, "timestamp": 1_764_000_100})
        )
    );
    assert_eq!(
        got[6],
        with_person(json!({
            "event": "message.revoked", "messageId": "BEN-1", "by": "919075167132",
            "revokedAt": 1_764_000_100,
            "author": {"from": "447700900123", "fromLid": "100000000000002"}
        }))
    );
    assert_eq!(
        got[7]["author"],
        json!({"fromLid": "100000000000003"}),
        "a LID is never passed off as a number"
    );
    // The dashboard's stream hears each, marked with what it is.
    let mut actions = Vec::new();
    while actions.len() < 8 {
        if let EngineEvent::Message(m) = stream.recv().await.unwrap() {
            actions.push(m.action.clone());
        }
    }
    assert_eq!(actions[0], None);
    assert_eq!(actions[1], Some(LineAction::Edit { target: target() }));
    assert_eq!(
        actions[4],
        Some(LineAction::Delete {
            target: target(),
            author: None
        })
    );
    assert_eq!(
        actions[5],
        Some(LineAction::Call {
            video: true,
            rejected: true
        })
    );
    assert_eq!(
        actions[6],
        Some(LineAction::Delete {
            target: "BEN-1".into(),
            author: Some(SenderNumber::Phone("447700900123".into()))
        })
    );
    assert_eq!(
        actions[7],
        Some(LineAction::Delete {
            target: "CHEN-1".into(),
            author: Some(SenderNumber::HiddenLid("100000000000003".into()))
        })
    );
}

#[tokio::test]
async fn an_unreadable_notice_is_replaced_by_its_resend_and_counted_per_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let (engine, backend) = connected_engine(&tmp, &receiver).await;
    backend.deliver("WA-1", &[notice("M7")]).await.unwrap();
    backend
        .deliver("WA-1", &[from_asha("M7", "the real order")])
        .await
        .unwrap();
    let got = entries(&receiver, 2).await;
    assert_eq!(
        (&got[0]["id"], &got[0]["type"], &got[0]["unreadable"]),
        (&json!("M7"), &json!("unknown"), &json!(true))
    );
    assert_eq!(got[1]["text"], "the real order");
    assert_eq!(got[1]["replaces"], "M7");
    assert_eq!(got[1].get("unreadable"), None);
    // Counted for the peer, on the session's snapshot (dashboard, /metrics).
    let id = wabridge::paths::SessionId::parse("WA-1").unwrap();
    let snapshot = engine.watch(&id).unwrap().borrow().clone();
    assert_eq!(
        snapshot.unreadable,
        [wabridge::engine::PeerFailures {
            peer: "919075167132".into(),
            count: 1
        }]
    );
}

/// The notice is queued off the library's event path, so its resend can
/// win the race: the late notice is counted, never forwarded after the
/// real message (the ERP would overwrite its record with it).
#[tokio::test]
async fn a_notice_that_loses_the_race_to_its_resend_is_not_forwarded() {
    let tmp = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let (engine, backend) = connected_engine(&tmp, &receiver).await;
    backend
        .deliver("WA-1", &[from_asha("M8", "the real order")])
        .await
        .unwrap();
    backend.deliver("WA-1", &[notice("M8")]).await.unwrap();
    backend
        .deliver("WA-1", &[from_asha("M9", "and one more thing")])
        .await
        .unwrap();
    let got = entries(&receiver, 2).await;
    assert_eq!(
        got.iter().map(|m| m["id"].clone()).collect::<Vec<_>>(),
        [json!("M8"), json!("M9")],
        "{got:?}"
    );
    assert_eq!(got[0]["text"], "the real order");
    let id = wabridge::paths::SessionId::parse("WA-1").unwrap();
    assert_eq!(engine.watch(&id).unwrap().borrow().unreadable[0].count, 1);
}
