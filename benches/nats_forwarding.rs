//! Forwarding to NATS JetStream with durability on, against Debian's
//! nats-server with JetStream on loopback (file storage), in one run:
//! - wabridge's path (each event persisted in the NATS outbox first, then
//!   published by its session's worker and removed on the stream's ack),
//!   one session and `SESSIONS` sessions at once, each publishing one
//!   event at a time as live messages come;
//! - next to a raw async-nats loop publishing the same bodies with
//!   `Nats-Msg-Id` and awaiting each ack (one loop, and `SESSIONS` loops at
//!   once), to the same server: the goal is at least 0.5× of it;
//! - and next to the webhook path, the same workload POSTed to a loopback
//!   HTTP receiver through the webhook hub;
//! - a backlog left on disk while the server was down, drained once it is
//!   back.
//!
//! Prints figures; asserts none. Run: `cargo bench --bench nats_forwarding`
//! (about a minute; needs nats-server: `bash .ci/run` installs it).

#[path = "shared/live_traffic.rs"]
mod live_traffic;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use axum::body::Bytes;
use wabridge::nats::transport::NatsSettings;
use wabridge::paths::{DataDir, SessionId};
use wabridge::webhook::deliver::{DeliverySettings, Target};
use wabridge::webhook::payload::WebhookEvent;
use wabridge_sim::nats::TestNats;

use live_traffic::{message, publish_all};

const MESSAGES: usize = 5_000;
const SESSIONS: usize = 20;
const BACKLOG: usize = 20_000;

fn sessions(prefix: &str, count: usize) -> Vec<SessionId> {
    (0..count)
        .map(|n| SessionId::parse(&format!("{prefix}-{n}")).unwrap())
        .collect()
}

/// Messages in the stream now.
async fn stored(js: &jetstream::Context) -> u64 {
    let mut stream = js.get_stream("WABRIDGE").await.unwrap();
    stream.info().await.unwrap().state.messages
}

