//! Sessions on the real whatsapp-rust client against the loopback simulator:
//! pairing, restart with saved credentials, and every kind of close, as the
//! operator sees them (state, attempt, credentials, log lines).

use crate::support;

use std::time::Duration;

use support::log_capture::LogCapture;
use support::pairing::backend;
use support::sim::{self, Action, ConnPlan, Handshake, SimEvent, Simulator, Target};
use support::{Changes, until};
use wabridge::engine::backoff::BackoffPolicy;
use wabridge::engine::liveness::Liveness;
use wabridge::engine::whatsapp::WhatsAppBackend;
use wabridge::engine::{Engine, SessionSnapshot, SessionState};
use wabridge::paths::{DataDir, SessionId};

/// Bounds every wait; the longest is the 60 s life of a first QR code.
const WAIT: Duration = Duration::from_secs(90);

fn fast() -> BackoffPolicy {
    BackoffPolicy {
        base: Duration::from_millis(50),
        max: Duration::from_millis(200),
    }
}

fn id(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

/// Pairs a new session through the simulator as the phone would; returns
/// the linked device's number.
async fn pair(engine: &Engine, changes: &mut Changes, sim: &Simulator, name: &str) -> u32 {
    let mut events = sim.events();
    engine.add_session(&id(name), None, None).unwrap();
    let qr = until(changes, name, |s| {
        matches!(s.state, SessionState::QrScanRequired(_))
    })
    .await;
    let SessionState::QrScanRequired(offer) = qr.state else {
        unreachable!()
    };
    assert!(sim.scan(&offer.payload));
    let paired = sim::wait_for(&mut events, WAIT, |e| matches!(e, SimEvent::Paired { .. })).await;
    let SimEvent::Paired { device, .. } = paired else {
        unreachable!()
    };
    until(changes, name, |s| s.state == SessionState::Connected).await;
    u32::from(device)
}

fn store_files(data: &DataDir, name: &str) -> Vec<String> {
    let dir = data.session_dir(&id(name));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.retain(|n| n.starts_with("whatsapp.db"));
    names.sort();
    names
}

/// Ends the shop's live connection (linked as `device`) with `action` and
/// waits for the session to land in a state matching `wanted`.
async fn close_with(
    changes: &mut Changes,
    sim: &Simulator,
    device: u32,
    action: Action,
    wanted: impl Fn(&SessionSnapshot) -> bool,
) -> SessionSnapshot {
    assert!(
        sim.act_on(Target::Device(device), action),
        "no live connection"
    );
    until(changes, "shop", wanted).await
}

async fn reconnect_now(engine: &Engine, changes: &mut Changes) {
    engine
        .command(&id("shop"), wabridge::engine::Command::ReconnectNow)
        .await
        .unwrap();
    until(changes, "shop", |s| s.state == SessionState::Connected).await;
}

fn halted(s: &SessionSnapshot) -> bool {
    matches!(s.state, SessionState::Halted(_))
}

/// One paired session taken through restart and every kind of close; a
/// second, never paired, sits beside it to show sessions fail independently.
/// (Pairing costs the client's 10 s key-share grace, so it happens once.)
#[tokio::test]
async fn a_paired_session_through_every_kind_of_close() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (logs, _guard) = LogCapture::install();
    let sim = Simulator::start().await.unwrap();
    let mut events = sim.events();
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));

    // Pairing: QR refs from the server, the phone scans, 515, back at once.
    let engine = Engine::new(backend(&sim), data.clone(), fast());
    let mut changes = engine.subscribe();
    let device = pair(&engine, &mut changes, &sim, "shop").await;
    let paired = engine.snapshot(&id("shop")).unwrap();
    assert_eq!(paired.phone.as_deref(), Some(sim::PHONE));
    assert_eq!(paired.attempt, 0);
    assert!(
        !logs
            .lines_with("Connection closed for shop. Status: 515.")
            .is_empty()
    );
    assert!(
        logs.lines_with("Attempting to reconnect shop").is_empty(),
        "515 is not a failed attempt"
    );
    engine.shutdown().await;

    // Restart: saved credentials, IK handshake, no QR.
    let engine = Engine::new(backend(&sim), data.clone(), fast());
    let mut changes = engine.subscribe();
    assert_eq!(engine.start_saved().unwrap(), 1);
    until(&mut changes, "shop", |s| s.state == SessionState::Connected).await;
    let handshake = sim::wait_for(&mut events, WAIT, |e| {
        matches!(
            e,
            SimEvent::Handshake {
                handshake: Handshake::Ik,
                ..
            }
        )
    })
    .await;
    let SimEvent::Handshake { username, .. } = handshake else {
        unreachable!()
    };
    assert_eq!(username, Some(sim::PHONE.parse().unwrap()));
    assert_eq!(
        logs.lines_with("QR code 1 of 6 ready for shop").len(),
        1,
        "only the first pairing showed a QR"
    );
    engine.add_session(&id("newcomer"), None, None).unwrap();
    until(&mut changes, "newcomer", |s| {
        matches!(s.state, SessionState::QrScanRequired(_))
    })
    .await;

    // Socket dropped: back off, reconnect, attempt reset.
    let s = close_with(&mut changes, &sim, device, Action::Close, |s| {
        s.attempt == 1
    })
    .await;
    assert_eq!(s.last_close.unwrap().status, 428);
    until(&mut changes, "shop", |s| {
        s.state == SessionState::Connected && s.attempt == 0
    })
    .await;

    // Server failures 500/503 then back: the schedule, then reset.
    for _ in 0..3 {
        sim.push_plan(ConnPlan::failure(503));
    }
    close_with(&mut changes, &sim, device, Action::Close, |s| {
        s.attempt == 4
    })
    .await;
    until(&mut changes, "shop", |s| {
        s.state == SessionState::Connected && s.attempt == 0
    })
    .await;
    // 50 ms, 100 ms, 200 ms, 200 ms, each plus the session's jitter.
    for attempt in 1..=4 {
        let delay = fast().reconnect_delay(attempt, "shop").as_secs_f64();
        let line = format!(
            "Attempting to reconnect shop (attempt {attempt}) in {delay:.1}s with existing credentials..."
        );
        assert!(
            !logs.lines_with(&line).is_empty(),
            "missing {line:?}\n{}",
            logs.text()
        );
    }
    assert!(
        !logs
            .lines_with("Connection closed for shop. Status: 503.")
            .is_empty()
    );

    // A stream error, then the server ends the stream: the close carries
    // the stream error's code. (The library reports no event for stream
    // 429/503, whose close shows as a plain socket close.)
    let s = close_with(
        &mut changes,
        &sim,
        device,
        Action::StreamError { code: "500".into() },
        |s| s.attempt == 1,
    )
    .await;
    assert_eq!(s.last_close.unwrap().status, 500);
    until(&mut changes, "shop", |s| s.state == SessionState::Connected).await;

    // A 515 restart on a live session: back at once, not counted; a second
    // one right after that restart backs off instead of spinning.
    let s = close_with(
        &mut changes,
        &sim,
        device,
        Action::StreamError { code: "515".into() },
        |s| {
            s.last_close.as_ref().is_some_and(|c| c.status == 515)
                && s.state == SessionState::Connected
        },
    )
    .await;
    assert_eq!(s.attempt, 0);
    close_with(
        &mut changes,
        &sim,
        device,
        Action::StreamError { code: "515".into() },
        |s| s.attempt == 1,
    )
    .await;
    until(&mut changes, "shop", |s| s.state == SessionState::Connected).await;
    assert!(
        !logs
            .lines_with("Status: 515. restart required again; backing off")
            .is_empty(),
        "{}",
        logs.text()
    );

    // Replaced by another client: halted, credentials kept, no loop.
    let s = close_with(&mut changes, &sim, device, Action::Replaced, halted).await;
    assert_eq!(
        s.state,
        SessionState::Halted(wabridge::engine::close::HaltReason::Replaced)
    );
    assert_eq!(
        store_files(&data, "shop").first().map(String::as_str),
        Some("whatsapp.db")
    );
    assert_eq!(
        s.next_retry_at, None,
        "no automatic reconnect after replaced"
    );
    let connects = logs.lines_with("WhatsApp Connected: shop").len();
    reconnect_now(&engine, &mut changes).await;
    assert_eq!(
        logs.lines_with("WhatsApp Connected: shop").len(),
        connects + 1
    );

    // Temporary ban, client outdated, account locked: halted with reasons.
    sim.push_plan(ConnPlan::Failure {
        reason: 402,
        ban_code: Some(101),
        expire_secs: Some(3120),
    });
    let s = close_with(&mut changes, &sim, device, Action::Close, halted).await;
    let SessionState::Halted(reason) = &s.state else {
        unreachable!()
    };
    assert!(
        reason
            .describe(wabridge::engine::now())
            .starts_with("temporary ban, lifts in 5"),
        "{reason:?}"
    );
    reconnect_now(&engine, &mut changes).await;
    sim.push_plan(ConnPlan::failure(405));
    let s = close_with(&mut changes, &sim, device, Action::Close, halted).await;
    assert_eq!(
        s.state,
        SessionState::Halted(wabridge::engine::close::HaltReason::ClientOutdated)
    );
    reconnect_now(&engine, &mut changes).await;
    sim.push_plan(ConnPlan::failure(403));
    let s = close_with(&mut changes, &sim, device, Action::Close, halted).await;
    assert_eq!(
        s.state,
        SessionState::Halted(wabridge::engine::close::HaltReason::AccountLocked)
    );
    assert!(
        !store_files(&data, "shop").is_empty(),
        "403 keeps the credentials"
    );
    reconnect_now(&engine, &mut changes).await;

    // The phone unlinks the device: 401 deletes this session's credentials only.
    let s = close_with(
        &mut changes,
        &sim,
        device,
        Action::Failure {
            reason: 401,
            ban_code: None,
            expire_secs: None,
        },
        |s| s.state == SessionState::LoggedOut,
    )
    .await;
    assert_eq!(s.state.api_status(), "Logged Out");
    assert!(
        store_files(&data, "shop").is_empty(),
        "credentials deleted: {:?}",
        store_files(&data, "shop")
    );
    assert!(
        !logs
            .lines_with("Connection closed for shop. Status: 401.")
            .is_empty()
    );

    // The neighbour never noticed.
    let newcomer = engine.snapshot(&id("newcomer")).unwrap();
    assert!(
        matches!(newcomer.state, SessionState::QrScanRequired(_)),
        "{newcomer:?}"
    );
    assert_eq!(newcomer.attempt, 0);

    // Reconnect after a logout pairs again, over a fresh store.
    engine
        .command(&id("shop"), wabridge::engine::Command::ReconnectNow)
        .await
        .unwrap();
    until(&mut changes, "shop", |s| {
        matches!(s.state, SessionState::QrScanRequired(_))
    })
    .await;
    engine.shutdown().await;
}

