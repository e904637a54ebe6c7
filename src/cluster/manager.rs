//! The lease manager (docs/cluster.md): renews the leases this host holds,
//! stops a session the moment its lease can no longer be proven (self-
//! fencing), and takes expired or never-owned leases in bounded, spread
//! rounds, starting their sessions. The database and the engine sit behind
//! two small traits, so the rules run on tokio's paused clock in tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::lease::{HeldLease, LeaseTimings, pick_takeovers};
use crate::paths::SessionId;

/// How long a stopped session's task gets to disconnect cleanly before it
/// is aborted: a fenced session must go at once.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// How many lease TTLs a host leaves a session alone after failing to
/// start it: the lease it took lapses after one, and other hosts get the
/// next rounds to try theirs.
const FAILED_START_TTLS: u32 = 2;

/// A session of the cluster's list (`cluster_sessions`) with the settings
/// the operator gave it through any host: what a host serves it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSession {
    pub id: SessionId,
    pub webhook_url: Option<String>,
    pub webhook_token: Option<String>,
    /// The shared "logged out" mark: served, it waits for the operator
    /// (no QR) on whichever host takes it.
    pub logged_out: bool,
    /// Goes up with every change of the row through the API; a serving
    /// host applies the row again when it sees a new one.
    pub settings_version: u64,
    /// A DELETE was asked through some host; the serving host carries it
    /// out (logout, then the session leaves the cluster).
    pub delete_requested: bool,
    /// The serving host turns calls down, writing `call_reply` to the
    /// caller when set.
    pub reject_calls: bool,
    pub call_reply: Option<String>,
}

impl ClusterSession {
    /// A session just added: no webhook, not logged out, first version.
    pub fn new(id: SessionId) -> ClusterSession {
        ClusterSession {
            id,
            webhook_url: None,
            webhook_token: None,
            logged_out: false,
            settings_version: 0,
            delete_requested: false,
            reject_calls: false,
            call_reply: None,
        }
    }
}

/// The lease table (`store::PgLeases` in production).
pub trait LeaseStore: Send + Sync + 'static {
    /// Extends the leases `node` still holds at these fences; returns the
    /// ones it extended with their current settings (the others are lost).
    fn renew(
        &self,
        node: &str,
        held: &[(SessionId, u64)],
        ttl: Duration,
    ) -> impl Future<Output = anyhow::Result<Vec<ClusterSession>>> + Send;
    /// Sessions with no lease or an expired one.
    fn takeable(&self) -> impl Future<Output = anyhow::Result<Vec<ClusterSession>>> + Send;
    /// Ends `node`'s leases on these sessions now, so another host may take
    /// them at its next round.
    fn release(
        &self,
        node: &str,
        sessions: &[SessionId],
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Takes the lease if it is free or expired; its new fence.
    fn take(
        &self,
        id: &SessionId,
        node: &str,
        ttl: Duration,
    ) -> impl Future<Output = anyhow::Result<Option<u64>>> + Send;
    /// Removes a deleted session from the cluster: its rows, lease and entry.
    fn forget(&self, id: &SessionId) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// What the manager does to the sessions on this host (the engine).
pub trait Sessions: Send + Sync + 'static {
    /// Serves a session whose lease this host holds with the cluster's
    /// settings: starts it, or applies changed settings to it running; an
    /// error if it cannot (at a start the manager then lets the lease go).
    fn serve(&self, session: &ClusterSession) -> Result<(), String>;
    /// Stops serving it: the socket is dropped, the credentials kept.
    fn stop(&self, id: &SessionId) -> impl Future<Output = ()> + Send;
    /// Logs it out and deletes it on this host (a DELETE through any host).
    fn delete(&self, id: &SessionId) -> impl Future<Output = Result<(), String>> + Send;
}

