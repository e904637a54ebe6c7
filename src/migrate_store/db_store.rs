//! A session's store in the cluster database (`pg_store`'s tables, keyed
//! by session), read into an image and written from one, inside the
//! caller's transaction: a copy into the database becomes visible whole,
//! with the session's `cluster_sessions` row, or not at all. The encoded
//! tables use `pg_store`'s own encodings.

use anyhow::Context as _;
use tokio_postgres::Transaction;
use whatsapp_rust::store::traits::AppStateSyncKey;

use super::image::StoreImage;
use super::tables::{self, TABLES};
use crate::engine::whatsapp::pg_store::PgStore;

/// Everything the database holds for `session`'s store.
pub async fn read(tx: &Transaction<'_>, session: &str) -> anyhow::Result<StoreImage> {
    let mut warnings = Vec::new();
    let device = tx
        .query_opt(
            "SELECT device::text FROM wa_device WHERE session = $1",
            &[&session],
        )
        .await
        .context("reading wa_device")?
        .map(|row| PgStore::decode_device(row.get(0)))
        .transpose()
        .map_err(|e| anyhow::anyhow!("the device does not decode: {e}"))?;

    let app_state_keys = tx
        .query(
            "SELECT key_id, key_data, fingerprint, timestamp FROM wa_app_state_keys
             WHERE session = $1 ORDER BY key_id",
            &[&session],
        )
        .await
        .context("reading wa_app_state_keys")?
        .iter()
        .map(|row| {
            (
                row.get(0),
                AppStateSyncKey {
                    key_data: row.get(1),
                    fingerprint: row.get(2),
                    timestamp: row.get(3),
                },
            )
        })
        .collect();

    let mut app_state_versions = Vec::new();
    for row in tx
        .query(
            "SELECT name, state FROM wa_app_state_versions WHERE session = $1 ORDER BY name",
            &[&session],
        )
        .await
        .context("reading wa_app_state_versions")?
    {
        let name: String = row.get(0);
        let state = PgStore::decode_app_state_version(row.get(1)).unwrap_or_else(|e| {
            // As `pg_store` reads it: the collection re-syncs from 0.
            warnings.push(format!(
                "app-state version {name} does not decode ({e}): copied as empty, \
                 so the collection syncs again from the phone"
            ));
            Default::default()
        });
        app_state_versions.push((name, state));
    }

    let mut rows = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        rows.push(tables::read_pg(tx, table, session).await?);
    }
    Ok(StoreImage {
        device,
        app_state_keys,
        app_state_versions,
        tables: rows,
        warnings,
    })
}

/// Writes `image` as `session`'s store, inside `tx`.
pub async fn write(tx: &Transaction<'_>, session: &str, image: &StoreImage) -> anyhow::Result<()> {
    if let Some(device) = &image.device {
        let json = PgStore::encode_device(device)
            .map_err(|e| anyhow::anyhow!("the device does not encode: {e}"))?;
        tx.execute(
            "INSERT INTO wa_device (session, device) VALUES ($1, $2::text::jsonb)",
            &[&session, &json],
        )
        .await
        .context("writing wa_device")?;
    }
    for (key_id, key) in &image.app_state_keys {
        tx.execute(
            "INSERT INTO wa_app_state_keys (session, key_id, key_data, fingerprint, timestamp)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &session,
                key_id,
                &key.key_data,
                &key.fingerprint,
                &key.timestamp,
            ],
        )
        .await
        .context("writing wa_app_state_keys")?;
    }
    for (name, state) in &image.app_state_versions {
        tx.execute(
            "INSERT INTO wa_app_state_versions (session, name, state) VALUES ($1, $2, $3)",
            &[&session, name, &PgStore::encode_app_state_version(state)],
        )
        .await
        .context("writing wa_app_state_versions")?;
    }
    for (table, rows) in TABLES.iter().zip(&image.tables) {
        tables::write_pg(tx, table, session, rows).await?;
    }
    Ok(())
}
