//! The outbox of a cluster: the same queue as [`super::outbox`] (same
//! rows, same guarantees: persisted before WhatsApp is acknowledged,
//! removed only on 2xx, per-session order, one delivery id per message)
//! in PostgreSQL's `webhook_outbox` (the NATS target's in `nats_outbox`,
//! the same columns), shared by every host. A host that dies
//! leaves its undelivered rows there; the session's new owner delivers
//! them under the same delivery ids, so the ERP can de-duplicate.
//!
//! # Fencing
//!
//! Every write for a session runs in a transaction that first reads the
//! session's lease `SELECT fence FROM session_leases WHERE session = $1
//! FOR SHARE` and goes on only when its counter is the fence this host
//! holds (the lease manager's, through a [`FenceSource`]), as `pg_store`'s
//! writes do: a host that lost the lease can neither enqueue, nor ack, nor
//! bury, and changes nothing. Reading the head of a queue may record a
//! batch, so it is fenced too; listing dead letters is not.
//!
//! # Order
//!
//! As [`super::outbox_thread`] does for SQLite, one task runs every call in
//! the order sent (so an ack sent without waiting lands before the next
//! read), committing the enqueues that queued up meanwhile in one
//! transaction (a group commit), and publishes each touched session's
//! backlog for the views afterwards.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use deadpool_postgres::{Pool, Transaction};
use tokio::sync::{Notify, mpsc, oneshot};

use super::outbox::{Backlog, DeadLetter, Delivery, Enqueued, OutboxError, within_bytes};
use super::outbox_thread::{DeliveryLimits, OwnedItems};
use crate::paths::SessionId;

/// The fence of the lease this host holds on a session, if any (the lease
/// manager's `Fences`).
pub type FenceSource = Arc<dyn Fn(&SessionId) -> Option<u64> + Send + Sync>;

/// Enqueues that one group commit takes at most.
const GROUP_MAX: usize = 256;

type Reply<T> = oneshot::Sender<Result<T, OutboxError>>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Who hears that an enqueue is committed (or failed).
enum Answer {
    Caller(Reply<Vec<Enqueued>>),
    Wake(Option<Arc<Notify>>),
}

impl Answer {
    fn give(self, result: Result<Vec<Enqueued>, OutboxError>) {
        match self {
            Answer::Caller(reply) => {
                let _ = reply.send(result);
            }
            Answer::Wake(worker) => {
                if let Err(e) = &result {
                    tracing::error!("webhook outbox: cannot persist an event: {e}");
                }
                if let Some(worker) = worker {
                    worker.notify_one();
                }
            }
        }
    }
}

/// What a call did: nothing (a read), or a write to a session that worked
/// or failed.
type Touched = Option<(SessionId, Result<(), String>)>;

enum Job {
    Enqueue {
        session: SessionId,
        items: OwnedItems,
        now_ms: i64,
        answer: Answer,
    },
    Call {
        op: Box<dyn FnOnce(Arc<Core>) -> BoxFuture<Touched> + Send>,
        /// The enqueues sent before it are committed first.
        after_enqueues: bool,
    },
}

#[derive(Default)]
struct Published {
    backlogs: Mutex<HashMap<SessionId, Backlog>>,
    changed: Mutex<BTreeSet<SessionId>>,
    notify: Notify,
}

/// The database and the fences: what every call runs against.
struct Core {
    pool: Pool,
    fences: FenceSource,
    table: &'static str,
}

/// Cheap to clone; its task ends when the last clone is dropped.
#[derive(Clone)]
pub struct PgOutbox {
    jobs: mpsc::UnboundedSender<Job>,
    published: Arc<Published>,
    table: &'static str,
}

/// Which target's queue: each has a table of its own (same columns), so
/// each moves at its own pace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxTable {
    /// `webhook_outbox`.
    Webhook,
    /// `nats_outbox`: the NATS JetStream target's.
    Nats,
}

impl OutboxTable {
    fn name(self) -> &'static str {
        match self {
            OutboxTable::Webhook => "webhook_outbox",
            OutboxTable::Nats => "nats_outbox",
        }
    }
}

