//! One session from the cluster database into the data dir: take its lease
//! (no host starts it meanwhile), read it whole, write it into a hidden
//! folder, read that back and compare, add its webhook rows to the data
//! dir's outbox, then, in one transaction under the lease, remove it from
//! the cluster and rename the folder into place before committing. Any
//! failure undoes the data dir's side and lets the lease lapse at once, so
//! the cluster serves the session again as before.

use std::fs;
use std::path::PathBuf;

use anyhow::Context as _;
use tokio_postgres::IsolationLevel;

use super::image::StoreImage;
use super::outbox_rows::{self, OutboxRow};
use super::report::{Outcome, SessionReport, WebhookSummary};
use super::{MIGRATION_LEASE, Run, Stop, db_store, dir_store, live_lease, served_by};
use crate::engine::whatsapp::pg_store::{self, Retake, SESSION_TABLES};
use crate::paths::{self, SessionId};
use crate::session_files::{SessionFiles, SessionSettings};

/// What the database holds of one session.
struct Source {
    settings: SessionSettings,
    store: Option<StoreImage>,
    outbox: Vec<OutboxRow>,
}

pub async fn copy(run: &Run<'_>, id: &SessionId) -> SessionReport {
    let mut report = SessionReport::new(id.as_str());
    match copy_into(run, id, &mut report).await {
        Ok(()) => report,
        Err(stop) => stop.report(report),
    }
}

fn database(e: impl std::fmt::Display) -> Stop {
    Stop::Failed(format!("cluster database: {e}"))
}

async fn copy_into(run: &Run<'_>, id: &SessionId, report: &mut SessionReport) -> Result<(), Stop> {
    if run.data.migration_unconfirmed(id) && settle_interrupted(run, id, report).await? {
        return Ok(());
    }
    if !run.dry_run {
        clear_leftover_staging(run, id, report)?;
    }
    refuse_if_present(run, id)?;
    if run.empty_db {
        return Err(Stop::Skipped(format!(
            "the cluster database has no session \"{id}\""
        )));
    }
    if run.dry_run {
        let source = read_source(run, id).await?;
        describe(report, &source);
        report.outcome = Outcome::WouldCopy;
        return Ok(());
    }
    let fence = pg_store::take_lease_when(
        &run.pool,
        id.as_str(),
        &run.owner,
        MIGRATION_LEASE,
        Retake::ExpiredOnly,
    )
    .await
    .map_err(|e| database(format!("{e:#}")))?;
    let Some(fence) = fence else {
        // Served, or just taken by a host: say by whom.
        let mut conn = run.pool.get().await.map_err(database)?;
        let tx = conn.transaction().await.map_err(database)?;
        return Err(match live_lease(&tx, id).await {
            Ok(Some(lease)) => served_by(id, lease),
            _ => Stop::Refused(format!(
                "session \"{id}\" is being served in the cluster; stop its host and run this again"
            )),
        });
    };
    let copied = async {
        let source = read_source(run, id).await?;
        describe(report, &source);
        install(run, id, fence, &source, report).await
    }
    .await;
    if copied.is_err() {
        release(run, id, fence).await;
    }
    copied?;
    report.outcome = Outcome::Copied;
    report.source = Some(
        "removed from the cluster database (store, settings, webhook rows, lease) after the copy \
         in the data dir was verified: no host serves it any more"
            .into(),
    );
    Ok(())
}

