//! Nothing is lost when the ERP is down or the process dies: the real
//! binary receives a flood of encrypted messages from the simulator while
//! the receiver answers 503, is killed with SIGKILL in the middle of it, and
//! started again. The simulated server redelivers what
//! was never receipted (as WhatsApp's offline queue does), the outbox on
//! disk delivers what was persisted, and the receiver ends with every
//! message, each under one delivery id (duplicates only as retries of the
//! same delivery).

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use support::pairing::pair_and_stop;
use support::process::{Running, headless, write_config};
use support::receiver::{Receiver, Reply};
use support::sim::{Addressing, Person, Simulator};
use wabridge::paths::DataDir;

const FLOOD: usize = 300;
const WAIT: Duration = Duration::from_secs(60);

/// Message id → the delivery ids it arrived under.
fn deliveries(receiver: &Receiver) -> BTreeMap<String, BTreeSet<String>> {
    let mut by_message: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for request in receiver.received() {
        let body = request.json();
        if body["event"] != "messages.upsert" {
            continue;
        }
        let delivery = request
            .header("x-wabridge-delivery")
            .expect("every delivery carries its id");
        for message in body["messages"].as_array().unwrap() {
            by_message
                .entry(message["id"].as_str().unwrap().to_string())
                .or_default()
                .insert(delivery.clone());
        }
    }
    by_message
}

fn start(config: &std::path::Path, data: &DataDir) -> Running {
    let mut running = Running::spawn(headless(config, data.root()));
    running.expect_line("WhatsApp Connected: shop", WAIT);
    running
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_flood_loses_nothing_and_duplicates_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::start().await.unwrap();
    let receiver = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let device = pair_and_stop(&sim, &data, "shop", Some(&receiver.url())).await;
    let config = write_config(
        tmp.path(),
        &sim.ws_url(),
        "[webhook]\nretry_base = \"50ms\"\nretry_max = \"200ms\"\n",
    );
    // The ERP is down at first: its first answers are 503s.
    receiver.script((0..8).map(|_| Reply::Status(503)));

    let first = {
        let (config, data) = (config.clone(), data.clone());
        tokio::task::spawn_blocking(move || start(&config, &data))
            .await
            .unwrap()
    };
    let person = Person::asha();
    let send = |n: usize| {
        let (sim, person) = (sim.clone(), person.clone());
        async move {
            sim.send_text(
                device,
                &person,
                Addressing::LidWithPn,
                &format!("message {n}"),
            )
            .await
            .unwrap()
        }
    };
    let mut sent = Vec::new();
    for n in 0..FLOOD / 2 {
        sent.push(send(n).await);
    }
    // Mid-flood, once the client has taken in a few (receipted them to the
    // server) and long before it has all: SIGKILL, no goodbye.
    let deadline = tokio::time::Instant::now() + WAIT;
    while FLOOD / 2 - sim.unreceipted(device) < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client receipted nothing"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let in_flight = sim.unreceipted(device);
    let mut first = first;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert!(
        in_flight > 0,
        "the kill came after the client had caught up"
    );
    // The rest of the flood arrives while it is down.
    for n in FLOOD / 2..FLOOD {
        sent.push(send(n).await);
    }

    let _second = {
        let (config, data) = (config.clone(), data.clone());
        tokio::task::spawn_blocking(move || start(&config, &data))
            .await
            .unwrap()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = deliveries(&receiver);
        if got.len() >= FLOOD && sim.unreceipted(device) == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after the restart: {} of {FLOOD} messages at the webhook, {} unreceipted at the server",
            got.len(),
            sim.unreceipted(device)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = deliveries(&receiver);
    let expected: BTreeSet<String> = sent.into_iter().collect();
    let arrived: BTreeSet<String> = got.keys().cloned().collect();
    assert_eq!(arrived, expected, "every message, and only those");
    for (message, delivery_ids) in &got {
        assert_eq!(
            delivery_ids.len(),
            1,
            "{message} arrived under several delivery ids: {delivery_ids:?}"
        );
    }
}
