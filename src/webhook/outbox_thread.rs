//! The outbox on a thread of its own. SQLite calls block (an fsync on a busy
//! disk can take tens of milliseconds); made on tokio's few workers they
//! would stall every session's keepalive and every API request behind them.
//! Here callers send a job and await its answer; the thread runs the jobs
//! in order (so per-session order holds), commits the enqueues that queued
//! up meanwhile in one transaction (a group commit: one fsync for all of
//! them, each caller still answered only once its rows are on disk), and
//! after every change publishes the session's backlog, so readers (views,
//! `/health`) never wait for the disk.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, mpsc, oneshot};

use crate::paths::SessionId;

use super::outbox::{Backlog, DeadLetter, Delivery, Enqueued, Items, Outbox, OutboxError};

/// Enqueues that one group commit takes at most.
const GROUP_MAX: usize = 256;

/// How much one read of a session's queue hands its worker.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryLimits {
    /// Messages merged into one POST.
    pub max_messages: usize,
    /// Bytes of a merged POST, and of the deliveries read at once.
    pub max_bytes: usize,
    /// Deliveries read at once.
    pub window: usize,
}

impl DeliveryLimits {
    fn next(
        self,
        outbox: &Outbox,
        session: &str,
        now_ms: i64,
    ) -> Result<Vec<Delivery>, OutboxError> {
        outbox.next_deliveries(
            session,
            self.max_messages,
            self.max_bytes,
            now_ms,
            self.window,
        )
    }
}

type Reply<T> = oneshot::Sender<Result<T, OutboxError>>;

/// Who hears that an enqueue is on disk (or failed): its caller, or, for
/// one sent without waiting, the session's delivery worker, woken then so
/// that it reads the new rows.
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
                if let Some(worker) = worker {
                    worker.notify_one();
                }
            }
        }
    }
}

/// Events to persist for one session, owned: (dedupe key, body) each.
pub type OwnedItems = Vec<(Option<String>, Vec<u8>)>;

enum Job {
    Enqueue {
        session: SessionId,
        items: OwnedItems,
        now_ms: i64,
        answer: Answer,
    },
    /// Any other call; returns the session whose backlog it may have
    /// changed (None for reads) and whether it failed. `after_enqueues`:
    /// the enqueues sent before it are committed first (order as sent).
    /// A delivery worker's acks and reads of its own queue go without: the
    /// rows those enqueues add are new ones, which the worker hears about
    /// once they are committed, and committing them early would cost one
    /// fsync per ack in a flood instead of one per group.
    Call {
        op: Box<dyn FnOnce(&Outbox) -> Touched + Send>,
        after_enqueues: bool,
    },
}

/// What a call did to a session's backlog: nothing (a read), or a write to
/// this session that worked or failed.
struct Touched(Option<(SessionId, Result<(), String>)>);

/// Latest backlog per session and the sessions whose backlog changed since
/// a view last looked.
#[derive(Default)]
struct Published {
    backlogs: Mutex<HashMap<SessionId, Backlog>>,
    changed: Mutex<BTreeSet<SessionId>>,
    notify: Notify,
}

/// Cheap to clone; the thread ends when the last clone is dropped.
#[derive(Clone)]
pub struct OutboxThread {
    // Unbounded, yet bounded in practice: every caller awaits its answer
    // before sending more, so the queue holds at most one job per task
    // (session, delivery worker, API request) at a time.
    jobs: mpsc::UnboundedSender<Job>,
    published: Arc<Published>,
}

impl OutboxThread {
    /// Starts the thread over an open outbox; the backlog of every session
    /// with rows is published before this returns. (Shared only so tests
    /// can look at the store directly; the program hands it over.)
    pub fn start(outbox: Arc<Outbox>) -> OutboxThread {
        let published = Arc::new(Published::default());
        // Rows are only ever written under valid ids.
        for session in outbox.sessions_with_rows() {
            if let Ok(session) = SessionId::parse(&session) {
                publish(&outbox, &published, &session, Ok(()));
            }
        }
        let (jobs, queue) = mpsc::unbounded_channel();
        let thread_published = published.clone();
        std::thread::Builder::new()
            .name("wabridge-outbox".into())
            .spawn(move || run(outbox, queue, &thread_published))
            .expect("the outbox thread starts");
        OutboxThread { jobs, published }
    }

    /// Persists `items` for `session`; answers once they are on disk.
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

