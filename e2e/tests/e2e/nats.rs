//! NATS JetStream beside the webhook, end to end (issue #17): the real
//! binary, the simulator, Debian's nats-server with JetStream on loopback
//! and a webhook receiver. Messages from simulated people reach the stream
//! on `wabridge.<session>.<event>` with the webhook's body and headers for
//! the session, the event and the delivery id (`Nats-Msg-Id`); nothing is
//! lost and nothing is stored twice when the server is stopped mid-flood
//! or wabridge is killed mid-flood; a subject no stream takes becomes a
//! dead letter that replays once a stream exists.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde_json::Value;
use support::pairing::pair_and_stop;
use support::process::{Running, free_port, headless};
use support::receiver::Receiver;
use support::sim::{Addressing, Person, Simulator};
use wabridge::paths::DataDir;
use wabridge_sim::nats::TestNats;

const WAIT: Duration = Duration::from_secs(60);
const STREAM: &str = "WABRIDGE";

/// One paired session "shop" with a webhook, a NATS server, and the
/// binary's config pointing at both.
struct World {
    sim: Simulator,
    receiver: Receiver,
    nats: TestNats,
    device: u32,
    data: DataDir,
    config: PathBuf,
    api: String,
    _tmp: tempfile::TempDir,
}

impl World {
    async fn new() -> World {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sim = Simulator::start().await.unwrap();
        let receiver = Receiver::start().await;
        let nats = tokio::task::spawn_blocking(TestNats::start).await.unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path().join("data"));
        let device = pair_and_stop(&sim, &data, "shop", Some(&receiver.url())).await;
        let port = free_port();
        let config = tmp.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[api]\nlisten = \"127.0.0.1:{port}\"\n\n\
                 [whatsapp]\nws_url = \"{}\"\nversion = \"2.3000.1015901307\"\n\n\
                 [webhook]\nretry_base = \"50ms\"\nretry_max = \"300ms\"\n\n\
                 [nats]\nurl = \"{}\"\nack_timeout = \"1s\"\n",
                sim.ws_url(),
                nats.url()
            ),
        )
        .unwrap();
        World {
            sim,
            receiver,
            nats,
            device,
            data,
            config,
            api: format!("http://127.0.0.1:{port}"),
            _tmp: tmp,
        }
    }

    /// Starts the binary and waits until "shop" is Connected.
    async fn start(&self) -> Running {
        let (config, data) = (self.config.clone(), self.data.clone());
        tokio::task::spawn_blocking(move || start(&config, &data))
            .await
            .unwrap()
    }

    async fn jetstream(&self) -> jetstream::Context {
        let client = async_nats::connect(self.nats.url()).await.unwrap();
        jetstream::new(client)
    }

    /// Polls `/health` until `done` holds; returns it then.
    async fn until_health(&self, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let health: Value = reqwest::get(format!("{}/health", self.api))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if done(&health) {
                return health;
            }
            assert!(Instant::now() < deadline, "never: {health}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The session's dead letters for NATS (a stream that exists refuses
    /// nothing here: a server stopping or starting must not make any).
    async fn nats_dead_letters(&self) -> Vec<Value> {
        let body: Value = reqwest::get(format!("{}/sessions/shop/dead-letters", self.api))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["deadLetters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| l["target"] == "NATS")
            .cloned()
            .collect()
    }

    async fn text(&self, text: &str) -> String {
        self.sim
            .send_text(self.device, &Person::asha(), Addressing::LidWithPn, text)
            .await
            .unwrap()
    }
}

fn start(config: &Path, data: &DataDir) -> Running {
    let mut running = Running::spawn(headless(config, data.root()));
    running.expect_line("WhatsApp Connected: shop", WAIT);
    running
}

pub(crate) async fn create_stream(js: &jetstream::Context) {
    js.create_stream(jetstream::stream::Config {
        name: STREAM.into(),
        subjects: vec!["wabridge.>".into()],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .unwrap();
}

/// One message of the stream as a consumer reads it.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) subject: String,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: Value,
}

impl Stored {
    pub(crate) fn message_id(&self) -> Option<String> {
        (self.body["event"] == "messages.upsert")
            .then(|| self.body["messages"][0]["id"].as_str().map(str::to_string))
            .flatten()
    }
}

/// Everything in the stream, in its order.
async fn stored(js: &jetstream::Context) -> Vec<Stored> {
    let mut stream = js.get_stream(STREAM).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let Ok(message) = stream.get_raw_message(seq).await else {
            continue;
        };
        let headers = [
            "Nats-Msg-Id",
            "Wabridge-Session",
            "Wabridge-Event",
            "Wabridge-Delivery",
        ]
        .iter()
        .filter_map(|name| {
            let value = message.headers.get(*name)?;
            Some((name.to_string(), value.as_str().to_string()))
        })
        .collect();
        out.push(Stored {
            subject: message.subject.to_string(),
            headers,
            body: serde_json::from_slice(&message.payload).unwrap(),
        });
    }
    out
}

/// Polls the stream until every message of `ids` is in it; returns what it
/// holds then.
pub(crate) async fn until_stored(js: &jetstream::Context, ids: &BTreeSet<String>) -> Vec<Stored> {
    let deadline = Instant::now() + WAIT;
    loop {
        let all = stored(js).await;
        let have: BTreeSet<String> = all.iter().filter_map(Stored::message_id).collect();
        if ids.is_subset(&have) {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} messages in the stream; missing {:?}",
            ids.intersection(&have).count(),
            ids.len(),
            ids.difference(&have).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many times each message is in the stream.
fn copies(all: &[Stored]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for id in all.iter().filter_map(Stored::message_id) {
        *counts.entry(id).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_the_stream_with_their_subjects_headers_and_the_webhooks_body() {
    let world = World::new().await;
    let js = world.jetstream().await;
    create_stream(&js).await;
    let _running = world.start().await;
    let mut ids = BTreeSet::new();
    for n in 0..3 {
        ids.insert(world.text(&format!("order {n}")).await);
    }
    let all = until_stored(&js, &ids).await;
    for message in all.iter().filter(|m| m.message_id().is_some()) {
        assert_eq!(message.subject, "wabridge.shop.messages.upsert");
        assert_eq!(message.headers["Wabridge-Session"], "shop");
        assert_eq!(message.headers["Wabridge-Event"], "messages.upsert");
        assert_eq!(
            message.headers["Nats-Msg-Id"], message.headers["Wabridge-Delivery"],
            "the delivery id is the stream's dedupe id"
        );
        // The webhook's body, to the byte's meaning: one parser for both.
        let id = message.message_id().unwrap();
        let posted = world
            .receiver
            .received()
            .into_iter()
            .map(|r| r.json())
            .find(|body| body["messages"][0]["id"] == id.as_str())
            .expect("the webhook got it too");
        assert_eq!(message.body, posted);
        assert_eq!(message.body["messages"][0]["from"], "919075167132");
    }
    assert!(
        all.iter()
            .any(|m| m.subject == "wabridge.shop.connection.update"
                && m.body["status"] == "Connected"),
        "{all:?}"
    );
}

/// Waits until at least `count` messages are in the stream.
async fn until_some_stored(js: &jetstream::Context, count: usize) {
    let deadline = Instant::now() + WAIT;
    while copies(&stored(js).await).len() < count {
        assert!(
            Instant::now() < deadline,
            "not {count} messages in the stream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every message of `ids` is in the stream exactly once.
pub(crate) async fn assert_each_stored_once(
    js: &jetstream::Context,
    ids: &BTreeSet<String>,
) -> Vec<Stored> {
    let all = until_stored(js, ids).await;
    let counts = copies(&all);
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored twice: {twice:?}");
    assert_eq!(counts.len(), ids.len(), "only the messages sent");
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_stopped_mid_flood_and_started_again_loses_nothing_and_stores_nothing_twice() {
    let mut world = World::new().await;
    let js = world.jetstream().await;
    create_stream(&js).await;
    let _running = world.start().await;
    let mut ids = BTreeSet::new();
    for n in 0..40 {
        ids.insert(world.text(&format!("before {n}")).await);
    }
    // Some are in; the server goes down with the rest on their way.
    until_some_stored(&js, 5).await;
    tokio::task::block_in_place(|| world.nats.stop());
    for n in 0..40 {
        ids.insert(world.text(&format!("while down {n}")).await);
    }
    // Each was acknowledged to WhatsApp: it waits in wabridge's outbox,
    // and /health says so.
    let health = world
        .until_health(|h| h["nats"]["pending"].as_u64() >= Some(40))
        .await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["nats"]["connected"], false, "{health}");
    let metrics = reqwest::get(format!("{}/metrics", world.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("wabridge_nats_connected 0"), "{metrics}");
    let backlog: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("wabridge_nats_backlog{session=\"shop\"} "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no NATS backlog in\n{metrics}"));
    assert!(backlog >= 40, "{metrics}");
    tokio::task::block_in_place(|| world.nats.start_again());
    assert_each_stored_once(&js, &ids).await;
    let health = world.until_health(|h| h["nats"]["pending"] == 0).await;
    assert_eq!(health["nats"]["connected"], true, "{health}");
    assert!(health["nats"]["lastSuccessMs"].is_i64(), "{health}");
    assert_eq!(world.nats_dead_letters().await, Vec::<Value>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_whose_ack_is_lost_is_sent_again_and_dropped_by_the_stream_as_a_duplicate() {
    let world = World::new().await;
    let js = world.jetstream().await;
    create_stream(&js).await;
    let _running = world.start().await;
    let first = world.text("before the stall").await;
    until_stored(&js, &BTreeSet::from([first.clone()])).await;
    // The server stalls: what wabridge publishes now waits in the kernel,
    // unacknowledged; its ack timeout (1 s) passes, and it publishes the
    // same events again, same Nats-Msg-Id, behind the first copies.
    world.nats.pause();
    let mut ids = BTreeSet::from([first]);
    for n in 0..5 {
        ids.insert(world.text(&format!("during the stall {n}")).await);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    world.nats.resume();
    assert_each_stored_once(&js, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wabridge_killed_mid_flood_and_started_again_loses_nothing_and_stores_nothing_twice() {
    let mut world = World::new().await;
    let js = world.jetstream().await;
    create_stream(&js).await;
    let mut running = world.start().await;
    let mut ids = BTreeSet::new();
    for n in 0..30 {
        ids.insert(world.text(&format!("flood {n}")).await);
    }
    until_some_stored(&js, 5).await;
    // With the server down, what comes next can only wait in the outbox
    // when wabridge dies.
    tokio::task::block_in_place(|| world.nats.stop());
    for n in 0..30 {
        ids.insert(world.text(&format!("while down {n}")).await);
    }
    world
        .until_health(|h| h["nats"]["pending"].as_u64() >= Some(30))
        .await;
    running.child.kill().unwrap();
    let _ = running.child.wait();
    tokio::task::block_in_place(|| world.nats.start_again());
    // What was not receipted comes again from WhatsApp; what was
    // receipted is in the NATS outbox on disk.
    let _running = world.start().await;
    for n in 0..10 {
        ids.insert(world.text(&format!("after {n}")).await);
    }
    assert_each_stored_once(&js, &ids).await;
    assert_eq!(world.nats_dead_letters().await, Vec::<Value>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_no_stream_takes_is_a_dead_letter_that_replays_once_a_stream_exists() {
    let world = World::new().await;
    let js = world.jetstream().await;
    let _running = world.start().await;
    let id = world.text("nobody listens yet").await;
    let client = reqwest::Client::new();
    let letters_url = format!("{}/sessions/shop/dead-letters", world.api);
    let deadline = Instant::now() + WAIT;
    let letter = loop {
        let body: Value = client
            .get(&letters_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let found = body["deadLetters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| {
                l["target"] == "NATS"
                    && l["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("wabridge.shop.messages.upsert"))
            })
            .cloned();
        if let Some(letter) = found {
            break letter;
        }
        assert!(Instant::now() < deadline, "no NATS dead letter: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        letter["reason"]
            .as_str()
            .unwrap()
            .starts_with("no JetStream stream takes the subject"),
        "{letter}"
    );
    // The webhook is its own queue: it got the message all the same.
    assert!(
        world
            .receiver
            .received()
            .iter()
            .any(|r| r.json()["messages"][0]["id"] == id.as_str())
    );

    create_stream(&js).await;
    let replay = format!(
        "{letters_url}/{}/replay",
        letter["deliveryId"].as_str().unwrap()
    );
    let answer = client.post(&replay).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let ids = BTreeSet::from([id]);
    let all = until_stored(&js, &ids).await;
    let message = all.iter().find(|m| m.message_id().is_some()).unwrap();
    assert_eq!(
        message.headers["Nats-Msg-Id"],
        letter["deliveryId"].as_str().unwrap(),
        "replayed under its delivery id"
    );
}
