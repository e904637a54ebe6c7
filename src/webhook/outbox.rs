//! The durable outbox: every webhook delivery is written here (SQLite, fsync
//! on commit) before anything else happens to it, and deleted only once the
//! receiver answered 2xx. Rows are read one head at a time per session, so
//! memory stays flat however long the receiver is down. Backlog counts are
//! kept in memory as rows change, so reading them costs no scan.
//!
//! This is the store itself, blocking; the running program reaches it only
//! through [`super::outbox_thread::OutboxThread`], which owns it on a thread
//! of its own.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

/// Why an outbox read or write failed, in SQLite's words (e.g. "database or
/// disk is full"). A string, so that one failed group commit can answer
/// every caller in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("outbox: {0}")]
pub struct OutboxError(pub String);

impl From<rusqlite::Error> for OutboxError {
    fn from(e: rusqlite::Error) -> Self {
        OutboxError(e.to_string())
    }
}

/// One pending delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub seq: i64,
    /// Sent as `X-Wabridge-Delivery`; the same on every retry.
    pub delivery_id: String,
    pub session: String,
    pub body: Vec<u8>,
    pub created_ms: i64,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    /// The rows this delivery covers (`seq` first): one, or several
    /// `messages.upsert` rows sent as one POST.
    pub members: Vec<i64>,
}

pub use crate::engine::outbound::DeadLetter;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backlog {
    pub pending: u64,
    pub oldest_ms: Option<i64>,
    pub dead: u64,
    /// The last outbox write for this session failed (disk full, say):
    /// messages wait unacknowledged at WhatsApp until it works again.
    pub write_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    New {
        delivery_id: String,
    },
    /// Same dedupe key seen before (a redelivered message): nothing added.
    Duplicate,
}

/// Live and dead rows per session, kept as rows change.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    pending: u64,
    dead: u64,
}

/// Events to persist for one session: (dedupe key, body) each.
pub type Items<'a> = &'a [(Option<&'a str>, &'a [u8])];

pub struct Outbox {
    conn: Mutex<Connection>,
    counts: Mutex<HashMap<String, Counts>>,
}

/// Schema migrations, in order; `PRAGMA user_version` is how many ran.
/// Outboxes from before versioning have the table (maybe without
/// `batch_id`) and version 0: the first steps tolerate that.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS deliveries (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        delivery_id TEXT NOT NULL UNIQUE,
        session TEXT NOT NULL,
        dedupe_key TEXT UNIQUE,
        body BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        last_error TEXT,
        dead INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS deliveries_by_session ON deliveries(session, dead, seq);",
    "BATCH_ID",
    // The oldest live delivery's age, read after every change, without a scan.
    "CREATE INDEX IF NOT EXISTS deliveries_by_age ON deliveries(session, dead, created_ms);",
];

