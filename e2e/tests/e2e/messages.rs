//! Messages end to end on the real client: simulated people write to a
//! paired session with real Signal encryption (pkmsg, then msg), named the
//! three ways the server names senders; the client decrypts them, the
//! engine persists them before the ack, and a real HTTP receiver on
//! 127.0.0.1 gets each in the old bridge's format with the right `from`.

use crate::support;

use std::time::Duration;

use support::log_capture::LogCapture;
use support::pairing::{backend, scan_first_qr};
use support::receiver::Receiver;
use support::sim::{self, Addressing, Person, SimEvent, Simulator};
use tokio::sync::broadcast;
use wabridge::engine::backoff::BackoffPolicy;
use wabridge::engine::{Engine, EngineEvent, SessionState};
use wabridge::paths::{DataDir, SessionId};
use wabridge::webhook::deliver::DeliverySettings;
use wabridge::webhook::hub::WebhookHub;

const WAIT: Duration = Duration::from_secs(40);

fn id(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

/// A session paired through the simulator, with `receiver` as its webhook;
/// returns the linked device once it has uploaded its pre-keys.
async fn paired_session(sim: &Simulator, data: &DataDir, receiver: &Receiver) -> (Engine, u32) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let hooks = WebhookHub::open(data, DeliverySettings::default()).unwrap();
    let policy = BackoffPolicy {
        base: Duration::from_millis(50),
        max: Duration::from_millis(200),
    };
    let engine = Engine::with_webhooks(backend(sim), data.clone(), policy, Some(hooks));
    let mut changes = engine.subscribe();
    let mut sim_events = sim.events();
    engine
        .add_session(&id("shop"), Some(receiver.url()), Some("erp".into()))
        .unwrap();
    scan_first_qr(sim, &mut changes, "shop").await;
    let device = sim::linked_device(&mut sim_events, WAIT).await;
    wait_connected(&mut changes).await;
    (engine, device)
}

async fn wait_connected(changes: &mut broadcast::Receiver<EngineEvent>) {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(EngineEvent::SessionChanged(s)) = changes.recv().await
                && s.state == SessionState::Connected
            {
                return;
            }
        }
    })
    .await
    .expect("Connected");
}

