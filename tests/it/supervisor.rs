//! The session supervisor's schedule and decisions, driven through the
//! engine's public handle with a scripted backend on tokio's paused clock.
//! (The same supervisor against the real client: tests/lifecycle.rs.)

use crate::support;

use std::time::Duration;

use std::time::Instant;

use wabridge::engine::now;

use support::fake_backend::{Call, Conn, FakeBackend, connected};
use support::log_capture::LogCapture;
use wabridge::engine::backend::WaEvent;
use wabridge::engine::backoff::BackoffPolicy;
use wabridge::engine::close::{CloseSignal, HaltReason};
use wabridge::engine::{Command, Engine, SessionSnapshot, SessionState};
use wabridge::paths::DataDir;
use wabridge::session_files::SessionFiles;

fn seed_policy() -> BackoffPolicy {
    BackoffPolicy {
        base: Duration::from_secs(5),
        max: Duration::from_secs(60),
    }
}

use crate::support::id;

struct Harness {
    _tmp: tempfile::TempDir,
    data: DataDir,
    backend: FakeBackend,
    engine: Engine,
}

impl Harness {
    fn new() -> Harness {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path().join("data"));
        let backend = FakeBackend::default();
        let engine = Engine::new(backend.clone(), data.clone(), seed_policy());
        Harness {
            _tmp: tmp,
            data,
            backend,
            engine,
        }
    }

    fn start(&self, name: &str) {
        assert!(self.engine.add_session(&id(name), None, None).unwrap());
    }

    /// Waits (on the paused clock) until the session's snapshot matches.
    async fn until(
        &self,
        name: &str,
        wanted: impl Fn(&SessionSnapshot) -> bool,
    ) -> SessionSnapshot {
        let mut watch = self.engine.watch(&id(name)).expect("session exists");
        let found = tokio::time::timeout(Duration::from_secs(3600), async {
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
                "session {name} never matched; last: {:?}",
                self.engine.snapshot(&id(name))
            )
        })
    }

    fn files(&self, name: &str) -> SessionFiles {
        SessionFiles::new(&self.data, &id(name))
    }
}

fn gaps(times: &[Instant]) -> Vec<u64> {
    times.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect()
}

/// The wait before reconnect `attempt` of `session`: the seed's step plus
/// the session's jitter (checked to be at most a fifth of the step).
fn reconnect_wait(attempt: u32, session: &str) -> Duration {
    let step = seed_policy().delay(attempt);
    let wait = seed_policy().reconnect_delay(attempt, session);
    assert!(
        wait >= step && wait <= step.mul_f64(1.2),
        "{wait:?} for {step:?}"
    );
    wait
}

