//! The simulator's control API for people (`POST /message`,
//! `wabridge_sim::control`), as the `simulator` example serves it: a
//! person writes to the paired session by number, by LID with the number
//! beside it, by LID alone, in a group and with a document, and the real
//! binary forwards each to a real receiver with the sender as the ERP needs
//! it. Bad requests get a 400 that says what is wrong.

use crate::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::pairing::pair_and_stop;
use support::process::{Running, headless, write_config};
use support::receiver::Receiver;
use support::sim::Simulator;
use wabridge::paths::DataDir;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_write_to_a_paired_session_through_the_control_api() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::start().await.unwrap();
    let receiver = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    pair_and_stop(&sim, &data, "shop", Some(&receiver.url())).await;
    let config = write_config(tmp.path(), &sim.ws_url(), "");
    let _running = {
        let data = data.clone();
        tokio::task::spawn_blocking(move || {
            let mut running = Running::spawn(headless(&config, data.root()));
            running.expect_line("WhatsApp Connected: shop", WAIT);
            running
        })
        .await
        .unwrap()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control = format!("http://{}/message", listener.local_addr().unwrap());
    let routes = wabridge_sim::control::message_routes(sim.clone());
    tokio::spawn(async move { axum::serve(listener, routes).await.unwrap() });
    let client = reqwest::Client::new();
    let post = |body: Value| {
        let (client, control) = (client.clone(), control.clone());
        async move {
            let response = client.post(&control).json(&body).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };

    let mut sent = Vec::new();
    for body in [
        json!({ "text": "by number", "from": "ben", "addressing": "pn" }),
        json!({ "text": "by lid", "from": "asha" }),
        json!({ "text": "hidden", "from": "carla", "addressing": "lid-hidden" }),
        json!({ "text": "in the group", "from": "asha", "group": "120363000000000001@g.us", "subject": "Shop floor" }),
        json!({ "text": "the invoice", "from": "ben", "addressing": "pn",
                "document": { "filename": "invoice.txt", "mimetype": "text/plain", "content": "total 42" } }),
    ] {
        let (status, answer) = post(body.clone()).await;
        assert_eq!(status, 200, "{body}: {answer}");
        sent.push(answer["id"].as_str().unwrap().to_string());
    }
    let got = receiver.wait_for_upserts(sent.len(), WAIT).await;
    let by_id = |id: &str| got.iter().find(|m| m["id"] == id).unwrap().clone();

    let m = by_id(&sent[0]);
    assert_eq!(
        (m["from"].as_str(), m["text"].as_str()),
        (Some("447700900123"), Some("by number"))
    );
    let m = by_id(&sent[1]);
    assert_eq!(m["from"], "919075167132");
    assert_eq!(m["fromLid"], "260477250707536");
    assert_eq!(m["fromResolved"], true);
    let m = by_id(&sent[2]);
    assert_eq!(
        m["fromResolved"], false,
        "a LID alone is never passed off as a number"
    );
    let m = by_id(&sent[3]);
    assert_eq!(m["isGroup"], true);
    assert_eq!(m["groupId"], "120363000000000001@g.us");
    assert_eq!(m["groupName"], "Shop floor");
    assert_eq!(m["from"], "919075167132");
    let m = by_id(&sent[4]);
    assert_eq!(m["text"], "the invoice");
    assert_eq!(m["media"]["filename"], "invoice.txt");
    assert_eq!(m["media"]["mimetype"], "text/plain");
    // Its bytes: the binary fetches media from WhatsApp's media hosts,
    // which the loopback simulator's host is not (messages.rs checks the
    // bytes with an in-process client pointed at it).

    // Junk is refused with what is wrong.
    for (body, says) in [
        (json!({ "text": "x", "from": "zoe" }), "from"),
        (json!({ "text": "x", "addressing": "fax" }), "addressing"),
        (json!({ "text": "x", "group": "not-a-group" }), "@g.us"),
        (json!({ "txt": "x" }), "unknown field"),
    ] {
        let (status, answer) = post(body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(says),
            "{body}: {answer}"
        );
    }
}
