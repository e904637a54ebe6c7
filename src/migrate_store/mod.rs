//! `wabridge migrate-store`: copies sessions between a single host's data
//! dir and the cluster's PostgreSQL database, both ways, with everything a
//! session is: whatsapp-rust's store (device identity, Signal and app
//! state, mappings, buffers: every table), its settings (webhook, token,
//! the "logged out" mark) and its webhook outbox rows (waiting, dead
//! letters, tombstones, with their delivery ids and order).
//!
//! The same care as `import-baileys`:
//! - **Never while in use.** The data dir is locked as the service locks
//!   it; in the database a session whose lease has not expired is being
//!   served and is refused; `--to-dir` takes the session's lease itself for
//!   the length of the copy, so no host starts it meanwhile.
//! - **Never overwrites.** A session the target already has (a folder, or
//!   any row in the database) is skipped, and the target is left as it was.
//! - **Whole or nothing.** Into the database, one transaction per session
//!   (its `cluster_sessions` row appears with its store, so no host takes a
//!   half-copied session); into the data dir, a hidden folder renamed into
//!   place at the end.
//! - **Verified, then the source stops.** The copy is read back and
//!   compared with the source (device, every row, settings, outbox). Only
//!   then does the source stop being served: `--to-db` moves the session
//!   folder aside (`<id>.migrated-to-db-<time>`, never loaded, nothing
//!   deleted), `--to-dir` removes the session from the cluster, under its
//!   lease, in the transaction that commits after the folder is in place.
//!   Two clients on one linked device replace each other in a loop and
//!   break its encryption; this is what rules them out.
//!
//! Names whatsapp-rust's types (as `import` does): building the library's
//! stores is its job.

mod db_store;
mod dir_store;
mod image;
mod outbox_rows;
pub mod report;
mod tables;
mod to_db;
mod to_dir;

use std::time::Duration;

use deadpool_postgres::Pool;
use serde::Serialize;

use crate::config::redact_url_password;
use crate::engine::whatsapp::pg_store::{self, SCHEMA_VERSION};
use crate::paths::{DataDir, DataDirError, SessionId};
pub use report::{MigrateReport, Outcome, SessionReport};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// From the data dir into the cluster database.
    ToDb,
    /// From the cluster database into the data dir.
    ToDir,
}

/// The cluster database: its URL (`[cluster] database_url` or
/// `--database-url`) and a CA file for its TLS (`[cluster] database_ca`).
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub ca_file: Option<std::path::PathBuf>,
}

/// Never shows the URL's password.
impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &redact_url_password(&self.url))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct MigrateOptions {
    pub direction: Direction,
    /// The sessions to copy; empty: all of the source's.
    pub sessions: Vec<String>,
    pub dry_run: bool,
}

/// How long `--to-dir` holds a session's lease while it copies it. Far
/// more than a copy takes; if the process dies, the session is served
/// again once it lapses.
const MIGRATION_LEASE: Duration = Duration::from_secs(300);

/// What every session's copy needs.
struct Run<'a> {
    data: &'a DataDir,
    pool: Pool,
    dry_run: bool,
    /// The database has no wabridge schema yet (a dry run does not create
    /// it): it holds nothing.
    empty_db: bool,
    /// The lease owner `--to-dir` writes: never a host's node name.
    owner: String,
}

/// Why a session was not copied.
enum Stop {
    Skipped(String),
    Refused(String),
    Failed(String),
}

impl Stop {
    fn report(self, report: SessionReport) -> SessionReport {
        match self {
            Stop::Skipped(why) => report.skipped(why),
            Stop::Refused(why) => report.refused(why),
            Stop::Failed(why) => report.failed(why),
        }
    }
}

