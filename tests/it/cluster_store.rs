//! The cluster's lease SQL (`cluster::store::PgLeases`) against a real
//! PostgreSQL: a session in `cluster_sessions` is takeable until a host
//! takes it, a live lease is taken by nobody else, renewal checks owner and
//! fence, an expired lease is taken over with the next fence, a released
//! lease is takeable at once, and forgetting a session removes its state,
//! lease and entry, and no other session's.

use std::time::Duration;

use wabridge::cluster::manager::LeaseStore;
use wabridge::cluster::store::PgLeases;
use wabridge::engine::whatsapp::pg_store;
use wabridge::paths::SessionId;
use wabridge_sim::postgres::TestPostgres;

fn id(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

async fn takeable(leases: &PgLeases) -> Vec<String> {
    leases
        .takeable()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id.to_string())
        .collect()
}

#[tokio::test]
async fn leases_are_taken_renewed_taken_over_released_and_forgotten() {
    let server = tokio::task::spawn_blocking(TestPostgres::start)
        .await
        .unwrap();
    let pool = pg_store::pool_from_url(&server.url()).unwrap();
    pg_store::migrate(&pool).await.unwrap();
    let leases = PgLeases { pool: pool.clone() };
    let ttl = Duration::from_secs(60);

    assert!(
        leases
            .add_session(&id("a"), Some("http://erp/a"), Some("t"))
            .await
            .unwrap()
    );
    assert!(leases.add_session(&id("b"), None, None).await.unwrap());
    // Adding again keeps what it does not set.
    assert!(!leases.add_session(&id("a"), None, None).await.unwrap());
    let all = leases.takeable().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].webhook_url.as_deref(), Some("http://erp/a"));
    assert_eq!(all[0].webhook_token.as_deref(), Some("t"));

    // Host 1 takes `a`; nobody else can while the lease lives.
    assert_eq!(leases.take(&id("a"), "one", ttl).await.unwrap(), Some(1));
    assert_eq!(leases.take(&id("a"), "two", ttl).await.unwrap(), None);
    assert_eq!(
        leases.take(&id("a"), "one", ttl).await.unwrap(),
        None,
        "not twice"
    );
    assert_eq!(takeable(&leases).await, vec!["b"]);
    assert_eq!(
        leases.owner(&id("a")).await.unwrap().as_deref(),
        Some("one")
    );

    // Renewal checks owner and fence.
    let held = [(id("a"), 1)];
    let renewed = leases.renew("one", &held, ttl).await.unwrap();
    assert_eq!(renewed.len(), 1);
    assert_eq!(renewed[0].id, id("a"));
    assert_eq!(
        renewed[0].webhook_url.as_deref(),
        Some("http://erp/a"),
        "with its settings"
    );
    assert!(leases.renew("two", &held, ttl).await.unwrap().is_empty());
    assert!(
        leases
            .renew("one", &[(id("a"), 7)], ttl)
            .await
            .unwrap()
            .is_empty()
    );

    // Expired (renewed with no time left), it is taken over at fence 2,
    // and the old holder's renewal fails.
    leases.renew("one", &held, Duration::ZERO).await.unwrap();
    assert_eq!(takeable(&leases).await, vec!["a", "b"]);
    assert_eq!(leases.take(&id("a"), "two", ttl).await.unwrap(), Some(2));
    assert!(leases.renew("one", &held, ttl).await.unwrap().is_empty());

    // Released on a clean stop: takeable at once.
    assert_eq!(leases.release("two", &[id("a")]).await.unwrap(), 1);
    assert_eq!(leases.release("one", &[id("a")]).await.unwrap(), 0);
    assert_eq!(takeable(&leases).await, vec!["a", "b"]);
    let owners = leases.owners().await.unwrap();
    assert_eq!(owners, vec![("a".to_string(), "two".to_string(), false)]);

    // Forgetting `a` removes its WhatsApp rows, lease and entry only.
    let conn = pool.get().await.unwrap();
    for session in ["a", "b"] {
        conn.execute(
            "INSERT INTO wa_identities (session, address, key) VALUES ($1, 'x', '\\x00')",
            &[&session],
        )
        .await
        .unwrap();
    }
    leases.forget(&id("a")).await.unwrap();
    assert_eq!(takeable(&leases).await, vec!["b"]);
    assert!(leases.owners().await.unwrap().is_empty());
    let left: Vec<String> = conn
        .query("SELECT session FROM wa_identities", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, vec!["b"]);
}

