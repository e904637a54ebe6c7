//! One session from the data dir into the cluster database: read it whole,
//! write it in one transaction, read it back inside that transaction and
//! compare, move the folder aside, commit. If the commit fails the folder
//! goes back; nothing is half-done on either side.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::image::StoreImage;
use super::outbox_rows::{self, OutboxRow};
use super::report::{Outcome, SessionReport, WebhookSummary};
use super::{Run, Stop, db_store, dir_store, live_lease, served_by};
use crate::engine::whatsapp::pg_store::SESSION_TABLES;
use crate::paths::SessionId;
use crate::session_files::{SessionFiles, SessionSettings};

/// Where the session's webhook rows are kept beside its moved-aside folder.
const OUTBOX_BACKUP: &str = "webhook-outbox.db";

/// What the data dir holds of one session.
struct Source {
    settings: SessionSettings,
    store: Option<StoreImage>,
    outbox: Vec<OutboxRow>,
    /// Its NATS target's queue (`outbox/nats.db`), which is not copied.
    nats: outbox_rows::OutboxCounts,
}

pub async fn copy(run: &Run<'_>, id: &SessionId) -> SessionReport {
    let mut report = SessionReport::new(id.as_str());
    match copy_into(run, id, &mut report).await {
        Ok(()) => report,
        Err(stop) => stop.report(report),
    }
}

async fn copy_into(run: &Run<'_>, id: &SessionId, report: &mut SessionReport) -> Result<(), Stop> {
    let files = SessionFiles::new(run.data, id);
    if !files.dir.is_dir() {
        return Err(Stop::Skipped(format!(
            "the data dir has no session \"{id}\""
        )));
    }
    if !run.empty_db {
        let mut conn = run.pool.get().await.map_err(database)?;
        let tx = conn.transaction().await.map_err(database)?;
        refuse_if_present(&tx, id).await?;
    }
    let source = read_source(run, &files).await?;
    describe(report, &source);
    if run.dry_run {
        report.outcome = Outcome::WouldCopy;
        return Ok(());
    }
    let aside = install(run, id, &source, report).await?;
    report.outcome = Outcome::Copied;
    report.source = Some(format!(
        "moved aside to {} (the engine never loads it; nothing was deleted){}",
        aside.display(),
        if source.outbox.is_empty() {
            String::new()
        } else {
            format!(
                "; its webhook rows left the data dir's outbox and are kept in {OUTBOX_BACKUP} there"
            )
        }
    ));
    Ok(())
}

fn database(e: impl std::fmt::Display) -> Stop {
    Stop::Failed(format!("cluster database: {e}"))
}

/// Refuses a session that is served in the cluster, skips one the database
/// already has any row of.
async fn refuse_if_present(
    tx: &tokio_postgres::Transaction<'_>,
    id: &SessionId,
) -> Result<(), Stop> {
    if let Some(lease) = live_lease(tx, id)
        .await
        .map_err(|e| database(format!("{e:#}")))?
    {
        return Err(served_by(id, lease));
    }
    let mut present = Vec::new();
    let checks = std::iter::once(("cluster_sessions", "id"))
        .chain(SESSION_TABLES.iter().map(|t| (*t, "session")))
        .chain([("webhook_outbox", "session"), ("nats_outbox", "session")]);
    for (table, column) in checks {
        let n: i64 = tx
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE {column} = $1"),
                &[&id.as_str()],
            )
            .await
            .map_err(database)?
            .get(0);
        if n > 0 {
            present.push(format!("{n} in {table}"));
        }
    }
    if present.is_empty() {
        return Ok(());
    }
    Err(Stop::Skipped(format!(
        "the cluster database already has a session \"{id}\" (rows: {}): it is never \
         overwritten; nothing was changed on either side",
        present.join(", ")
    )))
}