impl Sessions for crate::engine::Engine {
    fn serve(&self, session: &ClusterSession) -> Result<(), String> {
        let settings = crate::engine::ServedSettings {
            webhook_url: session.webhook_url.clone(),
            webhook_token: session.webhook_token.clone(),
            logged_out: session.logged_out,
            reject_calls: session.reject_calls,
            call_reply: session.call_reply.clone(),
        };
        self.serve_with(&session.id, &settings)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    async fn stop(&self, id: &SessionId) {
        self.stop_session(id, STOP_GRACE).await;
    }

    async fn delete(&self, id: &SessionId) -> Result<(), String> {
        self.delete_session(id).await.map_err(|e| e.to_string())
    }
}

/// The fence of each lease this host holds, for the store's writes
/// (`PgBackend`'s fence source). A session absent here must not open.
#[derive(Clone, Default)]
pub struct Fences(Arc<Mutex<HashMap<SessionId, u64>>>);

impl Fences {
    pub fn get(&self, id: &SessionId) -> Option<u64> {
        lock(&self.0).get(id).copied()
    }
}

#[derive(Default)]
struct State {
    held: BTreeMap<SessionId, HeldLease>,
    /// Dropped sessions whose task has not ended yet: not taken again
    /// until it has (one task per session, ever).
    stopping: BTreeSet<SessionId>,
    /// Sessions this host failed to start, left to other hosts until then.
    failed: BTreeMap<SessionId, Instant>,
    /// The `settings_version` each held session is served with.
    applied: HashMap<SessionId, u64>,
    /// Held sessions being deleted (one deletion each).
    deleting: BTreeSet<SessionId>,
}

struct Shared<S, E> {
    node: String,
    timings: LeaseTimings,
    store: S,
    sessions: E,
    fences: Fences,
    state: Mutex<State>,
    /// Wakes the fencer when the deadlines changed.
    changed: Notify,
    /// Asks for a takeover round now (a session was just added).
    take_now: Notify,
}

/// The running manager; its tasks end when it is dropped.
pub struct LeaseManager {
    fences: Fences,
    held: Arc<dyn Fn() -> Vec<SessionId> + Send + Sync>,
    take_now: Arc<dyn Fn() + Send + Sync>,
    tasks: Vec<JoinHandle<()>>,
}

impl LeaseManager {
    /// Starts renewing, fencing and taking for `node`.
    pub fn start<S: LeaseStore, E: Sessions>(
        node: String,
        timings: LeaseTimings,
        store: S,
        sessions: E,
        fences: Fences,
    ) -> LeaseManager {
        let shared = Arc::new(Shared {
            node,
            timings,
            store,
            sessions,
            fences: fences.clone(),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            take_now: Notify::new(),
        });
        let tasks = vec![
            tokio::spawn(renew_loop(shared.clone())),
            tokio::spawn(fence_loop(shared.clone())),
            tokio::spawn(take_loop(shared.clone())),
        ];
        let for_held = shared.clone();
        let for_take = shared;
        LeaseManager {
            fences,
            held: Arc::new(move || lock(&for_held.state).held.keys().cloned().collect()),
            take_now: Arc::new(move || for_take.take_now.notify_one()),
            tasks,
        }
    }

    pub fn fences(&self) -> Fences {
        self.fences.clone()
    }

    /// The sessions whose lease this host holds now.
    pub fn held(&self) -> Vec<SessionId> {
        (self.held)()
    }

    /// Runs a takeover round now rather than at the next tick.
    pub fn take_now(&self) {
        (self.take_now)()
    }