fn db(e: impl std::fmt::Display) -> OutboxError {
    OutboxError(e.to_string())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl PgOutbox {
    /// Starts the outbox's task over a migrated database (`pg_store::migrate`);
    /// the backlog of every session with rows is published first.
    pub async fn start(
        pool: Pool,
        fences: FenceSource,
        table: OutboxTable,
    ) -> Result<PgOutbox, OutboxError> {
        let table = table.name();
        let core = Arc::new(Core {
            pool,
            fences,
            table,
        });
        let published = Arc::new(Published::default());
        for session in core.sessions_with_rows().await? {
            if let Ok(session) = SessionId::parse(&session) {
                publish(&core, &published, &session, Ok(())).await;
            }
        }
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(core, queue, published.clone()));
        Ok(PgOutbox {
            jobs,
            published,
            table,
        })
    }

    pub async fn enqueue_batch(
        &self,
        session: &SessionId,
        items: OwnedItems,
        now_ms: i64,
    ) -> Result<Vec<Enqueued>, OutboxError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Enqueue {
            session: session.clone(),
            items,
            now_ms,
            answer: Answer::Caller(reply),
        });
        answer.await.unwrap_or_else(|_| Err(gone()))
    }

    pub fn enqueue_detached(
        &self,
        session: &SessionId,
        items: OwnedItems,
        now_ms: i64,
        worker: Option<Arc<Notify>>,
    ) {
        self.send(Job::Enqueue {
            session: session.clone(),
            items,
            now_ms,
            answer: Answer::Wake(worker),
        });
    }

    pub async fn next_deliveries(
        &self,
        session: &SessionId,
        limits: DeliveryLimits,
        now_ms: i64,
    ) -> Result<Vec<Delivery>, OutboxError> {
        let owned = session.clone();
        self.submit(false, None, move |core| async move {
            let mut conn = core.conn().await?;
            let tx = core.fenced(&mut conn, &owned).await?;
            let next = next_deliveries(&tx, core.table, owned.as_str(), limits, now_ms).await?;
            tx.commit().await.map_err(db)?;
            Ok(next)
        })
        .await
    }

    pub async fn ack_and_next(
        &self,
        session: &SessionId,
        seqs: Vec<i64>,
        limits: DeliveryLimits,
        now_ms: i64,
    ) -> Result<Vec<Delivery>, OutboxError> {
        let owned = session.clone();
        self.submit(false, Some(session.clone()), move |core| async move {
            let mut conn = core.conn().await?;
            let tx = core.fenced(&mut conn, &owned).await?;
            ack(&tx, core.table, owned.as_str(), &seqs).await?;
            let next = next_deliveries(&tx, core.table, owned.as_str(), limits, now_ms).await?;
            tx.commit().await.map_err(db)?;
            Ok(next)
        })
        .await
    }

    pub fn ack_detached(&self, session: &SessionId, seqs: Vec<i64>) {
        let table = self.table;
        let session = session.clone();
        self.send(Job::Call {
            op: Box::new(move |core| {
                Box::pin(async move {
                    let outcome = core
                        .write(&session, |tx, s| {
                            Box::pin(async move { ack(tx, table, &s, &seqs).await })
                        })
                        .await
                        .map_err(|e| {
                            tracing::error!(
                                "webhook outbox of {session}: cannot record a delivery: {e}"
                            );
                            e.0
                        });
                    Some((session, outcome))
                })
            }),
            after_enqueues: false,
        });
    }

    pub async fn retry_later(
        &self,
        session: &SessionId,
        seqs: Vec<i64>,
        at_ms: i64,
        error: String,
    ) -> Result<(), OutboxError> {
        let table = self.table;
        self.write(session, move |tx, s| {
            Box::pin(async move {
                tx.execute(
                    &format!("UPDATE {table} SET attempts = attempts + 1, next_attempt_ms = $3, last_error = $4
                      WHERE session = $1 AND seq = ANY($2)"),
                    &[&s, &seqs, &at_ms, &error],
                )
                .await
                .map_err(db)?;
                Ok(())
            })
        })
        .await
    }

    pub async fn bury(
        &self,
        session: &SessionId,
        seqs: Vec<i64>,
        reason: String,
    ) -> Result<(), OutboxError> {
        let table = self.table;
        self.write(session, move |tx, s| {
            Box::pin(async move {
                tx.execute(
                    &format!(
                        "UPDATE {table}
                        SET dead = 1, attempts = attempts + 1, last_error = $3, batch_id = NULL
                      WHERE session = $1 AND seq = ANY($2) AND dead = 0"
                    ),
                    &[&s, &seqs, &reason],
                )
                .await
                .map_err(db)?;
                Ok(())
            })
        })
        .await
    }

    pub async fn split_batch(
        &self,
        session: &SessionId,
        members: Vec<i64>,
    ) -> Result<bool, OutboxError> {
        let table = self.table;
        self.write(session, move |tx, _| {
            Box::pin(async move {
                if members.len() < 2 {
                    return Ok(false);
                }
                let (first, second) = members.split_at(members.len() / 2);
                for half in [first, second] {
                    let head_id: String = tx
                        .query_one(
                            &format!("SELECT delivery_id FROM {table} WHERE seq = $1"),
                            &[&half[0]],
                        )
                        .await
                        .map_err(db)?
                        .get(0);
                    record_batch(tx, table, half, &format!("{head_id}+{}", half.len() - 1)).await?;
                }
                Ok(true)
            })
        })
        .await
    }

    pub async fn replay(
        &self,
        session: &SessionId,
        delivery_id: &str,
        now_ms: i64,
    ) -> Result<bool, OutboxError> {
        let table = self.table;
        let id = delivery_id.to_string();
        self.write(session, move |tx, s| {
            Box::pin(async move {
                let changed = tx
                    .execute(
                        &format!(
                            "UPDATE {table}
                            SET dead = 0, next_attempt_ms = $3, created_ms = $3, batch_id = NULL
                          WHERE delivery_id = $1 AND session = $2 AND dead = 1"
                        ),
                        &[&id, &s, &now_ms],
                    )
                    .await
                    .map_err(db)?;
                Ok(changed == 1)
            })
        })
        .await
    }

    /// Forgets a deleted session's rows (fenced: only its owner deletes it).
    pub async fn drop_session(&self, session: &SessionId) -> Result<u64, OutboxError> {
        let table = self.table;
        self.write(session, move |tx, s| {
            Box::pin(async move {
                let pending: i64 = tx
                    .query_one(
                        &format!("SELECT count(*) FROM {table} WHERE session = $1 AND dead = 0"),
                        &[&s],
                    )
                    .await
                    .map_err(db)?
                    .get(0);
                tx.execute(&format!("DELETE FROM {table} WHERE session = $1"), &[&s])
                    .await
                    .map_err(db)?;
                Ok(pending as u64)
            })
        })
        .await
    }

    pub async fn dead_letters(
        &self,
        session: &SessionId,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, OutboxError> {
        let table = self.table;
        let session = session.clone();
        self.submit(true, None, move |core| async move {
            let conn = core.conn().await?;
            let rows = conn
                .query(
                    &format!("SELECT delivery_id, session, created_ms, attempts, coalesce(last_error, '')
                       FROM {table} WHERE session = $1 AND dead = 1 ORDER BY seq LIMIT $2"),
                    &[&session.as_str(), &i64::from(limit)],
                )
                .await
                .map_err(db)?;
            Ok(rows
                .iter()
                .map(|r| DeadLetter {
                    target: "webhook",
                    delivery_id: r.get(0),
                    session: r.get(1),
                    created_ms: r.get(2),
                    attempts: r.get::<_, i32>(3) as u32,
                    reason: r.get(4),
                })
                .collect())
        })
        .await
    }

    /// Resolves once every job sent before it has run.
    pub async fn flush(&self) -> Result<(), OutboxError> {
        self.submit(true, None, |_| async { Ok(()) }).await
    }

    /// Forgets the dedupe keys of messages delivered before `before_ms`
    /// (housekeeping of delivered rows, for every session: not fenced).
    pub async fn prune_delivered(&self, before_ms: i64) -> Result<usize, OutboxError> {
        let table = self.table;
        self.submit(true, None, move |core| async move {
            let conn = core.conn().await?;
            let n = conn
                .execute(
                    &format!("DELETE FROM {table} WHERE dead = 2 AND created_ms < $1"),
                    &[&before_ms],
                )
                .await
                .map_err(db)?;
            Ok(n as usize)
        })
        .await
    }

    pub fn backlog(&self, session: &SessionId) -> Backlog {
        lock(&self.published.backlogs)
            .get(session)
            .cloned()
            .unwrap_or_default()
    }

    pub async fn changed_sessions(&self) -> Vec<SessionId> {
        loop {
            let notified = self.published.notify.notified();
            let changed = std::mem::take(&mut *lock(&self.published.changed));
            if !changed.is_empty() {
                return changed.into_iter().collect();
            }
            notified.await;
        }
    }

    /// One fenced write to `session`, in its own transaction; its backlog
    /// is published afterwards.
    async fn write<T: Send + 'static>(
        &self,
        session: &SessionId,
        op: impl for<'t> FnOnce(&'t Transaction<'t>, String) -> BoxFutureRef<'t, T> + Send + 'static,
    ) -> Result<T, OutboxError> {
        let owned = session.clone();
        self.submit(true, Some(session.clone()), move |core| async move {
            core.write(&owned, op).await
        })
        .await
    }

    async fn submit<T, F, Fut>(
        &self,
        after_enqueues: bool,
        touches: Option<SessionId>,
        op: F,
    ) -> Result<T, OutboxError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Core>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, OutboxError>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Call {
            op: Box::new(move |core| {
                Box::pin(async move {
                    let result = op(core).await;
                    let outcome = result.as_ref().map(|_| ()).map_err(|e| e.0.clone());
                    let _ = reply.send(result);
                    touches.map(|session| (session, outcome))
                })
            }),
            after_enqueues,
        });
        answer.await.unwrap_or_else(|_| Err(gone()))
    }

    fn send(&self, job: Job) {
        let _ = self.jobs.send(job);
    }
}