/// A folder an interrupted run renamed into place before the cluster's
/// commit answered (`paths::UNCONFIRMED_MIGRATION`), settled by what the
/// cluster says now. Still listed there: the removal never committed, so
/// the folder is moved aside (hidden, kept) with its webhook rows out of
/// the data dir's outbox, and the copy starts again (false). Gone: the
/// removal committed, so the folder is the session; the mark goes (true).
async fn settle_interrupted(
    run: &Run<'_>,
    id: &SessionId,
    report: &mut SessionReport,
) -> Result<bool, Stop> {
    let folder = run.data.session_dir(id);
    if run.dry_run {
        return Err(Stop::Skipped(format!(
            "{} holds a copy an interrupted run left unconfirmed; run without --dry-run to \
             settle it",
            folder.display()
        )));
    }
    let listed = super::session_listed(&run.pool, id)
        .await
        .map_err(|e| database(format!("{e:#}")))?;
    if !listed {
        fs::remove_file(folder.join(paths::UNCONFIRMED_MIGRATION))
            .map_err(|e| Stop::Failed(format!("cannot confirm {}: {e}", folder.display())))?;
        report.outcome = Outcome::Copied;
        report.source = Some(
            "an interrupted run had already removed it from the cluster: its copy in the data \
             dir is the session now"
                .into(),
        );
        return Ok(true);
    }
    let aside = run
        .data
        .sessions_dir()
        .join(format!(".migrate-{id}.interrupted-{}", unix_now()));
    fs::rename(&folder, &aside)
        .map_err(|e| Stop::Failed(format!("cannot move {} aside: {e}", folder.display())))?;
    remove_outbox_rows(run, id).map_err(|e| {
        Stop::Failed(format!(
            "cannot clear the interrupted copy's webhook rows: {e}"
        ))
    })?;

    report.warnings.push(format!(
        "an interrupted run had left an unconfirmed copy; the cluster still has the session, so \
         that copy was moved aside to {} and the session copied again",
        aside.display()
    ));
    Ok(false)
}

/// A hidden `.migrate-<id>` folder is left only by a run of ours cut off
/// before its rename (the data dir is locked, and a run that fails clears
/// it): never a live session, and the webhook rows of the session in the
/// data dir's outbox are that run's (a run refuses to start on rows it did
/// not add). Both go, so the copy can start again.
fn clear_leftover_staging(
    run: &Run<'_>,
    id: &SessionId,
    report: &mut SessionReport,
) -> Result<(), Stop> {
    let staging = staging_dir(run, id);
    if !staging.exists() || run.data.session_dir(id).exists() {
        return Ok(());
    }
    fs::remove_dir_all(&staging)
        .map_err(|e| Stop::Failed(format!("cannot clear {}: {e}", staging.display())))?;
    remove_outbox_rows(run, id).map_err(|e| {
        Stop::Failed(format!(
            "cannot clear the webhook rows an interrupted run added: {e}"
        ))
    })?;
    report.warnings.push(
        "cleared what an interrupted run had left (a hidden folder, its webhook rows)".into(),
    );
    Ok(())
}