/// Nobody scans: the codes run out, the session waits for the operator, and
/// "reconnect" offers fresh codes. (One ref of 60 s instead of six.)
#[tokio::test]
async fn unscanned_qr_codes_run_out_and_pairing_restarts_on_request() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::start().await.unwrap();
    sim.push_plan(ConnPlan::QrRefs(1));
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::new(backend(&sim), DataDir::new(tmp.path().join("data")), fast());
    let mut changes = engine.subscribe();
    engine.add_session(&id("shop"), None, None).unwrap();
    let first = until(&mut changes, "shop", |s| {
        matches!(s.state, SessionState::QrScanRequired(_))
    })
    .await;
    let s = until(&mut changes, "shop", halted).await;
    assert_eq!(
        s.state,
        SessionState::Halted(wabridge::engine::close::HaltReason::PairingTimedOut)
    );
    assert_eq!(s.next_retry_at, None, "no automatic loop of fresh codes");
    engine
        .command(&id("shop"), wabridge::engine::Command::ReconnectNow)
        .await
        .unwrap();
    let again = until(&mut changes, "shop", |s| {
        matches!(s.state, SessionState::QrScanRequired(_))
    })
    .await;
    let (SessionState::QrScanRequired(old), SessionState::QrScanRequired(new)) =
        (first.state, again.state)
    else {
        unreachable!()
    };
    assert_ne!(old.payload, new.payload, "a fresh code");
    assert_eq!(new.index, 1, "counting starts over");
    engine.shutdown().await;
}

