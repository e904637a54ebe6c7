//! NATS JetStream with a cluster: two real hosts, PostgreSQL, the simulator
//! and Debian's nats-server. Events a host persisted in the database's NATS
//! queue (`nats_outbox`) and could not publish (the server was down) when
//! it was killed go out from the session's next host, under the delivery
//! ids the dead host gave them: the stream holds each message once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use wabridge_sim::nats::TestNats;

use super::cluster::{Erp, Host, Setup, WAIT, busier_first, setup};
use super::nats::{assert_each_stored_once, create_stream, until_stored};
use crate::support::sim::{Addressing, Person};

/// Asha writes `text` to every session; the messages' ids.
async fn to_every_session(setup: &Setup, text: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for (name, device) in &setup.devices {
        let text = format!("{text} {name}");
        let id = setup
            .sim
            .send_text(*device, &Person::asha(), Addressing::LidWithPn, &text)
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

/// The unpublished rows of the database's NATS queue: their delivery ids
/// by session.
async fn queued(setup: &Setup) -> BTreeMap<String, Vec<String>> {
    let conn = setup.leases.pool.get().await.unwrap();
    let rows = conn
        .query(
            "SELECT session, delivery_id FROM nats_outbox WHERE dead = 0 ORDER BY seq",
            &[],
        )
        .await
        .unwrap();
    let mut by_session: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows {
        by_session.entry(row.get(0)).or_default().push(row.get(1));
    }
    by_session
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_a_killed_host_could_not_publish_go_out_from_the_survivor_once() {
    const COUNT: usize = 2;
    let erp = Erp::start().await;
    let setup = setup(COUNT, &erp.url()).await;
    let mut nats = tokio::task::spawn_blocking(TestNats::start).await.unwrap();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    create_stream(&js).await;
    let with_nats = format!("\n[nats]\nurl = \"{}\"\nack_timeout = \"1s\"\n", nats.url());
    let mut a = Host::start_with(&setup, "host-a", &with_nats);
    let mut b = Host::start_with(&setup, "host-b", &with_nats);
    let (dead, survivor) = busier_first(&mut a, &mut b, COUNT).await;
    let moved: Vec<String> = dead.sessions().await.into_keys().collect();

    // One message to every session while it publishes.
    let mut ids = BTreeSet::new();
    ids.extend(to_every_session(&setup, "before").await);
    until_stored(&js, &ids).await;

    // The server stops: what comes next waits in the database's queue.
    tokio::task::block_in_place(|| nats.stop());
    ids.extend(to_every_session(&setup, "while down").await);
    let deadline = Instant::now() + WAIT;
    let stranded = loop {
        let queued = queued(&setup).await;
        if moved.iter().all(|session| queued.contains_key(session)) {
            break queued;
        }
        assert!(Instant::now() < deadline, "not queued: {queued:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Killed with them unpublished; the server comes back; the survivor
    // takes the sessions and publishes what the dead host left.
    dead.running.child.kill().unwrap();
    let _ = dead.running.child.wait();
    tokio::task::block_in_place(|| nats.start_again());
    let deadline = Instant::now() + WAIT;
    while Host::connected(&survivor.sessions().await) < COUNT {
        assert!(Instant::now() < deadline, "the survivor did not take over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ids.extend(to_every_session(&setup, "after").await);
    let all = assert_each_stored_once(&js, &ids).await;
    let published: BTreeSet<&str> = all
        .iter()
        .filter_map(|m| m.headers.get("Nats-Msg-Id").map(String::as_str))
        .collect();
    for session in &moved {
        for delivery in &stranded[session] {
            assert!(
                published.contains(delivery.as_str()),
                "{session}: {delivery}, queued by {}, is not in the stream under its id",
                dead.node
            );
        }
    }
    let left = queued(&setup).await;
    assert!(left.is_empty(), "still queued: {left:?}");
}