    /// Queues `items` for `session` without waiting: still persisted in
    /// order with everything else sent before and after it; `worker` is
    /// woken once they are on disk; a failure is logged and shown in the
    /// backlog.
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

    /// The next deliveries of `session` (see [`Outbox::next_deliveries`]).
    pub async fn next_deliveries(
        &self,
        session: &SessionId,
        limits: DeliveryLimits,
        now_ms: i64,
    ) -> Result<Vec<Delivery>, OutboxError> {
        // Recording a new batch is a write, but changes no count.
        let session = session.clone();
        self.submit(false, None, move |o| {
            limits.next(o, session.as_str(), now_ms)
        })
        .await
    }

    /// Acknowledges `seqs` and reads the next deliveries in one call: a
    /// worker on a busy queue makes one trip per run of messages.
    pub async fn ack_and_next(
        &self,
        session: &SessionId,
        seqs: Vec<i64>,
        limits: DeliveryLimits,
        now_ms: i64,
    ) -> Result<Vec<Delivery>, OutboxError> {
        let owned = session.clone();
        self.submit(false, Some(session.clone()), move |o| {
            o.ack(&seqs)?;
            limits.next(o, owned.as_str(), now_ms)
        })
        .await
    }

    /// Acknowledges `seqs` without waiting: it runs before anything sent
    /// after it; a failure is logged and shown in the backlog (and the
    /// delivery goes out again later under the same id).
    pub fn ack_detached(&self, session: &SessionId, seqs: Vec<i64>) {
        let session = session.clone();
        self.send(Job::Call {
            op: Box::new(move |outbox| {
                let outcome = outbox.ack(&seqs).map_err(|e| {
                    tracing::error!("webhook outbox of {session}: cannot record a delivery: {e}");
                    e.0
                });
                Touched(Some((session, outcome)))
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
        self.write(session, move |o| o.retry_later(&seqs, at_ms, &error))
            .await
    }

    pub async fn bury(
        &self,
        session: &SessionId,
        seqs: Vec<i64>,
        reason: String,
    ) -> Result<(), OutboxError> {
        self.write(session, move |o| o.bury(&seqs, &reason)).await
    }

    pub async fn split_batch(
        &self,
        session: &SessionId,
        members: Vec<i64>,
    ) -> Result<bool, OutboxError> {
        self.write(session, move |o| o.split_batch(&members)).await
    }

    pub async fn replay(
        &self,
        session: &SessionId,
        delivery_id: &str,
        now_ms: i64,
    ) -> Result<bool, OutboxError> {
        let (owned, id) = (session.clone(), delivery_id.to_string());
        self.write(session, move |o| o.replay(owned.as_str(), &id, now_ms))
            .await
    }

    pub async fn drop_session(&self, session: &SessionId) -> Result<u64, OutboxError> {
        let owned = session.clone();
        self.write(session, move |o| o.drop_session(owned.as_str()))
            .await
    }

    pub async fn dead_letters(
        &self,
        session: &SessionId,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, OutboxError> {
        let session = session.clone();
        self.call(None, move |o| o.dead_letters(session.as_str(), limit))
            .await
    }

    /// Resolves once every job sent before it has run (the thread runs
    /// them in order): what was enqueued without waiting is on disk, or
    /// failed and was logged.
    pub async fn flush(&self) -> Result<(), OutboxError> {
        self.call(None, |_| Ok(())).await
    }

    pub async fn prune_delivered(&self, before_ms: i64) -> Result<usize, OutboxError> {
        self.call(None, move |o| o.prune_delivered(before_ms)).await
    }

    /// The session's backlog as last published: no disk, no wait.
    pub fn backlog(&self, session: &SessionId) -> Backlog {
        lock(&self.published.backlogs)
            .get(session)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until some session's backlog changed, then returns every
    /// session that changed since the last call (one entry however often).
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

    /// A write to `session`: its backlog is published afterwards, with the
    /// error if it failed.
    async fn write<T: Send + 'static>(
        &self,
        session: &SessionId,
        op: impl FnOnce(&Outbox) -> Result<T, OutboxError> + Send + 'static,
    ) -> Result<T, OutboxError> {
        self.call(Some(session.clone()), op).await
    }

    async fn call<T: Send + 'static>(
        &self,
        touches: Option<SessionId>,
        op: impl FnOnce(&Outbox) -> Result<T, OutboxError> + Send + 'static,
    ) -> Result<T, OutboxError> {
        self.submit(true, touches, op).await
    }

    async fn submit<T: Send + 'static>(
        &self,
        after_enqueues: bool,
        touches: Option<SessionId>,
        op: impl FnOnce(&Outbox) -> Result<T, OutboxError> + Send + 'static,
    ) -> Result<T, OutboxError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Call {
            op: Box::new(move |outbox| {
                let result = op(outbox);
                let outcome = result.as_ref().map(|_| ()).map_err(|e| e.0.clone());
                let _ = reply.send(result);
                Touched(touches.map(|session| (session, outcome)))
            }),
            after_enqueues,
        });
        answer.await.unwrap_or_else(|_| Err(gone()))
    }

    fn send(&self, job: Job) {
        // The thread only ends when every sender is gone, so this cannot
        // fail while `self` exists, short of the thread panicking.
        let _ = self.jobs.send(job);
    }
}

fn gone() -> OutboxError {
    OutboxError("the outbox thread has stopped".into())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The thread: takes what is queued, commits the enqueues in it together,
/// runs other calls one by one, in arrival order (a delivery worker's own
/// acks and reads may pass the enqueues waiting for their commit).
fn run(outbox: Arc<Outbox>, mut queue: mpsc::UnboundedReceiver<Job>, published: &Published) {
    while let Some(first) = queue.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < GROUP_MAX
            && let Ok(job) = queue.try_recv()
        {
            jobs.push(job);
        }
        let mut enqueues = Vec::new();
        // Backlogs to publish once this run of jobs is done (the last
        // outcome per session), not after every job: a flood's acks would
        // otherwise each cost a read of the oldest row and a wake-up.
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
                        // What was sent before it is done, views included
                        // (a flush then reads the backlogs it waited for).
                        commit_group(&outbox, std::mem::take(&mut enqueues), &mut touched);
                        publish_all(&outbox, published, &mut touched);
                    }
                    if let Touched(Some((session, outcome))) = op(&outbox) {
                        touched.insert(session, outcome);
                    }
                }
            }
        }
        commit_group(&outbox, enqueues, &mut touched);
        publish_all(&outbox, published, &mut touched);
    }
}