async fn until_stored(js: &jetstream::Context, count: u64) {
    while stored(js).await < count {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `loops` raw publishers at once, each publishing `per_loop` bodies one
/// after the other and awaiting each ack: messages per second.
async fn raw(js: &jetstream::Context, tag: &str, loops: usize, per_loop: usize) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..loops)
        .map(|l| {
            let js = js.clone();
            let tag = tag.to_string();
            tokio::spawn(async move {
                let session = format!("raw-{l}");
                for n in 0..per_loop {
                    let id = format!("{tag}-{l}-{n}");
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Nats-Msg-Id", id.as_str());
                    let subject = format!("wabridge.{session}.messages.upsert");
                    let body = message(&id).body(&session);
                    js.publish_with_headers(subject, headers, body.into())
                        .await
                        .unwrap()
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (loops * per_loop) as f64 / started.elapsed().as_secs_f64()
}

fn rate(count: usize, started: Instant) -> f64 {
    count as f64 / started.elapsed().as_secs_f64()
}

async fn until_posted(seen: &Mutex<HashSet<Vec<u8>>>, count: usize) {
    while seen.lock().unwrap().len() < count {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // On a worker, as every task of the program.
    tokio::spawn(run()).await.unwrap();
}

async fn run() {
    let mut server = tokio::task::spawn_blocking(TestNats::start).await.unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client);
    js.create_stream(stream::Config {
        name: "WABRIDGE".into(),
        subjects: vec!["wabridge.>".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let settings = NatsSettings {
        url: server.url(),
        subject_prefix: "wabridge".into(),
        credentials: None,
        tls_ca: None,
        tls_client: None,
        ack_timeout: Duration::from_secs(5),
    };
    let hub = wabridge::nats::open_hub(
        &DataDir::new(tmp.path().join("nats")),
        &settings,
        DeliverySettings::default(),
    )
    .await
    .unwrap();
    while !hub.transport().is_connected() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let prefix = Some("wabridge".to_string());

    println!("{MESSAGES} messages each run; nats-server with JetStream, file storage, on loopback");
    let raw_one = raw(&js, "raw1", 1, MESSAGES).await;
    let raw_many = raw(&js, "rawN", SESSIONS, MESSAGES / SESSIONS).await;
    let mut base = stored(&js).await;

    let one = sessions("one", 1);
    let many = sessions("many", SESSIONS);
    for session in one.iter().chain(&many) {
        hub.set_target(session, prefix.clone());
    }
    let started = publish_all(&hub, &one, MESSAGES).await;
    until_stored(&js, base + MESSAGES as u64).await;
    let ours_one = rate(MESSAGES, started);
    base = stored(&js).await;
    let started = publish_all(&hub, &many, MESSAGES / SESSIONS).await;
    until_stored(&js, base + MESSAGES as u64).await;
    let ours_many = rate(MESSAGES, started);
    println!(
        "1 session, one event at a time: wabridge {ours_one:.0} msg/s durable vs raw async-nats publish+ack loop {raw_one:.0} msg/s ({:.2}×)",
        ours_one / raw_one
    );
    println!(
        "{SESSIONS} sessions at once: wabridge {ours_many:.0} msg/s vs {SESSIONS} raw loops {raw_many:.0} msg/s ({:.2}×)",
        ours_many / raw_many
    );

    // The webhook path, same workload, to a loopback receiver.
    let seen: Arc<Mutex<HashSet<Vec<u8>>>> = Arc::default();
    let receiver_seen = seen.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: Bytes| {
            let seen = receiver_seen.clone();
            async move {
                seen.lock().unwrap().insert(body.to_vec());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let hooks = wabridge::webhook::hub::WebhookHub::open(
        &DataDir::new(tmp.path().join("webhook")),
        DeliverySettings::default(),
    )
    .unwrap();
    for session in one.iter().chain(&many) {
        hooks.set_target(
            session,
            Some(Target {
                url: url.clone(),
                token: None,
            }),
        );
    }
    let started = publish_all(&hooks, &one, MESSAGES).await;
    until_posted(&seen, MESSAGES).await;
    let hook_one = rate(MESSAGES, started);
    let started = publish_all(&hooks, &many, MESSAGES / SESSIONS).await;
    until_posted(&seen, 2 * MESSAGES).await;
    let hook_many = rate(MESSAGES, started);
    println!(
        "the webhook path, same workload: 1 session {hook_one:.0} msg/s, {SESSIONS} sessions {hook_many:.0} msg/s (NATS: {:.2}× and {:.2}× of it)",
        ours_one / hook_one,
        ours_many / hook_many
    );

    // A backlog left on disk while the server was down, published from
    // the outbox once it is back: the publishing rate itself, without the
    // intake's commits. One session (its worker alone) and SESSIONS.
    for (label, count, raw_rate) in [
        ("1 session", 1, raw_one),
        ("20 sessions", SESSIONS, raw_many),
    ] {
        // Nothing is published while the server is down.
        let before = stored(&js).await;
        server = tokio::task::spawn_blocking(move || {
            server.stop();
            server
        })
        .await
        .unwrap();
        let backlog = sessions(&format!("backlog{count}"), count);
        for session in &backlog {
            hub.set_target(session, prefix.clone());
        }
        let started = Instant::now();
        for n in 0..BACKLOG / count {
            let events: Vec<(String, WebhookEvent)> = backlog
                .iter()
                .map(|s| {
                    let id = format!("{s}-{n}");
                    (id.clone(), message(&id))
                })
                .collect();
            for ((id, event), session) in events.iter().zip(&backlog) {
                hub.publish_batch(session, &[(event, Some(id))])
                    .await
                    .unwrap();
            }
        }
        let taken_in = rate(BACKLOG, started);
        let rss_down = rss_mib();
        server = tokio::task::spawn_blocking(move || {
            server.start_again();
            server
        })
        .await
        .unwrap();
        while !hub.transport().is_connected() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let back = Instant::now();
        until_stored(&js, before + BACKLOG as u64).await;
        let drained = rate(BACKLOG, back);
        println!(
            "backlog of {BACKLOG} on disk over {label} (taken in at {taken_in:.0} msg/s while the server was down; RSS then {rss_down:.1} MiB): published from the outbox at {drained:.0} msg/s once reconnected vs raw {raw_rate:.0} msg/s ({:.2}×)",
            drained / raw_rate
        );
    }
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}
