//! What this host tells the other hosts about the sessions it serves: each
//! one's state, written into its `cluster_sessions` row (`status`,
//! `status_node`, `status_at`), so every host's `/sessions` and dashboard
//! show the whole cluster (`view.rs` reads it back).
//!
//! A report is written when a session changes, at most once a second for
//! all the changed sessions together (one statement), and every session is
//! written again every `refresh_every` even when nothing changed, so a
//! reader can tell a live report from a dead host's last words by its age.
//! Every write is fenced like the store's: it lands only where the lease
//! still names this host at the fence this host holds, so a host that lost
//! a lease without noticing cannot overwrite the new owner's report.
//!
//! No secret goes in: no webhook URL or token, no QR payload or pairing
//! code (a code on another host's screen cannot be scanned or typed
//! anyway: the operator is sent to the serving host).

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::engine::state::remaining;
use crate::engine::{BacklogInfo, Engine, EngineEvent, LastClose, SessionSnapshot, SessionState};
use crate::paths::SessionId;

/// The fence this host holds on a session's lease; None when it holds none
/// (the lease manager's `Fences::get`).
pub type FenceSource = std::sync::Arc<dyn Fn(&SessionId) -> Option<u64> + Send + Sync>;

/// Reports go out at most this often (all changed sessions in one write).
pub const COALESCE: Duration = Duration::from_secs(1);

/// A session's state as its serving host reports it: what `/sessions`
/// shows, minus what must not leave the host (webhook settings, the QR
/// payload, the pairing code). Instants are stored as the time left at
/// the write (`status_at`); `aged` turns them into the reader's instants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedStatus {
    /// The dashboard's label (`SessionState::label`): "Connected",
    /// "QR Scan Required", "Halted"…
    pub state: String,
    /// The old bridge's word (`SessionState::api_status`), as `/sessions`
    /// and `/sessions/{id}/status` answer it.
    pub status: String,
    /// Why it halted, in plain words.
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default, with = "remaining::option", rename = "next_retry_in_ms")]
    pub next_retry_at: Option<Instant>,
    #[serde(default)]
    pub last_close: Option<LastClose>,
    #[serde(default)]
    pub has_webhook: bool,
    /// The webhook backlog (counts, the oldest's age, an outbox error),
    /// with the other targets' (NATS) beside it.
    #[serde(default)]
    pub backlog: Option<BacklogInfo>,
    #[serde(default)]
    pub interrupted_sync: Option<u32>,
}

impl ReportedStatus {
    /// The report of a session this host serves, at `now`.
    pub fn of(session: &SessionSnapshot, now: Instant) -> ReportedStatus {
        let detail = match &session.state {
            SessionState::Halted(reason) => Some(reason.describe(now)),
            _ => None,
        };
        ReportedStatus {
            state: session.state.label().to_string(),
            status: session.state.api_status().to_string(),
            detail,
            phone: session.phone.clone(),
            attempt: session.attempt,
            next_retry_at: session.next_retry_at,
            last_close: session.last_close.clone(),
            has_webhook: session.has_webhook,
            backlog: session.backlog.clone(),
            interrupted_sync: session.interrupted_sync,
        }
    }

    /// The report as read `age` after it was written: its instants (stored
    /// as the time left at the write) move back by `age`.
    pub fn aged(mut self, age: Duration) -> ReportedStatus {
        let back = |at: Instant| at.checked_sub(age).unwrap_or(at);
        self.next_retry_at = self.next_retry_at.map(back);
        if let Some(backlog) = &mut self.backlog {
            backlog.oldest_at = backlog.oldest_at.map(back);
            for other in &mut backlog.beside {
                other.backlog.oldest_at = other.backlog.oldest_at.map(back);
            }
        }
        self
    }

    /// Whether the session is pairing (a QR code or a pairing code is on
    /// offer, or the phone asks for a passkey): only the serving host's
    /// screen can show it.
    pub fn pairing(&self) -> bool {
        // The old bridge's word covers the three: QR, code and passkey.
        self.status == "QR Scan Required"
    }
}

/// One session's report, ready to write.
#[derive(Debug, Clone)]
pub struct Report {
    pub session: SessionId,
    /// The fence this host holds on its lease.
    pub fence: u64,
    pub status: ReportedStatus,
}

/// Where reports go (`PgReports` in production).
pub trait ReportSink: Send + Sync + 'static {
    /// Writes the reports, each only where this host still holds the
    /// lease at the report's fence; returns the sessions written.
    fn write(
        &self,
        reports: &[Report],
    ) -> impl Future<Output = anyhow::Result<Vec<SessionId>>> + Send;
}

/// The reports of `node`, into the cluster's database.
#[derive(Clone)]
pub struct PgReports {
    pub pool: Pool,
    pub node: String,
}

impl ReportSink for PgReports {
    async fn write(&self, reports: &[Report]) -> anyhow::Result<Vec<SessionId>> {
        write(&self.pool, &self.node, reports).await
    }
}

