//! The whole cluster as this host sees it: every session in
//! `cluster_sessions`, the node holding its lease, and the state its
//! serving host last reported (`status.rs`), read every couple of seconds
//! and published as a snapshot (a `watch`) for `/sessions`, `/health`,
//! `/metrics` and the dashboards.
//!
//! It says what it does not know: a report older than `stale_after` or
//! written by a node that no longer holds the lease is marked stale (with
//! why), a session whose lease has lapsed has no host, and a read that
//! fails keeps the last sessions read but carries the error and the time
//! of the last good read, so old data is never shown as live.

use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::status::ReportedStatus;
use crate::engine::state::remaining;
use crate::paths::SessionId;

/// A read that takes longer than this counts as failed.
pub const READ_WITHIN: Duration = Duration::from_secs(5);

/// One session of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSession {
    pub id: SessionId,
    /// The node holding its unexpired lease, which serves it; None: no
    /// host does now (its host died or stopped and no other took it yet).
    pub owner: Option<String>,
    /// The cluster's shared "logged out" mark.
    pub logged_out: bool,
    /// The last report written for it (instants on this host's clock).
    pub report: Option<ReportedStatus>,
    /// The node that wrote `report`.
    pub report_node: Option<String>,
    /// When `report` was written, on this host's clock.
    #[serde(with = "remaining::option", rename = "reported_in_ms")]
    pub reported_at: Option<Instant>,
    /// Why `report` is not the session's state now, when it is not: too
    /// old, or not from the node serving it. None: current.
    pub stale: Option<String>,
}

impl ClusterSession {
    /// The serving node's own report, if it has written one (possibly
    /// stale: see `stale`).
    pub fn owners_report(&self) -> Option<&ReportedStatus> {
        let owner = self.owner.as_deref()?;
        (self.report_node.as_deref() == Some(owner))
            .then_some(self.report.as_ref())
            .flatten()
    }

    /// The old bridge's status word for it, as `/sessions/{id}/status`
    /// answers: the serving node's report; "Connecting" while the node
    /// that took it has not reported yet; "waiting for a host" when no
    /// node holds its lease ("Logged Out" if it was logged out).
    pub fn status(&self) -> &str {
        match (&self.owner, self.owners_report()) {
            (None, _) if self.logged_out => "Logged Out",
            (None, _) => "waiting for a host",
            (Some(_), Some(report)) => &report.status,
            (Some(_), None) => "Connecting",
        }
    }

    /// The dashboard's label for it (see `status`).
    pub fn state(&self) -> &str {
        match (&self.owner, self.owners_report()) {
            (None, _) if self.logged_out => "Logged Out",
            (None, _) => "No Host",
            (Some(_), Some(report)) => &report.state,
            (Some(_), None) => "Connecting",
        }
    }

    /// The linked account's number, from any report (it does not change
    /// with the host).
    pub fn phone(&self) -> Option<&str> {
        self.report.as_ref()?.phone.as_deref()
    }
}

/// Everything this host knows of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSnapshot {
    /// This host's node name.
    pub node: String,
    /// By id; the last ones read.
    pub sessions: Vec<ClusterSession>,
    /// When `sessions` were read, on this host's clock; None: never yet.
    #[serde(with = "remaining::option", rename = "read_in_ms")]
    pub read_at: Option<Instant>,
    /// Why the last read failed; None when it worked.
    pub error: Option<String>,
}

impl ClusterSnapshot {
    /// Nothing read yet.
    pub fn empty(node: &str) -> ClusterSnapshot {
        ClusterSnapshot {
            node: node.to_string(),
            sessions: Vec::new(),
            read_at: None,
            error: None,
        }
    }

    /// Each node serving sessions and how many, by name; this host is
    /// listed even when it serves none.
    pub fn nodes(&self) -> Vec<(String, usize)> {
        let mut nodes = std::collections::BTreeMap::from([(self.node.clone(), 0)]);
        for owner in self.sessions.iter().filter_map(|s| s.owner.as_ref()) {
            *nodes.entry(owner.clone()).or_default() += 1;
        }
        nodes.into_iter().collect()
    }

    /// Sessions no node serves now (logged-out ones are not waiting).
    pub fn without_host(&self) -> impl Iterator<Item = &ClusterSession> {
        self.sessions
            .iter()
            .filter(|s| s.owner.is_none() && !s.logged_out)
    }

