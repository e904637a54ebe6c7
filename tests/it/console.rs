//! The dashboard feed: its wire format (round trip, pinned JSON), the
//! service's socket (backfill, live frames, requests, several dashboards at
//! once, re-attaching after a restart), and what it does with peers it must
//! not serve (another protocol, junk, a hang-up mid-frame, another user).

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use support::fake_backend::FakeBackend;
use support::id;
use support::log_capture::LogCapture;
use wabridge::cluster::status::ReportedStatus;
use wabridge::cluster::view::{ClusterSession, ClusterSnapshot};
use wabridge::console::client::{self, AttachError};
use wabridge::console::wire::{
    self, Backfill, DashboardFrame, LogLine, PROTOCOL, Request, ServiceFrame,
};
use wabridge::console::{Console, Link, LinkEvent, server};
use wabridge::engine::backend::IncomingMessage;
use wabridge::engine::close::HaltReason;
use wabridge::engine::phone::Lookups;
use wabridge::engine::{
    BacklogInfo, Engine, InboundMessage, LastClose, QrOffer, SenderNumber, SessionSnapshot,
    SessionState,
};
use wabridge::paths::DataDir;
use wabridge::session_files::SessionFiles;

const WAIT: Duration = Duration::from_secs(10);

/// A service as `app` runs it: the engine on a scripted backend, its
/// console, and the socket in the data dir.
struct Service {
    engine: Engine,
    console: Console,
    backend: FakeBackend,
    socket: tokio::task::JoinHandle<()>,
    logs: tokio::sync::mpsc::Sender<String>,
}

impl Service {
    fn start(data: &DataDir, message_buffer: usize) -> Service {
        wabridge::paths::create_private_dir(data.root()).unwrap();
        let backend = FakeBackend::default();
        let engine = Engine::new(backend.clone(), data.clone(), support::fast_policy());
        let (logs, log_rx) = tokio::sync::mpsc::channel(64);
        let console = Console::start(engine.clone(), log_rx, message_buffer);
        let socket = server::serve(console.clone(), data).unwrap();
        Service {
            engine,
            console,
            backend,
            socket,
            logs,
        }
    }

    async fn log(&self, text: &str) {
        self.logs.send(text.to_string()).await.unwrap();
    }

    async fn stop(self) {
        self.socket.abort();
        let _ = self.socket.await;
        self.engine.shutdown().await;
    }
}

fn message(id: &str, text: &str) -> IncomingMessage {
    let lookups = Lookups {
        sender: "447700900123@s.whatsapp.net",
        ..Lookups::default()
    };
    support::incoming_message(id, lookups, text)
}

/// The next frame on `link`, skipping nothing; panics after `WAIT`.
async fn next(link: &mut Link) -> LinkEvent {
    tokio::time::timeout(WAIT, link.events.recv())
        .await
        .expect("a frame in time")
        .expect("the link is open")
}

/// Frames until one satisfies `wanted`, which is returned.
async fn until(link: &mut Link, wanted: impl Fn(&LinkEvent) -> bool) -> LinkEvent {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, link.events.recv())
            .await
            .expect("the awaited frame in time")
            .expect("the link is open");
        if wanted(&event) {
            return event;
        }
    }
}

/// Frames until one satisfies `wanted`, which is returned.
async fn until_frame(link: &mut Link, wanted: impl Fn(&ServiceFrame) -> bool) -> ServiceFrame {
    frame(until(link, |e| matches!(e, LinkEvent::Frame(f) if wanted(f))).await)
}

/// Sends `request` and returns the notice it comes back with.
async fn notice_after(link: &mut Link, request: Request) -> String {
    link.requests.send(request).await.unwrap();
    let notice = until_frame(link, |f| matches!(f, ServiceFrame::Notice { .. })).await;
    let ServiceFrame::Notice { text } = notice else {
        unreachable!()
    };
    text
}

fn frame(event: LinkEvent) -> ServiceFrame {
    match event {
        LinkEvent::Frame(frame) => *frame,
        other => panic!("expected a frame, got {other:?}"),
    }
}

