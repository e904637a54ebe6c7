//! The cluster's webhook outbox (`webhook::pg_outbox`) against a real
//! PostgreSQL: the queue semantics of the SQLite outbox (the model of
//! `outbox_model.rs`: per-session order, nothing lost or duplicated, dedupe
//! keys that outlive the ack, dead letters and replay, a restart that keeps
//! every row), delivery through the same worker as `webhook_delivery.rs`
//! (removed only on 2xx, a 500 retried under the same id, a 400 parked and
//! replayed, a batch recorded once), and fencing: a host whose lease moved
//! can neither enqueue nor ack nor bury, and changes nothing, while the new
//! owner delivers the rows under their original delivery ids.

use crate::support;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use tokio::sync::{Notify, watch};

use support::receiver::{Receiver, Reply};
use wabridge::engine::whatsapp::pg_store::{self, Pool, take_lease};
use wabridge::paths::SessionId;
use wabridge::webhook::deliver::{Deliverer, DeliverySettings, Target, now_ms};
use wabridge::webhook::outbox::Enqueued;
use wabridge::webhook::outbox_thread::{DeliveryLimits, OwnedItems};
use wabridge::webhook::payload::{WebhookEvent, WireMessage};
use wabridge::webhook::pg_outbox::{FenceSource, OutboxTable, PgOutbox};
use wabridge_sim::postgres::TestPostgres;

const LEASE: Duration = Duration::from_secs(600);
const WAIT: Duration = Duration::from_secs(20);