    /// The cluster with the sessions this host runs (`here`) counted as
    /// its own: what it runs now is newer than its last reading (a session
    /// it just took, or added since).
    pub fn with_local<'a>(&self, here: impl IntoIterator<Item = &'a SessionId>) -> ClusterSnapshot {
        let mut view = self.clone();
        for id in here {
            match view.sessions.binary_search_by(|s| s.id.cmp(id)) {
                Ok(i) => view.sessions[i].owner = Some(view.node.clone()),
                Err(i) => view.sessions.insert(
                    i,
                    ClusterSession {
                        id: id.clone(),
                        owner: Some(view.node.clone()),
                        logged_out: false,
                        report: None,
                        report_node: None,
                        reported_at: None,
                        stale: None,
                    },
                ),
            }
        }
        view
    }

    pub fn get(&self, id: &SessionId) -> Option<&ClusterSession> {
        self.sessions
            .binary_search_by(|s| s.id.cmp(id))
            .ok()
            .map(|i| &self.sessions[i])
    }
}

/// Why a report is not the session's state now, if it is not.
pub fn staleness(
    owner: Option<&str>,
    report_node: Option<&str>,
    age: Option<Duration>,
    stale_after: Duration,
) -> Option<String> {
    let owner = owner?;
    match (report_node, age) {
        (Some(node), Some(age)) if node == owner => (age > stale_after).then(|| {
            format!(
                "{owner} last reported {} ago",
                crate::engine::close::human_duration(age)
            )
        }),
        _ => Some(format!("no report from {owner} yet")),
    }
}

/// Reads every session of the cluster once.
pub async fn read(pool: &Pool, stale_after: Duration) -> anyhow::Result<Vec<ClusterSession>> {
    let conn = pool.get().await?;
    let rows = conn
        .query(
            "SELECT c.id,
                    CASE WHEN l.expires_at > now() THEN l.owner END,
                    c.logged_out,
                    c.status::text,
                    c.status_node,
                    (extract(epoch FROM (now() - c.status_at)) * 1000)::bigint
               FROM cluster_sessions c
               LEFT JOIN session_leases l ON l.session = c.id
              ORDER BY c.id",
            &[],
        )
        .await?;
    let now = crate::engine::now();
    Ok(rows
        .iter()
        .filter_map(|row| {
            let id = SessionId::parse(row.get::<_, &str>(0)).ok()?;
            let owner: Option<String> = row.get(1);
            let report_node: Option<String> = row.get(4);
            let age = row
                .get::<_, Option<i64>>(5)
                .map(|ms| Duration::from_millis(ms.max(0) as u64));
            // A report this wabridge cannot read (a newer one's) is none.
            let report = row
                .get::<_, Option<&str>>(3)
                .and_then(|text| serde_json::from_str::<ReportedStatus>(text).ok())
                .map(|report| report.aged(age.unwrap_or_default()));
            let stale = staleness(
                owner.as_deref(),
                report_node.as_deref(),
                age.filter(|_| report.is_some()),
                stale_after,
            );
            Some(ClusterSession {
                id,
                owner,
                logged_out: row.get(2),
                reported_at: age.map(|age| now.checked_sub(age).unwrap_or(now)),
                report,
                report_node,
                stale,
            })
        })
        .collect())
}

/// The running view; its task stops when it is dropped.
pub struct ClusterView {
    snapshots: watch::Receiver<ClusterSnapshot>,
    task: JoinHandle<()>,
}

impl Drop for ClusterView {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ClusterView {
    /// Reads the cluster every `every` for `node`; a report older than
    /// `stale_after` is marked stale.
    pub fn start(pool: Pool, node: String, every: Duration, stale_after: Duration) -> ClusterView {
        let (publish, snapshots) = watch::channel(ClusterSnapshot::empty(&node));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let read = tokio::time::timeout(READ_WITHIN, read(&pool, stale_after)).await;
                let read = match read {
                    Ok(read) => read,
                    Err(_) => Err(anyhow::anyhow!("no answer within {READ_WITHIN:?}")),
                };
                publish.send_modify(|snapshot| match read {
                    Ok(sessions) => {
                        snapshot.sessions = sessions;
                        snapshot.read_at = Some(crate::engine::now());
                        snapshot.error = None;
                    }
                    Err(e) => {
                        snapshot.error = Some(format!("cannot read the cluster's sessions: {e:#}"));
                    }
                });
            }
        });
        ClusterView { snapshots, task }
    }

    /// The latest snapshot, and every new one.
    pub fn subscribe(&self) -> watch::Receiver<ClusterSnapshot> {
        self.snapshots.clone()
    }
}
