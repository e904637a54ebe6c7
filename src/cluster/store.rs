//! The lease table and the cluster's session list in PostgreSQL: the SQL
//! of docs/cluster.md. It lives here, not in `pg_store`, because the lease
//! protocol (renew, list, release) is the cluster's; `pg_store` reads a
//! lease's counter to fence the client's writes, and its take statement
//! (`take_lease_when`) is the one rounds use too. Plain tokio-postgres:
//! nothing here names a WhatsApp type.

use std::time::Duration;

use deadpool_postgres::Pool;

use super::manager::{ClusterSession, LeaseStore};
use crate::engine::whatsapp::pg_store;
use crate::paths::SessionId;

/// What a host published of its API (`cluster_nodes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Nothing yet: it is starting (or cannot reach the database).
    NotYet,
    /// That others cannot call it (no `[cluster] api_url`, an API on
    /// 0.0.0.0).
    Nothing,
    At(String),
}

/// Why a session could not be added to the cluster's list.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("the session is being deleted; start it again once it is gone")]
    BeingDeleted,
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

impl From<deadpool_postgres::PoolError> for AddError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        AddError::Database(e.into())
    }
}

impl From<tokio_postgres::Error> for AddError {
    fn from(e: tokio_postgres::Error) -> Self {
        AddError::Database(e.into())
    }
}

/// The cluster's database: the pool every part of the process shares.
#[derive(Clone)]
pub struct PgLeases {
    pub pool: Pool,
}

impl std::fmt::Debug for PgLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgLeases")
    }
}

impl PgLeases {
    /// Adds `id` to the sessions the cluster serves, or updates the webhook
    /// settings given: a start through the API, on any host. It clears the
    /// "logged out" mark (the operator asks for the session to run: it
    /// pairs again) and bumps `settings_version`, so the host serving it
    /// applies the row at its next renewal. The host that takes its lease
    /// runs it (and pairs it when new). Returns whether it was new.
    pub async fn add_session(
        &self,
        id: &SessionId,
        webhook_url: Option<&str>,
        webhook_token: Option<&str>,
    ) -> Result<bool, AddError> {
        self.upsert(id, webhook_url, webhook_token, true).await
    }

    /// A session of the config's `[[sessions]]`, at a host's start: added
    /// when new, its webhook updated when the config gives another one, and
    /// left logged out if it is (as a single host leaves it).
    pub async fn declare_session(
        &self,
        id: &SessionId,
        webhook_url: Option<&str>,
        webhook_token: Option<&str>,
    ) -> Result<bool, AddError> {
        self.upsert(id, webhook_url, webhook_token, false).await
    }

    async fn upsert(
        &self,
        id: &SessionId,
        webhook_url: Option<&str>,
        webhook_token: Option<&str>,
        operator_start: bool,
    ) -> Result<bool, AddError> {
        let conn = self.pool.get().await?;
        let row = conn
            .query_opt(
                "INSERT INTO cluster_sessions AS c (id, webhook_url, webhook_token)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE
                    SET webhook_url = coalesce(excluded.webhook_url, c.webhook_url),
                        webhook_token = coalesce(excluded.webhook_token, c.webhook_token),
                        logged_out = c.logged_out AND NOT $4,
                        settings_version = c.settings_version + CASE
                            WHEN $4 OR (coalesce(excluded.webhook_url, c.webhook_url),
                                        coalesce(excluded.webhook_token, c.webhook_token))
                                       IS DISTINCT FROM (c.webhook_url, c.webhook_token)
                            THEN 1 ELSE 0 END
                  WHERE c.delete_requested_at IS NULL
                 RETURNING (xmax = 0)",
                &[&id.as_str(), &webhook_url, &webhook_token, &operator_start],
            )
            .await?;
        row.map(|r| r.get(0)).ok_or(AddError::BeingDeleted)
    }

    /// Sets whether the host serving `id` turns calls down, and the line
    /// it then writes to the caller; the serving host applies it at its
    /// next renewal. `false` when nothing changed (the same policy, or no
    /// such session): a host's start re-declaring its config then moves no
    /// version.
    pub async fn set_call_policy(
        &self,
        id: &SessionId,
        reject: bool,
        reply: Option<&str>,
    ) -> anyhow::Result<bool> {
        let conn = self.pool.get().await?;
        let changed = conn
            .execute(
                "UPDATE cluster_sessions
                    SET reject_calls = $2, call_reply = $3,
                        settings_version = settings_version + 1
                  WHERE id = $1 AND (reject_calls, call_reply) IS DISTINCT FROM ($2, $3)",
                &[&id.as_str(), &reject, &reply],
            )
            .await?;
        Ok(changed > 0)
    }

