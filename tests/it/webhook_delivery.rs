//! The outbox and deliverer against a real HTTP receiver on 127.0.0.1:
//! headers, order, retries on 500 and hangs, dead letters on 4xx, an ERP
//! that is down and comes back, and junk replies.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use support::receiver::{Receiver, Reply};
use support::small_disk;
use wabridge::webhook::deliver::{
    Deliverer, DeliverySettings, Target, now_ms, signature, standard_signature,
};
use wabridge::webhook::outbox::{Enqueued, Outbox};
use wabridge::webhook::outbox_thread::OutboxThread;
use wabridge::webhook::payload::WebhookEvent;

const WAIT: Duration = Duration::from_secs(20);

struct Rig {
    _tmp: tempfile::TempDir,
    outbox: Arc<Outbox>,
    wake: Arc<Notify>,
    target: watch::Sender<Option<Target>>,
}

fn settings() -> DeliverySettings {
    DeliverySettings {
        timeout: Duration::from_millis(500),
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        signing_secret: Some("sign-me".into()),
        ..DeliverySettings::default()
    }
}

fn rig(url: Option<String>, settings: DeliverySettings) -> Rig {
    support::install_tls();
    let tmp = tempfile::tempdir().unwrap();
    let outbox = Arc::new(Outbox::open(&tmp.path().join("outbox.db")).unwrap());
    let deliverer =
        Arc::new(Deliverer::new(OutboxThread::start(outbox.clone()), settings).unwrap());
    let wake = Arc::new(Notify::new());
    let (target, target_rx) = watch::channel(url.map(|url| Target {
        url,
        token: Some("erp-token".into()),
    }));
    tokio::spawn(deliverer.run_session(support::id("WA-1"), target_rx, wake.clone()));
    Rig {
        _tmp: tmp,
        outbox,
        wake,
        target,
    }
}

impl Rig {
    fn send(&self, status: &'static str) -> String {
        let body = WebhookEvent::ConnectionUpdate {
            status,
            error: None,
        }
        .body("WA-1");
        let Enqueued::New { delivery_id } =
            self.outbox.enqueue("WA-1", None, &body, now_ms()).unwrap()
        else {
            panic!("not queued")
        };
        self.wake.notify_one();
        delivery_id
    }
}

