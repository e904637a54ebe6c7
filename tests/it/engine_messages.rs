//! Incoming messages through the engine's durability point: each reaches the
//! webhook in the old bridge's `messages.upsert` format with the sender's
//! real number (or an honest LID), once, and the dashboard's stream sees it.
//! (The same pipeline fed by the real client: tests/lifecycle.rs.)

use crate::support;

use std::time::Duration;

use serde_json::json;

use support::fake_backend::FakeBackend;
use support::incoming_message as message;
use support::log_capture::LogCapture;
use support::receiver::Receiver;
use wabridge::engine::backend::{IncomingMedia, MediaContent, Quoted};
use wabridge::engine::phone::Lookups;
use wabridge::engine::{Engine, EngineEvent, SenderNumber, SessionState};
use wabridge::paths::{DataDir, SessionId};
use wabridge::webhook::deliver::DeliverySettings;
use wabridge::webhook::hub::WebhookHub;

pub(crate) const WAIT: Duration = Duration::from_secs(20);

pub(crate) async fn connected_engine(
    tmp: &tempfile::TempDir,
    receiver: &Receiver,
) -> (Engine, FakeBackend) {
    support::install_tls();
    let backend = FakeBackend::default();
    let data = DataDir::new(tmp.path().join("data"));
    let hooks = WebhookHub::open(&data, DeliverySettings::default()).unwrap();
    let policy = support::fast_policy();
    let engine = Engine::with_webhooks(backend.clone(), data, policy, Some(hooks));
    let id = SessionId::parse("WA-1").unwrap();
    engine
        .add_session(&id, Some(receiver.url()), Some("erp-token".into()))
        .unwrap();
    let mut watch = engine.watch(&id).unwrap();
    watch
        .wait_for(|s| s.state == SessionState::Connected)
        .await
        .unwrap();
    // The "Connected" status post comes first.
    receiver.wait_for(1, WAIT).await;
    (engine, backend)
}

#[tokio::test]
async fn pn_lid_and_hidden_senders_reach_the_webhook_in_the_old_format() {
    let tmp = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let (engine, backend) = connected_engine(&tmp, &receiver).await;
    let mut stream = engine.subscribe();

    let pn = message(
        "ID-PN",
        Lookups {
            sender: "447700900123@s.whatsapp.net",
            ..Lookups::default()
        },
        "hi",
    );
    let lid = message(
        "ID-LID",
        Lookups {
            sender: "260477250707536@lid",
            sender_alt: Some("919075167132@s.whatsapp.net"),
            ..Lookups::default()
        },
        "order 42",
    );
    let hidden = message(
        "ID-HIDDEN",
        Lookups {
            sender: "100000000000009@lid",
            ..Lookups::default()
        },
        "who am I",
    );
    backend.deliver("WA-1", &[pn, lid, hidden]).await.unwrap();

    receiver.wait_for(4, WAIT).await;
    let got = receiver.upserts();
    assert_eq!(
        got[0],
        json!({
            "id": "ID-PN", "from": "447700900123", "text": "hi", "timestamp": 1_764_000_000,
            "pushName": "Asha", "media": null, "isGroup": false, "groupId": null,
            "groupName": null, "replyTo": null, "fromLid": null, "fromResolved": true
        })
    );
    assert_eq!(got[1]["from"], "919075167132");
    assert_eq!(got[1]["fromLid"], "260477250707536");
    assert_eq!(got[2]["from"], "100000000000009");
    assert_eq!(got[2]["fromResolved"], false);
    let first = &receiver.received()[1];
    assert_eq!(first.json()["sessionId"], "WA-1");
    assert_eq!(
        first.header("x-webhook-token").as_deref(),
        Some("erp-token")
    );

    // The dashboard's stream sees them too, the hidden one as a LID.
    let mut senders = Vec::new();
    while senders.len() < 3 {
        if let EngineEvent::Message(m) = stream.recv().await.unwrap() {
            senders.push(m.sender.clone());
        }
    }
    assert_eq!(senders[1], SenderNumber::Phone("919075167132".into()));
    assert_eq!(
        senders[2],
        SenderNumber::HiddenLid("100000000000009".into())
    );
}

#[tokio::test]
async fn a_redelivered_message_is_forwarded_once() {
    let tmp = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let (_engine, backend) = connected_engine(&tmp, &receiver).await;
    let m = message(
        "SAME",
        Lookups {
            sender: "447700900123@s.whatsapp.net",
            ..Lookups::default()
        },
        "x",
    );
    backend
        .deliver("WA-1", std::slice::from_ref(&m))
        .await
        .unwrap();
    backend
        .deliver("WA-1", std::slice::from_ref(&m))
        .await
        .unwrap();
    let other = message(
        "NEXT",
        Lookups {
            sender: "447700900123@s.whatsapp.net",
            ..Lookups::default()
        },
        "y",
    );
    backend.deliver("WA-1", &[other]).await.unwrap();
    receiver.wait_for(3, WAIT).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ids: Vec<_> = receiver.upserts().iter().map(|m| m["id"].clone()).collect();
    assert_eq!(ids, [json!("SAME"), json!("NEXT")]);
}

#[tokio::test]
async fn groups_media_and_replies_fill_their_fields() {
    let (logs, _guard) = LogCapture::install();
    let tmp = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let (_engine, backend) = connected_engine(&tmp, &receiver).await;
    let mut m = message(
        "G1",
        Lookups {
            sender: "260477250707536@lid",
            participant_pn: Some("919075167132"),
            ..Lookups::default()
        },
        "see attached",
    );
    m.chat = "120363999999999999@g.us".into();
    m.is_group = true;
    m.group_name = Some("Orders".into());
    m.media = Some(IncomingMedia {
        mimetype: "application/pdf".into(),
        filename: Some("invoice.pdf".into()),
        content: MediaContent::Bytes(b"%PDF-1.4".to_vec()),
    });
    m.quoted = Some(Quoted {
        id: "Q1".into(),
        text: Some("send the invoice".into()),
        participant: None,
    });
    backend.deliver("WA-1", &[m]).await.unwrap();
    receiver.wait_for(2, WAIT).await;
    let got = &receiver.upserts()[0];
    assert_eq!(
        got["from"], "919075167132",
        "the participant, not the group"
    );
    assert_eq!(got["isGroup"], true);
    assert_eq!(got["groupId"], "120363999999999999@g.us");
    assert_eq!(got["groupName"], "Orders");
    assert_eq!(
        got["media"],
        json!({"data": "JVBERi0xLjQ=", "mimetype": "application/pdf", "filename": "invoice.pdf"})
    );
    assert_eq!(
        got["replyTo"],
        json!({"messageId": "Q1", "text": "send the invoice"})
    );
    assert!(
        !logs
            .lines_with(
                "LID message - using participant: 919075167132 instead of LID: 260477250707536"
            )
            .is_empty()
    );
}