async fn attach(data: &DataDir) -> (Link, u32, Backfill) {
    let mut link = client::attach(&data.console_socket()).await.unwrap();
    let ServiceFrame::Hello { protocol, pid, .. } = frame(next(&mut link).await) else {
        panic!("hello first")
    };
    assert_eq!(protocol, PROTOCOL);
    let ServiceFrame::Backfill(backfill) = frame(next(&mut link).await) else {
        panic!("backfill second")
    };
    (link, pid, backfill)
}

fn is_session(event: &LinkEvent, name: &str, state: &str) -> bool {
    matches!(event, LinkEvent::Frame(f) if matches!(&**f,
        ServiceFrame::Session { snapshot } if snapshot.id.as_str() == name && snapshot.state.label() == state))
}

#[tokio::test(start_paused = true)]
async fn every_frame_round_trips_and_countdowns_keep_their_time_left() {
    let now = wabridge::engine::now();
    let in_secs = |s| now + Duration::from_secs(s);
    let snapshots = [
        SessionSnapshot {
            state: SessionState::QrScanRequired(QrOffer {
                payload: "2@ref,noise,identity,adv".into(),
                expires_at: in_secs(20),
                index: 2,
            }),
            ..SessionSnapshot::new(id("pairing"))
        },
        SessionSnapshot {
            state: SessionState::Disconnected,
            attempt: 3,
            next_retry_at: Some(in_secs(40)),
            last_close: Some(LastClose {
                status: 408,
                description: "connection lost".into(),
            }),
            phone: Some("15551234567".into()),
            lid: Some("100000000000001".into()),
            has_webhook: true,
            backlog: Some(BacklogInfo {
                pending: 12,
                dead: 1,
                oldest_at: Some(now - Duration::from_secs(90)),
                write_error: Some("disk full".into()),
                beside: vec![wabridge::engine::TargetBacklog {
                    target: "NATS".into(),
                    backlog: BacklogInfo {
                        pending: 3,
                        ..BacklogInfo::default()
                    },
                }],
            }),
            interrupted_sync: Some(6),
            ..SessionSnapshot::new(id("retrying"))
        },
        SessionSnapshot {
            state: SessionState::Halted(HaltReason::TemporaryBan {
                code: 101,
                lifts_at: in_secs(3600),
            }),
            ..SessionSnapshot::new(id("banned"))
        },
        SessionSnapshot {
            state: SessionState::PairingCode {
                code: "ABCD1234".into(),
                expires_at: in_secs(170),
            },
            ..SessionSnapshot::new(id("code"))
        },
    ];
    let message = Arc::new(InboundMessage {
        session: id("retrying"),
        id: "3EB0".into(),
        timestamp: 1_764_000_000,
        sender: SenderNumber::HiddenLid("200000000000077".into()),
        sender_lid: Some("200000000000077".into()),
        push_name: Some("Carla".into()),
        group: None,
        text: "who am I".into(),
        edited: false,
        deleted: false,
        action: None,
    });
    let frames = [
        ServiceFrame::Hello {
            protocol: PROTOCOL,
            service: "wabridge 0.1.0".into(),
            pid: 42,
        },
        ServiceFrame::Backfill(Backfill {
            instance: 7,
            sessions: snapshots.to_vec(),
            messages: vec![message.clone()],
            logs: vec![LogLine {
                seq: 1,
                text: "WhatsApp Connected: retrying".into(),
            }],
        }),
        ServiceFrame::Session {
            snapshot: snapshots[1].clone(),
        },
        ServiceFrame::SessionRemoved {
            session: id("gone"),
        },
        ServiceFrame::Message { message },
        ServiceFrame::Skipped { count: 3 },
        ServiceFrame::Notice {
            text: "cannot add session".into(),
        },
        ServiceFrame::Cluster {
            view: cluster_view(now),
        },
    ];
    let mut encoded = String::new();
    for frame in &frames {
        let line = serde_json::to_string(frame).unwrap();
        let back: ServiceFrame = serde_json::from_str(&line).unwrap();
        assert_eq!(&back, frame, "{line}");
        encoded.push_str(&line);
        encoded.push('\n');
    }
    let requests = [
        DashboardFrame::Hello {
            protocol: PROTOCOL,
            client: "wabridge 0.1.0".into(),
        },
        DashboardFrame::Request {
            request: Request::Reconnect {
                session: id("retrying"),
            },
        },
        DashboardFrame::Request {
            request: Request::PairWithPhone {
                session: id("code"),
                phone: "15551234567".into(),
            },
        },
        DashboardFrame::Request {
            request: Request::SetWebhook {
                session: id("code"),
                url: "http://127.0.0.1:8000/hook".into(),
                token: None,
            },
        },
        DashboardFrame::Request {
            request: Request::SetNatsSubject {
                session: id("code"),
                subject: "erp.acme".into(),
            },
        },
    ];
    for frame in &requests {
        let line = serde_json::to_string(frame).unwrap();
        assert_eq!(
            &serde_json::from_str::<DashboardFrame>(&line).unwrap(),
            frame
        );
        encoded.push_str(&line);
        encoded.push('\n');
    }
    // The format is a contract with other versions of wabridge: a change
    // here must come with a new PROTOCOL number.
    insta::assert_snapshot!(encoded);
}

