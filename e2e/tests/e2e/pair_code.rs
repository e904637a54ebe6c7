//! Pairing by a code typed on the phone, on the real whatsapp-rust client
//! against the simulator: the operator asks to pair by phone number, the
//! session shows the code the companion got, and the phone's user types it
//! (or types a wrong one, or is asked for a passkey first).

use crate::support;
use support::Changes;

use std::time::Duration;

use support::pairing::backend;
use support::sim::{self, SimEvent, Simulator};
use tokio::sync::broadcast;
use wabridge::engine::backoff::BackoffPolicy;
use wabridge::engine::{Command, Engine, EngineEvent, SessionSnapshot, SessionState};
use wabridge::paths::{DataDir, SessionId};

/// Bounds every wait: pairing by code runs four PBKDF2 derivations of 2^17
/// rounds (two on each side), slow in a debug build.
const WAIT: Duration = Duration::from_secs(90);

const NAME: &str = "shop";

fn id() -> SessionId {
    SessionId::parse(NAME).unwrap()
}

/// Consumes changes until the session matches `wanted`.
async fn until(
    changes: &mut Changes,
    wanted: impl Fn(&SessionSnapshot) -> bool,
) -> SessionSnapshot {
    support::until(changes, NAME, wanted).await
}

/// A new session on the real client, switched from its QR code to pairing
/// by phone number, as an operator does.
struct Pairing {
    sim: Simulator,
    events: broadcast::Receiver<SimEvent>,
    engine: Engine,
    changes: Changes,
    /// The code the session shows.
    code: String,
    /// The ref the server gave the companion that asked for the code.
    pairing_ref: String,
    _data: tempfile::TempDir,
}

async fn pair_with_phone() -> Pairing {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::start().await.unwrap();
    let mut events = sim.events();
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let policy = BackoffPolicy {
        base: Duration::from_millis(50),
        max: Duration::from_millis(200),
    };
    let engine = Engine::new(backend(&sim), data, policy);
    let mut changes = engine.subscribe();
    engine.add_session(&id(), None, None).unwrap();
    until(&mut changes, |s| {
        matches!(s.state, SessionState::QrScanRequired(_))
    })
    .await;

    engine
        .command(&id(), Command::PairWithPhone("15551234567".into()))
        .await
        .unwrap();
    let shown = until(&mut changes, |s| {
        matches!(s.state, SessionState::PairingCode { .. })
    })
    .await;
    let SessionState::PairingCode { code, .. } = shown.state else {
        unreachable!()
    };
    assert_eq!(code.len(), 8, "an 8-character code: {code:?}");
    let requested = sim::wait_for(&mut events, WAIT, |e| {
        matches!(e, SimEvent::PairCodeRequested { .. })
    })
    .await;
    let SimEvent::PairCodeRequested {
        conn,
        phone,
        pairing_ref,
    } = requested
    else {
        unreachable!()
    };
    assert_eq!(phone, "15551234567", "the number the operator gave");
    let request = sim.code_request(conn).expect("recorded on its connection");
    assert_eq!(request.wrapped_ephemeral.len(), 80);
    assert_eq!(request.pairing_ref, pairing_ref);
    Pairing {
        sim,
        events,
        engine,
        changes,
        code,
        pairing_ref,
        _data: tmp,
    }
}

/// The phone links the device, the server restarts the stream (515) and the
/// session connects as the account's number.
async fn expect_linked(p: &mut Pairing) {
    let paired = sim::wait_for(&mut p.events, WAIT, |e| {
        matches!(e, SimEvent::Paired { .. })
    })
    .await;
    let SimEvent::Paired { pairing_ref, .. } = paired else {
        unreachable!()
    };
    assert_eq!(pairing_ref, p.pairing_ref, "linked by the code, not a QR");
    let connected = until(&mut p.changes, |s| s.state == SessionState::Connected).await;
    assert_eq!(connected.phone.as_deref(), Some(sim::PHONE));
    let now = p.engine.snapshot(&id()).unwrap();
    assert_eq!(now.state, SessionState::Connected);
    assert_eq!(now.phone.as_deref(), Some("15551234567"));
}

#[tokio::test]
async fn the_code_typed_on_the_phone_links_the_session() {
    let mut p = pair_with_phone().await;

    // As the person reads it off the screen: dashed, lower case.
    let typed = format!("{}-{}", &p.code[..4], &p.code[4..]).to_lowercase();
    assert!(
        p.sim.enter_pair_code(&typed),
        "a companion asked for a code"
    );
    expect_linked(&mut p).await;
    p.engine.shutdown().await;
}

#[tokio::test]
async fn a_phone_that_demands_a_passkey_shows_passkey_required() {
    let mut p = pair_with_phone().await;

    assert!(p.sim.demand_passkey(), "a device is being linked");
    sim::wait_for(&mut p.events, WAIT, |e| {
        matches!(e, SimEvent::PasskeyDemanded { .. })
    })
    .await;
    let s = until(&mut p.changes, |s| s.state == SessionState::PasskeyRequired).await;
    assert_eq!(s.phone, None, "nothing is linked yet");
    p.engine.shutdown().await;
}

#[tokio::test]
async fn a_wrong_code_does_not_link_and_the_right_one_then_does() {
    let mut p = pair_with_phone().await;

    // Another valid code: the first character moved along the alphabet.
    const ALPHABET: &str = "123456789ABCDEFGHJKLMNPQRSTVWXYZ";
    let first = ALPHABET.find(&p.code[..1]).expect("a code character");
    let other = ALPHABET.as_bytes()[(first + 1) % ALPHABET.len()] as char;
    let wrong = format!("{other}{}", &p.code[1..]);
    assert!(p.sim.enter_pair_code(&wrong));

    // The phone answers, the companion sends its key bundle, and the phone
    // cannot open it: nothing is linked, the session still waits to pair
    // (showing its code, or the QR code that rotates beside it).
    let rejected = sim::wait_for(&mut p.events, WAIT, |e| {
        matches!(
            e,
            SimEvent::PairCodeRejected { .. } | SimEvent::Paired { .. }
        )
    })
    .await;
    assert!(
        matches!(rejected, SimEvent::PairCodeRejected { ref pairing_ref, .. } if *pairing_ref == p.pairing_ref),
        "a wrong code must not link: {rejected:?}"
    );
    let now = p.engine.snapshot(&id()).unwrap();
    assert_eq!(now.phone, None);
    assert!(
        matches!(
            now.state,
            SessionState::PairingCode { ref code, .. } if *code == p.code
        ) || matches!(now.state, SessionState::QrScanRequired(_)),
        "still waiting to pair: {:?}",
        now.state
    );
    while let Ok(event) = p.changes.try_recv() {
        if let EngineEvent::SessionChanged(s) = event {
            assert_ne!(s.state, SessionState::Connected, "linked by a wrong code");
        }
    }

    // The person types it again, right this time (the client accepts up to
    // three answers from the phone per code).
    assert!(p.sim.enter_pair_code(&p.code));
    expect_linked(&mut p).await;
    p.engine.shutdown().await;
}