#[tokio::test]
async fn encrypted_messages_reach_the_webhook_with_the_senders_number() {
    let sim = Simulator::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let receiver = Receiver::start().await;
    let (engine, device) = paired_session(&sim, &data, &receiver).await;

    let asha = Person::asha();
    let ben = Person::ben();
    let carla = Person::carla();
    let first = sim
        .send_text(device, &asha, Addressing::LidWithPn, "order 42 please")
        .await
        .unwrap();
    // Later without the number on the stanza: the mapping the client
    // stored from the first one resolves it.
    let second = sim
        .send_text(device, &asha, Addressing::LidHidden, "and a receipt")
        .await
        .unwrap();
    let by_number = sim
        .send_text(device, &ben, Addressing::Pn, "hello from a number")
        .await
        .unwrap();
    let hidden = sim
        .send_text(device, &carla, Addressing::LidHidden, "who am I")
        .await
        .unwrap();
    let broken = sim.send_garbage(device, &ben, Addressing::Pn);

    let got = receiver.wait_for_upserts(5, WAIT).await;
    let by_id = |wanted: &str| {
        got.iter()
            .find(|m| m["id"] == wanted)
            .unwrap_or_else(|| panic!("{wanted} not delivered: {got:?}"))
            .clone()
    };

    let m = by_id(&first);
    assert_eq!(m["text"], "order 42 please");
    assert_eq!(m["from"], "919075167132", "the LID sender's real number");
    assert_eq!(m["fromLid"], "260477250707536");
    assert_eq!(m["fromResolved"], true);
    assert_eq!(m["pushName"], "Asha");
    assert_eq!(m["isGroup"], false);
    let m = by_id(&second);
    assert_eq!(m["text"], "and a receipt");
    assert_eq!(m["from"], "919075167132", "from the client's LID↔PN store");
    assert_eq!(m["fromResolved"], true);

    let m = by_id(&by_number);
    assert_eq!(m["from"], "447700900123");
    assert_eq!(m["fromResolved"], true);
    assert_eq!(m["text"], "hello from a number");

    let m = by_id(&hidden);
    assert_eq!(m["from"], "200000000000077", "the LID digits, flagged");
    assert_eq!(m["fromResolved"], false);
    assert_eq!(m["fromLid"], "200000000000077");
    // Undecryptable: forwarded as a notice with the reason, never dropped.
    let m = by_id(&broken);
    assert_eq!(m["from"], "447700900123");
    assert!(
        m["text"].as_str().unwrap().starts_with("[unreadable: "),
        "{m}"
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn group_messages_carry_the_participants_number_not_the_groups() {
    let (logs, _guard) = LogCapture::install();
    let sim = Simulator::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let receiver = Receiver::start().await;
    let (engine, device) = paired_session(&sim, &data, &receiver).await;
    let group = "120363000000000001@g.us";
    let asha = Person::asha();
    let carla = Person::carla();
    let dev = Person::dev();
    // The server knows the group and its members' numbers (Dev's included);
    // Carla is not listed, so her number stays hidden.
    sim.add_group(group, "Shop floor", &[asha.clone(), dev.clone()]);
    let known = sim
        .send_group_text(device, group, &asha, Addressing::LidWithPn, "stock check")
        .await
        .unwrap();
    let hidden = sim
        .send_group_text(device, group, &carla, Addressing::LidHidden, "me too")
        .await
        .unwrap();
    let by_members = sim
        .send_group_text(device, group, &dev, Addressing::LidHidden, "on my way")
        .await
        .unwrap();

    let got = receiver.wait_for_upserts(3, WAIT).await;
    let by_id = |wanted: &str| got.iter().find(|m| m["id"] == wanted).unwrap().clone();

    let m = by_id(&known);
    assert_eq!(m["text"], "stock check");
    assert_eq!(m["isGroup"], true);
    assert_eq!(m["groupId"], group);
    assert_eq!(m["from"], "919075167132", "the participant, not the group");
    assert_eq!(m["fromLid"], "260477250707536");
    assert_eq!(m["fromResolved"], true);
    assert_eq!(
        m["groupName"], "Shop floor",
        "already on the group's first message"
    );

    let m = by_id(&hidden);
    assert_eq!(m["text"], "me too");
    assert_eq!(m["from"], "200000000000077");
    assert_eq!(m["fromResolved"], false);

    // No number on the stanza, but the group's member list has it.
    let m = by_id(&by_members);
    assert_eq!(m["from"], "4915112345678");
    assert_eq!(m["fromLid"], "300000000000005");
    assert_eq!(m["fromResolved"], true);
    assert!(
        !logs
            .lines_with(
                "LID message - using participant: 4915112345678 instead of LID: 300000000000005"
            )
            .is_empty(),
        "the old bridge's log line"
    );
    engine.shutdown().await;
}

/// More chats writing at once than the client keeps lanes for
/// (`client_caches.rs`): idle lanes are dropped and made again, and every
/// chat's messages still reach the ERP, each chat's in the order written.
#[tokio::test]
async fn many_chats_writing_at_once_each_keep_their_order() {
    const PEOPLE: u32 = 40;
    const ROUNDS: usize = 3;
    let sim = Simulator::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let receiver = Receiver::start().await;
    let (engine, device) = paired_session(&sim, &data, &receiver).await;
    let people: Vec<Person> = (0..PEOPLE).map(Person::numbered).collect();
    for round in 0..ROUNDS {
        for person in &people {
            let text = format!("{} round {round}", person.name);
            sim.send_text(device, person, Addressing::LidWithPn, &text)
                .await
                .unwrap();
        }
    }

    let got = receiver
        .wait_for_upserts(people.len() * ROUNDS, Duration::from_secs(90))
        .await;
    for person in &people {
        let rounds: Vec<&str> = got
            .iter()
            .filter(|m| m["from"] == person.pn.as_str())
            .map(|m| m["text"].as_str().unwrap())
            .collect();
        let written: Vec<String> = (0..ROUNDS)
            .map(|round| format!("{} round {round}", person.name))
            .collect();
        assert_eq!(rounds, written, "{}'s messages, in order", person.name);
    }
    engine.shutdown().await;
}

/// `/sessions/send` with a document, as the ERP sends invoices: uploaded
/// encrypted to the media host, and the customer's phone opens the file.
#[tokio::test]
async fn the_api_sends_a_document_the_customer_can_open() {
    use axum::body::Body;
    use axum::http::Request;
    use base64::Engine as _;
    use tower::ServiceExt;

    let sim = Simulator::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let receiver = Receiver::start().await;
    let (engine, _device) = paired_session(&sim, &data, &receiver).await;
    sim.add_person(&Person::ben()).await;
    let mut sim_events = sim.events();

    let invoice = b"%PDF-1.4 invoice 4711: 3 x blue widgets, EUR 42.00".to_vec();
    let body = serde_json::json!({
        "sessionId": "shop",
        "receiver": "447700900123",
        "message": "Invoice 4711",
        "media": {
            "data": base64::engine::general_purpose::STANDARD.encode(&invoice),
            "mimetype": "application/pdf",
            "filename": "invoice-4711.pdf"
        }
    });
    let router = wabridge::api::router(wabridge::api::ApiState::new(engine.clone(), String::new()));
    let response = router
        .oneshot(
            Request::post("/sessions/send")
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let sent: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["status"], "sent");
    let message_id = sent["messageId"].as_str().unwrap().to_string();

    let received = sim::wait_for(
        &mut sim_events,
        WAIT,
        |e| matches!(e, SimEvent::MessageToPerson { id, .. } if *id == message_id),
    )
    .await;
    let SimEvent::MessageToPerson {
        to, text, document, ..
    } = received
    else {
        unreachable!()
    };
    assert_eq!(to, "447700900123");
    assert_eq!(text, "Invoice 4711", "the caption");
    assert_eq!(
        document,
        Some((
            "application/pdf".to_string(),
            "invoice-4711.pdf".to_string(),
            invoice
        )),
        "the customer opens the very file"
    );
    engine.shutdown().await;
}

/// A customer sends a document: the client downloads it from the media host
/// and the ERP gets the file itself, base64, with its type and name, as the
/// old bridge sent it.
#[tokio::test]
async fn an_incoming_document_reaches_the_webhook_with_its_bytes() {
    use base64::Engine as _;

    let sim = Simulator::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let receiver = Receiver::start().await;
    let (engine, device) = paired_session(&sim, &data, &receiver).await;
    let order = b"PO-9001; widgets, 12 boxes".to_vec();
    let id = sim
        .send_document(
            device,
            &Person::asha(),
            Addressing::LidWithPn,
            ("text/plain", "po-9001.txt", &order),
            "my purchase order",
        )
        .await
        .unwrap();

    let got = receiver.wait_for_upserts(1, WAIT).await;
    let m = got
        .iter()
        .find(|m| m["id"] == id.as_str())
        .expect("the document");
    assert_eq!(m["from"], "919075167132");
    assert_eq!(m["text"], "my purchase order", "the caption is the text");
    assert_eq!(m["media"]["mimetype"], "text/plain");
    assert_eq!(m["media"]["filename"], "po-9001.txt");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(m["media"]["data"].as_str().expect("the bytes are included"))
        .unwrap();
    assert_eq!(bytes, order);

    // Over the size cap (1 MiB here): the message still arrives, with the
    // file's type and name and why its bytes are not included.
    let scan = vec![0x5a; (1 << 20) + 1];
    let big = sim
        .send_document(
            device,
            &Person::asha(),
            Addressing::LidWithPn,
            ("image/tiff", "scan.tiff", &scan),
            "the signed copy",
        )
        .await
        .unwrap();
    let got = receiver.wait_for_upserts(2, WAIT).await;
    let m = got
        .iter()
        .find(|m| m["id"] == big.as_str())
        .expect("the big one");
    assert_eq!(m["media"]["filename"], "scan.tiff");
    assert!(m["media"].get("data").is_none(), "{m}");
    assert!(
        m["media"]["omitted"]
            .as_str()
            .unwrap()
            .contains("over the 1048576 byte cap"),
        "{m}"
    );

    // A sender who declares 1 KiB and serves 8 MiB: the download stops at
    // the cap instead of reading it all into memory, and the message still
    // arrives, saying why its bytes are missing.
    let served_before = sim.media_served();
    let flood = vec![0x42; 8 << 20];
    let liar = sim
        .send_document_declaring(
            device,
            &Person::asha(),
            Addressing::LidWithPn,
            ("application/pdf", "invoice.pdf", &flood),
            "tiny, promise",
            Some(1024),
        )
        .await
        .unwrap();
    let got = receiver.wait_for_upserts(3, WAIT).await;
    let m = got
        .iter()
        .find(|m| m["id"] == liar.as_str())
        .expect("the liar's message");
    assert_eq!(m["media"]["filename"], "invoice.pdf");
    assert!(m["media"].get("data").is_none(), "{m}");
    assert!(
        m["media"]["omitted"]
            .as_str()
            .unwrap()
            .contains("more than the 1048576 byte cap"),
        "{m}"
    );
    let read = sim.media_served() - served_before;
    assert!(
        read < 4 << 20,
        "read {read} bytes of an 8 MiB file with a 1 MiB cap"
    );
    engine.shutdown().await;
}

/// A session away while a customer wrote catches up at login (the offline
/// sync). When the connection drops halfway through it, the session says
/// its sync was interrupted (not only in the log), and the next login
/// delivers every message, each once.
#[tokio::test]
async fn an_offline_sync_cut_short_is_reported_and_nothing_is_lost() {
    let sim = Simulator::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let receiver = Receiver::start().await;
    let (engine, device) = paired_session(&sim, &data, &receiver).await;
    engine.shutdown().await;
    drop(engine);

    let asha = Person::asha();
    let mut sent = Vec::new();
    for n in 0..6 {
        let text = format!("written while you were away, {n}");
        sent.push(
            sim.send_text(device, &asha, Addressing::LidWithPn, &text)
                .await
                .unwrap(),
        );
    }
    sim.cut_next_offline_sync(2);

    let hooks = WebhookHub::open(&data, DeliverySettings::default()).unwrap();
    let policy = BackoffPolicy {
        base: Duration::from_millis(50),
        max: Duration::from_millis(200),
    };
    let engine = Engine::with_webhooks(backend(&sim), data.clone(), policy, Some(hooks));
    let mut changes = engine.subscribe();
    engine.start_saved().unwrap();
    let cut = support::until(&mut changes, "shop", |s| s.interrupted_sync.is_some()).await;
    assert_eq!(
        cut.interrupted_sync,
        Some(6),
        "the 6 items the server announced"
    );
    // The next login finishes the sync, and the note goes.
    support::until(&mut changes, "shop", |s| {
        s.state == SessionState::Connected && s.interrupted_sync.is_none()
    })
    .await;

    let got = receiver.wait_for_upserts(6, WAIT).await;
    let mut ids: Vec<String> = got
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    sent.sort();
    assert_eq!(ids, sent, "every message, once");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.upserts().len(), 6, "none twice");
    engine.shutdown().await;
}