/// A cluster as host-a reads it: `remote` on host-b (retrying, its
/// report 2 s old), `orphan` on no host.
fn cluster_view(now: std::time::Instant) -> ClusterSnapshot {
    ClusterSnapshot {
        node: "host-a".into(),
        sessions: vec![
            ClusterSession {
                id: id("orphan"),
                owner: None,
                logged_out: false,
                report: None,
                report_node: None,
                reported_at: None,
                stale: None,
            },
            ClusterSession {
                id: id("remote"),
                owner: Some("host-b".into()),
                logged_out: false,
                report: Some(ReportedStatus {
                    state: "Disconnected".into(),
                    status: "Disconnected".into(),
                    detail: None,
                    phone: Some("15551234567".into()),
                    attempt: 2,
                    next_retry_at: Some(now + Duration::from_secs(8)),
                    last_close: None,
                    has_webhook: true,
                    backlog: None,
                    interrupted_sync: None,
                }),
                report_node: Some("host-b".into()),
                reported_at: Some(now - Duration::from_secs(2)),
                stale: None,
            },
        ],
        read_at: Some(now),
        error: None,
    }
}

#[tokio::test]
async fn in_a_cluster_an_attached_dashboard_gets_the_cluster_and_is_told_who_serves_a_remote_session()
 {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let service = Service::start(&data, 10);
    let now = wabridge::engine::now();
    let (publish, view) = tokio::sync::watch::channel(cluster_view(now));
    service.console.show_cluster(view);
    let (mut link, _, _) = attach(&data).await;
    // Right after the backfill: the cluster as last read.
    let ServiceFrame::Cluster { view } = frame(next(&mut link).await) else {
        panic!("the cluster after the backfill")
    };
    assert_eq!(view.node, "host-a");
    assert_eq!(view.sessions.len(), 2);
    assert_eq!(view.sessions[1].owner.as_deref(), Some("host-b"));

    // Each new reading reaches the dashboard.
    publish.send_modify(|v| v.sessions[0].owner = Some("host-a".into()));
    let ServiceFrame::Cluster { view } = until_frame(
        &mut link,
        |f| matches!(f, ServiceFrame::Cluster { view } if view.sessions[0].owner.is_some()),
    )
    .await
    else {
        unreachable!()
    };
    assert_eq!(view.sessions[0].owner.as_deref(), Some("host-a"));

    // Asked to act on another host's session, the service says whose it is.
    let text = notice_after(
        &mut link,
        Request::Logout {
            session: id("remote"),
        },
    )
    .await;
    assert_eq!(
        text,
        "remote is served by host-b: use its dashboard or DELETE through the API"
    );
    service.stop().await;
}

#[test]
fn a_hostile_session_id_on_the_wire_is_refused() {
    let line = r#"{"type":"request","request":{"type":"logout","session":"../../etc"}}"#;
    assert!(serde_json::from_str::<DashboardFrame>(line).is_err());
    let line = r#"{"type":"logout","session":"../../etc"}"#;
    let error = serde_json::from_str::<Request>(line).unwrap_err();
    assert!(error.to_string().contains("invalid session id"), "{error}");
}