/// Copies the chosen sessions; the error is for the whole run (the data
/// dir in use, the database out of reach, nothing to copy), per-session
/// trouble is in the report.
pub async fn migrate(
    data: &DataDir,
    database: &Target,
    options: &MigrateOptions,
) -> Result<MigrateReport, String> {
    let database_url = database.url.as_str();
    let shown = redact_url_password(database_url);
    let mut notes = Vec::new();
    if options.direction == Direction::ToDb && !data.sessions_dir().is_dir() {
        return Err(format!(
            "data dir {} has no sessions folder: nothing to copy",
            data.root().display()
        ));
    }
    // Two writers on one data dir is what the lock exists to prevent, and
    // a session the service is running must not be copied. A dry run only
    // says whether the real run would get the lock.
    let _lock = match (options.dry_run, data.root().exists()) {
        (false, _) => Some(data.open_exclusive().map_err(|e| e.to_string())?),
        (true, false) => None,
        (true, true) => match data.open_exclusive() {
            Ok(lock) => Some(lock),
            Err(DataDirError::InUse { holder, .. }) => {
                notes.push(format!(
                    "a wabridge ({holder}) is using this data dir: the real run is refused until it stops"
                ));
                None
            }
            Err(e) => return Err(e.to_string()),
        },
    };
    // With its TLS settings; connected once now, so that a database out
    // of reach stops the run with a sentence saying why.
    let pool = pg_store::Database::parse(database_url, database.ca_file.as_deref())
        .map_err(|e| format!("cluster database {shown}: {e}"))?
        .open()
        .await
        .map_err(|e| format!("cluster database {shown}: {e:#}"))?;
    let empty_db = if options.dry_run {
        match schema_version(&pool).await {
            Ok(0) => {
                notes.push(
                    "the database has no wabridge schema yet; the real run creates it".into(),
                );
                true
            }
            Ok(v) if v == SCHEMA_VERSION => false,
            Ok(v) => {
                return Err(format!(
                    "cluster database {shown}: its schema is at version {v}, this wabridge's is \
                     {SCHEMA_VERSION}; a dry run does not migrate it (the real run does, as a \
                     starting host does)"
                ));
            }
            Err(e) => return Err(format!("cluster database {shown}: {e:#}")),
        }
    } else {
        pg_store::migrate(&pool)
            .await
            .map_err(|e| format!("cluster database {shown}: {e:#}"))?;
        false
    };
    let run = Run {
        data,
        pool,
        dry_run: options.dry_run,
        empty_db,
        owner: migration_owner(),
    };
    let ids = match options.sessions.is_empty() {
        false => options.sessions.clone(),
        true => match options.direction {
            Direction::ToDb => data
                .saved_sessions()
                .map_err(|e| format!("cannot list the sessions of {}: {e}", data.root().display()))?
                .iter()
                .map(|id| id.to_string())
                .collect(),
            Direction::ToDir => cluster_sessions(&run)
                .await
                .map_err(|e| format!("cluster database {shown}: {e:#}"))?,
        },
    };
    if ids.is_empty() {
        return Err(match options.direction {
            Direction::ToDb => {
                format!("data dir {} has no sessions to copy", data.root().display())
            }
            Direction::ToDir => format!("cluster database {shown} has no sessions to copy"),
        });
    }
    let mut sessions = Vec::with_capacity(ids.len());
    for raw in ids {
        let id = match SessionId::parse(&raw) {
            Ok(id) => id,
            Err(e) => {
                // The id may come from the database: shown escaped, never
                // used as a path.
                let shown: String = raw
                    .chars()
                    .take(64)
                    .flat_map(char::escape_default)
                    .collect();
                sessions.push(SessionReport::new(&shown).skipped(e.to_string()));
                continue;
            }
        };
        sessions.push(match options.direction {
            Direction::ToDb => to_db::copy(&run, &id).await,
            Direction::ToDir => to_dir::copy(&run, &id).await,
        });
    }
    Ok(MigrateReport {
        direction: options.direction,
        dry_run: options.dry_run,
        database: shown,
        data_dir: data.root().display().to_string(),
        notes,
        sessions,
    })
}

/// The database's schema version; 0 when wabridge never migrated it.
async fn schema_version(pool: &Pool) -> anyhow::Result<i32> {
    let conn = pool.get().await?;
    let exists: bool = conn
        .query_one(
            "SELECT to_regclass('wabridge_schema_version') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(conn
        .query_one(
            "SELECT coalesce(max(version), 0) FROM wabridge_schema_version",
            &[],
        )
        .await?
        .get(0))
}

/// Every session id the cluster lists, as stored (checked by the caller).
async fn cluster_sessions(run: &Run<'_>) -> anyhow::Result<Vec<String>> {
    if run.empty_db {
        return Ok(Vec::new());
    }
    let conn = run.pool.get().await?;
    let rows = conn
        .query("SELECT id FROM cluster_sessions ORDER BY id", &[])
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Whether the cluster lists `id` (asked on a fresh connection, after a
/// commit whose answer was lost).
async fn session_listed(pool: &Pool, id: &SessionId) -> anyhow::Result<bool> {
    let conn = pool.get().await?;
    let row = conn
        .query_opt(
            "SELECT 1 FROM cluster_sessions WHERE id = $1",
            &[&id.as_str()],
        )
        .await?;
    Ok(row.is_some())
}

/// `migrate-store@<host> pid <pid>`: names this run in the lease table.
fn migration_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("migrate-store@{host} pid {}", std::process::id())
}

/// Who holds an unexpired lease on `id`, and for how many more seconds.
async fn live_lease(
    tx: &tokio_postgres::Transaction<'_>,
    id: &SessionId,
) -> anyhow::Result<Option<(String, i64)>> {
    let row = tx
        .query_opt(
            "SELECT owner, ceil(extract(epoch FROM expires_at - now()))::bigint
               FROM session_leases WHERE session = $1 AND expires_at > now()",
            &[&id.as_str()],
        )
        .await?;
    Ok(row.map(|row| (row.get(0), row.get(1))))
}

fn served_by(id: &SessionId, (owner, secs): (String, i64)) -> Stop {
    Stop::Refused(format!(
        "session \"{id}\" is being served in the cluster: {owner} holds its lease for {secs} s \
         more; stop that host (its lease then lapses or is released) and run this again"
    ))
}