fn id(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

async fn database() -> (TestPostgres, Pool) {
    let server = tokio::task::spawn_blocking(TestPostgres::start)
        .await
        .unwrap();
    let pool = pg_store::pool_from_url(&server.url()).unwrap();
    pg_store::migrate(&pool).await.unwrap();
    (server, pool)
}

/// The fences a host holds, changeable by the test.
#[derive(Clone, Default)]
struct Held(Arc<Mutex<BTreeMap<String, u64>>>);

impl Held {
    fn source(&self) -> FenceSource {
        let held = self.0.clone();
        Arc::new(move |id: &SessionId| held.lock().unwrap().get(id.as_str()).copied())
    }

    async fn take(&self, pool: &Pool, session: &str, node: &str) -> u64 {
        let fence = take_lease(pool, session, node, LEASE)
            .await
            .unwrap()
            .expect("the lease is free");
        self.0.lock().unwrap().insert(session.into(), fence);
        fence
    }
}

/// Expires `session`'s lease at once, so another node may take it.
async fn expire(pool: &Pool, session: &str) {
    pool.get()
        .await
        .unwrap()
        .execute(
            "UPDATE session_leases SET expires_at = now() - interval '1 second' WHERE session = $1",
            &[&session],
        )
        .await
        .unwrap();
}

fn item(key: Option<&str>, body: &str) -> OwnedItems {
    vec![(key.map(str::to_string), body.as_bytes().to_vec())]
}

const HEAD: DeliveryLimits = DeliveryLimits {
    max_messages: 1,
    max_bytes: usize::MAX,
    window: 1,
};

async fn head(
    outbox: &PgOutbox,
    session: &SessionId,
) -> Option<wabridge::webhook::outbox::Delivery> {
    outbox
        .next_deliveries(session, HEAD, 0)
        .await
        .unwrap()
        .pop()
}

/// Every row of the table: (session, delivery id, dead, attempts, body).
async fn rows(pool: &Pool) -> Vec<(String, String, i16, i32, Vec<u8>)> {
    pool.get()
        .await
        .unwrap()
        .query(
            "SELECT session, delivery_id, dead, attempts, body FROM webhook_outbox ORDER BY seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    Enqueue { session: u8, key: Option<u8> },
    Ack { session: u8 },
    Retry { session: u8 },
    Bury { session: u8 },
    ReplayFirstDead { session: u8 },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let session = 0u8..3;
    prop_oneof![
        4 => (session.clone(), proptest::option::of(0u8..6)).prop_map(|(session, key)| Op::Enqueue { session, key }),
        3 => session.clone().prop_map(|session| Op::Ack { session }),
        1 => session.clone().prop_map(|session| Op::Retry { session }),
        1 => session.clone().prop_map(|session| Op::Bury { session }),
        1 => session.clone().prop_map(|session| Op::ReplayFirstDead { session }),
        1 => Just(Op::Reopen),
    ]
}

/// What the outbox should hold (as in `outbox_model.rs`).
#[derive(Default)]
struct Model {
    live: BTreeMap<u8, VecDeque<String>>,
    dead: BTreeMap<u8, Vec<(String, String)>>,
    keys: std::collections::HashSet<(u8, u8)>,
}

/// One case of the model on the shared server: its sessions are named
/// after the case, so cases do not see each other's rows.
async fn model_case(pool: &Pool, case: u32, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let held = Held::default();
    let name = |session: u8| id(&format!("c{case}s{session}"));
    for session in 0..3u8 {
        held.take(pool, name(session).as_str(), "one").await;
    }
    let mut outbox = PgOutbox::start(pool.clone(), held.source(), OutboxTable::Webhook)
        .await
        .unwrap();
    let mut model = Model::default();
    let mut counter = 0u32;
    for op in ops {
        match op {
            Op::Enqueue { session, key } => {
                counter += 1;
                let body = format!("m{counter}");
                let dedupe = key.map(|k| format!("{session}|{k}"));
                let result = outbox
                    .enqueue_batch(
                        &name(session),
                        item(dedupe.as_deref(), &body),
                        i64::from(counter),
                    )
                    .await
                    .unwrap();
                let fresh = key.is_none_or(|k| model.keys.insert((session, k)));
                prop_assert_eq!(matches!(result[0], Enqueued::New { .. }), fresh);
                if fresh {
                    model.live.entry(session).or_default().push_back(body);
                }
            }
            Op::Ack { session } => {
                let head = head(&outbox, &name(session)).await;
                let expected = model.live.entry(session).or_default().pop_front();
                prop_assert_eq!(
                    head.as_ref()
                        .map(|h| String::from_utf8(h.body.clone()).unwrap()),
                    expected
                );
                if let Some(head) = head {
                    outbox
                        .ack_and_next(&name(session), vec![head.seq], HEAD, 0)
                        .await
                        .unwrap();
                }
            }
            Op::Retry { session } => {
                if let Some(first) = head(&outbox, &name(session)).await {
                    outbox
                        .retry_later(
                            &name(session),
                            vec![first.seq],
                            first.next_attempt_ms + 1000,
                            "HTTP 500".into(),
                        )
                        .await
                        .unwrap();
                    let again = head(&outbox, &name(session)).await.unwrap();
                    prop_assert_eq!(again.seq, first.seq);
                    prop_assert_eq!(again.attempts, first.attempts + 1);
                }
            }
            Op::Bury { session } => {
                if let Some(first) = head(&outbox, &name(session)).await {
                    outbox
                        .bury(&name(session), vec![first.seq], "HTTP 400".into())
                        .await
                        .unwrap();
                    let body = model.live.entry(session).or_default().pop_front().unwrap();
                    model
                        .dead
                        .entry(session)
                        .or_default()
                        .push((first.delivery_id, body));
                }
            }
            Op::ReplayFirstDead { session } => {
                let dead = model.dead.entry(session).or_default();
                if !dead.is_empty() {
                    let (delivery_id, body) = dead.remove(0);
                    prop_assert!(
                        outbox
                            .replay(&name(session), &delivery_id, 0)
                            .await
                            .unwrap()
                    );
                    let live = model.live.entry(session).or_default();
                    live.push_back(body);
                    let mut sorted: Vec<String> = live.drain(..).collect();
                    sorted.sort_by_key(|b| b[1..].parse::<u32>().unwrap());
                    live.extend(sorted);
                }
            }
            Op::Reopen => {
                drop(outbox);
                outbox = PgOutbox::start(pool.clone(), held.source(), OutboxTable::Webhook)
                    .await
                    .unwrap();
            }
        }
        outbox.flush().await.unwrap();
        for session in 0..3u8 {
            let backlog = outbox.backlog(&name(session));
            prop_assert_eq!(
                backlog.pending as usize,
                model.live.get(&session).map_or(0, VecDeque::len)
            );
            prop_assert_eq!(
                backlog.dead as usize,
                model.dead.get(&session).map_or(0, Vec::len)
            );
        }
    }
    Ok(())
}

#[test]
fn the_pg_outbox_matches_the_model_of_the_sqlite_one() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_server, pool) = runtime.block_on(database());
    let case = std::sync::atomic::AtomicU32::new(0);
    proptest!(ProptestConfig::with_cases(32), |(ops in proptest::collection::vec(op(), 1..60))| {
        let n = case.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        runtime.block_on(model_case(&pool, n, ops))?;
    });
}