#[tokio::test]
async fn an_attached_dashboard_gets_everything_then_every_change_and_its_requests_work() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let service = Service::start(&data, 3);
    service.engine.add_session(&id("shop"), None, None).unwrap();
    let mut watch = service.engine.watch(&id("shop")).unwrap();
    watch
        .wait_for(|s| s.state == SessionState::Connected)
        .await
        .unwrap();
    for n in 1..=4 {
        service
            .backend
            .deliver("shop", &[message(&format!("M{n}"), &format!("order {n}"))])
            .await
            .unwrap();
    }
    service.log("WhatsApp Connected: shop").await;
    // The log line has reached the console once a second dashboard sees it.
    let mut probe = client::attach(&data.console_socket()).await.unwrap();
    until_frame(&mut probe, |f| match f {
        ServiceFrame::Backfill(b) => !b.logs.is_empty(),
        ServiceFrame::Log { .. } => true,
        _ => false,
    })
    .await;

    let (mut link, pid, backfill) = attach(&data).await;
    assert_eq!(pid, std::process::id());
    assert_eq!(backfill.sessions.len(), 1);
    assert_eq!(backfill.sessions[0].state, SessionState::Connected);
    assert_eq!(backfill.sessions[0].phone.as_deref(), Some("15551234567"));
    let texts: Vec<_> = backfill.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["order 2", "order 3", "order 4"], "the last 3 kept");
    assert_eq!(
        backfill.messages[0].sender,
        SenderNumber::Phone("447700900123".into())
    );
    assert_eq!(backfill.logs[0].text, "WhatsApp Connected: shop");

    // Live: a message, and the state change a request causes.
    service
        .backend
        .deliver("shop", &[message("M5", "order 5")])
        .await
        .unwrap();
    let event = until_frame(&mut link, |f| matches!(f, ServiceFrame::Message { .. })).await;
    let ServiceFrame::Message { message } = event else {
        unreachable!()
    };
    assert_eq!(message.text, "order 5");

    link.requests
        .send(Request::AddSession {
            session: id("second"),
        })
        .await
        .unwrap();
    until(&mut link, |e| is_session(e, "second", "Connected")).await;
    assert!(service.engine.snapshot(&id("second")).is_some());

    link.requests
        .send(Request::Logout {
            session: id("second"),
        })
        .await
        .unwrap();
    until(&mut link, |e| is_session(e, "second", "Logged Out")).await;

    // A request that cannot work comes back as a notice, to this dashboard.
    let text = notice_after(
        &mut link,
        Request::Reconnect {
            session: id("nobody"),
        },
    )
    .await;
    assert!(
        text.contains("nobody") && text.contains("not found"),
        "{text}"
    );

    // The other dashboard saw the same changes.
    until(&mut probe, |e| is_session(e, "second", "Logged Out")).await;

    // A deleted session leaves every dashboard.
    service.engine.delete_session(&id("second")).await.unwrap();
    until_frame(
        &mut link,
        |f| matches!(f, ServiceFrame::SessionRemoved { session } if session.as_str() == "second"),
    )
    .await;
    service.stop().await;
}

