//! Everything a customer does, from a simulated person's real encrypted
//! message (sent through the simulator's control API, as the README's demo
//! does) through the real binary to a real receiver on 127.0.0.1: each
//! content kind with its `type` and fields; edits, deletes for everyone and
//! reactions as events of their own, which an attached dashboard (in tmux)
//! shows on the line they are about; a call turned down with a reply the
//! caller reads; and a message that could not be read, then its resend
//! after the retry receipt, which replaces the notice.
//!
//! Needs tmux (`.ci/run` installs it).

use crate::support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use support::pairing::pair_and_stop;
use support::process::{BINARY, Running, free_port, headless};
use support::receiver::Receiver;
use support::sim::{Addressing, Person, SimEvent, Simulator};
use support::tmux::Tmux;
use wabridge::paths::DataDir;

const WAIT: Duration = Duration::from_secs(60);
const CALL_REPLY: &str = "This number does not take calls; please write";

struct World {
    sim: Simulator,
    receiver: Receiver,
    api: String,
    control: String,
    client: reqwest::Client,
    config: PathBuf,
    data: PathBuf,
    home: PathBuf,
    _running: Running,
    _tmp: tempfile::TempDir,
}

impl World {
    /// A paired session `shop` served by the headless binary, turning
    /// calls down, and the simulator's control API for people.
    async fn start() -> World {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sim = Simulator::start().await.unwrap();
        let receiver = Receiver::start().await;
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path().join("data"));
        pair_and_stop(&sim, &data, "shop", Some(&receiver.url())).await;
        let port = free_port();
        let config = tmp.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[api]\nlisten = \"127.0.0.1:{port}\"\n\n[backoff]\nbase = \"100ms\"\nmax = \"400ms\"\n\n\
                 [whatsapp]\nws_url = \"{}\"\nversion = \"2.3000.1015901307\"\n\n\
                 [[sessions]]\nid = \"shop\"\nwebhook_url = \"{}\"\nreject_calls = true\ncall_reply = \"{CALL_REPLY}\"\n",
                sim.ws_url(),
                receiver.url()
            ),
        )
        .unwrap();
        let running = {
            let (config, data) = (config.clone(), data.root().to_path_buf());
            tokio::task::spawn_blocking(move || {
                let mut running = Running::spawn(headless(&config, &data));
                running.expect_line("WhatsApp Connected: shop", WAIT);
                running
            })
            .await
            .unwrap()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let control = format!("http://{}", listener.local_addr().unwrap());
        let routes = wabridge_sim::control::message_routes(sim.clone());
        tokio::spawn(async move { axum::serve(listener, routes).await.unwrap() });
        World {
            sim,
            receiver,
            api: format!("http://127.0.0.1:{port}"),
            control,
            client: reqwest::Client::new(),
            config,
            data: data.root().to_path_buf(),
            home: tmp.path().to_path_buf(),
            _running: running,
            _tmp: tmp,
        }
    }

    /// `POST <route>` on the control API; its answer, which must be a 200.
    async fn act(&self, route: &str, body: Value) -> Value {
        let response = self
            .client
            .post(format!("{}{route}", self.control))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{route} {body}: {answer}");
        answer
    }

    /// Sends a message; its id.
    async fn message(&self, body: Value) -> String {
        self.act("/message", body).await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The webhook bodies of `event` received so far.
    fn events(&self, event: &str) -> Vec<Value> {
        self.receiver
            .received()
            .iter()
            .map(|r| r.json())
            .filter(|b| b["event"] == event)
            .collect()
    }

    /// Waits for a body of `event` that `wanted` accepts.
    async fn event(&self, event: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(body) = self.events(event).into_iter().find(&wanted) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no matching {event} in {:?}",
                self.events(event)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The first `messages.upsert` entry with `id`.
    async fn upserted(&self, id: &str) -> Value {
        let body = self
            .event("messages.upsert", |b| b["messages"][0]["id"] == id)
            .await;
        body["messages"][0].clone()
    }

    /// `wabridge attach` in a tmux window of its own.
    fn dashboard(&self) -> Tmux {
        let command = format!(
            "env HOME={home} TERM=xterm-256color {BINARY} attach --config {config} --data-dir {data}",
            home = self.home.display(),
            config = self.config.display(),
            data = self.data.display(),
        );
        Tmux::start("customer-actions", &command, 160, 50)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_customer_message_reaches_the_erp_with_its_type() {
    let world = World::start().await;
    let order = world
        .message(json!({ "text": "3 boxes of tea, please" }))
        .await;
    let place = world
        .message(
            json!({ "location": { "latitude": 12.9716, "longitude": 77.5946,
                                        "name": "Warehouse", "address": "MG Road 1" } }),
        )
        .await;
    let live = world
        .message(json!({ "text": "on my way", "location": { "latitude": 1.5, "longitude": -2.25, "live": true } }))
        .await;
    let card = world
        .message(json!({ "contacts": [{ "name": "Ravi", "phone": "+91 98123 45678" }] }))
        .await;
    let cards = world
        .message(
            json!({ "contacts": [{ "name": "Ravi", "phone": "+91 98123 45678" },
                                      { "name": "Mira", "phone": "+44 20 7946 0000" }] }),
        )
        .await;
    let poll = world
        .message(json!({ "poll": { "name": "Delivery day?", "options": ["Tuesday", "Thursday"] } }))
        .await;
    let reply = world
        .message(json!({ "text": "yes, Thursday", "quote": { "id": order, "text": "3 boxes of tea, please" } }))
        .await;
    let forwarded = world
        .message(json!({ "text": "from my colleague", "forwarded": true }))
        .await;
    let document = world
        .message(json!({ "text": "March invoice", "from": "ben", "addressing": "pn",
                         "document": { "filename": "invoice.txt", "mimetype": "text/plain", "content": "total 42" } }))
        .await;

    let m = world.upserted(&order).await;
    assert_eq!(
        m.get("type"),
        None,
        "a text message reads as the old bridge's"
    );
    assert_eq!(m["text"], "3 boxes of tea, please");
    let m = world.upserted(&place).await;
    assert_eq!(m["type"], "location");
    assert_eq!(
        m["location"],
        json!({"latitude": 12.9716, "longitude": 77.5946, "name": "Warehouse", "address": "MG Road 1"})
    );
    assert_eq!(m["text"], "[location: Warehouse, 12.9716, 77.5946]");
    let m = world.upserted(&live).await;
    assert_eq!(m["type"], "live_location");
    assert_eq!(
        (&m["location"]["latitude"], &m["location"]["longitude"]),
        (&json!(1.5), &json!(-2.25))
    );
    let m = world.upserted(&card).await;
    assert_eq!(m["type"], "contact");
    assert_eq!(m["contacts"][0]["name"], "Ravi");
    assert_eq!(m["contacts"][0]["numbers"], json!(["919812345678"]));
    assert!(
        m["contacts"][0]["vcard"]
            .as_str()
            .unwrap()
            .contains("BEGIN:VCARD")
    );
    let m = world.upserted(&cards).await;
    assert_eq!(m["type"], "contacts");
    assert_eq!(m["text"], "[contacts: Ravi, Mira]");
    assert_eq!(m["contacts"][1]["numbers"], json!(["442079460000"]));
    let m = world.upserted(&poll).await;
    assert_eq!(m["type"], "poll");
    assert_eq!(m["poll"]["name"], "Delivery day?");
    assert_eq!(m["poll"]["options"], json!(["Tuesday", "Thursday"]));
    let m = world.upserted(&reply).await;
    assert_eq!(
        m["replyTo"],
        json!({"messageId": order, "text": "3 boxes of tea, please"})
    );
    assert_eq!(m["quoted"]["messageId"], order);
    let m = world.upserted(&forwarded).await;
    assert_eq!(m["forwarded"], true);
    let m = world.upserted(&document).await;
    assert_eq!(m["type"], "document");
    assert_eq!(m["caption"], "March invoice");
    assert_eq!(m["media"]["filename"], "invoice.txt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_deletes_and_reactions_are_events_and_the_dashboard_marks_their_lines() {
    let world = World::start().await;
    let order = world.message(json!({ "text": "3 boxes of tea" })).await;
    let oops = world.message(json!({ "text": "wrong chat, sorry" })).await;
    world.upserted(&oops).await;
    world
        .act("/edit", json!({ "id": order, "text": "2 boxes of tea" }))
        .await;
    world.act("/revoke", json!({ "id": oops })).await;
    world
        .act("/reaction", json!({ "id": order, "emoji": "👍" }))
        .await;
    world
        .act("/reaction", json!({ "id": order, "emoji": "" }))
        .await;

    let edited = world.event("message.edited", |_| true).await;
    assert_eq!(edited["messageId"], order);
    assert_eq!(edited["text"], "2 boxes of tea");
    assert_eq!(edited["from"], "919075167132");
    assert!(edited["editedAt"].as_i64().unwrap() > 1_700_000_000);
    let revoked = world.event("message.revoked", |_| true).await;
    assert_eq!(revoked["messageId"], oops);
    assert_eq!(revoked["by"], "919075167132");
    let added = world
        .event("message.reaction", |b| b["removed"] == false)
        .await;
    assert_eq!(
        (&added["messageId"], &added["emoji"]),
        (&json!(order), &json!("👍"))
    );
    let removed = world
        .event("message.reaction", |b| b["removed"] == true)
        .await;
    assert_eq!(removed["messageId"], order);
    // None of them is passed off as a new message.
    assert_eq!(world.events("messages.upsert").len(), 2);

    // An operator attaching now sees the stream with the lines marked.
    let dashboard = world.dashboard();
    let screen = dashboard.until("the edited and deleted lines", |s| {
        s.contains("2 boxes of tea (edited)") && s.contains("wrong chat, sorry (deleted)")
    });
    assert!(!screen.contains("3 boxes of tea"), "{screen}");
}

/// In a group, an admin's delete of a member's message reaches the ERP
/// naming the message's author, and the dashboard strikes the author's
/// line; a member's delete of someone else's message (a forged key: only
/// admins may) is not passed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_admins_delete_of_a_members_message_names_its_author() {
    let world = World::start().await;
    let group = "120363000000000077@g.us";
    let in_group = |from: &str, text: &str| json!({ "text": text, "from": from, "group": group });
    let spam = world.message(in_group("ben", "cheap watches here")).await;
    let order = world
        .message(in_group("carla", "order for the office"))
        .await;
    world.upserted(&order).await;
    // Asha was made admin after the group's members were fetched: her
    // delete fetches them again. Dev is no admin.
    let by_admin = json!({ "id": spam, "from": "asha", "group": group, "author": "ben" });
    world.act("/revoke", by_admin).await;
    let forged =
        json!({ "id": order, "from": "dev", "group": group, "author": "carla", "not_admin": true });
    world.act("/revoke", forged).await;

    let revoked = world.event("message.revoked", |_| true).await;
    let (asha, ben) = (Person::asha(), Person::ben());
    assert_eq!(revoked["messageId"], spam);
    assert_eq!(revoked["by"], asha.pn);
    assert_eq!(revoked["groupId"], group);
    assert_eq!(
        revoked["author"],
        json!({ "from": ben.pn, "fromLid": ben.lid })
    );
    // Dev's, which came next, is dropped: once a later message of the
    // group is through, it is not among the events.
    let after = world.message(in_group("carla", "still there?")).await;
    world.upserted(&after).await;
    assert_eq!(world.events("message.revoked").len(), 1);

    let dashboard = world.dashboard();
    let screen = dashboard.until("the spam struck", |s| {
        s.contains("cheap watches here (deleted)") && s.contains("order for the office")
    });
    assert!(
        !screen.contains("order for the office (deleted)"),
        "{screen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_turned_down_with_a_reply_and_an_unreadable_message_is_replaced() {
    let world = World::start().await;
    // The server hands out Asha's keys, so the reply can be encrypted to her.
    world.sim.add_person(&Person::asha()).await;
    let mut sim_events = world.sim.events();
    let call = world.act("/call", json!({ "video": true })).await["callId"]
        .as_str()
        .unwrap()
        .to_string();
    let received = world.event("call.received", |_| true).await;
    assert_eq!(received["callId"], call);
    assert_eq!(
        (&received["video"], &received["rejected"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(received["from"], "919075167132");
    // The server saw the rejection, and the caller reads the reply.
    assert!(world.sim.rejected_calls().contains(&call));
    support::sim::wait_for(
        &mut sim_events,
        WAIT,
        |e| matches!(e, SimEvent::MessageToPerson { text, .. } if text == CALL_REPLY),
    )
    .await;

    let id = world
        .message(json!({ "text": "the real order", "unreadable_first": true }))
        .await;
    let replaced = world
        .event("messages.upsert", |b| b["messages"][0]["replaces"] == id)
        .await;
    let notice = world
        .event("messages.upsert", |b| {
            b["messages"][0]["id"] == id && b["messages"][0]["unreadable"] == true
        })
        .await;
    assert_eq!(notice["messages"][0]["type"], "unknown");
    let notice_at = world
        .receiver
        .received()
        .iter()
        .position(|r| r.json() == notice)
        .unwrap();
    let replaced_at = world
        .receiver
        .received()
        .iter()
        .position(|r| r.json() == replaced)
        .unwrap();
    assert!(
        notice_at < replaced_at,
        "the notice first, then its message"
    );
    assert_eq!(replaced["messages"][0]["id"], id);
    assert_eq!(replaced["messages"][0]["text"], "the real order");
    let metrics = reqwest::get(format!("{}/metrics", world.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "wabridge_unreadable_messages_total{session=\"shop\",peer=\"919075167132\"} 1"
        ),
        "{metrics}"
    );
}

/// Kinds a phone sends that the control API has no words for: media of
/// each sort (the binary cannot fetch the simulator's media host, so their
/// bytes are `omitted`, which messages.rs covers), replies to buttons and
/// lists, and a kind nothing here knows, which still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_kinds_button_and_list_replies_and_unknown_kinds_keep_their_type() {
    use whatsapp_rust::buffa::MessageField;
    use whatsapp_rust::waproto::whatsapp as wa;

    let world = World::start().await;
    let (_, device) = *world.sim.live_logins().last().unwrap();
    // Where a phone's upload would be; the fields the client needs to try.
    let stored = |mimetype: &str| {
        (
            Some(mimetype.to_string()),
            Some("https://mmg.whatsapp.net/v/t62/simulated".to_string()),
            Some("/v/t62/simulated".to_string()),
            Some(vec![7u8; 32]),
        )
    };
    let (mimetype, url, direct_path, media_key) = stored("image/jpeg");
    let image = wa::Message {
        image_message: MessageField::some(wa::message::ImageMessage {
            mimetype,
            url,
            direct_path,
            media_key,
            caption: Some("the crate, dented".into()),
            file_length: Some(1000),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (mimetype, url, direct_path, media_key) = stored("audio/ogg; codecs=opus");
    let voice = wa::Message {
        audio_message: MessageField::some(wa::message::AudioMessage {
            mimetype,
            url,
            direct_path,
            media_key,
            ptt: Some(true),
            file_length: Some(1000),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (mimetype, url, direct_path, media_key) = stored("image/webp");
    let sticker = wa::Message {
        sticker_message: MessageField::some(wa::message::StickerMessage {
            mimetype,
            url,
            direct_path,
            media_key,
            file_length: Some(1000),
            ..Default::default()
        }),
        ..Default::default()
    };
    let button = wa::Message {
        buttons_response_message: MessageField::some(wa::message::ButtonsResponseMessage {
            selected_button_id: Some("confirm".into()),
            response: Some(
                wa::__buffa::oneof::message::buttons_response_message::Response::SelectedDisplayText(
                    "Confirm order".into(),
                ),
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    let list = wa::Message {
        list_response_message: MessageField::some(wa::message::ListResponseMessage {
            title: Some("Large box".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let unknown = wa::Message {
        event_message: MessageField::some(wa::message::EventMessage {
            name: Some("Store opening".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut sent = Vec::new();
    for message in [image, voice, sticker, button, list, unknown] {
        let id = world
            .sim
            .send_message(device, &Person::asha(), Addressing::LidWithPn, &message)
            .await
            .unwrap();
        sent.push(id);
    }
    let expected = [
        ("image", "the crate, dented"),
        ("voice", "[voice note]"),
        ("sticker", "[sticker]"),
        ("buttons_reply", "Confirm order"),
        ("list_reply", "Large box"),
        ("unknown", "[unsupported: event_message]"),
    ];
    for (id, (kind, text)) in sent.iter().zip(expected) {
        let m = world.upserted(id).await;
        assert_eq!(
            (m["type"].as_str(), m["text"].as_str()),
            (Some(kind), Some(text)),
            "{m}"
        );
    }
    let image = world.upserted(&sent[0]).await;
    assert_eq!(image["caption"], "the crate, dented");
    assert_eq!(image["media"]["mimetype"], "image/jpeg");
    assert!(image["media"]["omitted"].is_string(), "{image}");
}