#[tokio::test]
async fn enqueues_and_acks_of_a_host_whose_lease_moved_are_refused_and_change_nothing() {
    let (_server, pool) = database().await;
    let (one_held, two_held) = (Held::default(), Held::default());
    one_held.take(&pool, "shop", "one").await;
    let one = PgOutbox::start(pool.clone(), one_held.source(), OutboxTable::Webhook)
        .await
        .unwrap();
    let shop = id("shop");
    let mut ids = Vec::new();
    for n in 0..3 {
        let queued = one
            .enqueue_batch(&shop, item(Some(&format!("k{n}")), &format!("m{n}")), n)
            .await
            .unwrap();
        let Enqueued::New { delivery_id } = &queued[0] else {
            panic!("{queued:?}")
        };
        ids.push(delivery_id.clone());
    }
    let first = head(&one, &shop).await.unwrap();
    // A session this host holds no lease on: nothing is written.
    let refused = one
        .enqueue_batch(&id("other"), item(None, "x"), 0)
        .await
        .unwrap_err();
    assert!(refused.0.contains("fenced"), "{refused}");

    // The lease expires and host two takes it (fence 2).
    expire(&pool, "shop").await;
    assert_eq!(two_held.take(&pool, "shop", "two").await, 2);
    let before = rows(&pool).await;
    for refused in [
        one.enqueue_batch(&shop, item(Some("late"), "late"), 9)
            .await
            .map(|_| ())
            .unwrap_err(),
        one.ack_and_next(&shop, vec![first.seq], HEAD, 0)
            .await
            .map(|_| ())
            .unwrap_err(),
        one.bury(&shop, vec![first.seq], "HTTP 400".into())
            .await
            .unwrap_err(),
        one.retry_later(&shop, vec![first.seq], 5, "HTTP 500".into())
            .await
            .unwrap_err(),
        one.next_deliveries(&shop, HEAD, 0)
            .await
            .map(|_| ())
            .unwrap_err(),
        one.drop_session(&shop).await.map(|_| ()).unwrap_err(),
    ] {
        assert!(refused.0.contains("fenced"), "{refused}");
        assert!(refused.0.contains("fence 2"), "{refused}");
    }
    // A detached ack fails the same way (logged, shown in the backlog).
    one.ack_detached(&shop, vec![first.seq]);
    one.flush().await.unwrap();
    assert!(
        one.backlog(&shop)
            .write_error
            .is_some_and(|e| e.contains("fenced"))
    );
    assert_eq!(rows(&pool).await, before, "the fenced host changed nothing");

    // The new owner starts from the rows: same delivery ids, in order.
    let two = PgOutbox::start(pool.clone(), two_held.source(), OutboxTable::Webhook)
        .await
        .unwrap();
    assert_eq!(two.backlog(&shop).pending, 3);
    let mut seen = Vec::new();
    while let Some(delivery) = head(&two, &shop).await {
        seen.push(delivery.delivery_id.clone());
        two.ack_and_next(&shop, vec![delivery.seq], HEAD, 0)
            .await
            .unwrap();
    }
    assert_eq!(seen, ids);
    // The keys outlive the ack: a redelivered message is not queued again.
    let again = two
        .enqueue_batch(&shop, item(Some("k1"), "m1"), 10)
        .await
        .unwrap();
    assert_eq!(again, [Enqueued::Duplicate]);
}