    /// `take_now` as a handle others can keep (the API's).
    pub fn nudge(&self) -> Arc<dyn Fn() + Send + Sync> {
        self.take_now.clone()
    }
}

impl Drop for LeaseManager {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Stops serving `id`: the fence goes first (nothing opens its store
/// again), then the session's task, in the background.
fn drop_session<S: LeaseStore, E: Sessions>(shared: &Arc<Shared<S, E>>, id: SessionId, why: &str) {
    lock(&shared.fences.0).remove(&id);
    {
        let mut state = lock(&shared.state);
        state.stopping.insert(id.clone());
        state.applied.remove(&id);
    }
    tracing::warn!(
        "session {id}: {why}; stopped on this host ({}), credentials kept",
        shared.node
    );
    let shared = shared.clone();
    tokio::spawn(async move {
        shared.sessions.stop(&id).await;
        lock(&shared.state).stopping.remove(&id);
    });
}

async fn renew_loop<S: LeaseStore, E: Sessions>(shared: Arc<Shared<S, E>>) {
    let t = shared.timings;
    let mut tick = tokio::time::interval(t.renew_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let held: Vec<(SessionId, u64)> = lock(&shared.state)
            .held
            .iter()
            .map(|(id, lease)| (id.clone(), lease.fence))
            .collect();
        if held.is_empty() {
            continue;
        }
        // Noted before sending: the database's expiry is later than this.
        let sent = Instant::now();
        let renewal = shared.store.renew(&shared.node, &held, t.ttl);
        let renewed = match tokio::time::timeout(t.renew_every, renewal).await {
            Ok(Ok(renewed)) => renewed,
            Ok(Err(e)) => {
                tracing::warn!("cannot renew {} lease(s): {e:#}", held.len());
                continue;
            }
            Err(_) => {
                tracing::warn!(
                    "renewing {} lease(s) took over {:?}; trying again",
                    held.len(),
                    t.renew_every
                );
                continue;
            }
        };
        let renewed: HashMap<SessionId, ClusterSession> = renewed
            .into_iter()
            .map(|session| (session.id.clone(), session))
            .collect();
        let mut lost = Vec::new();
        let mut still_held = Vec::new();
        {
            let mut state = lock(&shared.state);
            for (id, fence) in held {
                let Some(lease) = state.held.get_mut(&id) else {
                    continue;
                };
                if lease.fence != fence {
                    continue;
                }
                match renewed.get(&id) {
                    Some(session) => {
                        *lease = lease.renewed(sent, &t);
                        still_held.push(session.clone());
                    }
                    None => {
                        state.held.remove(&id);
                        lost.push(id);
                    }
                }
            }
        }
        shared.changed.notify_one();
        for id in lost {
            drop_session(&shared, id, "its lease moved to another host or is gone");
        }
        for session in still_held {
            follow_settings(&shared, &session);
        }
    }
}

/// What the operator changed through any host reaches the host serving the
/// session at its next renewal: new settings are applied to it running, a
/// DELETE is carried out here.
fn follow_settings<S: LeaseStore, E: Sessions>(
    shared: &Arc<Shared<S, E>>,
    session: &ClusterSession,
) {
    if session.delete_requested {
        begin_delete(shared, &session.id);
        return;
    }
    let applied = lock(&shared.state).applied.get(&session.id).copied();
    if applied == Some(session.settings_version) {
        return;
    }
    match shared.sessions.serve(session) {
        Ok(()) => {
            tracing::info!(
                "session {}: settings changed in the cluster (version {}); applied on {}",
                session.id,
                session.settings_version,
                shared.node
            );
            lock(&shared.state)
                .applied
                .insert(session.id.clone(), session.settings_version);
        }
        // Tried again at the next renewal.
        Err(e) => tracing::error!(
            "session {}: cannot apply its changed settings: {e}",
            session.id
        ),
    }
}

/// A DELETE asked through some host, carried out by this one (it serves
/// the session): logout and local files first, then the session leaves the
/// cluster (its rows, lease and entry), so no host takes it again.
fn begin_delete<S: LeaseStore, E: Sessions>(shared: &Arc<Shared<S, E>>, id: &SessionId) {
    if !lock(&shared.state).deleting.insert(id.clone()) {
        return;
    }
    tracing::warn!(
        "session {id}: deletion asked through the cluster; logging it out on {}",
        shared.node
    );
    let (shared, id) = (shared.clone(), id.clone());
    tokio::spawn(async move {
        let outcome = match shared.sessions.delete(&id).await {
            Ok(()) => shared.store.forget(&id).await.map_err(|e| format!("{e:#}")),
            Err(e) => Err(e),
        };
        {
            let mut state = lock(&shared.state);
            state.deleting.remove(&id);
            if outcome.is_ok() {
                state.held.remove(&id);
                state.applied.remove(&id);
            }
        }
        match outcome {
            Ok(()) => {
                lock(&shared.fences.0).remove(&id);
                shared.changed.notify_one();
                tracing::warn!("session {id}: deleted from the cluster");
            }
            // The request stays in the database: tried again at the next
            // renewal (here, or on the host that serves it next).
            Err(e) => tracing::error!("session {id}: cannot delete it yet: {e}"),
        }
    });
}

async fn fence_loop<S: LeaseStore, E: Sessions>(shared: Arc<Shared<S, E>>) {
    loop {
        let now = Instant::now();
        let (expired, next) = {
            let mut state = lock(&shared.state);
            let expired: Vec<SessionId> = state
                .held
                .iter()
                .filter(|(_, lease)| !lease.may_serve(now))
                .map(|(id, _)| id.clone())
                .collect();
            for id in &expired {
                state.held.remove(id);
            }
            let next = state.held.values().map(HeldLease::serve_until).min();
            (expired, next)
        };
        for id in expired {
            drop_session(
                &shared,
                id,
                "no lease renewal succeeded in time (self-fenced before the lease could end)",
            );
        }
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = shared.changed.notified() => {}
                }
            }
            None => shared.changed.notified().await,
        }
    }
}