impl Outbox {
    pub fn open(path: &Path) -> Result<Outbox, OutboxError> {
        if let Some(parent) = path.parent() {
            let _ = crate::paths::create_private_dir(parent);
        }
        if !path.exists() {
            // Private from the start; SQLite gives its -wal/-shm the same mode.
            let _ = crate::paths::ensure_private_file(path);
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a committed row survives power loss, not only a crash.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&conn)?;
        let counts = count_all(&conn)?;
        Ok(Outbox {
            conn: Mutex::new(conn),
            counts: Mutex::new(counts),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, Counts>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Persists a delivery. With a `dedupe_key` (session, chat, sender,
    /// message id) a redelivered message is recognised and not queued twice.
    pub fn enqueue(
        &self,
        session: &str,
        dedupe_key: Option<&str>,
        body: &[u8],
        now_ms: i64,
    ) -> Result<Enqueued, OutboxError> {
        let mut queued = self.enqueue_batch(session, &[(dedupe_key, body)], now_ms)?;
        Ok(queued.pop().unwrap_or(Enqueued::Duplicate))
    }

    /// Persists several deliveries in one transaction: one wait for the
    /// disk however many there are (a flood arrives in batches).
    pub fn enqueue_batch(
        &self,
        session: &str,
        items: Items<'_>,
        now_ms: i64,
    ) -> Result<Vec<Enqueued>, OutboxError> {
        let mut queued = self.enqueue_groups(&[(session, items, now_ms)])?;
        Ok(queued.pop().unwrap_or_default())
    }

    /// Persists the deliveries of several callers (sessions) in one
    /// transaction, a group commit: all of them are on disk, or none.
    pub fn enqueue_groups(
        &self,
        groups: &[(&str, Items<'_>, i64)],
    ) -> Result<Vec<Vec<Enqueued>>, OutboxError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut all = Vec::with_capacity(groups.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO deliveries (delivery_id, session, dedupe_key, body, created_ms, next_attempt_ms)
                 VALUES ('wab-' || lower(hex(randomblob(12))), ?1, ?2, ?3, ?4, ?4)
                 RETURNING delivery_id",
            )?;
            for (session, items, now_ms) in groups {
                let mut queued = Vec::with_capacity(items.len());
                for (dedupe_key, body) in items.iter() {
                    let delivery_id: Option<String> = insert
                        .query_row(params![session, dedupe_key, body, now_ms], |row| row.get(0))
                        .optional()?;
                    queued.push(match delivery_id {
                        Some(delivery_id) => Enqueued::New { delivery_id },
                        None => Enqueued::Duplicate,
                    });
                }
                all.push(queued);
            }
        }
        tx.commit()?;
        let mut counts = self.counts();
        for ((session, _, _), queued) in groups.iter().zip(&all) {
            let new = queued
                .iter()
                .filter(|q| matches!(q, Enqueued::New { .. }))
                .count();
            counts.entry(session.to_string()).or_default().pending += new as u64;
        }
        Ok(all)
    }

    /// The oldest live delivery of a session: order is kept by sending only
    /// the head, whether or not it is due yet.
    pub fn head(&self, session: &str) -> Result<Option<Delivery>, OutboxError> {
        Ok(self.head_row(session)?.map(|(head, _)| head))
    }

    /// The head and the batch it was sent in, if any.
    fn head_row(&self, session: &str) -> Result<Option<(Delivery, Option<String>)>, OutboxError> {
        Ok(self.live_rows(session, i64::MIN, 1)?.pop())
    }

    /// Up to `limit` live rows of `session` after `after_seq`, in order,
    /// each with the batch it was sent in, if any.
    fn live_rows(
        &self,
        session: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<(Delivery, Option<String>)>, OutboxError> {
        let conn = self.conn();
        let mut statement = conn.prepare_cached(
            "SELECT seq, delivery_id, session, body, created_ms, attempts, next_attempt_ms, batch_id
             FROM deliveries WHERE session = ?1 AND dead = 0 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = statement.query_map(params![session, after_seq, limit as i64], |row| {
            let delivery = Delivery {
                seq: row.get(0)?,
                delivery_id: row.get(1)?,
                session: row.get(2)?,
                body: row.get(3)?,
                created_ms: row.get(4)?,
                attempts: row.get(5)?,
                next_attempt_ms: row.get(6)?,
                members: vec![row.get(0)?],
            };
            Ok((delivery, row.get(7)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The next delivery (as [`Self::next_delivery`]) and, when messages go
    /// one per POST, the due single rows right behind it: up to `window`
    /// deliveries of at most `max_bytes` together (the first always), so a
    /// worker reads its queue once per run of POSTs instead of once per
    /// POST. Stops at the first row that is part of a recorded batch or not
    /// due, so order is the queue's.
    pub fn next_deliveries(
        &self,
        session: &str,
        max_messages: usize,
        max_bytes: usize,
        now_ms: i64,
        window: usize,
    ) -> Result<Vec<Delivery>, OutboxError> {
        let Some(head) = self.next_delivery(session, max_messages, max_bytes, now_ms)? else {
            return Ok(Vec::new());
        };
        if max_messages > 1 || head.members.len() > 1 || head.next_attempt_ms > now_ms {
            return Ok(vec![head]);
        }
        let mut bytes = head.body.len();
        let mut deliveries = vec![head];
        let after = deliveries[0].seq;
        for (row, batch) in self.live_rows(session, after, window.saturating_sub(1))? {
            bytes += row.body.len();
            if batch.is_some() || row.next_attempt_ms > now_ms || bytes > max_bytes {
                break;
            }
            deliveries.push(row);
        }
        Ok(deliveries)
    }

    /// What to send next for a session: its head, or, with `max_messages`
    /// above 1, the head and the `messages.upsert` rows right behind it
    /// merged into one POST. A batch is recorded before it is first sent,
    /// so every retry (also after a crash) sends the same messages under
    /// the same delivery id.
    pub fn next_delivery(
        &self,
        session: &str,
        max_messages: usize,
        max_bytes: usize,
        now_ms: i64,
    ) -> Result<Option<Delivery>, OutboxError> {
        let Some((mut head, batch)) = self.head_row(session)? else {
            return Ok(None);
        };
        let rows = match &batch {
            Some(batch_id) => self.batch_rows(session, batch_id)?,
            None if max_messages > 1 && head.next_attempt_ms <= now_ms => {
                within_bytes(self.rows_from(session, head.seq, max_messages)?, max_bytes)
            }
            None => return Ok(Some(head)),
        };
        let bodies: Vec<&[u8]> = rows.iter().map(|(_, body)| body.as_slice()).collect();
        // Merging stops at the first other event, so order is never changed.
        let Some((merged, count)) =
            super::payload::merge_upsert_prefix(&bodies).filter(|(_, count)| *count >= 2)
        else {
            return Ok(Some(head));
        };
        let rows = &rows[..count];
        head.delivery_id = match batch {
            Some(batch_id) => batch_id,
            None => {
                let batch_id = format!("{}+{}", head.delivery_id, count - 1);
                let seqs: Vec<i64> = rows.iter().map(|(seq, _)| *seq).collect();
                self.record_batch(&seqs, &batch_id)?;
                batch_id
            }
        };
        head.body = merged;
        head.members = rows.iter().map(|(seq, _)| *seq).collect();
        Ok(Some(head))
    }

    /// A batch the receiver found too large (413) becomes two, each recorded
    /// under its own id, so that neither is merged again; a half of one
    /// message goes out alone, under its own delivery id. Returns false when
    /// `members` is a single message, which cannot be split.
    pub fn split_batch(&self, members: &[i64]) -> Result<bool, OutboxError> {
        if members.len() < 2 {
            return Ok(false);
        }
        let (first, second) = members.split_at(members.len() / 2);
        for half in [first, second] {
            let head_id: String = self.conn().query_row(
                "SELECT delivery_id FROM deliveries WHERE seq = ?1",
                [half[0]],
                |row| row.get(0),
            )?;
            self.record_batch(half, &format!("{head_id}+{}", half.len() - 1))?;
        }
        Ok(true)
    }

    /// The live rows of a recorded batch, in order.
    fn batch_rows(
        &self,
        session: &str,
        batch_id: &str,
    ) -> Result<Vec<(i64, Vec<u8>)>, OutboxError> {
        let conn = self.conn();
        let mut statement = conn.prepare_cached(
            "SELECT seq, body FROM deliveries WHERE session = ?1 AND dead = 0 AND batch_id = ?2 ORDER BY seq",
        )?;
        let rows = statement.query_map(params![session, batch_id], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Up to `max` live rows not yet in a batch, from `from_seq` on.
    fn rows_from(
        &self,
        session: &str,
        from_seq: i64,
        max: usize,
    ) -> Result<Vec<(i64, Vec<u8>)>, OutboxError> {
        let conn = self.conn();
        let mut statement = conn.prepare_cached(
            "SELECT seq, body FROM deliveries
             WHERE session = ?1 AND dead = 0 AND seq >= ?2 AND batch_id IS NULL
             ORDER BY seq LIMIT ?3",
        )?;
        let rows = statement.query_map(params![session, from_seq, max as i64], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn record_batch(&self, seqs: &[i64], batch_id: &str) -> Result<(), OutboxError> {
        let mut conn = self.conn();
        // Like an ack: lost only to a power cut, after which the messages go
        // out again under the id of the batch they then form.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let recorded = (|| {
            let tx = conn.transaction()?;
            {
                let mut mark =
                    tx.prepare_cached("UPDATE deliveries SET batch_id = ?2 WHERE seq = ?1")?;
                for seq in seqs {
                    mark.execute(params![seq, batch_id])?;
                }
            }
            tx.commit()
        })();
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(recorded?)
    }

    /// The receiver took it: forget it, keeping the dedupe key so a
    /// redelivery of the same message is still recognised.
    pub fn ack(&self, seqs: &[i64]) -> Result<(), OutboxError> {
        let mut conn = self.conn();
        // An ack lost to a power cut only sends the same delivery (same id)
        // again, which receivers dedupe: its commit need not wait for the
        // disk. The next enqueue's full sync carries it to disk anyway.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let acked = (|| {
            let tx = conn.transaction()?;
            let mut gone = Vec::new();
            {
                let mut delete = tx.prepare_cached(
                    "DELETE FROM deliveries WHERE seq = ?1 AND dedupe_key IS NULL AND dead = 0
                     RETURNING session",
                )?;
                // Rows with a dedupe key become tombstones: no body, not live.
                let mut tombstone = tx.prepare_cached(
                    "UPDATE deliveries SET dead = 2, body = x'' WHERE seq = ?1 AND dead = 0
                     RETURNING session",
                )?;
                for seq in seqs {
                    gone.extend(delete.query_row([seq], |r| r.get(0)).optional()?);
                    gone.extend(tombstone.query_row([seq], |r| r.get(0)).optional()?);
                }
            }
            tx.commit()?;
            Ok::<Vec<String>, rusqlite::Error>(gone)
        })();
        conn.pragma_update(None, "synchronous", "FULL")?;
        let mut counts = self.counts();
        for session in acked? {
            let count = counts.entry(session).or_default();
            count.pending = count.pending.saturating_sub(1);
        }
        Ok(())
    }

    pub fn retry_later(&self, seqs: &[i64], at_ms: i64, error: &str) -> Result<(), OutboxError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut update = tx.prepare_cached(
                "UPDATE deliveries SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3 WHERE seq = ?1",
            )?;
            for seq in seqs {
                update.execute(params![seq, at_ms, error])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Parks deliveries as dead letters (visible, replayable one by one: a
    /// buried batch is undone, each row is its own dead letter again).
    pub fn bury(&self, seqs: &[i64], reason: &str) -> Result<(), OutboxError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut buried: Vec<String> = Vec::new();
        {
            let mut update = tx.prepare_cached(
                "UPDATE deliveries SET dead = 1, attempts = attempts + 1, last_error = ?2, batch_id = NULL
                 WHERE seq = ?1 AND dead = 0 RETURNING session",
            )?;
            for seq in seqs {
                buried.extend(
                    update
                        .query_row(params![seq, reason], |r| r.get(0))
                        .optional()?,
                );
            }
        }
        tx.commit()?;
        let mut counts = self.counts();
        for session in buried {
            let count = counts.entry(session).or_default();
            count.pending = count.pending.saturating_sub(1);
            count.dead += 1;
        }
        Ok(())
    }

    /// Puts one of `session`'s dead letters back in its queue, due now and
    /// aged from now: a letter that died of old age is sent again, not buried
    /// again on the spot. A delivery id of another session is not found.
    pub fn replay(
        &self,
        session: &str,
        delivery_id: &str,
        now_ms: i64,
    ) -> Result<bool, OutboxError> {
        let changed = self.conn().execute(
            "UPDATE deliveries SET dead = 0, next_attempt_ms = ?3, created_ms = ?3, batch_id = NULL \
             WHERE delivery_id = ?1 AND session = ?2 AND dead = 1",
            params![delivery_id, session, now_ms],
        )?;
        if changed == 1 {
            let mut counts = self.counts();
            let count = counts.entry(session.to_string()).or_default();
            count.dead = count.dead.saturating_sub(1);
            count.pending += 1;
        }
        Ok(changed == 1)
    }

    /// Pending and dead counts from memory; the oldest live row's age from
    /// an index (one lookup, however long the queue).
    pub fn backlog(&self, session: &str) -> Result<Backlog, OutboxError> {
        let oldest_ms = self
            .conn()
            .prepare_cached(
                "SELECT created_ms FROM deliveries WHERE session = ?1 AND dead = 0
                 ORDER BY created_ms LIMIT 1",
            )?
            .query_row([session], |row| row.get(0))
            .optional()?;
        let count = self.counts().get(session).copied().unwrap_or_default();
        Ok(Backlog {
            pending: count.pending,
            oldest_ms,
            dead: count.dead,
            write_error: None,
        })
    }

    /// Sessions with live deliveries or dead letters.
    pub fn sessions_with_rows(&self) -> Vec<String> {
        self.counts()
            .iter()
            .filter(|(_, c)| c.pending + c.dead > 0)
            .map(|(session, _)| session.clone())
            .collect()
    }

    /// Forgets everything of a deleted session: what it had not delivered
    /// yet, its dead letters and its dedupe keys, so that a new session of
    /// the same id starts empty. Returns how many undelivered rows went.
    pub fn drop_session(&self, session: &str) -> Result<u64, OutboxError> {
        self.conn()
            .execute("DELETE FROM deliveries WHERE session = ?1", [session])?;
        let count = self.counts().remove(session).unwrap_or_default();
        Ok(count.pending)
    }

    pub fn dead_letters(&self, session: &str, limit: u32) -> Result<Vec<DeadLetter>, OutboxError> {
        let conn = self.conn();
        let mut statement = conn.prepare(
            "SELECT delivery_id, session, created_ms, attempts, COALESCE(last_error, '')
             FROM deliveries WHERE session = ?1 AND dead = 1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = statement.query_map(params![session, limit], |row| {
            Ok(DeadLetter {
                // The hub names its own kind (`Hub::dead_letters`).
                target: "webhook",
                delivery_id: row.get(0)?,
                session: row.get(1)?,
                created_ms: row.get(2)?,
                attempts: row.get(3)?,
                reason: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets the dedupe keys of messages delivered before `before_ms`:
    /// WhatsApp does not redeliver that late, and without this the keys
    /// would pile up for ever. Returns how many were dropped.
    pub fn prune_delivered(&self, before_ms: i64) -> Result<usize, OutboxError> {
        Ok(self.conn().execute(
            "DELETE FROM deliveries WHERE dead = 2 AND created_ms < ?1",
            [before_ms],
        )?)
    }

    /// Sessions that still have live deliveries (for the workers at start).
    pub fn sessions_with_backlog(&self) -> Result<Vec<String>, OutboxError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare("SELECT DISTINCT session FROM deliveries WHERE dead = 0 ORDER BY session")?;
        let rows = statement.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Runs the migrations the file has not had yet.
fn migrate(conn: &Connection) -> Result<(), OutboxError> {
    let done: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    for (number, step) in (0_i64..).zip(MIGRATIONS).skip(done.max(0) as usize) {
        let tx = conn.unchecked_transaction()?;
        if *step == "BATCH_ID" {
            // Unversioned outboxes written after batching have the column.
            let has_batch: bool = tx.query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('deliveries') WHERE name = 'batch_id'",
                [],
                |row| row.get(0),
            )?;
            if !has_batch {
                tx.execute_batch("ALTER TABLE deliveries ADD COLUMN batch_id TEXT")?;
            }
        } else {
            tx.execute_batch(step)?;
        }
        tx.pragma_update(None, "user_version", number + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// Live and dead rows per session, read once at open.
fn count_all(conn: &Connection) -> Result<HashMap<String, Counts>, OutboxError> {
    let mut statement = conn.prepare(
        "SELECT session, SUM(dead = 0), SUM(dead = 1) FROM deliveries
         WHERE dead IN (0, 1) GROUP BY session",
    )?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            Counts {
                pending: row.get::<_, i64>(1)? as u64,
                dead: row.get::<_, i64>(2)? as u64,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The longest prefix of `rows` whose bodies add up to at most `max_bytes`,
/// and never less than the first row (a message alone is always sent).
pub(super) fn within_bytes(mut rows: Vec<(i64, Vec<u8>)>, max_bytes: usize) -> Vec<(i64, Vec<u8>)> {
    let mut total = 0;
    let keep = rows
        .iter()
        .position(|(_, body)| {
            total += body.len();
            total > max_bytes
        })
        .unwrap_or(rows.len())
        .max(1);
    rows.truncate(keep);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivered_keys_are_forgotten_after_the_retention_only() {
        let (_tmp, outbox) = outbox();
        let old = outbox.enqueue("s", Some("old"), b"{}", 1_000).unwrap();
        let recent = outbox.enqueue("s", Some("recent"), b"{}", 5_000).unwrap();
        let pending = outbox.enqueue("s", Some("pending"), b"{}", 1_000).unwrap();
        assert!(matches!(old, Enqueued::New { .. }));
        assert!(matches!(recent, Enqueued::New { .. }));
        assert!(matches!(pending, Enqueued::New { .. }));
        let head = outbox.head("s").unwrap().unwrap();
        outbox.ack(&[head.seq]).unwrap();
        let head = outbox.head("s").unwrap().unwrap();
        outbox.ack(&[head.seq]).unwrap();
        assert_eq!(
            outbox.prune_delivered(2_000).unwrap(),
            1,
            "only the old delivered one"
        );
        // Its key is forgotten; the recent one is still recognised; the
        // undelivered one is untouched.
        assert!(matches!(
            outbox.enqueue("s", Some("old"), b"{}", 6_000).unwrap(),
            Enqueued::New { .. }
        ));
        assert_eq!(
            outbox.enqueue("s", Some("recent"), b"{}", 6_000).unwrap(),
            Enqueued::Duplicate
        );
        assert_eq!(outbox.backlog("s").unwrap().pending, 2);
    }

    fn outbox() -> (tempfile::TempDir, Outbox) {
        let tmp = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&tmp.path().join("outbox/outbox.db")).unwrap();
        (tmp, outbox)
    }

    fn upsert(id: &str) -> Vec<u8> {
        use crate::webhook::payload::{WebhookEvent, WireMessage};
        WebhookEvent::MessagesUpsert(vec![WireMessage {
            id: id.into(),
            from: "919075167132".into(),
            text: id.into(),
            timestamp: 1,
            push_name: None,
            media: None,
            is_group: false,
            group_id: None,
            group_name: None,
            reply_to: None,
            from_lid: None,
            from_resolved: true,
            ..Default::default()
        }])
        .body("s")
    }

    fn ids(delivery: &Delivery) -> Vec<String> {
        let body: serde_json::Value = serde_json::from_slice(&delivery.body).unwrap();
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_backlog_goes_out_in_batches_that_stop_at_other_events() {
        let (_tmp, outbox) = outbox();
        for id in ["a", "b", "c"] {
            outbox.enqueue("s", None, &upsert(id), 0).unwrap();
        }
        let status = crate::webhook::payload::WebhookEvent::ConnectionUpdate {
            status: "Connected",
            error: None,
        }
        .body("s");
        outbox.enqueue("s", None, &status, 0).unwrap();
        outbox.enqueue("s", None, &upsert("d"), 0).unwrap();

        // One at a time (the default) sends the head as it is.
        let single = outbox
            .next_delivery("s", 1, usize::MAX, 0)
            .unwrap()
            .unwrap();
        assert_eq!(
            (ids(&single), single.members.len()),
            (vec!["a".to_string()], 1)
        );

        let first = outbox
            .next_delivery("s", 2, usize::MAX, 0)
            .unwrap()
            .unwrap();
        assert_eq!(ids(&first), ["a", "b"]);
        assert!(first.delivery_id.ends_with("+1"), "{}", first.delivery_id);
        outbox.ack(&first.members).unwrap();
        // The status change is not merged, and nothing passes it.
        let second = outbox
            .next_delivery("s", 10, usize::MAX, 0)
            .unwrap()
            .unwrap();
        assert_eq!(ids(&second), ["c"]);
        outbox.ack(&second.members).unwrap();
        let third = outbox
            .next_delivery("s", 10, usize::MAX, 0)
            .unwrap()
            .unwrap();
        assert_eq!(third.body, status);
        outbox.ack(&third.members).unwrap();
        assert_eq!(
            ids(&outbox
                .next_delivery("s", 10, usize::MAX, 0)
                .unwrap()
                .unwrap()),
            ["d"]
        );
    }

    #[test]
    fn a_run_of_single_deliveries_stops_at_its_size_a_recorded_batch_or_a_retry() {
        let (_tmp, outbox) = outbox();
        for id in ["a", "b", "c", "d", "e", "f"] {
            outbox.enqueue("s", None, &upsert(id), 0).unwrap();
        }
        let run = |max_bytes, window, now| {
            let deliveries = outbox
                .next_deliveries("s", 1, max_bytes, now, window)
                .unwrap();
            deliveries.iter().flat_map(ids).collect::<Vec<_>>()
        };
        assert_eq!(run(usize::MAX, 4, 0), ["a", "b", "c", "d"]);
        let one = upsert("a").len();
        assert_eq!(run(2 * one + 1, 10, 0), ["a", "b"]);
        assert_eq!(run(10, 10, 0), ["a"], "the head goes even over the cap");

        // Rows recorded in a batch (from an earlier setting) are not
        // passed: the run ends before them.
        let seqs: Vec<i64> = outbox
            .next_deliveries("s", 1, usize::MAX, 0, 10)
            .unwrap()
            .iter()
            .map(|d| d.seq)
            .collect();
        assert!(outbox.split_batch(&seqs[2..6]).unwrap());
        assert_eq!(run(usize::MAX, 10, 0), ["a", "b"]);

        // A head waiting for its retry goes alone.
        outbox.retry_later(&seqs[..1], 100, "HTTP 500").unwrap();
        assert_eq!(run(usize::MAX, 10, 0), ["a"]);
        assert_eq!(run(usize::MAX, 10, 100), ["a", "b"]);
    }

    #[test]
    fn a_retried_batch_keeps_its_messages_and_id_across_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("outbox.db");
        let outbox = Outbox::open(&path).unwrap();
        for id in ["a", "b"] {
            outbox.enqueue("s", None, &upsert(id), 0).unwrap();
        }
        let sent = outbox
            .next_delivery("s", 50, usize::MAX, 0)
            .unwrap()
            .unwrap();
        outbox.retry_later(&sent.members, 10, "HTTP 500").unwrap();
        // More arrives while the receiver is down; the process restarts.
        outbox.enqueue("s", None, &upsert("c"), 0).unwrap();
        drop(outbox);
        let outbox = Outbox::open(&path).unwrap();
        let again = outbox
            .next_delivery("s", 50, usize::MAX, 20)
            .unwrap()
            .unwrap();
        assert_eq!(again.delivery_id, sent.delivery_id);
        assert_eq!(ids(&again), ["a", "b"]);
        assert_eq!(again.attempts, 1);
        outbox.ack(&again.members).unwrap();
        assert_eq!(
            ids(&outbox
                .next_delivery("s", 50, usize::MAX, 20)
                .unwrap()
                .unwrap()),
            ["c"]
        );
    }

    #[test]
    fn a_batch_stops_at_the_byte_cap_but_never_below_one_message() {
        let (_tmp, outbox) = outbox();
        for id in ["a", "b", "c", "d"] {
            outbox.enqueue("s", None, &upsert(id), 0).unwrap();
        }
        let one = upsert("a").len();
        let first = outbox
            .next_delivery("s", 50, 2 * one + 1, 0)
            .unwrap()
            .unwrap();
        assert_eq!(ids(&first), ["a", "b"]);
        outbox.ack(&first.members).unwrap();
        let tiny = outbox.next_delivery("s", 50, 10, 0).unwrap().unwrap();
        assert_eq!(ids(&tiny), ["c"], "a message over the cap goes alone");
    }

    #[test]
    fn a_split_batch_goes_out_as_two_that_never_merge_again() {
        let (_tmp, outbox) = outbox();
        for id in ["a", "b", "c", "d", "e"] {
            outbox.enqueue("s", None, &upsert(id), 0).unwrap();
        }
        let whole = outbox
            .next_delivery("s", 50, usize::MAX, 0)
            .unwrap()
            .unwrap();
        assert!(outbox.split_batch(&whole.members).unwrap());
        let first = outbox
            .next_delivery("s", 50, usize::MAX, 0)
            .unwrap()
            .unwrap();
        assert_eq!(ids(&first), ["a", "b"]);
        assert!(outbox.split_batch(&first.members).unwrap());
        let alone = outbox
            .next_delivery("s", 50, usize::MAX, 0)
            .unwrap()
            .unwrap();
        assert_eq!(ids(&alone), ["a"]);
        assert!(
            !alone.delivery_id.contains('+'),
            "its own id: {}",
            alone.delivery_id
        );
        assert!(!outbox.split_batch(&alone.members).unwrap());
        outbox.ack(&alone.members).unwrap();
        assert_eq!(
            ids(&outbox
                .next_delivery("s", 50, usize::MAX, 0)
                .unwrap()
                .unwrap()),
            ["b"]
        );
        outbox
            .ack(&[outbox.head("s").unwrap().unwrap().seq])
            .unwrap();
        let second = outbox
            .next_delivery("s", 50, usize::MAX, 0)
            .unwrap()
            .unwrap();
        assert_eq!(ids(&second), ["c", "d", "e"]);
    }

    #[test]
    fn a_refused_batch_becomes_one_dead_letter_per_message() {
        let (_tmp, outbox) = outbox();
        for id in ["a", "b"] {
            outbox.enqueue("s", None, &upsert(id), 0).unwrap();
        }
        let sent = outbox
            .next_delivery("s", 50, usize::MAX, 0)
            .unwrap()
            .unwrap();
        outbox.bury(&sent.members, "HTTP 400").unwrap();
        let dead = outbox.dead_letters("s", 10).unwrap();
        assert_eq!(dead.len(), 2);
        assert!(outbox.replay("s", &dead[1].delivery_id, 0).unwrap());
        let replayed = outbox
            .next_delivery("s", 50, usize::MAX, 0)
            .unwrap()
            .unwrap();
        assert_eq!(replayed.delivery_id, dead[1].delivery_id);
        assert_eq!(ids(&replayed), ["b"]);
    }

    #[test]
    fn head_keeps_per_session_order() {
        let (_tmp, outbox) = outbox();
        for n in 0..3 {
            outbox
                .enqueue("a", None, format!("a{n}").as_bytes(), n)
                .unwrap();
            outbox
                .enqueue("b", None, format!("b{n}").as_bytes(), n)
                .unwrap();
        }
        let mut seen = Vec::new();
        while let Some(head) = outbox.head("a").unwrap() {
            seen.push(String::from_utf8(head.body.clone()).unwrap());
            outbox.ack(&[head.seq]).unwrap();
        }
        assert_eq!(seen, ["a0", "a1", "a2"]);
        assert_eq!(outbox.backlog("b").unwrap().pending, 3);
    }

    #[test]
    fn dedupe_key_survives_the_ack() {
        let (_tmp, outbox) = outbox();
        let first = outbox
            .enqueue("a", Some("a|chat|sender|ID1"), b"x", 1)
            .unwrap();
        assert!(matches!(first, Enqueued::New { .. }));
        assert_eq!(
            outbox
                .enqueue("a", Some("a|chat|sender|ID1"), b"x", 2)
                .unwrap(),
            Enqueued::Duplicate
        );
        let head = outbox.head("a").unwrap().unwrap();
        outbox.ack(&[head.seq]).unwrap();
        assert_eq!(outbox.head("a").unwrap(), None);
        assert_eq!(
            outbox
                .enqueue("a", Some("a|chat|sender|ID1"), b"x", 3)
                .unwrap(),
            Enqueued::Duplicate
        );
    }

    #[test]
    fn dead_letters_are_listed_and_replayable() {
        let (_tmp, outbox) = outbox();
        let Enqueued::New { delivery_id } = outbox.enqueue("a", None, b"x", 1).unwrap() else {
            panic!()
        };
        let head = outbox.head("a").unwrap().unwrap();
        outbox.bury(&[head.seq], "HTTP 400").unwrap();
        assert_eq!(outbox.head("a").unwrap(), None);
        let dead = outbox.dead_letters("a", 10).unwrap();
        assert_eq!(dead[0].reason, "HTTP 400");
        assert_eq!(
            outbox.backlog("a").unwrap(),
            Backlog {
                pending: 0,
                oldest_ms: None,
                dead: 1,
                write_error: None
            }
        );
        assert!(
            !outbox.replay("b", &delivery_id, 5).unwrap(),
            "another session's URL cannot replay it"
        );
        assert!(outbox.replay("a", &delivery_id, 5).unwrap());
        let head = outbox.head("a").unwrap().unwrap();
        assert_eq!(head.delivery_id, delivery_id);
        assert_eq!(head.created_ms, 5, "its age starts again at the replay");
    }

    #[test]
    fn survives_reopening() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("outbox.db");
        {
            let outbox = Outbox::open(&path).unwrap();
            outbox.enqueue("a", None, b"kept", 7).unwrap();
        }
        let outbox = Outbox::open(&path).unwrap();
        let head = outbox.head("a").unwrap().unwrap();
        assert_eq!(head.body, b"kept");
        assert_eq!(outbox.sessions_with_backlog().unwrap(), ["a"]);
        assert_eq!(outbox.backlog("a").unwrap().oldest_ms, Some(7));
    }
}
