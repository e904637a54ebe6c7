//! whatsapp-rust's storage trait (`Backend`) on PostgreSQL: many sessions,
//! on many hosts, share one schema. Every table's key starts with `session`
//! (the wabridge session id), so one `PgStore` sees only its own session.
//!
//! # Fencing
//!
//! A `PgStore` is opened for `(pool, session, fence)`, where `fence` is the
//! counter of the lease (`session_leases`) its host holds. Every write runs in
//! one transaction that first reads the lease with
//! `SELECT fence FROM session_leases WHERE session = $1 FOR SHARE` and goes on
//! only if the counter still equals the store's; otherwise the write is
//! refused with a [`Fenced`] error (the lease moved to another host) and
//! nothing is written. The row lock `FOR SHARE` takes makes a takeover
//! (`UPDATE session_leases SET fence = fence + 1 …`, see [`take_lease`]) wait
//! until the writes already in flight have committed, and every write that
//! starts after the takeover committed sees the new counter: no write of the
//! old owner can land after a takeover. Reads are not fenced.
//!
//! The semantics of each method follow the library's own SQLite store
//! (whatsapp-rust-sqlite-storage 0.7.0); the batch methods that store runs in
//! a transaction are one statement here (`unnest` over arrays).

mod app_state;
mod buffers;
mod connect;
mod device;
mod lease;
mod msg_secrets;
mod protocol;
mod schema;
mod signal;
mod tls;

use std::hash::Hash;
use std::sync::Arc;

use deadpool_postgres::{Object, Transaction};
use whatsapp_rust::store::error::StoreError;

/// How to reach the database and its TLS (`sslmode` and the rest, as libpq
/// reads them): see [`connect`].
pub use connect::{Database, Setting, SettingsError, SslMode, pool_from_url};
/// The connection pool callers hand to [`PgStore::open`], [`migrate`] and
/// [`take_lease`].
pub use deadpool_postgres::Pool;
pub use lease::{Retake, take_lease, take_lease_when};
pub use schema::{SCHEMA_VERSION, SESSION_TABLES, migrate};
pub use tls::HandshakeFailed;

type Result<T> = std::result::Result<T, StoreError>;

/// A write refused because the session's lease moved to another host.
#[derive(Debug, thiserror::Error)]
#[error(
    "fenced: the lease on session {session} moved to another host (this store writes under fence {ours}, the lease is {})",
    match .theirs { Some(fence) => format!("at fence {fence}"), None => "gone".to_string() }
)]
pub struct Fenced {
    pub session: String,
    pub ours: u64,
    /// The lease's counter, `None` when the lease row is gone.
    pub theirs: Option<u64>,
}

/// Whether a store error is a fenced write (see [`Fenced`]).
pub fn is_fenced(error: &StoreError) -> bool {
    let mut layer: &dyn std::error::Error = error;
    loop {
        if layer.is::<Fenced>() {
            return true;
        }
        match layer.source() {
            Some(inner) => layer = inner,
            None => return false,
        }
    }
}

/// One session's view of the shared schema; see the module doc for fencing.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    session: Arc<str>,
    fence: u64,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("session", &self.session)
            .field("fence", &self.fence)
            .finish()
    }
}

impl PgStore {
    /// The store of `session`, writing under the lease counter `fence`. The
    /// schema must be migrated ([`migrate`]).
    pub fn open(pool: Pool, session: &str, fence: u64) -> PgStore {
        PgStore {
            pool,
            session: Arc::from(session),
            fence,
        }
    }

    pub fn session(&self) -> &str {
        &self.session
    }

    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// A pooled connection, for reads.
    async fn conn(&self) -> Result<Object> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Connection(Box::new(e)))
    }

    /// A transaction on `conn` in which the lease still carries our fence,
    /// holding the lease row `FOR SHARE` until it ends: every write goes
    /// through here and commits the returned transaction.
    async fn fenced<'a>(&self, conn: &'a mut Object) -> Result<Transaction<'a>> {
        let tx = conn.transaction().await.map_err(db)?;
        let check = tx
            .prepare_cached("SELECT fence FROM session_leases WHERE session = $1 FOR SHARE")
            .await
            .map_err(db)?;
        let row = tx.query_opt(&check, &[&&*self.session]).await.map_err(db)?;
        let theirs = row.map(|row| row.get::<_, i64>(0) as u64);
        if theirs != Some(self.fence) {
            return Err(StoreError::Database(Box::new(Fenced {
                session: self.session.to_string(),
                ours: self.fence,
                theirs,
            })));
        }
        Ok(tx)
    }

    /// Deletes everything the session keeps in [`SESSION_TABLES`] (its
    /// linked device, Signal and app state, caches) and sets the cluster's
    /// shared "logged out" mark, in one fenced transaction: what an explicit
    /// logout does. The lease and the cluster's entry stay, so the session
    /// can be paired again, once the operator starts it, by the host
    /// holding its lease; whichever host takes it meanwhile waits for the
    /// operator as this one does. A store whose lease moved is refused
    /// ([`Fenced`]) and changes nothing.
    pub async fn wipe_session(&self) -> Result<()> {
        let mut conn = self.conn().await?;
        let tx = self.fenced(&mut conn).await?;
        for table in SESSION_TABLES {
            tx.execute(
                &format!("DELETE FROM {table} WHERE session = $1"),
                &[&&*self.session],
            )
            .await
            .map_err(db)?;
        }
        tx.execute(
            "UPDATE cluster_sessions SET logged_out = true WHERE id = $1",
            &[&&*self.session],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    /// One fenced statement: runs `sql` with `params` after the fence check
    /// and commits; returns the rows it changed.
    async fn write(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64> {
        let mut conn = self.conn().await?;
        let tx = self.fenced(&mut conn).await?;
        let statement = tx.prepare_cached(sql).await.map_err(db)?;
        let changed = tx.execute(&statement, params).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(changed)
    }

    /// One read statement, at most one row.
    async fn read_opt(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>> {
        let conn = self.conn().await?;
        let statement = conn.prepare_cached(sql).await.map_err(db)?;
        conn.query_opt(&statement, params).await.map_err(db)
    }

    /// One read statement, all rows.
    async fn read_all(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        let conn = self.conn().await?;
        let statement = conn.prepare_cached(sql).await.map_err(db)?;
        conn.query(&statement, params).await.map_err(db)
    }
}

fn db(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Database(Box::new(e))
}

fn serialization(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Serialization(Box::new(e))
}

/// The current time in unix seconds, as the SQLite store stamps rows.
fn now_secs() -> i64 {
    whatsapp_rust::wacore::time::now_secs()
}

/// The items of a batch, the last one for each key, in first-seen order. One
/// `INSERT … ON CONFLICT DO UPDATE` may not touch a row twice, while the
/// SQLite store applies a batch row by row, so a later duplicate wins.
fn last_per_key<'a, T, K: Hash + Eq>(items: &'a [T], key: impl Fn(&'a T) -> K) -> Vec<&'a T> {
    let mut index = std::collections::HashMap::with_capacity(items.len());
    let mut out: Vec<&'a T> = Vec::with_capacity(items.len());
    for item in items {
        match index.entry(key(item)) {
            std::collections::hash_map::Entry::Occupied(slot) => out[*slot.get()] = item,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(out.len());
                out.push(item);
            }
        }
    }
    out
}