type BoxFutureRef<'t, T> = Pin<Box<dyn Future<Output = Result<T, OutboxError>> + Send + 't>>;

fn gone() -> OutboxError {
    OutboxError("the outbox task has stopped".into())
}

impl Core {
    async fn conn(&self) -> Result<deadpool_postgres::Object, OutboxError> {
        self.pool.get().await.map_err(db)
    }

    /// A transaction in which `session`'s lease still carries the fence this
    /// host holds, its row held `FOR SHARE` until the end (a takeover waits
    /// for it; every later write sees the new fence).
    async fn fenced<'a>(
        &self,
        conn: &'a mut deadpool_postgres::Object,
        session: &SessionId,
    ) -> Result<Transaction<'a>, OutboxError> {
        let ours = (self.fences)(session);
        let tx = conn.transaction().await.map_err(db)?;
        let theirs = tx
            .query_opt(
                "SELECT fence FROM session_leases WHERE session = $1 FOR SHARE",
                &[&session.as_str()],
            )
            .await
            .map_err(db)?
            .map(|r| r.get::<_, i64>(0) as u64);
        match ours {
            Some(fence) if theirs == Some(fence) => Ok(tx),
            _ => Err(fenced(session, ours, theirs)),
        }
    }

    async fn write<T>(
        &self,
        session: &SessionId,
        op: impl for<'t> FnOnce(&'t Transaction<'t>, String) -> BoxFutureRef<'t, T>,
    ) -> Result<T, OutboxError> {
        let mut conn = self.conn().await?;
        let tx = self.fenced(&mut conn, session).await?;
        let result = op(&tx, session.to_string()).await?;
        tx.commit().await.map_err(db)?;
        Ok(result)
    }

    /// Commits the enqueues of several sessions in one transaction; a
    /// session whose lease this host does not hold gets a fenced error and
    /// adds nothing, the others are committed.
    async fn enqueue_groups(
        &self,
        groups: &[(SessionId, OwnedItems, i64)],
    ) -> Result<Vec<Result<Vec<Enqueued>, OutboxError>>, OutboxError> {
        let table = self.table;
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(db)?;
        let check = tx
            .prepare_cached("SELECT fence FROM session_leases WHERE session = $1 FOR SHARE")
            .await
            .map_err(db)?;
        let insert = tx
            .prepare_cached(
                &format!("INSERT INTO {table} (delivery_id, session, dedupe_key, body, created_ms, next_attempt_ms)
                 VALUES ('wab-' || substr(replace(gen_random_uuid()::text, '-', ''), 1, 24), $1, $2, $3, $4, $4)
                 ON CONFLICT (session, dedupe_key) DO NOTHING
                 RETURNING delivery_id"),
            )
            .await
            .map_err(db)?;
        let mut checked: HashMap<&SessionId, Option<OutboxError>> = HashMap::new();
        let mut all = Vec::with_capacity(groups.len());
        for (session, items, now_ms) in groups {
            if !checked.contains_key(session) {
                let ours = (self.fences)(session);
                let theirs = tx
                    .query_opt(&check, &[&session.as_str()])
                    .await
                    .map_err(db)?
                    .map(|r| r.get::<_, i64>(0) as u64);
                let refused = match ours {
                    Some(fence) if theirs == Some(fence) => None,
                    _ => Some(fenced(session, ours, theirs)),
                };
                checked.insert(session, refused);
            }
            if let Some(Some(refused)) = checked.get(session) {
                all.push(Err(refused.clone()));
                continue;
            }
            let mut queued = Vec::with_capacity(items.len());
            for (key, body) in items {
                let row = tx
                    .query_opt(&insert, &[&session.as_str(), key, body, now_ms])
                    .await
                    .map_err(db)?;
                queued.push(match row {
                    Some(row) => Enqueued::New {
                        delivery_id: row.get(0),
                    },
                    None => Enqueued::Duplicate,
                });
            }
            all.push(Ok(queued));
        }
        tx.commit().await.map_err(db)?;
        Ok(all)
    }

    async fn backlog(&self, session: &SessionId) -> Result<Backlog, OutboxError> {
        let table = self.table;
        let conn = self.conn().await?;
        let row = conn
            .query_one(
                &format!(
                    "SELECT count(*) FILTER (WHERE dead = 0), count(*) FILTER (WHERE dead = 1),
                        min(created_ms) FILTER (WHERE dead = 0)
                   FROM {table} WHERE session = $1 AND dead IN (0, 1)"
                ),
                &[&session.as_str()],
            )
            .await
            .map_err(db)?;
        Ok(Backlog {
            pending: row.get::<_, i64>(0) as u64,
            dead: row.get::<_, i64>(1) as u64,
            oldest_ms: row.get(2),
            write_error: None,
        })
    }

    async fn sessions_with_rows(&self) -> Result<Vec<String>, OutboxError> {
        let table = self.table;
        let conn = self.conn().await?;
        let rows = conn
            .query(
                &format!(
                    "SELECT DISTINCT session FROM {table} WHERE dead IN (0, 1) ORDER BY session"
                ),
                &[],
            )
            .await
            .map_err(db)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

fn fenced(session: &SessionId, ours: Option<u64>, theirs: Option<u64>) -> OutboxError {
    let theirs = match theirs {
        Some(fence) => format!("at fence {fence}"),
        None => "gone".to_string(),
    };
    match ours {
        Some(ours) => OutboxError(format!(
            "fenced: the lease on session {session} moved to another host (this host writes under fence {ours}, the lease is {theirs})"
        )),
        None => OutboxError(format!(
            "fenced: this host holds no lease on session {session} (the lease is {theirs})"
        )),
    }
}

/// Acknowledges `seqs`: rows with a dedupe key become tombstones (no body,
/// not live), so a redelivery of the same message is still recognised.
async fn ack(
    tx: &Transaction<'_>,
    table: &str,
    session: &str,
    seqs: &[i64],
) -> Result<(), OutboxError> {
    tx.execute(
        &format!(
            "DELETE FROM {table}
          WHERE session = $1 AND seq = ANY($2) AND dedupe_key IS NULL AND dead = 0"
        ),
        &[&session, &seqs],
    )
    .await
    .map_err(db)?;
    tx.execute(
        &format!(
            "UPDATE {table} SET dead = 2, body = '\\x'::bytea
          WHERE session = $1 AND seq = ANY($2) AND dead = 0"
        ),
        &[&session, &seqs],
    )
    .await
    .map_err(db)?;
    Ok(())
}

async fn record_batch(
    tx: &Transaction<'_>,
    table: &str,
    seqs: &[i64],
    batch_id: &str,
) -> Result<(), OutboxError> {
    tx.execute(
        &format!("UPDATE {table} SET batch_id = $2 WHERE seq = ANY($1)"),
        &[&seqs, &batch_id],
    )
    .await
    .map_err(db)?;
    Ok(())
}

/// Up to `limit` live rows of `session` after `after_seq`, in order, each
/// with the batch it was sent in, if any.
async fn live_rows(
    tx: &Transaction<'_>,
    table: &str,
    session: &str,
    after_seq: i64,
    limit: usize,
) -> Result<Vec<(Delivery, Option<String>)>, OutboxError> {
    let rows = tx
        .query(
            &format!("SELECT seq, delivery_id, session, body, created_ms, attempts, next_attempt_ms, batch_id
               FROM {table} WHERE session = $1 AND dead = 0 AND seq > $2
              ORDER BY seq LIMIT $3"),
            &[&session, &after_seq, &(limit as i64)],
        )
        .await
        .map_err(db)?;
    Ok(rows
        .iter()
        .map(|row| {
            let seq: i64 = row.get(0);
            (
                Delivery {
                    seq,
                    delivery_id: row.get(1),
                    session: row.get(2),
                    body: row.get(3),
                    created_ms: row.get(4),
                    attempts: row.get::<_, i32>(5) as u32,
                    next_attempt_ms: row.get(6),
                    members: vec![seq],
                },
                row.get(7),
            )
        })
        .collect())
}

async fn seq_bodies(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<(i64, Vec<u8>)>, OutboxError> {
    let rows = tx.query(sql, params).await.map_err(db)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// [`super::outbox::Outbox::next_deliveries`], in SQL of PostgreSQL.
async fn next_deliveries(
    tx: &Transaction<'_>,
    table: &str,
    session: &str,
    limits: DeliveryLimits,
    now_ms: i64,
) -> Result<Vec<Delivery>, OutboxError> {
    let Some(head) = next_delivery(
        tx,
        table,
        session,
        limits.max_messages,
        limits.max_bytes,
        now_ms,
    )
    .await?
    else {
        return Ok(Vec::new());
    };
    if limits.max_messages > 1 || head.members.len() > 1 || head.next_attempt_ms > now_ms {
        return Ok(vec![head]);
    }
    let mut bytes = head.body.len();
    let after = head.seq;
    let mut deliveries = vec![head];
    for (row, batch) in
        live_rows(tx, table, session, after, limits.window.saturating_sub(1)).await?
    {
        bytes += row.body.len();
        if batch.is_some() || row.next_attempt_ms > now_ms || bytes > limits.max_bytes {
            break;
        }
        deliveries.push(row);
    }
    Ok(deliveries)
}

/// [`super::outbox::Outbox::next_delivery`]: the head, or the head and the
/// `messages.upsert` rows right behind it merged (recorded as a batch
/// before it is first sent).
async fn next_delivery(
    tx: &Transaction<'_>,
    table: &str,
    session: &str,
    max_messages: usize,
    max_bytes: usize,
    now_ms: i64,
) -> Result<Option<Delivery>, OutboxError> {
    let Some((mut head, batch)) = live_rows(tx, table, session, i64::MIN, 1).await?.pop() else {
        return Ok(None);
    };
    let rows = match &batch {
        Some(batch_id) => {
            seq_bodies(
                tx,
                &format!(
                    "SELECT seq, body FROM {table}
                  WHERE session = $1 AND dead = 0 AND batch_id = $2 ORDER BY seq"
                ),
                &[&session, batch_id],
            )
            .await?
        }
        None if max_messages > 1 && head.next_attempt_ms <= now_ms => within_bytes(
            seq_bodies(
                tx,
                &format!(
                    "SELECT seq, body FROM {table}
                  WHERE session = $1 AND dead = 0 AND seq >= $2 AND batch_id IS NULL
                  ORDER BY seq LIMIT $3"
                ),
                &[&session, &head.seq, &(max_messages as i64)],
            )
            .await?,
            max_bytes,
        ),
        None => return Ok(Some(head)),
    };
    let bodies: Vec<&[u8]> = rows.iter().map(|(_, body)| body.as_slice()).collect();
    let Some((merged, count)) =
        super::payload::merge_upsert_prefix(&bodies).filter(|(_, count)| *count >= 2)
    else {
        return Ok(Some(head));
    };
    let rows = &rows[..count];
    let seqs: Vec<i64> = rows.iter().map(|(seq, _)| *seq).collect();
    head.delivery_id = match batch {
        Some(batch_id) => batch_id,
        None => {
            let batch_id = format!("{}+{}", head.delivery_id, count - 1);
            record_batch(tx, table, &seqs, &batch_id).await?;
            batch_id
        }
    };
    head.body = merged;
    head.members = seqs;
    Ok(Some(head))
}

/// The task: takes what is queued, commits the enqueues in it together,
/// runs other calls one by one in arrival order.
async fn run(core: Arc<Core>, mut queue: mpsc::UnboundedReceiver<Job>, published: Arc<Published>) {
    while let Some(first) = queue.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < GROUP_MAX
            && let Ok(job) = queue.try_recv()
        {
            jobs.push(job);
        }
        let mut enqueues = Vec::new();
        let mut touched = BTreeMap::new();
        for job in jobs {
            match job {
                Job::Enqueue {
                    session,
                    items,
                    now_ms,
                    answer,
                } => enqueues.push((session, items, now_ms, answer)),
                Job::Call { op, after_enqueues } => {
                    if after_enqueues {
                        commit_group(&core, std::mem::take(&mut enqueues), &mut touched).await;
                        publish_all(&core, &published, &mut touched).await;
                    }
                    if let Some((session, outcome)) = op(core.clone()).await {
                        touched.insert(session, outcome);
                    }
                }
            }
        }
        commit_group(&core, enqueues, &mut touched).await;
        publish_all(&core, &published, &mut touched).await;
    }
}

type PendingEnqueue = (SessionId, OwnedItems, i64, Answer);

async fn commit_group(
    core: &Core,
    enqueues: Vec<PendingEnqueue>,
    touched: &mut BTreeMap<SessionId, Result<(), String>>,
) {
    if enqueues.is_empty() {
        return;
    }
    let mut groups = Vec::with_capacity(enqueues.len());
    let mut answers = Vec::with_capacity(enqueues.len());
    for (session, items, now_ms, answer) in enqueues {
        groups.push((session, items, now_ms));
        answers.push(answer);
    }
    let results = match core.enqueue_groups(&groups).await {
        Ok(results) => results,
        Err(e) => {
            tracing::error!(
                "webhook outbox: cannot persist {} event(s): {e}",
                groups
                    .iter()
                    .map(|(_, items, _)| items.len())
                    .sum::<usize>()
            );
            groups.iter().map(|_| Err(e.clone())).collect()
        }
    };
    for ((session, ..), (answer, result)) in groups.iter().zip(answers.into_iter().zip(results)) {
        let outcome = result.as_ref().map(|_| ()).map_err(|e| e.0.clone());
        // A failure of one caller is not overwritten by another's success.
        match touched.get(session) {
            Some(Err(_)) if outcome.is_ok() => {}
            _ => {
                touched.insert(session.clone(), outcome);
            }
        }
        answer.give(result);
    }
}

async fn publish_all(
    core: &Core,
    published: &Published,
    touched: &mut BTreeMap<SessionId, Result<(), String>>,
) {
    for (session, outcome) in std::mem::take(touched) {
        publish(core, published, &session, outcome).await;
    }
}

async fn publish(
    core: &Core,
    published: &Published,
    session: &SessionId,
    outcome: Result<(), String>,
) {
    let mut backlog = match core.backlog(session).await {
        Ok(backlog) => backlog,
        Err(e) => {
            tracing::error!("webhook outbox: cannot read the backlog of {session}: {e}");
            lock(&published.backlogs)
                .get(session)
                .cloned()
                .unwrap_or_default()
        }
    };
    backlog.write_error = outcome.err();
    lock(&published.backlogs).insert(session.clone(), backlog);
    lock(&published.changed).insert(session.clone());
    published.notify.notify_one();
}