/// Spreads hosts' picks: another seed per node and per round.
fn seed(node: &str, round: u64) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (node, round).hash(&mut hasher);
    hasher.finish()
}

/// A session taken but not started: this host releases its lease (nothing
/// runs under it; another host may take it at once) and leaves it to the
/// other hosts for `FAILED_START_TTLS` TTLs before trying again. A release
/// that fails only delays them: the lease, no longer renewed, lapses.
async fn give_up_lease<S: LeaseStore, E: Sessions>(
    shared: &Arc<Shared<S, E>>,
    id: &SessionId,
    error: &str,
) {
    lock(&shared.fences.0).remove(id);
    {
        let mut state = lock(&shared.state);
        state.held.remove(id);
        let retry_at = Instant::now() + shared.timings.ttl * FAILED_START_TTLS;
        state.failed.insert(id.clone(), retry_at);
    }
    shared.changed.notify_one();
    tracing::error!(
        "session {id}: cannot start it on this host ({}): {error}; its lease is released for another host",
        shared.node
    );
    if let Err(e) = shared
        .store
        .release(&shared.node, std::slice::from_ref(id))
        .await
    {
        tracing::warn!("cannot release the lease on {id} (it lapses on its own): {e:#}");
    }
}

async fn take_loop<S: LeaseStore, E: Sessions>(shared: Arc<Shared<S, E>>) {
    let t = shared.timings;
    let mut tick = tokio::time::interval(t.takeover_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.take_now.notified() => {}
        }
        round += 1;
        let candidates = match shared.store.takeable().await {
            Ok(candidates) => candidates,
            Err(e) => {
                tracing::warn!("cannot list the leases to take: {e:#}");
                continue;
            }
        };
        let candidates: Vec<ClusterSession> = {
            let mut state = lock(&shared.state);
            let now = Instant::now();
            state.failed.retain(|_, until| *until > now);
            candidates
                .into_iter()
                .filter(|c| {
                    !state.held.contains_key(&c.id)
                        && !state.stopping.contains(&c.id)
                        && !state.failed.contains_key(&c.id)
                })
                .collect()
        };
        for session in pick_takeovers(&candidates, t.takeover_batch, seed(&shared.node, round)) {
            let sent = Instant::now();
            match shared.store.take(&session.id, &shared.node, t.ttl).await {
                Ok(Some(fence)) => {
                    lock(&shared.fences.0).insert(session.id.clone(), fence);
                    lock(&shared.state)
                        .held
                        .insert(session.id.clone(), HeldLease::granted(fence, sent, &t));
                    shared.changed.notify_one();
                    tracing::info!(
                        "session {}: lease taken by {} (fence {fence}); starting it",
                        session.id,
                        shared.node
                    );
                    match shared.sessions.serve(&session) {
                        Ok(()) => {
                            lock(&shared.state)
                                .applied
                                .insert(session.id.clone(), session.settings_version);
                            if session.delete_requested {
                                begin_delete(&shared, &session.id);
                            }
                        }
                        Err(e) => give_up_lease(&shared, &session.id, &e).await,
                    }
                }
                // Another host was faster.
                Ok(None) => {}
                Err(e) => tracing::warn!("cannot take the lease on {}: {e:#}", session.id),
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lease table on tokio's clock (the "database's clock").
    #[derive(Default)]
    struct FakeDb {
        sessions: Vec<ClusterSession>,
        /// session → (owner, expires, fence)
        leases: HashMap<SessionId, (String, Instant, u64)>,
        down: bool,
    }

    #[derive(Clone, Default)]
    struct Db(Arc<Mutex<FakeDb>>);

    impl LeaseStore for Db {
        async fn renew(
            &self,
            node: &str,
            held: &[(SessionId, u64)],
            ttl: Duration,
        ) -> anyhow::Result<Vec<ClusterSession>> {
            let mut db = lock(&self.0);
            anyhow::ensure!(!db.down, "database unreachable");
            let now = Instant::now();
            let mut renewed = Vec::new();
            for (id, fence) in held {
                if let Some(lease) = db.leases.get_mut(id)
                    && lease.0 == node
                    && lease.2 == *fence
                {
                    lease.1 = now + ttl;
                    renewed.push(id.clone());
                }
            }
            Ok(db
                .sessions
                .iter()
                .filter(|s| renewed.contains(&s.id))
                .cloned()
                .collect())
        }

        async fn takeable(&self) -> anyhow::Result<Vec<ClusterSession>> {
            let db = lock(&self.0);
            anyhow::ensure!(!db.down, "database unreachable");
            let now = Instant::now();
            Ok(db
                .sessions
                .iter()
                .filter(|s| db.leases.get(&s.id).is_none_or(|l| l.1 < now))
                .cloned()
                .collect())
        }

        async fn forget(&self, id: &SessionId) -> anyhow::Result<()> {
            let mut db = lock(&self.0);
            anyhow::ensure!(!db.down, "database unreachable");
            db.sessions.retain(|s| s.id != *id);
            db.leases.remove(id);
            Ok(())
        }

        async fn release(&self, node: &str, sessions: &[SessionId]) -> anyhow::Result<()> {
            let mut db = lock(&self.0);
            anyhow::ensure!(!db.down, "database unreachable");
            let now = Instant::now();
            for id in sessions {
                if let Some(lease) = db.leases.get_mut(id)
                    && lease.0 == node
                    && lease.1 > now
                {
                    lease.1 = now;
                }
            }
            Ok(())
        }

        async fn take(
            &self,
            id: &SessionId,
            node: &str,
            ttl: Duration,
        ) -> anyhow::Result<Option<u64>> {
            let mut db = lock(&self.0);
            anyhow::ensure!(!db.down, "database unreachable");
            let now = Instant::now();
            let fence = match db.leases.get(id) {
                Some(lease) if lease.1 >= now => return Ok(None),
                Some(lease) => lease.2 + 1,
                None => 1,
            };
            db.leases
                .insert(id.clone(), (node.into(), now + ttl, fence));
            Ok(Some(fence))
        }
    }

    /// What a host's engine was told, in order; its first `failing` starts
    /// fail.
    #[derive(Clone, Default)]
    struct Host {
        log: Arc<Mutex<Vec<String>>>,
        failing: Arc<Mutex<u32>>,
        running: Arc<Mutex<BTreeSet<SessionId>>>,
    }

    impl Sessions for Host {
        fn serve(&self, session: &ClusterSession) -> Result<(), String> {
            if lock(&self.running).contains(&session.id) {
                lock(&self.log).push(format!(
                    "apply {} v{}",
                    session.id, session.settings_version
                ));
                return Ok(());
            }
            lock(&self.log).push(format!("start {}", session.id));
            let mut failing = lock(&self.failing);
            if *failing > 0 {
                *failing -= 1;
                return Err("disk full".into());
            }
            lock(&self.running).insert(session.id.clone());
            Ok(())
        }

        async fn stop(&self, id: &SessionId) {
            lock(&self.running).remove(id);
            lock(&self.log).push(format!("stop {id}"));
        }

        async fn delete(&self, id: &SessionId) -> Result<(), String> {
            lock(&self.running).remove(id);
            lock(&self.log).push(format!("delete {id}"));
            Ok(())
        }
    }

    impl Host {
        fn log(&self) -> Vec<String> {
            lock(&self.log).clone()
        }

        fn failing(starts: u32) -> Host {
            let host = Host::default();
            *lock(&host.failing) = starts;
            host
        }
    }

    fn timings() -> LeaseTimings {
        LeaseTimings {
            ttl: Duration::from_secs(6),
            renew_every: Duration::from_secs(2),
            margin: Duration::from_secs(2),
            takeover_every: Duration::from_secs(1),
            takeover_batch: 2,
        }
    }

    fn db_with(n: usize) -> Db {
        let db = Db::default();
        lock(&db.0).sessions = (0..n)
            .map(|i| ClusterSession::new(SessionId::parse(&format!("s{i}")).unwrap()))
            .collect();
        db
    }

    async fn run_for(secs: f64) {
        // Small steps, so every timer fires at its own instant.
        let steps = (secs * 10.0) as u32;
        for _ in 0..steps {
            tokio::time::advance(Duration::from_millis(100)).await;
            tokio::task::yield_now().await;
        }
    }

    fn id(s: &str) -> SessionId {
        SessionId::parse(s).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn new_sessions_are_taken_a_batch_a_round_and_kept_by_renewal() {
        let db = db_with(5);
        let host = Host::default();
        let manager = LeaseManager::start(
            "a".into(),
            timings(),
            db.clone(),
            host.clone(),
            Fences::default(),
        );
        run_for(0.5).await;
        assert_eq!(manager.held().len(), 2, "one round takes at most the batch");
        run_for(3.0).await;
        assert_eq!(manager.held().len(), 5);
        assert_eq!(manager.fences().get(&id("s0")), Some(1));
        // Renewals keep them far past one TTL.
        run_for(30.0).await;
        assert_eq!(manager.held().len(), 5);
        assert!(
            host.log().iter().all(|l| l.starts_with("start")),
            "{:?}",
            host.log()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_the_database_a_host_stops_before_its_leases_can_end() {
        let db = db_with(1);
        let host = Host::default();
        let manager = LeaseManager::start(
            "a".into(),
            timings(),
            db.clone(),
            host.clone(),
            Fences::default(),
        );
        run_for(0.5).await;
        assert_eq!(manager.held(), vec![id("s0")]);
        lock(&db.0).down = true;
        let cut = Instant::now();
        let expires = lock(&db.0).leases[&id("s0")].1;
        // Wait until the host dropped the session.
        while !manager.held().is_empty() {
            run_for(0.1).await;
        }
        let stopped = Instant::now();
        assert!(
            stopped <= expires - Duration::from_secs(1),
            "stopped a margin early"
        );
        assert!(
            stopped > cut + Duration::from_secs(1),
            "not before it had to"
        );
        run_for(0.1).await;
        assert_eq!(host.log(), vec!["start s0", "stop s0"]);
        assert_eq!(
            manager.fences().get(&id("s0")),
            None,
            "its store cannot open"
        );
        // Back: the lease expired, the host takes it again, under a new fence.
        lock(&db.0).down = false;
        run_for(8.0).await;
        assert_eq!(manager.held(), vec![id("s0")]);
        assert_eq!(manager.fences().get(&id("s0")), Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_taken_by_another_host_is_dropped_at_the_next_renewal() {
        let db = db_with(1);
        let host = Host::default();
        let manager = LeaseManager::start(
            "a".into(),
            timings(),
            db.clone(),
            host.clone(),
            Fences::default(),
        );
        run_for(0.5).await;
        // Another host took it (say, after this one stalled).
        lock(&db.0).leases.insert(
            id("s0"),
            ("b".into(), Instant::now() + Duration::from_secs(6), 2),
        );
        run_for(2.5).await;
        assert!(manager.held().is_empty());
        assert_eq!(host.log(), vec!["start s0", "stop s0"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_hosts_sessions_are_shared_by_the_survivors() {
        let db = db_with(8);
        let dead = Host::default();
        let first = LeaseManager::start(
            "dead".into(),
            timings(),
            db.clone(),
            dead,
            Fences::default(),
        );
        run_for(5.0).await;
        assert_eq!(first.held().len(), 8);
        drop(first);
        let (b, c) = (Host::default(), Host::default());
        let mb = LeaseManager::start(
            "b".into(),
            timings(),
            db.clone(),
            b.clone(),
            Fences::default(),
        );
        let mc = LeaseManager::start(
            "c".into(),
            timings(),
            db.clone(),
            c.clone(),
            Fences::default(),
        );
        run_for(12.0).await;
        assert_eq!(
            mb.held().len() + mc.held().len(),
            8,
            "every session taken once"
        );
        assert!(
            !mb.held().is_empty() && !mc.held().is_empty(),
            "{:?} {:?}",
            mb.held(),
            mc.held()
        );
        assert!(mb.held().iter().all(|s| !mc.held().contains(s)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_that_fails_to_start_is_left_to_another_host() {
        let db = db_with(1);
        let broken = Host::failing(u32::MAX);
        let a = LeaseManager::start(
            "a".into(),
            timings(),
            db.clone(),
            broken.clone(),
            Fences::default(),
        );
        run_for(0.5).await;
        assert_eq!(broken.log(), vec!["start s0"]);
        assert!(a.held().is_empty(), "not kept: {:?}", a.held());
        assert_eq!(a.fences().get(&id("s0")), None, "its store cannot open");
        let b_host = Host::default();
        let b = LeaseManager::start(
            "b".into(),
            timings(),
            db.clone(),
            b_host.clone(),
            Fences::default(),
        );
        // Released by a, it is b's at b's first round, while a leaves it
        // alone.
        run_for(1.5).await;
        assert_eq!(b.held(), vec![id("s0")]);
        assert_eq!(b.fences().get(&id("s0")), Some(2));
        assert_eq!(b_host.log(), vec!["start s0"]);
        run_for(20.0).await;
        assert_eq!(b.held(), vec![id("s0")]);
        assert_eq!(broken.log(), vec!["start s0"], "a tried once");
    }

    #[tokio::test(start_paused = true)]
    async fn alone_a_host_tries_a_failed_start_again_later() {
        let db = db_with(1);
        let host = Host::failing(1);
        let manager = LeaseManager::start(
            "a".into(),
            timings(),
            db.clone(),
            host.clone(),
            Fences::default(),
        );
        run_for(0.5).await;
        assert!(manager.held().is_empty());
        // Two TTLs later it takes the lapsed lease again, and starts it.
        run_for(11.0).await;
        assert!(manager.held().is_empty(), "not before two TTLs");
        run_for(2.0).await;
        assert_eq!(manager.held(), vec![id("s0")]);
        assert_eq!(manager.fences().get(&id("s0")), Some(2));
        assert_eq!(host.log(), vec!["start s0", "start s0"]);
    }

    /// Changes the first session's row as the API of some host would.
    fn change_row(db: &Db, change: impl FnOnce(&mut ClusterSession)) {
        let mut db = lock(&db.0);
        let row = &mut db.sessions[0];
        change(row);
        row.settings_version += 1;
    }

    #[tokio::test(start_paused = true)]
    async fn settings_changed_through_another_host_reach_the_serving_one_at_its_next_renewal() {
        let db = db_with(1);
        let host = Host::default();
        let manager = LeaseManager::start(
            "a".into(),
            timings(),
            db.clone(),
            host.clone(),
            Fences::default(),
        );
        run_for(0.5).await;
        run_for(4.0).await;
        assert_eq!(
            host.log(),
            vec!["start s0"],
            "an unchanged row is not applied again"
        );
        change_row(&db, |row| {
            row.webhook_url = Some("http://erp.example/hook".into())
        });
        run_for(2.1).await;
        assert_eq!(host.log(), vec!["start s0", "apply s0 v1"]);
        run_for(6.0).await;
        assert_eq!(host.log().len(), 2, "applied once: {:?}", host.log());
        assert_eq!(manager.held(), vec![id("s0")]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_delete_asked_through_another_host_is_carried_out_by_the_serving_one() {
        let db = db_with(1);
        let (a, b) = (Host::default(), Host::default());
        let ma = LeaseManager::start(
            "a".into(),
            timings(),
            db.clone(),
            a.clone(),
            Fences::default(),
        );
        run_for(0.5).await;
        let mb = LeaseManager::start(
            "b".into(),
            timings(),
            db.clone(),
            b.clone(),
            Fences::default(),
        );
        change_row(&db, |row| row.delete_requested = true);
        run_for(2.5).await;
        assert_eq!(a.log(), vec!["start s0", "delete s0"]);
        assert!(
            lock(&db.0).sessions.is_empty(),
            "gone from the cluster's list"
        );
        assert!(ma.held().is_empty());
        assert_eq!(ma.fences().get(&id("s0")), None);
        run_for(20.0).await;
        assert!(b.log().is_empty(), "no host serves it again: {:?}", b.log());
        assert!(mb.held().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_delete_of_a_session_no_host_serves_is_carried_out_by_the_host_that_takes_it() {
        let db = db_with(1);
        change_row(&db, |row| row.delete_requested = true);
        let host = Host::default();
        let manager = LeaseManager::start(
            "a".into(),
            timings(),
            db.clone(),
            host.clone(),
            Fences::default(),
        );
        run_for(0.5).await;
        assert_eq!(host.log(), vec!["start s0", "delete s0"]);
        assert!(lock(&db.0).sessions.is_empty());
        assert!(manager.held().is_empty());
    }
}
