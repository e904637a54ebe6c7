//! A session's webhook outbox rows, in the data dir's SQLite outbox
//! (`outbox/outbox.db`, shared by all sessions) and in the cluster's
//! `webhook_outbox`: the same columns. Every row moves, in its order: live
//! deliveries with their attempts and batches, dead letters, and the
//! tombstones (`dead = 2`) that keep a delivered message from being queued
//! again. Delivery and batch ids are kept, so the ERP, which de-duplicates
//! on them, sees nothing twice.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rusqlite::params;
use serde::Serialize;

use crate::paths::DataDir;
use crate::webhook::outbox::Outbox;

/// One row, in neither store's types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub delivery_id: String,
    pub dedupe_key: Option<String>,
    pub body: Vec<u8>,
    pub created_ms: i64,
    pub attempts: i32,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    /// 0 live, 1 dead letter, 2 delivered (kept for its dedupe key).
    pub dead: i16,
    pub batch_id: Option<String>,
}

/// How many rows of each kind, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxCounts {
    /// Not delivered yet.
    pub waiting: u64,
    pub dead_letters: u64,
    /// Delivered, kept so a redelivered message is recognised.
    pub delivered: u64,
}

pub fn counts(rows: &[OutboxRow]) -> OutboxCounts {
    let mut counts = OutboxCounts::default();
    for row in rows {
        match row.dead {
            0 => counts.waiting += 1,
            1 => counts.dead_letters += 1,
            _ => counts.delivered += 1,
        }
    }
    counts
}

/// `<data dir>/outbox/outbox.db`, where the single host's webhook hub keeps
/// it (`WebhookHub::open`).
pub fn sqlite_path(data: &DataDir) -> PathBuf {
    data.root().join("outbox").join("outbox.db")
}

/// An outbox file migrated to the current layout (created if `create`),
/// opened for plain SQL; None when it does not exist and is not wanted.
pub fn open_sqlite(path: &Path, create: bool) -> anyhow::Result<Option<rusqlite::Connection>> {
    if !create && !path.exists() {
        return Ok(None);
    }
    // The outbox's own open runs its migrations (and makes a new file
    // private); then plain SQL on the same file.
    drop(Outbox::open(path).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?);
    let conn = rusqlite::Connection::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(Some(conn))
}

const COLUMNS: &str = "delivery_id, dedupe_key, body, created_ms, attempts, next_attempt_ms, last_error, dead, batch_id";

/// `session`'s rows in a SQLite outbox, in their order.
pub fn read_sqlite(conn: &rusqlite::Connection, session: &str) -> anyhow::Result<Vec<OutboxRow>> {
    let mut statement = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM deliveries WHERE session = ?1 ORDER BY seq"
    ))?;
    let rows = statement
        .query_map([session], |row| {
            Ok(OutboxRow {
                delivery_id: row.get(0)?,
                dedupe_key: row.get(1)?,
                body: row.get(2)?,
                created_ms: row.get(3)?,
                attempts: row.get(4)?,
                next_attempt_ms: row.get(5)?,
                last_error: row.get(6)?,
                dead: row.get(7)?,
                batch_id: row.get(8)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()
        .context("reading the data dir's webhook outbox")?;
    Ok(rows)
}

/// Appends `rows` for `session` to a SQLite outbox, in order (its `seq`
/// follows the insertion order).
pub fn write_sqlite(
    tx: &rusqlite::Transaction<'_>,
    session: &str,
    rows: &[OutboxRow],
) -> anyhow::Result<()> {
    let mut insert = tx.prepare(&format!(
        "INSERT INTO deliveries (session, {COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))?;
    for row in rows {
        insert
            .execute(params![
                session,
                row.delivery_id,
                row.dedupe_key,
                row.body,
                row.created_ms,
                row.attempts,
                row.next_attempt_ms,
                row.last_error,
                row.dead,
                row.batch_id
            ])
            .with_context(|| format!("writing delivery {}", row.delivery_id))?;
    }
    Ok(())
}

/// `session`'s rows in the cluster's outbox, in their order.
pub async fn read_pg(
    tx: &tokio_postgres::Transaction<'_>,
    session: &str,
) -> anyhow::Result<Vec<OutboxRow>> {
    let rows = tx
        .query(
            &format!("SELECT {COLUMNS} FROM webhook_outbox WHERE session = $1 ORDER BY seq"),
            &[&session],
        )
        .await
        .context("reading webhook_outbox")?;
    Ok(rows
        .iter()
        .map(|row| OutboxRow {
            delivery_id: row.get(0),
            dedupe_key: row.get(1),
            body: row.get(2),
            created_ms: row.get(3),
            attempts: row.get(4),
            next_attempt_ms: row.get(5),
            last_error: row.get(6),
            dead: row.get(7),
            batch_id: row.get(8),
        })
        .collect())
}

/// Rows per INSERT into PostgreSQL.
const PG_CHUNK: usize = 2_000;

/// Appends `rows` for `session` to the cluster's outbox, inside `tx`, in
/// order: `seq` is drawn row by row in the order of `ord`.
pub async fn write_pg(
    tx: &tokio_postgres::Transaction<'_>,
    session: &str,
    rows: &[OutboxRow],
) -> anyhow::Result<()> {
    for chunk in rows.chunks(PG_CHUNK) {
        let ids: Vec<&str> = chunk.iter().map(|r| r.delivery_id.as_str()).collect();
        let keys: Vec<Option<&str>> = chunk.iter().map(|r| r.dedupe_key.as_deref()).collect();
        let bodies: Vec<&[u8]> = chunk.iter().map(|r| r.body.as_slice()).collect();
        let created: Vec<i64> = chunk.iter().map(|r| r.created_ms).collect();
        let attempts: Vec<i32> = chunk.iter().map(|r| r.attempts).collect();
        let next: Vec<i64> = chunk.iter().map(|r| r.next_attempt_ms).collect();
        let errors: Vec<Option<&str>> = chunk.iter().map(|r| r.last_error.as_deref()).collect();
        let dead: Vec<i16> = chunk.iter().map(|r| r.dead).collect();
        let batches: Vec<Option<&str>> = chunk.iter().map(|r| r.batch_id.as_deref()).collect();
        tx.execute(
            &format!(
                "INSERT INTO webhook_outbox (session, {COLUMNS})
                 SELECT $1, d, k, b, c, a, n, e, x, t
                   FROM unnest($2::text[], $3::text[], $4::bytea[], $5::bigint[], $6::integer[],
                               $7::bigint[], $8::text[], $9::smallint[], $10::text[])
                        WITH ORDINALITY AS u(d, k, b, c, a, n, e, x, t, ord)
                  ORDER BY ord"
            ),
            &[
                &session, &ids, &keys, &bodies, &created, &attempts, &next, &errors, &dead,
                &batches,
            ],
        )
        .await
        .context("writing webhook_outbox")?;
    }
    Ok(())
}