#[tokio::test]
async fn delivers_in_order_with_the_old_and_new_headers() {
    let receiver = Receiver::start().await;
    let rig = rig(Some(receiver.url()), settings());
    let ids: Vec<String> = ["Connecting", "QR Scan Required", "Connected"]
        .into_iter()
        .map(|s| rig.send(s))
        .collect();
    let got = receiver.wait_for(3, WAIT).await;
    let statuses: Vec<String> = got
        .iter()
        .map(|r| r.json()["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, ["Connecting", "QR Scan Required", "Connected"]);
    for (request, id) in got.iter().zip(&ids) {
        assert_eq!(
            request.header("x-webhook-token").as_deref(),
            Some("erp-token")
        );
        assert_eq!(
            request.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(request.header("x-wabridge-delivery").as_ref(), Some(id));
        assert_eq!(
            request.header("x-wabridge-signature"),
            Some(signature("sign-me", &request.body))
        );
        assert_eq!(request.header("webhook-id").as_ref(), Some(id));
        let timestamp: i64 = request
            .header("webhook-timestamp")
            .unwrap()
            .parse()
            .unwrap();
        assert!((now_ms() / 1000 - timestamp).abs() < 60);
        assert_eq!(
            request.header("webhook-signature"),
            Some(standard_signature("sign-me", id, timestamp, &request.body))
        );
        assert_eq!(request.json()["sessionId"], "WA-1");
        assert_eq!(request.json()["event"], "connection.update");
    }
    wait_until_empty(&rig).await;
}

async fn wait_until_empty(rig: &Rig) {
    tokio::time::timeout(WAIT, async {
        while rig.outbox.backlog("WA-1").unwrap().pending > 0 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the outbox drains");
}

#[tokio::test]
async fn a_500_is_retried_with_the_same_delivery_id_and_order_is_kept() {
    let receiver = Receiver::start().await;
    receiver.script([Reply::Status(500), Reply::Status(503)]);
    let rig = rig(Some(receiver.url()), settings());
    let first = rig.send("Connecting");
    let second = rig.send("Connected");
    let got = receiver.wait_for(4, WAIT).await;
    let ids: Vec<String> = got
        .iter()
        .map(|r| r.header("x-wabridge-delivery").unwrap())
        .collect();
    assert_eq!(ids, [first.clone(), first.clone(), first, second]);
    wait_until_empty(&rig).await;
}

#[tokio::test]
async fn a_hanging_receiver_times_out_and_is_retried() {
    let receiver = Receiver::start().await;
    receiver.script([Reply::Hang]);
    let rig = rig(Some(receiver.url()), settings());
    let id = rig.send("Connected");
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[1].header("x-wabridge-delivery"), Some(id));
    wait_until_empty(&rig).await;
}

#[tokio::test]
async fn a_400_becomes_a_dead_letter_and_the_queue_moves_on() {
    let receiver = Receiver::start().await;
    receiver.script([Reply::Status(400)]);
    let rig = rig(Some(receiver.url()), settings());
    let refused = rig.send("Connecting");
    rig.send("Connected");
    receiver.wait_for(2, WAIT).await;
    wait_until_empty(&rig).await;
    let dead = rig.outbox.dead_letters("WA-1", 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].delivery_id, refused);
    assert_eq!(dead[0].reason, "HTTP 400");

    // Replay by command: it is delivered again, same id.
    assert!(rig.outbox.replay("WA-1", &refused, now_ms()).unwrap());
    rig.wake.notify_one();
    let got = receiver.wait_for(3, WAIT).await;
    assert_eq!(got[2].header("x-wabridge-delivery"), Some(refused));
}

#[tokio::test]
async fn nothing_is_lost_while_the_erp_is_down() {
    // Reserve a port, close it: connections are refused until the ERP returns.
    let port_holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = port_holder.local_addr().unwrap();
    drop(port_holder);
    let rig = rig(Some(format!("http://{addr}/hook")), settings());
    let ids: Vec<String> = (0..20).map(|_| rig.send("Connected")).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rig.outbox.backlog("WA-1").unwrap().pending, 20);

    let receiver = Receiver::start_on(addr).await;
    let got = receiver.wait_for(20, WAIT).await;
    let delivered: Vec<String> = got
        .iter()
        .map(|r| r.header("x-wabridge-delivery").unwrap())
        .collect();
    assert_eq!(delivered, ids, "every delivery, once, in order");
    wait_until_empty(&rig).await;
}

#[tokio::test]
async fn a_failure_inside_a_run_of_a_long_backlog_keeps_order_and_loses_nothing() {
    // A backlog is sent in runs read at once, each POST acknowledged
    // without waiting; a 500 and a 400 in the middle of a run must still
    // repeat the failed delivery first and bury only the refused one.
    let receiver = Receiver::start().await;
    let rig = rig(None, settings());
    let ids: Vec<String> = (0..100).map(|_| rig.send("Connected")).collect();
    let ok = || Reply::Status(200);
    let mut script: Vec<Reply> = (0..10).map(|_| ok()).collect();
    script.push(Reply::Status(500));
    script.extend((0..10).map(|_| ok()));
    script.push(Reply::Status(400));
    receiver.script(script);
    rig.target
        .send(Some(Target {
            url: receiver.url(),
            token: None,
        }))
        .unwrap();

    let got = receiver.wait_for(101, WAIT).await;
    let sent: Vec<String> = got
        .iter()
        .map(|r| r.header("x-wabridge-delivery").unwrap())
        .collect();
    let expected: Vec<String> = ids[..=10].iter().chain(&ids[10..]).cloned().collect();
    assert_eq!(
        sent, expected,
        "the 500 is repeated at once, then the rest in order"
    );
    wait_until_empty(&rig).await;
    let dead = rig.outbox.dead_letters("WA-1", 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].delivery_id, ids[20],
        "only the refused one is buried"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.received().len(), 101, "nothing is sent twice");
}

#[tokio::test]
async fn a_huge_or_garbage_reply_is_harmless() {
    let receiver = Receiver::start().await;
    receiver.script([Reply::Huge(10 * 1024 * 1024)]);
    let rig = rig(Some(receiver.url()), settings());
    rig.send("Connected");
    receiver.wait_for(1, WAIT).await;
    wait_until_empty(&rig).await;
}

#[tokio::test]
async fn deliveries_wait_while_the_session_has_no_webhook() {
    let receiver = Receiver::start().await;
    let rig = rig(None, settings());
    rig.send("Connected");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(receiver.received().is_empty());
    rig.target
        .send(Some(Target {
            url: receiver.url(),
            token: None,
        }))
        .unwrap();
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("x-webhook-token"), None);
}

