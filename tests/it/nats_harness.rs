//! The NATS test harness (`wabridge_sim::nats::TestNats`) against Debian's
//! real `nats-server`, through async-nats as wabridge will use it: a stream
//! drops a resend with the same `Nats-Msg-Id`, and keeps both the message
//! and that memory across a graceful stop and a crash on the same port and
//! store; a subject no stream covers is `StreamNotFound`; TLS with a test
//! CA and a user/password work, and a wrong password or an unknown CA is
//! refused.

use crate::support;

use std::time::{Duration, Instant};

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{self, stream};
use async_nats::{ConnectErrorKind, ConnectOptions, HeaderMap};
use wabridge_sim::nats::{TestCa, TestNats};

const SUBJECT: &str = "wabridge.s1.messages.upsert";
const BODY: &str = r#"{"event":"messages.upsert","id":"m1"}"#;

/// Runs `step` (a stop, kill or start of the server) off the runtime.
async fn blocking(
    mut server: TestNats,
    step: impl FnOnce(&mut TestNats) + Send + 'static,
) -> TestNats {
    tokio::task::spawn_blocking(move || {
        step(&mut server);
        server
    })
    .await
    .unwrap()
}

async fn create_stream(js: &jetstream::Context) {
    js.create_stream(stream::Config {
        name: "WABRIDGE".into(),
        subjects: vec!["wabridge.>".into()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .unwrap();
}

async fn publish(js: &jetstream::Context, id: &str) -> PublishAck {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", id);
    js.publish_with_headers(SUBJECT, headers, BODY.into())
        .await
        .unwrap()
        .await
        .unwrap()
}

/// The stream holds exactly the one message, with its id in the headers.
async fn assert_one_message(js: &jetstream::Context, id: &str) {
    let mut stream = js.get_stream("WABRIDGE").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
    let message = stream.get_raw_message(1).await.unwrap();
    assert_eq!(message.subject.as_str(), SUBJECT);
    assert_eq!(message.payload, BODY.as_bytes());
    assert_eq!(
        message.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some(id)
    );
}

/// Waits until the client is connected again after a restart (it retries
/// on its own, on the same URL).
async fn until_connected(client: &async_nats::Client) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while client.connection_state() != async_nats::connection::State::Connected {
        assert!(Instant::now() < deadline, "the client did not reconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_resend_is_dropped_before_and_after_a_stop_and_a_crash() {
    let server = tokio::task::spawn_blocking(TestNats::start).await.unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut js = jetstream::new(client.clone());
    js.set_timeout(Duration::from_secs(10));
    create_stream(&js).await;

    let first = publish(&js, "delivery-1").await;
    assert_eq!((first.stream.as_str(), first.sequence), ("WABRIDGE", 1));
    assert!(!first.duplicate);
    let again = publish(&js, "delivery-1").await;
    assert!(again.duplicate, "{again:?}");
    assert_eq!(again.sequence, 1, "a duplicate's ack names the original");
    assert_one_message(&js, "delivery-1").await;
    assert!(server.store_dir().join("jetstream").is_dir());

    // A graceful stop, then a crash: each time the same port and store.
    let server = blocking(server, |s| {
        s.stop();
        assert!(!s.is_running());
        s.start_again();
    })
    .await;
    until_connected(&client).await;
    assert_one_message(&js, "delivery-1").await;
    assert!(publish(&js, "delivery-1").await.duplicate);

    let server = blocking(server, |s| {
        s.kill();
        s.start_again();
    })
    .await;
    until_connected(&client).await;
    assert_one_message(&js, "delivery-1").await;
    assert!(publish(&js, "delivery-1").await.duplicate);
    assert_one_message(&js, "delivery-1").await;

    // No stream covers this subject.
    let refused = js
        .publish("elsewhere.s1", BODY.into())
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(
        refused.kind(),
        PublishErrorKind::StreamNotFound,
        "{refused}"
    );

    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
}

#[tokio::test]
async fn tls_with_a_test_ca_and_a_password() {
    support::install_tls();
    let ca = TestCa::new("wabridge NATS test CA");
    let server = TestNats::start_tls_with_password(&ca).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write(&dir.path().join("ca.pem"));
    let options = |password: &str| {
        ConnectOptions::with_user_and_password("bridge".into(), password.into())
            .require_tls(true)
            .connection_timeout(Duration::from_secs(5))
    };

    let client = options("s3cret")
        .add_root_certificates(ca_file.clone())
        .connect(server.url())
        .await
        .unwrap();
    assert!(client.server_info().tls_required);
    // JetStream works over it. (Not `query_account`: async-nats 0.52 cannot
    // parse 2.9's account info, which lacks `reserved_memory`.)
    let js = jetstream::new(client);
    create_stream(&js).await;
    assert_eq!(publish(&js, "delivery-1").await.sequence, 1);

    let wrong_password = options("wrong")
        .add_root_certificates(ca_file)
        .connect(server.url())
        .await
        .unwrap_err();
    assert_eq!(
        wrong_password.kind(),
        ConnectErrorKind::AuthorizationViolation,
        "{wrong_password}"
    );

    let other_ca = TestCa::new("Some other CA").write(&dir.path().join("other-ca.pem"));
    let unknown_ca = options("s3cret")
        .add_root_certificates(other_ca)
        .connect(server.url())
        .await
        .unwrap_err();
    assert!(
        unknown_ca.to_string().contains("invalid peer certificate"),
        "{unknown_ca}"
    );

    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
}
