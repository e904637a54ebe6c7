//! From one box to a cluster, on the real binaries and the real client
//! against the simulator: a session paired on a single host (SQLite) gets
//! a message while the ERP is down, the host stops, `wabridge migrate-store
//! --to-db` copies it into PostgreSQL, and a host with `[cluster]` on that
//! database serves it: Connected without a QR, as the same linked device;
//! what the single host could not deliver goes out under the delivery ids
//! it had there (once each), and a new message reaches the ERP too.

use crate::support;

use std::time::{Duration, Instant};

use support::process::{Running, free_port, headless, wabridge, write_config};
use support::receiver::Receiver;
use support::screen::qr_from_screen;
use support::sim::{self, Addressing, Person, SimEvent, Simulator};
use wabridge::engine::whatsapp::pg_store;
use wabridge_sim::postgres::TestPostgres;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_box_session_moves_into_the_cluster_without_a_qr_and_loses_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::start().await.unwrap();
    let server = tokio::task::spawn_blocking(TestPostgres::start)
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // The ERP is down while the single host runs: nothing listens there.
    let erp_port = free_port();
    let hook = format!("http://127.0.0.1:{erp_port}/hook");
    let single = tmp.path().join("single");
    std::fs::create_dir_all(&single).unwrap();
    let config = write_config(
        &single,
        &sim.ws_url(),
        &format!(
            "[webhook]\nretry_base = \"200ms\"\nretry_max = \"1s\"\n\n\
             [[sessions]]\nid = \"shop\"\nwebhook_url = \"{hook}\"\nwebhook_token = \"erp-token\"\n"
        ),
    );
    let data = single.join("data");

    // Pairing on one box: the QR printed on stderr is scanned.
    let mut sim_events = sim.events();
    let scanner = sim.clone();
    let data_path = data.clone();
    let running = tokio::task::spawn_blocking(move || {
        let mut running = Running::spawn(headless(&config, &data_path));
        running.expect_line("code 1 of 6", WAIT);
        let deadline = Instant::now() + WAIT;
        let payload = loop {
            if let Some(payload) = qr_from_screen(&running.seen.join("\n")) {
                break payload;
            }
            assert!(Instant::now() < deadline, "no QR on stderr");
            let _ = running.next_line(Duration::from_millis(200));
        };
        assert!(scanner.scan(&payload));
        running.expect_line("WhatsApp Connected: shop", WAIT);
        running
    })
    .await
    .unwrap();
    let device = sim::linked_device(&mut sim_events, WAIT).await;

    // A message arrives; it is persisted (WhatsApp gets its receipt) but
    // the ERP cannot take it.
    let asha = Person::asha();
    let held = sim
        .send_text(device, &asha, Addressing::LidWithPn, "before the move")
        .await
        .unwrap();
    sim::wait_for(
        &mut sim_events,
        WAIT,
        |e| matches!(e, SimEvent::Receipt { id, .. } if *id == held),
    )
    .await;
    // The ERP being down, the host's first attempts failed (each logged
    // with its delivery id); then it stops.
    let tried = tokio::task::spawn_blocking(move || {
        let mut running = running;
        running.expect_line("for shop failed", WAIT);
        let status = running.terminate(WAIT);
        assert!(status.success(), "{status:?}");
        running
            .seen
            .iter()
            .filter_map(|l| l.split("webhook delivery ").nth(1))
            .filter(|rest| rest.contains(" for shop failed"))
            .filter_map(|rest| rest.split(' ').next())
            .map(str::to_string)
            .collect::<std::collections::BTreeSet<String>>()
    })
    .await
    .unwrap();
    assert!(!tried.is_empty());

    // The one command.
    let url = server.url();
    let out = wabridge(&[
        "--data-dir",
        data.to_str().unwrap(),
        "migrate-store",
        "--to-db",
        "--database-url",
        &url,
    ])
    .output()
    .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("shop  copied"), "{report}");
    assert!(report.contains("migrated-to-db-"), "{report}");

    // The held message is the cluster's now, under the single host's id.
    let pool = pg_store::pool_from_url(&url).unwrap();
    let conn = pool.get().await.unwrap();
    let row = conn
        .query_one(
            "SELECT delivery_id FROM webhook_outbox
              WHERE session = 'shop' AND dead = 0
                AND position($1::text::bytea in body) > 0",
            &[&held],
        )
        .await
        .unwrap();
    let delivery_id: String = row.get(0);
    let waiting: Vec<String> = conn
        .query(
            "SELECT delivery_id FROM webhook_outbox WHERE session = 'shop' AND dead = 0",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for id in &tried {
        assert!(waiting.contains(id), "{id} kept its id: {waiting:?}");
    }

    // The ERP is back; a cluster host starts on the database.
    let erp = Receiver::start_on(format!("127.0.0.1:{erp_port}").parse().unwrap()).await;
    let node_dir = tmp.path().join("host-a");
    std::fs::create_dir_all(&node_dir).unwrap();
    let cluster_config = write_config(
        &node_dir,
        &sim.ws_url(),
        &format!(
            "[webhook]\nretry_base = \"200ms\"\nretry_max = \"1s\"\n\n\
             [cluster]\ndatabase_url = \"{url}\"\nnode = \"host-a\"\nlease_ttl_secs = 6\n\
             renew_every_secs = 2\nmargin_secs = 2\ntakeover_every_secs = 1\n"
        ),
    );
    let mut handshakes = sim.events();
    let node_data = node_dir.join("data");
    let mut host = tokio::task::spawn_blocking(move || {
        let mut host = Running::spawn(headless(&cluster_config, &node_data));
        host.expect_line("WhatsApp Connected: shop", WAIT);
        host
    })
    .await
    .unwrap();
    assert!(
        !host.seen.iter().any(|l| l.contains("code 1 of 6")),
        "no QR:\n{}",
        host.seen.join("\n")
    );
    let login = sim::wait_for(&mut handshakes, WAIT, |e| {
        matches!(
            e,
            SimEvent::Handshake {
                username: Some(_),
                ..
            }
        )
    })
    .await;
    let SimEvent::Handshake {
        device: logged_in, ..
    } = login
    else {
        unreachable!()
    };
    assert_eq!(logged_in, Some(device), "the same linked device");

    // What the single host could not deliver arrives, under its id.
    let got = erp.wait_for_upserts(1, WAIT).await;
    assert!(got.iter().any(|m| m["id"] == held), "{got:?}");
    let delivery = erp
        .received()
        .into_iter()
        .find(|r| {
            let body = r.json();
            body["event"] == "messages.upsert" && body["messages"][0]["id"] == held
        })
        .unwrap();
    assert_eq!(
        delivery.header("x-wabridge-delivery").as_deref(),
        Some(delivery_id.as_str())
    );
    assert_eq!(
        delivery.header("x-webhook-token").as_deref(),
        Some("erp-token")
    );

    // And the session carries on: a new message, decrypted on the Signal
    // state that moved, reaches the ERP with the sender's number.
    let after = sim
        .send_text(device, &asha, Addressing::LidHidden, "after the move")
        .await
        .unwrap();
    let got = erp.wait_for_upserts(2, WAIT).await;
    let message = got
        .iter()
        .find(|m| m["id"] == after)
        .unwrap_or_else(|| panic!("{after} not delivered: {got:?}"));
    assert_eq!(message["text"], "after the move");
    assert_eq!(
        message["from"], "919075167132",
        "from the mappings that moved"
    );
    let held_copies = erp
        .received()
        .iter()
        .filter(|r| {
            let body = r.json();
            body["event"] == "messages.upsert" && body["messages"][0]["id"] == held
        })
        .count();
    assert_eq!(held_copies, 1, "delivered once");
    let delivered: Vec<String> = erp
        .received()
        .iter()
        .filter_map(|r| r.header("x-wabridge-delivery"))
        .collect();
    for id in &tried {
        assert!(
            delivered.contains(id),
            "{id}, tried by the single host, reached the ERP under that id: {delivered:?}"
        );
    }

    tokio::task::spawn_blocking(move || host.terminate(WAIT))
        .await
        .unwrap();
}