fn upsert(id: &str) -> OwnedItems {
    let body = WebhookEvent::MessagesUpsert(vec![WireMessage {
        id: id.into(),
        from: "919075167132".into(),
        text: id.into(),
        timestamp: 1,
        push_name: None,
        media: None,
        is_group: false,
        group_id: None,
        group_name: None,
        reply_to: None,
        from_lid: None,
        from_resolved: true,
        ..Default::default()
    }])
    .body("WA-1");
    vec![(Some(format!("WA-1|{id}")), body)]
}

struct Rig {
    _server: TestPostgres,
    pool: Pool,
    outbox: PgOutbox,
    wake: Arc<Notify>,
    _target: watch::Sender<Option<Target>>,
}

async fn rig(url: String, settings: DeliverySettings) -> Rig {
    support::install_tls();
    let (server, pool) = database().await;
    let held = Held::default();
    held.take(&pool, "WA-1", "one").await;
    let outbox = PgOutbox::start(pool.clone(), held.source(), OutboxTable::Webhook)
        .await
        .unwrap();
    let deliverer = Arc::new(Deliverer::new(outbox.clone(), settings).unwrap());
    let wake = Arc::new(Notify::new());
    let (target, target_rx) = watch::channel(Some(Target {
        url,
        token: Some("erp-token".into()),
    }));
    tokio::spawn(deliverer.run_session(id("WA-1"), target_rx, wake.clone()));
    Rig {
        _server: server,
        pool,
        outbox,
        wake,
        _target: target,
    }
}

impl Rig {
    async fn send(&self, message: &str) -> String {
        let queued = self
            .outbox
            .enqueue_batch(&id("WA-1"), upsert(message), now_ms())
            .await
            .unwrap();
        self.wake.notify_one();
        match &queued[0] {
            Enqueued::New { delivery_id } => delivery_id.clone(),
            Enqueued::Duplicate => panic!("not queued"),
        }
    }

