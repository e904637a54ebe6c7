//! The old bridge's HTTP flow on the real binary against the simulator, as
//! the ERP drives it: start (a QR as a PNG data URL), the phone scans that
//! image, status turns Connected, the webhook hears of it and of a message,
//! a reply sent through `/sessions/send` is decrypted by the customer's
//! phone, a second start keeps the one socket, and DELETE logs out and forgets the
//! session.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::pairing::VERSION;
use support::process::{Running, free_port, headless};
use support::receiver::Receiver;
use support::screen::qr_payload;
use support::sim::{Addressing, Person, SimEvent, Simulator};

const WAIT: Duration = Duration::from_secs(40);

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erp_starts_pairs_hears_and_deletes_a_session_as_with_the_old_bridge() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::start().await.unwrap();
    let receiver = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = tmp.path().join("config.toml");
    let (major, minor, patch) = VERSION;
    std::fs::write(
        &config,
        format!(
            "[api]\nlisten = \"127.0.0.1:{port}\"\n[whatsapp]\nws_url = \"{}\"\nversion = \"{major}.{minor}.{patch}\"\n",
            sim.ws_url()
        ),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let mut running = {
        let (config, data) = (config.clone(), data.clone());
        tokio::task::spawn_blocking(move || {
            let mut running = Running::spawn(headless(&config, &data));
            running.expect_line("HTTP API on", WAIT);
            running
        })
        .await
        .unwrap()
    };
    let api = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut sim_events = sim.events();

    // Start: the QR comes back as a PNG data URL, as the ERP shows it.
    let (status, started) = call(
        &client,
        reqwest::Method::POST,
        format!("{api}/sessions/start"),
        Some(json!({
            "sessionId": "WA-1",
            "webhookUrl": receiver.url(),
            "webhookToken": "erp-token"
        })),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["status"], "QR Scan Required");
    let png = started["qr"].as_str().unwrap();
    assert!(png.starts_with("data:image/png;base64,"), "{started}");

    // The phone scans the image.
    let payload = qr_payload(png).expect("the PNG holds a scannable QR");
    assert!(sim.scan(&payload));
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, status) = call(
            &client,
            reqwest::Method::GET,
            format!("{api}/sessions/WA-1/status"),
            None,
        )
        .await;
        if status == json!({ "status": "Connected" }) {
            break;
        }
        assert!(Instant::now() < deadline, "never Connected: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The webhook hears of it, with the ERP's token.
    let deadline = Instant::now() + WAIT;
    let connected = loop {
        let found = receiver.received().into_iter().find(|r| {
            r.json()["event"] == "connection.update" && r.json()["status"] == "Connected"
        });
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "no Connected webhook");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(connected.json()["sessionId"], "WA-1");
    assert_eq!(
        connected.header("x-webhook-token").as_deref(),
        Some("erp-token")
    );

    // A customer writes; the ERP gets it.
    let device = support::sim::linked_device(&mut sim_events, WAIT).await;
    let asha = Person::asha();
    let id = sim
        .send_text(device, &asha, Addressing::LidWithPn, "order 42 please")
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while !receiver.upserts().iter().any(|m| m["id"] == id.as_str()) {
        assert!(Instant::now() < deadline, "no messages.upsert for {id}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let upsert = receiver
        .upserts()
        .into_iter()
        .find(|m| m["id"] == id.as_str())
        .unwrap();
    assert_eq!(upsert["from"], "919075167132");

    // The ERP answers a customer: the customer's phone decrypts it.
    let ben = Person::ben();
    sim.add_person(&ben).await;
    let mut sim_events = sim.events();
    let (status, sent) = call(
        &client,
        reqwest::Method::POST,
        format!("{api}/sessions/send"),
        Some(json!({
            "sessionId": "WA-1",
            "receiver": "+44 7700 900123",
            "message": "Your order ships today"
        })),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["status"], "sent");
    let message_id = sent["messageId"].as_str().unwrap().to_string();
    let received = support::sim::wait_for(
        &mut sim_events,
        WAIT,
        |e| matches!(e, SimEvent::MessageToPerson { id, .. } if *id == message_id),
    )
    .await;
    let SimEvent::MessageToPerson { to, text, .. } = received else {
        unreachable!()
    };
    assert_eq!(
        (to.as_str(), text.as_str()),
        ("447700900123", "Your order ships today")
    );
    // Its progress reaches the ERP as the old bridge reported it, and never
    // goes backwards: the library may report the server's ack and the
    // receipts out of order, and a status overtaken is news to nobody.
    let deadline = Instant::now() + WAIT;
    let statuses = loop {
        let statuses: Vec<String> = receiver
            .received()
            .iter()
            .map(|r| r.json())
            .filter(|b| b["event"] == "message.status" && b["messageId"] == message_id.as_str())
            .map(|b| b["status"].as_str().unwrap().to_string())
            .collect();
        if statuses.last().map(String::as_str) == Some("Read") {
            break statuses;
        }
        assert!(
            Instant::now() < deadline,
            "message.status so far: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let rank = |s: &String| ["Sent", "Delivered", "Read"].iter().position(|k| k == s);
    let ranks: Vec<_> = statuses.iter().map(rank).collect();
    assert!(
        ranks.iter().all(Option::is_some) && ranks.windows(2).all(|w| w[0] < w[1]),
        "only forward: {statuses:?}"
    );

    // Starting again answers Connected and keeps the one socket.
    let live_before = sim.live_connections();
    let (_, again) = call(
        &client,
        reqwest::Method::POST,
        format!("{api}/sessions/start"),
        Some(json!({ "sessionId": "WA-1" })),
    )
    .await;
    assert_eq!(again, json!({ "status": "Connected" }));
    assert_eq!(sim.live_connections(), live_before, "no second socket");

    // DELETE logs out and forgets the session and its files.
    let (status, deleted) = call(
        &client,
        reqwest::Method::DELETE,
        format!("{api}/sessions/WA-1"),
        None,
    )
    .await;
    assert_eq!((status, deleted), (200, json!({ "status": "logged out" })));
    assert!(!data.join("sessions/WA-1").exists());
    let (status, gone) = call(
        &client,
        reqwest::Method::GET,
        format!("{api}/sessions/WA-1/status"),
        None,
    )
    .await;
    assert_eq!(
        (status, gone),
        (404, json!({ "error": "Session not found" }))
    );

    let status = tokio::task::spawn_blocking(move || running.terminate(WAIT))
        .await
        .unwrap();
    assert!(status.success());
}