#[tokio::test]
async fn expired_deliveries_become_dead_letters() {
    let receiver = Receiver::start().await;
    let rig = rig(
        Some(receiver.url()),
        DeliverySettings {
            max_age: Duration::from_secs(60),
            ..settings()
        },
    );
    let body = WebhookEvent::ConnectionUpdate {
        status: "Connected",
        error: None,
    }
    .body("WA-1");
    rig.outbox
        .enqueue("WA-1", None, &body, now_ms() - 120_000)
        .unwrap();
    rig.wake.notify_one();
    tokio::time::timeout(WAIT, async {
        while rig.outbox.dead_letters("WA-1", 1).unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    assert!(
        rig.outbox.dead_letters("WA-1", 1).unwrap()[0]
            .reason
            .starts_with("expired")
    );
    assert!(receiver.received().is_empty());
}

/// A rig merging up to `max_messages_per_post`, pointed at a loopback
/// address where the ERP is not listening yet (`Receiver::start_on` it).
fn batching_rig_for_an_erp_not_up_yet(max_messages_per_post: usize) -> (Rig, std::net::SocketAddr) {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", support::process::free_port())
        .parse()
        .unwrap();
    let rig = rig(
        Some(format!("http://{addr}/hook")),
        DeliverySettings {
            max_messages_per_post,
            ..settings()
        },
    );
    (rig, addr)
}

/// A `messages.upsert` body of one text message with id `id`.
fn upsert_body(id: &str) -> Vec<u8> {
    let message = wabridge::webhook::payload::WireMessage {
        id: id.into(),
        from: "919075167132".into(),
        text: format!("order {id}"),
        timestamp: 1_764_000_000,
        push_name: Some("Asha".into()),
        media: None,
        is_group: false,
        group_id: None,
        group_name: None,
        reply_to: None,
        from_lid: None,
        from_resolved: true,
        ..Default::default()
    };
    WebhookEvent::MessagesUpsert(vec![message]).body("WA-1")
}

#[tokio::test]
async fn with_batching_on_a_backlog_drains_several_messages_per_post_in_order() {
    // The ERP is down while 7 messages and a status change queue up.
    let (rig, addr) = batching_rig_for_an_erp_not_up_yet(3);
    let upsert = |id: &str| {
        rig.outbox
            .enqueue("WA-1", None, &upsert_body(id), now_ms())
            .unwrap();
    };
    for id in ["m1", "m2", "m3", "m4"] {
        upsert(id);
    }
    rig.send("Connected");
    for id in ["m5", "m6", "m7"] {
        upsert(id);
    }
    rig.wake.notify_one();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let receiver = Receiver::start_on(addr).await;
    // The first batch is answered 500: it comes back whole, same id.
    receiver.script([Reply::Status(500)]);
    let got = receiver.wait_for(5, WAIT).await;
    let posts: Vec<Vec<String>> = got
        .iter()
        .map(|r| match r.json()["event"].as_str().unwrap() {
            "messages.upsert" => r.json()["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_string())
                .collect(),
            other => vec![other.to_string()],
        })
        .collect();
    let want: [&[&str]; 5] = [
        &["m1", "m2", "m3"],
        &["m1", "m2", "m3"],
        // Never merged past another event: order is kept.
        &["m4"],
        &["connection.update"],
        &["m5", "m6", "m7"],
    ];
    assert_eq!(posts, want);
    let ids: Vec<String> = got
        .iter()
        .map(|r| r.header("x-wabridge-delivery").unwrap())
        .collect();
    assert_eq!(ids[0], ids[1], "a retried batch keeps its delivery id");
    assert_eq!(
        got[0].header("x-wabridge-signature"),
        Some(signature("sign-me", &got[0].body))
    );
    wait_until_empty(&rig).await;
}

/// An ERP that refuses large bodies (413): a batch is split in halves until
/// the parts go through, every message arrives once and in order, and only a
/// message refused on its own becomes a dead letter.
#[tokio::test]
async fn a_413_splits_a_batch_instead_of_burying_it() {
    let (rig, addr) = batching_rig_for_an_erp_not_up_yet(50);
    for n in 1..=8 {
        let body = upsert_body(&format!("m{n}"));
        rig.outbox.enqueue("WA-1", None, &body, now_ms()).unwrap();
    }
    let receiver = Receiver::start_on(addr).await;
    // 8 and 4 are too large, then two pairs go through; of the second four,
    // m5 is too large even alone (a huge attachment, say).
    receiver.script([
        Reply::Status(413),
        Reply::Status(413),
        Reply::Status(200),
        Reply::Status(200),
        Reply::Status(413),
        Reply::Status(413),
        Reply::Status(413),
    ]);
    rig.wake.notify_one();
    wait_until_empty(&rig).await;
    let posts: Vec<Vec<String>> = receiver
        .received()
        .iter()
        .map(|r| {
            r.json()["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    let want: [&[&str]; 9] = [
        &["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8"],
        &["m1", "m2", "m3", "m4"],
        &["m1", "m2"],
        &["m3", "m4"],
        &["m5", "m6", "m7", "m8"],
        &["m5", "m6"],
        &["m5"],
        &["m6"],
        &["m7", "m8"],
    ];
    assert_eq!(posts, want);
    let dead = rig.outbox.dead_letters("WA-1", 10).unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].reason, "HTTP 413");
    let m5 = &receiver.received()[6];
    assert_eq!(
        m5.header("x-wabridge-delivery"),
        Some(dead[0].delivery_id.clone())
    );
}

/// The README's Python verifier, run by python3 on a real delivery: it
/// accepts it, and refuses a tampered body, a wrong secret and the same
/// request replayed ten minutes later.
#[tokio::test]
async fn the_readme_verifier_accepts_a_real_delivery_and_refuses_replays() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let snippet = readme
        .split("<!-- verify-snippet")
        .nth(1)
        .and_then(|rest| rest.split("```python\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("the README has the verify snippet");

    let receiver = Receiver::start().await;
    let rig = rig(Some(receiver.url()), settings());
    rig.send("Connected");
    let delivery = receiver.wait_for(1, WAIT).await.remove(0);
    let headers: serde_json::Value = ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .iter()
        .map(|name| (name.to_string(), delivery.header(name).unwrap().into()))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let tmp = tempfile::tempdir().unwrap();
    let body_path = tmp.path().join("body");
    std::fs::write(&body_path, &delivery.body).unwrap();

    let verify = |secret: &str, body_edit: &str, clock_shift: i64| -> String {
        let driver = format!(
            "{snippet}\nimport json, sys\nbody = open(sys.argv[1], 'rb').read(){body_edit}\n\
             time.time = (lambda real: lambda: real() + {clock_shift})(time.time)\n\
             print(verify(sys.argv[2], json.loads(sys.argv[3]), body))\n"
        );
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(&driver)
            .arg(&body_path)
            .arg(secret)
            .arg(headers.to_string())
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert_eq!(verify("sign-me", "", 0), "True");
    assert_eq!(
        verify("sign-me", ".replace(b'Connected', b'Logged Out')", 0),
        "False"
    );
    assert_eq!(verify("not-the-secret", "", 0), "False");
    assert_eq!(
        verify("sign-me", "", 600),
        "False",
        "a replay ten minutes later"
    );
}

/// A full disk: the receiver takes the delivery but its ack cannot be
/// written. The worker backs off instead of re-posting as fast as the
/// receiver answers, the session's backlog names the error, and once there
/// is room again the delivery is acknowledged and the error goes.
#[tokio::test]
async fn a_full_disk_backs_off_shows_the_error_and_recovers() {
    support::install_tls();
    let disk = small_disk::SmallDisk::mount(512);
    let outbox = Arc::new(Outbox::open(&disk.path().join("outbox.db")).unwrap());
    let thread = OutboxThread::start(outbox.clone());
    let retry_base = Duration::from_millis(300);
    let settings = DeliverySettings {
        retry_base,
        retry_max: Duration::from_secs(2),
        ..settings()
    };
    let deliverer = Arc::new(Deliverer::new(thread.clone(), settings).unwrap());
    let receiver = Receiver::start().await;
    let wake = Arc::new(Notify::new());
    let (target, target_rx) = watch::channel(None);
    tokio::spawn(deliverer.run_session(support::id("WA-1"), target_rx, wake.clone()));
    let body = WebhookEvent::ConnectionUpdate {
        status: "Connected",
        error: None,
    }
    .body("WA-1");
    let Enqueued::New { delivery_id } = outbox.enqueue("WA-1", None, &body, now_ms()).unwrap()
    else {
        panic!("not queued")
    };

    assert!(disk.fill() > 0);
    target.send_replace(Some(Target {
        url: receiver.url(),
        token: None,
    }));
    let posts = receiver.wait_for(3, WAIT).await;
    assert!(
        posts
            .iter()
            .all(|p| p.header("x-wabridge-delivery").as_ref() == Some(&delivery_id)),
        "the same delivery, again"
    );
    for pair in posts.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        // Jitter takes at most a fifth off a delay.
        assert!(
            gap >= retry_base.mul_f64(0.8),
            "re-posted after {gap:?}, without backing off"
        );
    }
    let error = thread.backlog(&support::id("WA-1")).write_error;
    assert!(
        error.as_deref().is_some_and(|e| e.contains("full")),
        "the backlog says why: {error:?}"
    );

    disk.free();
    tokio::time::timeout(WAIT, async {
        while outbox.backlog("WA-1").unwrap().pending > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("acknowledged once there is room");
    assert_eq!(thread.backlog(&support::id("WA-1")).write_error, None);
    assert_eq!(thread.backlog(&support::id("WA-1")).pending, 0);
}

/// A retry time written by a run whose clock was a day ahead (the clock
/// was then set right, and the process restarted) holds the delivery for
/// no longer than the longest retry delay, not for a day.
#[tokio::test]
async fn a_retry_stored_under_a_clock_a_day_ahead_is_not_held_for_a_day() {
    let receiver = Receiver::start().await;
    let rig = rig(None, settings());
    let id = rig.send("Connected");
    let head = rig.outbox.head("WA-1").unwrap().unwrap();
    let a_day_ahead = now_ms() + 24 * 3600 * 1000;
    rig.outbox
        .retry_later(&[head.seq], a_day_ahead, "HTTP 503")
        .unwrap();
    rig.target.send_replace(Some(Target {
        url: receiver.url(),
        token: None,
    }));
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("x-wabridge-delivery"), Some(id));
}