    async fn until_empty(&self) {
        tokio::time::timeout(WAIT, async {
            loop {
                let left: i64 = self
                    .pool
                    .get()
                    .await
                    .unwrap()
                    .query_one("SELECT count(*) FROM webhook_outbox WHERE dead = 0", &[])
                    .await
                    .unwrap()
                    .get(0);
                if left == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the outbox drains");
    }
}

fn fast() -> DeliverySettings {
    DeliverySettings {
        timeout: Duration::from_millis(500),
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        ..DeliverySettings::default()
    }
}

#[tokio::test]
async fn delivered_in_order_removed_only_on_2xx_retried_under_one_id_dead_letters_replayed() {
    let receiver = Receiver::start().await;
    receiver.script([
        Reply::Status(500),
        Reply::Status(503),
        Reply::Status(200),
        Reply::Status(400),
    ]);
    let rig = rig(receiver.url(), fast()).await;
    let first = rig.send("a").await;
    let refused = rig.send("b").await;
    let third = rig.send("c").await;
    let got = receiver.wait_for(5, WAIT).await;
    let ids: Vec<String> = got
        .iter()
        .map(|r| r.header("x-wabridge-delivery").unwrap())
        .collect();
    assert_eq!(
        ids,
        [first.clone(), first.clone(), first, refused.clone(), third],
        "retried under one id, in order; the queue moves on past a 400"
    );
    rig.until_empty().await;
    let dead = rig.outbox.dead_letters(&id("WA-1"), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].delivery_id.as_str(), dead[0].reason.as_str()),
        (refused.as_str(), "HTTP 400")
    );

    assert!(
        rig.outbox
            .replay(&id("WA-1"), &refused, now_ms())
            .await
            .unwrap()
    );
    rig.wake.notify_one();
    let got = receiver.wait_for(6, WAIT).await;
    assert_eq!(got[5].header("x-wabridge-delivery"), Some(refused));
    rig.until_empty().await;
    rig.outbox.flush().await.unwrap();
    let backlog = rig.outbox.backlog(&id("WA-1"));
    assert_eq!((backlog.pending, backlog.dead), (0, 0));
}

#[tokio::test]
async fn a_backlog_goes_out_in_recorded_batches_that_keep_their_id() {
    let (server, pool) = database().await;
    let held = Held::default();
    held.take(&pool, "WA-1", "one").await;
    let outbox = PgOutbox::start(pool.clone(), held.source(), OutboxTable::Webhook)
        .await
        .unwrap();
    for message in ["a", "b", "c"] {
        outbox
            .enqueue_batch(&id("WA-1"), upsert(message), now_ms())
            .await
            .unwrap();
    }
    let limits = DeliveryLimits {
        max_messages: 2,
        max_bytes: usize::MAX,
        window: 32,
    };
    let batch = outbox
        .next_deliveries(&id("WA-1"), limits, now_ms())
        .await
        .unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].members.len(), 2);
    assert!(batch[0].delivery_id.ends_with("+1"));
    // Another host (here a restart) reads the same batch under the same id.
    drop(outbox);
    let outbox = PgOutbox::start(pool.clone(), held.source(), OutboxTable::Webhook)
        .await
        .unwrap();
    let again = outbox
        .next_deliveries(&id("WA-1"), limits, now_ms())
        .await
        .unwrap();
    assert_eq!(again[0].delivery_id, batch[0].delivery_id);
    assert_eq!(again[0].body, batch[0].body);
    drop(server);
}

/// A webhook changed through the API of the host serving a session lands in
/// `cluster_sessions` too, so the host that serves it next uses it (before,
/// only the serving host's `session.json` changed).
#[tokio::test]
async fn a_webhook_changed_through_the_serving_host_s_api_updates_the_cluster_row() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    use wabridge::cluster::manager::LeaseStore;

    let (_server, pool) = database().await;
    let leases = wabridge::cluster::store::PgLeases { pool: pool.clone() };
    leases
        .add_session(&id("shop"), Some("http://old.example/hook"), Some("old"))
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let engine = wabridge::engine::Engine::new(
        support::fake_backend::FakeBackend::default(),
        wabridge::paths::DataDir::new(tmp.path().join("data")),
        support::fast_policy(),
    );
    engine
        .add_session(&id("shop"), Some("http://old.example/hook".into()), None)
        .unwrap();
    let mut state = wabridge::api::ApiState::new(engine.clone(), String::new());
    state.start_wait = Duration::from_millis(300);
    state.cluster = Some(wabridge::cluster::control::ClusterControl {
        node: "one".into(),
        leases: leases.clone(),
        take_now: Arc::new(|| {}),
    });
    let request = Request::post("/sessions/start")
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"sessionId":"shop","webhookUrl":"http://new.example/hook","webhookToken":"new"}"#,
        ))
        .unwrap();
    let response = wabridge::api::router(state).oneshot(request).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let row = leases
        .takeable()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.id.as_str() == "shop")
        .unwrap();
    assert_eq!(
        (row.webhook_url.as_deref(), row.webhook_token.as_deref()),
        (Some("http://new.example/hook"), Some("new"))
    );
    engine.shutdown().await;
}