/// Removes `id`'s rows from the data dir's outbox: those this command
/// added.
fn remove_outbox_rows(run: &Run<'_>, id: &SessionId) -> Result<(), String> {
    match outbox_rows::open_sqlite(&outbox_rows::sqlite_path(run.data), false) {
        Ok(Some(conn)) => conn
            .execute("DELETE FROM deliveries WHERE session = ?1", [id.as_str()])
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Ok(None) => Ok(()),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// Skips a session the data dir already has: a folder, or rows in its
/// webhook outbox.
fn refuse_if_present(run: &Run<'_>, id: &SessionId) -> Result<(), Stop> {
    if run.data.session_dir(id).exists() {
        return Err(Stop::Skipped(format!(
            "the data dir already has a session \"{id}\": it is never overwritten; nothing was \
             changed on either side"
        )));
    }
    let outbox = outbox_rows::open_sqlite(&outbox_rows::sqlite_path(run.data), false)
        .and_then(|conn| match conn {
            Some(conn) => outbox_rows::read_sqlite(&conn, id.as_str()).map(|rows| rows.len()),
            None => Ok(0),
        })
        .map_err(|e| Stop::Failed(format!("{e:#}")))?;
    if outbox > 0 {
        return Err(Stop::Skipped(format!(
            "the data dir's webhook outbox already holds {outbox} rows of a session \"{id}\": \
             they are never mixed with the cluster's; nothing was changed on either side"
        )));
    }
    Ok(())
}

/// The session as one snapshot of the database.
async fn read_source(run: &Run<'_>, id: &SessionId) -> Result<Source, Stop> {
    let mut conn = run.pool.get().await.map_err(database)?;
    let tx = conn
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(database)?;
    let row = tx
        .query_opt(
            "SELECT webhook_url, webhook_token, logged_out, delete_requested_at IS NOT NULL,
                    reject_calls, call_reply
               FROM cluster_sessions WHERE id = $1",
            &[&id.as_str()],
        )
        .await
        .map_err(database)?;
    let Some(row) = row else {
        return Err(Stop::Skipped(format!(
            "the cluster database has no session \"{id}\""
        )));
    };
    if row.get::<_, bool>(3) {
        return Err(Stop::Skipped(format!(
            "session \"{id}\" is being deleted in the cluster: there is nothing to keep"
        )));
    }
    if let Some(lease) = live_lease(&tx, id)
        .await
        .map_err(|e| database(format!("{e:#}")))?
        && lease.0 != run.owner
    {
        return Err(served_by(id, lease));
    }
    let settings = SessionSettings {
        webhook_url: row.get(0),
        webhook_token: row.get(1),
        logged_out: row.get(2),
        nats_subject: None,
        reject_calls: row.get(4),
        call_reply: row.get(5),
        ..SessionSettings::default()
    };
    let store = db_store::read(&tx, id.as_str())
        .await
        .map_err(|e| Stop::Failed(format!("cannot read the session's store: {e:#}")))?;
    let store = store.counts().values().any(|n| *n > 0).then_some(store);
    let outbox = outbox_rows::read_pg(&tx, id.as_str())
        .await
        .map_err(|e| Stop::Failed(format!("{e:#}")))?;
    Ok(Source {
        settings,
        store,
        outbox,
    })
}

fn describe(report: &mut SessionReport, source: &Source) {
    match &source.store {
        Some(store) => {
            report.device = store.device_summary();
            report.store = Some(store.counts());
            report.warnings.extend(store.warnings.iter().cloned());
        }
        None => report.store = Some(Default::default()),
    }
    report.outbox = Some(outbox_rows::counts(&source.outbox));
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

/// Lets the migration's lease lapse now, so the cluster serves the
/// session again at its next round.
async fn release(run: &Run<'_>, id: &SessionId, fence: u64) {
    if let Ok(conn) = run.pool.get().await {
        let _ = conn
            .execute(
                "UPDATE session_leases SET expires_at = now()
                  WHERE session = $1 AND owner = $2 AND fence = $3",
                &[&id.as_str(), &run.owner, &(fence as i64)],
            )
            .await;
    }
}

/// `sessions/.migrate-<id>`: ids never start with a dot, so the engine
/// never takes it for a session.
fn staging_dir(run: &Run<'_>, id: &SessionId) -> PathBuf {
    run.data.sessions_dir().join(format!(".migrate-{id}"))
}

async fn install(
    run: &Run<'_>,
    id: &SessionId,
    fence: u64,
    source: &Source,
    report: &mut SessionReport,
) -> Result<(), Stop> {
    let staging = staging_dir(run, id);
    let result = stage_and_swap(run, id, fence, &staging, source, report).await;
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

async fn stage_and_swap(
    run: &Run<'_>,
    id: &SessionId,
    fence: u64,
    staging: &std::path::Path,
    source: &Source,
    report: &mut SessionReport,
) -> Result<(), Stop> {
    let staged = SessionFiles {
        id: id.clone(),
        dir: staging.to_path_buf(),
    };
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        Stop::Failed(format!("{what}: {e}; nothing changed in the cluster"))
    };
    paths::create_private_dir(&run.data.sessions_dir())
        .map_err(|e| failed("cannot create the sessions folder", &e))?;
    match &source.store {
        Some(store) => {
            staged
                .prepare()
                .map_err(|e| failed("cannot create the session folder", &e))?;
            dir_store::write(&staged.store_path(), store)
                .await
                .map_err(|e| failed("cannot write the store", &format!("{e:#}")))?;
        }
        None => paths::create_private_dir(staging)
            .map_err(|e| failed("cannot create the session folder", &e))?,
    }
    staged
        .save_settings(&source.settings)
        .map_err(|e| failed("cannot save the settings", &e))?;
    verify_folder(&staged, source)
        .await
        .map_err(|e| failed("the copy does not match the source", &e))?;
    // Not loaded by wabridge until the cluster's commit is confirmed: an
    // interrupted run must not leave a second client of the device.
    fs::write(staging.join(paths::UNCONFIRMED_MIGRATION), "")
        .map_err(|e| failed("cannot mark the copy unconfirmed", &e))?;

    let outbox_path = outbox_rows::sqlite_path(run.data);
    if !source.outbox.is_empty() {
        add_outbox_rows(&outbox_path, id, &source.outbox).map_err(|e| {
            failed(
                "cannot add the webhook rows to the data dir's outbox",
                &format!("{e:#}"),
            )
        })?;
    }
    report.checks.push(
        "read back before the swap: the same device, every store row, the settings, and the \
         webhook rows in their order with their delivery ids"
            .into(),
    );
    let undo_outbox = || {
        if !source.outbox.is_empty() {
            let _ = remove_outbox_rows(run, id);
        }
    };
    let swapped = swap(run, id, fence, staging, report).await;
    if swapped.is_err() {
        undo_outbox();
    }
    swapped
}

/// Reopens the staged folder (the store through the library, as the
/// engine will) and compares it with the source.
async fn verify_folder(staged: &SessionFiles, source: &Source) -> Result<(), String> {
    let mut differences = Vec::new();
    if let Some(store) = &source.store {
        let copy = dir_store::read(&staged.store_path())
            .await
            .map_err(|e| format!("{e:#}"))?;
        differences.extend(store.differences(&copy));
    }
    match staged.load_settings() {
        Ok(settings) if settings == source.settings => {}
        Ok(_) => differences.push("the settings differ".into()),
        Err(e) => differences.push(e.to_string()),
    }
    match differences.is_empty() {
        true => Ok(()),
        false => Err(differences.join("; ")),
    }
}

/// Appends the rows to the data dir's outbox in one transaction, checked
/// to hold none of the session's before, and read back after.
fn add_outbox_rows(
    path: &std::path::Path,
    id: &SessionId,
    rows: &[OutboxRow],
) -> anyhow::Result<()> {
    let mut conn = outbox_rows::open_sqlite(path, true)?.context("the data dir's outbox")?;
    let tx = conn.transaction()?;
    if !outbox_rows::read_sqlite(&tx, id.as_str())?.is_empty() {
        anyhow::bail!("it already holds rows of this session");
    }
    outbox_rows::write_sqlite(&tx, id.as_str(), rows)?;
    if outbox_rows::read_sqlite(&tx, id.as_str())? != rows {
        anyhow::bail!("the rows read back differ from the cluster's");
    }
    tx.commit()?;
    Ok(())
}

/// Under the migration's lease, in one transaction: the session leaves
/// the cluster, and the folder is renamed into place before the commit.
async fn swap(
    run: &Run<'_>,
    id: &SessionId,
    fence: u64,
    staging: &std::path::Path,
    report: &mut SessionReport,
) -> Result<(), Stop> {
    let failed = |e: &dyn std::fmt::Display| {
        Stop::Failed(format!(
            "cannot remove the session from the cluster ({e}): the data dir's copy was undone, \
             the cluster keeps it"
        ))
    };
    let mut conn = run.pool.get().await.map_err(|e| failed(&e))?;
    let tx = conn.transaction().await.map_err(|e| failed(&e))?;
    // FOR UPDATE: no take can slip in between this check and the commit.
    let lease = tx
        .query_opt(
            "SELECT owner, fence FROM session_leases WHERE session = $1 FOR UPDATE",
            &[&id.as_str()],
        )
        .await
        .map_err(|e| failed(&e))?;
    let ours = lease.is_some_and(|row| {
        row.get::<_, &str>(0) == run.owner && row.get::<_, i64>(1) == fence as i64
    });
    if !ours {
        return Err(Stop::Failed(
            "the migration's lease lapsed and a host took the session while it was copied: \
             the data dir's copy was undone, the cluster keeps serving it"
                .into(),
        ));
    }
    // The NATS queue does not move (a single host's is outbox/nats.db):
    // what it still holds must be published first, never dropped.
    let unpublished: i64 = tx
        .query_one(
            "SELECT count(*) FROM nats_outbox WHERE session = $1 AND dead IN (0, 1)",
            &[&id.as_str()],
        )
        .await
        .map_err(|e| failed(&e))?
        .get(0);
    if unpublished > 0 {
        return Err(Stop::Failed(format!(
            "{unpublished} NATS event(s) of the session wait in the cluster's NATS queue (or are \
             dead letters there): publish or replay them from a host with [nats] first; the data \
             dir's copy was undone, the cluster keeps serving it"
        )));
    }
    for table in SESSION_TABLES.iter().map(|t| (*t, "session")).chain([
        ("webhook_outbox", "session"),
        ("nats_outbox", "session"),
        ("cluster_sessions", "id"),
        ("session_leases", "session"),
    ]) {
        let (table, column) = table;
        tx.execute(
            &format!("DELETE FROM {table} WHERE {column} = $1"),
            &[&id.as_str()],
        )
        .await
        .map_err(|e| failed(&e))?;
    }
    let target = run.data.session_dir(id);
    fs::rename(staging, &target)
        .map_err(|e| failed(&format!("cannot rename the folder into place: {e}")))?;
    let Err(e) = tx.commit().await else {
        confirm(&target, report);
        return Ok(());
    };
    // The commit's answer may be lost after the server committed: ask.
    match super::session_listed(&run.pool, id).await {
        Ok(true) => match fs::rename(&target, staging) {
            Ok(()) => Err(failed(&e)),
            Err(move_error) => Err(Stop::Failed(format!(
                "the cluster database did not commit ({e}) and still has the session, but the \
                 data dir's copy could not be moved out of the way ({move_error}): delete {} \
                 before starting wabridge on this data dir",
                target.display()
            ))),
        },
        Ok(false) => {
            report.warnings.push(format!(
                "the commit's answer was lost ({e}), but the session is no longer in the \
                 cluster: the data dir's copy is the session now"
            ));
            confirm(&target, report);
            Ok(())
        }
        Err(check) => {
            // Neither side may serve it until someone looks: the copy is
            // hidden (a dot name), not deleted.
            let kept = run
                .data
                .sessions_dir()
                .join(format!(".migrate-{id}.kept-{}", unix_now()));
            let kept_note = match fs::rename(&target, &kept) {
                Ok(()) => format!("the copy is kept, not served, at {}", kept.display()),
                Err(e) => format!(
                    "the copy is at {} and could not be hidden ({e})",
                    target.display()
                ),
            };
            Err(Stop::Failed(format!(
                "the commit's outcome is unknown ({e}; then {check:#}): {kept_note}. If the \
                 cluster still lists session \"{id}\", delete the copy; if not, it is the \
                 session: rename it to {}",
                target.display()
            )))
        }
    }
}

/// The cluster let the session go: its folder may be loaded now.
fn confirm(folder: &std::path::Path, report: &mut SessionReport) {
    let mark = folder.join(paths::UNCONFIRMED_MIGRATION);
    if let Err(e) = fs::remove_file(&mark) {
        report.warnings.push(format!(
            "the cluster let the session go, but {} could not be removed ({e}): remove it by \
             hand, or wabridge will not load the session",
            mark.display()
        ));
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
