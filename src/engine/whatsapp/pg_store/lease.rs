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

/// Takes the lease on `session` for `owner` for `ttl`: inserts it, or takes
/// it over when `retake` allows. Each take advances the fence counter;
/// returns the new counter, or `None` while another owner holds an
/// unexpired lease. A takeover waits for the writes the previous holder has
/// in flight (they hold the row `FOR SHARE`).
pub async fn take_lease_when(
    pool: &Pool,
    session: &str,
    owner: &str,
    ttl: Duration,
    retake: Retake,
) -> anyhow::Result<Option<u64>> {
    let conn = pool.get().await?;
    let row = conn
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
        .await?;
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