/// The session's saved NATS subject once it satisfies `wanted` (a request
/// that worked sends no frame back); panics after `WAIT`.
async fn saved_nats_subject(
    data: &DataDir,
    session: &str,
    wanted: impl Fn(&Option<String>) -> bool,
) -> Option<String> {
    let files = SessionFiles::new(data, &id(session));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let subject = files.load_settings().unwrap().nats_subject;
        if wanted(&subject) {
            return subject;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{session}'s NATS subject is still {subject:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_attached_dashboard_sets_a_sessions_nats_subject_or_turns_nats_off() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let service = Service::start(&data, 10);
    service.engine.add_session(&id("shop"), None, None).unwrap();
    let (mut link, _, _) = attach(&data).await;

    // Saved; this service has no [nats], which the operator is told.
    let text = notice_after(
        &mut link,
        Request::SetNatsSubject {
            session: id("shop"),
            subject: "erp.acme".into(),
        },
    )
    .await;
    assert!(text.contains("no [nats] in its config"), "{text}");
    let subject = saved_nats_subject(&data, "shop", Option::is_some).await;
    assert_eq!(subject.as_deref(), Some("erp.acme"));

    // A prefix a subject cannot start with is refused, and nothing changes
    // (a dashboard of this version checks it first; the service does too).
    let text = notice_after(
        &mut link,
        Request::SetNatsSubject {
            session: id("shop"),
            subject: "erp.*".into(),
        },
    )
    .await;
    assert!(
        text.starts_with("shop: the NATS subject prefix `erp.*` holds '*'"),
        "{text}"
    );
    let files = SessionFiles::new(&data, &id("shop"));
    assert_eq!(
        files.load_settings().unwrap().nats_subject.as_deref(),
        Some("erp.acme")
    );

    // A session this service does not know, like `w`.
    let text = notice_after(
        &mut link,
        Request::SetNatsSubject {
            session: id("nobody"),
            subject: "erp.acme".into(),
        },
    )
    .await;
    assert_eq!(text, "nobody: Session not found");
    assert!(!data.session_dir(&id("nobody")).exists(), "nothing saved");

    // Empty: none of its events go to NATS. On a service that publishes to
    // NATS, nothing more is said.
    service.console.publishes_to_nats();
    link.requests
        .send(Request::SetNatsSubject {
            session: id("shop"),
            subject: String::new(),
        })
        .await
        .unwrap();
    let subject = saved_nats_subject(&data, "shop", |s| s.as_deref() == Some("")).await;
    assert_eq!(subject.as_deref(), Some(""));
    let text = notice_after(
        &mut link,
        Request::SetNatsSubject {
            session: id("nobody"),
            subject: String::new(),
        },
    )
    .await;
    assert_eq!(
        text, "nobody: Session not found",
        "no NATS-off notice came first"
    );
    service.stop().await;
}

#[tokio::test]
async fn a_dashboard_reattaches_when_the_service_comes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let service = Service::start(&data, 100);
    service.engine.add_session(&id("shop"), None, None).unwrap();
    let (mut link, _, first) = attach(&data).await;

    service.stop().await;
    let gone = until(&mut link, |e| matches!(e, LinkEvent::Gone(_))).await;
    let LinkEvent::Gone(why) = gone else {
        unreachable!()
    };
    assert!(why.contains("went away"), "{why}");
    assert!(
        !data.console_socket().exists(),
        "the socket goes with the service"
    );

    // While it is gone, requests are answered locally.
    let text = notice_after(
        &mut link,
        Request::Reconnect {
            session: id("shop"),
        },
    )
    .await;
    assert!(text.contains("not running"), "{text}");

    let service = Service::start(&data, 100);
    service.engine.start_saved().unwrap();
    until_frame(&mut link, |f| matches!(f, ServiceFrame::Hello { .. })).await;
    let ServiceFrame::Backfill(second) = frame(next(&mut link).await) else {
        panic!("a backfill after the hello")
    };
    assert_ne!(second.instance, first.instance, "a new run of the service");
    assert!(second.sessions.iter().any(|s| s.id.as_str() == "shop"));
    service.stop().await;
}

/// A raw connection that has read the service's hello.
async fn raw_connection(
    path: &Path,
) -> (
    BufReader<tokio::net::unix::OwnedReadHalf>,
    tokio::net::unix::OwnedWriteHalf,
) {
    let stream = UnixStream::connect(path).await.unwrap();
    let (read, write) = stream.into_split();
    let mut read = BufReader::new(read);
    let hello: ServiceFrame = wire::read_frame(&mut read, wire::MAX_SERVICE_LINE)
        .await
        .unwrap();
    assert!(matches!(hello, ServiceFrame::Hello { .. }));
    (read, write)
}

#[tokio::test]
async fn a_dashboard_of_another_protocol_is_told_why_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let service = Service::start(&data, 10);

    // A newer dashboard on this service.
    let (mut read, mut write) = raw_connection(&data.console_socket()).await;
    let newer = DashboardFrame::Hello {
        protocol: PROTOCOL + 1,
        client: "wabridge 9.0.0".into(),
    };
    wire::write_frame(&mut write, &newer).await.unwrap();
    let answer: ServiceFrame = wire::read_frame(&mut read, wire::MAX_SERVICE_LINE)
        .await
        .unwrap();
    let ServiceFrame::Refused { reason } = answer else {
        panic!("refused, got {answer:?}")
    };
    assert!(
        reason.contains(&format!("protocol {PROTOCOL}"))
            && reason.contains(&format!("speaks {}", PROTOCOL + 1))
            && reason.contains("same version"),
        "{reason}"
    );
    service.stop().await;

    // This dashboard on a newer service (one that says hello with another
    // number): a clear error, not a broken screen.
    let path = tmp.path().join("newer.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (_read, mut write) = stream.into_split();
        let hello = ServiceFrame::Hello {
            protocol: PROTOCOL + 1,
            service: "wabridge 9.0.0".into(),
            pid: 1,
        };
        wire::write_frame(&mut write, &hello).await.unwrap();
        tokio::time::sleep(WAIT).await;
    });
    let Err(error) = client::attach(&path).await else {
        panic!("attached to a service of another protocol")
    };
    let text = error.to_string();
    assert!(matches!(error, AttachError::Refused(_)), "{text}");
    assert!(
        text.contains("wabridge 9.0.0") && text.contains("same version"),
        "{text}"
    );
}