/// Writes the reports in one statement; each lands only where the lease
/// names `node` at the report's fence and has not expired. Returns the
/// sessions written.
pub async fn write(pool: &Pool, node: &str, reports: &[Report]) -> anyhow::Result<Vec<SessionId>> {
    if reports.is_empty() {
        return Ok(Vec::new());
    }
    let sessions: Vec<&str> = reports.iter().map(|r| r.session.as_str()).collect();
    let fences: Vec<i64> = reports.iter().map(|r| r.fence as i64).collect();
    let statuses = reports
        .iter()
        .map(|r| serde_json::to_string(&r.status))
        .collect::<Result<Vec<String>, _>>()?;
    let conn = pool.get().await?;
    let rows = conn
        .query(
            "UPDATE cluster_sessions c
                SET status = r.status::jsonb, status_node = $1, status_at = now()
               FROM unnest($2::text[], $3::bigint[], $4::text[]) AS r(session, fence, status),
                    session_leases l
              WHERE c.id = r.session
                AND l.session = r.session AND l.owner = $1 AND l.fence = r.fence
                AND l.expires_at > now()
              RETURNING c.id",
            &[&node, &sessions, &fences, &statuses],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| SessionId::parse(r.get::<_, &str>(0)).ok())
        .collect())
}

/// The running reporter; it stops when dropped.
pub struct StatusReporter {
    task: JoinHandle<()>,
}

impl Drop for StatusReporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StatusReporter {
    /// Reports the sessions `engine` runs whose lease `fences` says this
    /// host holds: on change (coalesced) and every `refresh_every`.
    pub fn start<S: ReportSink>(
        sink: S,
        engine: Engine,
        fences: FenceSource,
        refresh_every: Duration,
    ) -> StatusReporter {
        StatusReporter {
            task: tokio::spawn(report_loop(sink, engine, fences, refresh_every)),
        }
    }
}

async fn report_loop<S: ReportSink>(
    sink: S,
    engine: Engine,
    fences: FenceSource,
    refresh_every: Duration,
) {
    let mut events = engine.subscribe();
    // What each session's row holds from this host (at which fence), so an
    // unchanged session is not written again before its refresh.
    let mut written: HashMap<SessionId, (u64, ReportedStatus)> = HashMap::new();
    let mut refresh_at = tokio::time::Instant::now();
    loop {
        let refresh = tokio::time::Instant::now() >= refresh_at;
        let now = crate::engine::now();
        let reports: Vec<Report> = engine
            .snapshots()
            .iter()
            .filter_map(|s| {
                let fence = fences(&s.id)?;
                let status = ReportedStatus::of(s, now);
                let unchanged = written
                    .get(&s.id)
                    .is_some_and(|(f, last)| *f == fence && *last == status);
                (refresh || !unchanged).then(|| Report {
                    session: s.id.clone(),
                    fence,
                    status,
                })
            })
            .collect();
        if refresh {
            refresh_at = tokio::time::Instant::now() + refresh_every;
            // Sessions no longer served here: their rows are another
            // host's to write.
            written.retain(|id, _| fences(id).is_some());
        }
        if !reports.is_empty() {
            match sink.write(&reports).await {
                Ok(done) => {
                    for report in reports {
                        if done.contains(&report.session) {
                            written.insert(report.session, (report.fence, report.status));
                        } else {
                            // Refused (the lease moved on): nothing kept,
                            // tried again only while the fence says so.
                            written.remove(&report.session);
                        }
                    }
                }
                // The lease manager stops the sessions if this lasts; the
                // next round writes what is still current.
                Err(e) => tracing::debug!("cannot report the sessions' states: {e:#}"),
            }
        }
        // At most one write a second: changes meanwhile wait for the next.
        tokio::time::sleep(COALESCE).await;
        if !wait_for_change(&mut events, refresh_at).await {
            return;
        }
    }
}

/// Waits for a change a report shows (a session's state or backlog) or
/// the refresh time; changes already queued count at once. False once the
/// engine is gone.
async fn wait_for_change(
    events: &mut tokio::sync::broadcast::Receiver<EngineEvent>,
    refresh_at: tokio::time::Instant,
) -> bool {
    use tokio::sync::broadcast::error::TryRecvError;
    let mut changed = false;
    loop {
        match events.try_recv() {
            Ok(EngineEvent::Message(_)) => {}
            Ok(_) | Err(TryRecvError::Lagged(_)) => changed = true,
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Closed) => return false,
        }
    }
    if changed {
        return true;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(refresh_at) => return true,
            event = events.recv() => match event {
                Ok(EngineEvent::Message(_)) => continue,
                Ok(_) | Err(RecvError::Lagged(_)) => return true,
                Err(RecvError::Closed) => return false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{BacklogInfo, TargetBacklog};

    #[test]
    fn a_report_read_later_dates_every_queue_back_by_then() {
        let written = Instant::now() + Duration::from_secs(600);
        let queue = |pending| BacklogInfo {
            pending,
            oldest_at: Some(written),
            ..BacklogInfo::default()
        };
        let session = SessionSnapshot {
            backlog: Some(BacklogInfo {
                beside: vec![TargetBacklog {
                    target: "NATS".into(),
                    backlog: queue(2),
                }],
                ..queue(1)
            }),
            ..SessionSnapshot::new(SessionId::parse("shop").unwrap())
        };
        let read = ReportedStatus::of(&session, written).aged(Duration::from_secs(30));
        let backlog = read.backlog.unwrap();
        let then = Some(written - Duration::from_secs(30));
        assert_eq!(backlog.oldest_at, then);
        assert_eq!(backlog.beside[0].backlog.oldest_at, then, "NATS's too");
    }
}