    /// Asks the cluster to delete `id`: the host serving it (or the next
    /// one to take it) logs it out and forgets it. `false` when the cluster
    /// has no such session.
    pub async fn request_delete(&self, id: &SessionId) -> anyhow::Result<bool> {
        let conn = self.pool.get().await?;
        let changed = conn
            .execute(
                "UPDATE cluster_sessions
                    SET delete_requested_at = coalesce(delete_requested_at, now()),
                        settings_version = settings_version + 1
                  WHERE id = $1",
                &[&id.as_str()],
            )
            .await?;
        Ok(changed > 0)
    }

    /// Whether the cluster's list has `id`.
    pub async fn has_session(&self, id: &SessionId) -> anyhow::Result<bool> {
        let conn = self.pool.get().await?;
        let row = conn
            .query_opt(
                "SELECT 1 FROM cluster_sessions WHERE id = $1",
                &[&id.as_str()],
            )
            .await?;
        Ok(row.is_some())
    }

    /// Lets `node`'s leases on `sessions` expire now, so other hosts take
    /// them at their next round: for a clean shutdown, once the sessions'
    /// sockets are closed.
    pub async fn release(&self, node: &str, sessions: &[SessionId]) -> anyhow::Result<u64> {
        let sessions: Vec<&str> = sessions.iter().map(SessionId::as_str).collect();
        let conn = self.pool.get().await?;
        Ok(conn
            .execute(
                "UPDATE session_leases SET expires_at = now()
                  WHERE session = ANY($1) AND owner = $2 AND expires_at > now()",
                &[&sessions, &node],
            )
            .await?)
    }

