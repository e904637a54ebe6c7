//! The per-session lease whose counter fences every write (see the module
//! doc of `pg_store`).

use std::time::Duration;

use deadpool_postgres::Pool;

/// Whose lease a take may replace, besides an expired one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retake {
    /// Only an expired lease: the lease manager's takeover rounds.
    ExpiredOnly,
    /// Also the taker's own, unexpired one (a restarted process reusing its
    /// node name starts at a new fence).
    ExpiredOrOwn,
}

/// How long a take waits for the previous holder's writes in flight (they
/// hold the lease row `FOR SHARE`). A healthy host's write takes
/// milliseconds; one that is still open after this is a host frozen
/// mid-write, which the server ends (see
/// [`Database::transactions_end_within`](super::Database::transactions_end_within)):
/// the take fails now and the next round tries again, instead of the
/// takeover rounds of every other session waiting behind it.
const TAKE_LOCK_WAIT: Duration = Duration::from_secs(2);

/// Takes the lease on `session` for `owner` for `ttl`: inserts it, or takes
/// it over when `retake` allows. Each take advances the fence counter;
/// returns the new counter, or `None` while another owner holds an
/// unexpired lease. A takeover waits up to [`TAKE_LOCK_WAIT`] for the
/// writes the previous holder has in flight, then fails saying so.
pub async fn take_lease_when(
    pool: &Pool,
    session: &str,
    owner: &str,
    ttl: Duration,
    retake: Retake,
) -> anyhow::Result<Option<u64>> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = {}",
        TAKE_LOCK_WAIT.as_millis()
    ))
    .await?;
    let row = tx
        .query_opt(
            "INSERT INTO session_leases (session, owner, expires_at, fence)
             VALUES ($1, $2, now() + make_interval(secs => $3), 1)
             ON CONFLICT (session) DO UPDATE
                SET owner = excluded.owner,
                    expires_at = excluded.expires_at,
                    fence = session_leases.fence + 1
                WHERE session_leases.expires_at < now()
                   OR ($4 AND session_leases.owner = excluded.owner)
             RETURNING fence",
            &[
                &session,
                &owner,
                &ttl.as_secs_f64(),
                &(retake == Retake::ExpiredOrOwn),
            ],
        )
        .await
        .map_err(|e| {
            if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
                anyhow::anyhow!(
                    "a write of its previous holder has been open for over {}s (a host frozen or cut off mid-write; the database ends it)",
                    TAKE_LOCK_WAIT.as_secs()
                )
            } else {
                e.into()
            }
        })?;
    tx.commit().await?;
    Ok(row.map(|row| row.get::<_, i64>(0) as u64))
}

/// [`take_lease_when`] an expired lease or the owner's own.
pub async fn take_lease(
    pool: &Pool,
    session: &str,
    owner: &str,
    ttl: Duration,
) -> anyhow::Result<Option<u64>> {
    take_lease_when(pool, session, owner, ttl, Retake::ExpiredOrOwn).await
}