/// A server that accepts the socket and never answers: the client's
/// handshake timeout ends the attempt, and the session backs off rather
/// than hanging.
#[tokio::test]
async fn a_server_that_never_answers_leads_to_backoff_not_a_hang() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (logs, _guard) = LogCapture::install();
    let sim = Simulator::start().await.unwrap();
    sim.push_plan(ConnPlan::Silent);
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::new(backend(&sim), DataDir::new(tmp.path().join("data")), fast());
    let mut changes = engine.subscribe();
    engine.add_session(&id("shop"), None, None).unwrap();
    let s = until(&mut changes, "shop", |s| s.attempt == 1).await;
    assert_eq!(s.state, SessionState::Disconnected);
    assert!(
        !logs
            .lines_with("Attempting to reconnect shop (attempt 1)")
            .is_empty()
    );
    // The next connection is answered: the session gets on with pairing.
    until(&mut changes, "shop", |s| {
        matches!(s.state, SessionState::QrScanRequired(_))
    })
    .await;
    engine.shutdown().await;
}

/// The simulator's scripted plans are for clients: a bare TCP connect (the
/// network watch's reachability probe) takes none, so a test's script
/// still reaches the session it was written for.
#[tokio::test]
async fn a_reachability_probe_takes_no_connection_plan() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::start().await.unwrap();
    sim.push_plan(ConnPlan::failure(503));
    let probe = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    drop(probe);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::new(backend(&sim), DataDir::new(tmp.path().join("data")), fast());
    let mut changes = engine.subscribe();
    engine.add_session(&id("shop"), None, None).unwrap();
    let s = until(&mut changes, "shop", |s| s.attempt == 1).await;
    assert_eq!(s.last_close.unwrap().status, 503, "the client got the plan");
    engine.shutdown().await;
}