fn publish_all(
    outbox: &Outbox,
    published: &Published,
    touched: &mut BTreeMap<SessionId, Result<(), String>>,
) {
    for (session, outcome) in std::mem::take(touched) {
        publish(outbox, published, &session, outcome);
    }
}

type PendingEnqueue = (SessionId, OwnedItems, i64, Answer);

/// Commits `enqueues` in one transaction, answers each, and notes the
/// sessions they touched (with the outcome) in `touched`.
fn commit_group(
    outbox: &Outbox,
    enqueues: Vec<PendingEnqueue>,
    touched: &mut BTreeMap<SessionId, Result<(), String>>,
) {
    if enqueues.is_empty() {
        return;
    }
    let borrowed: Vec<Vec<(Option<&str>, &[u8])>> = enqueues
        .iter()
        .map(|(_, items, _, _)| {
            items
                .iter()
                .map(|(key, body)| (key.as_deref(), body.as_slice()))
                .collect()
        })
        .collect();
    let groups: Vec<(&str, Items<'_>, i64)> = enqueues
        .iter()
        .zip(&borrowed)
        .map(|((session, _, now_ms, _), items)| (session.as_str(), items.as_slice(), *now_ms))
        .collect();
    let result = outbox.enqueue_groups(&groups);
    let sessions: BTreeSet<SessionId> = enqueues.iter().map(|(s, ..)| s.clone()).collect();
    let outcome = result.as_ref().map(|_| ()).map_err(|e| e.0.clone());
    if let Err(e) = &result {
        tracing::error!(
            "webhook outbox: cannot persist {} event(s): {e}",
            enqueues
                .iter()
                .map(|(_, items, ..)| items.len())
                .sum::<usize>()
        );
    }
    match result {
        Ok(all) => {
            for ((.., answer), queued) in enqueues.into_iter().zip(all) {
                answer.give(Ok(queued));
            }
        }
        Err(e) => {
            for (.., answer) in enqueues {
                answer.give(Err(e.clone()));
            }
        }
    }
    for session in sessions {
        touched.insert(session, outcome.clone());
    }
}

/// Reads the session's backlog into the published map (keeping a write
/// error until a later write works) and marks it changed.
fn publish(
    outbox: &Outbox,
    published: &Published,
    session: &SessionId,
    outcome: Result<(), String>,
) {
    let mut backlog = match outbox.backlog(session.as_str()) {
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
