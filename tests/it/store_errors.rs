//! A session store that cannot be opened for a reason of the machine's (here
//! another process holds SQLite's exclusive lock on it, as a backup tool or a
//! stuck second program would; root's permissions do not help against it) is
//! not corruption: the session backs off with the cause shown and its folder
//! stays where it is; once the lock is gone the store opens. Only SQLite's
//! "not a database" moves a store aside (the end-to-end suite proves that half
//! with a truncated file).

use crate::support;

use std::time::Duration;

use support::pairing::VERSION;
use wabridge::engine::backoff::BackoffPolicy;
use wabridge::engine::whatsapp::WhatsAppBackend;
use wabridge::engine::{Engine, EngineEvent, SessionSnapshot, SessionState};
use wabridge::paths::{DataDir, SessionId};

async fn until(
    changes: &mut tokio::sync::broadcast::Receiver<EngineEvent>,
    wanted: impl Fn(&SessionSnapshot) -> bool,
) -> SessionSnapshot {
    tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            if let Ok(EngineEvent::SessionChanged(s)) = changes.recv().await
                && wanted(&s)
            {
                return s;
            }
        }
    })
    .await
    .expect("the session reached the wanted state")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_the_machine_cannot_open_backs_off_and_is_never_moved_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    let id = SessionId::parse("shop").unwrap();
    let dir = data.session_dir(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let holder = rusqlite::Connection::open(dir.join("whatsapp.db")).unwrap();
    holder
        .execute_batch("CREATE TABLE held (x); BEGIN EXCLUSIVE; INSERT INTO held VALUES (1);")
        .unwrap();
    // Nothing listens there: once the store opens, connecting fails quietly.
    let port = support::process::free_port();
    let backend = WhatsAppBackend {
        ws_url: format!("ws://127.0.0.1:{port}/ws/chat"),
        version: Some(VERSION),
        media_cap: 1 << 20,
        media_store: None,
        http: None,
        liveness: Default::default(),
    };
    let policy = BackoffPolicy {
        base: Duration::from_millis(50),
        max: Duration::from_millis(200),
    };
    let engine = Engine::new(backend, data.clone(), policy);
    let mut changes = engine.subscribe();
    assert_eq!(engine.start_saved().unwrap(), 1);

    let backing_off = until(&mut changes, |s| {
        s.state == SessionState::Disconnected && s.attempt >= 1
    })
    .await;
    let close = backing_off.last_close.expect("the cause is shown");
    assert!(
        close
            .description
            .contains("session store cannot be opened now"),
        "{close:?}"
    );
    let siblings: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(siblings, ["shop"], "nothing moved aside");

    // The lock goes; the next attempt opens the store and sets it up.
    holder.execute_batch("ROLLBACK;").unwrap();
    drop(holder);
    until(&mut changes, |s| {
        s.last_close
            .as_ref()
            .is_some_and(|c| !c.description.contains("session store"))
    })
    .await;
    let tables: i64 = rusqlite::Connection::open(dir.join("whatsapp.db"))
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(tables > 1, "the library set up its store");
    engine.shutdown().await;
}