async fn read_source(run: &Run<'_>, files: &SessionFiles) -> Result<Source, Stop> {
    let settings = files
        .load_settings()
        .map_err(|e| Stop::Failed(format!("{e}; fix session.json and run this again")))?;
    let store = match files.has_store() {
        true => Some(
            dir_store::read(&files.store_path())
                .await
                .map_err(|e| Stop::Failed(format!("cannot read the session's store: {e:#}")))?,
        ),
        false => None,
    };
    let outbox_path = outbox_rows::sqlite_path(run.data);
    let outbox = match outbox_rows::open_sqlite(&outbox_path, false) {
        Ok(Some(conn)) => outbox_rows::read_sqlite(&conn, files.id.as_str()),
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
    .map_err(|e| Stop::Failed(format!("{e:#}")))?;
    let nats_path = run.data.root().join("outbox").join("nats.db");
    let nats = match outbox_rows::open_sqlite(&nats_path, false) {
        Ok(Some(conn)) => outbox_rows::read_sqlite(&conn, files.id.as_str()),
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
    .map_err(|e| Stop::Failed(format!("{e:#}")))?;
    Ok(Source {
        settings,
        store,
        outbox,
        nats: outbox_rows::counts(&nats),
    })
}

fn describe(report: &mut SessionReport, source: &Source) {
    if let Some(store) = &source.store {
        report.device = store.device_summary();
        report.store = Some(store.counts());
        report.warnings.extend(store.warnings.iter().cloned());
    } else {
        report.store = Some(Default::default());
    }
    report.outbox = Some(outbox_rows::counts(&source.outbox));
    if let Some(prefix) = &source.settings.nats_subject {
        report.warnings.push(format!(
            "its NATS subject ({prefix:?}) stays behind: {}",
            crate::nats::subject::NO_OWN_PREFIX_IN_CLUSTER
        ));
    }
    let nats = &source.nats;
    if nats.waiting + nats.dead_letters > 0 {
        report.warnings.push(format!(
            "{} NATS event(s) not yet published and {} NATS dead letter(s) stay behind in \
             outbox/nats.db (the cluster's NATS queue starts empty): publish them on this host first",
            nats.waiting, nats.dead_letters
        ));
    }
    if source.settings.media != Default::default() {
        report.warnings.push(
            "its media URL mode stays behind: the cluster's sessions send media as base64"
                .to_string(),
        );
    }
    report.webhook = source
        .settings
        .webhook_url
        .as_ref()
        .map(|url| WebhookSummary {
            url: url.clone(),
            has_token: source.settings.webhook_token.is_some(),
        });
    report.logged_out = source.settings.logged_out;
}

/// Writes the session in one transaction, checks it, moves the folder
/// aside and commits; returns where the folder went.
async fn install(
    run: &Run<'_>,
    id: &SessionId,
    source: &Source,
    report: &mut SessionReport,
) -> Result<PathBuf, Stop> {
    let mut conn = run.pool.get().await.map_err(database)?;
    let tx = conn.transaction().await.map_err(database)?;
    // Again inside the transaction: another run may have copied it since.
    refuse_if_present(&tx, id).await?;
    write(&tx, id, source)
        .await
        .map_err(|e| Stop::Failed(format!("{e:#}; nothing was committed")))?;
    verify(&tx, id, source).await.map_err(|e| {
        Stop::Failed(format!(
            "the copy does not match the source: {e}; nothing was committed"
        ))
    })?;
    report.checks.push(
        "read back before committing: the same device, every store row, the settings, \
         and the webhook rows in their order with their delivery ids"
            .into(),
    );

    // The folder goes aside before the commit: once the database has the
    // session, a host may start it at once, and the data dir must no
    // longer be able to.
    let aside = run.data.move_aside_migrated(id).map_err(|e| {
        Stop::Failed(format!(
            "cannot move the session folder aside ({e}): nothing was committed"
        ))
    })?;
    let back = |why: String| -> Stop {
        let _ = fs::remove_file(aside.join(OUTBOX_BACKUP));
        match fs::rename(&aside, run.data.session_dir(id)) {
            Ok(()) => Stop::Failed(format!("{why}; nothing was committed, the folder is back")),
            Err(e) => Stop::Failed(format!(
                "{why}; nothing was committed, but the folder could not be moved back ({e}): \
                 rename {} to {} before starting wabridge",
                aside.display(),
                run.data.session_dir(id).display()
            )),
        }
    };
    if !source.outbox.is_empty()
        && let Err(e) = back_up_outbox(&aside.join(OUTBOX_BACKUP), id, &source.outbox)
    {
        return Err(back(format!(
            "cannot keep the webhook rows beside the folder: {e:#}"
        )));
    }
    if let Err(e) = tx.commit().await {
        // The commit's answer may be lost after the server committed: ask.
        match super::session_listed(&run.pool, id).await {
            Ok(false) => return Err(back(format!("the database did not commit: {e}"))),
            Ok(true) => report.warnings.push(format!(
                "the commit's answer was lost ({e}), but the database has the session: it \
                 lives there now"
            )),
            Err(check) => {
                // Served by neither side until someone looks.
                return Err(Stop::Failed(format!(
                    "the commit's outcome is unknown ({e}; then {check:#}): the folder stays \
                     aside at {}, not served. If the cluster database lists session \"{id}\", \
                     it lives there; if not, rename the folder back to {}",
                    aside.display(),
                    run.data.session_dir(id).display()
                )));
            }
        }
    }
    if !source.outbox.is_empty()
        && let Err(e) = drop_outbox_rows(run, id)
    {
        report.warnings.push(format!(
            "the data dir's outbox still holds the session's webhook rows ({e:#}); \
             nothing delivers them from there, but do not add a session \"{id}\" to this data dir"
        ));
    }
    Ok(aside)
}

async fn write(
    tx: &tokio_postgres::Transaction<'_>,
    id: &SessionId,
    source: &Source,
) -> anyhow::Result<()> {
    let settings = &source.settings;
    tx.execute(
        "INSERT INTO cluster_sessions
                (id, webhook_url, webhook_token, logged_out, reject_calls, call_reply)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &id.as_str(),
            &settings.webhook_url,
            &settings.webhook_token,
            &settings.logged_out,
            &settings.reject_calls,
            &settings.call_reply,
        ],
    )
    .await
    .context("writing cluster_sessions")?;
    if let Some(store) = &source.store {
        db_store::write(tx, id.as_str(), store).await?;
    }
    outbox_rows::write_pg(tx, id.as_str(), &source.outbox).await
}

/// Reads the copy back inside the transaction and compares it with the
/// source; the error lists what differs.
async fn verify(
    tx: &tokio_postgres::Transaction<'_>,
    id: &SessionId,
    source: &Source,
) -> Result<(), String> {
    let mut differences = Vec::new();
    let copy = db_store::read(tx, id.as_str())
        .await
        .map_err(|e| format!("{e:#}"))?;
    match &source.store {
        Some(store) => differences.extend(store.differences(&copy)),
        None => {
            if copy.counts().values().any(|n| *n > 0) {
                differences.push("the copy has store rows the source has not".into());
            }
        }
    }
    let row = tx
        .query_one(
            "SELECT webhook_url, webhook_token, logged_out, reject_calls, call_reply
               FROM cluster_sessions WHERE id = $1",
            &[&id.as_str()],
        )
        .await
        .map_err(|e| e.to_string())?;
    let settings = SessionSettings {
        webhook_url: row.get(0),
        webhook_token: row.get(1),
        logged_out: row.get(2),
        reject_calls: row.get(3),
        call_reply: row.get(4),
        // Not kept in the cluster (see `describe`).
        nats_subject: source.settings.nats_subject.clone(),
        media: source.settings.media,
    };
    if settings != source.settings {
        differences.push("the settings differ".into());
    }
    let outbox = outbox_rows::read_pg(tx, id.as_str())
        .await
        .map_err(|e| format!("{e:#}"))?;
    if outbox != source.outbox {
        differences.push(format!(
            "the webhook rows differ ({} in the source, {} in the copy)",
            source.outbox.len(),
            outbox.len()
        ));
    }
    match differences.is_empty() {
        true => Ok(()),
        false => Err(differences.join("; ")),
    }
}

/// The session's webhook rows, as they were, in an outbox file of their
/// own beside the moved-aside folder.
fn back_up_outbox(path: &Path, id: &SessionId, rows: &[OutboxRow]) -> anyhow::Result<()> {
    let mut conn = outbox_rows::open_sqlite(path, true)?.context("the backup outbox")?;
    let tx = conn.transaction()?;
    outbox_rows::write_sqlite(&tx, id.as_str(), rows)?;
    tx.commit()?;
    Ok(())
}

/// Removes the session's rows from the data dir's outbox, once the
/// database has them: the data dir holds the lock, so none was added since
/// they were read.
fn drop_outbox_rows(run: &Run<'_>, id: &SessionId) -> anyhow::Result<()> {
    let path = outbox_rows::sqlite_path(run.data);
    let conn = outbox_rows::open_sqlite(&path, false)?.context("the outbox is gone")?;
    conn.execute("DELETE FROM deliveries WHERE session = ?1", [id.as_str()])?;
    Ok(())
}