    /// Forgets a session the cluster served: its WhatsApp state (every
    /// `pg_store` table), its webhook and NATS outbox rows, its lease and its entry,
    /// in one transaction. For
    /// the DELETE route, once the session logged out.
    pub async fn forget(&self, id: &SessionId) -> anyhow::Result<()> {
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        for table in pg_store::SESSION_TABLES {
            tx.execute(
                &format!("DELETE FROM {table} WHERE session = $1"),
                &[&id.as_str()],
            )
            .await?;
        }
        // Its webhook rows (the serving host's hub dropped them already,
        // fenced; this catches any a failed drop left).
        for outbox in ["webhook_outbox", "nats_outbox"] {
            tx.execute(
                &format!("DELETE FROM {outbox} WHERE session = $1"),
                &[&id.as_str()],
            )
            .await?;
        }
        tx.execute(
            "DELETE FROM session_leases WHERE session = $1",
            &[&id.as_str()],
        )
        .await?;
        tx.execute(
            "DELETE FROM cluster_sessions WHERE id = $1",
            &[&id.as_str()],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The node holding an unexpired lease on `id`, if any.
    pub async fn owner(&self, id: &SessionId) -> anyhow::Result<Option<String>> {
        let conn = self.pool.get().await?;
        let row = conn
            .query_opt(
                "SELECT owner FROM session_leases WHERE session = $1 AND expires_at > now()",
                &[&id.as_str()],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Records how other hosts reach `node`'s API (`None`: they cannot),
    /// replacing what an earlier start of the same node said.
    pub async fn register_node(&self, node: &str, api_url: Option<&str>) -> anyhow::Result<()> {
        let conn = self.pool.get().await?;
        conn.execute(
            "INSERT INTO cluster_nodes (node, api_url) VALUES ($1, $2)
             ON CONFLICT (node) DO UPDATE SET api_url = excluded.api_url, started_at = now()",
            &[&node, &api_url],
        )
        .await?;
        Ok(())
    }

    /// The node holding an unexpired lease on `id`, and what it published
    /// of its API, if any.
    pub async fn owner_api(&self, id: &SessionId) -> anyhow::Result<Option<(String, Published)>> {
        let conn = self.pool.get().await?;
        let row = conn
            .query_opt(
                "SELECT l.owner, n.node IS NOT NULL, n.api_url FROM session_leases l
                   LEFT JOIN cluster_nodes n ON n.node = l.owner
                  WHERE l.session = $1 AND l.expires_at > now()",
                &[&id.as_str()],
            )
            .await?;
        Ok(row.map(|r| {
            let published = match (r.get::<_, bool>(1), r.get::<_, Option<String>>(2)) {
                (false, _) => Published::NotYet,
                (true, None) => Published::Nothing,
                (true, Some(url)) => Published::At(url),
            };
            (r.get(0), published)
        }))
    }

    /// Every lease: (session, owner, unexpired), by session.
    pub async fn owners(&self) -> anyhow::Result<Vec<(String, String, bool)>> {
        let conn = self.pool.get().await?;
        let rows = conn
            .query(
                "SELECT session, owner, expires_at > now() FROM session_leases ORDER BY session",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}

/// The columns `cluster_session` reads, of `cluster_sessions c`.
const SESSION_COLUMNS: &str = "c.id, c.webhook_url, c.webhook_token, c.logged_out, \
     c.settings_version, c.delete_requested_at IS NOT NULL, c.reject_calls, c.call_reply";

/// A row of [`SESSION_COLUMNS`]; `None` for an id that is not a valid
/// session id (never written by wabridge: skipped, not served).
fn cluster_session(row: &tokio_postgres::Row) -> Option<ClusterSession> {
    Some(ClusterSession {
        id: SessionId::parse(row.get::<_, &str>(0)).ok()?,
        webhook_url: row.get(1),
        webhook_token: row.get(2),
        logged_out: row.get(3),
        settings_version: row.get::<_, i64>(4) as u64,
        delete_requested: row.get(5),
        reject_calls: row.get(6),
        call_reply: row.get(7),
    })
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl LeaseStore for PgLeases {
    async fn release(&self, node: &str, sessions: &[SessionId]) -> anyhow::Result<()> {
        PgLeases::release(self, node, sessions).await.map(drop)
    }

    async fn renew(
        &self,
        node: &str,
        held: &[(SessionId, u64)],
        ttl: Duration,
    ) -> anyhow::Result<Vec<ClusterSession>> {
        let sessions: Vec<&str> = held.iter().map(|(id, _)| id.as_str()).collect();
        let fences: Vec<i64> = held.iter().map(|(_, f)| *f as i64).collect();
        let conn = self.pool.get().await?;
        // The renewed leases come back with their sessions' rows, so a
        // change made through another host reaches this one with the
        // renewal. A lease whose row is gone (deleted) is not renewed.
        let rows = conn
            .query(
                &format!(
                    "WITH renewed AS (
                        UPDATE session_leases l
                           SET expires_at = now() + make_interval(secs => $4)
                          FROM unnest($1::text[], $2::bigint[]) AS h(session, fence)
                         WHERE l.session = h.session AND l.fence = h.fence AND l.owner = $3
                     RETURNING l.session)
                     SELECT {SESSION_COLUMNS}
                       FROM renewed r JOIN cluster_sessions c ON c.id = r.session"
                ),
                &[&sessions, &fences, &node, &secs(ttl)],
            )
            .await?;
        Ok(rows.iter().filter_map(cluster_session).collect())
    }

    async fn takeable(&self) -> anyhow::Result<Vec<ClusterSession>> {
        let conn = self.pool.get().await?;
        let rows = conn
            .query(
                &format!(
                    "SELECT {SESSION_COLUMNS}
                       FROM cluster_sessions c
                       LEFT JOIN session_leases l ON l.session = c.id
                      WHERE l.session IS NULL OR l.expires_at < now()
                      ORDER BY c.id"
                ),
                &[],
            )
            .await?;
        Ok(rows.iter().filter_map(cluster_session).collect())
    }

    async fn take(&self, id: &SessionId, node: &str, ttl: Duration) -> anyhow::Result<Option<u64>> {
        pg_store::take_lease_when(
            &self.pool,
            id.as_str(),
            node,
            ttl,
            pg_store::Retake::ExpiredOnly,
        )
        .await
    }

    async fn forget(&self, id: &SessionId) -> anyhow::Result<()> {
        PgLeases::forget(self, id).await
    }
}
