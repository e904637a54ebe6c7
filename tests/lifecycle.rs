//! Sessions on the real whatsapp-rust client against the loopback simulator:
//! pairing, restart with saved credentials, and every kind of close, as the
//! operator sees them (state, attempt, credentials, log lines).

mod support;

use std::time::Duration;

use support::log_capture::LogCapture;
use support::sim::{self, Action, ConnPlan, Handshake, SimEvent, Simulator, Target};
use wabridge::engine::backoff::BackoffPolicy;
use wabridge::engine::whatsapp::WhatsAppBackend;
use wabridge::engine::{Engine, SessionSnapshot, SessionState};
use wabridge::paths::{DataDir, SessionId};

const WAIT: Duration = Duration::from_secs(40);

fn backend(sim: &Simulator) -> WhatsAppBackend {
    WhatsAppBackend {
        ws_url: sim.ws_url(),
        version: Some((2, 3000, 1015901307)),
        media_cap: 1 << 20,
    }
}

fn fast() -> BackoffPolicy {
    BackoffPolicy {
        base: Duration::from_millis(50),
        max: Duration::from_millis(200),
    }
}

fn id(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

async fn until(
    engine: &Engine,
    name: &str,
    wanted: impl Fn(&SessionSnapshot) -> bool,
) -> SessionSnapshot {
    let mut watch = engine.watch(&id(name)).expect("session exists");
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let current = watch.borrow_and_update().clone();
            if wanted(&current) {
                return current;
            }
            watch.changed().await.expect("supervisor alive");
        }
    })
    .await;
    found.unwrap_or_else(|_| {
        panic!(
            "{name} never matched; last {:?}",
            engine.snapshot(&id(name))
        )
    })
}

/// Pairs a new session through the simulator as the phone would; returns
/// the linked device's number.
async fn pair(engine: &Engine, sim: &Simulator, name: &str) -> u32 {
    let mut events = sim.events();
    engine.add_session(&id(name), None, None).unwrap();
    let qr = until(engine, name, |s| {
        matches!(s.state, SessionState::QrScanRequired(_))
    })
    .await;
    let SessionState::QrScanRequired(offer) = qr.state else {
        unreachable!()
    };
    assert!(sim.act_on(Target::Pairing, Action::Scan(offer.payload.clone())));
    let paired = sim::wait_for(&mut events, WAIT, |e| matches!(e, SimEvent::Paired { .. })).await;
    let SimEvent::Paired { device, .. } = paired else {
        unreachable!()
    };
    until(engine, name, |s| s.state == SessionState::Connected).await;
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
    engine: &Engine,
    sim: &Simulator,
    device: u32,
    action: Action,
    wanted: impl Fn(&SessionSnapshot) -> bool,
) -> SessionSnapshot {
    assert!(
        sim.act_on(Target::Device(device), action),
        "no live connection"
    );
    until(engine, "shop", wanted).await
}

async fn reconnect_now(engine: &Engine) {
    engine
        .command(&id("shop"), wabridge::engine::Command::ReconnectNow)
        .await
        .unwrap();
    until(engine, "shop", |s| s.state == SessionState::Connected).await;
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
    let device = pair(&engine, &sim, "shop").await;
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
    assert_eq!(engine.start_saved().unwrap(), 1);
    until(&engine, "shop", |s| s.state == SessionState::Connected).await;
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
    until(&engine, "newcomer", |s| {
        matches!(s.state, SessionState::QrScanRequired(_))
    })
    .await;

    // Socket dropped: back off, reconnect, attempt reset.
    let s = close_with(&engine, &sim, device, Action::Close, |s| s.attempt == 1).await;
    assert_eq!(s.last_close.unwrap().status, 428);
    until(&engine, "shop", |s| {
        s.state == SessionState::Connected && s.attempt == 0
    })
    .await;

    // Server failures 500/503 then back: the schedule, then reset.
    for _ in 0..3 {
        sim.push_plan(ConnPlan::failure(503));
    }
    close_with(&engine, &sim, device, Action::Close, |s| s.attempt == 4).await;
    until(&engine, "shop", |s| {
        s.state == SessionState::Connected && s.attempt == 0
    })
    .await;
    for (attempt, delay) in [(1, "0.05s"), (2, "0.1s"), (3, "0.2s"), (4, "0.2s")] {
        let line = format!(
            "Attempting to reconnect shop (attempt {attempt}) in {delay} with existing credentials..."
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
        &engine,
        &sim,
        device,
        Action::StreamError { code: "500".into() },
        |s| s.attempt == 1,
    )
    .await;
    assert_eq!(s.last_close.unwrap().status, 500);
    until(&engine, "shop", |s| s.state == SessionState::Connected).await;

    // A 515 restart on a live session: back at once, not counted; a second
    // one right after that restart backs off instead of spinning.
    let s = close_with(
        &engine,
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
        &engine,
        &sim,
        device,
        Action::StreamError { code: "515".into() },
        |s| s.attempt == 1,
    )
    .await;
    until(&engine, "shop", |s| s.state == SessionState::Connected).await;
    assert!(
        !logs
            .lines_with("Status: 515. restart required again; backing off")
            .is_empty(),
        "{}",
        logs.text()
    );

    // Replaced by another client: halted, credentials kept, no loop.
    let s = close_with(&engine, &sim, device, Action::Replaced, halted).await;
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
    reconnect_now(&engine).await;
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
    let s = close_with(&engine, &sim, device, Action::Close, halted).await;
    let SessionState::Halted(reason) = &s.state else {
        unreachable!()
    };
    assert!(
        reason
            .describe(wabridge::engine::now())
            .starts_with("temporary ban, lifts in 5"),
        "{reason:?}"
    );
    reconnect_now(&engine).await;
    sim.push_plan(ConnPlan::failure(405));
    let s = close_with(&engine, &sim, device, Action::Close, halted).await;
    assert_eq!(
        s.state,
        SessionState::Halted(wabridge::engine::close::HaltReason::ClientOutdated)
    );
    reconnect_now(&engine).await;
    sim.push_plan(ConnPlan::failure(403));
    let s = close_with(&engine, &sim, device, Action::Close, halted).await;
    assert_eq!(
        s.state,
        SessionState::Halted(wabridge::engine::close::HaltReason::AccountLocked)
    );
    assert!(
        !store_files(&data, "shop").is_empty(),
        "403 keeps the credentials"
    );
    reconnect_now(&engine).await;

    // The phone unlinks the device: 401 deletes this session's credentials only.
    let s = close_with(
        &engine,
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
    until(&engine, "shop", |s| {
        matches!(s.state, SessionState::QrScanRequired(_))
    })
    .await;
    engine.shutdown().await;
}