/// What the operator does through any host reaches the row every host
/// reads: a start bumps the settings version and clears the shared
/// "logged out" mark a logout set; a DELETE is recorded for the serving
/// host to carry out, and a start of that session is refused meanwhile.
#[tokio::test]
async fn operator_changes_are_recorded_in_the_sessions_row() {
    let server = tokio::task::spawn_blocking(TestPostgres::start)
        .await
        .unwrap();
    let pool = pg_store::pool_from_url(&server.url()).unwrap();
    pg_store::migrate(&pool).await.unwrap();
    let leases = PgLeases { pool: pool.clone() };
    let ttl = Duration::from_secs(60);
    let row = async |leases: &PgLeases| {
        let fence = leases.take(&id("a"), "one", ttl).await.unwrap();
        let held = [(id("a"), fence.unwrap_or(1))];
        leases.renew("one", &held, ttl).await.unwrap().remove(0)
    };

    assert!(leases.add_session(&id("a"), None, None).await.unwrap());
    let first = row(&leases).await;
    assert!(!first.logged_out && !first.delete_requested);

    // A logout on the serving host (fenced, with its credentials).
    pg_store::PgStore::open(pool.clone(), "a", 1)
        .wipe_session()
        .await
        .unwrap();
    let logged_out = row(&leases).await;
    assert!(logged_out.logged_out, "every host sees the mark");

    // A start through another host: the mark goes, the version moves.
    leases
        .add_session(&id("a"), Some("http://erp/new"), None)
        .await
        .unwrap();
    let started = row(&leases).await;
    assert!(!started.logged_out);
    assert!(started.settings_version > logged_out.settings_version);
    assert_eq!(started.webhook_url.as_deref(), Some("http://erp/new"));

    // Calls turned down, with a reply, through any host: the row carries
    // them to the serving host at a new version.
    assert!(
        leases
            .set_call_policy(&id("a"), true, Some("please write"))
            .await
            .unwrap()
    );
    assert!(
        !leases
            .set_call_policy(&id("nobody"), true, None)
            .await
            .unwrap()
    );
    let rejecting = row(&leases).await;
    assert!(
        !leases
            .set_call_policy(&id("a"), true, Some("please write"))
            .await
            .unwrap(),
        "the same policy again changes nothing"
    );
    assert_eq!(
        row(&leases).await.settings_version,
        rejecting.settings_version
    );
    assert!(rejecting.reject_calls);
    assert_eq!(rejecting.call_reply.as_deref(), Some("please write"));
    assert!(rejecting.settings_version > started.settings_version);
    let started = rejecting;

    // A DELETE through another host.
    assert!(leases.request_delete(&id("a")).await.unwrap());
    assert!(!leases.request_delete(&id("nobody")).await.unwrap());
    let deleting = row(&leases).await;
    assert!(deleting.delete_requested);
    assert!(deleting.settings_version > started.settings_version);
    let refused = leases.add_session(&id("a"), None, None).await;
    assert!(
        matches!(
            refused,
            Err(wabridge::cluster::store::AddError::BeingDeleted)
        ),
        "{refused:?}"
    );
    assert!(leases.has_session(&id("a")).await.unwrap());
    leases.forget(&id("a")).await.unwrap();
    assert!(!leases.has_session(&id("a")).await.unwrap());
}

/// A host's start re-declares the config's sessions: that must not undo a
/// logout (a single host leaves a declared session logged out too), and
/// the row's version moves only when the config changes the webhook.
#[tokio::test]
async fn declaring_a_session_at_start_keeps_its_logout() {
    let server = tokio::task::spawn_blocking(TestPostgres::start)
        .await
        .unwrap();
    let pool = pg_store::pool_from_url(&server.url()).unwrap();
    pg_store::migrate(&pool).await.unwrap();
    let leases = PgLeases { pool: pool.clone() };
    let ttl = Duration::from_secs(60);
    assert!(
        leases
            .declare_session(&id("a"), Some("http://erp/a"), None)
            .await
            .unwrap()
    );
    assert_eq!(leases.take(&id("a"), "one", ttl).await.unwrap(), Some(1));
    let held = [(id("a"), 1)];
    pg_store::PgStore::open(pool.clone(), "a", 1)
        .wipe_session()
        .await
        .unwrap();
    let before = leases.renew("one", &held, ttl).await.unwrap().remove(0);
    assert!(
        !leases
            .declare_session(&id("a"), Some("http://erp/a"), None)
            .await
            .unwrap()
    );
    let same = leases.renew("one", &held, ttl).await.unwrap().remove(0);
    assert!(same.logged_out, "still logged out");
    assert_eq!(same.settings_version, before.settings_version);
    leases
        .declare_session(&id("a"), Some("http://erp/b"), None)
        .await
        .unwrap();
    let changed = leases.renew("one", &held, ttl).await.unwrap().remove(0);
    assert!(changed.logged_out);
    assert_eq!(changed.settings_version, before.settings_version + 1);
    assert_eq!(changed.webhook_url.as_deref(), Some("http://erp/b"));
}
