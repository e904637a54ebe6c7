//! The NATS target (`wabridge::nats::transport::JetStream`) against Debian's
//! real nats-server: over TLS with a test CA and a password in the URL, a
//! delivery is published on `<prefix>.<session>.<event>` with its id as
//! `Nats-Msg-Id` and the session/event/delivery headers, and a resend is
//! acknowledged as a duplicate (the stream keeps one); what the stream can
//! never take is a dead letter with a reason an operator can act on (no
//! stream for the subject, larger than the server takes), what may pass
//! later is retried (a full stream, no server); a wrong password is shown
//! as why it is not connected; a session's prefix comes from its settings.

use crate::support;

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use wabridge::engine::outbound::{Fanout, Outbound};
use wabridge::nats::transport::{JetStream, NatsSettings};
use wabridge::session_files::SessionSettings;
use wabridge::webhook::deliver::{DeliveryVerdict, Transport};
use wabridge::webhook::outbox::Delivery;
use wabridge_sim::nats::{Setup, TestCa, TestNats};

const WAIT: Duration = Duration::from_secs(20);

fn settings(url: String) -> NatsSettings {
    NatsSettings {
        url,
        subject_prefix: "wabridge".into(),
        credentials: None,
        tls_ca: None,
        tls_client: None,
        ack_timeout: Duration::from_secs(2),
    }
}

fn delivery(id: &str, body: &str) -> Delivery {
    Delivery {
        seq: 1,
        delivery_id: id.into(),
        session: "shop".into(),
        body: body.as_bytes().to_vec(),
        created_ms: 0,
        attempts: 0,
        next_attempt_ms: 0,
        members: vec![1],
    }
}

const UPSERT: &str = r#"{"sessionId":"shop","event":"messages.upsert","messages":[{"id":"m1"}]}"#;