#[tokio::test]
async fn junk_and_hang_ups_end_only_that_connection() {
    let (logs, _guard) = LogCapture::install();
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let service = Service::start(&data, 10);
    let path = data.console_socket();

    // Junk instead of a hello: the service logs it and closes that one.
    let (mut read, mut write) = raw_connection(&path).await;
    write.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut rest = String::new();
    let n = tokio::time::timeout(WAIT, read.read_line(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "the connection is closed: {rest}");

    // A valid dashboard, then junk among its requests.
    let (mut read, mut write) = raw_connection(&path).await;
    let hello = DashboardFrame::Hello {
        protocol: PROTOCOL,
        client: "test".into(),
    };
    wire::write_frame(&mut write, &hello).await.unwrap();
    let _: ServiceFrame = wire::read_frame(&mut read, wire::MAX_SERVICE_LINE)
        .await
        .unwrap();
    write
        .write_all(b"{\"type\":\"request\",\"type\":\n")
        .await
        .unwrap();
    let mut rest = String::new();
    while tokio::time::timeout(WAIT, read.read_line(&mut rest))
        .await
        .unwrap()
        .unwrap()
        > 0
    {}

    // A frame cut off by a hang-up, and a line far too long.
    let (_read, mut write) = raw_connection(&path).await;
    write
        .write_all(b"{\"type\":\"hello\",\"proto")
        .await
        .unwrap();
    drop(write);
    let (mut read, mut write) = raw_connection(&path).await;
    let long = vec![b'x'; wire::MAX_REQUEST_LINE + 10];
    let _ = write.write_all(&long).await;
    let mut rest = String::new();
    let n = tokio::time::timeout(WAIT, read.read_line(&mut rest))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "closed after an over-long line: {rest}");

    // The service carries on: a dashboard still attaches and is served.
    service.engine.add_session(&id("shop"), None, None).unwrap();
    let (mut link, _, _) = attach(&data).await;
    link.requests
        .send(Request::Reconnect {
            session: id("shop"),
        })
        .await
        .unwrap();
    until(&mut link, |e| is_session(e, "shop", "Connected")).await;
    let text = logs.text();
    assert!(text.contains("not a frame"), "{text}");
    assert!(text.contains("longer than"), "{text}");
    service.stop().await;
}

#[tokio::test]
async fn only_the_data_dirs_owner_can_attach() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let service = Service::start(&data, 10);
    let path = data.console_socket();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the socket is the owner's only");

    // These checks need another user to connect as: CI runs as root.
    assert!(
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0"),
        "this test must run as root to connect as another user (CI does)"
    );
    // Let another user reach the folder, as a careless chmod might.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(data.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = async |socket: &Path| {
        let script = format!(
            "import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect({:?})\nexcept OSError as e:\n    print('refused by the OS:', e.strerror)\n    raise SystemExit\nprint(s.makefile().readline().strip())\n",
            socket.display().to_string()
        );
        let output = tokio::process::Command::new("python3")
            .args(["-c", &script])
            .uid(65534)
            .gid(65534)
            .output()
            .await
            .expect("python3 (.ci/run installs it)");
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr)
    };
    let seen = as_nobody(&path).await;
    assert!(
        seen.contains("refused by the OS: Permission denied"),
        "{seen}"
    );

    // Even with the socket opened to everyone, the service checks who
    // connects and refuses anyone but the owner.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let seen = as_nobody(&path).await;
    assert!(
        seen.contains("\"type\":\"refused\"") && seen.contains("user 65534 does not own"),
        "{seen}"
    );
    service.stop().await;
}