/// Asserts that the gaps between `times` are these waits (to the
/// millisecond the timer rounds up to).
fn assert_gaps_are(times: &[Instant], waits: &[Duration]) {
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps.len(), waits.len());
    for (gap, wait) in gaps.iter().zip(waits) {
        assert!(
            *gap >= *wait && *gap <= *wait + Duration::from_millis(1),
            "gaps {gaps:?}, waits {waits:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn failed_connects_follow_5_10_20_40_60_60_then_reset_on_connected() {
    let (logs, _guard) = LogCapture::install();
    let h = Harness::new();
    h.backend.script("s1", (0..6).map(|_| Conn::unreachable()));
    h.backend
        .script("s1", [Conn::connects_then_drops(), Conn::unreachable()]);
    h.start("s1");

    // Run 7 connects and drops; run 8 fails again: the count restarted.
    let backend = h.backend.clone();
    h.until("s1", |s| {
        backend.run_times("s1").len() == 8 && s.state == SessionState::Disconnected
    })
    .await;
    let times = h.backend.run_times("s1");
    // 5, 10, 20, 40, 60, 60, then 5 again, each plus the session's jitter.
    let waits: Vec<Duration> = [1, 2, 3, 4, 5, 6, 1]
        .into_iter()
        .map(|attempt| reconnect_wait(attempt, "s1"))
        .collect();
    assert_gaps_are(&times[..8], &waits);

    let lines = logs.lines_with("Attempting to reconnect s1");
    assert!(
        lines[0].ends_with(&format!(
            "Attempting to reconnect s1 (attempt 1) in {:.1}s with existing credentials...",
            waits[0].as_secs_f64()
        )),
        "{lines:?}"
    );
    assert!(
        lines[4].contains(&format!("(attempt 5) in {:.1}s", waits[4].as_secs_f64())),
        "{lines:?}"
    );
    // After Connected the counter starts over.
    assert!(lines[6].contains("(attempt 1) in "), "{lines:?}");
    assert_eq!(logs.lines_with("WhatsApp Connected: s1").len(), 1);
    assert!(
        !logs
            .lines_with("Connection closed for s1. Status: 408.")
            .is_empty(),
        "{}",
        logs.text()
    );
}

#[tokio::test(start_paused = true)]
async fn snapshot_shows_attempt_and_the_real_retry_instant() {
    let h = Harness::new();
    h.backend
        .script("s1", [Conn::unreachable(), Conn::unreachable()]);
    h.start("s1");
    let s = h
        .until("s1", |s| s.attempt == 2 && s.next_retry_at.is_some())
        .await;
    assert_eq!(s.state, SessionState::Disconnected);
    let left = s.next_retry_at.unwrap() - now();
    assert_eq!(
        left,
        reconnect_wait(2, "s1"),
        "the real instant, jitter included"
    );
    assert_eq!(s.state.api_status(), "Disconnected");
    assert_eq!(s.last_close.as_ref().unwrap().status, 408);
}

#[tokio::test(start_paused = true)]
async fn restart_after_pairing_is_immediate_and_not_counted() {
    let (logs, _guard) = LogCapture::install();
    let h = Harness::new();
    h.backend.script(
        "s1",
        [
            Conn::Ends(vec![
                WaEvent::QrCode {
                    payload: "ref,noise,id,adv,1".into(),
                    valid_for: Duration::from_secs(60),
                },
                WaEvent::PairSuccess {
                    phone: "15551234567".into(),
                    lid: Some("100000000000001".into()),
                },
            ]),
            Conn::Stays(vec![connected()]),
        ],
    );
    h.start("s1");
    let s = h.until("s1", |s| s.state == SessionState::Connected).await;
    assert_eq!(s.attempt, 0);
    assert_eq!(s.phone.as_deref(), Some("15551234567"));
    let times = h.backend.run_times("s1");
    assert_eq!(times.len(), 2);
    assert_eq!(times[1], times[0], "the 515 restart must not wait");
    assert!(
        !logs.lines_with("Status: 515").is_empty(),
        "{}",
        logs.text()
    );
    assert!(logs.lines_with("Attempting to reconnect").is_empty());
}

/// The library stores the device and the server's 515 ends the run before
/// `PairSuccess` is reported: still a restart at once, not a failed attempt.
#[tokio::test(start_paused = true)]
async fn a_pairing_reported_late_still_restarts_at_once() {
    let (logs, _guard) = LogCapture::install();
    let h = Harness::new();
    h.backend.script(
        "s1",
        [
            Conn::PairsLate {
                phone: "15551234567".into(),
            },
            Conn::Stays(vec![connected()]),
        ],
    );
    h.start("s1");
    let s = h.until("s1", |s| s.state == SessionState::Connected).await;
    assert_eq!(s.attempt, 0);
    let times = h.backend.run_times("s1");
    assert_eq!(times, [times[0], times[0]], "the 515 restart must not wait");
    assert!(
        logs.lines_with("Attempting to reconnect").is_empty(),
        "{}",
        logs.text()
    );
}

#[tokio::test(start_paused = true)]
async fn a_repeating_restart_does_not_spin() {
    let h = Harness::new();
    // Connected, then the server ends the stream without a reason, forever.
    h.backend
        .script("s1", (0..10).map(|_| Conn::Ends(vec![connected()])));
    h.backend.script("s1", [Conn::unreachable()]);
    h.start("s1");
    h.until("s1", |s| {
        s.last_close.as_ref().is_some_and(|c| c.status == 408)
    })
    .await;
    let times = h.backend.run_times("s1");
    // Immediate restart, then a backoff wait, alternating: never two
    // immediate reconnects in a row.
    let immediate = gaps(&times).iter().filter(|&&g| g == 0).count();
    assert!(immediate <= 6, "gaps {:?}", gaps(&times));
    for pair in gaps(&times).windows(2) {
        assert!(pair[0] > 0 || pair[1] > 0, "gaps {:?}", gaps(&times));
    }
}

#[tokio::test(start_paused = true)]
async fn reconnect_now_skips_the_wait_and_keeps_the_count() {
    let h = Harness::new();
    h.backend.script(
        "s1",
        [
            Conn::unreachable(),
            Conn::unreachable(),
            Conn::unreachable(),
        ],
    );
    h.start("s1");
    h.until("s1", |s| s.attempt == 2 && s.next_retry_at.is_some())
        .await;
    tokio::time::advance(Duration::from_secs(3)).await;
    h.engine
        .command(&id("s1"), Command::ReconnectNow)
        .await
        .unwrap();
    let s = h
        .until("s1", |s| s.attempt == 3 && s.next_retry_at.is_some())
        .await;
    let times = h.backend.run_times("s1");
    assert_eq!(gaps(&times)[1], 3, "retried 3s into a 10s wait");
    assert_eq!(s.next_retry_at.unwrap() - now(), reconnect_wait(3, "s1"));
}

#[tokio::test(start_paused = true)]
async fn replaced_halts_keeps_credentials_and_never_retries_by_itself() {
    let (logs, _guard) = LogCapture::install();
    let h = Harness::new();
    h.backend.script(
        "s1",
        [Conn::Ends(vec![
            connected(),
            WaEvent::Closed(CloseSignal::Replaced),
        ])],
    );
    h.start("s1");
    let s = h
        .until("s1", |s| matches!(s.state, SessionState::Halted(_)))
        .await;
    assert_eq!(s.state, SessionState::Halted(HaltReason::Replaced));
    assert!(h.files("s1").store_path().exists(), "credentials kept");
    let before = h.backend.run_times("s1").len();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(h.backend.run_times("s1").len(), before, "no automatic loop");
    assert!(
        !logs
            .lines_with("Connection closed for s1. Status: 440.")
            .is_empty()
    );

    // The operator decides: reconnect now.
    h.engine
        .command(&id("s1"), Command::ReconnectNow)
        .await
        .unwrap();
    h.until("s1", |s| s.state == SessionState::Connected).await;
}

#[tokio::test(start_paused = true)]
async fn temporary_ban_halts_with_its_expiry() {
    let h = Harness::new();
    h.backend.script(
        "s1",
        [Conn::closes_with(CloseSignal::TemporaryBan {
            code: 101,
            lifts_in: Duration::from_secs(3120),
        })],
    );
    h.start("s1");
    let s = h
        .until("s1", |s| matches!(s.state, SessionState::Halted(_)))
        .await;
    let SessionState::Halted(reason) = s.state else {
        unreachable!()
    };
    assert_eq!(reason.describe(now()), "temporary ban, lifts in 52m");
    tokio::time::advance(Duration::from_secs(1920)).await;
    assert_eq!(reason.describe(now()), "temporary ban, lifts in 20m");
}

#[tokio::test(start_paused = true)]
async fn halting_closes_keep_credentials() {
    for (signal, reason) in [
        (CloseSignal::ClientOutdated, HaltReason::ClientOutdated),
        (
            CloseSignal::LoggedOut { code: 403 },
            HaltReason::AccountLocked,
        ),
        (
            CloseSignal::LoggedOut { code: 406 },
            HaltReason::UnknownLogout,
        ),
        (CloseSignal::QrCodesExhausted, HaltReason::PairingTimedOut),
    ] {
        let h = Harness::new();
        h.backend.script("s1", [Conn::closes_with(signal)]);
        h.start("s1");
        let s = h
            .until("s1", |s| matches!(s.state, SessionState::Halted(_)))
            .await;
        assert_eq!(s.state, SessionState::Halted(reason));
        assert!(h.files("s1").store_path().exists(), "store kept");
    }
}

#[tokio::test(start_paused = true)]
async fn server_errors_back_off_keeping_credentials() {
    let h = Harness::new();
    h.backend.script(
        "s1",
        [
            Conn::closes_with(CloseSignal::ConnectFailure { code: 503 }),
            Conn::closes_with(CloseSignal::ConnectFailure { code: 500 }),
        ],
    );
    h.start("s1");
    let s = h.until("s1", |s| s.attempt == 2).await;
    assert_eq!(s.last_close.unwrap().status, 500);
    assert!(h.files("s1").store_path().exists());
}

#[tokio::test(start_paused = true)]
async fn logged_out_by_the_phone_deletes_credentials_and_stays_logged_out() {
    let (logs, _guard) = LogCapture::install();
    let h = Harness::new();
    h.backend.script(
        "s1",
        [Conn::Ends(vec![
            connected(),
            WaEvent::Closed(CloseSignal::LoggedOut { code: 401 }),
            WaEvent::Closed(CloseSignal::SocketClosed {
                detail: "eof".into(),
            }),
        ])],
    );
    h.engine
        .add_session(
            &id("s1"),
            Some("http://127.0.0.1:9/hook".into()),
            Some("tok".into()),
        )
        .unwrap();
    let s = h.until("s1", |s| s.state == SessionState::LoggedOut).await;
    assert_eq!(s.state.api_status(), "Logged Out");
    assert_eq!(s.phone, None);
    assert!(!h.files("s1").store_path().exists(), "credentials deleted");
    let settings = h.files("s1").load_settings().unwrap();
    assert_eq!(
        settings.webhook_url.as_deref(),
        Some("http://127.0.0.1:9/hook")
    );
    assert!(settings.logged_out);
    assert!(
        !logs
            .lines_with("Connection closed for s1. Status: 401.")
            .is_empty()
    );

    // After a restart the session is listed, still logged out: no pairing
    // nobody asked for.
    h.engine.shutdown().await;
    let runs = h.backend.run_times("s1").len();
    let engine = Engine::new(h.backend.clone(), h.data.clone(), seed_policy());
    assert_eq!(engine.start_saved().unwrap(), 1);
    let mut watch = engine.watch(&id("s1")).unwrap();
    watch
        .wait_for(|s| s.state == SessionState::LoggedOut)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(h.backend.run_times("s1").len(), runs);
}

#[tokio::test(start_paused = true)]
async fn operator_logout_unlinks_a_connected_device_and_deletes_credentials() {
    let h = Harness::new();
    h.start("s1");
    h.until("s1", |s| s.state == SessionState::Connected).await;
    h.engine.command(&id("s1"), Command::Logout).await.unwrap();
    h.until("s1", |s| s.state == SessionState::LoggedOut).await;
    assert_eq!(h.backend.count(|c| matches!(c, Call::Logout(_))), 1);
    assert!(!h.files("s1").store_path().exists());

    // Reconnect after a logout starts a new pairing over a fresh store.
    h.engine
        .command(&id("s1"), Command::ReconnectNow)
        .await
        .unwrap();
    h.until("s1", |s| s.state == SessionState::Connected).await;
    assert!(!h.files("s1").load_settings().unwrap().logged_out);
}

#[tokio::test(start_paused = true)]
async fn shutdown_disconnects_without_logging_out() {
    let h = Harness::new();
    h.start("s1");
    h.start("s2");
    h.until("s1", |s| s.state == SessionState::Connected).await;
    h.until("s2", |s| s.state == SessionState::Connected).await;
    h.engine.shutdown().await;
    assert_eq!(h.backend.count(|c| matches!(c, Call::Logout(_))), 0);
    assert_eq!(h.backend.count(|c| matches!(c, Call::Disconnect(_))), 2);
    assert!(h.files("s1").store_path().exists());
}

#[tokio::test(start_paused = true)]
async fn two_sessions_fail_independently() {
    let h = Harness::new();
    h.backend.script("bad", (0..4).map(|_| Conn::unreachable()));
    h.start("bad");
    h.start("good");
    h.until("bad", |s| s.attempt == 4).await;
    let good = h.engine.snapshot(&id("good")).unwrap();
    assert_eq!(good.state, SessionState::Connected);
    assert_eq!(good.attempt, 0);
    assert_eq!(h.backend.run_times("good").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_store_is_moved_aside_and_the_webhook_kept() {
    let h = Harness::new();
    h.backend.store_unreadable("s1");
    h.engine
        .add_session(&id("s1"), Some("http://127.0.0.1:9/hook".into()), None)
        .unwrap();
    let files = h.files("s1");
    std::fs::write(files.store_path(), b"junk that is not sqlite").unwrap();
    let s = h
        .until("s1", |s| matches!(s.state, SessionState::Halted(_)))
        .await;
    let SessionState::Halted(HaltReason::StoreUnreadable { moved_to }) = s.state else {
        panic!("{s:?}")
    };
    assert_eq!(
        std::fs::read(std::path::Path::new(&moved_to).join("whatsapp.db")).unwrap(),
        b"junk that is not sqlite"
    );
    assert_eq!(
        files.load_settings().unwrap().webhook_url.as_deref(),
        Some("http://127.0.0.1:9/hook")
    );
}

#[tokio::test(start_paused = true)]
async fn saved_sessions_start_by_themselves() {
    let h = Harness::new();
    h.start("a");
    h.start("b");
    h.until("a", |s| s.state == SessionState::Connected).await;
    h.engine.shutdown().await;
    let engine = Engine::new(h.backend.clone(), h.data.clone(), seed_policy());
    assert_eq!(engine.start_saved().unwrap(), 2);
    for name in ["a", "b"] {
        let mut watch = engine.watch(&id(name)).unwrap();
        watch
            .wait_for(|s| s.state == SessionState::Connected)
            .await
            .unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn unknown_session_commands_are_refused() {
    let h = Harness::new();
    let err = h
        .engine
        .command(&id("nope"), Command::ReconnectNow)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "Session not found");
}

#[tokio::test(start_paused = true)]
async fn a_pairing_code_on_screen_is_not_replaced_by_the_next_qr_code() {
    let h = Harness::new();
    let qr = |n: u32| WaEvent::QrCode {
        payload: format!("ref{n},noise,id,adv,1"),
        valid_for: Duration::from_secs(20),
    };
    h.backend.script(
        "s1",
        [Conn::Stays(vec![
            qr(1),
            WaEvent::PairCode {
                code: "ABCD1234".into(),
                valid_for: Duration::from_secs(180),
            },
            qr(2),
            WaEvent::PairSuccess {
                phone: "15551234567".into(),
                lid: None,
            },
        ])],
    );
    h.start("s1");
    let s = h.until("s1", |s| s.phone.is_some()).await;
    assert!(
        matches!(&s.state, SessionState::PairingCode { code, .. } if code == "ABCD1234"),
        "the code stays while the phone's user types it: {:?}",
        s.state
    );
}

/// When the network comes back, one session getting through tells the
/// others waiting out a network failure: they retry within a second
/// (spread, not all at once) instead of sleeping out up to a minute.
#[tokio::test(start_paused = true)]
async fn a_session_that_gets_through_brings_the_others_back_within_a_second() {
    let h = Harness::new();
    h.backend.script(
        "waiting",
        [
            Conn::unreachable(),
            Conn::unreachable(),
            Conn::unreachable(),
            Conn::Stays(vec![connected()]),
        ],
    );
    h.backend.script(
        "refused",
        [
            Conn::closes_with(CloseSignal::ConnectFailure { code: 503 }),
            Conn::closes_with(CloseSignal::ConnectFailure { code: 503 }),
            Conn::Stays(vec![connected()]),
        ],
    );
    h.start("waiting");
    // Three failures: 5 s, 10 s, then a 20 s wait from t = 15 s.
    h.until("waiting", |s| s.attempt == 3).await;
    // Refused twice by the server: waiting 10 s when the network news comes.
    h.start("refused");
    h.until("refused", |s| s.attempt == 2).await;
    h.backend.script(
        "back",
        [Conn::unreachable(), Conn::Stays(vec![connected()])],
    );
    h.start("back");
    let back = h
        .until("back", |s| s.state == SessionState::Connected)
        .await;
    assert_eq!(back.attempt, 0);
    let reconnected_at = *h.backend.run_times("back").last().unwrap();

    let waiting = h
        .until("waiting", |s| s.state == SessionState::Connected)
        .await;
    let retried_at = *h.backend.run_times("waiting").last().unwrap();
    assert!(
        retried_at - reconnected_at < Duration::from_secs(1),
        "retried {:?} after the other session got through",
        retried_at - reconnected_at
    );
    assert_eq!(waiting.attempt, 0);
    // A server's refusal (503) is not a network failure: it keeps its backoff.
    h.until("refused", |s| s.state == SessionState::Connected)
        .await;
    let refused_times = h.backend.run_times("refused");
    assert_eq!(gaps(&refused_times), [5, 10], "{refused_times:?}");
}

#[tokio::test(start_paused = true)]
async fn no_more_sessions_handshake_at_once_than_the_cap() {
    let h = Harness::new();
    h.engine.limit_handshakes(2);
    let names: Vec<String> = (1..=6).map(|n| format!("s{n}")).collect();
    for name in &names {
        h.backend
            .script(name, [Conn::HandshakeTakes(Duration::from_secs(1))]);
    }
    let started = now();
    for name in &names {
        h.start(name);
    }
    for name in &names {
        h.until(name, |s| s.state == SessionState::Connected).await;
    }
    // Two at a time: each pair starts when the one before has connected.
    let mut starts: Vec<u64> = names
        .iter()
        .map(|name| (h.backend.run_times(name)[0] - started).as_secs())
        .collect();
    starts.sort();
    assert_eq!(starts, [0, 0, 1, 1, 2, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_session_showing_a_qr_code_does_not_hold_a_handshake_slot() {
    let h = Harness::new();
    h.engine.limit_handshakes(1);
    h.backend.script(
        "new",
        [Conn::Stays(vec![WaEvent::QrCode {
            payload: "2@ref".into(),
            valid_for: Duration::from_secs(60),
        }])],
    );
    h.start("new");
    h.until("new", |s| {
        matches!(s.state, SessionState::QrScanRequired(_))
    })
    .await;
    // Nobody scans for a long while; the next session connects meanwhile.
    h.start("shop");
    h.until("shop", |s| s.state == SessionState::Connected)
        .await;
}

#[tokio::test(start_paused = true)]
async fn an_attempt_stalled_in_its_handshake_starts_over_when_a_sibling_gets_through() {
    let h = Harness::new();
    // "stuck" began while the path was dead: its hello would only be
    // resent much later. "first" fails, then gets through on its retry.
    h.backend
        .script("stuck", [Conn::HandshakeTakes(Duration::from_secs(60))]);
    h.backend.script("first", [Conn::unreachable()]);
    let started = now();
    h.start("stuck");
    h.start("first");
    h.until("first", |s| s.state == SessionState::Connected)
        .await;
    let through = now() - started;
    let s = h
        .until("stuck", |s| s.state == SessionState::Connected)
        .await;
    assert!(
        now() - started < through + Duration::from_secs(1),
        "started over at once, not after its 60 s handshake"
    );
    assert_eq!(s.attempt, 0, "starting over is not a failed attempt");
    assert_eq!(h.backend.run_times("stuck").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn sessions_waiting_on_the_network_retry_within_two_seconds_of_the_server_answering_again() {
    let h = Harness::new();
    h.backend.script("s1", (0..3).map(|_| Conn::unreachable()));
    h.start("s1");
    // Three failures in: a 20 s wait (plus jitter) ahead.
    let s = h
        .until("s1", |s| s.attempt == 3 && s.next_retry_at.is_some())
        .await;
    assert!(s.next_retry_at.unwrap() - now() >= Duration::from_secs(20));
    tokio::time::advance(Duration::from_secs(3)).await;

    // The path is back: the probe gets through, and the session with it.
    h.backend.set_server_reachable(true);
    let back = now();
    h.until("s1", |s| s.state == SessionState::Connected).await;
    assert!(
        now() - back <= Duration::from_secs(2),
        "connected {:?} after the server answered again",
        now() - back
    );
}

#[tokio::test(start_paused = true)]
async fn a_server_reachable_all_along_wakes_nobody() {
    // The probe always gets through, yet connects fail (not the path's
    // fault): the sessions keep their backoff, nobody is hurried.
    let h = Harness::new();
    h.backend.set_server_reachable(true);
    h.backend.script("s1", (0..3).map(|_| Conn::unreachable()));
    h.start("s1");
    h.until("s1", |s| s.state == SessionState::Connected).await;
    let waits: Vec<Duration> = (1..=3).map(|n| reconnect_wait(n, "s1")).collect();
    assert_gaps_are(&h.backend.run_times("s1"), &waits);
}