async fn connected(settings: &NatsSettings) -> JetStream {
    let target = JetStream::connect(settings).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while !target.is_connected() {
        assert!(Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    target
}

async fn create_stream(js: &jetstream::Context, config: stream::Config) {
    js.create_stream(stream::Config {
        name: "WABRIDGE".into(),
        subjects: vec!["wabridge.>".into()],
        ..config
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn deliveries_are_published_over_tls_and_each_refusal_says_what_it_means() {
    support::install_tls();
    let ca = TestCa::new("wabridge NATS test CA");
    let server = TestNats::start_tls_with_password(&ca).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(format!("nats://bridge:s3cret@127.0.0.1:{}", server.port()));
    settings.tls_ca = Some(ca.write(&dir.path().join("ca.pem")));
    let target = connected(&settings).await;
    let reader =
        async_nats::ConnectOptions::with_user_and_password("bridge".into(), "s3cret".into())
            .add_root_certificates(settings.tls_ca.clone().unwrap())
            .require_tls(true)
            .connect(server.url())
            .await
            .unwrap();
    let js = jetstream::new(reader);
    create_stream(&js, stream::Config::default()).await;
    let prefix = "wabridge".to_string();

    // Published, then resent: one message in the stream, both delivered.
    let sent = delivery("wab-000000000000000000000001", UPSERT);
    assert_eq!(
        target.send(&prefix, &sent).await,
        DeliveryVerdict::Delivered
    );
    assert_eq!(
        target.send(&prefix, &sent).await,
        DeliveryVerdict::Delivered
    );
    let mut stream = js.get_stream("WABRIDGE").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
    let stored = stream.get_raw_message(1).await.unwrap();
    assert_eq!(stored.subject.as_str(), "wabridge.shop.messages.upsert");
    let header = |name: &str| stored.headers.get(name).map(|v| v.as_str().to_string());
    assert_eq!(
        header("Nats-Msg-Id").as_deref(),
        Some("wab-000000000000000000000001")
    );
    assert_eq!(header("Wabridge-Delivery"), header("Nats-Msg-Id"));
    assert_eq!(header("Wabridge-Session").as_deref(), Some("shop"));
    assert_eq!(header("Wabridge-Event").as_deref(), Some("messages.upsert"));
    assert_eq!(&stored.payload[..], UPSERT.as_bytes());
    assert!(target.health().last_success_ms.is_some());

    // No stream takes another prefix: a dead letter naming the subject.
    let other = delivery("wab-000000000000000000000002", UPSERT);
    assert_eq!(
        target.send(&"erp.acme".to_string(), &other).await,
        DeliveryVerdict::Dead(
            "no JetStream stream takes the subject erp.acme.shop.messages.upsert".into()
        )
    );
    // Larger than the server takes (1 MiB): a dead letter, never sent.
    let huge = format!(
        r#"{{"sessionId":"shop","event":"messages.upsert","pad":"{}"}}"#,
        "x".repeat(2 << 20)
    );
    let verdict = target.send(&prefix, &delivery("wab-3", &huge)).await;
    assert!(
        matches!(&verdict, DeliveryVerdict::Dead(why) if why.starts_with("larger than the server's max_payload")),
        "{verdict:?}"
    );
    let (_, last_error) = target.health().last_error.unwrap();
    assert!(last_error.starts_with("larger than"), "{last_error}");
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_full_stream_and_a_server_that_is_gone_are_retried() {
    support::install_tls();
    let mut server = tokio::task::spawn_blocking(TestNats::start).await.unwrap();
    let target = connected(&settings(server.url())).await;
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    create_stream(
        &js,
        stream::Config {
            max_messages: 1,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        },
    )
    .await;
    let prefix = "wabridge".to_string();
    let first = delivery("wab-1", UPSERT);
    assert_eq!(
        target.send(&prefix, &first).await,
        DeliveryVerdict::Delivered
    );
    // Full: it may pass once the stream has room.
    let verdict = target.send(&prefix, &delivery("wab-2", UPSERT)).await;
    assert!(
        matches!(&verdict, DeliveryVerdict::Retry(why) if why.contains("maximum messages")),
        "{verdict:?}"
    );
    // Gone: retried, and nothing is queued in the client meanwhile.
    server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .unwrap();
    let deadline = Instant::now() + WAIT;
    while target.is_connected() {
        assert!(Instant::now() < deadline, "still connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        target.send(&prefix, &delivery("wab-3", UPSERT)).await,
        DeliveryVerdict::Retry("not connected to the NATS server".into())
    );
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_wrong_password_is_shown_as_the_reason_it_is_not_connected() {
    support::install_tls();
    let server = tokio::task::spawn_blocking(|| {
        TestNats::start_with(Setup {
            tls: None,
            user_and_password: Some(("bridge", "s3cret")),
        })
    })
    .await
    .unwrap();
    let target = JetStream::connect(&settings(format!(
        "nats://bridge:wrong@127.0.0.1:{}",
        server.port()
    )))
    .await
    .expect("wabridge starts; the outbox keeps events until the server takes it");
    let deadline = Instant::now() + WAIT;
    let error = loop {
        if let Some((_, error)) = target.health().last_error {
            break error;
        }
        assert!(Instant::now() < deadline, "no error recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!target.is_connected());
    assert!(error.contains("authorization"), "{error}");
    assert!(
        !error.contains("wrong"),
        "the password is never shown: {error}"
    );
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_sessions_prefix_comes_from_its_settings_and_an_empty_one_turns_nats_off() {
    let server = tokio::task::spawn_blocking(TestNats::start).await.unwrap();
    let target = JetStream::connect(&settings(server.url())).await.unwrap();
    let with = |prefix: Option<&str>| SessionSettings {
        nats_subject: prefix.map(str::to_string),
        ..SessionSettings::default()
    };
    assert_eq!(target.target_of(&with(None)).as_deref(), Some("wabridge"));
    assert_eq!(
        target.target_of(&with(Some("erp.acme"))).as_deref(),
        Some("erp.acme")
    );
    assert_eq!(target.target_of(&with(Some(""))), None);
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
}

/// Events queued while the server is away go out the moment it is back,
/// not at the end of a retry backoff grown during the outage (the default
/// retries: 2 s doubling to 5 minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_waiting_for_the_server_go_out_as_soon_as_it_is_back() {
    support::install_tls();
    let mut server = tokio::task::spawn_blocking(TestNats::start).await.unwrap();
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    create_stream(&js, stream::Config::default()).await;
    let tmp = tempfile::tempdir().unwrap();
    let hub = wabridge::nats::open_hub(
        &wabridge::paths::DataDir::new(tmp.path()),
        &settings(server.url()),
        wabridge::webhook::deliver::DeliverySettings::default(),
    )
    .await
    .unwrap();
    let session = wabridge::paths::SessionId::parse("shop").unwrap();
    hub.set_target(&session, Some("wabridge".into()));
    server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .unwrap();
    let deadline = Instant::now() + WAIT;
    while hub.transport().is_connected() {
        assert!(Instant::now() < deadline, "still connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in 0..5 {
        let id = format!("m{n}");
        let event = wabridge::webhook::payload::WebhookEvent::MessageStatus {
            message_id: id.clone(),
            status: "Delivered",
            timestamp: 0,
        };
        hub.publish_batch(&session, &[(&event, Some(&id))])
            .await
            .unwrap();
    }
    // The dashboard's view of the session: the webhook's queue (empty:
    // this session has no webhook) with NATS's beside it.
    let webhook = wabridge::webhook::hub::WebhookHub::open(
        &wabridge::paths::DataDir::new(tmp.path()),
        Default::default(),
    )
    .unwrap();
    let targets: Vec<std::sync::Arc<dyn Outbound>> = vec![webhook, hub.clone()];
    let fanout = Fanout(targets);
    let nats_waiting = |seen: &wabridge::engine::BacklogInfo| {
        let beside: Vec<_> = seen
            .beside
            .iter()
            .map(|b| (b.target.as_str(), b.backlog.pending))
            .collect();
        beside == [("NATS", 5)]
    };
    loop {
        let seen = Outbound::backlog(&fanout, &session);
        assert_eq!(seen.pending, 0);
        if nats_waiting(&seen) {
            break;
        }
        assert!(Instant::now() < deadline, "{seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Long enough for backoffs to have grown past the wait below.
    tokio::time::sleep(Duration::from_secs(7)).await;
    server = tokio::task::spawn_blocking(move || {
        server.start_again();
        server
    })
    .await
    .unwrap();
    while !hub.transport().is_connected() {
        assert!(Instant::now() < deadline + WAIT, "never reconnected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let back = Instant::now();
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    loop {
        let mut stream = js.get_stream("WABRIDGE").await.unwrap();
        if stream.info().await.unwrap().state.messages == 5 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(1),
            "not all out within 1 s of the reconnect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
}