/// A store the real client cannot open is moved aside, never deleted.
#[tokio::test]
async fn a_corrupt_store_is_moved_aside_with_its_bytes() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let dir = data.session_dir(&id("shop"));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = b"SQLite format 3\0 truncated halfway through the header".to_vec();
    std::fs::write(dir.join("whatsapp.db"), &junk).unwrap();
    let engine = Engine::new(backend(&sim), data.clone(), fast());
    let mut changes = engine.subscribe();
    assert_eq!(engine.start_saved().unwrap(), 1);
    let s = until(&mut changes, "shop", halted).await;
    let SessionState::Halted(wabridge::engine::close::HaltReason::StoreUnreadable { moved_to }) =
        s.state
    else {
        panic!("{s:?}")
    };
    assert_eq!(
        std::fs::read(std::path::Path::new(&moved_to).join("whatsapp.db")).unwrap(),
        junk
    );
    assert!(moved_to.contains("shop.corrupt-"), "{moved_to}");
    assert_eq!(
        sim.live_connections(),
        0,
        "nothing dialled with a broken store"
    );
    engine.shutdown().await;
}

/// A connection that stays open but answers nothing more (Wi-Fi gone, a NAT
/// that forgot the flow, a half-open server: no FIN, no RST) is given up
/// within the liveness bound, says so, and comes back with the saved
/// credentials, no QR.
#[tokio::test]
async fn a_silent_connection_is_given_up_within_the_bound_and_reconnected() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (logs, _guard) = LogCapture::install();
    let sim = Simulator::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let bound = Duration::from_secs(3);
    let backend = WhatsAppBackend {
        liveness: Liveness::with_bound(bound),
        ..backend(&sim)
    };
    let engine = Engine::new(backend, data.clone(), fast());
    let mut changes = engine.subscribe();
    let device = pair(&engine, &mut changes, &sim, "shop").await;
    // Quiet but alive: the pings keep it up well past the bound.
    tokio::time::sleep(bound * 2).await;
    let idle = engine.snapshot(&id("shop")).unwrap();
    assert_eq!(
        idle.state,
        SessionState::Connected,
        "an idle session that answers its pings stays connected"
    );
    // Its pings' answers keep the link's freshness current for the views.
    let answered_ago = idle.last_answer_at.expect("answers recorded").elapsed();
    assert!(answered_ago < bound, "last answer {answered_ago:?} ago");

    let muted_at = std::time::Instant::now();
    let closed = close_with(&mut changes, &sim, device, Action::Mute, |s| {
        s.state == SessionState::Disconnected
    })
    .await;
    let noticed_after = muted_at.elapsed();
    let close = closed.last_close.expect("the close is reported");
    assert_eq!(close.status, 408);
    assert!(
        close
            .description
            .starts_with("no answer from WhatsApp for "),
        "{close:?}"
    );
    // The bound, plus one ping's wait and slack for a loaded machine.
    assert!(
        noticed_after < bound + Duration::from_secs(4),
        "noticed after {noticed_after:?}"
    );
    assert!(
        !logs
            .lines_with("Connection closed for shop. Status: 408. no answer from WhatsApp")
            .is_empty(),
        "{}",
        logs.text()
    );

    let back = until(&mut changes, "shop", |s| s.state == SessionState::Connected).await;
    assert_eq!(
        back.phone.as_deref(),
        Some(sim::PHONE),
        "same account, no QR"
    );
    assert_eq!(
        store_files(&data, "shop").first().map(String::as_str),
        Some("whatsapp.db")
    );
    engine.shutdown().await;
}
